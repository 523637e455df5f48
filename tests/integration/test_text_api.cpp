// The text API end to end on the random test checkpoints paired with the
// small tokenizers of tests/data/text/: load_model, generation defaults from
// generation_config.json and their overrides, text == decode(plain greedy
// ids), streamed pieces == final text, assisted and prompt-lookup paths equal
// to plain greedy, and the masking of logit rows the tokenizer lacks.
#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/assistgen.hpp"
#include "assistgen/io/safetensors.hpp"
#include "integration/text_fixtures.hpp"

using namespace assistgen;
using text_fixtures::make_model_dir;

namespace {

const std::vector<std::string> kPrompts = {"And God said", "Hello, world!\n", "x",
                                           "The quick brown fox"};

// What Model::generate must reproduce: plain greedy decoding of the backend
// from the encoded prompt, with the config the model resolves plus the mask.
std::vector<Token> plain_greedy(const Model& m, const std::vector<Token>& prompt,
                                const GenerateOptions& o) {
  GenerationConfig cfg = m.generation_config(o, prompt.size());
  cfg.suppress_tokens.insert(cfg.suppress_tokens.end(), m.masked_tokens().begin(),
                             m.masked_tokens().end());
  return generate_autoregressive(m.backend(), prompt, cfg).tokens;
}

struct Streamed {
  std::string text;
  std::size_t pieces = 0;
  TextCallback callback() {
    return [this](std::string_view p) {
      CHECK(!p.empty());
      text += p;
      ++pieces;
      return true;
    };
  }
};

}  // namespace

TEST_CASE("text api: load_model bundles backend, tokenizer and defaults", "[text]") {
  const Model m = load_model(make_model_dir("load", "llama-gqa", "char"));
  CHECK(m.backend().vocab_size() == 256);
  CHECK(m.tokenizer().vocab_size() == 100);
  // Rows 100..255 have no token: masked.
  REQUIRE(m.masked_tokens().size() == 156);
  CHECK(m.masked_tokens().front() == 100);
  CHECK(m.masked_tokens().back() == 255);
  // No generation_config.json: eos / bos from config.json.
  CHECK(m.generation_defaults().eos_token_id == std::vector<Token>{2});
  CHECK(m.generation_defaults().bos_token_id == Token{1});
  // add_bos_token from tokenizer_config.json.
  const auto ids = m.encode_prompt("Hi");
  REQUIRE(ids.size() == 3);
  CHECK(ids[0] == 1);
  CHECK(m.tokenizer().decode(ids, true) == "Hi");
}

TEST_CASE("text api: generate is decode(plain greedy ids), streamed text equals the final text",
          "[text]") {
  const Model m = load_model(make_model_dir("plain", "llama-gqa", "char"));
  for (const auto& prompt : kPrompts)
    for (std::size_t n : {1u, 7u, 24u}) {
      INFO(prompt << " n=" << n);
      const GenerateOptions o{.max_new_tokens = n};
      Streamed s;
      const TextResult r = m.generate(prompt, o, s.callback());
      CHECK(r.assistance == Assistance::none);
      CHECK(r.prompt_tokens == m.encode_prompt(prompt));
      CHECK(r.tokens == plain_greedy(m, r.prompt_tokens, o));
      CHECK(r.text == m.tokenizer().decode(r.tokens, true));
      CHECK(s.text == r.text);
      CHECK(r.stats.new_tokens == r.tokens.size());
      CHECK(r.stats.prompt_tokens == r.prompt_tokens.size());
      for (Token t : r.tokens) CHECK(t < 100);  // masked rows never come out
      if (r.stop_reason != StopReason::eos) CHECK(r.tokens.size() == n);
    }
}

TEST_CASE("text api: the rows past the tokenizer matter: unmasked greedy picks them", "[text]") {
  // llama-gqa's own greedy continuation of its golden prompt starts with 146
  // (tests/data/README.md), an id the char tokenizer does not have.
  const Model m = load_model(make_model_dir("mask", "llama-gqa", "char"));
  const std::vector<Token> prompt{1, 17, 200, 45, 3, 99};
  GenerationConfig raw = m.generation_config({.max_new_tokens = 16}, prompt.size());
  const auto unmasked = generate_autoregressive(m.backend(), prompt, raw).tokens;
  bool any_high = false;
  for (Token t : unmasked) any_high = any_high || t >= 100;
  CHECK(any_high);
  const auto masked = plain_greedy(m, prompt, {.max_new_tokens = 16});
  for (Token t : masked) CHECK(t < 100);
  CHECK_NOTHROW(m.tokenizer().decode(masked));
}

TEST_CASE("text api: assisted (same tokenizer) and prompt lookup give the plain greedy text",
          "[text]") {
  const Model target = load_model(make_model_dir("t", "llama-gqa", "char"));
  const Model noisy = load_model(make_model_dir("noisy", "llama-gqa-noisy", "char"));
  const Model other = load_model(make_model_dir("other", "llama-draft", "char"));
  CHECK(target.same_vocabulary(noisy));
  for (const auto& prompt : kPrompts) {
    const GenerateOptions base{.max_new_tokens = 20};
    const TextResult plain = target.generate(prompt, base);
    for (const Model* draft : {&noisy, &other})
      for (std::size_t k : {1u, 4u}) {
        INFO(prompt << " k=" << k);
        GenerateOptions o = base;
        o.num_assistant_tokens = k;
        Streamed s;
        const TextResult r = target.generate(prompt, *draft, o, s.callback());
        CHECK(r.assistance == Assistance::draft);
        CHECK(r.tokens == plain.tokens);
        CHECK(r.text == plain.text);
        CHECK(s.text == r.text);
        CHECK(r.stats.accepted <= r.stats.drafted);
        CHECK(r.stats.draft_calls > 0);
      }
    GenerateOptions lookup = base;
    lookup.prompt_lookup_num_tokens = 3;
    const TextResult r = target.generate(prompt, lookup);
    CHECK(r.assistance == Assistance::prompt_lookup);
    CHECK(r.tokens == plain.tokens);
  }
  // The noisy copy agrees with the target often: acceptance is well above 0.
  const TextResult r = target.generate("And God said", noisy, {.max_new_tokens = 24});
  CHECK(r.stats.acceptance_rate() > 0.3);
}

TEST_CASE("text api: sampling through the text API is seeded and masked", "[text]") {
  const Model target = load_model(make_model_dir("ts", "llama-gqa", "char"));
  const Model noisy = load_model(make_model_dir("ns", "llama-gqa-noisy", "char"));
  const GenerateOptions o{.max_new_tokens = 16, .do_sample = true, .temperature = 1.5f, .seed = 7};
  const TextResult a = target.generate("And God said", o);
  const TextResult b = target.generate("And God said", o);
  CHECK(a.tokens == b.tokens);
  for (Token t : a.tokens) CHECK(t < 100);
  const TextResult c = target.generate("And God said", noisy, o);
  CHECK(c.assistance == Assistance::draft);
  for (Token t : c.tokens) CHECK(t < 100);
  CHECK(c.text == target.tokenizer().decode(c.tokens, true));
}

TEST_CASE("text api: a callback returning false stops generation", "[text]") {
  const Model m = load_model(make_model_dir("stop", "llama-gqa", "char"));
  std::string seen;
  const TextResult r = m.generate("And God said", {.max_new_tokens = 30}, [&](std::string_view p) {
    seen += p;
    return seen.size() < 3;
  });
  CHECK(r.stop_reason == StopReason::callback);
  CHECK(r.tokens.size() < 30);
  CHECK(seen == r.text);
  CHECK(seen.size() == 3);  // one character per token
}

TEST_CASE("text api: generation_config.json supplies the defaults, options override them",
          "[text]") {
  const std::string gen = R"({
    "bos_token_id": 1, "eos_token_id": [2, 5], "pad_token_id": 0, "max_new_tokens": 7,
    "do_sample": true, "temperature": 0.5, "top_p": 0.9, "min_p": null, "repetition_penalty": 1.1,
    "num_assistant_tokens": 3, "num_assistant_tokens_schedule": "heuristic",
    "assistant_confidence_threshold": 0.25, "max_matching_ngram_size": 4, "suppress_tokens": [7, 8],
    "num_beams": 1, "transformers_version": "4.46.0"})";
  const Model m = load_model(make_model_dir("gen", "llama-gqa", "char", gen));
  const GenerationConfig c = m.generation_config();
  CHECK(c.max_new_tokens == 7);
  CHECK(c.do_sample);
  CHECK(c.temperature == 0.5f);
  CHECK(c.top_p == 0.9f);
  CHECK(c.top_k == 50);  // HF's default, the file has none
  CHECK(c.min_p == 0.0f);
  CHECK(c.repetition_penalty == 1.1f);
  CHECK(c.eos_token_ids == std::vector<Token>{2, 5});
  CHECK(c.num_assistant_tokens == 3);
  CHECK(c.schedule == DraftLengthSchedule::heuristic);
  CHECK(c.assistant_confidence_threshold == 0.25f);
  CHECK(c.max_matching_ngram_size == 4);
  CHECK(c.suppress_tokens == std::vector<Token>{7, 8});

  const GenerationConfig o = m.generation_config({.max_new_tokens = 3,
                                                  .do_sample = false,
                                                  .top_k = 0,
                                                  .eos_token_id = std::vector<Token>{9},
                                                  .schedule = DraftLengthSchedule::constant});
  CHECK(o.max_new_tokens == 3);
  CHECK(!o.do_sample);
  CHECK(o.top_k == 0);
  CHECK(o.temperature == 0.5f);  // not overridden: still the file's
  CHECK(o.eos_token_ids == std::vector<Token>{9});
  CHECK(o.schedule == DraftLengthSchedule::constant);

  // generate() uses the file's values: at most 7 tokens, stop at 2 or 5.
  const TextResult r = m.generate("And God said", {.do_sample = false});
  CHECK(r.tokens.size() <= 7);
  const TextResult same = m.generate("And God said", {.max_new_tokens = 7, .do_sample = false});
  CHECK(r.tokens == same.tokens);
}

namespace {

// Converts to any field type (every field is a std::optional):
// GenerateOptions{AnyField{}, ...} compiles with as many AnyField as the
// struct has fields, and no more.
struct AnyField {
  template <class T>
  operator std::optional<T>() const;  // NOLINT(google-explicit-constructor): unevaluated only
};

template <std::size_t... I>
constexpr bool initialisable(std::index_sequence<I...>) {
  return requires { GenerateOptions{(void(I), AnyField{})...}; };
}

template <std::size_t N = 0>
constexpr std::size_t field_count() {
  if constexpr (initialisable(std::make_index_sequence<N + 1>{}))
    return field_count<N + 1>();
  else
    return N;
}

}  // namespace

TEST_CASE(
    "text api: GenerateOptions::for_each_field lists every field once, and merged() takes each",
    "[text]") {
  // A field missing from for_each_field would be dropped by merged() and by
  // the server's messages to the other ranks of a split target.
  std::size_t visited = 0;
  GenerateOptions set;
  GenerateOptions::for_each_field(
      [&](const char*, auto& field) {
        ++visited;
        field.emplace();  // a value-initialised value: set, unlike the default
      },
      set);
  CHECK(visited == field_count());
  const GenerateOptions merged = GenerateOptions{}.merged(set);
  std::size_t taken = 0;
  GenerateOptions::for_each_field(
      [&](const char*, const auto& field) { taken += field.has_value(); }, merged);
  CHECK(taken == visited);
}

TEST_CASE("text api: max_length counts the prompt, max_new_tokens wins", "[text]") {
  const Model m = load_model(make_model_dir("len", "llama-gqa", "char", R"({"max_length": 10})"));
  CHECK(m.generation_config({}, 4).max_new_tokens == 6);
  CHECK(m.generation_config({.max_new_tokens = 2}, 4).max_new_tokens == 2);
  CHECK(m.generation_config({.max_length = 12}, 4).max_new_tokens == 8);
  CHECK_THROWS_AS(m.generation_config({}, 10), InvalidArgument);
  CHECK_THROWS_WITH(m.generation_config({}, 10), Catch::Contains("max_length 10"));
  const TextResult r = m.generate("abc", {});  // [bos a b c]: 6 new tokens at most
  CHECK(r.tokens.size() <= 6);
  if (r.stop_reason != StopReason::eos) CHECK(r.tokens.size() == 6);

  const Model both = load_model(
      make_model_dir("len2", "llama-gqa", "char", R"({"max_length": 10, "max_new_tokens": 3})"));
  CHECK(both.generation_config({}, 4).max_new_tokens == 3);
  const Model none = load_model(make_model_dir("len3", "llama-gqa", "char"));
  CHECK(none.generation_config({}, 4).max_new_tokens == GenerationConfig{}.max_new_tokens);
}

TEST_CASE("text api: generation_config.json errors name the file and the field", "[text]") {
  using P = GenerateOptions;
  CHECK_THROWS_AS(P::parse_generation_config("{", "g.json"), ConfigError);
  CHECK_THROWS_AS(P::parse_generation_config("[1]", "g.json"), ConfigError);
  CHECK_THROWS_WITH(P::parse_generation_config(R"({"temperature": "hot"})", "g.json"),
                    Catch::Contains("g.json") && Catch::Contains("temperature"));
  CHECK_THROWS_WITH(P::parse_generation_config(R"({"max_new_tokens": -1})", "g.json"),
                    Catch::Contains("max_new_tokens"));
  CHECK_THROWS_WITH(P::parse_generation_config(R"({"do_sample": 1})", "g.json"),
                    Catch::Contains("do_sample"));
  CHECK_THROWS_WITH(P::parse_generation_config(R"({"eos_token_id": [2, "x"]})", "g.json"),
                    Catch::Contains("eos_token_id"));
  CHECK_THROWS_WITH(P::parse_generation_config(R"({"top_k": 2.5})", "g.json"),
                    Catch::Contains("top_k"));
  CHECK_THROWS_WITH(
      P::parse_generation_config(R"({"assistant_confidence_threshold": 2})", "g.json"),
      Catch::Contains("assistant_confidence_threshold"));
  CHECK_THROWS_AS(
      P::parse_generation_config(R"({"num_assistant_tokens_schedule": "sometimes"})", "g.json"),
      UnsupportedError);
  CHECK_THROWS_WITH(
      P::parse_generation_config(R"({"num_assistant_tokens_schedule": "sometimes"})", "g.json"),
      Catch::Contains("sometimes"));
  // eos as a number or a list; nulls are unset.
  CHECK(P::parse_generation_config(R"({"eos_token_id": 3})").eos_token_id == std::vector<Token>{3});
  CHECK(P::parse_generation_config(R"({"eos_token_id": [3, 4]})").eos_token_id ==
        std::vector<Token>{3, 4});
  CHECK(!P::parse_generation_config(R"({"eos_token_id": null, "top_k": null})").eos_token_id);
  CHECK(P::parse_generation_config(R"({"max_new_tokens": 5.0})").max_new_tokens == std::size_t{5});
  // A broken file makes load_model fail naming it.
  const auto dir = make_model_dir("badgen", "llama-gqa", "char", R"({"top_p": "x"})");
  CHECK_THROWS_WITH(load_model(dir),
                    Catch::Contains("generation_config.json") && Catch::Contains("top_p"));
}

TEST_CASE("text api: an empty prompt starts from bos, a missing tokenizer is an IoError", "[text]") {
  const Model with_bos = load_model(make_model_dir("e1", "llama-gqa", "char"));
  CHECK(with_bos.generate("", {.max_new_tokens = 3}).prompt_tokens == std::vector<Token>{1});
  // merged: no BOS added by the tokenizer; generation_config.json's bos 0 is used.
  const Model merged = load_model(make_model_dir("e2", "llama-gqa", "merged"));
  CHECK(merged.encode_prompt("") == std::vector<Token>{0});
  const TextResult r = merged.generate("", {.max_new_tokens = 3});
  CHECK(r.prompt_tokens == std::vector<Token>{0});
  CHECK_THROWS_AS(merged.generate("", {.max_new_tokens = 3, .bos_token_id = 999}), InvalidArgument);

  const auto dir = text_fixtures::scratch() / "notok";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"})
    std::filesystem::copy_file(text_fixtures::kData / "models" / "llama-gqa" / f, dir / f);
  CHECK_THROWS_AS(load_model(dir), IoError);
  CHECK_THROWS_WITH(load_model(dir), Catch::Contains("tokenizer.json"));
}

TEST_CASE("text api: generation_config.json fields that change HF's output are named in a warning",
          "[text]") {
  std::vector<std::string> warnings;
  WarningHandler previous =
      set_warning_handler([&](std::string_view m) { warnings.emplace_back(m); });
  // Neutral values (HF's defaults) and fields that do not change the output: no warning.
  (void)GenerateOptions::parse_generation_config(
      R"({"num_beams": 1, "no_repeat_ngram_size": 0, "typical_p": 1.0, "pad_token_id": 0,
          "transformers_version": "4.45.0", "bad_words_ids": null, "do_sample": true})",
      "quiet.json");
  CHECK(warnings.empty());
  const auto o = GenerateOptions::parse_generation_config(
      R"({"num_beams": 4, "no_repeat_ngram_size": 3, "typical_p": 0.9, "top_k": 7,
          "min_new_tokens": 10, "pad_token_id": 0})",
      "loud.json");
  CHECK(o.top_k == std::optional<std::size_t>(7));  // supported fields are still read
  // load_model warns too, naming the file.
  const auto dir = make_model_dir("warn-gen", "llama-gqa", "char", R"({"num_beams": 2})");
  (void)load_model(dir);
  set_warning_handler(std::move(previous));
  REQUIRE(warnings.size() == 2);
  CHECK(warnings[0].find("loud.json") != std::string::npos);
  for (const char* field :
       {"num_beams = 4", "no_repeat_ngram_size = 3", "typical_p = 0.9", "min_new_tokens = 10"})
    CHECK(warnings[0].find(field) != std::string::npos);
  CHECK(warnings[0].find("top_k") == std::string::npos);
  CHECK(warnings[0].find("pad_token_id") == std::string::npos);
  CHECK(warnings[1].find("generation_config.json") != std::string::npos);
  CHECK(warnings[1].find("num_beams = 2") != std::string::npos);
}

TEST_CASE("text api: load_model reports the load's progress, ending with every tensor", "[text]") {
  const auto dir = make_model_dir("progress", "qwen2-bias", "char");
  std::vector<LoadProgress> seen;
  LoadModelOptions lo;
  lo.on_progress = [&](const LoadProgress& p) { seen.push_back(p); };
  (void)load_model(dir, lo);
  REQUIRE(seen.size() >= 3);  // embeddings, each layer, the end
  for (std::size_t i = 1; i < seen.size(); ++i) {
    CHECK(seen[i].bytes_done >= seen[i - 1].bytes_done);
    CHECK(seen[i].tensors_done >= seen[i - 1].tensors_done);
    CHECK(seen[i].bytes_total == seen[0].bytes_total);
  }
  CHECK(seen.front().bytes_done > 0);
  CHECK(seen.front().bytes_done < seen.front().bytes_total);
  CHECK(seen.back().tensors_done == seen.back().tensors_total);
  CHECK(seen.back().bytes_done == seen.back().bytes_total);
  // The checkpoint's tensors, over both shards of qwen2-bias.
  const io::Checkpoint ck(dir);
  CHECK(seen.back().tensors_total == ck.names().size());
}
