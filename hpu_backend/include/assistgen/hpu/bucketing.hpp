// Shape bucketing for static-shape devices. A forward pass of n new tokens
// over a cache holding p positions runs the graph compiled for the smallest
// (batch, tokens, kv length) bucket that fits; the rest is padding, masked.
// Buckets are generated the way vllm-hpu-extension's warm-up ranges are:
// from `min`, doubling while below `step` (and not above `max`), then every
// multiple of `step` up to `max`; values below `min` are dropped. A request
// beyond the largest bucket is never compiled on the fly: the token dimension
// is split into chunks of the largest bucket (hpu::Transformer does this),
// and batch or kv length beyond their largest bucket is a CapacityError.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "assistgen/error.hpp"

namespace assistgen::hpu {

/// One bucketed dimension: (min, step, max) as in vllm-hpu-extension.
struct BucketRange {
  std::size_t min = 1;   ///< smallest bucket
  std::size_t step = 1;  ///< doubling stops here; linear steps after
  std::size_t max = 1;   ///< largest bucket (when on the ladder)

  /// Throws ConfigError (naming `what`) unless 1 <= min <= max and step >= 1.
  void validate(const std::string& what) const {
    if (min < 1 || step < 1 || min > max)
      throw ConfigError("hpu bucket range " + what + " (min " + std::to_string(min) + ", step " +
                        std::to_string(step) + ", max " + std::to_string(max) +
                        ") needs 1 <= min <= max and step >= 1");
  }
};

/// The bucket values of `r`, ascending: min, 2 min, 4 min, ... while below
/// step and not above max, then step, 2 step, ... up to max; only values
/// >= min are kept. Throws ConfigError for an invalid range.
inline std::vector<std::size_t> warmup_range(const BucketRange& r,
                                             const std::string& what = "range") {
  r.validate(what);
  std::vector<std::size_t> out;
  for (std::size_t v = r.min; v < r.step && v <= r.max; v *= 2) out.push_back(v);
  for (std::size_t v = r.step; v <= r.max; v += r.step)
    if (v >= r.min) out.push_back(v);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.empty())  // e.g. min == max, not a power-of-two step away: keep the one value
    out.push_back(r.max);
  return out;
}

/// The smallest bucket >= value, or nullopt when value exceeds them all.
inline std::optional<std::size_t> find_bucket(const std::vector<std::size_t>& buckets,
                                              std::size_t value) {
  auto it = std::lower_bound(buckets.begin(), buckets.end(), value);
  if (it == buckets.end()) return std::nullopt;
  return *it;
}

/// The shape a request runs with.
struct Bucket {
  std::size_t batch = 0;   ///< sequences
  std::size_t tokens = 0;  ///< new tokens per sequence
  std::size_t kv_len = 0;  ///< positions attention reads

  friend bool operator==(const Bucket&, const Bucket&) = default;
};

/// A bucket picked for a request and what the padding costs.
struct BucketChoice {
  Bucket bucket;  ///< the bucket the request runs in
  /// Padded token slots: batch_bucket * tokens_bucket - batch * tokens.
  std::size_t padded_tokens = 0;
  /// Attention positions computed but masked:
  /// batch_bucket * tokens_bucket * kv_bucket - batch * tokens * kv_len.
  std::size_t padded_attention = 0;
  /// Fraction of the bucket's token slots that are padding (0..1).
  double token_waste = 0.0;
};

/// Bucket ranges of the three dimensions of a forward pass.
struct BucketConfig {
  BucketRange batch{1, 1, 1};     ///< sequences per launch
  BucketRange tokens{1, 32, 64};  ///< new tokens per launch
  BucketRange kv_len{128, 128,
                     1024};  ///< attended positions; its max is the preallocated cache length
};

/// The bucket lists of a BucketConfig and the picking rule.
class Bucketing {
 public:
  /// Generates the bucket lists; ConfigError for an invalid range.
  explicit Bucketing(const BucketConfig& cfg = {})
      : batch_(warmup_range(cfg.batch, "batch")),
        tokens_(warmup_range(cfg.tokens, "tokens")),
        kv_(warmup_range(cfg.kv_len, "kv_len")) {}

  /// Batch buckets, ascending.
  const std::vector<std::size_t>& batch_buckets() const { return batch_; }
  /// Token buckets, ascending.
  const std::vector<std::size_t>& token_buckets() const { return tokens_; }
  /// KV-length buckets, ascending.
  const std::vector<std::size_t>& kv_buckets() const { return kv_; }
  /// The largest batch bucket.
  std::size_t max_batch() const { return batch_.back(); }
  /// The largest token bucket.
  std::size_t max_tokens() const { return tokens_.back(); }
  /// The largest KV-length bucket.
  std::size_t max_kv_len() const { return kv_.back(); }

  /// The smallest bucket holding `batch` sequences of `tokens` new tokens
  /// whose attention spans `kv_len` positions (cached + new). Throws
  /// InvalidArgument for a zero, CapacityError (naming the dimension and its
  /// largest bucket) for a value beyond the largest bucket.
  BucketChoice pick(std::size_t batch, std::size_t tokens, std::size_t kv_len) const {
    if (batch == 0 || tokens == 0 || kv_len == 0)
      throw InvalidArgument("hpu bucketing: batch, tokens and kv_len must be positive (got " +
                            std::to_string(batch) + ", " + std::to_string(tokens) + ", " +
                            std::to_string(kv_len) + ")");
    BucketChoice c;
    c.bucket.batch = need(batch_, batch, "batch");
    c.bucket.tokens = need(tokens_, tokens, "tokens");
    c.bucket.kv_len = need(kv_, kv_len, "kv_len");
    const std::size_t slots = c.bucket.batch * c.bucket.tokens;
    c.padded_tokens = slots - batch * tokens;
    c.padded_attention = slots * c.bucket.kv_len - batch * tokens * kv_len;
    c.token_waste = static_cast<double>(c.padded_tokens) / static_cast<double>(slots);
    return c;
  }

  /// Every bucket a warm-up compiles: the cartesian product of the three
  /// lists, batch slowest, kv length fastest.
  std::vector<Bucket> all() const {
    std::vector<Bucket> out;
    out.reserve(batch_.size() * tokens_.size() * kv_.size());
    for (auto b : batch_)
      for (auto t : tokens_)
        for (auto l : kv_) out.push_back({b, t, l});
    return out;
  }

 private:
  static std::size_t need(const std::vector<std::size_t>& buckets, std::size_t v,
                          const char* what) {
    if (auto b = find_bucket(buckets, v)) return *b;
    throw CapacityError(std::string("hpu bucketing: ") + what + " " + std::to_string(v) +
                        " exceeds the largest " + what + " bucket " +
                        std::to_string(buckets.back()) + " (raise BucketConfig::" + what + ".max)");
  }

  std::vector<std::size_t> batch_, tokens_, kv_;
};

}  // namespace assistgen::hpu
