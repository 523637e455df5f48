// ModelConfig: the architecture hyper-parameters of a checkpoint, read from a
// Hugging Face config.json. The architectures it accepts are exactly those of
// the registry in architecture.hpp (Llama, Mistral, Qwen2, GPT-2 today); each
// family reads its own field names (GPT-2 says n_embd where Llama says
// hidden_size) into this one description of a decoder-only transformer. Every
// missing, out-of-range or inconsistent value is a ConfigError naming the file
// and the field.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "assistgen/types.hpp"

namespace assistgen {

/// RoPE frequency scaling (HF `rope_scaling`).
struct RopeScaling {
  /// The scaling rule (HF `rope_type`): none, linear (positions divided by
  /// `factor`) or llama3 (frequency-dependent, with the fields below).
  enum class Type { none, linear, llama3 };
  Type type = Type::none;  ///< which rule applies
  double factor = 1.0;     ///< HF `factor`
  double low_freq_factor = 1.0;                    ///< llama3 only: HF `low_freq_factor`
  double high_freq_factor = 4.0;                   ///< llama3 only: HF `high_freq_factor`
  double original_max_position_embeddings = 8192;  ///< llama3 only: the pre-scaling context
};

/// The normalisation before attention, before the MLP and at the end.
enum class NormKind {
  rms_norm,    ///< weight * x / sqrt(mean(x^2) + eps) (Llama, Mistral, Qwen2)
  layer_norm,  ///< weight * (x - mean) / sqrt(var + eps) + bias (GPT-2)
};

/// How positions enter the model.
enum class PositionKind {
  rope,     ///< rotary embeddings on q and k (rope_theta, rope_scaling)
  learned,  ///< a learned table added to the token embeddings; at most max_position_embeddings positions
};

/// The MLP activation (HF `hidden_act` / `activation_function`).
enum class Activation {
  silu,       ///< "silu", "swish"
  gelu_tanh,  ///< "gelu_new", "gelu_pytorch_tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
};

struct ModelConfig;

/// The inverse RoPE frequencies theta^(-2i/head_dim), i < head_dim / 2, with
/// HF's `rope_scaling` rules applied (linear: divided by the factor; llama3:
/// HF's `_compute_llama3_parameters` band interpolation). Shared by backends.
std::vector<double> rope_inverse_frequencies(const ModelConfig& config);

/// The RoPE rotation of position `pos`: cos_out[j] = cos(pos * inv_freq[j]) and
/// sin_out[j] = sin(pos * inv_freq[j]), computed in double and rounded to
/// float, for j < inv_freq.size(). Every backend builds its tables with it,
/// so their rotations agree bit for bit.
inline void rope_cos_sin(std::span<const double> inv_freq, std::size_t pos, float* cos_out, float* sin_out) {
  for (std::size_t j = 0; j < inv_freq.size(); ++j) {
    const double a = static_cast<double>(pos) * inv_freq[j];
    cos_out[j] = static_cast<float>(std::cos(a));
    sin_out[j] = static_cast<float>(std::sin(a));
  }
}

/// The shape of TinyLlama-1.1B (LlamaForCausalLM: hidden 2048, 22 layers,
/// 32 heads, 4 kv heads, ffn 5632, vocab 32000, 2048 positions): the reference
/// shape of the benchmarks, for models made with random weights.
ModelConfig tinyllama_shape();

/// Architecture hyper-parameters of a decoder-only transformer.
struct ModelConfig {
  std::string architecture;  ///< e.g. "LlamaForCausalLM"; must be in the registry (architecture.hpp)
  std::string model_type;    ///< e.g. "llama"
  std::size_t vocab_size = 0;         ///< logits per position
  std::size_t hidden_size = 0;        ///< GPT-2: n_embd
  std::size_t intermediate_size = 0;  ///< GPT-2: n_inner, 4 * n_embd when null
  std::size_t num_hidden_layers = 0;  ///< GPT-2: n_layer
  std::size_t num_attention_heads = 0;  ///< query heads (GPT-2: n_head)
  std::size_t num_key_value_heads = 0;  ///< key/value heads (GQA when fewer than query heads)
  std::size_t head_dim = 0;  ///< hidden_size / heads unless config.json says otherwise
  /// Llama family: the trained context (informative; RoPE may run past it).
  /// Learned positions (GPT-2 n_positions): a hard limit, forward past it is an error.
  std::size_t max_position_embeddings = 0;
  NormKind norm = NormKind::rms_norm;  ///< the normalisation of the family
  double norm_eps = 1e-6;  ///< rms_norm_eps, or GPT-2's layer_norm_epsilon
  PositionKind positions = PositionKind::rope;  ///< rotary or learned positions
  double rope_theta = 10000.0;                  ///< RoPE base frequency
  RopeScaling rope_scaling;                     ///< RoPE frequency scaling
  bool tie_word_embeddings = false;             ///< lm_head shares the token embedding matrix
  bool attention_bias = false;  ///< q/k/v biases; Qwen2 and GPT-2 have them
  bool o_proj_bias = false;  ///< attention output projection bias (GPT-2)
  /// true: down(act(gate(x)) * up(x)) (Llama); false: down(act(up(x))) (GPT-2).
  bool gated_mlp = true;
  bool mlp_bias = false;                     ///< biases on the MLP projections
  Activation activation = Activation::silu;  ///< the MLP activation
  std::string hidden_act = "silu";  ///< the HF name `activation` was read from
  /// Sliding-window attention: a query at position i sees keys j with
  /// i - j < sliding_window (HF's sliding_window_overlay). 0: no window.
  std::size_t sliding_window = 0;
  /// Which layers use the window: empty means all (Mistral); else one flag per
  /// layer (Qwen2: layers >= max_window_layers, or its `layer_types`).
  std::vector<bool> sliding_layers;
  DType torch_dtype = DType::f32;    ///< HF `torch_dtype`: the dtype the weights were saved in
  std::vector<Token> bos_token_ids;  ///< HF `bos_token_id` (a number or a list; empty when absent)
  std::vector<Token> eos_token_ids;  ///< HF `eos_token_id` (a number or a list; empty when absent)

  /// The window of layer `layer`: sliding_window, or 0 for full attention.
  std::size_t window_of_layer(std::size_t layer) const {
    if (sliding_window == 0) return 0;
    if (sliding_layers.empty()) return sliding_window;
    return layer < sliding_layers.size() && sliding_layers[layer] ? sliding_window : 0;
  }

  /// Parses and validates a config.json text; `source` names the file in
  /// error messages. The architecture comes from `architectures[0]` (or
  /// `model_type`) and must be registered (architecture.hpp); that family
  /// then reads its own fields. Absent or null optional fields take the
  /// Hugging Face defaults; a field of the wrong JSON type is a ConfigError,
  /// never coerced. An unknown architecture, activation, torch_dtype or
  /// rope_scaling type is an UnsupportedError (naming the supported ones).
  static ModelConfig parse(std::string_view json_text, const std::string& source = "config.json");
  /// Reads, parses and validates `path` (a config.json file). IoError when
  /// it cannot be read.
  static ModelConfig load(const std::filesystem::path& path);

  /// Throws ConfigError unless every value is in range and consistent;
  /// UnsupportedError for an architecture the registry does not know.
  void validate(const std::string& source = "config.json") const;
};

}  // namespace assistgen
