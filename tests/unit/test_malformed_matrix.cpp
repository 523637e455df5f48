// The malformed-input and misuse matrix: one TEST_CASE per hostile file or
// bad call, each required to end in a specific assistgen::Error whose message
// names what is wrong, never a crash, a std:: exception or a silent success.
// Rows are grouped by layer: safetensors bytes, model checkpoints against their
// config, config.json values, tokenizer ids, and calls into models, caches and
// decoders. Every check here runs in Release builds (none is an assert).
// Related rows that already live elsewhere: tests/unit/test_safetensors.cpp
// (gaps, trailing bytes, bad metadata, shards), test_config.cpp (types,
// unknown architectures), test_tokenizer.cpp (malformed tokenizer.json).
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "assistgen/model_config.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/error.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/io/safetensors.hpp"
#include "assistgen/kv_cache.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/tokenizer.hpp"

using namespace assistgen;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kModels = fs::path(ASSISTGEN_TEST_DATA_DIR) / "models";
const fs::path kTokenizers = fs::path(ASSISTGEN_TEST_DATA_DIR) / "tokenizers";

// Runs `f` and requires an exception of exactly the family E whose message
// contains every needle. Any other exception, or none, fails the row.
template <class E, class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
  } catch (const E& e) {
    INFO("message: " << e.what());
    for (const auto& n : needles) CHECK_THAT(e.what(), Catch::Contains(n));
    return;
  } catch (const std::exception& e) {
    FAIL("wrong exception type, message: " << e.what());
  }
  FAIL("no exception");
}

// A directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("assistgen-matrix-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a raw header text and a data section; the length
// field is the header's size unless `length` overrides it.
std::string st_bytes(const std::string& header, const std::string& data,
                     std::optional<std::uint64_t> length = std::nullopt) {
  return le64(length.value_or(header.size())) + header + data;
}

// Opens `bytes` as a safetensors file in `dir` and expects a FormatError.
void expect_st_error(const std::string& bytes, std::initializer_list<std::string> needles) {
  TempDir dir;
  const fs::path p = dir.path / "model.safetensors";
  write_file(p, bytes);
  expect_error<FormatError>([&] { io::SafetensorsFile f(p); }, needles);
}

// A copy of the test model `name` whose tensors went through `edit` (which
// may drop, reshape or retype them; `store` keeps new data alive) and whose
// config.json went through `edit_config`.
struct EditedModel {
  TempDir dir;
  EditedModel(const std::string& name, const std::function<void(std::vector<io::TensorView>&,
                                                                std::vector<std::vector<std::byte>>& store)>& edit,
              const std::function<void(json&)>& edit_config = {}) {
    const fs::path src = kModels / name;
    std::ifstream in(src / "config.json");
    json cfg = json::parse(in);
    if (edit_config) edit_config(cfg);
    write_file(dir.path / "config.json", cfg.dump(2));
    const io::Checkpoint ck(src);
    std::vector<io::TensorView> tensors;
    for (const auto& n : ck.names()) tensors.push_back(ck.tensor(n));
    std::vector<std::vector<std::byte>> store;
    store.reserve(16);
    edit(tensors, store);
    io::write_safetensors(dir.path / "model.safetensors", tensors);
  }
  const fs::path& path() const { return dir.path; }
};

io::TensorView& find(std::vector<io::TensorView>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return t;
  FAIL("test model has no tensor " << name);
  throw;  // unreachable
}

// llama-draft: vocab 256, hidden 32, intermediate 64, 1 layer, 4 heads of 8, 2 kv heads.
const cpu::Transformer& draft_model() {
  static const cpu::Transformer m = cpu::Transformer::load(kModels / "llama-draft");
  return m;
}
const cpu::Transformer& target_model() {
  static const cpu::Transformer m = cpu::Transformer::load(kModels / "llama-gqa");
  return m;
}

ModelConfig small_config(std::size_t vocab) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  return c;
}

json base_config() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"vocab_size", 256},
              {"hidden_size", 64},
              {"intermediate_size", 128},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 8},
              {"num_key_value_heads", 2},
              {"eos_token_id", 2}};
}

void expect_config_error(const std::function<void(json&)>& edit, std::initializer_list<std::string> needles) {
  json j = base_config();
  edit(j);
  const std::string text = j.dump();
  expect_error<ConfigError>([&] { ModelConfig::parse(text, "matrix/config.json"); }, needles);
}

// A BPE tokenizer.json of three tokens; `edit` breaks it.
std::string tokenizer_json(const std::function<void(json&)>& edit = {}) {
  json j = {{"version", "1.0"},
            {"added_tokens", json::array({{{"id", 3},
                                           {"content", "<eos>"},
                                           {"single_word", false},
                                           {"lstrip", false},
                                           {"rstrip", false},
                                           {"normalized", false},
                                           {"special", true}}})},
            {"normalizer", nullptr},
            {"pre_tokenizer", nullptr},
            {"post_processor", nullptr},
            {"decoder", nullptr},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}},
              {"merges", json::array({"a b"})}}}};
  if (edit) edit(j);
  return j.dump();
}

const Tokenizer& gpt2() {
  static const Tokenizer t = Tokenizer::load(kTokenizers / "gpt2-8k");
  return t;
}

}  // namespace

// ===========================================================================
// Safetensors bytes

TEST_CASE("matrix: safetensors truncated in the data section", "[malformed][safetensors]") {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  expect_st_error(st_bytes(header, std::string(16, '\1')).substr(0, 8 + header.size() + 10),
                  {"tensor 'w'", "out of bounds", "10 bytes"});
}

TEST_CASE("matrix: safetensors truncated inside the header", "[malformed][safetensors]") {
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_st_error(st_bytes(header, "abcd").substr(0, 8 + 20), {"header length", "runs past the end"});
}

TEST_CASE("matrix: safetensors with a zero header length and nothing else", "[malformed][safetensors]") {
  expect_st_error(le64(0), {"header", "invalid JSON"});
}

TEST_CASE("matrix: safetensors header length one past the end", "[malformed][safetensors]") {
  const std::string header = "{}";
  expect_st_error(st_bytes(header, "", header.size() + 1), {"header length 3", "runs past the end"});
}

TEST_CASE("matrix: safetensors header length 2^64 - 1", "[malformed][safetensors]") {
  expect_st_error(st_bytes("{}", "", std::numeric_limits<std::uint64_t>::max()), {"header length", "limit"});
}

TEST_CASE("matrix: safetensors header length whose 8 + length wraps to 0", "[malformed][safetensors]") {
  expect_st_error(st_bytes("{}", "", std::uint64_t{0} - 8), {"header length"});
}

TEST_CASE("matrix: safetensors header length just over the 100 MB cap on a tiny file",
          "[malformed][safetensors]") {
  expect_st_error(st_bytes("{}", "", 100'000'001), {"header length 100000001", "100 MB"});
}

TEST_CASE("matrix: safetensors tensors partially overlapping", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                           "123456"),
                  {"tensor 'b'", "overlap tensor 'a'"});
}

TEST_CASE("matrix: safetensors two tensors on the same bytes", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                           "1234"),
                  {"overlap"});
}

TEST_CASE("matrix: safetensors data offsets past the end of the data section", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})", "12345678"),
                  {"tensor 'a'", "[4, 12]", "out of bounds", "8 bytes"});
}

TEST_CASE("matrix: safetensors offsets that wrap when added to the data start", "[malformed][safetensors]") {
  // begin + data_start overflows 64 bits; end - begin matches the shape.
  const std::uint64_t begin = std::numeric_limits<std::uint64_t>::max() - 7;
  expect_st_error(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[)" + std::to_string(begin) + "," +
                               std::to_string(begin + 4) + "]}}",
                           "1234"),
                  {"tensor 'a'", "out of bounds"});
}

TEST_CASE("matrix: safetensors offsets with begin after end (negative span)", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551612,0]}})", "1234"),
                  {"tensor 'a'", "is after end"});
}

TEST_CASE("matrix: safetensors offsets beyond 64 bits or negative", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,18446744073709551620]}})", "1234"),
                  {"tensor 'a'", "data_offsets"});
  expect_st_error(st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}})", "1234"),
                  {"tensor 'a'", "non-negative"});
}

TEST_CASE("matrix: safetensors element count overflowing 64 bits", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"a":{"dtype":"U8","shape":[4294967296,4294967297],"data_offsets":[0,0]}})", ""),
                  {"tensor 'a'", "overflows"});
}

TEST_CASE("matrix: safetensors byte count overflowing 64 bits (element count fits)", "[malformed][safetensors]") {
  // 2^62 elements fit in 64 bits, 2^62 * 4 bytes do not.
  expect_st_error(st_bytes(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""),
                  {"tensor 'a'", "overflows"});
}

TEST_CASE("matrix: safetensors zero-sized dimension with a non-empty byte span", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"a":{"dtype":"F32","shape":[0,16],"data_offsets":[0,64]}})", std::string(64, 'x')),
                  {"tensor 'a'", "span 64 bytes", "needs 0"});
}

TEST_CASE("matrix: safetensors dtype vs byte size mismatch", "[malformed][safetensors]") {
  // Four F16 elements are 8 bytes, not 16 (the size of four F32).
  expect_st_error(st_bytes(R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}})", std::string(16, '\0')),
                  {"tensor 'h'", "span 16 bytes", "F16 needs 8"});
}

TEST_CASE("matrix: safetensors duplicate tensor name with another dtype", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("w":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})",
                           "12345678"),
                  {"duplicate key 'w'"});
}

TEST_CASE("matrix: safetensors header that is not valid UTF-8", "[malformed][safetensors]") {
  expect_st_error(st_bytes("{\"w\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "x"),
                  {"header", "invalid JSON"});
}

TEST_CASE("matrix: safetensors header nested 100000 deep", "[malformed][safetensors]") {
  expect_st_error(st_bytes(std::string(100000, '['), ""), {"header"});
}

TEST_CASE("matrix: safetensors shape given as a string", "[malformed][safetensors]") {
  expect_st_error(st_bytes(R"({"a":{"dtype":"U8","shape":"4","data_offsets":[0,4]}})", "1234"),
                  {"tensor 'a'", "shape is a string"});
}

TEST_CASE("matrix: safetensors integer tensor read as float", "[malformed][safetensors]") {
  TempDir dir;
  const fs::path p = dir.path / "m.safetensors";
  write_file(p, st_bytes(R"({"ids":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  const io::SafetensorsFile f(p);
  expect_error<FormatError>([&] { (void)f.tensor("ids").to_float(); }, {"tensor 'ids'", "cannot be converted"});
}

// ===========================================================================
// Checkpoints against their config (cpu::Transformer::load)

TEST_CASE("matrix: checkpoint missing a layer's weight", "[malformed][checkpoint]") {
  const EditedModel m("llama-draft", [](auto& ts, auto&) {
    std::erase_if(ts, [](const io::TensorView& t) { return t.name == "model.layers.0.mlp.down_proj.weight"; });
  });
  expect_error<FormatError>([&] { cpu::Transformer::load(m.path()); },
                            {"model.layers.0.mlp.down_proj.weight"});
}

TEST_CASE("matrix: checkpoint with fewer layers than the config", "[malformed][checkpoint]") {
  const EditedModel m(
      "llama-draft", [](auto&, auto&) {}, [](json& c) { c["num_hidden_layers"] = 2; });
  expect_error<FormatError>([&] { cpu::Transformer::load(m.path()); }, {"model.layers.1."});
}

TEST_CASE("matrix: checkpoint tensor shape that contradicts the config", "[malformed][checkpoint]") {
  const EditedModel m("llama-draft", [](auto& ts, auto&) {
    auto& k = find(ts, "model.layers.0.self_attn.k_proj.weight");
    k.shape = {k.shape[1], k.shape[0]};  // transposed: same bytes, wrong layout
  });
  expect_error<FormatError>([&] { cpu::Transformer::load(m.path()); },
                            {"model.layers.0.self_attn.k_proj.weight", "[32, 16]", "[16, 32]"});
}

TEST_CASE("matrix: checkpoint weight with a zero-sized dimension", "[malformed][checkpoint]") {
  const EditedModel m("llama-draft", [](auto& ts, auto&) {
    auto& n = find(ts, "model.norm.weight");
    n.shape = {0};
    n.data = {};
  });
  expect_error<FormatError>([&] { cpu::Transformer::load(m.path()); }, {"model.norm.weight", "[0]"});
}

TEST_CASE("matrix: checkpoint weight stored as integers", "[malformed][checkpoint]") {
  const EditedModel m("llama-draft", [](auto& ts, auto&) {
    find(ts, "model.layers.0.input_layernorm.weight").dtype = DType::i32;
  });
  expect_error<FormatError>([&] { cpu::Transformer::load(m.path()); },
                            {"model.layers.0.input_layernorm.weight", "cannot be converted"});
}

TEST_CASE("matrix: checkpoint with a tensor the config does not describe", "[malformed][checkpoint]") {
  const EditedModel m("llama-draft", [](auto& ts, auto& store) {
    store.emplace_back(4 * 32);
    io::TensorView extra;
    extra.name = "model.layers.0.self_attn.o_proj.bias";
    extra.dtype = DType::f32;
    extra.shape = {32};
    extra.data = store.back();
    ts.push_back(extra);
  });
  expect_error<FormatError>([&] { cpu::Transformer::load(m.path()); },
                            {"unexpected tensor 'model.layers.0.self_attn.o_proj.bias'"});
}

TEST_CASE("matrix: model directory whose config.json is out of range", "[malformed][checkpoint]") {
  const EditedModel m(
      "llama-draft", [](auto&, auto&) {}, [](json& c) { c["num_key_value_heads"] = 3; });
  expect_error<ConfigError>([&] { cpu::Transformer::load(m.path()); }, {"config.json", "num_key_value_heads"});
}

// ===========================================================================
// config.json values

TEST_CASE("matrix: config with 0 attention heads and no head_dim", "[malformed][config]") {
  expect_config_error([](json& j) { j["num_attention_heads"] = 0; }, {"num_attention_heads", "must be > 0"});
}

TEST_CASE("matrix: config with 0 attention heads and an explicit head_dim", "[malformed][config]") {
  expect_config_error(
      [](json& j) {
        j["num_attention_heads"] = 0;
        j["head_dim"] = 8;
      },
      {"num_attention_heads", "must be > 0"});
}

TEST_CASE("matrix: config with 0 kv heads", "[malformed][config]") {
  expect_config_error([](json& j) { j["num_key_value_heads"] = 0; }, {"num_key_value_heads", "must be > 0"});
}

TEST_CASE("matrix: config with more kv heads than heads", "[malformed][config]") {
  expect_config_error([](json& j) { j["num_key_value_heads"] = 16; }, {"num_key_value_heads", "does not divide"});
}

TEST_CASE("matrix: config with a negative intermediate size", "[malformed][config]") {
  expect_config_error([](json& j) { j["intermediate_size"] = -128; }, {"intermediate_size", "non-negative"});
}

TEST_CASE("matrix: config with a negative vocabulary size", "[malformed][config]") {
  expect_config_error([](json& j) { j["vocab_size"] = -1; }, {"vocab_size", "non-negative"});
}

TEST_CASE("matrix: config with a zero vocabulary size", "[malformed][config]") {
  expect_config_error([](json& j) {
    j["vocab_size"] = 0;
    j.erase("eos_token_id");
  }, {"vocab_size", "must be > 0"});
}

TEST_CASE("matrix: config with 2^64 - 1 layers", "[malformed][config]") {
  expect_config_error([](json& j) { j["num_hidden_layers"] = std::numeric_limits<std::uint64_t>::max(); },
                      {"num_hidden_layers", "above the limit"});
}

TEST_CASE("matrix: config with a layer count past 64 bits (a float in JSON)", "[malformed][config]") {
  json j = base_config();
  std::string text = j.dump();
  const std::string from = "\"num_hidden_layers\":2";
  REQUIRE(text.find(from) != std::string::npos);
  text.replace(text.find(from), from.size(), "\"num_hidden_layers\":18446744073709551616");
  expect_error<ConfigError>([&] { ModelConfig::parse(text, "matrix/config.json"); },
                            {"num_hidden_layers", "non-negative integer"});
}

TEST_CASE("matrix: config with 1025 layers (absurd)", "[malformed][config]") {
  expect_config_error([](json& j) { j["num_hidden_layers"] = 1025; }, {"num_hidden_layers", "1025", "limit"});
}

TEST_CASE("matrix: config with eos id equal to the vocabulary size", "[malformed][config]") {
  expect_config_error([](json& j) { j["eos_token_id"] = 256; }, {"eos_token_id", "256", "vocab_size = 256"});
}

TEST_CASE("matrix: config with one eos id of a list out of range", "[malformed][config]") {
  expect_config_error([](json& j) { j["eos_token_id"] = {2, 1000}; }, {"eos_token_id", "1000"});
}

TEST_CASE("matrix: config with a negative bos id", "[malformed][config]") {
  expect_config_error([](json& j) { j["bos_token_id"] = -1; }, {"bos_token_id", "negative"});
}

TEST_CASE("matrix: config with a hidden size the heads do not divide", "[malformed][config]") {
  expect_config_error([](json& j) { j["hidden_size"] = 60; }, {"hidden_size", "not divisible"});
}

TEST_CASE("matrix: config with rope_theta 0 and rms_norm_eps >= 1", "[malformed][config]") {
  expect_config_error([](json& j) { j["rope_theta"] = 0; }, {"rope_theta", "> 0"});
  expect_config_error([](json& j) { j["rms_norm_eps"] = 1.5; }, {"rms_norm_eps", "1.5"});
}

TEST_CASE("matrix: config with max_position_embeddings 0", "[malformed][config]") {
  expect_config_error([](json& j) { j["max_position_embeddings"] = 0; }, {"max_position_embeddings", "> 0"});
}

// ===========================================================================
// Tokenizer ids

TEST_CASE("matrix: tokenizer added token with a negative id", "[malformed][tokenizer]") {
  const std::string text = tokenizer_json([](json& j) { j["added_tokens"][0]["id"] = -1; });
  expect_error<FormatError>([&] { Tokenizer::from_json(text); }, {"added_tokens", "-1", "out of range"});
}

TEST_CASE("matrix: tokenizer added token id past 32 bits", "[malformed][tokenizer]") {
  const std::string text = tokenizer_json([](json& j) { j["added_tokens"][0]["id"] = 4294967296LL; });
  expect_error<FormatError>([&] { Tokenizer::from_json(text); }, {"4294967296", "out of range"});
}

TEST_CASE("matrix: tokenizer id far past the number of entries", "[malformed][tokenizer]") {
  // A table of 2^31 entries would be allocated for this file.
  const std::string text = tokenizer_json([](json& j) { j["added_tokens"][0]["id"] = 2147483647; });
  expect_error<FormatError>([&] { Tokenizer::from_json(text); }, {"2147483647", "out of range"});
}

TEST_CASE("matrix: tokenizer template naming an id outside the vocabulary", "[malformed][tokenizer]") {
  const std::string text = tokenizer_json([](json& j) {
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<eos>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array()},
        {"special_tokens", {{"<eos>", {{"id", "<eos>"}, {"ids", {99}}, {"tokens", {"<eos>"}}}}}}};
  });
  expect_error<FormatError>([&] { Tokenizer::from_json(text); }, {"post_processor", "99"});
}

TEST_CASE("matrix: tokenizer_config naming a bos token that does not exist", "[malformed][tokenizer]") {
  const std::string text = tokenizer_json();
  expect_error<FormatError>([&] { Tokenizer::from_json(text, R"({"bos_token":"<nope>"})"); }, {"'<nope>'"});
}

TEST_CASE("matrix: decode of ids out of range", "[malformed][tokenizer]") {
  const Tokenizer& t = gpt2();
  const std::vector<Token> negative{10, -1};
  expect_error<InvalidArgument>([&] { (void)t.decode(negative); }, {"token id -1"});
  const std::vector<Token> past_end{static_cast<Token>(t.vocab_size())};
  expect_error<InvalidArgument>([&] { (void)t.decode(past_end); }, {std::to_string(t.vocab_size())});
  expect_error<InvalidArgument>([&] { (void)t.id_to_token(std::numeric_limits<Token>::max()); },
                                {"2147483647"});
}

TEST_CASE("matrix: streaming detokenizer fed an id out of range", "[malformed][tokenizer]") {
  StreamingDetokenizer s = gpt2().streaming();
  (void)s.push(40);
  expect_error<InvalidArgument>([&] { (void)s.push(std::numeric_limits<Token>::min()); }, {"-2147483648"});
}

// ===========================================================================
// Calls into models, caches and decoders

TEST_CASE("matrix: forward with a negative token id", "[malformed][runtime]") {
  const auto& m = draft_model();
  auto cache = m.make_cache(8);
  const std::vector<Token> toks{1, -1};
  expect_error<InvalidArgument>([&] { m.forward(toks, cache); }, {"token id -1", "position 1"});
  CHECK(cache.size() == 0);
}

TEST_CASE("matrix: forward with a token id equal to the vocabulary size", "[malformed][runtime]") {
  const auto& m = draft_model();
  auto cache = m.make_cache(8);
  const std::vector<Token> toks{256};
  expect_error<InvalidArgument>([&] { m.forward(toks, cache); }, {"256", "vocabulary size 256"});
  CHECK(cache.size() == 0);
}

TEST_CASE("matrix: forward with no tokens", "[malformed][runtime]") {
  const auto& m = draft_model();
  auto cache = m.make_cache(8);
  expect_error<InvalidArgument>([&] { m.forward({}, cache); }, {"no tokens"});
}

TEST_CASE("matrix: forward of more tokens than the cache holds", "[malformed][runtime]") {
  const auto& m = draft_model();
  auto cache = m.make_cache(4);
  const std::vector<Token> three{1, 2, 3};
  m.forward(three, cache);
  expect_error<CapacityError>([&] { m.forward(three, cache); }, {"appending 3", "capacity 4"});
  CHECK(cache.size() == 3);
}

TEST_CASE("matrix: forward with a cache made by a model of another shape", "[malformed][runtime]") {
  auto foreign = target_model().make_cache(8);
  const std::vector<Token> toks{1};
  expect_error<InvalidArgument>([&] { draft_model().forward(toks, foreign); }, {"another shape"});
}

TEST_CASE("matrix: truncate beyond the cache size", "[malformed][runtime]") {
  const auto& m = draft_model();
  auto cache = m.make_cache(8);
  const std::vector<Token> toks{1, 2, 3};
  m.forward(toks, cache);
  cache.truncate(2);
  expect_error<InvalidArgument>([&] { cache.truncate(3); }, {"truncate(3)", "beyond size 2"});
  CHECK(cache.size() == 2);
}

TEST_CASE("matrix: make_cache with capacity 0", "[malformed][runtime]") {
  expect_error<InvalidArgument>([&] { (void)draft_model().make_cache(0); }, {"at least 1"});
}

TEST_CASE("matrix: make_cache whose byte count overflows 64 bits", "[malformed][runtime][memory]") {
  const std::size_t before = kv_memory_in_use();
  expect_error<CapacityError>([&] { (void)draft_model().make_cache(std::size_t{1} << 62); }, {"overflows"});
  CHECK(kv_memory_in_use() == before);
}

TEST_CASE("matrix: make_cache larger than the machine's memory", "[malformed][runtime][memory]") {
  // 2^40 positions of this model are 128 TiB: refused before allocating.
  const std::size_t before = kv_memory_in_use();
  expect_error<CapacityError>([&] { (void)draft_model().make_cache(std::size_t{1} << 40); },
                              {"capacity 1099511627776", "KV memory limit"});
  CHECK(kv_memory_in_use() == before);
}

TEST_CASE("matrix: caches beyond a process-wide KV memory limit", "[malformed][runtime][memory]") {
  const auto& m = draft_model();
  const std::size_t one = m.make_cache(64).bytes();
  struct Restore {
    ~Restore() { set_kv_memory_limit(0); }
  } restore;
  set_kv_memory_limit(kv_memory_in_use() + one + one / 2);
  auto first = m.make_cache(64);
  expect_error<CapacityError>([&] { (void)m.make_cache(64); }, {"KV memory limit"});
  {
    auto dropped = std::move(first);  // freeing a cache returns its bytes
  }
  CHECK_NOTHROW(m.make_cache(64));
}

TEST_CASE("matrix: KvCacheManager past its byte bound", "[malformed][runtime][memory]") {
  const auto& m = draft_model();
  const std::size_t one = m.make_cache(16).bytes();
  KvCacheManager mgr(2 * one);
  mgr.acquire(m, 1, 16);
  mgr.acquire(m, 2, 16);
  expect_error<CapacityError>([&] { mgr.acquire(m, 3, 16); }, {"would exceed the bound"});
  CHECK(mgr.live_count() == 2);
  // Pooled caches give way to a new one that would not fit otherwise.
  mgr.release(m, 1);
  mgr.release(m, 2);
  CHECK_NOTHROW(mgr.acquire(m, 4, 32));
  CHECK(mgr.bytes_total() <= 2 * one);
}

TEST_CASE("matrix: autoregressive prompt with a token out of range", "[malformed][runtime]") {
  AutoregressiveDecoder dec(draft_model(), GenerationConfig{.max_new_tokens = 4});
  const std::vector<Token> prompt{1, 2, 300};
  expect_error<InvalidArgument>([&] { dec.generate(prompt); }, {"token 300", "position 2"});
}

TEST_CASE("matrix: speculative prompt with a token out of range", "[malformed][runtime]") {
  SpeculativeDecoder dec(draft_model(), target_model(), GenerationConfig{.max_new_tokens = 4});
  const std::vector<Token> prompt{-7};
  expect_error<InvalidArgument>([&] { dec.generate(prompt); }, {"token -7", "target vocabulary"});
}

TEST_CASE("matrix: speculative prompt longer than the cache", "[malformed][runtime]") {
  SpeculativeDecoder dec(draft_model(), target_model(), GenerationConfig{.max_new_tokens = 4, .cache_capacity = 4});
  const std::vector<Token> prompt{1, 2, 3, 4, 5};
  expect_error<CapacityError>([&] { dec.generate(prompt); }, {"prompt of 5 tokens", "cache_capacity 4"});
}

TEST_CASE("matrix: autoregressive prompt longer than the cache", "[malformed][runtime]") {
  AutoregressiveDecoder dec(target_model(), GenerationConfig{.max_new_tokens = 4, .cache_capacity = 2});
  const std::vector<Token> prompt{1, 2, 3};
  expect_error<CapacityError>([&] { dec.generate(prompt); }, {"prompt of 3 tokens", "cache_capacity 2"});
}

TEST_CASE("matrix: speculative decoding with an empty prompt", "[malformed][runtime]") {
  SpeculativeDecoder dec(draft_model(), target_model(), GenerationConfig{.max_new_tokens = 4});
  expect_error<InvalidArgument>([&] { dec.generate({}); }, {"prompt is empty"});
}

TEST_CASE("matrix: eos id in the generation config out of range", "[malformed][runtime]") {
  expect_error<InvalidArgument>(
      [&] {
        SpeculativeDecoder dec(draft_model(), target_model(),
                               GenerationConfig{.max_new_tokens = 4, .eos_token_ids = {256}});
      },
      {"eos_token_ids", "256"});
}

TEST_CASE("matrix: draft vocabulary smaller than the target's", "[malformed][runtime]") {
  const auto small = cpu::Transformer::random(small_config(128), 1);
  expect_error<CompatibilityError>(
      [&] { SpeculativeDecoder dec(small, target_model(), GenerationConfig{}); }, {"128", "256"});
}

TEST_CASE("matrix: draft and target with different EOS ids", "[malformed][runtime]") {
  GenerationConfig cfg;
  cfg.draft_special_tokens = SpecialTokens{.eos_token_ids = {2}};
  cfg.target_special_tokens = SpecialTokens{.eos_token_ids = {3}};
  expect_error<CompatibilityError>([&] { SpeculativeDecoder dec(draft_model(), target_model(), cfg); },
                                   {"EOS", "[2]", "[3]"});
}

TEST_CASE("matrix: draft and target with different BOS ids", "[malformed][runtime]") {
  GenerationConfig cfg;
  cfg.draft_special_tokens = SpecialTokens{.eos_token_ids = {2}, .bos_token_id = 1};
  cfg.target_special_tokens = SpecialTokens{.eos_token_ids = {2}, .bos_token_id = 0};
  expect_error<CompatibilityError>([&] { SpeculativeDecoder dec(draft_model(), target_model(), cfg); },
                                   {"BOS"});
}
