// ModelConfig parsing from a Hugging Face config.json. Defaults follow the HF
// config classes (LlamaConfig, MistralConfig, Qwen2Config) where a field may be
// absent; a present field of the wrong JSON type is an error, never coerced.
#include "assistgen/config.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "assistgen/error.hpp"
#include "strict_json.hpp"

namespace assistgen {

namespace {

using io::detail::json_type_name;
using nlohmann::json;

struct Architecture {
  std::string_view name;
  std::string_view model_type;
  std::size_t default_max_position_embeddings;
};
constexpr Architecture kArchitectures[] = {
    {"LlamaForCausalLM", "llama", 2048},
    {"MistralForCausalLM", "mistral", 4096 * 32},
    {"Qwen2ForCausalLM", "qwen2", 32768},
};

std::string supported_architectures() {
  std::string out;
  for (const auto& a : kArchitectures) {
    if (!out.empty()) out += ", ";
    out += a.name;
  }
  return out;
}

const Architecture* find_architecture(std::string_view name) {
  for (const auto& a : kArchitectures) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

const Architecture* find_model_type(std::string_view model_type) {
  for (const auto& a : kArchitectures) {
    if (a.model_type == model_type) return &a;
  }
  return nullptr;
}

// Typed access to the fields of one config.json, with errors that name the
// file and the field.
class Fields {
 public:
  Fields(const json& root, const std::string& source) : root_(root), source_(source) {}

  [[noreturn]] void fail(std::string_view field, const std::string& what) const {
    throw ConfigError(source_ + ": field '" + std::string(field) + "' " + what);
  }

  // The field's value, or nullptr when it is absent or null (HF treats
  // both as "use the default").
  const json* get(std::string_view field) const {
    const auto it = root_.find(field);
    if (it == root_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::uint64_t to_uint(std::string_view field, const json& j) const {
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    if (j.is_number_integer()) fail(field, "must be non-negative, got " + j.dump());
    fail(field, "must be a non-negative integer, got " + json_type_name(j) + " " + j.dump());
  }

  std::size_t size(std::string_view field) const {
    const json* j = get(field);
    if (j == nullptr) fail(field, "is missing");
    return checked_size(field, to_uint(field, *j));
  }

  std::size_t size_or(std::string_view field, std::size_t fallback) const {
    const json* j = get(field);
    return j == nullptr ? fallback : checked_size(field, to_uint(field, *j));
  }

  double number_or(std::string_view field, double fallback) const {
    const json* j = get(field);
    if (j == nullptr) return fallback;
    return number(field, *j);
  }

  double number(std::string_view field, const json& j) const {
    if (!j.is_number()) fail(field, "must be a number, got " + json_type_name(j) + " " + j.dump());
    return j.get<double>();
  }

  bool boolean_or(std::string_view field, bool fallback) const {
    const json* j = get(field);
    if (j == nullptr) return fallback;
    if (!j->is_boolean()) fail(field, "must be true or false, got " + json_type_name(*j));
    return j->get<bool>();
  }

  const std::string* string(std::string_view field) const {
    const json* j = get(field);
    if (j == nullptr) return nullptr;
    if (!j->is_string()) fail(field, "must be a string, got " + json_type_name(*j));
    return j->get_ptr<const std::string*>();
  }

  // An int, a list of ints, or null/absent (no ids).
  std::vector<Token> token_ids(std::string_view field) const {
    const json* j = get(field);
    std::vector<Token> ids;
    if (j == nullptr) return ids;
    auto one = [&](const json& v) {
      if (v.is_number_integer() && !v.is_number_unsigned()) {
        fail(field, "holds a negative token id " + v.dump());
      }
      if (!v.is_number_unsigned()) {
        fail(field, "must be a token id or a list of token ids, got " + json_type_name(v));
      }
      const auto id = v.get<std::uint64_t>();
      if (id > static_cast<std::uint64_t>(std::numeric_limits<Token>::max())) {
        fail(field, "holds token id " + v.dump() + ", too large for a 32-bit token");
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

 private:
  std::size_t checked_size(std::string_view field, std::uint64_t v) const {
    if (v > std::numeric_limits<std::size_t>::max()) fail(field, "is too large");
    return static_cast<std::size_t>(v);
  }

  const json& root_;
  const std::string& source_;
};

RopeScaling parse_rope_scaling(const Fields& fields, const std::string& source) {
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

DType parse_dtype(const Fields& fields, const std::string& source) {
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  const char* field = fields.get("torch_dtype") != nullptr ? "torch_dtype" : "dtype";
  const std::string* name = fields.string(field);
  if (name == nullptr) return DType::f32;
  if (*name == "float32") return DType::f32;
  if (*name == "float16") return DType::f16;
  if (*name == "bfloat16") return DType::bf16;
  throw UnsupportedError(source + ": field '" + field + "' is '" + *name +
                         "'; supported: float32, float16, bfloat16");
}

}  // namespace

ModelConfig ModelConfig::parse(std::string_view json_text, const std::string& source) {
  const json root = io::detail::parse_strict_json<ConfigError>(json_text, source);
  if (!root.is_object()) {
    throw ConfigError(source + ": expected a JSON object, got " + json_type_name(root));
  }
  const Fields fields(root, source);
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
    const Architecture* by_type = find_model_type(c.model_type);
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

  c.vocab_size = fields.size("vocab_size");
  c.hidden_size = fields.size("hidden_size");
  c.intermediate_size = fields.size("intermediate_size");
  c.num_hidden_layers = fields.size("num_hidden_layers");
  c.num_attention_heads = fields.size("num_attention_heads");
  c.num_key_value_heads = fields.size_or("num_key_value_heads", c.num_attention_heads);
  if (fields.get("head_dim") != nullptr) {
    c.head_dim = fields.size("head_dim");
  } else {
    if (c.num_attention_heads == 0) fields.fail("num_attention_heads", "must be > 0");
    if (c.hidden_size % c.num_attention_heads != 0) {
      fields.fail("hidden_size", "(" + std::to_string(c.hidden_size) +
                                     ") is not divisible by num_attention_heads (" +
                                     std::to_string(c.num_attention_heads) +
                                     ") and no head_dim is given");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.max_position_embeddings =
      fields.size_or("max_position_embeddings", arch->default_max_position_embeddings);
  c.rms_norm_eps = fields.number_or("rms_norm_eps", 1e-6);
  c.rope_theta = fields.number_or("rope_theta", 10000.0);
  c.rope_scaling = parse_rope_scaling(fields, source);
  c.tie_word_embeddings = fields.boolean_or("tie_word_embeddings", false);

  if (arch->model_type == "llama") {
    // LlamaConfig.attention_bias puts a bias on q, k, v and o alike.
    c.attention_bias = fields.boolean_or("attention_bias", false);
    c.o_proj_bias = c.attention_bias;
    c.mlp_bias = fields.boolean_or("mlp_bias", false);
  } else if (arch->model_type == "qwen2") {
    // Qwen2 always has q/k/v biases and never an o_proj or MLP bias.
    c.attention_bias = true;
    c.o_proj_bias = false;
  }

  if (arch->model_type == "mistral") {
    // HF's MistralConfig defaults to a 4096-position window when the field is
    // absent; an explicit null means no window.
    c.sliding_window = root.contains("sliding_window") ? fields.size_or("sliding_window", 0) : 4096;
  } else if (arch->model_type == "qwen2") {
    if (fields.boolean_or("use_sliding_window", false)) {
      c.sliding_window = fields.size_or("sliding_window", 0);
    }
  }

  if (const std::string* act = fields.string("hidden_act")) {
    c.hidden_act = *act;
  }
  c.torch_dtype = parse_dtype(fields, source);
  c.bos_token_ids = fields.token_ids("bos_token_id");
  c.eos_token_ids = fields.token_ids("eos_token_id");

  c.validate(source);
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path.string() + ": cannot open for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw IoError(path.string() + ": read failed");
  return parse(buffer.str(), path.string());
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
  if (hidden_act != "silu") {
    throw UnsupportedError(source + ": field 'hidden_act' is '" + hidden_act +
                           "'; only 'silu' is supported");
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
  if (head_dim % 2 != 0) {
    fail("head_dim", "(" + std::to_string(head_dim) + ") must be even for rotary embeddings");
  }
  check_positive("rms_norm_eps", rms_norm_eps);
  if (rms_norm_eps >= 1.0) fail("rms_norm_eps", "must be < 1, got " + std::to_string(rms_norm_eps));
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

}  // namespace assistgen
