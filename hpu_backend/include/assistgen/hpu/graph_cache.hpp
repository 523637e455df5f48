// GraphCache: compiled recipes, least-recently-used first out, keyed by
// (graph kind, dtype, bucket dims). The compile function is injected, so a
// test can count compilations and a user can log or time them; a recipe
// evicted here is destroyed once no launch holds it any more.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/hpu/device.hpp"
#include "assistgen/hpu/graph.hpp"

namespace assistgen::hpu {

/// Counters of a GraphCache.
struct GraphCacheStats {
  std::size_t hits = 0;       ///< lookups served from the cache
  std::size_t misses = 0;     ///< = compilations
  std::size_t evictions = 0;  ///< recipes dropped to make room
};

/// An LRU cache of compiled recipes. Thread-safe; a compilation runs under
/// the cache's lock, so one key is never compiled twice at once.
class GraphCache {
 public:
  /// Builds the graph for a key (called on a miss only).
  using BuildFn = std::function<Graph(const GraphKey&)>;
  /// Compiles a graph into a recipe.
  using CompileFn = std::function<std::shared_ptr<const Recipe>(const Graph&)>;

  /// `capacity` recipes at most (>= 1, else InvalidArgument).
  GraphCache(std::size_t capacity, CompileFn compile)
      : capacity_(capacity), compile_(std::move(compile)) {
    if (capacity_ == 0) throw InvalidArgument("hpu GraphCache: capacity must be at least 1");
    if (!compile_) throw InvalidArgument("hpu GraphCache: no compile function");
  }
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  /// The recipe for `key`: cached (and marked most recently used), or built
  /// with `build`, compiled and inserted, evicting the least recently used
  /// recipe when full.
  std::shared_ptr<const Recipe> get(const GraphKey& key, const BuildFn& build) {
    std::lock_guard lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      ++stats_.hits;
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
    std::shared_ptr<const Recipe> recipe = compile_(build(key));
    if (!recipe)
      throw Error("hpu GraphCache: the compile function returned no recipe for " + to_string(key));
    ++stats_.misses;
    if (lru_.size() == capacity_) {
      index_.erase(lru_.back().first);
      lru_.pop_back();
      ++stats_.evictions;
    }
    lru_.emplace_front(key, recipe);
    index_[key] = lru_.begin();
    return recipe;
  }

  /// Whether `key` is cached (does not touch the LRU order).
  bool contains(const GraphKey& key) const {
    std::lock_guard lock(mu_);
    return index_.count(key) != 0;
  }
  /// Keys from most to least recently used.
  std::vector<GraphKey> keys() const {
    std::lock_guard lock(mu_);
    std::vector<GraphKey> out;
    for (const auto& e : lru_) out.push_back(e.first);
    return out;
  }
  /// Recipes held.
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return lru_.size();
  }
  /// Most recipes held.
  std::size_t capacity() const { return capacity_; }
  /// Hit, miss and eviction counters.
  GraphCacheStats stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }
  /// Drops every recipe (counters are kept).
  void clear() {
    std::lock_guard lock(mu_);
    lru_.clear();
    index_.clear();
  }

 private:
  using Entry = std::pair<GraphKey, std::shared_ptr<const Recipe>>;
  std::size_t capacity_;
  CompileFn compile_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;
  std::map<GraphKey, std::list<Entry>::iterator> index_;
  GraphCacheStats stats_;
};

}  // namespace assistgen::hpu
