// The tokenizer in GGUF metadata as tokenizer.json text (gguf_vocab.hpp).
#include "gguf_vocab.hpp"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <tuple>
#include <unordered_map>

#include "assistgen/error.hpp"

namespace assistgen::tok {

namespace {

using nlohmann::json;

constexpr const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum TokenType : std::int64_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

json split_then_byte_level(const char* pattern) {
  return {{"type", "Sequence"},
          {"pretokenizers", json::array({{{"type", "Split"},
                                          {"pattern", {{"Regex", pattern}}},
                                          {"behavior", "Isolated"},
                                          {"invert", false}},
                                         {{"type", "ByteLevel"},
                                          {"add_prefix_space", false},
                                          {"trim_offsets", true},
                                          {"use_regex", false}}})}};
}

// Offsets of the UTF-8 character boundaries inside s (excluding 0 and size).
std::vector<std::size_t> char_boundaries(const std::string& s) {
  std::vector<std::size_t> b;
  for (std::size_t i = 1; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xc0) != 0x80) b.push_back(i);
  return b;
}

}  // namespace

bool gguf_has_tokenizer(const io::GgufFile& file) { return file.contains("tokenizer.ggml.model"); }

GgufTokenizerJson gguf_tokenizer_json(const io::GgufFile& g) {
  const std::string src = g.path().string();
  const std::string model = g.get_string("tokenizer.ggml.model");
  if (model != "llama" && model != "gpt2")
    throw UnsupportedError(src + ": key 'tokenizer.ggml.model': '" + model +
                           "' is not supported (supported: llama, gpt2)");
  const bool spm = model == "llama";
  const std::vector<std::string> tokens = g.get_string_array("tokenizer.ggml.tokens");
  if (tokens.empty()) throw FormatError(src + ": key 'tokenizer.ggml.tokens' is empty");
  std::vector<std::int64_t> types(tokens.size(), kNormal);
  if (g.contains("tokenizer.ggml.token_type")) {
    types = g.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != tokens.size())
      throw FormatError(src + ": key 'tokenizer.ggml.token_type' has " +
                        std::to_string(types.size()) + " entries for " +
                        std::to_string(tokens.size()) + " tokens");
  }
  auto id_key = [&](const char* key) -> std::optional<std::size_t> {
    if (!g.contains(key)) return std::nullopt;
    const std::uint64_t id = g.get_uint(key);
    if (id >= tokens.size())
      throw FormatError(src + ": key '" + key + "' is " + std::to_string(id) + ", outside the " +
                        std::to_string(tokens.size()) + " tokens");
    return static_cast<std::size_t>(id);
  };

  json vocab = json::object();
  std::unordered_map<std::string, std::size_t> id_of;
  json added = json::array();
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (id_of.emplace(tokens[i], i).second)
      vocab[tokens[i]] = i;  // a repeated string keeps its first id
    const std::int64_t t = types[i];
    if (t == kControl || t == kUnknown || t == kUserDefined)
      added.push_back({{"id", i},
                       {"content", tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", t != kUserDefined}});
  }

  json merges = json::array();
  if (g.contains("tokenizer.ggml.merges")) {
    for (const std::string& m : g.get_string_array("tokenizer.ggml.merges")) {
      const auto sp = m.find(' ', 1);
      if (sp == std::string::npos || sp + 1 >= m.size())
        throw FormatError(src + ": key 'tokenizer.ggml.merges': '" + m +
                          "' is not two tokens separated by a space");
      merges.push_back(m);
    }
  } else if (spm) {
    // SentencePiece: the pair whose joined piece scores highest merges first.
    const std::vector<double> scores = g.get_float_array("tokenizer.ggml.scores");
    if (scores.size() != tokens.size())
      throw FormatError(src + ": key 'tokenizer.ggml.scores' has " + std::to_string(scores.size()) +
                        " entries for " + std::to_string(tokens.size()) + " tokens");
    std::vector<std::tuple<double, std::size_t, std::size_t, std::size_t>>
        cand;  // -score, piece, a, b
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (types[i] != kNormal || id_of.at(tokens[i]) != i) continue;
      for (std::size_t cut : char_boundaries(tokens[i])) {
        const auto a = id_of.find(tokens[i].substr(0, cut)), b = id_of.find(tokens[i].substr(cut));
        if (a != id_of.end() && b != id_of.end())
          cand.emplace_back(-scores[i], i, a->second, b->second);
      }
    }
    std::sort(cand.begin(), cand.end());
    for (const auto& [s, piece, a, b] : cand) merges.push_back(tokens[a] + " " + tokens[b]);
  }

  json tj;
  tj["version"] = "1.0";
  tj["added_tokens"] = added;
  tj["normalizer"] = nullptr;
  tj["pre_tokenizer"] = nullptr;
  tj["post_processor"] = nullptr;
  json m{{"type", "BPE"},
         {"vocab", vocab},
         {"merges", merges},
         {"dropout", nullptr},
         {"fuse_unk", spm},
         {"byte_fallback", spm},
         {"continuing_subword_prefix", nullptr},
         {"end_of_word_suffix", nullptr},
         {"ignore_merges", false}};
  json cfg = json::object();
  if (spm) {
    const bool prefix = g.contains("tokenizer.ggml.add_space_prefix")
                            ? g.get_bool("tokenizer.ggml.add_space_prefix")
                            : true;
    // llama.cpp puts a space before every run of text that starts the input
    // or follows a special token, then writes spaces as "▁": the normalizer
    // of transformers' Llama tokenizer.json (it runs on each such run).
    json replace{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}};
    tj["normalizer"] =
        prefix ? json{{"type", "Sequence"},
                      {"normalizers",
                       json::array({{{"type", "Prepend"}, {"prepend", "\u2581"}}, replace})}}
               : replace;
    tj["pre_tokenizer"] = nullptr;
    json decoders =
        json::array({{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                     {{"type", "ByteFallback"}},
                     {{"type", "Fuse"}}});
    if (prefix)
      decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    tj["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
    if (const auto unk = id_key("tokenizer.ggml.unknown_token_id"))
      m["unk_token"] = tokens[*unk];
    else
      m["unk_token"] = nullptr;
  } else {
    const std::string pre =
        g.contains("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "default";
    if (pre == "gpt-2" || pre == "default") {
      tj["pre_tokenizer"] = {{"type", "ByteLevel"},
                             {"add_prefix_space", false},
                             {"trim_offsets", true},
                             {"use_regex", true}};
    } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
      tj["pre_tokenizer"] = split_then_byte_level(kLlama3Pattern);
      m["ignore_merges"] = true;
    } else if (pre == "qwen2") {
      tj["pre_tokenizer"] = split_then_byte_level(kQwen2Pattern);
    } else {
      throw UnsupportedError(
          src + ": key 'tokenizer.ggml.pre': '" + pre +
          "' is not supported (supported: gpt-2, default, llama-bpe, llama3, llama-v3, qwen2)");
    }
    tj["decoder"] = {{"type", "ByteLevel"},
                     {"add_prefix_space", true},
                     {"trim_offsets", true},
                     {"use_regex", true}};
    m["unk_token"] = nullptr;
  }
  tj["model"] = m;
  if (const auto bos = id_key("tokenizer.ggml.bos_token_id")) cfg["bos_token"] = tokens[*bos];
  if (const auto eos = id_key("tokenizer.ggml.eos_token_id")) cfg["eos_token"] = tokens[*eos];
  // llama.cpp's defaults: a bos for SentencePiece vocabularies, none for byte-level BPE.
  cfg["add_bos_token"] =
      g.contains("tokenizer.ggml.add_bos_token") ? g.get_bool("tokenizer.ggml.add_bos_token") : spm;
  cfg["add_eos_token"] = g.contains("tokenizer.ggml.add_eos_token")
                             ? g.get_bool("tokenizer.ggml.add_eos_token")
                             : false;
  if (cfg["add_bos_token"].get<bool>() && !cfg.contains("bos_token"))
    throw FormatError(
        src +
        ": key 'tokenizer.ggml.add_bos_token' is true but 'tokenizer.ggml.bos_token_id' is absent");
  try {
    return {tj.dump(), cfg.dump()};
  } catch (const json::exception&) {  // a token (or merge) that is not UTF-8
    throw FormatError(src + ": keys 'tokenizer.ggml.tokens' / 'merges': a string is not valid UTF-8");
  }
}

}  // namespace assistgen::tok
