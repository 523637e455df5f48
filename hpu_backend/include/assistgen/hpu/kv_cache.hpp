// StaticKvCache: the preallocated, in-place KV cache of the HPU backend.
// Keys and values of every layer live in two device buffers laid out
// [layers][batch][kv_heads][slots][head_dim], slots = max_len + 1, allocated
// once. A forward pass writes its rows at their positions with the graph's
// kv_write op (index_copy semantics); padded token slots write to the last
// slot (max_len), which no graph ever reads. Attention reads a static
// prefix of kv_len positions and masks everything at or beyond each query's
// own position + 1, so padding never shows. Rollback is only a length:
// truncate() is O(1) and never touches device memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/hpu/device.hpp"
#include "assistgen/kv_length.hpp"

namespace assistgen::hpu {

/// Geometry of a StaticKvCache.
struct KvLayout {
  std::size_t layers = 0;    ///< decoder layers
  std::size_t batch = 1;     ///< sequences (the batch bucket)
  std::size_t kv_heads = 0;  ///< key/value heads
  std::size_t max_len = 0;   ///< positions a graph may read
  std::size_t head_dim = 0;  ///< elements per head

  /// Positions stored per (layer, batch, head): max_len plus the padding slot.
  std::size_t slots() const { return max_len + 1; }
  /// Floats of one layer's K (or V): batch * kv_heads * slots * head_dim.
  std::size_t layer_elems() const { return batch * kv_heads * slots() * head_dim; }
  /// Bytes of one layer's K (or V).
  std::size_t layer_bytes() const { return layer_elems() * sizeof(float); }
};

/// Per-sequence K/V storage on a Device. Move-only.
class StaticKvCache {
 public:
  StaticKvCache() = default;
  /// Allocates K and V for `layout` on `device`; `capacity` (<= max_len, >= 1)
  /// is the number of positions the owner may append. Throws CapacityError /
  /// InvalidArgument otherwise.
  StaticKvCache(std::shared_ptr<Device> device, const KvLayout& layout, std::size_t capacity)
      : layout_(layout), length_(capacity, "hpu KV cache") {
    if (capacity == 0) throw InvalidArgument("hpu KV cache capacity must be at least 1");
    if (capacity > layout.max_len)
      throw CapacityError("hpu KV cache: capacity " + std::to_string(capacity) +
                          " exceeds the largest kv_len bucket " + std::to_string(layout.max_len) +
                          " (raise BucketConfig::kv_len.max)");
    keys_ = DeviceBuffer(device, layout.layers * layout.layer_bytes());
    values_ = DeviceBuffer(std::move(device), layout.layers * layout.layer_bytes());
  }

  /// Positions held.
  std::size_t size() const { return length_.size(); }
  /// Positions the owner may append in all.
  std::size_t capacity() const { return length_.capacity(); }
  /// The geometry.
  const KvLayout& layout() const { return layout_; }
  /// Device bytes of K and V.
  std::size_t bytes() const { return keys_.bytes() + values_.bytes(); }

  /// Rollback to the first n positions: O(1). Throws InvalidArgument if n > size().
  void truncate(std::size_t n) { length_.truncate(n); }
  /// Throws CapacityError (cache unchanged) unless n more positions fit.
  void check_append(std::size_t n) const { length_.check_append(n); }
  /// Marks n more positions as written (after a launch wrote their rows).
  void commit(std::size_t n) { length_.commit(n); }

  /// Device address of layer l's keys / values ([batch][kv_heads][slots][head_dim]).
  DeviceAddress key_address(std::size_t l) const {
    return keys_.address() + l * layout_.layer_bytes();
  }
  /// Device address of layer l's values.
  DeviceAddress value_address(std::size_t l) const {
    return values_.address() + l * layout_.layer_bytes();
  }
  /// Downloads layer l's keys or values (for tests and debugging).
  std::vector<float> download(std::size_t l, bool values) const {
    std::vector<float> out(layout_.layer_elems());
    (values ? values_ : keys_)
        .download(out.data(), layout_.layer_bytes(), l * layout_.layer_bytes());
    return out;
  }

  /// The kv_write index of a step appending n tokens after pos0 in a bucket
  /// of `tokens` slots: pos0 + i for real tokens, the padding slot max_len
  /// for the rest. Written into `idx` (its allocation reused).
  static void write_index(std::size_t pos0, std::size_t n, std::size_t tokens, std::size_t max_len,
                          std::vector<std::int32_t>& idx) {
    idx.assign(tokens, static_cast<std::int32_t>(max_len));
    for (std::size_t i = 0; i < n && i < tokens; ++i) idx[i] = static_cast<std::int32_t>(pos0 + i);
  }
  /// As above, returned.
  static std::vector<std::int32_t> write_index(std::size_t pos0, std::size_t n, std::size_t tokens,
                                               std::size_t max_len) {
    std::vector<std::int32_t> idx;
    write_index(pos0, n, tokens, max_len, idx);
    return idx;
  }

  /// The additive attention mask [batch][tokens][kv_len] of that step: query
  /// i < n (at position p = pos0 + i) sees positions [0, p], or with a
  /// sliding `window` > 0 only those j with p - j < window; padded queries
  /// see position 0 only (so their softmax stays finite; their outputs are
  /// discarded); batch rows >= `rows` are padding too. Written into `m` (its
  /// allocation reused).
  static void attention_mask(std::size_t pos0, std::size_t n, std::size_t batch, std::size_t rows,
                             std::size_t tokens, std::size_t kv_len, std::size_t window,
                             std::vector<float>& m) {
    constexpr float kMasked = -std::numeric_limits<float>::infinity();
    m.assign(batch * tokens * kv_len, kMasked);
    for (std::size_t b = 0; b < batch; ++b)
      for (std::size_t i = 0; i < tokens; ++i) {
        float* row = m.data() + (b * tokens + i) * kv_len;
        const bool real = b < rows && i < n;
        const std::size_t visible = real ? pos0 + i + 1 : 1;
        const std::size_t first = real && window != 0 && visible > window ? visible - window : 0;
        for (std::size_t j = first; j < visible && j < kv_len; ++j) row[j] = 0.0f;
      }
  }
  /// As above, returned.
  static std::vector<float> attention_mask(std::size_t pos0, std::size_t n, std::size_t batch,
                                           std::size_t rows, std::size_t tokens, std::size_t kv_len,
                                           std::size_t window = 0) {
    std::vector<float> m;
    attention_mask(pos0, n, batch, rows, tokens, kv_len, window, m);
    return m;
  }

 private:
  KvLayout layout_;
  KvLength length_;
  DeviceBuffer keys_, values_;
};

}  // namespace assistgen::hpu
