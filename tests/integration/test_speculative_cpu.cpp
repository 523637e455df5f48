// The speculative decoder on the real CPU backend with the random checkpoints
// of tests/data/models (see tests/data/README.md): llama-gqa is the target,
// llama-draft an unrelated draft, llama-gqa-noisy a partially agreeing one.
// Pins: greedy assisted output == plain greedy of the target (every draft,
// schedule, K in 1..8, prompt lookup); after every round both caches hold the
// documented tokens and continuing from them gives the logits of a fresh
// recompute; assisted sampling gives the target's distribution for the first
// two tokens (chi-square and total variation against the exact distribution
// computed from the target's logits, with a number of runs from a power
// calculation).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "integration/sampling_stats.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;
using cpu::Transformer;

namespace {

const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";

struct Models {
  Transformer target = Transformer::load(kModels / "llama-gqa");
  Transformer unrelated = Transformer::load(kModels / "llama-draft");
  Transformer noisy = Transformer::load(kModels / "llama-gqa-noisy");
  Transformer self = Transformer::load(kModels / "llama-gqa");
};

const Models& models() {
  static const Models m;
  return m;
}

const std::vector<Token> kPrompt{1, 17, 200, 45, 3, 99};
constexpr std::size_t kNew = 40;

const char* schedule_name(DraftLengthSchedule s) {
  switch (s) {
    case DraftLengthSchedule::constant:
      return "constant";
    case DraftLengthSchedule::heuristic:
      return "heuristic";
    case DraftLengthSchedule::heuristic_transient:
      return "heuristic_transient";
    case DraftLengthSchedule::confidence:
      return "confidence";
  }
  return "?";
}

/// Last row of logits after feeding `tokens` to a fresh cache of `m`.
std::vector<float> fresh_last_row(const Transformer& m, std::span<const Token> tokens) {
  auto cache = m.make_cache(tokens.size());
  const Logits l = m.forward(tokens, cache);
  const auto row = l.row(l.rows() - 1);
  return {row.begin(), row.end()};
}

/// Continues a clone of `cache` with seq[cache.size()..] and compares the
/// last logits with a fresh recompute of all of seq. f32 on both paths; the
/// difference is rounding of differently blocked matmuls: bound 1e-4 relative
/// to the largest logit.
void check_continuation(const Transformer& m, const Transformer::Cache& cache,
                        std::span<const Token> seq) {
  REQUIRE(cache.size() < seq.size());
  auto c = cache.clone();
  const Logits l = m.forward(seq.subspan(cache.size()), c);
  const auto got = l.row(l.rows() - 1);
  const auto want = fresh_last_row(m, seq);
  float scale = 1.0f, err = 0.0f;
  for (std::size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::abs(want[i]));
    err = std::max(err, std::abs(got[i] - want[i]));
  }
  REQUIRE(err <= 1e-4f * scale);
}

template <class Decoder>
void check_caches_every_round(Decoder& dec, const Transformer& draft, const Transformer& target,
                              std::size_t& rounds) {
  dec.set_round_observer([&](const typename Decoder::Round& r) {
    ++rounds;
    const std::span<const Token> seq = r.sequence;
    // Target: everything but the last token; draft: one or two fewer
    // (two when every draft was accepted: d_K was never fed).
    REQUIRE(r.target_cache->size() == seq.size() - 1);
    const bool stopped_inside = r.emitted.size() < r.accepted + 1;
    if (r.drafted > 0 && !stopped_inside)
      REQUIRE(r.draft_cache->size() == seq.size() - (r.accepted == r.drafted ? 2 : 1));
    REQUIRE(r.draft_cache->size() <= seq.size() - 1);
    check_continuation(target, *r.target_cache, seq);
    check_continuation(draft, *r.draft_cache, seq);
  });
}

}  // namespace

TEST_CASE("assisted greedy equals plain greedy: every draft, schedule and K", "[speculative_cpu]") {
  const Models& m = models();
  const float penalty = GENERATE(1.0f, 1.2f);
  const GenerationConfig base{.max_new_tokens = kNew, .repetition_penalty = penalty};
  const auto plain = generate_autoregressive(m.target, kPrompt, base);
  REQUIRE(plain.tokens.size() == kNew);

  struct Named {
    const char* name;
    const Transformer* model;
  };
  for (const Named& d :
       {Named{"unrelated", &m.unrelated}, Named{"noisy", &m.noisy}, Named{"self", &m.self}}) {
    for (DraftLengthSchedule s : {DraftLengthSchedule::constant, DraftLengthSchedule::heuristic, DraftLengthSchedule::heuristic_transient,
                       DraftLengthSchedule::confidence}) {
      for (std::size_t k = 1; k <= 8; ++k) {
        GenerationConfig cfg = base;
        cfg.num_assistant_tokens = k;
        cfg.schedule = s;
        SpeculativeDecoder dec(*d.model, m.target, cfg);
        const auto r = dec.generate(kPrompt);
        INFO("draft " << d.name << ", schedule " << schedule_name(s) << ", K " << k << ", penalty "
                      << penalty);
        REQUIRE(r.tokens == plain.tokens);
        REQUIRE(r.stats.target_calls == r.stats.rounds);
        REQUIRE(r.stats.accepted <= r.stats.drafted);
        if (d.model == &m.self) {
          REQUIRE(r.stats.acceptance_rate() == 1.0);
          if (s == DraftLengthSchedule::constant) {
            // K + 1 tokens per target call; only the last round is shorter.
            REQUIRE(r.stats.rounds == (kNew + k) / (k + 1));
          }
        }
      }
    }
  }
}

TEST_CASE("acceptance rates order as the drafts agree with the target", "[speculative_cpu]") {
  const Models& m = models();
  const GenerationConfig cfg{.max_new_tokens = kNew, .num_assistant_tokens = 4};
  SpeculativeDecoder unrelated(m.unrelated, m.target, cfg);
  SpeculativeDecoder noisy(m.noisy, m.target, cfg);
  const double ru = unrelated.generate(kPrompt).stats.acceptance_rate();
  const double rn = noisy.generate(kPrompt).stats.acceptance_rate();
  INFO("acceptance unrelated " << ru << ", noisy " << rn);
  REQUIRE(rn > ru);
  REQUIRE(rn < 1.0);
}

TEST_CASE("after every round both caches hold the accepted sequence and continue like a recompute",
          "[speculative_cpu]") {
  const Models& m = models();
  for (bool sample : {false, true}) {
    for (const Transformer* draft : {&m.noisy, &m.unrelated}) {
      GenerationConfig cfg{.max_new_tokens = 30,
                           .num_assistant_tokens = 3,
                           .schedule = DraftLengthSchedule::heuristic,
                           .do_sample = sample,
                           .temperature = 1.5f,
                           .seed = 11};
      SpeculativeDecoder dec(*draft, m.target, cfg);
      std::size_t rounds = 0;
      check_caches_every_round(dec, *draft, m.target, rounds);
      const auto r = dec.generate(kPrompt);
      REQUIRE(rounds == r.stats.rounds);
      REQUIRE(r.tokens.size() == 30);
    }
  }
}

TEST_CASE("prompt lookup on the CPU backend equals plain greedy", "[speculative_cpu]") {
  const Models& m = models();
  // A prompt with repeats, followed by the target's own continuation so the
  // n-grams of the output also occur in the prompt.
  std::vector<Token> prompt{1, 17, 200, 45, 3, 99, 17, 200, 45};
  const auto cont = generate_autoregressive(m.target, prompt, {.max_new_tokens = 12}).tokens;
  prompt.insert(prompt.end(), cont.begin(), cont.end());
  prompt.insert(prompt.end(), {17, 200});
  const GenerationConfig base{.max_new_tokens = kNew};
  const auto plain = generate_autoregressive(m.target, prompt, base).tokens;
  std::size_t accepted = 0;
  for (std::size_t n : {1, 2, 3})
    for (std::size_t k : {1, 2, 5, 8}) {
      GenerationConfig cfg = base;
      cfg.prompt_lookup_num_tokens = k;
      cfg.max_matching_ngram_size = n;
      SpeculativeDecoder dec(m.target, cfg);
      const auto r = dec.generate(prompt);
      INFO("ngram " << n << ", K " << k);
      REQUIRE(r.tokens == plain);
      REQUIRE(r.stats.target_calls == r.stats.rounds);
      accepted += r.stats.accepted;
    }
  REQUIRE(accepted > 0);
}

TEST_CASE("other checkpoints as drafts and targets keep greedy equality", "[speculative_cpu]") {
  const Models& m = models();
  const Transformer qwen = Transformer::load(kModels / "qwen2-bias");
  const Transformer tied = Transformer::load(kModels / "llama-tied-bf16");
  const Transformer mistral = Transformer::load(kModels / "mistral-f16");
  const GenerationConfig cfg{
      .max_new_tokens = 24, .num_assistant_tokens = 3, .schedule = DraftLengthSchedule::heuristic};
  for (const Transformer* draft : {&qwen, &tied, &mistral}) {
    SpeculativeDecoder dec(*draft, m.target, cfg);
    REQUIRE(dec.generate(kPrompt).tokens == generate_autoregressive(m.target, kPrompt, cfg).tokens);
  }
  // llama-tied-bf16 as target, with its two EOS ids from its config.
  GenerationConfig eos_cfg = cfg;
  eos_cfg.eos_token_ids = tied.config().eos_token_ids;
  REQUIRE(eos_cfg.eos_token_ids.size() == 2);
  const auto plain = generate_autoregressive(tied, kPrompt, eos_cfg);
  SpeculativeDecoder dec(m.unrelated, tied, eos_cfg);
  const auto r = dec.generate(kPrompt);
  REQUIRE(r.tokens == plain.tokens);
  REQUIRE(r.stop_reason == plain.stop_reason);

  // Special tokens declared by each model must agree.
  GenerationConfig special = cfg;
  special.draft_special_tokens = SpecialTokens{.eos_token_ids = tied.config().eos_token_ids};
  special.target_special_tokens = SpecialTokens{.eos_token_ids = m.target.config().eos_token_ids};
  REQUIRE_THROWS_MATCHES(
      SpeculativeDecoder(tied, m.target, special), CompatibilityError,
      Catch::Matchers::Message("EOS token ids differ: draft [2, 3], target [2]"));
}

TEST_CASE("AnyModel over the CPU backend gives the typed decoder's output", "[speculative_cpu]") {
  const Models& m = models();
  GenerationConfig cfg{.max_new_tokens = 24,
                       .num_assistant_tokens = 4,
                       .do_sample = true,
                       .temperature = 0.8f,
                       .seed = 3};
  SpeculativeDecoder typed(m.noisy, m.target, cfg);
  const AnyModel draft = AnyModel::borrow(m.noisy);
  const AnyModel target = AnyModel::borrow(m.target);
  SpeculativeDecoder erased(draft, target, cfg);
  REQUIRE(erased.generate(kPrompt).tokens == typed.generate(kPrompt).tokens);
}


TEST_CASE("assisted sampling: the first two tokens follow the target's distribution",
          "[speculative_cpu][statistical]") {
  // Temperature 1.5 spreads the random model's distribution over the 256
  // tokens. The exact law of token 1 is softmax(logits / 1.5) after the
  // prompt, computed here in double from the target's raw logits (not with
  // the library's processor chain); token 2's marginal is
  // sum_a P(t1 = a) P(t2 | prompt + a), from 256 conditional forward passes.
  // The number of seeded runs per draft comes from a power calculation
  // (runs_for_power: a deviation of total variation 0.03 is caught with
  // probability 0.99); each marginal must pass Pearson's chi-square at
  // significance 0.001 (cells with expected count < 5 pooled, critical value
  // by Wilson-Hilferty, toy_models.hpp) and its total variation must stay
  // within the 0.001 sampling bound tv_bound_001.
  const Models& m = models();
  const std::size_t v = m.target.vocab_size();
  const GenerationConfig cfg{
      .max_new_tokens = 3, .num_assistant_tokens = 3, .do_sample = true, .temperature = 1.5f};
  auto processed = [&](std::span<const Token> h) {
    const std::vector<float> row = fresh_last_row(m.target, h);
    double mx = -std::numeric_limits<double>::infinity(), z = 0;
    for (float x : row) mx = std::max(mx, double(x) / 1.5);
    std::vector<double> p(row.size());
    for (std::size_t i = 0; i < row.size(); ++i) z += p[i] = std::exp(double(row[i]) / 1.5 - mx);
    for (double& x : p) x /= z;
    return p;
  };
  const std::vector<double> p1 = processed(kPrompt);
  std::vector<double> p2(v, 0.0);
  std::vector<Token> h = kPrompt;
  h.push_back(0);
  for (std::size_t a = 0; a < v; ++a) {
    h.back() = static_cast<Token>(a);
    const auto cond = processed(h);
    for (std::size_t b = 0; b < v; ++b) p2[b] += p1[a] * cond[b];
  }
  const std::size_t runs = std::max(stats::runs_for_power(p1, 0.03), stats::runs_for_power(p2, 0.03));
  INFO("runs per draft " << runs);
  REQUIRE(runs >= 20000);  // what the first version of this test used: the calculation asks for more

  for (const Transformer* draft : {&m.noisy, &m.unrelated}) {
    SpeculativeDecoder dec(*draft, m.target, cfg);
    std::vector<std::size_t> c1(v), c2(v);
    for (std::size_t i = 0; i < runs; ++i) {
      dec.set_seed(static_cast<std::uint64_t>(i));
      const auto r = dec.generate(kPrompt);
      ++c1[static_cast<std::size_t>(r.tokens[0])];
      ++c2[static_cast<std::size_t>(r.tokens[1])];
    }
    for (const auto& [counts, p] :
         {std::pair{&c1, &p1}, std::pair{&c2, static_cast<const std::vector<double>*>(&p2)}}) {
      const auto cs = toy::chi_square(*counts, *p);
      double tv = 0.0;
      for (std::size_t i = 0; i < v; ++i) tv += std::abs(double((*counts)[i]) / double(runs) - (*p)[i]) / 2;
      const double bound = stats::tv_bound_001(*p, runs);
      INFO("draft " << (draft == &m.noisy ? "noisy" : "unrelated") << ": chi2 " << cs.statistic
                    << " df " << cs.df << " critical " << toy::chi2_critical_001(cs.df)
                    << ", total variation " << tv << " (bound " << bound << ")");
      REQUIRE(cs.impossible == 0);
      REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));
      REQUIRE(tv < bound);
    }
  }
}
