// Key/value caches. KvStorage is the preallocated per-sequence store the CPU
// backend uses: K and V for every layer, written in place at row `pos`, so a
// rollback is a smaller length and never a copy. KvCacheManager hands out one
// cache per (model, sequence), recycles released caches and reports memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <typeindex>
#include <utility>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/error.hpp"

namespace assistgen {

/// Preallocated K and V for all layers of one sequence.
/// Layout per layer: [kv_heads][capacity][head_dim], float.
class KvStorage {
 public:
  KvStorage() = default;
  KvStorage(std::size_t layers, std::size_t kv_heads, std::size_t head_dim, std::size_t capacity)
      : layers_(layers), kv_heads_(kv_heads), head_dim_(head_dim), capacity_(capacity) {
    if (capacity == 0) throw InvalidArgument("KV cache capacity must be at least 1");
    const std::size_t per_layer = kv_heads * capacity * head_dim;
    keys_.resize(layers * per_layer);
    values_.resize(layers * per_layer);
  }
  KvStorage(KvStorage&&) noexcept = default;
  KvStorage& operator=(KvStorage&&) noexcept = default;
  KvStorage(const KvStorage&) = delete;
  KvStorage& operator=(const KvStorage&) = delete;

  /// An explicit deep copy (the cost is the whole preallocated buffer).
  KvStorage clone() const {
    KvStorage c;
    c.layers_ = layers_;
    c.kv_heads_ = kv_heads_;
    c.head_dim_ = head_dim_;
    c.capacity_ = capacity_;
    c.size_ = size_;
    c.keys_ = keys_;
    c.values_ = values_;
    return c;
  }

  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  std::size_t layers() const { return layers_; }
  std::size_t kv_heads() const { return kv_heads_; }
  std::size_t head_dim() const { return head_dim_; }
  std::size_t bytes() const { return (keys_.size() + values_.size()) * sizeof(float); }

  /// Rollback to the first n positions. O(1).
  void truncate(std::size_t n) {
    if (n > size_)
      throw InvalidArgument("KvCache::truncate(" + std::to_string(n) + ") beyond size " +
                            std::to_string(size_));
    size_ = n;
  }

  /// Throws CapacityError (cache unchanged) unless n more positions fit.
  void check_append(std::size_t n) const {
    if (n > capacity_ - size_)
      throw CapacityError("KV cache full: appending " + std::to_string(n) + " positions to " +
                          std::to_string(size_) + " exceeds capacity " +
                          std::to_string(capacity_));
  }

  /// Marks n more positions as written (after the backend wrote their rows).
  void commit(std::size_t n) {
    check_append(n);
    size_ += n;
  }

  /// Pointer to row `pos` of head `h` in layer `l` (keys or values).
  float* key(std::size_t l, std::size_t h, std::size_t pos) { return keys_.data() + offset(l, h, pos); }
  float* value(std::size_t l, std::size_t h, std::size_t pos) { return values_.data() + offset(l, h, pos); }
  const float* key(std::size_t l, std::size_t h, std::size_t pos) const {
    return keys_.data() + offset(l, h, pos);
  }
  const float* value(std::size_t l, std::size_t h, std::size_t pos) const {
    return values_.data() + offset(l, h, pos);
  }

 private:
  std::size_t offset(std::size_t l, std::size_t h, std::size_t pos) const {
    return ((l * kv_heads_ + h) * capacity_ + pos) * head_dim_;
  }

  std::size_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0, capacity_ = 0, size_ = 0;
  std::vector<float> keys_, values_;
};

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
/// server-style loop does not reallocate. Optionally bounded in total bytes.
/// Not thread-safe: one manager per thread, or external locking.
class KvCacheManager {
 public:
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
