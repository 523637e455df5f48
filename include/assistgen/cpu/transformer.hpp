// cpu::Transformer: the CPU reference backend for the decoder-only families of
// the architecture registry (architecture.hpp: Llama, Mistral with its sliding
// window, Qwen2, GPT-2). Matmuls run on
// oneDNN primitives created once per shape; elementwise work uses Eigen. The
// oneDNN headers stay inside src/cpu/: this header compiles without them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/config.hpp"
#include "assistgen/kv_cache.hpp"
#include "assistgen/types.hpp"

namespace assistgen::io {
class Checkpoint;
}

namespace assistgen::cpu {

/// How to load a model.
struct LoadOptions {
  /// Element type used for compute weights. bf16/f16 checkpoints are converted
  /// to f32 at load in this version.
  DType dtype = DType::f32;
  /// Threads for matmuls and elementwise work; 0 = OpenMP's default.
  int threads = 0;
};

/// Per-sequence state of a cpu::Transformer: the preallocated K/V of every
/// layer plus the scratch buffers of a forward pass. Move-only.
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
  // Scratch reused between calls: activations of one forward pass, and the
  // oneDNN scratchpad (user-managed so concurrent sequences never share one).
  std::vector<float> scratch_;
  std::vector<std::byte> dnnl_scratch_;
};

/// A loaded model of any registered architecture. Immutable after loading; share it between
/// threads freely as long as each thread uses its own cache. Move-only.
class Transformer {
 public:
  /// Per-sequence state: see TransformerCache.
  using Cache = TransformerCache;

  /// Loads an HF model directory (config.json + safetensors). The tensor
  /// names come from the registry entry of the config's architecture.
  static Transformer load(const std::filesystem::path& dir, const LoadOptions& options = {});
  /// Builds a model from a parsed config and an open checkpoint.
  static Transformer from_checkpoint(const ModelConfig& config, const io::Checkpoint& weights,
                                     const LoadOptions& options = {});
  /// A model with random weights (N(0, 0.02), unit norms) made in memory,
  /// for benchmarks and tests that need a given shape but no file.
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

 private:
  struct Impl;
  explicit Transformer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

static_assert(CausalLM<Transformer>);

}  // namespace assistgen::cpu
