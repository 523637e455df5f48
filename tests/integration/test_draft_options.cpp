// GenerationConfig::draft_p_min (the draft stops before a token it gives a
// probability below it, with any schedule) and draft_min_tokens (shorter
// proposals are not verified), and the per-position acceptance counters of
// GenerationStats, on the random test checkpoints. Greedy output stays the
// target's own whatever they are set to.
#include <catch2/catch.hpp>
#include <filesystem>
#include <numeric>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/speculative_decoder.hpp"

using namespace assistgen;
using cpu::Transformer;

namespace {

const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";
const std::vector<Token> kPrompt{1, 17, 200, 45, 3, 99};

std::size_t sum(const std::vector<std::size_t>& v) {
  return std::accumulate(v.begin(), v.end(), std::size_t{0});
}

}  // namespace

TEST_CASE("draft options: greedy output is the target's for every draft_p_min and draft_min_tokens",
          "[draft]") {
  const auto target = Transformer::load(kModels / "llama-gqa");
  const auto draft = Transformer::load(kModels / "llama-gqa-noisy");
  const auto plain = generate_autoregressive(target, kPrompt, {.max_new_tokens = 40}).tokens;
  std::size_t drafted_without_p_min = 0;
  for (float p_min : {0.0f, 0.02f, 0.1f, 1.0f})
    for (std::size_t draft_min : {0u, 2u, 4u})
      for (DraftLengthSchedule schedule : {DraftLengthSchedule::constant, DraftLengthSchedule::heuristic, DraftLengthSchedule::confidence}) {
        INFO("p_min " << p_min << " draft_min " << draft_min << " schedule " << int(schedule));
        GenerationConfig cfg{.max_new_tokens = 40, .num_assistant_tokens = 5, .schedule = schedule};
        cfg.draft_p_min = p_min;
        cfg.draft_min_tokens = draft_min;
        SpeculativeDecoder decoder(draft, target, cfg);
        std::vector<std::size_t> proposals;
        decoder.set_round_observer([&](const auto& round) { proposals.push_back(round.drafted); });
        const GenerationResult r = decoder.generate(kPrompt);
        CHECK(r.tokens == plain);
        for (std::size_t k : proposals) CHECK((k == 0 || k >= draft_min));
        // Per position: the counters add up to the totals and never grow with the position.
        const auto& s = r.stats;
        CHECK(sum(s.drafted_at) == s.drafted);
        CHECK(sum(s.accepted_at) == s.accepted);
        REQUIRE(s.drafted_at.size() == s.accepted_at.size());
        for (std::size_t i = 0; i < s.drafted_at.size(); ++i) {
          CHECK(s.accepted_at[i] <= s.drafted_at[i]);
          if (i) CHECK(s.drafted_at[i] <= s.drafted_at[i - 1]);
        }
        if (p_min == 1.0f) CHECK(s.drafted == 0);  // no random-weight draft is certain
        if (p_min == 0.0f && draft_min == 0 && schedule == DraftLengthSchedule::constant)
          drafted_without_p_min = s.drafted;
        if (p_min == 0.1f && draft_min == 0 && schedule == DraftLengthSchedule::constant)
          CHECK(s.drafted < drafted_without_p_min);
      }
}

TEST_CASE("draft options: draft_p_min drops exactly the tokens below it", "[draft]") {
  const auto target = Transformer::load(kModels / "llama-gqa");
  const auto draft = Transformer::load(kModels / "llama-gqa-noisy");
  // Without the option, the draft's probability of each proposal is known
  // through the confidence schedule at threshold 0 (it never stops early).
  GenerationConfig probe{.max_new_tokens = 2,
                         .num_assistant_tokens = 6,
                         .schedule = DraftLengthSchedule::confidence,
                         .assistant_confidence_threshold = 0.0f};
  DraftModelCandidates<Transformer> candidates(draft, target.vocab_size());
  candidates.start(64);
  LogitsProcessorChain chain;
  Rng rng;
  std::vector<Token> work = kPrompt;
  const DraftLengthPolicy all(probe);
  REQUIRE(candidates.propose(work, kPrompt.size(), 6, chain, false, all, {}, rng) == 6);
  const std::vector<float> probs(candidates.probs().begin(), candidates.probs().end());
  // A p_min just above the j-th probability keeps the proposals before it.
  for (std::size_t j = 0; j < probs.size(); ++j) {
    GenerationConfig cfg = probe;
    cfg.schedule = DraftLengthSchedule::constant;
    cfg.draft_p_min = std::min(1.0f, probs[j] * 1.0001f + 1e-7f);
    std::size_t expected = 0;
    while (expected < probs.size() && probs[expected] >= cfg.draft_p_min) ++expected;
    candidates.start(64);
    work = kPrompt;
    CHECK(candidates.propose(work, kPrompt.size(), 6, chain, false, DraftLengthPolicy(cfg), {}, rng) ==
          expected);
  }
  CHECK_THROWS_AS(DraftLengthPolicy(GenerationConfig{.draft_p_min = 1.5f}), InvalidArgument);
}

TEST_CASE("draft options: prompt lookup honours draft_min_tokens", "[draft]") {
  const auto target = Transformer::load(kModels / "llama-gqa");
  const std::vector<Token> prompt{5, 6, 7, 8, 5, 6, 7, 8, 5, 6};
  const auto plain = generate_autoregressive(target, prompt, {.max_new_tokens = 24}).tokens;
  GenerationConfig cfg{.max_new_tokens = 24, .prompt_lookup_num_tokens = 4};
  cfg.draft_min_tokens = 3;
  SpeculativeDecoder decoder(target, cfg);
  std::vector<std::size_t> proposals;
  decoder.set_round_observer([&](const auto& round) { proposals.push_back(round.drafted); });
  CHECK(decoder.generate(prompt).tokens == plain);
  for (std::size_t k : proposals) CHECK((k == 0 || k >= 3));
}
