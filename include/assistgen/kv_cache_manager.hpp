// KvCacheManager: hands out one cache per (model, sequence), recycles
// released caches and reports memory, for any backend's cache type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/error.hpp"

namespace assistgen {

/// Memory used by a cache: its `bytes()` when it reports one, else 0.
template <class C>
std::size_t cache_bytes(const C& c) {
  if constexpr (requires { { c.bytes() } -> std::convertible_to<std::size_t>; })
    return c.bytes();
  else
    return 0;
}

/// Hands out one cache per (model, sequence id). Released caches are kept per
/// model and reused by the next acquire with a capacity they can hold, so a
/// server-style loop does not reallocate. Optionally bounded in total bytes,
/// pooled caches included (pooled caches are dropped first when a new cache
/// would not fit otherwise); every KvStorage is also bounded process-wide by
/// kv_memory_limit(), checked before anything is allocated.
/// Not thread-safe: one manager per thread, or external locking.
class KvCacheManager {
 public:
  /// Caller-chosen id of a sequence (a request, a beam).
  using SequenceId = std::uint64_t;

  /// max_bytes == 0 means unbounded.
  explicit KvCacheManager(std::size_t max_bytes = 0) : max_bytes_(max_bytes) {}

  /// The cache of `seq` for `model`, made (or recycled) on first use.
  /// Throws CapacityError when a new cache would exceed the byte bound.
  template <CausalLM M>
  typename M::Cache& acquire(const M& model, SequenceId seq, std::size_t capacity) {
    using C = typename M::Cache;
    const Key key{static_cast<const void*>(&model), seq};
    if (auto it = live_.find(key); it != live_.end()) {
      auto& c = static_cast<Holder<C>&>(*it->second).cache;
      if (c.capacity() < capacity)
        throw CapacityError("KvCacheManager: sequence " + std::to_string(seq) +
                            " already has a cache of capacity " + std::to_string(c.capacity()) +
                            ", asked for " + std::to_string(capacity));
      return c;
    }
    auto& pool = free_[key.model];
    for (auto it = pool.begin(); it != pool.end(); ++it) {
      auto& c = static_cast<Holder<C>&>(**it).cache;
      if (c.capacity() >= capacity) {
        c.truncate(0);
        auto node = std::move(*it);
        pool.erase(it);
        auto& ref = static_cast<Holder<C>&>(*node).cache;
        live_.emplace(key, std::move(node));
        return ref;
      }
    }
    auto node = std::make_unique<Holder<C>>(model.make_cache(capacity));
    const std::size_t b = cache_bytes(node->cache);
    if (max_bytes_ != 0 && bytes_total() + b > max_bytes_) trim();
    if (max_bytes_ != 0 && bytes_total() + b > max_bytes_)
      throw CapacityError("KvCacheManager: a cache of " + std::to_string(b) +
                          " bytes would exceed the bound of " + std::to_string(max_bytes_) +
                          " bytes (" + std::to_string(bytes_total()) + " held)");
    auto& ref = node->cache;
    live_.emplace(key, std::move(node));
    return ref;
  }

  /// Returns the cache of `seq` to the pool for reuse. No-op if absent.
  template <CausalLM M>
  void release(const M& model, SequenceId seq) {
    const Key key{static_cast<const void*>(&model), seq};
    auto it = live_.find(key);
    if (it == live_.end()) return;
    free_[key.model].push_back(std::move(it->second));
    live_.erase(it);
  }

  /// Drops pooled (released) caches, freeing their memory.
  void trim() { free_.clear(); }

  /// Bytes held by caches currently handed out.
  std::size_t bytes_in_use() const {
    std::size_t b = 0;
    for (const auto& [k, h] : live_) b += h->bytes();
    return b;
  }
  /// Bytes held in all, pooled caches included.
  std::size_t bytes_total() const {
    std::size_t b = bytes_in_use();
    for (const auto& [m, pool] : free_)
      for (const auto& h : pool) b += h->bytes();
    return b;
  }
  /// Caches currently handed out.
  std::size_t live_count() const { return live_.size(); }

 private:
  struct HolderBase {
    virtual ~HolderBase() = default;
    virtual std::size_t bytes() const = 0;
  };
  template <class C>
  struct Holder final : HolderBase {
    explicit Holder(C c) : cache(std::move(c)) {}
    std::size_t bytes() const override { return cache_bytes(cache); }
    C cache;
  };
  struct Key {
    const void* model;
    SequenceId seq;
    bool operator<(const Key& o) const { return model != o.model ? model < o.model : seq < o.seq; }
  };

  std::size_t max_bytes_;
  std::map<Key, std::unique_ptr<HolderBase>> live_;
  std::map<const void*, std::vector<std::unique_ptr<HolderBase>>> free_;
};

}  // namespace assistgen
