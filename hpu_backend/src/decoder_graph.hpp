// Private to the HPU backend: the static-shape graph of one decoder
// forward pass (Llama family or GPT-2) for a (batch, tokens, kv_len) bucket, and the names its
// tensors are bound by.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "assistgen/hpu/graph.hpp"
#include "assistgen/model_config.hpp"

namespace assistgen::hpu::detail {

/// The architecture facts the graph depends on (weights are bound, not baked in).
struct DecoderSpec {
  std::size_t layers = 0, hidden = 0, intermediate = 0, vocab = 0;
  std::size_t heads = 0, kv_heads = 0, head_dim = 0;
  float eps = 1e-6f;
  bool qkv_bias = false, o_bias = false, mlp_bias = false, tied = false;
  /// The family's pieces: LayerNorm with a bias (GPT-2) or RMSNorm; learned
  /// positions added to the embeddings (GPT-2) or RoPE; a gated SiLU MLP or
  /// a plain gelu_tanh one (GPT-2).
  bool layer_norm = false, learned_positions = false, gated = true;
  std::size_t positions = 0;  ///< rows of the learned position table
  /// Type of the matmul weights (every linear and the LM head): f32, bf16
  /// (activations cast to bf16 before each, f32 accumulation) or f8_e4m3
  /// (bf16 activations, a scale per output channel or per tensor).
  DType weights = DType::f32;
  bool per_channel = true;  ///< f8_e4m3: scale [N] (else [1])
  /// The LM head reads the embedding table itself (tied, f32 weights);
  /// otherwise it is its own weight "lm_head" (a rounded copy when tied).
  bool head_is_embed() const { return tied && weights == DType::f32; }
  /// f32: 1/sqrt(head_dim) is folded into "l{i}.q.w" / ".q.b" at load. With
  /// bf16 / fp8 weights that would change their rounding, so the scores are
  /// multiplied by the weight "attn_scale" [1, 1, 1, 1, 1] instead.
  bool q_scale_folded() const { return weights == DType::f32; }
  std::size_t slots = 0;  ///< positions stored per KV row (max_len + padding slot)
  /// Per layer: whether it uses the sliding-window mask (empty: none does).
  std::vector<bool> windowed;
  std::size_t window = 0;

  static DecoderSpec from(const ModelConfig& c, std::size_t slots, DType weights = DType::f32,
                          bool per_channel = true);
  /// Identifies the architecture in graph keys ("llama-dec/L2/H64/...").
  std::string kind() const;
  std::string window_str() const;
  /// Whether some layer attends without a window (the graph then has "mask").
  bool has_full_mask() const {
    for (bool w : windowed)
      if (!w) return true;
    return windowed.empty();
  }
  bool has_window_mask() const { return !windowed.empty(); }
};

/// Tensor names of layer l's weights, e.g. layer_name(0, "q.w") == "l0.q.w".
inline std::string layer_name(std::size_t l, const char* what) {
  // Appends rather than operator+ chains: GCC 12 raises a false -Wrestrict on those.
  std::string r = "l";
  r += std::to_string(l);
  r += '.';
  r += what;
  return r;
}

/// The forward graph of bucket (batch, tokens, kv_len). Inputs: "ids" [B, T]
/// i32, "write_index" [T] i32, "cos"/"sin" [T, head_dim/2] (RoPE) or
/// "positions" [B, T] i32 (learned positions), "mask"
/// [B, 1, 1, T, kv_len] (and "window_mask", the same for windowed layers,
/// when any layer is); states "l{i}.k_cache"/"l{i}.v_cache"
/// [B, kv_heads, slots, head_dim]; output "logits" [B, T, vocab]. Queries
/// must be pre-scaled by 1/sqrt(head_dim) in "l{i}.q.w" (and ".q.b") when
/// q_scale_folded(), else "attn_scale" holds it.
Graph build_decoder_graph(const DecoderSpec& spec, std::size_t batch, std::size_t tokens,
                          std::size_t kv_len);

}  // namespace assistgen::hpu::detail
