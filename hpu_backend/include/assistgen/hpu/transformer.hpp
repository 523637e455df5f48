// hpu::Transformer: the decoder families of the architecture registry
// (Llama, Mistral, Qwen2, GPT-2) run as
// static-shape graphs on an hpu::Device, the way Gaudi wants them: every
// forward pass is padded to a (batch, tokens, kv_len) bucket, the compiled
// graph for that bucket comes from an LRU GraphCache, and the KV cache is
// preallocated and written in place. Rollback during assisted generation is
// only a length, so speculative decoding needs no new shape: after warmup()
// a whole assisted generation compiles nothing.
//
// It models CausalLM, so SpeculativeDecoder<hpu::Transformer, hpu::Transformer>
// works unchanged. On the CPU reference device (the default) its logits match
// cpu::Transformer within float tolerance. This header needs neither oneDNN
// nor Habana's headers. Sliding-window attention (Mistral, Qwen2's windowed
// layers) is a second mask input, so it costs no extra graph.
#pragma once

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/hpu/bucketing.hpp"
#include "assistgen/hpu/device.hpp"
#include "assistgen/hpu/graph_cache.hpp"
#include "assistgen/hpu/kv_cache.hpp"
#include "assistgen/model_config.hpp"
#include "assistgen/types.hpp"

namespace assistgen::io {
class Checkpoint;
}

namespace assistgen::hpu {

/// How to load and run a model (named like cpu::LoadOptions).
struct LoadOptions {
  /// The device; null means a new CPU reference device.
  std::shared_ptr<Device> device;
  /// Bucket ranges; kv_len.max is the preallocated cache length, so it bounds
  /// make_cache's capacity.
  BucketConfig buckets;
  /// Recipes kept by the graph cache; 0 means one per warm-up bucket.
  std::size_t graph_cache_capacity = 0;
  /// Compiles a graph; null means device->compile. Inject one to count,
  /// log or time compilations.
  GraphCache::CompileFn compile;
  /// Compile every bucket while loading (see Transformer::warmup).
  bool warmup = false;
  /// Cap the kv_len buckets at the model's max_position_embeddings (rounded
  /// up to kv_len.step) when loading: the warm-up and the cache then grow
  /// with the model, not with a requested number of positions. Off: the
  /// buckets are used as given (RoPE runs past max_position_embeddings).
  bool bound_by_model = false;
  /// Type of the matmul weights (every linear layer and the LM head), as
  /// Gaudi's MME takes them; embeddings, norms, biases, attention and the
  /// KV cache stay f32 (as in cpu::Transformer's bf16 path):
  ///  - f32: everything f32 (bf16/f16 checkpoints are widened exactly);
  ///  - bf16: weights rounded to bf16 (nearest even; exact for a bf16
  ///    checkpoint), each gemm's activations cast to bf16, products exact,
  ///    f32 accumulation (docs/hpu.md states the order);
  ///  - f8_e4m3: weights quantized at load to FP8 E4M3 with a scale per
  ///    output channel (fp8_per_channel) or per tensor (max |w| / 448),
  ///    activations bf16, f32 accumulation, then times the scale.
  /// Other types are an UnsupportedError naming the option.
  DType dtype = DType::f32;
  /// f8_e4m3: one scale per output channel (true) or per weight tensor.
  bool fp8_per_channel = true;
};

/// The old name of LoadOptions, kept for one release.
using Options [[deprecated("use hpu::LoadOptions")]] = LoadOptions;

/// Options for runs that need up to `positions` cache positions (prompt +
/// new tokens): kv_len buckets (128, 128, positions rounded up to 128),
/// default token buckets, warm-up at load, on `device` (null: the CPU
/// reference device), bounded by the model (LoadOptions::bound_by_model: a huge
/// `positions` compiles no more buckets than the model's positions need).
/// What `assistgen generate --backend hpu-ref` uses.
inline LoadOptions options_for(std::size_t positions, std::shared_ptr<Device> device = nullptr) {
  constexpr std::size_t kStep = 128;
  LoadOptions o;
  o.device = std::move(device);
  o.buckets.kv_len = {kStep, kStep, std::max(kStep, (positions + kStep - 1) / kStep * kStep)};
  o.warmup = true;
  o.bound_by_model = true;
  return o;
}

/// Counters of the forward passes run with one cache.
struct ForwardStats {
  std::size_t launches = 0;       ///< recipe launches (one per chunk)
  std::size_t tokens = 0;         ///< real tokens processed
  std::size_t padded_tokens = 0;  ///< token slots that were padding
};

/// Counters of every launch a model ran (all its caches, all threads): what
/// the batch and token padding of the buckets cost.
struct LaunchStats {
  std::size_t launches = 0;          ///< recipe launches
  std::size_t batched_launches = 0;  ///< launches with more than one real sequence
  std::size_t batch_rows = 0;        ///< sum of the batch buckets launched
  std::size_t padded_rows = 0;       ///< batch rows that were padding
  std::size_t token_slots = 0;       ///< sum of batch bucket * token bucket
  std::size_t padded_tokens = 0;     ///< token slots that were padding (rows included)
  /// Fraction of the launched token slots that were padding (0 when none ran).
  double token_waste() const {
    return token_slots ? static_cast<double>(padded_tokens) / static_cast<double>(token_slots)
                       : 0.0;
  }
};

/// Per-sequence state: the static KV cache plus device buffers for the
/// per-launch inputs and outputs, sized for the largest bucket (a batched
/// launch uses the buffers of its first sequence's cache). Move-only.
class TransformerCache {
 public:
  TransformerCache() = default;
  /// Moves the cache (device memory moves with it).
  TransformerCache(TransformerCache&&) noexcept = default;
  TransformerCache& operator=(TransformerCache&&) noexcept = default;  ///< Moves the cache.

  /// Positions held.
  std::size_t size() const { return kv_.size(); }
  /// Positions it can hold.
  std::size_t capacity() const { return kv_.capacity(); }
  /// Rollback to the first n positions: O(1), no device work. Throws
  /// InvalidArgument if n > size().
  void truncate(std::size_t n) { kv_.truncate(n); }
  /// Bytes of device memory held (K/V and launch buffers).
  std::size_t bytes() const;
  /// The static KV cache.
  const StaticKvCache& kv() const { return kv_; }
  /// Counters of its forward passes.
  const ForwardStats& stats() const { return stats_; }

 private:
  friend class Transformer;
  StaticKvCache kv_;
  DeviceBuffer ids_, index_, pad_index_, cos_, sin_, mask_, window_mask_, logits_, workspace_;
  ForwardStats stats_;
};

/// A loaded Llama-family model on an hpu::Device. Immutable after loading
/// (the graph cache is internally synchronised); share it between threads,
/// each with its own cache. Move-only.
class Transformer {
 public:
  /// The per-sequence cache type (CausalLM).
  using Cache = TransformerCache;

  /// Loads an HF model directory (config.json + safetensors).
  static Transformer load(const std::filesystem::path& dir, const LoadOptions& options = {});
  /// Builds a model from a parsed config and an open checkpoint.
  static Transformer from_checkpoint(const ModelConfig& config, const io::Checkpoint& weights,
                                     const LoadOptions& options = {});

  /// Moves the model (its device memory moves with it).
  Transformer(Transformer&&) noexcept;
  Transformer& operator=(Transformer&&) noexcept;  ///< Moves the model.
  ~Transformer();

  /// The parsed config.json.
  const ModelConfig& config() const;
  /// Logits per position.
  std::size_t vocab_size() const;
  /// RoPE only: no hard limit; trained for config().max_position_embeddings
  /// (the decoders warn past it, the text API refuses longer prompts).
  PositionLimits position_limits() const;
  /// The device it runs on.
  const Device& device() const;
  /// Its bucket lists.
  const Bucketing& bucketing() const;
  /// The compiled-graph cache (its stats count compilations).
  const GraphCache& graph_cache() const;

  /// Every bucket warmup() compiles.
  std::vector<Bucket> warmup_buckets() const;
  /// Compiles the graph of every warm-up bucket not yet cached; returns how
  /// many were compiled. Throws ConfigError when the graph cache cannot hold
  /// them all (they would evict one another).
  std::size_t warmup() const;

  /// An empty cache for up to `capacity` positions; CapacityError when
  /// capacity exceeds the largest kv_len bucket.
  Cache make_cache(std::size_t capacity) const;

  /// Appends `tokens` to `cache` and returns their logits [n, vocab]. Runs
  /// one launch per chunk of at most the largest token bucket. Throws
  /// InvalidArgument for an empty input or a token id out of range,
  /// CapacityError when the cache cannot hold them; the cache is unchanged then.
  Logits forward(std::span<const Token> tokens, Cache& cache) const;
  /// The same, with the logits in `out` (resized to [n, vocab], its
  /// allocation reused): with the per-thread host staging buffers, a
  /// decoding loop that keeps `out` allocates no host memory per step once
  /// warm (ForwardsInto).
  void forward(std::span<const Token> tokens, Cache& cache, Logits& out) const;
  /// The batched forward (ForwardsBatches): requests in groups of up to the
  /// largest batch bucket, each group launched as one (batch, tokens, kv_len)
  /// bucket per chunk of at most the largest token bucket; each batch row
  /// writes and reads its own cache. A token's logits do not depend on its
  /// batch mates or the padding (the reference device's kernels sum in a
  /// fixed order). Trees and LayerPlans other than all layers are an
  /// UnsupportedError naming them; on any error every cache keeps its size.
  void forward(std::span<const ForwardRequest> requests, std::span<Cache* const> caches,
               Logits& out, const LayerPlan& plan = {}) const;
  /// Launch counters since loading (padding waste of the buckets).
  LaunchStats launch_stats() const;

 private:
  struct Impl;
  explicit Transformer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

static_assert(CausalLM<Transformer>);
static_assert(ForwardsInto<Transformer>);
static_assert(ForwardsBatches<Transformer>);

}  // namespace assistgen::hpu
