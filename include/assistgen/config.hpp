// ModelConfig: the architecture hyper-parameters of a checkpoint, read from a
// Hugging Face config.json. Supported: LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM. Every missing, out-of-range or inconsistent value is a
// ConfigError naming the file and the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "assistgen/types.hpp"

namespace assistgen {

/// RoPE frequency scaling (HF `rope_scaling`).
struct RopeScaling {
  enum class Type { none, linear, llama3 };
  Type type = Type::none;
  double factor = 1.0;
  // llama3 only:
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};

/// Architecture hyper-parameters of a decoder-only transformer.
struct ModelConfig {
  std::string architecture;  ///< e.g. "LlamaForCausalLM"
  std::string model_type;    ///< e.g. "llama"
  std::size_t vocab_size = 0;
  std::size_t hidden_size = 0;
  std::size_t intermediate_size = 0;
  std::size_t num_hidden_layers = 0;
  std::size_t num_attention_heads = 0;
  std::size_t num_key_value_heads = 0;
  std::size_t head_dim = 0;  ///< hidden_size / heads unless config.json says otherwise
  std::size_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  ///< q/k/v (and o) biases; Qwen2 has q/k/v bias
  bool o_proj_bias = false;
  bool mlp_bias = false;
  std::size_t sliding_window = 0;  ///< 0: none (Mistral with a window errors if it would matter)
  std::string hidden_act = "silu";
  DType torch_dtype = DType::f32;
  std::vector<Token> bos_token_ids;
  std::vector<Token> eos_token_ids;

  /// Parses and validates a config.json text; `source` names the file in
  /// error messages. Absent or null optional fields take the Hugging Face
  /// defaults; a field of the wrong JSON type is a ConfigError, never
  /// coerced. An unknown architecture, hidden_act, torch_dtype or
  /// rope_scaling type is an UnsupportedError.
  static ModelConfig parse(std::string_view json_text, const std::string& source = "config.json");
  /// Reads, parses and validates `path` (a config.json file). IoError when
  /// it cannot be read.
  static ModelConfig load(const std::filesystem::path& path);

  /// Throws ConfigError unless every value is in range and consistent.
  void validate(const std::string& source = "config.json") const;
};

}  // namespace assistgen
