// The text API's batches: Model::generate_batch on the demo models (trained,
// so drafts are often accepted) and on the random test checkpoints with two
// tokenizers (the universal path), generate_batch_ids without a tokenizer.
// Pins: each request's result (tokens, text, stop reason) is the one
// Model::generate gives it alone, whatever its batch mates; pieces streamed
// for an index concatenate to that request's text; a bad request fails
// alone, naming its problem.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "assistgen/assistgen.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "integration/text_fixtures.hpp"

using namespace assistgen;
using text_fixtures::make_model_dir;

namespace {

const std::filesystem::path kDemo = std::filesystem::path(ASSISTGEN_MODELS_DIR);

const Model& demo_target() {
  static const Model m = load_model(kDemo / "kjv-target", {.threads = 1});
  return m;
}
const Model& demo_draft() {
  static const Model m = load_model(kDemo / "kjv-draft", {.threads = 1});
  return m;
}

// A mix of requests: greedy and seeded sampling, stop strings, prompt
// lookup (ignored by assisted batches: set only without an assistant),
// various lengths, one request given as ids.
std::vector<BatchRequest> mixed_requests(const Model& m, bool lookup) {
  const std::vector<std::string> prompts = {
      "And God said", "In the beginning", "And it came to pass", "The LORD is my shepherd",
      "Blessed are",  "And the earth",    "Let there be light",  "Thou shalt"};
  std::vector<BatchRequest> q;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    BatchRequest r;
    r.prompt = prompts[i];
    r.options.max_new_tokens = 8 + 5 * (i % 4);
    if (i % 3 == 1) {
      r.options.do_sample = true;
      r.options.seed = 40 + i;
      r.options.temperature = 0.8f;
    }
    if (i % 4 == 2) r.options.stop = std::vector<std::string>{" the", "and"};
    if (lookup && i % 3 == 2) r.options.prompt_lookup_num_tokens = 3;
    r.options.num_assistant_tokens = 1 + i % 5;
    if (i == 5) r.tokens = m.encode_prompt(prompts[i]);
    q.push_back(std::move(r));
  }
  return q;
}

void check_against_alone(const Model& m, const Model* assistant, const std::vector<BatchRequest>& q,
                         const BatchTextResult& got,
                         const std::map<std::size_t, std::string>& streamed) {
  REQUIRE(got.results.size() == q.size());
  for (std::size_t i = 0; i < q.size(); ++i) {
    INFO("request " << i);
    REQUIRE_FALSE(got.errors[i]);
    const std::string prompt = q[i].tokens ? m.tokenizer().decode(*q[i].tokens, true) : q[i].prompt;
    const TextResult alone =
        assistant ? m.generate(prompt, *assistant, q[i].options) : m.generate(prompt, q[i].options);
    CHECK(got.results[i].tokens == alone.tokens);
    CHECK(got.results[i].text == alone.text);
    CHECK(got.results[i].stop_reason == alone.stop_reason);
    CHECK(got.results[i].assistance == alone.assistance);
    CHECK(got.results[i].prompt_tokens == alone.prompt_tokens);
    const std::string piece_text = streamed.count(i) ? streamed.at(i) : std::string();
    CHECK(piece_text == alone.text);
  }
}

}  // namespace

TEST_CASE("generate_batch: plain and prompt-lookup requests equal generate alone") {
  const Model& m = demo_target();
  const auto q = mixed_requests(m, true);
  std::map<std::size_t, std::string> streamed;
  const BatchTextResult got =
      m.generate_batch(q, nullptr, {.max_batch = 3}, [&](std::size_t i, std::string_view p) {
        streamed[i] += p;
        return true;
      });
  check_against_alone(m, nullptr, q, got, streamed);
  CHECK(got.stats.max_batch_seen == 3);
  CHECK(got.stats.target_calls == got.stats.rounds);
}

TEST_CASE("generate_batch: draft-assisted requests equal generate alone") {
  const Model& m = demo_target();
  const auto q = mixed_requests(m, false);
  std::map<std::size_t, std::string> streamed;
  const BatchTextResult got =
      m.generate_batch(q, &demo_draft(), {.max_batch = 5}, [&](std::size_t i, std::string_view p) {
        streamed[i] += p;
        return true;
      });
  check_against_alone(m, &demo_draft(), q, got, streamed);
  CHECK(got.stats.accepted > 0);
  CHECK(got.stats.mean_batch() > 1.0);
  CHECK(got.results[0].assistance == Assistance::draft);
}

TEST_CASE("generate_batch: a draft with another tokenizer (universal) equals generate alone") {
  const Model target = load_model(make_model_dir("bt-t", "llama-gqa", "char"));
  const Model other = load_model(make_model_dir("bt-o", "llama-draft", "merged"));
  std::vector<BatchRequest> q;
  for (const char* p : {"And God said", "Hello, world!\n", "x", "The quick brown fox"}) {
    BatchRequest r;
    r.prompt = p;
    r.options.max_new_tokens = 12;
    q.push_back(std::move(r));
  }
  std::map<std::size_t, std::string> streamed;
  const BatchTextResult got =
      target.generate_batch(q, &other, {.max_batch = 4}, [&](std::size_t i, std::string_view p) {
        streamed[i] += p;
        return true;
      });
  check_against_alone(target, &other, q, got, streamed);
  CHECK(got.results[0].assistance == Assistance::universal);
}

TEST_CASE(
    "generate_batch: a bad request fails alone, a refusing callback stops its sequence only") {
  const Model& m = demo_target();
  std::vector<BatchRequest> q(4);
  q[0].prompt = "And God said";
  q[1].prompt = "In the beginning";
  q[1].options.top_p = 2.0f;                   // out of range
  q[2].tokens = std::vector<Token>{1, 99999};  // outside the vocabulary
  q[3].prompt = "Blessed are";
  for (auto& r : q) r.options.max_new_tokens = 10;
  std::size_t pieces_of_3 = 0;
  const BatchTextResult got = m.generate_batch(
      q, &demo_draft(), {.max_batch = 4},
      [&](std::size_t i, std::string_view) { return i != 3 || ++pieces_of_3 < 2; });
  CHECK_FALSE(got.ok());
  CHECK_FALSE(got.errors[0]);
  REQUIRE(got.errors[1]);
  CHECK_THROWS_WITH(std::rethrow_exception(got.errors[1]), Catch::Contains("top_p"));
  REQUIRE(got.errors[2]);
  CHECK_THROWS_WITH(std::rethrow_exception(got.errors[2]), Catch::Contains("99999"));
  CHECK(got.results[0].text == m.generate(q[0].prompt, demo_draft(), q[0].options).text);
  CHECK_FALSE(got.errors[3]);
  CHECK(got.results[3].stop_reason == StopReason::callback);
  CHECK(pieces_of_3 == 2);
  // The convenience overload throws the first error.
  CHECK_THROWS_AS(
      m.generate_batch(std::vector<std::string>{"a", "b"}, GenerateOptions{.top_p = 2.0f}),
      InvalidArgument);
  const auto texts = m.generate_batch(std::vector<std::string>{"And God said", "Thou shalt"},
                                      GenerateOptions{.max_new_tokens = 6});
  REQUIRE(texts.size() == 2);
  CHECK(texts[1].text == m.generate("Thou shalt", {.max_new_tokens = 6}).text);
}

TEST_CASE("generate_batch_ids: token ids without a tokenizer equal the decoders alone") {
  const auto dir = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";
  const auto target =
      std::make_shared<const cpu::Transformer>(cpu::Transformer::load(dir / "llama-gqa"));
  const auto draft =
      std::make_shared<const cpu::Transformer>(cpu::Transformer::load(dir / "llama-gqa-noisy"));
  const AnyModel t(target), d(draft);
  std::vector<BatchIdsRequest> q;
  for (std::size_t i = 0; i < 7; ++i) {
    BatchIdsRequest r;
    r.prompt = {1, static_cast<Token>(10 + i), 200, static_cast<Token>(3 * i), 7, 10};
    r.config.max_new_tokens = 6 + 3 * i;
    r.config.num_assistant_tokens = 1 + i % 4;
    r.config.do_sample = i % 2 == 1;
    r.config.seed = i;
    q.push_back(r);
  }
  std::map<std::size_t, std::vector<Token>> streamed;
  const BatchIdsResult got =
      generate_batch_ids(t, &d, q, {.max_batch = 4}, [&](std::size_t i, Token tok) {
        streamed[i].push_back(tok);
        return true;
      });
  for (std::size_t i = 0; i < q.size(); ++i) {
    REQUIRE_FALSE(got.errors[i]);
    SpeculativeDecoder dec(*draft, *target, q[i].config);
    CHECK(got.results[i].tokens == dec.generate(q[i].prompt).tokens);
    CHECK(streamed[i] == got.results[i].tokens);
    CHECK(got.assistance[i] == Assistance::draft);
  }
  // Plain: no draft.
  const BatchIdsResult plain = generate_batch_ids(t, nullptr, q, {.max_batch = 7});
  for (std::size_t i = 0; i < q.size(); ++i)
    CHECK(plain.results[i].tokens ==
          generate_autoregressive(*target, q[i].prompt, q[i].config).tokens);
}
