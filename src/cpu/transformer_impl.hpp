// cpu::Transformer's internals shared by its two translation units:
// transformer.cpp (loading, packing, random models) and
// transformer_forward.cpp (the forward pass). Private to src/cpu.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "assistgen/architecture.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/error.hpp"
#include "assistgen/io/quantized.hpp"
#include "kernels.hpp"
#include "shard.hpp"

namespace assistgen::cpu {

namespace detail {

/// A norm's parameters; `bias` is empty for RMSNorm.
struct NormWeights {
  std::vector<float> weight, bias;
};

/// The stored group-quantized form of `src` ([rows, cols], its parts
/// stacked: io::stack_groups) when every part has one (GGUF's Q4_0 / Q4_K /
/// Q6_K tensors), else nullopt. Shapes are checked as the float reader
/// checks them; the names read are appended to `used`.
std::optional<io::GroupQuantized> read_grouped(const io::Checkpoint& ck, const WeightSource& src,
                                               std::size_t cols, std::vector<std::string>& used);

struct Layer {
  NormWeights attn_norm, mlp_norm;
  PackedLinear qkv;      // [q_dim + 2 kv_dim, hidden]
  PackedLinear o;        // [hidden, q_dim]
  PackedLinear mlp_in;   // gated: [2 * intermediate, hidden] (gate rows, then up); else
                         // [intermediate, hidden]
  PackedLinear mlp_out;  // [hidden, intermediate]
};

inline WeightType weight_type(DType t) {
  switch (t) {
    case DType::f32:
      return WeightType::f32;
    case DType::bf16:
      return WeightType::bf16;
    case DType::i8:
      return WeightType::i8;
    case DType::i4:
      return WeightType::grouped;
    default:
      throw UnsupportedError("cpu::Transformer: LoadOptions::dtype '" + std::string(dtype_name(t)) +
                             "' is not a compute dtype (f32, bf16, i8, i4)");
  }
}

/// LoadOptions::onednn_prefill_rows resolved (prefill_onednn.cpp): the option,
/// else ASSISTGEN_ONEDNN_PREFILL, else the measured default for `type`; 0 = never.
std::size_t onednn_prefill_threshold(std::optional<std::size_t> option, WeightType type);

}  // namespace detail

using detail::Layer;
using detail::NormWeights;
using detail::PackedLinear;
using detail::weight_type;
using detail::WeightType;

// A forward pass split at a layer (self-speculation, layer_split.hpp): the
// default runs from the embeddings and appends; forward_lower keeps the
// residual rows after its last layer, forward_upper starts from such rows
// at `begin_layer` over slots the cache already holds.
struct ForwardStage {
  std::size_t begin_layer = 0;              // layers before it are not run
  std::span<const float> hidden_in = {};    // [rows, hidden] in place of the embeddings
  std::optional<std::size_t> resume_slot;   // rows fill slots [resume_slot, ...) already held
  std::vector<float>* hidden_out = nullptr; // residual rows after the last layer run, appended
};

struct Transformer::Impl {
  std::string name;  // the checkpoint directory, for messages
  ModelConfig cfg;
  LoadOptions opts;
  std::size_t q_dim = 0, kv_dim = 0, mlp_in_dim = 0;
  std::vector<float> embed;      // [vocab, hidden]
  std::vector<float> pos_embed;  // [max_position_embeddings, hidden]; learned positions only
  std::vector<Layer> layers;
  NormWeights final_norm;
  PackedLinear lm_head;  // [vocab, hidden]; packed from embed when tied
  std::vector<double> inv_freq;
  // Tensor parallel (shard.hpp): this rank's share; unset on one rank. The
  // local sizes are what this rank's weights, K/V and matmul outputs hold
  // (the full sizes without a shard).
  std::optional<detail::Shard> shard;
  Share q_heads, kv_heads;  // query and key/value heads held (global indices)
  std::size_t local_q_dim = 0, local_kv_dim = 0, local_inter = 0, local_mlp_in_dim = 0;

  void init_dims() {
    q_dim = cfg.num_attention_heads * cfg.head_dim;
    kv_dim = cfg.num_key_value_heads * cfg.head_dim;
    mlp_in_dim = (cfg.gated_mlp ? 2 : 1) * cfg.intermediate_size;
    if (cfg.positions == PositionKind::rope) inv_freq = rope_inverse_frequencies(cfg);
    if (opts.tensor_parallel && opts.tensor_parallel->size() > 1)
      shard.emplace(cfg, opts.tensor_parallel);
    q_heads = shard ? shard->q_heads() : Share{0, cfg.num_attention_heads};
    kv_heads = shard ? shard->kv_heads() : Share{0, cfg.num_key_value_heads};
    local_q_dim = q_heads.size() * cfg.head_dim;
    local_kv_dim = kv_heads.size() * cfg.head_dim;
    local_inter = shard ? shard->inter().size() : cfg.intermediate_size;
    local_mlp_in_dim = (cfg.gated_mlp ? 2 : 1) * local_inter;
  }

  static std::size_t norm_bytes(const NormWeights& w) {
    return (w.weight.size() + w.bias.size()) * sizeof(float);
  }

  std::size_t weight_bytes() const {
    std::size_t n = (embed.size() + pos_embed.size()) * sizeof(float) + norm_bytes(final_norm) +
                    lm_head.bytes();
    for (const auto& l : layers)
      n += norm_bytes(l.attn_norm) + norm_bytes(l.mlp_norm) + l.qkv.bytes() + l.o.bytes() +
           l.mlp_in.bytes() + l.mlp_out.bytes();
    return n;
  }

  std::size_t bytes_per_token() const {
    std::size_t n = (pos_embed.empty() ? 1 : 2) * cfg.hidden_size * sizeof(float) +
                    norm_bytes(final_norm) + lm_head.bytes();
    for (const auto& l : layers)
      n += norm_bytes(l.attn_norm) + norm_bytes(l.mlp_norm) + l.qkv.bytes() + l.o.bytes() +
           l.mlp_in.bytes() + l.mlp_out.bytes();
    return n;
  }

  DType dtype = DType::f32;  // opts.dtype, or what the checkpoint suggested

  // Rows from which a prompt prefill runs on oneDNN (0: never): LoadOptions::onednn_prefill_rows.
  std::size_t onednn_rows = 0;

  void check_supported() {
    dtype = opts.dtype.value_or(DType::f32);
    weight_type(dtype);    // throws for a dtype the kernels do not compute in
    architecture_of(cfg);  // throws for an unregistered architecture
    onednn_rows = detail::onednn_prefill_threshold(opts.onednn_prefill_rows, weight_type(dtype));
  }

  PackedLinear pack(const float* w, std::size_t n, std::size_t k, const float* bias) const {
    return detail::pack_linear(weight_type(dtype), w, n, k, bias);
  }

  // Packs the rows `keep` (all when empty) of w ([rows, k]); `bias` already
  // holds only those rows.
  PackedLinear pack_rows(const std::vector<float>& w, std::size_t k, std::span<const Share> keep,
                         const float* bias) const {
    if (keep.empty()) return pack(w.data(), w.size() / k, k, bias);
    std::vector<float> mine = w;
    detail::keep_rows(mine, k, keep);
    return pack(mine.data(), detail::kept_rows(keep), k, bias);
  }

  // Tensor parallel: every rank must hold a share of the same model in the
  // same dtype, or the gathers would mix unrelated pieces.
  void check_same_on_every_rank() const {
    if (!shard) return;
    std::uint64_t h = 1469598103934665603ull;
    for (const std::uint64_t v :
         {std::uint64_t{cfg.vocab_size}, std::uint64_t{cfg.hidden_size},
          std::uint64_t{cfg.num_hidden_layers}, std::uint64_t{cfg.num_attention_heads},
          std::uint64_t{cfg.num_key_value_heads}, std::uint64_t{cfg.head_dim},
          std::uint64_t{cfg.intermediate_size}, static_cast<std::uint64_t>(dtype),
          static_cast<std::uint64_t>(cfg.positions), static_cast<std::uint64_t>(cfg.norm)})
      h = (h ^ v) * 1099511628211ull;
    // The embeddings are whole on every rank: their bits tell checkpoints of
    // the same shape apart (one pass over them, as cheap as a decode step).
    for (const float* e : {embed.data(), final_norm.weight.data()}) {
      const std::size_t count = e == embed.data() ? embed.size() : final_norm.weight.size();
      for (std::size_t i = 0; i < count; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, e + i, sizeof bits);
        h = (h ^ bits) * 1099511628211ull;
      }
    }
    shard->check_same(h, "config.json shapes, the weights' dtype or the embeddings");
  }

  void norm(const float* x, const NormWeights& nw, float* y, std::size_t rows) const {
    const std::size_t h = cfg.hidden_size;
    const auto eps = static_cast<float>(cfg.norm_eps);
    const float* w = nw.weight.data();
    for (std::size_t r = 0; r < rows; ++r) {
      const float* xr = x + r * h;
      float* yr = y + r * h;
      if (cfg.norm == NormKind::rms_norm) {
        const float ms = detail::sum_squares(xr, h) / static_cast<float>(h);
        const float inv = 1.0f / std::sqrt(ms + eps);
        for (std::size_t i = 0; i < h; ++i) yr[i] = (xr[i] * inv) * w[i];
      } else {  // LayerNorm: biased variance, as torch.nn.LayerNorm
        const float mean = detail::sum(xr, h) / static_cast<float>(h);
        for (std::size_t i = 0; i < h; ++i) yr[i] = xr[i] - mean;
        const float var = detail::sum_squares(yr, h) / static_cast<float>(h);
        const float inv = 1.0f / std::sqrt(var + eps);
        const float* b = nw.bias.data();
        for (std::size_t i = 0; i < h; ++i) yr[i] = (yr[i] * inv) * w[i] + b[i];
      }
    }
  }

  // Rotates one head vector in place (HF rotate_half: pairs (i, i + d/2)).
  void rope(float* v, const float* cos_t, const float* sin_t) const {
    const std::size_t half = cfg.head_dim / 2;
    for (std::size_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos_t[i] - b * sin_t[i];
      v[i + half] = b * cos_t[i] + a * sin_t[i];
    }
  }

  // gelu_tanh(x), a scalar libm call, so the value of an element never
  // depends on its neighbours or its address (SiLU runs in detail::silu).
  float gelu(float x) const {
    // gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    constexpr float kC = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + std::tanh(kC * (x + 0.044715f * (x * x * x))));
  }

  int max_threads() const { return opts.threads > 0 ? opts.threads : omp_get_max_threads(); }

  void forward(std::span<const ForwardRequest> requests, std::span<TransformerCache* const> caches,
               Logits& out, const LayerPlan& plan, const ForwardStage& stage = {}) const;
};

}  // namespace assistgen::cpu
