// Position limits (backend.hpp's PositionLimits): a model with learned
// positions (GPT-2, n_positions 64 in the test checkpoints) stops with
// StopReason::capacity at its last position and keeps what it generated,
// plain or assisted (drafts are planned within the limit); a RoPE model run
// past max_position_embeddings warns once per generation (log.hpp).
#include <catch2/catch.hpp>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/log.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "integration/text_fixtures.hpp"

using namespace assistgen;
using cpu::Transformer;

namespace {

const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";

std::vector<Token> iota_prompt(std::size_t n) {
  std::vector<Token> p(n);
  std::iota(p.begin(), p.end(), Token{1});
  return p;
}

// Collects warnings while alive, restoring the previous handler after.
struct CapturedWarnings {
  std::vector<std::string> messages;
  WarningHandler previous =
      set_warning_handler([this](std::string_view m) { messages.emplace_back(m); });
  ~CapturedWarnings() { set_warning_handler(std::move(previous)); }
};

}  // namespace

TEST_CASE("position limits: the CPU backend declares them", "[positions]") {
  const auto gpt2 = Transformer::load(kModels / "gpt2-target");
  CHECK(gpt2.position_limits().hard == 64);
  CHECK(gpt2.position_limits().trained == 64);
  const auto llama = Transformer::load(kModels / "llama-gqa");
  CHECK(llama.position_limits().hard == 0);
  CHECK(llama.position_limits().trained == llama.config().max_position_embeddings);
  CHECK(AnyModel::borrow(gpt2).position_limits().hard == 64);
}

TEST_CASE("position limits: plain GPT-2 decoding stops at its last position and keeps the output",
          "[positions]") {
  const auto gpt2 = Transformer::load(kModels / "gpt2-target");
  const std::vector<Token> prompt{1, 2, 3};
  const GenerationResult r = generate_autoregressive(gpt2, prompt, {.max_new_tokens = 80});
  CHECK(r.stop_reason == StopReason::capacity);
  // Positions 0..63 hold the prompt and every new token but the last.
  REQUIRE(r.tokens.size() == 64 + 1 - prompt.size());
  const GenerationResult shorter = generate_autoregressive(gpt2, prompt, {.max_new_tokens = 20});
  CHECK(shorter.stop_reason == StopReason::max_new_tokens);
  CHECK(std::vector<Token>(r.tokens.begin(), r.tokens.begin() + 20) == shorter.tokens);
  // A prompt longer than the table is an error naming the limit.
  CHECK_THROWS_WITH(generate_autoregressive(gpt2, iota_prompt(65), {.max_new_tokens = 1}),
                    Catch::Contains("64 positions"));
}

TEST_CASE("position limits: assisted GPT-2 plans its drafts within the limit", "[positions]") {
  const auto target = Transformer::load(kModels / "gpt2-target");
  const auto draft = Transformer::load(kModels / "gpt2-draft");
  for (std::size_t prompt_len : {3u, 50u, 60u, 64u}) {
    INFO("prompt " << prompt_len);
    const auto prompt = iota_prompt(prompt_len);
    const GenerationConfig cfg{.max_new_tokens = 80, .num_assistant_tokens = 5};
    const GenerationResult plain = generate_autoregressive(target, prompt, cfg);
    SpeculativeDecoder decoder(draft, target, cfg);
    const GenerationResult assisted = decoder.generate(prompt);
    CHECK(assisted.stop_reason == StopReason::capacity);
    CHECK(assisted.tokens.size() == 64 + 1 - prompt_len);
    CHECK(assisted.tokens == plain.tokens);
    SpeculativeDecoder lookup(
        target, GenerationConfig{.max_new_tokens = 80, .prompt_lookup_num_tokens = 4});
    CHECK(lookup.generate(prompt).tokens == plain.tokens);
  }
}

TEST_CASE("position limits: a draft with fewer positions than the target limits the target",
          "[positions]") {
  const PositionLimits t{.hard = 64, .trained = 64};
  CHECK(detail::combined_limits(t, {.hard = 32, .trained = 32}).hard == 33);
  CHECK(detail::combined_limits(t, {}).hard == 64);
  CHECK(detail::combined_limits({}, {.hard = 10}).hard == 11);
  CHECK(detail::combined_limits(t, {.hard = 100}).hard == 64);
}

TEST_CASE("position limits: RoPE past max_position_embeddings warns once per generation",
          "[positions]") {
  const auto llama = Transformer::load(kModels / "llama-gqa");
  const std::size_t trained = llama.config().max_position_embeddings;
  const std::vector<Token> prompt{1, 17, 200};
  CapturedWarnings w;
  (void)generate_autoregressive(llama, prompt, {.max_new_tokens = 8});
  CHECK(w.messages.empty());
  const GenerationResult r =
      generate_autoregressive(llama, prompt, {.max_new_tokens = trained + 4});
  CHECK(r.stop_reason == StopReason::max_new_tokens);  // RoPE has no hard limit
  REQUIRE(w.messages.size() == 1);
  CHECK(w.messages[0].find("max_position_embeddings") != std::string::npos);
  CHECK(w.messages[0].find(std::to_string(trained)) != std::string::npos);
}

TEST_CASE("position limits: a GPT-2 draft with another tokenizer drafts only within its positions",
          "[positions]") {
  // Universal assisted generation: the draft re-encodes the text with its
  // own tokenizer, so its sequence has its own length; past 64 positions it
  // proposes nothing and the target goes on alone.
  const auto target = load_model(text_fixtures::make_model_dir("pl-t", "llama-gqa", "char"));
  const auto draft = load_model(text_fixtures::make_model_dir("pl-d", "gpt2-draft", "merged"));
  REQUIRE_FALSE(target.same_vocabulary(draft));
  const GenerateOptions o{.max_new_tokens = 200, .eos_token_id = std::vector<Token>{}};
  const TextResult plain = target.generate("And God said", o);
  const TextResult assisted = target.generate("And God said", draft, o);
  CHECK(assisted.assistance == Assistance::universal);
  CHECK(assisted.tokens == plain.tokens);
  CHECK(assisted.tokens.size() == 200);
  // The draft's own encoding of the text passes its 64 positions (without
  // the limit its forward would have thrown there).
  CHECK(draft.encode_prompt("And God said" + assisted.text).size() > 70);
}
