// AssistedDecoder over candidate sources written here, as a user would write
// them: the one round loop keeps the target's output (greedy: token for
// token; sampling: in distribution) whatever the source proposes, calls the
// source's hooks as documented, and rejects a source that breaks the rules.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "assistgen/assisted_decoder.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "toy_models.hpp"

using namespace assistgen;
using toy::FnModel;

namespace {

constexpr std::size_t kVocab = 12;
const std::vector<Token> kPrompt{3, 1, 4, 1, 5};

// Proposes a fixed script of tokens (the same every round, clipped to the
// limit) and records every hook call, so tests can check the protocol.
struct ScriptedSource {
  std::vector<Token> script;
  std::size_t want = 3;
  std::size_t extra = 0;  // tokens appended beyond what propose() may (a broken source)
  std::vector<std::string> log;

  void start(std::size_t capacity, std::size_t, CandidateContext&) { log.push_back("start " + std::to_string(capacity)); }
  std::size_t limit(const CandidateContext&) const { return want; }
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit, CandidateContext&) {
    REQUIRE(seq.size() == n);
    const std::size_t k = std::min(limit, script.size()) + extra;
    for (std::size_t i = 0; i < k; ++i) seq.push_back(script[i % script.size()]);
    log.push_back("propose " + std::to_string(k));
    return k;
  }
  std::span<const float> q_row(std::size_t) const { return {}; }
  void discard(std::size_t n) { log.push_back("discard " + std::to_string(n)); }
  void learn(std::size_t n, std::size_t accepted, CandidateContext&) {
    log.push_back("learn " + std::to_string(n) + " " + std::to_string(accepted));
  }
  void cut(std::size_t n) { log.push_back("cut " + std::to_string(n)); }
  void finish(GenerationStats& st) const { st.draft_calls = 0; }
};
static_assert(CandidateSource<ScriptedSource>);

// Proposes the target's own greedy continuation, read from a plain run.
struct OracleSource {
  std::vector<Token> truth;  // prompt + the target's greedy output
  void start(std::size_t, std::size_t, CandidateContext&) {}
  std::size_t limit(const CandidateContext&) const { return 4; }
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit, CandidateContext&) {
    std::size_t k = 0;
    while (k < limit && n + k < truth.size()) seq.push_back(truth[n + k++]);
    return k;
  }
  std::span<const float> q_row(std::size_t) const { return {}; }
  void discard(std::size_t) {}
  void learn(std::size_t, std::size_t, CandidateContext&) {}
  void cut(std::size_t) {}
  void finish(GenerationStats&) const {}
};

// Draws its candidates from a uniform q with the decoder's generator and
// reports q: exact sampling needs both.
struct UniformSource {
  std::vector<float> q = std::vector<float>(kVocab, 1.0f / kVocab);
  void start(std::size_t, std::size_t, CandidateContext&) {}
  std::size_t limit(const CandidateContext&) const { return 2; }
  std::size_t propose(std::vector<Token>& seq, std::size_t, std::size_t limit, CandidateContext& ctx) {
    for (std::size_t i = 0; i < limit; ++i) seq.push_back(sample_categorical(q, ctx.rng));
    return limit;
  }
  std::span<const float> q_row(std::size_t) const { return q; }
  void discard(std::size_t) {}
  void learn(std::size_t, std::size_t, CandidateContext&) {}
  void cut(std::size_t) {}
  void finish(GenerationStats&) const {}
};

}  // namespace

TEST_CASE("a user-written source: the output is the target's greedy output whatever it proposes",
          "[candidate_source]") {
  const FnModel target = toy::hash_model(kVocab, 11);
  GenerationConfig cfg{.max_new_tokens = 25};
  const auto plain = generate_autoregressive(target, kPrompt, cfg);

  for (const std::vector<Token>& script : {std::vector<Token>{0}, std::vector<Token>{7, 7, 2, 9},
                                           std::vector<Token>{11, 0, 5}}) {
    AssistedDecoder dec(target, ScriptedSource{.script = script}, cfg);
    const auto r = dec.generate(kPrompt);
    REQUIRE(r.tokens == plain.tokens);
    REQUIRE(r.stats.rounds == r.stats.target_calls);
    REQUIRE(r.stats.new_tokens == r.tokens.size());
  }

  // The oracle is always right: every candidate accepted, 5 tokens a round.
  std::vector<Token> truth = kPrompt;
  truth.insert(truth.end(), plain.tokens.begin(), plain.tokens.end());
  AssistedDecoder oracle(target, OracleSource{truth}, cfg);
  target.reset_counters();
  const auto r = oracle.generate(kPrompt);
  REQUIRE(r.tokens == plain.tokens);
  REQUIRE(r.stats.acceptance_rate() == 1.0);
  REQUIRE(r.stats.rounds == 5);  // 25 tokens, 4 candidates + 1 per round
  // One call per round, plus the prompt's prefill (all but its last token, no logits).
  REQUIRE(target.calls() == 5 + (kPrompt.size() > 1 ? 1 : 0));
}

TEST_CASE("the loop calls the source's hooks in the documented order", "[candidate_source]") {
  // The target always says 2 after anything; the script proposes 2 2 5: two
  // accepted, the third rejected, every round.
  const FnModel target = toy::script_model(kVocab, [](std::span<const Token>) { return Token(2); });
  GenerationConfig cfg{.max_new_tokens = 6};
  AssistedDecoder dec(target, ScriptedSource{.script = {2, 2, 5}}, cfg);
  std::vector<std::size_t> drafted;
  dec.set_round_observer([&](const auto& round) {
    drafted.push_back(round.drafted);
    REQUIRE(round.draft_cache == nullptr);  // the source shows no cache
    REQUIRE(round.target_cache->size() == round.sequence.size() - 1);
  });
  const auto r = dec.generate(kPrompt);
  REQUIRE(r.tokens == std::vector<Token>(6, 2));
  // Round 1: n = 5, 3 proposed, 2 accepted + correction. Round 2: n = 8,
  // room for 2 (3 tokens left), both accepted + bonus.
  REQUIRE(dec.source().log == std::vector<std::string>{"start 11", "propose 3", "learn 5 2", "propose 2",
                                                       "learn 8 2"});
  REQUIRE(drafted == std::vector<std::size_t>{3, 2});

  SECTION("too few candidates are discarded before verification") {
    GenerationConfig c = cfg;
    c.draft_min_tokens = 4;
    AssistedDecoder d(target, ScriptedSource{.script = {2, 2, 5}}, c);
    const auto out = d.generate(kPrompt);
    REQUIRE(out.tokens == std::vector<Token>(6, 2));
    REQUIRE(d.source().log[1] == "propose 3");
    REQUIRE(d.source().log[2] == "discard 5");
    REQUIRE(d.source().log[3] == "learn 5 0");
    REQUIRE(out.stats.acceptance_rate() == 0.0);
  }

  SECTION("a stop inside the accepted block cuts the source") {
    GenerationConfig c = cfg;
    c.eos_token_ids = {2};
    AssistedDecoder d(target, ScriptedSource{.script = {2, 2, 5}}, c);
    const auto out = d.generate(kPrompt);
    REQUIRE(out.tokens == std::vector<Token>{2});
    REQUIRE(out.stop_reason == StopReason::eos);
    REQUIRE(d.source().log.back() == "cut 5");
  }
}

TEST_CASE("a source that appends more than the round has room for is an error naming it",
          "[candidate_source]") {
  const FnModel target = toy::hash_model(kVocab, 5);
  AssistedDecoder dec(target, ScriptedSource{.script = {1}, .want = 1, .extra = 3},
                      GenerationConfig{.max_new_tokens = 3}, "MyDecoder::generate");
  REQUIRE_THROWS_WITH(dec.generate(kPrompt),
                      Catch::Contains("MyDecoder::generate: the candidate source appended 4 tokens") &&
                          Catch::Contains("room for 2"));
}

TEST_CASE("a user-written sampling source with its own q keeps the target's distribution",
          "[candidate_source][statistical]") {
  // Target: a fixed distribution over the vocabulary; the source proposes
  // uniformly. The first emitted token must follow the target exactly.
  std::vector<float> logits(kVocab);
  for (std::size_t i = 0; i < kVocab; ++i) logits[i] = std::log(1.0f + static_cast<float>(i % 5));
  const FnModel target = toy::fixed_model(logits);
  std::vector<double> p(kVocab);
  double z = 0.0;
  for (std::size_t i = 0; i < kVocab; ++i) z += std::exp(static_cast<double>(logits[i]));
  for (std::size_t i = 0; i < kVocab; ++i) p[i] = std::exp(static_cast<double>(logits[i])) / z;

  GenerationConfig cfg{.max_new_tokens = 3, .do_sample = true};
  AssistedDecoder dec(target, UniformSource{}, cfg);
  std::vector<std::size_t> first(kVocab), second(kVocab);
  constexpr std::size_t kRuns = 6000;
  for (std::size_t s = 0; s < kRuns; ++s) {
    dec.set_seed(1000 + s);
    const auto r = dec.generate(kPrompt);
    REQUIRE(r.tokens.size() == 3);
    ++first[static_cast<std::size_t>(r.tokens[0])];
    ++second[static_cast<std::size_t>(r.tokens[1])];
  }
  for (const auto* counts : {&first, &second}) {
    const toy::ChiSquare c = toy::chi_square(*counts, p);
    REQUIRE(c.impossible == 0);
    REQUIRE(c.statistic < toy::chi2_critical_001(c.df));
  }
}

TEST_CASE("SpeculativeDecoder is the same loop: a draft-model source gives identical results",
          "[candidate_source]") {
  const FnModel target = toy::hash_model(kVocab, 21);
  const FnModel draft = toy::partial_model(kVocab, 21, 22, 60);
  for (bool sample : {false, true}) {
    GenerationConfig cfg{.max_new_tokens = 30, .num_assistant_tokens = 3, .do_sample = sample, .seed = 9};
    SpeculativeDecoder spec(draft, target, cfg);
    AssistedDecoder loop(target, DraftModelCandidates<FnModel>(draft, kVocab), cfg);
    const auto a = spec.generate(kPrompt);
    const auto b = loop.generate(kPrompt);
    REQUIRE(a.tokens == b.tokens);
    REQUIRE(a.stats.accepted == b.stats.accepted);
    REQUIRE(a.stats.draft_calls == b.stats.draft_calls);
  }
}
