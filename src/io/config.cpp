// ModelConfig parsing from a Hugging Face config.json. The architecture is
// looked up in the registry (architecture.hpp), whose family parser reads
// the family's own fields with HF's defaults; the fields every family shares
// (torch_dtype, bos/eos ids) and the validation are here. A present field of
// the wrong JSON type is an error, never coerced.
#include "assistgen/model_config.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <numbers>
#include <sstream>

#include "assistgen/architecture.hpp"
#include "assistgen/error.hpp"
#include "config_fields.hpp"
#include "json_file.hpp"

namespace assistgen {

namespace detail {

using io::detail::json_type_name;
using json = nlohmann::json;

std::vector<Token> ConfigFields::token_ids(std::string_view field) const {
  const json* j = get(field);
  std::vector<Token> ids;
  if (j == nullptr) return ids;
  auto one = [&](const json& v) {
    if (v.is_number_integer() && !v.is_number_unsigned()) {
      fail(field, "holds a negative token id " + io::detail::json_excerpt(v));
    }
    if (!v.is_number_unsigned()) {
      fail(field, "must be a token id or a list of token ids, got " + json_type_name(v));
    }
    const auto id = v.get<std::uint64_t>();
    if (id > static_cast<std::uint64_t>(std::numeric_limits<Token>::max())) {
      fail(field, "holds token id " + io::detail::json_excerpt(v) + ", too large for a 32-bit token");
    }
    ids.push_back(static_cast<Token>(id));
  };
  if (j->is_array()) {
    for (const json& v : *j) one(v);
  } else {
    one(*j);
  }
  return ids;
}

RopeScaling parse_rope_scaling(const ConfigFields& fields) {
  const std::string& source = fields.source();
  RopeScaling scaling;
  const json* j = fields.get("rope_scaling");
  if (j == nullptr) return scaling;
  if (!j->is_object()) {
    fields.fail("rope_scaling", "must be an object or null, got " + json_type_name(*j));
  }
  // Newer HF configs say "rope_type", older ones "type".
  const json* kind = nullptr;
  for (const char* key : {"rope_type", "type"}) {
    const auto it = j->find(key);
    if (it != j->end()) {
      kind = &*it;
      break;
    }
  }
  if (kind == nullptr || !kind->is_string()) {
    fields.fail("rope_scaling", "needs a string 'rope_type' (or 'type')");
  }
  const std::string type = kind->get<std::string>();
  auto member = [&](const char* key) {
    const auto it = j->find(key);
    if (it == j->end() || it->is_null()) {
      fields.fail("rope_scaling", std::string("of type '") + type + "' needs '" + key + "'");
    }
    return fields.number(std::string("rope_scaling.") + key, *it);
  };
  if (type == "default") return scaling;
  if (type == "linear") {
    scaling.type = RopeScaling::Type::linear;
    scaling.factor = member("factor");
  } else if (type == "llama3") {
    scaling.type = RopeScaling::Type::llama3;
    scaling.factor = member("factor");
    scaling.low_freq_factor = member("low_freq_factor");
    scaling.high_freq_factor = member("high_freq_factor");
    scaling.original_max_position_embeddings = member("original_max_position_embeddings");
  } else {
    throw UnsupportedError(source + ": field 'rope_scaling' has type '" + type +
                           "'; supported: default, linear, llama3");
  }
  return scaling;
}

void parse_activation(const ConfigFields& fields, std::string_view field, std::string_view fallback,
                      ModelConfig& c) {
  const std::string* name = fields.string(field);
  c.hidden_act = name != nullptr ? *name : std::string(fallback);
  if (c.hidden_act == "silu" || c.hidden_act == "swish") {
    c.activation = Activation::silu;
  } else if (c.hidden_act == "gelu_new" || c.hidden_act == "gelu_pytorch_tanh") {
    c.activation = Activation::gelu_tanh;
  } else {
    throw UnsupportedError(fields.source() + ": field '" + std::string(field) + "' is '" +
                           c.hidden_act + "'; supported: silu, swish, gelu_new, gelu_pytorch_tanh");
  }
}

}  // namespace detail

namespace {

using detail::ConfigFields;
using io::detail::json_type_name;
using nlohmann::json;

DType parse_dtype(const ConfigFields& fields) {
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  const char* field = fields.get("torch_dtype") != nullptr ? "torch_dtype" : "dtype";
  const std::string* name = fields.string(field);
  if (name == nullptr) return DType::f32;
  if (*name == "float32") return DType::f32;
  if (*name == "float16") return DType::f16;
  if (*name == "bfloat16") return DType::bf16;
  throw UnsupportedError(fields.source() + ": field '" + field + "' is '" + *name +
                         "'; supported: float32, float16, bfloat16");
}

}  // namespace

ModelConfig ModelConfig::parse(std::string_view json_text, const std::string& source) {
  const json root = io::detail::parse_strict_json<ConfigError>(json_text, source);
  if (!root.is_object()) {
    throw ConfigError(source + ": expected a JSON object, got " + json_type_name(root));
  }
  const ConfigFields fields(root, source);
  ModelConfig c;

  // The architecture: architectures[0], else inferred from model_type.
  const Architecture* arch = nullptr;
  if (const json* list = fields.get("architectures")) {
    if (!list->is_array() || list->empty() || !(*list)[0].is_string()) {
      fields.fail("architectures", "must be a non-empty list of strings");
    }
    c.architecture = (*list)[0].get<std::string>();
    arch = find_architecture(c.architecture);
    if (arch == nullptr) {
      throw UnsupportedError(source + ": field 'architectures' names '" + c.architecture +
                             "'; supported architectures: " + supported_architectures());
    }
  }
  if (const std::string* model_type = fields.string("model_type")) {
    c.model_type = *model_type;
    const Architecture* by_type = find_architecture_by_model_type(c.model_type);
    if (arch == nullptr) {
      if (by_type == nullptr) {
        throw UnsupportedError(source + ": field 'model_type' is '" + c.model_type +
                               "'; supported architectures: " + supported_architectures());
      }
      arch = by_type;
      c.architecture = std::string(arch->name);
    } else if (by_type != arch) {
      fields.fail("model_type", "is '" + c.model_type + "' but 'architectures' names " +
                                    c.architecture + " (model_type '" +
                                    std::string(arch->model_type) + "')");
    }
  } else if (arch != nullptr) {
    c.model_type = std::string(arch->model_type);
  } else {
    throw ConfigError(source + ": neither 'architectures' nor 'model_type' is given; supported: " +
                      supported_architectures());
  }

  arch->parse(fields, c);
  c.torch_dtype = parse_dtype(fields);
  // A family may have set its HF defaults (GPT-2: 50256); a present key wins,
  // null meaning none.
  if (fields.contains("bos_token_id")) c.bos_token_ids = fields.token_ids("bos_token_id");
  if (fields.contains("eos_token_id")) c.eos_token_ids = fields.token_ids("eos_token_id");

  c.validate(source);
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& path) {
  return parse(io::detail::read_bounded_file(path, io::detail::kMaxConfigJsonBytes), path.string());
}

void ModelConfig::validate(const std::string& source) const {
  auto fail = [&](std::string_view field, const std::string& what) {
    throw ConfigError(source + ": field '" + std::string(field) + "' " + what);
  };
  auto check_range = [&](std::string_view field, std::size_t value, std::size_t max) {
    if (value == 0) fail(field, "must be > 0");
    if (value > max) {
      fail(field, "is " + std::to_string(value) + ", above the limit " + std::to_string(max));
    }
  };
  auto check_positive = [&](std::string_view field, double value) {
    if (!(value > 0.0) || !std::isfinite(value)) {
      fail(field, "must be a finite number > 0, got " + std::to_string(value));
    }
  };

  if (find_architecture(architecture) == nullptr) {
    throw UnsupportedError(
        source + ": architecture '" + architecture +
        "' is not supported; supported architectures: " + supported_architectures());
  }

  // Limits far above any real model, so that a corrupt value is caught here
  // rather than as a huge allocation later.
  check_range("vocab_size", vocab_size, std::size_t{1} << 24);
  check_range("hidden_size", hidden_size, 65536);
  check_range("intermediate_size", intermediate_size, std::size_t{1} << 20);
  check_range("num_hidden_layers", num_hidden_layers, 1024);
  check_range("num_attention_heads", num_attention_heads, 1024);
  check_range("num_key_value_heads", num_key_value_heads, 1024);
  check_range("head_dim", head_dim, 4096);
  check_range("max_position_embeddings", max_position_embeddings, std::size_t{1} << 24);
  if (num_attention_heads % num_key_value_heads != 0) {
    fail("num_key_value_heads", "(" + std::to_string(num_key_value_heads) +
                                    ") does not divide num_attention_heads (" +
                                    std::to_string(num_attention_heads) + ")");
  }
  check_positive("norm_eps", norm_eps);
  if (norm_eps >= 1.0) fail("norm_eps", "must be < 1, got " + std::to_string(norm_eps));
  if (positions == PositionKind::rope) {
    if (head_dim % 2 != 0) {
      fail("head_dim", "(" + std::to_string(head_dim) + ") must be even for rotary embeddings");
    }
    check_positive("rope_theta", rope_theta);
    if (rope_scaling.type != RopeScaling::Type::none) {
      check_positive("rope_scaling.factor", rope_scaling.factor);
    }
    if (rope_scaling.type == RopeScaling::Type::llama3) {
      check_positive("rope_scaling.low_freq_factor", rope_scaling.low_freq_factor);
      check_positive("rope_scaling.high_freq_factor", rope_scaling.high_freq_factor);
      check_positive("rope_scaling.original_max_position_embeddings",
                     rope_scaling.original_max_position_embeddings);
      if (!(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor)) {
        fail("rope_scaling", "high_freq_factor must be greater than low_freq_factor");
      }
    }
  }
  if (!sliding_layers.empty() && sliding_layers.size() != num_hidden_layers) {
    fail("layer_types", "has " + std::to_string(sliding_layers.size()) + " entries but there are " +
                            std::to_string(num_hidden_layers) + " layers");
  }
  auto check_ids = [&](std::string_view field, const std::vector<Token>& ids) {
    for (const Token id : ids) {
      if (id < 0 || static_cast<std::size_t>(id) >= vocab_size) {
        fail(field, "holds token id " + std::to_string(id) +
                        ", outside [0, vocab_size = " + std::to_string(vocab_size) + ")");
      }
    }
  };
  check_ids("bos_token_id", bos_token_ids);
  check_ids("eos_token_id", eos_token_ids);
}

std::vector<double> rope_inverse_frequencies(const ModelConfig& c) {
  const std::size_t half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (std::size_t i = 0; i < half; ++i)
    inv[i] =
        1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(c.head_dim));
  const auto& rs = c.rope_scaling;
  if (rs.type == RopeScaling::Type::linear) {
    for (auto& f : inv) f /= rs.factor;
  } else if (rs.type == RopeScaling::Type::llama3) {
    const double low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor;
    const double high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor;
    for (auto& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - smooth) * f / rs.factor + smooth * f;
      }
    }
  }
  return inv;
}

ModelConfig tinyllama_shape() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.num_hidden_layers = 22;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  c.max_position_embeddings = 2048;
  c.rope_theta = 10000.0;
  return c;
}

}  // namespace assistgen
