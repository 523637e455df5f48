// ModelConfig parsing of Hugging Face config.json files: the supported
// architectures with their HF defaults, and one test per kind of bad config
// (each must name the file and the field at fault).
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "assistgen/architecture.hpp"
#include "assistgen/model_config.hpp"
#include "assistgen/error.hpp"

namespace fs = std::filesystem;
using assistgen::ConfigError;
using assistgen::DType;
using assistgen::ModelConfig;
using assistgen::RopeScaling;
using assistgen::UnsupportedError;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

constexpr const char* kSource = "models/test/config.json";

// A small but complete Llama config; tests edit one field at a time.
json llama_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": true,
    "torch_dtype": "bfloat16",
    "bos_token_id": 1,
    "eos_token_id": 2
  })");
}

ModelConfig parse(const json& j) { return ModelConfig::parse(j.dump(), kSource); }

// Parsing must throw `E` naming the file and containing every needle.
template <class E>
void require_rejects(const std::string& text, const std::vector<std::string>& needles) {
  REQUIRE_THROWS_AS(ModelConfig::parse(text, kSource), E);
  REQUIRE_THROWS_WITH(ModelConfig::parse(text, kSource), Contains(kSource));
  for (const auto& needle : needles) {
    REQUIRE_THROWS_WITH(ModelConfig::parse(text, kSource), Contains(needle));
  }
}

template <class E>
void require_rejects(const json& j, const std::vector<std::string>& needles) {
  require_rejects<E>(j.dump(), needles);
}

}  // namespace

// ---------------------------------------------------------------------------
// Valid configs

TEST_CASE("config: a Llama config is read field by field") {
  const ModelConfig c = parse(llama_config());
  CHECK(c.architecture == "LlamaForCausalLM");
  CHECK(c.model_type == "llama");
  CHECK(c.vocab_size == 512);
  CHECK(c.hidden_size == 64);
  CHECK(c.intermediate_size == 176);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.head_dim == 16);
  CHECK(c.max_position_embeddings == 256);
  CHECK(c.norm_eps == 1e-5);
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.rope_scaling.type == RopeScaling::Type::none);
  CHECK(c.tie_word_embeddings);
  CHECK_FALSE(c.attention_bias);
  CHECK_FALSE(c.o_proj_bias);
  CHECK_FALSE(c.mlp_bias);
  CHECK(c.sliding_window == 0);
  CHECK(c.hidden_act == "silu");
  CHECK(c.torch_dtype == DType::bf16);
  CHECK(c.bos_token_ids == std::vector<assistgen::Token>{1});
  CHECK(c.eos_token_ids == std::vector<assistgen::Token>{2});
}

TEST_CASE("config: HF defaults apply to absent and null fields") {
  json j = llama_config();
  for (const char* key :
       {"num_key_value_heads", "rms_norm_eps", "rope_theta", "hidden_act", "tie_word_embeddings",
        "torch_dtype", "bos_token_id", "eos_token_id", "max_position_embeddings", "model_type"}) {
    j.erase(key);
  }
  j["head_dim"] = nullptr;
  j["rope_scaling"] = nullptr;
  const ModelConfig c = parse(j);
  CHECK(c.model_type == "llama");
  CHECK(c.num_key_value_heads == 4);  // as many as attention heads
  CHECK(c.head_dim == 16);
  CHECK(c.norm_eps == 1e-6);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.max_position_embeddings == 2048);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.torch_dtype == DType::f32);
  CHECK(c.bos_token_ids.empty());
  CHECK(c.eos_token_ids.empty());
}

TEST_CASE("config: the architecture may come from model_type alone") {
  json j = llama_config();
  j.erase("architectures");
  j["model_type"] = "qwen2";
  const ModelConfig c = parse(j);
  CHECK(c.architecture == "Qwen2ForCausalLM");
  CHECK(c.model_type == "qwen2");
}

TEST_CASE("config: explicit head_dim, eos lists and the newer 'dtype' key") {
  json j = llama_config();
  j["head_dim"] = 32;  // 4 heads * 32 != hidden 64 is allowed when head_dim is explicit
  j["eos_token_id"] = {128001, 128008, 128009};
  j["vocab_size"] = 128256;
  j.erase("torch_dtype");
  j["dtype"] = "float16";
  const ModelConfig c = parse(j);
  CHECK(c.head_dim == 32);
  CHECK(c.eos_token_ids == std::vector<assistgen::Token>{128001, 128008, 128009});
  CHECK(c.torch_dtype == DType::f16);
}

TEST_CASE("config: Llama biases") {
  json j = llama_config();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  const ModelConfig c = parse(j);
  CHECK(c.attention_bias);
  CHECK(c.o_proj_bias);  // Llama's attention_bias covers o_proj too
  CHECK(c.mlp_bias);
}

TEST_CASE("config: rope_scaling variants") {
  json j = llama_config();
  SECTION("llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};
    const ModelConfig c = parse(j);
    CHECK(c.rope_scaling.type == RopeScaling::Type::llama3);
    CHECK(c.rope_scaling.factor == 8.0);
    CHECK(c.rope_scaling.low_freq_factor == 1.0);
    CHECK(c.rope_scaling.high_freq_factor == 4.0);
    CHECK(c.rope_scaling.original_max_position_embeddings == 8192);
  }
  SECTION("linear, old-style 'type' key") {
    j["rope_scaling"] = {{"type", "linear"}, {"factor", 2}};
    const ModelConfig c = parse(j);
    CHECK(c.rope_scaling.type == RopeScaling::Type::linear);
    CHECK(c.rope_scaling.factor == 2.0);
  }
  SECTION("default means none") {
    j["rope_scaling"] = {{"rope_type", "default"}};
    CHECK(parse(j).rope_scaling.type == RopeScaling::Type::none);
  }
}

TEST_CASE("config: Mistral keeps its sliding window") {
  json j = llama_config();
  j["architectures"] = {"MistralForCausalLM"};
  j["model_type"] = "mistral";
  j["sliding_window"] = 4096;
  j["attention_bias"] = true;  // not a Mistral field: ignored, as HF does
  ModelConfig c = parse(j);
  CHECK(c.architecture == "MistralForCausalLM");
  CHECK(c.sliding_window == 4096);
  CHECK_FALSE(c.attention_bias);
  j["sliding_window"] = nullptr;
  j.erase("max_position_embeddings");
  c = parse(j);
  CHECK(c.sliding_window == 0);
  CHECK(c.max_position_embeddings == 131072);
  j.erase("sliding_window");  // absent: HF's MistralConfig default window
  CHECK(parse(j).sliding_window == 4096);
}

TEST_CASE("config: Qwen2 has q/k/v bias and an opt-in sliding window") {
  json j = llama_config();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["model_type"] = "qwen2";
  j["sliding_window"] = 131072;
  j["use_sliding_window"] = false;
  ModelConfig c = parse(j);
  CHECK(c.attention_bias);
  CHECK_FALSE(c.o_proj_bias);
  CHECK_FALSE(c.mlp_bias);
  CHECK(c.sliding_window == 0);
  j["use_sliding_window"] = true;
  j["sliding_window"] = 1024;
  c = parse(j);
  CHECK(c.sliding_window == 1024);
}

TEST_CASE("config: load reads a file and names it in errors") {
  std::random_device rd;
  static std::atomic<int> counter{0};
  const fs::path dir =
      fs::temp_directory_path() / ("assistgen_test_config_" + std::to_string(::getpid()) + "_" +
                                   std::to_string(counter++) + "_" + std::to_string(rd()));
  fs::create_directories(dir);
  const fs::path path = dir / "config.json";
  { std::ofstream(path) << llama_config().dump(2); }
  CHECK(ModelConfig::load(path).hidden_size == 64);
  { std::ofstream(path) << "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": }"; }
  CHECK_THROWS_AS(ModelConfig::load(path), ConfigError);
  CHECK_THROWS_WITH(ModelConfig::load(path), Contains(path.string()));
  CHECK_THROWS_AS(ModelConfig::load(dir / "absent.json"), assistgen::IoError);
  CHECK_THROWS_WITH(ModelConfig::load(dir / "absent.json"), Contains("absent.json"));
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------
// Bad configs: one case each

TEST_CASE("config rejects a missing required field") {
  for (const char* key : {"hidden_size", "vocab_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"}) {
    INFO(key);
    json j = llama_config();
    j.erase(key);
    require_rejects<ConfigError>(j, {std::string("'") + key + "'", "missing"});
  }
}

TEST_CASE("config rejects heads not divisible by kv heads") {
  json j = llama_config();
  j["num_key_value_heads"] = 3;
  require_rejects<ConfigError>(j, {"num_key_value_heads", "does not divide"});
}

TEST_CASE("config rejects zero layers") {
  json j = llama_config();
  j["num_hidden_layers"] = 0;
  require_rejects<ConfigError>(j, {"num_hidden_layers", "> 0"});
}

TEST_CASE("config rejects a string where an int is expected") {
  json j = llama_config();
  j["hidden_size"] = "64";
  require_rejects<ConfigError>(j, {"'hidden_size'", "a string"});
}

TEST_CASE("config rejects floats and booleans where an int is expected") {
  json j = llama_config();
  j["intermediate_size"] = 176.0;
  require_rejects<ConfigError>(j, {"'intermediate_size'", "floating-point"});
  j = llama_config();
  j["num_attention_heads"] = true;
  require_rejects<ConfigError>(j, {"'num_attention_heads'", "boolean"});
  j = llama_config();
  j["tie_word_embeddings"] = 1;
  require_rejects<ConfigError>(j, {"'tie_word_embeddings'", "true or false"});
  j = llama_config();
  j["rms_norm_eps"] = "1e-5";
  require_rejects<ConfigError>(j, {"'rms_norm_eps'", "number"});
}

TEST_CASE("config rejects negative values") {
  json j = llama_config();
  j["vocab_size"] = -512;
  require_rejects<ConfigError>(j, {"'vocab_size'", "non-negative"});
  j = llama_config();
  j["eos_token_id"] = -1;
  require_rejects<ConfigError>(j, {"'eos_token_id'", "negative"});
  j = llama_config();
  j["rope_theta"] = -10000.0;
  require_rejects<ConfigError>(j, {"'rope_theta'"});
  j = llama_config();
  j["rms_norm_eps"] = 0;
  require_rejects<ConfigError>(j, {"'rms_norm_eps'"});
}

TEST_CASE("config rejects an unknown architecture, listing the supported ones") {
  json j = llama_config();
  j["architectures"] = {"FalconForCausalLM"};
  require_rejects<UnsupportedError>(j, {"FalconForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
                                        "Qwen2ForCausalLM", "GPT2LMHeadModel"});
  j.erase("architectures");
  j["model_type"] = "falcon";
  require_rejects<UnsupportedError>(j, {"'model_type'", "falcon", "LlamaForCausalLM", "GPT2LMHeadModel"});
  j.erase("model_type");
  require_rejects<ConfigError>(j, {"architectures", "model_type"});
  j = llama_config();
  j["architectures"] = "LlamaForCausalLM";
  require_rejects<ConfigError>(j, {"'architectures'", "list"});
  j = llama_config();
  j["model_type"] = "mistral";
  require_rejects<ConfigError>(j, {"'model_type'", "mistral", "LlamaForCausalLM"});
}

TEST_CASE("config rejects an unknown rope_scaling type") {
  json j = llama_config();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  require_rejects<UnsupportedError>(j, {"'rope_scaling'", "yarn"});
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  require_rejects<UnsupportedError>(j, {"'rope_scaling'", "dynamic"});
  j["rope_scaling"] = {{"factor", 2.0}};
  require_rejects<ConfigError>(j, {"'rope_scaling'", "rope_type"});
  j["rope_scaling"] = "linear";
  require_rejects<ConfigError>(j, {"'rope_scaling'"});
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  require_rejects<ConfigError>(j, {"'rope_scaling'", "low_freq_factor"});
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", "2"}};
  require_rejects<ConfigError>(j, {"rope_scaling.factor"});
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 0}};
  require_rejects<ConfigError>(j, {"rope_scaling.factor"});
}

TEST_CASE("config rejects eos or bos ids outside the vocabulary") {
  json j = llama_config();
  j["eos_token_id"] = 512;
  require_rejects<ConfigError>(j, {"'eos_token_id'", "512", "vocab_size"});
  j["eos_token_id"] = {2, 600};
  require_rejects<ConfigError>(j, {"'eos_token_id'", "600"});
  j = llama_config();
  j["bos_token_id"] = 1000;
  require_rejects<ConfigError>(j, {"'bos_token_id'", "1000"});
  j["bos_token_id"] = "1";
  require_rejects<ConfigError>(j, {"'bos_token_id'"});
  j["bos_token_id"] = std::int64_t{1} << 40;
  require_rejects<ConfigError>(j, {"'bos_token_id'", "32-bit"});
}

TEST_CASE("config rejects hidden_act other than silu") {
  json j = llama_config();
  j["hidden_act"] = "gelu";
  require_rejects<UnsupportedError>(j, {"'hidden_act'", "gelu"});
}

TEST_CASE("config rejects invalid JSON") {
  require_rejects<ConfigError>(std::string("{\"hidden_size\": 64,"), {"invalid JSON"});
  require_rejects<ConfigError>(std::string(""), {"invalid JSON"});
  require_rejects<ConfigError>(std::string("[1, 2]"), {"JSON object"});
  // Two values for one field: which one HF would use is not obvious, so refuse.
  require_rejects<ConfigError>(
      std::string(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 1, "vocab_size": 2})"),
      {"duplicate", "'vocab_size'"});
}

TEST_CASE("config rejects absurd sizes") {
  const std::vector<std::pair<const char*, std::uint64_t>> cases = {
      {"num_hidden_layers", 1025},
      {"vocab_size", (1u << 24) + 1},
      {"hidden_size", 65536 * 2},
      {"num_attention_heads", 2048},
      {"intermediate_size", 1u << 21},
      {"max_position_embeddings", std::uint64_t{1} << 40},
      {"hidden_size", std::uint64_t{1} << 63}};
  for (const auto& [key, value] : cases) {
    INFO(key);
    json j = llama_config();
    j[key] = value;
    // Keep the other checks satisfied so that the limit is what fails.
    if (std::string(key) == "num_attention_heads") j["num_key_value_heads"] = value;
    j["head_dim"] = 16;
    require_rejects<ConfigError>(j, {std::string("'") + key + "'"});
  }
}

TEST_CASE("config rejects head sizes that RoPE or the split cannot use") {
  json j = llama_config();
  j["hidden_size"] = 66;  // 66 / 4 heads is not an integer
  require_rejects<ConfigError>(j, {"'hidden_size'", "num_attention_heads"});
  j = llama_config();
  j["head_dim"] = 15;
  require_rejects<ConfigError>(j, {"'head_dim'", "even"});
  j = llama_config();
  j["head_dim"] = 0;
  require_rejects<ConfigError>(j, {"'head_dim'"});
  j = llama_config();
  j["num_key_value_heads"] = 0;
  require_rejects<ConfigError>(j, {"'num_key_value_heads'"});
}

TEST_CASE("config rejects an unsupported torch_dtype") {
  json j = llama_config();
  j["torch_dtype"] = "float64";
  require_rejects<UnsupportedError>(j, {"'torch_dtype'", "float64"});
  j["torch_dtype"] = 16;
  require_rejects<ConfigError>(j, {"'torch_dtype'"});
}

TEST_CASE("config validate checks a hand-built config") {
  ModelConfig c = parse(llama_config());
  CHECK_NOTHROW(c.validate("mine"));
  c.num_key_value_heads = 3;
  CHECK_THROWS_WITH(c.validate("mine"), Contains("mine") && Contains("num_key_value_heads"));
  c = parse(llama_config());
  c.architecture = "FalconForCausalLM";
  CHECK_THROWS_AS(c.validate("mine"), UnsupportedError);
}

// ---------------------------------------------------------------------------
// The architecture registry and GPT-2 / Qwen2 layouts

namespace {

// gpt2's config.json as published on the Hugging Face hub (distilgpt2 differs
// in n_layer and a few training-only keys).
json gpt2_config() {
  return json::parse(R"({
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "summary_activation": null,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": true,
    "summary_type": "cls_index",
    "summary_use_proj": true,
    "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
    "vocab_size": 50257
  })");
}

}  // namespace

TEST_CASE("registry: lists every family once and finds them by name and model_type") {
  std::vector<std::string> names;
  for (const auto* a : assistgen::architectures()) names.emplace_back(a->name);
  CHECK(names == std::vector<std::string>{"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                          "GPT2LMHeadModel"});
  CHECK(assistgen::find_architecture("GPT2LMHeadModel") == assistgen::find_architecture_by_model_type("gpt2"));
  CHECK(assistgen::find_architecture("FalconForCausalLM") == nullptr);
  CHECK(assistgen::supported_architectures() ==
        "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel");
  ModelConfig c = parse(llama_config());
  c.architecture = "FalconForCausalLM";
  CHECK_THROWS_WITH(assistgen::architecture_of(c), Contains("FalconForCausalLM") && Contains("GPT2LMHeadModel"));
}

TEST_CASE("config: GPT-2's own field names, read as HF's GPT2Config does") {
  const ModelConfig c = parse(gpt2_config());
  CHECK(c.architecture == "GPT2LMHeadModel");
  CHECK(c.model_type == "gpt2");
  CHECK(c.vocab_size == 50257);
  CHECK(c.hidden_size == 768);
  CHECK(c.num_hidden_layers == 12);
  CHECK(c.num_attention_heads == 12);
  CHECK(c.num_key_value_heads == 12);
  CHECK(c.head_dim == 64);
  CHECK(c.intermediate_size == 3072);  // n_inner absent: 4 * n_embd
  CHECK(c.max_position_embeddings == 1024);
  CHECK(c.norm == assistgen::NormKind::layer_norm);
  CHECK(c.norm_eps == 1e-5);
  CHECK(c.positions == assistgen::PositionKind::learned);
  CHECK(c.activation == assistgen::Activation::gelu_tanh);
  CHECK(c.hidden_act == "gelu_new");
  CHECK_FALSE(c.gated_mlp);
  CHECK(c.attention_bias);
  CHECK(c.o_proj_bias);
  CHECK(c.mlp_bias);
  CHECK(c.tie_word_embeddings);  // PretrainedConfig's default
  CHECK(c.sliding_window == 0);
  CHECK(c.bos_token_ids == std::vector<assistgen::Token>{50256});
  CHECK(c.eos_token_ids == std::vector<assistgen::Token>{50256});
}

TEST_CASE("config: GPT-2 defaults, n_inner and the unsupported variants") {
  json j = gpt2_config();
  for (const char* key : {"n_embd", "n_head", "n_layer", "n_positions", "layer_norm_epsilon",
                          "activation_function", "bos_token_id", "eos_token_id", "vocab_size"})
    j.erase(key);
  ModelConfig c = parse(j);
  CHECK(c.hidden_size == 768);
  CHECK(c.num_hidden_layers == 12);
  CHECK(c.max_position_embeddings == 1024);
  CHECK(c.vocab_size == 50257);
  CHECK(c.activation == assistgen::Activation::gelu_tanh);
  CHECK(c.bos_token_ids == std::vector<assistgen::Token>{50256});  // GPT2Config's default

  j = gpt2_config();
  j["n_inner"] = 1000;
  j["n_layer"] = 6;  // distilgpt2
  j["eos_token_id"] = nullptr;
  c = parse(j);
  CHECK(c.intermediate_size == 1000);
  CHECK(c.num_hidden_layers == 6);
  CHECK(c.eos_token_ids.empty());
  j["n_inner"] = nullptr;
  CHECK(parse(j).intermediate_size == 3072);

  j = gpt2_config();
  j["activation_function"] = "gelu_pytorch_tanh";
  CHECK(parse(j).activation == assistgen::Activation::gelu_tanh);
  j["activation_function"] = "relu";
  require_rejects<UnsupportedError>(j, {"'activation_function'", "relu", "gelu_new"});
  j = gpt2_config();
  j["scale_attn_by_inverse_layer_idx"] = true;
  require_rejects<UnsupportedError>(j, {"scale_attn_by_inverse_layer_idx"});
  j = gpt2_config();
  j["scale_attn_weights"] = false;
  require_rejects<UnsupportedError>(j, {"scale_attn_weights"});
  j = gpt2_config();
  j["n_head"] = 7;
  require_rejects<ConfigError>(j, {"'n_embd'", "n_head"});
  j = gpt2_config();
  j["n_positions"] = 0;
  require_rejects<ConfigError>(j, {"max_position_embeddings"});
  j = gpt2_config();
  j["layer_norm_epsilon"] = 0;
  require_rejects<ConfigError>(j, {"'layer_norm_epsilon'"});
  j = gpt2_config();
  j["n_embd"] = "768";
  require_rejects<ConfigError>(j, {"'n_embd'"});
}

TEST_CASE("config: Qwen2's window applies only to the layers it names") {
  json j = llama_config();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["model_type"] = "qwen2";
  j["num_hidden_layers"] = 3;
  j["use_sliding_window"] = true;
  j["sliding_window"] = 8;
  j["max_window_layers"] = 1;  // layers >= 1 slide
  ModelConfig c = parse(j);
  CHECK(c.sliding_window == 8);
  CHECK(c.window_of_layer(0) == 0);
  CHECK(c.window_of_layer(1) == 8);
  CHECK(c.window_of_layer(2) == 8);
  j.erase("max_window_layers");  // default 28: no layer of three slides
  c = parse(j);
  CHECK(c.window_of_layer(2) == 0);
  j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};
  c = parse(j);
  CHECK(c.window_of_layer(0) == 8);
  CHECK(c.window_of_layer(1) == 0);
  CHECK(c.window_of_layer(2) == 8);
  j["use_sliding_window"] = false;  // then layer_types cannot turn the window on
  CHECK(parse(j).window_of_layer(0) == 0);
  j["use_sliding_window"] = true;
  j["layer_types"] = {"sliding_attention", "full_attention"};
  require_rejects<ConfigError>(j, {"'layer_types'", "3"});
  j["layer_types"] = {"sliding_attention", "full_attention", "chunked_attention"};
  require_rejects<ConfigError>(j, {"'layer_types'", "chunked_attention"});
}

TEST_CASE("config: a Mistral window applies to every layer") {
  json j = llama_config();
  j["architectures"] = {"MistralForCausalLM"};
  j["model_type"] = "mistral";
  j["sliding_window"] = 8;
  const ModelConfig c = parse(j);
  CHECK(c.window_of_layer(0) == 8);
  CHECK(c.window_of_layer(1) == 8);
  CHECK(c.positions == assistgen::PositionKind::rope);
  CHECK(c.norm == assistgen::NormKind::rms_norm);
  CHECK(c.gated_mlp);
}
