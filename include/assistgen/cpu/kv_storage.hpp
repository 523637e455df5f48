// KvStorage: the CPU backend's preallocated per-sequence key/value store. K
// and V of every layer are written in place at row `pos`, so a rollback is a
// smaller length and never a copy, and keep() moves an accepted tree branch
// into place row by row. Its bytes are reserved from the process-wide KV
// budget (kv_budget.hpp) before anything is allocated.
//
// Threads: while one thread holds exclusive_use() (a backend's forward call),
// truncate(), keep(), check_append() and commit() from any other thread throw
// InvalidArgument before touching the storage (exclusive_use.hpp).
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/exclusive_use.hpp"
#include "assistgen/kv_budget.hpp"
#include "assistgen/kv_length.hpp"

namespace assistgen {

/// Preallocated K and V for all layers of one sequence.
/// Layout per layer: [kv_heads][capacity][head_dim], float.
class KvStorage {
 public:
  /// An empty storage of capacity 0 (a moved-from or placeholder state).
  KvStorage() = default;
  /// Allocates K and V for `capacity` positions. InvalidArgument when capacity
  /// is 0; CapacityError, naming the sizes, when the byte count overflows or
  /// does not fit in what is left of kv_memory_limit() (checked before
  /// allocating, so a huge capacity never reaches the allocator).
  KvStorage(std::size_t layers, std::size_t kv_heads, std::size_t head_dim, std::size_t capacity)
      : layers_(layers), kv_heads_(kv_heads), head_dim_(head_dim), length_(capacity, "KV cache") {
    if (capacity == 0) throw InvalidArgument("KV cache capacity must be at least 1");
    std::size_t per_layer = 0, floats = 0, bytes = 0;
    if (__builtin_mul_overflow(kv_heads, capacity, &per_layer) ||
        __builtin_mul_overflow(per_layer, head_dim, &per_layer) ||
        __builtin_mul_overflow(layers, per_layer, &floats) ||
        __builtin_mul_overflow(floats, 2 * sizeof(float), &bytes))
      throw CapacityError("KV cache of capacity " + std::to_string(capacity) + " for " + std::to_string(layers) +
                          " layers x " + std::to_string(kv_heads) + " kv heads x head_dim " +
                          std::to_string(head_dim) + " overflows a 64-bit byte count");
    reservation_ = KvReservation(bytes, capacity);
    try {
      keys_.resize(floats);
      values_.resize(floats);
    } catch (const std::bad_alloc&) {
      throw CapacityError("KV cache of capacity " + std::to_string(capacity) + " (" + std::to_string(bytes) +
                          " bytes) could not be allocated");
    } catch (const std::length_error&) {
      throw CapacityError("KV cache of capacity " + std::to_string(capacity) + " (" + std::to_string(bytes) +
                          " bytes) is larger than a vector can hold");
    }
  }
  /// Moves the buffers (no copy); the source is left empty, of capacity 0.
  KvStorage(KvStorage&& o) noexcept
      : layers_(std::exchange(o.layers_, 0)),
        kv_heads_(std::exchange(o.kv_heads_, 0)),
        head_dim_(std::exchange(o.head_dim_, 0)),
        length_(std::move(o.length_)),
        reservation_(std::move(o.reservation_)),
        keys_(std::move(o.keys_)),
        values_(std::move(o.values_)) {}
  /// Moves the buffers (no copy); the source is left empty, of capacity 0.
  KvStorage& operator=(KvStorage&& o) noexcept {
    if (this != &o) {
      layers_ = std::exchange(o.layers_, 0);
      kv_heads_ = std::exchange(o.kv_heads_, 0);
      head_dim_ = std::exchange(o.head_dim_, 0);
      length_ = std::move(o.length_);
      reservation_ = std::move(o.reservation_);
      keys_ = std::move(o.keys_);
      values_ = std::move(o.values_);
    }
    return *this;
  }
  KvStorage(const KvStorage&) = delete;
  KvStorage& operator=(const KvStorage&) = delete;

  /// An explicit deep copy (the cost is the whole preallocated buffer; it
  /// counts against kv_memory_limit() like any cache).
  KvStorage clone() const {
    KvStorage c;
    c.reservation_ = KvReservation(reservation_.bytes(), capacity());
    c.layers_ = layers_;
    c.kv_heads_ = kv_heads_;
    c.head_dim_ = head_dim_;
    c.length_ = length_;
    try {
      c.keys_ = keys_;
      c.values_ = values_;
    } catch (const std::bad_alloc&) {
      throw CapacityError("KV cache clone of " + std::to_string(reservation_.bytes()) +
                          " bytes could not be allocated");
    }
    return c;
  }

  std::size_t size() const { return length_.size(); }          ///< Positions written.
  std::size_t capacity() const { return length_.capacity(); }  ///< Positions it can hold.
  std::size_t layers() const { return layers_; }      ///< Transformer layers.
  std::size_t kv_heads() const { return kv_heads_; }  ///< Key/value heads per layer.
  std::size_t head_dim() const { return head_dim_; }  ///< Floats per head and position.
  /// Bytes of the K and V buffers.
  std::size_t bytes() const { return (keys_.size() + values_.size()) * sizeof(float); }

  /// Rollback to the first n positions. O(1). InvalidArgument when n > size(),
  /// or while another thread holds exclusive_use() (a forward call).
  void truncate(std::size_t n) {
    in_use_.check_free("KvCache::truncate");
    length_.truncate(n);
  }

  /// Keeps the first `base` positions and then the rows `rows` (strictly
  /// increasing, each in [base, size())), moved to positions base, base+1, ...
  /// in that order; the size becomes base + rows.size(). This is how an
  /// accepted tree branch is compacted into place; keep(n, {}) is
  /// truncate(n). O(rows x layers x kv_heads x head_dim), no allocation.
  /// InvalidArgument (storage unchanged) for rows out of order or range, and
  /// while another thread holds exclusive_use().
  void keep(std::size_t base, std::span<const std::uint32_t> rows) {
    in_use_.check_free("KvCache::keep");
    length_.check_keep(base, rows);
    // rows[j] >= base + j, so moving in increasing j never overwrites a row
    // that is still to be moved.
    for (std::size_t j = 0; j < rows.size(); ++j) {
      if (rows[j] == base + j) continue;
      for (std::size_t l = 0; l < layers_; ++l)
        for (std::size_t h = 0; h < kv_heads_; ++h) {
          std::copy_n(key(l, h, rows[j]), head_dim_, key(l, h, base + j));
          std::copy_n(value(l, h, rows[j]), head_dim_, value(l, h, base + j));
        }
    }
    length_.kept(base, rows.size());
  }

  /// Throws CapacityError (cache unchanged) unless n more positions fit;
  /// InvalidArgument while another thread holds exclusive_use().
  void check_append(std::size_t n) const {
    in_use_.check_free("KvCache append (forward)");
    length_.check_append(n);
  }

  /// Marks n more positions as written (after the backend wrote their rows).
  /// Same errors as check_append().
  void commit(std::size_t n) {
    in_use_.check_free("KvCache append (forward)");
    length_.commit(n);
  }

  /// Held by a backend for the whole of a forward call on this cache, so that
  /// a second thread using the same cache meanwhile gets an InvalidArgument
  /// naming `user` instead of a corrupted cache:
  /// `auto hold = kv.exclusive_use("cpu::Transformer::forward");`
  ExclusiveUseFlag::Hold exclusive_use(std::string_view user) { return ExclusiveUseFlag::Hold(in_use_, user); }
  /// The flag exclusive_use() holds (to hold several caches at once:
  /// `std::optional<ExclusiveUseFlag::Hold> h; h.emplace(kv.in_use_flag(), who);`).
  ExclusiveUseFlag& in_use_flag() { return in_use_; }

  /// Pointer to row `pos` of head `h` in layer `l` (keys or values).
  float* key(std::size_t l, std::size_t h, std::size_t pos) { return keys_.data() + offset(l, h, pos); }
  /// Same, for the values.
  float* value(std::size_t l, std::size_t h, std::size_t pos) { return values_.data() + offset(l, h, pos); }
  /// Read-only key row `pos` of head `h` in layer `l`.
  const float* key(std::size_t l, std::size_t h, std::size_t pos) const {
    return keys_.data() + offset(l, h, pos);
  }
  /// Read-only value row `pos` of head `h` in layer `l`.
  const float* value(std::size_t l, std::size_t h, std::size_t pos) const {
    return values_.data() + offset(l, h, pos);
  }

 private:
  std::size_t offset(std::size_t l, std::size_t h, std::size_t pos) const {
    return ((l * kv_heads_ + h) * capacity() + pos) * head_dim_;
  }

  std::size_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0;
  KvLength length_;
  KvReservation reservation_;  // bytes taken from the process-wide KV budget
  ExclusiveUseFlag in_use_;
  std::vector<float> keys_, values_;
};

}  // namespace assistgen
