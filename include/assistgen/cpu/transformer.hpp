// cpu::Transformer: the CPU backend for the decoder-only families of the
// architecture registry (architecture.hpp: Llama, Mistral with its sliding
// window, Qwen2, GPT-2), with f32, bf16, int8 or 4-bit group-quantized weights. Its matmul kernels
// (src/cpu/kernels.hpp) are batch-invariant: the logits of a position are
// bit-identical whether it is computed in a one-token decode step, inside a
// (K+1)-token verification pass or in a prefill, so assisted greedy decoding
// equals plain greedy decoding even at near-ties. After a warm-up call, a
// forward pass allocates nothing (see forward(tokens, cache, out)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/cpu/kv_storage.hpp"
#include "assistgen/layer_split.hpp"
#include "assistgen/model_config.hpp"
#include "assistgen/tensor_parallel.hpp"
#include "assistgen/types.hpp"

namespace assistgen::io {
class Checkpoint;
}

namespace assistgen::cpu {

/// How to load a model.
struct LoadOptions {
  /// Storage of the matmul weights (every Linear and the LM head), whatever
  /// the checkpoint stores: f32; bf16 (rounded to nearest even; exact for bf16
  /// checkpoints; activations are rounded to bf16 for the VDPBF16PS kernel,
  /// as a bf16 model computes in HF transformers); or i8: per-output-channel
  /// symmetric int8 with activations quantized per token at run time.
  /// Embeddings, norms and biases stay f32 and all accumulation is f32
  /// (int8: exact int32). i4: 4-bit codes in groups of 32 along the input
  /// with a scale and a min per group (io::quantize_int4), activations
  /// quantized per token as for i8; GGUF files' Q4_0 / Q4_K / Q6_K weights
  /// keep their own codes (docs/gguf.md). f16 is rejected.
  /// Unset: bf16 when the checkpoint stores every matmul weight as bf16;
  /// the stored codes (dtype() i4) for the GGUF weights in Q4_0 / Q4_K / Q6_K;
  /// else f32 (also for random models). Set f32 to compare against f32
  /// references.
  std::optional<DType> dtype = std::nullopt;
  /// Threads for matmuls, attention and activations (the calling thread and
  /// workers of the backend's pool, which spin briefly after each call and
  /// then sleep); 0 = OpenMP's default (OMP_NUM_THREADS, else one per core).
  /// Small layers use fewer (each thread gets about 128 KiB of weights or
  /// more), so tiny models run on the calling thread alone.
  int threads = 0;
  /// Called on the loading thread as tensors are read and packed (after the
  /// embeddings, each layer and the head), the last call with every tensor
  /// done. Empty: no calls. Not used by random().
  std::function<void(const LoadProgress&)> on_progress = {};
  /// Tensor parallel (docs/distributed.md): with a group of more than one
  /// rank, this process loads and computes only its share of the model
  /// (query and key/value heads, MLP and hidden columns, vocabulary rows)
  /// and the ranks exchange activations in every forward pass, which every
  /// rank must call in lockstep with the same arguments. Logits and K/V are
  /// the same bits as on one rank. Empty or one rank: the whole model.
  std::shared_ptr<RankGroup> tensor_parallel = {};
  /// Prompt prefill on oneDNN's matmul (bf16 and i8 weights): a forward call
  /// of one chain request of at least this many tokens that asks for no
  /// logits (outputs = 0: how every decoder of the library feeds a prompt's
  /// tokens before the last) runs its matmuls through oneDNN (AMX tiles on
  /// Xeons that have them) instead of the kernels. 0: never. Unset: the
  /// environment variable ASSISTGEN_ONEDNN_PREFILL (off, or a row count),
  /// else the default measured per dtype on an AMX Xeon, which is never:
  /// oneDNN 2.6 was not faster than the AMX kernels there at any length
  /// (docs/performance.md, "Prefill on oneDNN"). bf16 K/V
  /// rows of such a prefill can differ in the last bits from the same tokens
  /// fed with logits (oneDNN's order of operations depends on the row count);
  /// i8 gives the same bits (an exact int32 dot), f32 and i4 never use it.
  std::optional<std::size_t> onednn_prefill_rows = std::nullopt;
};

/// Per-sequence state of a cpu::Transformer: the preallocated K/V of every
/// layer. The activations of a forward pass are not per sequence: they live in
/// a workspace of the calling thread, grown to the largest call it has made.
/// Move-only.
class TransformerCache {
 public:
  /// An empty cache of capacity 0; get a usable one from Transformer::make_cache.
  TransformerCache() = default;
  TransformerCache(TransformerCache&&) noexcept = default;             ///< Moves the buffers.
  TransformerCache& operator=(TransformerCache&&) noexcept = default;  ///< Moves the buffers.

  /// Positions held.
  std::size_t size() const { return kv_.size(); }
  /// Positions it can hold.
  std::size_t capacity() const { return kv_.capacity(); }
  /// Rollback to the first n positions: O(1), throws InvalidArgument if n > size().
  void truncate(std::size_t n) { kv_.truncate(n); }
  /// Keeps positions [0, base) and moves the slots `rows` (strictly
  /// increasing, in [base, size())) to base, base+1, ... (an accepted tree
  /// branch); see KvStorage::keep.
  void keep(std::size_t base, std::span<const std::uint32_t> rows) { kv_.keep(base, rows); }
  /// Bytes of K/V storage.
  std::size_t bytes() const { return kv_.bytes(); }
  /// An explicit deep copy.
  TransformerCache clone() const {
    TransformerCache c;
    c.kv_ = kv_.clone();
    return c;
  }

  /// The K/V storage itself (for tests and tools that inspect the cache).
  KvStorage& kv() { return kv_; }
  /// The K/V storage itself, read-only.
  const KvStorage& kv() const { return kv_; }

 private:
  friend class Transformer;
  explicit TransformerCache(KvStorage kv) : kv_(std::move(kv)) {}
  KvStorage kv_;
};

/// A loaded model of any registered architecture. Immutable after loading; share it between
/// threads freely as long as each thread uses its own cache. Move-only.
class Transformer {
 public:
  /// Per-sequence state: see TransformerCache.
  using Cache = TransformerCache;
  /// The batched forward accepts tree requests (backend.hpp: AttendsTrees).
  static constexpr bool kTreeRequests = true;
  /// The batched forward accepts layer plans (backend.hpp: RunsLayerPlans).
  static constexpr bool kLayerPlans = true;
  /// Tree requests may continue a tree left in the cache (backend.hpp:
  /// ContinuesTrees, ForwardRequest::tree_base).
  bool continues_trees() const { return true; }

  /// Loads an HF model directory (config.json + safetensors), or a GGUF file
  /// of the Llama family (io::load_gguf_model). The tensor names come from
  /// the registry entry of the config's architecture.
  static Transformer load(const std::filesystem::path& dir, const LoadOptions& options = {});
  /// Builds a model from a parsed config and an open checkpoint.
  static Transformer from_checkpoint(const ModelConfig& config, const io::Checkpoint& weights,
                                     const LoadOptions& options = {});
  /// A model with random weights (about N(0, 0.02): a scaled sum of four
  /// uniforms from a counter-based hash, filled in parallel; unit norms) made
  /// in memory, for benchmarks and tests that need a given shape but no file.
  /// The weights depend only on the config and the seed.
  static Transformer random(const ModelConfig& config, std::uint64_t seed,
                            const LoadOptions& options = {});

  Transformer(Transformer&&) noexcept;             ///< Moves the weights (no copy).
  Transformer& operator=(Transformer&&) noexcept;  ///< Moves the weights (no copy).
  ~Transformer();

  /// The configuration the model was built from.
  const ModelConfig& config() const;
  /// Logits per position (config().vocab_size).
  std::size_t vocab_size() const;
  /// Bytes of weights held in memory.
  std::size_t weight_bytes() const;
  /// Bytes of weights one decode step reads: every matmul weight (in its
  /// stored precision, with scales and biases), the norms and one embedding
  /// row. Divided by the machine's read bandwidth, the lower bound on the
  /// time of a decode step.
  std::size_t bytes_per_token() const;
  /// Storage type of the matmul weights (LoadOptions::dtype).
  DType dtype() const;
  /// Learned positions (GPT-2): hard = trained = max_position_embeddings;
  /// RoPE: no hard limit, trained = max_position_embeddings.
  PositionLimits position_limits() const;

  /// An empty cache for up to `capacity` positions (capped by nothing but
  /// memory; positions past max_position_embeddings are allowed for RoPE,
  /// while learned positions (GPT-2) make forward() past them an error).
  /// With a sliding window the cache still keeps every position (attention
  /// reads only the window), so truncate() is exact across the window edge.
  Cache make_cache(std::size_t capacity) const;

  /// Appends `tokens` to `cache` and returns their logits [n, vocab].
  /// Throws InvalidArgument for a token id out of range or an empty input,
  /// CapacityError when the cache cannot hold them or (learned positions) a
  /// position would reach n_positions / max_position_embeddings; the cache is
  /// unchanged then.
  Logits forward(std::span<const Token> tokens, Cache& cache) const;

  /// As forward(tokens, cache), writing the logits into `out` (resized to
  /// [n, vocab], reusing its storage). Once `cache` and `out` have seen a
  /// call of at least n tokens, this allocates nothing and creates nothing.
  void forward(std::span<const Token> tokens, Cache& cache, Logits& out) const;

  /// The batched forward of backend.hpp (ForwardsBatches): request r appends
  /// its tokens to `*caches[r]`, as a chain or a tree (ForwardRequest), and
  /// `out` receives [sum of output_rows, vocab] logits, request 0's first.
  /// All rows of all requests go through each matmul together; a token's
  /// logits are the same bits whatever else is in the call (other sequences,
  /// other branches, `outputs`, the number of rows). Tree nodes occupy slots
  /// cache.size() + i and sit at position cache.size() + depth; learned
  /// positions and sliding windows use that position. `plan` runs a subset of
  /// the layers (LayerPlan). Everything is checked before any cache changes;
  /// on an error every cache keeps its size. After a warm-up call of at least
  /// the same shape on the same thread, allocates nothing.
  void forward(std::span<const ForwardRequest> requests, std::span<Cache* const> caches, Logits& out,
               const LayerPlan& plan = {}) const;

  /// Transformer layers (config().num_hidden_layers).
  std::size_t num_layers() const;
  /// Floats of one residual row (config().hidden_size).
  std::size_t hidden_size() const;
  /// The lower half of a forward pass split at layer `split` (layer_split.hpp:
  /// SplitsLayers): appends `tokens` running layers [0, split), appends their
  /// residual rows to `hidden`, logits of the last `outputs` rows into `out`.
  void forward_lower(std::span<const Token> tokens, Cache& cache, std::size_t split,
                     std::vector<float>& hidden, Logits& out, std::size_t outputs) const;
  /// The upper half (layer_split.hpp): layers [split, L) over the cached slots
  /// [first, first + rows) from their residual rows `hidden`; logits of the
  /// last `outputs` rows into `out`, bit-identical to a full forward's.
  void forward_upper(Cache& cache, std::size_t first, std::span<const float> hidden, std::size_t split,
                     Logits& out, std::size_t outputs) const;

 private:
  struct Impl;
  explicit Transformer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The matmul kernels this process runs, chosen at run time: "amx" (bf16 and
/// int8 on AMX tiles, Intel Xeon since Sapphire Rapids), "avx512" or "scalar";
/// the environment variable ASSISTGEN_KERNELS=avx512|scalar forces a lower one
/// (docs/performance.md). Logits are batch-invariant on each; bf16 logits
/// differ between amx and the others.
const char* kernel_isa();

/// Which path runs the matmuls of a prompt prefill (LoadOptions::onednn_prefill_rows),
/// for benchmarks and tests that compare them on one loaded model: automatic
/// (each model's threshold), kernels (never oneDNN), onednn (oneDNN for every
/// prefill call, whatever its length, for bf16 and i8 weights).
enum class PrefillPath { automatic, kernels, onednn };
/// Sets the PrefillPath of the process; not thread-safe against concurrent forward passes.
void set_prefill_path(PrefillPath path);
/// The PrefillPath in effect (automatic unless set_prefill_path changed it).
PrefillPath prefill_path();

static_assert(CausalLM<Transformer> && ForwardsBatches<Transformer> && AttendsTrees<Transformer> &&
              RunsLayerPlans<Transformer> && CacheHasKeep<TransformerCache> && SplitsLayers<Transformer>);

}  // namespace assistgen::cpu
