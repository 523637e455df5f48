// The architecture registry: the one list of model families assistgen
// supports. Each family (one source file under src/io/, plus one line in the
// registry table in src/io/architectures.cpp) says how to read its
// config.json fields into a ModelConfig and where each weight of the generic
// decoder layer lives in its checkpoints (tensor names, fused parts, Conv1D
// transposes). Config parsing and every backend consult this registry, so
// they cannot disagree about what is supported. Plain data: no backend types.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "assistgen/model_config.hpp"

namespace assistgen {

namespace detail {
class ConfigFields;  // typed access to config.json fields (src/io/config_fields.hpp)
}

/// One stored tensor that makes up (a block of rows of) a weight.
struct TensorPart {
  std::string name;      ///< the tensor's name in the checkpoint, e.g. "model.norm.weight"
  std::size_t rows = 0;  ///< its output-dimension size (length, for a vector)
};

/// Where one weight of the generic decoder comes from. Matrices are used as
/// [out, in] (nn.Linear's layout); the parts are stacked along `out` in order
/// (q, k, v into one QKV matrix; gate, up into one). No parts: the weight is
/// absent (no bias, or a tied head).
struct WeightSource {
  /// The stored tensors, stacked along `out` in this order.
  std::vector<TensorPart> parts;
  /// Every part is stored [in, out] (GPT-2's Conv1D) and is transposed at load.
  bool transposed = false;
  /// Whether the checkpoint has this weight (it has parts).
  bool present() const { return !parts.empty(); }
  /// The weight's output dimension: the sum of its parts' rows (0 when absent).
  std::size_t rows() const {
    std::size_t n = 0;
    for (const auto& p : parts) n += p.rows;
    return n;
  }
};

/// The weights of one decoder layer: x += o(attn(norm1(x))); x += mlp_out(act(mlp_in(norm2(x)))).
struct LayerWeightSources {
  /// norm1 (before attention) scale, [hidden].
  WeightSource attn_norm, attn_norm_bias;  ///< norm1 shift, [hidden]; absent for RMSNorm
  /// Fused q, k, v projection, [q_dim + 2 kv_dim, hidden].
  WeightSource qkv, qkv_bias;  ///< bias of qkv, [q_dim + 2 kv_dim]; may be absent
  /// Attention output projection, [hidden, q_dim].
  WeightSource o, o_bias;  ///< bias of o, [hidden]; may be absent
  /// norm2 (before the MLP) scale, [hidden].
  WeightSource mlp_norm, mlp_norm_bias;  ///< norm2 shift, [hidden]; absent for RMSNorm
  /// MLP input projection; gated: [gate; up] = [2 inter, hidden], else [inter, hidden].
  WeightSource mlp_in, mlp_in_bias;  ///< bias of mlp_in, [2 inter] or [inter]; may be absent
  /// MLP output projection, [hidden, inter].
  WeightSource mlp_out, mlp_out_bias;  ///< bias of mlp_out, [hidden]; may be absent
};

/// Where every weight of a model lives in one checkpoint.
struct CheckpointLayout {
  WeightSource embed;           ///< [vocab, hidden]
  WeightSource position_embed;  ///< [max_position_embeddings, hidden]; learned positions only
  std::vector<LayerWeightSources> layers;  ///< one per decoder layer, in order
  /// The norm after the last layer: scale, [hidden].
  WeightSource final_norm, final_norm_bias;  ///< final-norm shift, [hidden]; absent for RMSNorm
  WeightSource lm_head;                      ///< [vocab, hidden]; absent when tied to embed
  /// Stored tensors that are not weights and are skipped when present
  /// (recomputed buffers such as GPT-2's attn.bias mask, a tied lm_head copy).
  std::vector<std::string> ignored;
  /// Likewise, any stored name ending with one of these.
  std::vector<std::string> ignored_suffixes;
};

/// One registered model family.
struct Architecture {
  std::string_view name;        ///< HF class name in `architectures`, e.g. "GPT2LMHeadModel"
  std::string_view model_type;  ///< HF `model_type`, e.g. "gpt2"
  /// Reads the family's own config.json fields into `c` (everything but
  /// architecture, model_type, torch_dtype and bos/eos, which are common).
  void (*parse)(const detail::ConfigFields& fields, ModelConfig& c);
  /// Names the checkpoint tensors for `c`. `has` tells whether the checkpoint
  /// stores a tensor, for families whose names vary between checkpoints
  /// (GPT-2 with or without the "transformer." prefix).
  CheckpointLayout (*layout)(const ModelConfig& c, const std::function<bool(const std::string&)>& has);
};

/// Every registered family, in registration order.
std::span<const Architecture* const> architectures();
/// The family whose class name is `name`, or nullptr.
const Architecture* find_architecture(std::string_view name);
/// The family whose model_type is `model_type`, or nullptr.
const Architecture* find_architecture_by_model_type(std::string_view model_type);
/// The registered class names, comma-separated, for error messages.
std::string supported_architectures();
/// The family of `c.architecture`; UnsupportedError naming the supported ones otherwise.
const Architecture& architecture_of(const ModelConfig& c);

}  // namespace assistgen
