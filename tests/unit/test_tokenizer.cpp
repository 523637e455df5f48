// Tokenizer tests: parity with Hugging Face's JS tokenizer on golden files
// (tests/data/tokenizers/*, made by tools/tokenizer_goldens), round trips,
// streaming detokenization, component semantics on hand-made tokenizers, and
// clear errors for malformed tokenizer.json files.
#include <assistgen/error.hpp>
#include <assistgen/tokenizer.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

using assistgen::EncodeOptions;
using assistgen::Token;
using assistgen::Tokenizer;
using nlohmann::json;

namespace {

const std::filesystem::path kTokDir = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "tokenizers";

json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  return json::parse(in);
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string stream_decode(const Tokenizer& tok, const std::vector<Token>& ids,
                          bool skip_special = false) {
  auto st = tok.streaming(skip_special);
  std::string out;
  for (Token id : ids) out += st.push(id);
  out += st.finish();
  return out;
}

// Whether `s` is valid UTF-8 (streamed pieces must always be).
bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// A tokenizer.json skeleton around a BPE model, to be edited per test.
json skeleton(json vocab, json merges = json::array()) {
  return json{{"version", "1.0"},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", nullptr},
              {"post_processor", nullptr},
              {"decoder", nullptr},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", std::move(vocab)},
                {"merges", std::move(merges)}}}};
}

Tokenizer from(const json& j) {
  return Tokenizer::from_json(j.dump(), {}, {}, "test tokenizer.json");
}

// The vocabulary strings of the ids of encode(text).
std::vector<std::string> pieces(const Tokenizer& tok, std::string_view text) {
  std::vector<std::string> out;
  for (Token id : tok.encode(text)) out.push_back(tok.id_to_token(id));
  return out;
}

}  // namespace

TEST_CASE("encode and decode match the Hugging Face JS tokenizer on golden strings",
          "[tokenizer][golden]") {
  const std::string name =
      GENERATE(as<std::string>{}, "gpt2-8k", "llama3-8k", "spm-bf", "spm-bf-metaspace");
  INFO("tokenizer " << name);
  const Tokenizer tok = Tokenizer::load(kTokDir / name);
  const json goldens = read_json(kTokDir / name / "goldens.json");
  const auto& cases = goldens.at("cases");
  REQUIRE(cases.size() >= 200);
  std::size_t invalid_cases = 0;
  for (const auto& c : cases) {
    const std::string text =
        c.contains("bytes_hex") ? from_hex(c["bytes_hex"]) : c["text"].get<std::string>();
    invalid_cases += c.contains("bytes_hex") ? 1 : 0;
    INFO("text: " << c["text"].dump());
    const auto ids = c["ids"].get<std::vector<Token>>();
    const auto ids_special = c["ids_parse_special"].get<std::vector<Token>>();
    CHECK(tok.encode(text) == ids);
    CHECK(tok.encode(text, {.add_special_tokens = true, .parse_special = true}) == ids_special);
    CHECK(tok.decode(ids) == c["decoded"].get<std::string>());
    CHECK(tok.decode(ids_special) == c["decoded_parse_special"].get<std::string>());
    CHECK(stream_decode(tok, ids) == tok.decode(ids));
    CHECK(stream_decode(tok, ids_special) == tok.decode(ids_special));
    CHECK(stream_decode(tok, ids_special, true) == tok.decode(ids_special, true));
  }
  CHECK(invalid_cases >= 10);
}

TEST_CASE("decode(encode(s)) == s for lossless tokenizers", "[tokenizer]") {
  const std::string name = GENERATE(as<std::string>{}, "gpt2-8k", "llama3-8k", "spm-bf");
  const Tokenizer tok = Tokenizer::load(kTokDir / name);
  const json goldens = read_json(kTokDir / name / "goldens.json");
  for (const auto& c : goldens.at("cases")) {
    if (c.contains("bytes_hex")) continue;
    const std::string text = c["text"];
    // SentencePiece-style tokenizers read a literal "▁" as a space.
    if (name == "spm-bf" && text.find("\u2581") != std::string::npos) continue;
    INFO(name << " text: " << c["text"].dump());
    CHECK(tok.decode(tok.encode(text, {.add_special_tokens = false})) == text);
    CHECK(tok.decode(tok.encode(text), /*skip_special=*/true) == text);
  }
}

TEST_CASE("streamed pieces are valid UTF-8 even when tokens split characters",
          "[tokenizer][streaming]") {
  const Tokenizer tok = Tokenizer::load(kTokDir / "spm-bf");
  // CJK and emoji are not in the small vocabulary: they become byte tokens.
  const std::string text = "中文 😀 naïve 👨‍👩‍👧 done";
  const auto ids = tok.encode(text, {.add_special_tokens = false});
  auto st = tok.streaming();
  std::string all;
  std::size_t empty_pieces = 0;
  for (Token id : ids) {
    const std::string piece = st.push(id);
    CHECK(valid_utf8(piece));
    empty_pieces += piece.empty() ? 1 : 0;
    all += piece;
  }
  all += st.finish();
  CHECK(all == text);
  CHECK(empty_pieces > 0);  // partial characters really were held back

  // An unfinished character at the end becomes U+FFFD, as in decode().
  const auto e4 = tok.token_to_id("<0xE4>");
  REQUIRE(e4);
  auto st2 = tok.streaming();
  CHECK(st2.push(*e4).empty());
  CHECK(st2.finish() == "\xEF\xBF\xBD");
  CHECK(tok.decode(std::vector<Token>{*e4}) == "\xEF\xBF\xBD");
}

TEST_CASE("random bytes encode without throwing, random ids stream like decode",
          "[tokenizer][streaming]") {
  const std::string name =
      GENERATE(as<std::string>{}, "gpt2-8k", "llama3-8k", "spm-bf", "spm-bf-metaspace");
  INFO("tokenizer " << name);
  const Tokenizer tok = Tokenizer::load(kTokDir / name);
  std::mt19937 rng(1234);
  for (int round = 0; round < 200; ++round) {
    std::string bytes(rng() % 40, '\0');
    for (auto& b : bytes) b = static_cast<char>(rng() % 256);
    const auto ids = tok.encode(bytes, {.add_special_tokens = false});
    const std::string decoded = tok.decode(ids);
    CHECK(valid_utf8(decoded));
    if (name == "gpt2-8k" || name == "llama3-8k") {
      // Byte-level BPE is lossless on the repaired text.
      CHECK(decoded == tok.decode(tok.encode(decoded, {.add_special_tokens = false})));
    }
    std::vector<Token> random_ids(rng() % 30);
    for (auto& id : random_ids) {
      do {
        id = static_cast<Token>(rng() % tok.vocab_size());
      } while (!tok.token_to_id(tok.id_to_token(id)));
    }
    const bool skip = round % 2 == 1;
    CHECK(stream_decode(tok, random_ids, skip) == tok.decode(random_ids, skip));
  }
}

TEST_CASE("streaming equals decode for Strip, Replace and BPE decoders after joining stages",
          "[tokenizer][streaming]") {
  // Found by fuzz_tokenizer_json (corpus/tokenizer_json/crash-streaming-strip-
  // start2): with Sequence[ByteFallback, Strip(" ", start 2)] three <0x20>
  // tokens decode to " " (the run is one token, two spaces stripped), but the
  // two-token window saw only two spaces at a time and streamed "".
  const json vocab = {{"<0x20>", 0}, {"<0x61>", 1}, {"a", 2}, {"b", 3}, {" ", 4}};
  const std::vector<json> joins = {json::array(),
                                   json::array({{{"type", "ByteFallback"}}}),
                                   json::array({{{"type", "Fuse"}}}),
                                   json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})};
  std::vector<json> tails;
  for (const char* content : {" ", "a", "ab"})
    for (int start = 0; start <= 3; ++start)
      for (int stop = 0; stop <= 2; ++stop)
        tails.push_back({{"type", "Strip"}, {"content", content}, {"start", start}, {"stop", stop}});
  tails.push_back({{"type", "Replace"}, {"pattern", {{"String", "ab"}}}, {"content", "X"}});
  tails.push_back({{"type", "BPEDecoder"}, {"suffix", "ab"}});
  tails.push_back({{"type", "Metaspace"}, {"replacement", "a"}, {"prepend_scheme", "always"}, {"split", true}});
  std::size_t checked = 0;
  for (const auto& join : joins) {
    for (const auto& tail : tails) {
      json j = skeleton(vocab);
      j["model"]["byte_fallback"] = true;
      json decoders = join;
      decoders.push_back(tail);
      j["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
      const Tokenizer tok = from(j);
      // Every id sequence of length 1..5 over the five tokens.
      for (std::size_t len = 1; len <= 5; ++len) {
        std::vector<Token> ids(len, 0);
        for (;;) {
          const std::string whole = tok.decode(ids);
          if (stream_decode(tok, ids) != whole) {
            INFO("decoder " << j["decoder"].dump());
            std::string shown;
            for (Token id : ids) shown += std::to_string(id) + " ";
            INFO("ids " << shown);
            CHECK(stream_decode(tok, ids) == whole);
          }
          ++checked;
          std::size_t k = 0;
          while (k < len && ++ids[k] == 5) ids[k++] = 0;
          if (k == len) break;
        }
      }
    }
  }
  CHECK(checked == joins.size() * tails.size() * (5 + 25 + 125 + 625 + 3125));

  // The reproducer itself, and Llama's chain keeps streaming piece by piece.
  json j = skeleton({{"<0x20>", 3}});
  j["model"]["byte_fallback"] = true;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", json::array({{{"type", "ByteFallback"}},
                                            {{"type", "Strip"}, {"content", " "}, {"start", 2}}})}};
  const Tokenizer crash = from(j);
  CHECK(crash.decode(std::vector<Token>{3, 3, 3}) == " ");
  CHECK(stream_decode(crash, {3, 3, 3}) == " ");
  const Tokenizer spm = Tokenizer::load(kTokDir / "spm-bf");
  const auto ids = spm.encode("In the beginning God created", {.add_special_tokens = false});
  auto st = spm.streaming();
  std::size_t nonempty = 0;
  for (Token id : ids) nonempty += st.push(id).empty() ? 0 : 1;
  CHECK(nonempty + 1 >= ids.size());
}

TEST_CASE("special-token text in user input stays text unless parse_special", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::load(kTokDir / "gpt2-8k");
  const Token eot = tok.token_to_id("<|endoftext|>").value();
  const auto plain = tok.encode("a<|endoftext|>b");
  CHECK(std::find(plain.begin(), plain.end(), eot) == plain.end());
  const auto parsed = tok.encode("a<|endoftext|>b", {.parse_special = true});
  CHECK(std::count(parsed.begin(), parsed.end(), eot) == 1);
  CHECK(tok.decode(parsed) == "a<|endoftext|>b");
  CHECK(tok.decode(parsed, /*skip_special=*/true) == "ab");
}

TEST_CASE("vocabulary queries, bos/eos and config files", "[tokenizer]") {
  const Tokenizer gpt2 = Tokenizer::load(kTokDir / "gpt2-8k" / "tokenizer.json");
  CHECK(gpt2.vocab_size() == 8001);
  CHECK(gpt2.token_to_id("Ġthe") == 262);
  CHECK(gpt2.id_to_token(262) == "Ġthe");
  CHECK_FALSE(gpt2.token_to_id("no such token"));
  CHECK(gpt2.bos_id() == 8000);
  CHECK(gpt2.eos_ids() == std::vector<Token>{8000});
  CHECK(gpt2.is_special(8000));
  CHECK_FALSE(gpt2.is_special(262));
  CHECK(gpt2.encode("the").size() == 1);  // add_bos_token false: no BOS
  CHECK_THROWS_AS(gpt2.id_to_token(8001), assistgen::InvalidArgument);
  CHECK_THROWS_AS(gpt2.decode(std::vector<Token>{-1}), assistgen::InvalidArgument);
  CHECK_THROWS_AS(gpt2.streaming().push(123456), assistgen::InvalidArgument);

  const Tokenizer llama3 = Tokenizer::load(kTokDir / "llama3-8k");
  CHECK(llama3.bos_id() == 8000);
  CHECK(llama3.eos_ids() ==
        std::vector<Token>{8001, 8002});  // tokenizer_config, then generation_config
  CHECK(llama3.is_eos(8002));
  CHECK(llama3.encode("hi").front() == 8000);
  CHECK(llama3.encode("hi", {.add_special_tokens = false}).front() != 8000);

  const Tokenizer spm = Tokenizer::load(kTokDir / "spm-bf");
  CHECK(spm.bos_id() == 1);
  CHECK(spm.eos_ids() == std::vector<Token>{2});
  CHECK(spm.encode("hi").front() == 1);
}

TEST_CASE("add_bos_token / add_eos_token in tokenizer_config.json rebuild the template",
          "[tokenizer]") {
  json j = skeleton({{"<s>", 0}, {"</s>", 1}, {"a", 2}});
  j["added_tokens"] = json::array({{{"id", 0}, {"content", "<s>"}, {"special", true}},
                                   {{"id", 1}, {"content", "</s>"}, {"special", true}}});
  const std::string cfg_on =
      R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": true, "add_eos_token": true})";
  const auto on = Tokenizer::from_json(j.dump(), cfg_on);
  CHECK(on.encode("a") == std::vector<Token>{0, 2, 1});
  CHECK(on.encode("a", {.add_special_tokens = false}) == std::vector<Token>{2});
  const auto off =
      Tokenizer::from_json(j.dump(), R"({"bos_token": "<s>", "add_bos_token": false})");
  CHECK(off.encode("a") == std::vector<Token>{2});
}

TEST_CASE("Split pre-tokenizer behaviours follow the Rust crate", "[tokenizer][components]") {
  // ignore_merges makes every pre-token that is in the vocabulary one token,
  // so the pieces show where the pre-tokenizer split.
  json vocab = json::object();
  Token next = 0;
  for (const char* s : {"a", "b", "c", "-", "a-", "b-", "-c", "-b", "--"}) vocab[s] = next++;
  auto make = [&](const std::string& behavior, bool invert) {
    json j = skeleton(vocab);
    j["model"]["ignore_merges"] = true;
    j["pre_tokenizer"] = {{"type", "Split"},
                          {"pattern", {{"String", "-"}}},
                          {"behavior", behavior},
                          {"invert", invert}};
    return from(j);
  };
  using V = std::vector<std::string>;
  CHECK(pieces(make("Isolated", false), "a-b--c") == V{"a", "-", "b", "-", "-", "c"});
  CHECK(pieces(make("Removed", false), "a-b--c") == V{"a", "b", "c"});
  CHECK(pieces(make("MergedWithPrevious", false), "a-b--c") == V{"a-", "b-", "-", "c"});
  CHECK(pieces(make("MergedWithNext", false), "a-b--c") == V{"a", "-b", "-", "-c"});
  CHECK(pieces(make("Contiguous", false), "a-b--c") == V{"a", "-", "b", "--", "c"});
  CHECK(pieces(make("Removed", true), "a-b--c") == V{"-", "-", "-"});

  json rj = skeleton(vocab);
  rj["model"]["ignore_merges"] = true;
  rj["pre_tokenizer"] = {{"type", "Split"},
                         {"pattern", {{"Regex", "-+"}}},
                         {"behavior", "Isolated"},
                         {"invert", false}};
  CHECK(pieces(from(rj), "a-b--c") == V{"a", "-", "b", "--", "c"});
}

TEST_CASE("Metaspace, Digits and normalizers", "[tokenizer][components]") {
  using V = std::vector<std::string>;
  json vocab = json::object();
  Token next = 0;
  for (const char* s : {"▁", "h", "i", "▁hi", "▁yo", "y", "o", "hi", "a", "b", "1", "2", "3", "123",
                        "ab", "abc", "c"})
    vocab[s] = next++;
  {
    json j = skeleton(vocab);
    j["model"]["ignore_merges"] = true;
    j["pre_tokenizer"] = {
        {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}, {"split", true}};
    j["decoder"] = {
        {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}, {"split", true}};
    const auto tok = from(j);
    CHECK(pieces(tok, "hi yo") == V{"▁hi", "▁yo"});
    CHECK(tok.decode(tok.encode("hi yo")) == "hi yo");
    CHECK(stream_decode(tok, tok.encode("hi yo hi")) == "hi yo hi");
    j["pre_tokenizer"]["prepend_scheme"] = "never";
    CHECK(pieces(from(j), "hi yo") == V{"hi", "▁yo"});
  }
  {
    json j = skeleton(vocab);
    j["model"]["ignore_merges"] = true;
    j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
    CHECK(pieces(from(j), "ab123") == V{"ab", "1", "2", "3"});
    j["pre_tokenizer"]["individual_digits"] = false;
    CHECK(pieces(from(j), "ab123") == V{"ab", "123"});
  }
  {
    json j = skeleton(vocab);
    j["model"]["ignore_merges"] = true;
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "NFKC"}},
                         {{"type", "Lowercase"}},
                         {{"type", "Replace"}, {"pattern", {{"Regex", "x+"}}}, {"content", "c"}}}}};
    // Full-width ＡＢ -> AB -> ab; "xxx" -> "c".
    CHECK(pieces(from(j), "ＡＢxxx") == V{"abc"});
  }
  {
    // NFC composes e + combining acute into é; NFD splits é into e + U+0301
    // (both in the vocabulary, no merge: two tokens).
    json j = skeleton({{"é", 0}, {"e", 1}, {"\xCC\x81", 2}});
    j["normalizer"] = {{"type", "NFC"}};
    CHECK(from(j).encode("e\xCC\x81") == std::vector<Token>{0});
    CHECK(from(j).encode("\xC3\xA9") == std::vector<Token>{0});
    j["normalizer"] = {{"type", "NFD"}};
    CHECK(from(j).encode("\xC3\xA9") == std::vector<Token>{1, 2});
    CHECK(from(j).encode("e\xCC\x81") == std::vector<Token>{1, 2});
    CHECK(pieces(from(j), "\xC3\xA9") == V{"e", "\xCC\x81"});
  }
}

TEST_CASE("BPE options: byte_fallback, unk fusing, subword prefix and suffix",
          "[tokenizer][components]") {
  using V = std::vector<std::string>;
  {
    json vocab = {{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}};
    json j = skeleton(vocab);
    j["model"]["byte_fallback"] = true;
    j["model"]["unk_token"] = "<unk>";
    j["decoder"] = {{"type", "Sequence"},
                    {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
    const auto tok = from(j);
    CHECK(pieces(tok, "aé") == V{"a", "<0xC3>", "<0xA9>"});
    CHECK(tok.decode(tok.encode("aé")) == "aé");
    CHECK(pieces(tok, "a中") == V{"a", "<unk>"});  // its bytes are not all in the vocabulary
  }
  {
    json j = skeleton({{"<unk>", 0}, {"a", 1}});
    j["model"]["unk_token"] = "<unk>";
    j["model"]["fuse_unk"] = true;
    CHECK(pieces(from(j), "xyza") == V{"<unk>", "a"});
    j["model"]["fuse_unk"] = false;
    CHECK(pieces(from(j), "xyza") == V{"<unk>", "<unk>", "<unk>", "a"});
  }
  {
    json vocab = {{"l", 0},   {"##o", 1},     {"##w", 2},     {"lo", 3},
                  {"low", 4}, {"##w</w>", 5}, {"low</w>", 6}, {"##o</w>", 7}};
    json j = skeleton(vocab, json::array({"l ##o", "lo ##w</w>"}));
    j["model"]["continuing_subword_prefix"] = "##";
    j["model"]["end_of_word_suffix"] = "</w>";
    j["decoder"] = {{"type", "BPEDecoder"}, {"suffix", "</w>"}};
    const auto tok = from(j);
    CHECK(pieces(tok, "low") == V{"low</w>"});
    CHECK(pieces(tok, "lo") == V{"l", "##o</w>"});
  }
  {
    // Merges in the [a, b] form; ranks decide the order, not the position.
    json j = skeleton({{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}},
                      json::array({json::array({"b", "c"}), json::array({"a", "b"})}));
    CHECK(pieces(from(j), "abc") == V{"a", "bc"});
  }
}

TEST_CASE("ByteLevel pre-tokenizer with add_prefix_space and without regex",
          "[tokenizer][components]") {
  json vocab = json::object();
  // Byte-level alphabet for ASCII letters and space (space is "Ġ").
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = static_cast<int>(c - 'a');
  vocab["Ġ"] = 26;
  vocab["Ġa"] = 27;
  json j = skeleton(vocab, json::array({"Ġ a"}));
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  const auto tok = from(j);
  CHECK(tok.encode("ab") == std::vector<Token>{27, 1});
  CHECK(tok.decode(tok.encode("ab a")) == " ab a");
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  CHECK(from(j).encode("b a") == std::vector<Token>{1, 27});
}

TEST_CASE("long inputs encode in near-linear time", "[tokenizer][perf]") {
  const Tokenizer tok = Tokenizer::load(kTokDir / "gpt2-8k");
  // One pre-token of a million letters, and a million spaces.
  for (char c : {'a', ' '}) {
    const std::string text(1 << 20, c);
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.encode(text, {.add_special_tokens = false});
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO("char '" << c << "': " << ids.size() << " tokens in " << secs << " s");
    CHECK(secs < 5.0);  // quadratic merging would take hours
    CHECK(tok.decode(ids) == text);
  }
}

TEST_CASE("encode and decode are safe to call from several threads", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::load(kTokDir / "llama3-8k");
  const std::string text = "Concurrent tokenization: 東京 🚀 12345 don't stop\n\n";
  const auto expected = tok.encode(text);
  // What one thread decodes, fixed before the threads start (and right: the
  // byte-level tokenizer gives the text back once its BOS is skipped).
  const std::string decoded = tok.decode(expected);
  REQUIRE(tok.decode(expected, true) == text);
  REQUIRE(decoded != text);  // the BOS is there, so the two checks differ
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      int good = 0;
      for (int i = 0; i < 200; ++i)
        good += tok.encode(text) == expected && tok.decode(expected) == decoded &&
                tok.decode(expected, true) == text;
      ok[t] = good;
    });
  for (auto& th : threads) th.join();
  for (int v : ok) CHECK(v == 200);
}

TEST_CASE("malformed tokenizer.json files are clear errors", "[tokenizer][errors]") {
  const json good = skeleton({{"a", 0}, {"b", 1}, {"ab", 2}}, json::array({"a b"}));
  auto expect = [](const json& j, const std::string& needle) {
    INFO("expecting an error mentioning " << needle);
    try {
      from(j);
      FAIL("no error");
    } catch (const assistgen::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(needle));
    }
  };
  REQUIRE_NOTHROW(from(good));

  json j = good;
  j.erase("model");
  expect(j, "model: missing required field");
  j = good;
  j["model"].erase("vocab");
  expect(j, "model.vocab: missing required field");
  j = good;
  j["model"]["merges"] = json::array({"a c"});
  expect(j, "model.merges[0]: token 'c' is not in the vocabulary");
  j = good;
  j["model"]["merges"] = json::array({"a a"});
  expect(j, "merged token 'aa' is not in the vocabulary");
  j = good;
  j["model"]["merges"] = json::array({"abc"});
  expect(j, "model.merges[0]");
  j = good;
  j["model"]["vocab"]["b"] = 0;
  expect(j, "id 0 is used by both");
  j = good;
  j["model"]["vocab"]["b"] = -5;
  expect(j, "token id -5 is out of range");
  j = good;
  j["model"]["vocab"]["b"] = 1000000000;
  expect(j, "out of range");
  j = good;
  j["model"]["vocab"]["b"] = "one";
  expect(j, "model.vocab[\"b\"]: expected an integer");
  j = good;
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect(j, "pre_tokenizer.pattern: regex '(unclosed' does not compile");
  j = good;
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}};
  expect(j, "unknown split behavior 'Sideways'");
  j = good;
  j["model"]["merges"] = "a b";
  expect(j, "model.merges: expected an array");
  j = good;
  j["added_tokens"] = json::array({{{"id", 1}, {"content", "<s>"}}});
  expect(j, "id 1 is used by both 'b' and '<s>'");
  j = good;
  j["added_tokens"] = json::array({{{"content", "<s>"}}});
  expect(j, "added_tokens[0].id: missing required field");
  j = good;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"special_tokens", json::object()}};
  expect(j, "no entry for template token '<s>'");
  j = good;
  j["model"]["unk_token"] = "<unk>";
  expect(j, "model.unk_token: token '<unk>' is not in the vocabulary");

  auto expect_unsupported = [](const json& j, const std::string& needle) {
    INFO("expecting UnsupportedError mentioning " << needle);
    CHECK_THROWS_AS(from(j), assistgen::UnsupportedError);
    CHECK_THROWS_WITH(from(j), Catch::Contains(needle));
  };
  j = good;
  j["model"]["type"] = "Unigram";
  expect_unsupported(j, "model type 'Unigram'");
  j = good;
  j["model"]["type"] = "WordPiece";
  expect_unsupported(j, "model type 'WordPiece'");
  j = good;
  j["model"]["dropout"] = 0.1;
  expect_unsupported(j, "model.dropout");
  j = good;
  j["normalizer"] = {{"type", "BertNormalizer"}};
  expect_unsupported(j, "normalizer type 'BertNormalizer'");
  j = good;
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}}}};
  expect_unsupported(j, "pre_tokenizer.pretokenizers[0]: pre-tokenizer type 'Whitespace'");
  j = good;
  j["decoder"] = {{"type", "WordPiece"}};
  expect_unsupported(j, "decoder type 'WordPiece'");
  j = good;
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  expect_unsupported(j, "post-processor type 'RobertaProcessing'");

  CHECK_THROWS_AS(Tokenizer::from_json("this is not json"), assistgen::FormatError);
  CHECK_THROWS_WITH(Tokenizer::from_json("this is not json"), Catch::Contains("invalid JSON"));
  CHECK_THROWS_WITH(Tokenizer::from_json("[1, 2]"), Catch::Contains("expected a JSON object"));
  CHECK_THROWS_AS(Tokenizer::load(kTokDir / "no-such-dir"), assistgen::IoError);
  CHECK_THROWS_WITH(Tokenizer::load(kTokDir / "no-such-dir"), Catch::Contains("no-such-dir"));
  CHECK_THROWS_WITH(Tokenizer::from_json(good.dump(), R"({"bos_token": "<nope>"})"),
                    Catch::Contains("bos_token: token '<nope>' is not in the vocabulary"));
}
