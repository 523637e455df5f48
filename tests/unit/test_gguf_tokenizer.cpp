// The tokenizer in GGUF metadata (tokenizer.ggml.*; src/tokenizer/gguf_vocab.hpp)
// against the tokenizer.json it was written from: vocabulary-only GGUF files
// made by tools/make_gguf.py --vocab-only from the test tokenizers give the
// golden ids (Hugging Face's tokenizers on the same strings,
// tests/data/tokenizers/*/goldens.json) and decode them to the golden text,
// for byte-level BPE (model gpt2, pre gpt-2 and llama-bpe) and
// SentencePiece-style BPE (model llama) with merges and with scores only.
// Unknown models and pre-tokenizers, and inconsistent arrays, are errors
// naming the key.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/tokenizer.hpp"

namespace fs = std::filesystem;
using assistgen::Token;
using assistgen::Tokenizer;
using nlohmann::json;

namespace {

const fs::path kData(ASSISTGEN_TEST_DATA_DIR);

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// A GGUF file of metadata only: (key, type, encoded value) triples.
struct Meta {
  std::string b;
  std::size_t n = 0;
  template <class T>
  void put(T v) {
    char raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    b.append(raw, sizeof(T));
  }
  void str(const std::string& s) {
    put<std::uint64_t>(s.size());
    b += s;
  }
  void kv_str(const std::string& k, const std::string& v) {
    str(k), put<std::uint32_t>(8), str(v), ++n;
  }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    str(k), put<std::uint32_t>(9), put<std::uint32_t>(8), put<std::uint64_t>(v.size());
    for (const auto& s : v) str(s);
    ++n;
  }
  void kv_i32s(const std::string& k, const std::vector<std::int32_t>& v) {
    str(k), put<std::uint32_t>(9), put<std::uint32_t>(5), put<std::uint64_t>(v.size());
    for (auto x : v) put(x);
    ++n;
  }
  fs::path write() const {
    static int counter = 0;
    const fs::path p =
        fs::temp_directory_path() / ("assistgen_test_gguf_tok_" + std::to_string(::getpid()) + "_" +
                                     std::to_string(counter++) + ".gguf");
    std::string f = "GGUF";
    Meta h;
    h.put<std::uint32_t>(3), h.put<std::uint64_t>(0), h.put<std::uint64_t>(n);
    f += h.b + b;
    f.append((32 - f.size() % 32) % 32, '\0');
    std::ofstream(p, std::ios::binary).write(f.data(), static_cast<std::streamsize>(f.size()));
    return p;
  }
};

}  // namespace

TEST_CASE("the tokenizer in GGUF metadata gives the tokenizer.json's golden ids",
          "[tokenizer][gguf]") {
  struct Case {
    const char* gguf;
    const char* dir;
  };
  const Case c =
      GENERATE(Case{"vocab-gpt2-8k.gguf", "gpt2-8k"},        // byte-level BPE, pre gpt-2
               Case{"vocab-llama3-8k.gguf", "llama3-8k"},    // pre llama-bpe, ignore_merges
               Case{"vocab-spm-bf.gguf", "spm-bf"},          // model llama, merges
               Case{"vocab-spm-bf-scores.gguf", "spm-bf"});  // merges from scores
  INFO(c.gguf << " vs " << c.dir);
  const Tokenizer tok = Tokenizer::load(kData / "gguf" / c.gguf);
  const Tokenizer ref = Tokenizer::load(kData / "tokenizers" / c.dir);
  CHECK(tok.vocab_size() == ref.vocab_size());
  CHECK(tok.bos_id() == ref.bos_id());
  // (llama3-8k's generation_config.json adds <|eot_id|> to the eos ids; GGUF keeps one eos)
  CHECK(tok.eos_ids().front() == ref.eos_ids().front());
  const json goldens = read_json(kData / "tokenizers" / c.dir / "goldens.json");
  std::size_t n = 0;
  for (const auto& g : goldens.at("cases")) {
    const std::string text =
        g.contains("bytes_hex") ? from_hex(g["bytes_hex"]) : g["text"].get<std::string>();
    INFO("text: " << g["text"].dump());
    const auto ids = g["ids"].get<std::vector<Token>>();
    CHECK(tok.encode(text) == ids);
    CHECK(tok.decode(ids) == g["decoded"].get<std::string>());
    CHECK(tok.encode(text, {.add_special_tokens = true, .parse_special = true}) ==
          g["ids_parse_special"].get<std::vector<Token>>());
    ++n;
  }
  CHECK(n >= 200);
}

TEST_CASE("GGUF tokenizers: unknown models and pre-tokenizers and bad arrays name the key",
          "[tokenizer][gguf]") {
  auto error_of = [](const Meta& m) {
    const fs::path p = m.write();
    std::string what;
    try {
      Tokenizer::load(p);
    } catch (const assistgen::Error& e) {
      what = e.what();
    }
    fs::remove(p);
    return what;
  };
  Meta bert;
  bert.kv_str("tokenizer.ggml.model", "bert");
  bert.kv_strs("tokenizer.ggml.tokens", {"a", "b"});
  CHECK_THAT(error_of(bert), Catch::Contains("tokenizer.ggml.model") && Catch::Contains("bert"));
  Meta pre;
  pre.kv_str("tokenizer.ggml.model", "gpt2");
  pre.kv_strs("tokenizer.ggml.tokens", {"a", "b"});
  pre.kv_str("tokenizer.ggml.pre", "made-up");
  CHECK_THAT(error_of(pre), Catch::Contains("tokenizer.ggml.pre") && Catch::Contains("made-up"));
  Meta types;
  types.kv_str("tokenizer.ggml.model", "gpt2");
  types.kv_strs("tokenizer.ggml.tokens", {"a", "b"});
  types.kv_i32s("tokenizer.ggml.token_type", {1});
  CHECK_THAT(error_of(types), Catch::Contains("tokenizer.ggml.token_type"));
  Meta merges;
  merges.kv_str("tokenizer.ggml.model", "gpt2");
  merges.kv_strs("tokenizer.ggml.tokens", {"a", "b", "ab"});
  merges.kv_strs("tokenizer.ggml.merges", {"ab"});
  CHECK_THAT(error_of(merges), Catch::Contains("tokenizer.ggml.merges"));
  Meta utf8;
  utf8.kv_str("tokenizer.ggml.model", "gpt2");
  utf8.kv_strs("tokenizer.ggml.tokens", {"a", "\xff\xfe"});
  CHECK_THAT(error_of(utf8), Catch::Contains("tokenizer.ggml.tokens") && Catch::Contains("UTF-8"));
  Meta scores;  // a SentencePiece vocabulary needs merges or scores
  scores.kv_str("tokenizer.ggml.model", "llama");
  scores.kv_strs("tokenizer.ggml.tokens", {"a", "b"});
  CHECK_THAT(error_of(scores), Catch::Contains("tokenizer.ggml.scores"));
}
