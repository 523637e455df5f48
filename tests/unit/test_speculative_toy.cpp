// SpeculativeDecoder on toy backends (tests/unit/toy_models.hpp): greedy
// equality with plain decoding for any draft / K / schedule, cache contents
// after every round, one target call per round, EOS and max_new_tokens inside
// a block, schedules, prompt lookup, compatibility checks, stats, streaming,
// capacity, seeded determinism, and sampled distributions: the first two
// tokens, and tokens 3 and 4 of six (later rounds, after rollbacks and with the
// draft lagging), against laws computed independently of the library's
// processor chain (chi-square, 1e5 seeded runs, significance 0.001).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "assistgen/autoregressive.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;
using toy::FnModel;
using toy::ToyCache;

namespace {

const std::vector<Token> kPrompt{3, 1, 4, 1, 5};
constexpr std::size_t kVocab = 16;

void check_stats(const GenerationResult& r, std::size_t k_max = 1000) {
  const auto& s = r.stats;
  REQUIRE(s.new_tokens == r.tokens.size());
  REQUIRE(s.accepted <= s.drafted);
  REQUIRE(s.target_calls == s.rounds);
  // Each round emits its accepted drafts plus one token, except that a stop
  // inside the last block may cut it short.
  REQUIRE(s.new_tokens <= s.accepted + s.rounds);
  if (r.stop_reason == StopReason::max_new_tokens || r.stop_reason == StopReason::capacity)
    REQUIRE(s.new_tokens == s.accepted + s.rounds);
  REQUIRE(s.drafted <= s.k_sum);
  REQUIRE(s.k_sum <= s.rounds * k_max);
  if (s.target_calls)
    REQUIRE_THAT(s.tokens_per_target_call(),
                 Catch::Matchers::WithinRel(double(s.new_tokens) / double(s.target_calls)));
  if (s.drafted)
    REQUIRE_THAT(s.acceptance_rate(),
                 Catch::Matchers::WithinRel(double(s.accepted) / double(s.drafted)));
  REQUIRE(s.mean_k() <= double(k_max));
  REQUIRE(s.total_seconds >= s.draft_seconds + s.target_seconds - 1e-9);
  REQUIRE(s.loop_seconds() >= 0.0);
}

/// Installs an observer that checks what both caches hold after each round
/// (see the cache table in speculative_decoder.hpp).
template <class Decoder>
void observe_caches(Decoder& dec, std::size_t& rounds_seen, bool has_draft = true) {
  dec.set_round_observer([&rounds_seen, has_draft](const typename Decoder::Round& r) {
    ++rounds_seen;
    const std::vector<Token> seq(r.sequence.begin(), r.sequence.end());
    const ToyCache& t = *r.target_cache;
    REQUIRE(t.tokens.size() == seq.size() - 1);
    REQUIRE(std::equal(t.tokens.begin(), t.tokens.end(), seq.begin()));
    REQUIRE(r.emitted.size() >= 1);
    REQUIRE(r.emitted.size() <= r.accepted + 1);
    if constexpr (!std::is_same_v<typename Decoder::DraftCache, NoDraft::Cache>) {
      REQUIRE(has_draft);
      const ToyCache& d = *r.draft_cache;
      REQUIRE(d.tokens.size() <= seq.size() - 1);
      REQUIRE(std::equal(d.tokens.begin(), d.tokens.end(), seq.begin()));
      const bool stopped_inside = r.emitted.size() < r.accepted + 1;
      if (r.drafted > 0 && !stopped_inside) {
        const std::size_t lag = r.accepted == r.drafted ? 2 : 1;
        REQUIRE(d.tokens.size() == seq.size() - lag);
      }
    } else {
      REQUIRE(r.draft_cache == nullptr);
    }
  });
}

}  // namespace

TEST_CASE("greedy assisted output equals plain greedy for any draft, K and schedule",
          "[speculative]") {
  const FnModel target = toy::hash_model(kVocab, 1);
  const FnModel unrelated = toy::hash_model(kVocab, 2);
  const FnModel partial = toy::partial_model(kVocab, 1, 2, 70);
  const FnModel same = toy::hash_model(kVocab, 1);
  const auto penalty = GENERATE(1.0f, 1.3f);
  GenerationConfig base{
      .max_new_tokens = 40, .repetition_penalty = penalty, .suppress_tokens = {0}};
  const std::vector<Token> expected = generate_autoregressive(target, kPrompt, base).tokens;
  REQUIRE(expected.size() == 40);

  for (const FnModel* draft : {&unrelated, &partial, &same}) {
    for (DraftLengthSchedule schedule : {DraftLengthSchedule::constant, DraftLengthSchedule::heuristic,
                              DraftLengthSchedule::heuristic_transient, DraftLengthSchedule::confidence}) {
      for (std::size_t k = 1; k <= 8; ++k) {
        GenerationConfig cfg = base;
        cfg.num_assistant_tokens = k;
        cfg.schedule = schedule;
        SpeculativeDecoder dec(*draft, target, cfg);
        std::size_t rounds = 0;
        observe_caches(dec, rounds);
        target.reset_counters();
        draft->reset_counters();
        const GenerationResult r = dec.generate(kPrompt);
        INFO("draft " << (draft == &same      ? "self"
                          : draft == &partial ? "partial"
                                              : "unrelated")
                      << " K " << k << " schedule " << int(schedule));
        REQUIRE(r.tokens == expected);
        REQUIRE(r.stop_reason == StopReason::max_new_tokens);
        REQUIRE(rounds == r.stats.rounds);
        // exactly one target forward per round, after the prompt's prefill call
        REQUIRE(target.calls() == r.stats.rounds + (kPrompt.size() > 1 ? 1 : 0));
        REQUIRE(draft->calls() == r.stats.draft_calls);
        check_stats(r, schedule == DraftLengthSchedule::heuristic || schedule == DraftLengthSchedule::heuristic_transient
                           ? 200
                           : k);
        if (draft == &same) {
          REQUIRE(r.stats.accepted == r.stats.drafted);
          if (schedule == DraftLengthSchedule::constant) {
            // K + 1 tokens per target call, the last round takes what is left.
            REQUIRE(r.stats.rounds == (40 + k) / (k + 1));
          }
        }
        if (draft == &unrelated && schedule == DraftLengthSchedule::constant)
          REQUIRE(r.stats.acceptance_rate() < 0.5);
      }
    }
  }
}

TEST_CASE("EOS drafted and accepted ends generation inside the block", "[speculative][eos]") {
  // Next token by position: prompt {1}, then 2, 3, EOS=7, 4, 5, 6.
  const std::vector<Token> script{1, 2, 3, 7, 4, 5, 6, 6, 6, 6, 6};
  auto next = [script](std::span<const Token> h) {
    return script[std::min(h.size(), script.size() - 1)];
  };
  const FnModel target = toy::script_model(8, next);
  const FnModel draft = toy::script_model(8, next);
  SpeculativeDecoder dec(draft, target,
                         {.max_new_tokens = 10, .num_assistant_tokens = 5, .eos_token_ids = {7}});
  std::size_t rounds = 0;
  observe_caches(dec, rounds);
  const std::vector<Token> prompt{1};
  const auto r = dec.generate(prompt);
  REQUIRE(r.tokens == std::vector<Token>{2, 3, 7});
  REQUIRE(r.stop_reason == StopReason::eos);
  REQUIRE(r.stats.rounds == 1);
  REQUIRE(r.stats.drafted == 3);  // the draft stops proposing after its EOS
  REQUIRE(r.stats.accepted == 3);
  REQUIRE(draft.calls() == 3);
  check_stats(r, 5);
}

TEST_CASE("a drafted EOS the target rejects does not stop generation", "[speculative][eos]") {
  const std::vector<Token> t_script{1, 2, 3, 4, 7, 5};
  const std::vector<Token> d_script{1, 2, 7, 7, 7, 7};
  const FnModel target = toy::script_model(8, [t_script](std::span<const Token> h) {
    return t_script[std::min(h.size(), t_script.size() - 1)];
  });
  const FnModel draft = toy::script_model(8, [d_script](std::span<const Token> h) {
    return d_script[std::min(h.size(), d_script.size() - 1)];
  });
  SpeculativeDecoder dec(draft, target,
                         {.max_new_tokens = 10, .num_assistant_tokens = 4, .eos_token_ids = {7}});
  std::size_t rounds = 0;
  observe_caches(dec, rounds);
  const auto r = dec.generate(std::vector<Token>{1});
  REQUIRE(r.tokens == std::vector<Token>{2, 3, 4, 7});
  REQUIRE(r.stop_reason == StopReason::eos);
  check_stats(r, 4);
}

TEST_CASE("EOS as the bonus token", "[speculative][eos]") {
  const std::vector<Token> t_script{1, 2, 3, 4, 7, 5};
  const std::vector<Token> d_script{1, 2, 3, 4, 5, 5};
  const FnModel target = toy::script_model(8, [t_script](std::span<const Token> h) {
    return t_script[std::min(h.size(), t_script.size() - 1)];
  });
  const FnModel draft = toy::script_model(8, [d_script](std::span<const Token> h) {
    return d_script[std::min(h.size(), d_script.size() - 1)];
  });
  SpeculativeDecoder dec(
      draft, target, {.max_new_tokens = 10, .num_assistant_tokens = 3, .eos_token_ids = {5, 7}});
  const auto r = dec.generate(std::vector<Token>{1});
  REQUIRE(r.tokens == std::vector<Token>{2, 3, 4, 7});
  REQUIRE(r.stop_reason == StopReason::eos);
  REQUIRE(r.stats.rounds == 1);
  REQUIRE(r.stats.accepted == 3);
}

TEST_CASE("max_new_tokens reached mid-block and K larger than what remains", "[speculative]") {
  const FnModel target = toy::hash_model(kVocab, 5);
  const FnModel draft = toy::hash_model(kVocab, 5);
  const auto expected = generate_autoregressive(target, kPrompt, {.max_new_tokens = 7}).tokens;
  {
    SpeculativeDecoder dec(draft, target, {.max_new_tokens = 7, .num_assistant_tokens = 5});
    const auto r = dec.generate(kPrompt);
    REQUIRE(r.tokens == expected);
    REQUIRE(r.stop_reason == StopReason::max_new_tokens);
    REQUIRE(r.stats.rounds == 2);  // 5 drafts + bonus, then one token with no drafts
    REQUIRE(r.stats.k_sum == 5);   // the last round was clipped to K = 0
    REQUIRE(r.stats.drafted == 5);
  }
  {
    SpeculativeDecoder dec(draft, target, {.max_new_tokens = 3, .num_assistant_tokens = 8});
    const auto r = dec.generate(kPrompt);
    REQUIRE(r.tokens == std::vector<Token>(expected.begin(), expected.begin() + 3));
    REQUIRE(r.stats.rounds == 1);
    REQUIRE(r.stats.drafted == 2);  // clipped to what remains minus the target's own token
  }
  {
    SpeculativeDecoder dec(draft, target, {.max_new_tokens = 1, .num_assistant_tokens = 4});
    draft.reset_counters();
    const auto r = dec.generate(kPrompt);
    REQUIRE(r.tokens.size() == 1);
    REQUIRE(r.stats.drafted == 0);
    REQUIRE(draft.calls() == 0);
  }
  {
    SpeculativeDecoder dec(draft, target, {.max_new_tokens = 0});
    const auto r = dec.generate(kPrompt);
    REQUIRE(r.tokens.empty());
    REQUIRE(r.stats.target_calls == 0);
    REQUIRE(r.stop_reason == StopReason::max_new_tokens);
  }
}

TEST_CASE("sampling is deterministic for a seed and changes with it", "[speculative][sampling]") {
  const FnModel target = toy::hash_model(kVocab, 1);
  const FnModel draft = toy::partial_model(kVocab, 1, 2, 60);
  GenerationConfig cfg{.max_new_tokens = 40,
                       .num_assistant_tokens = 4,
                       .schedule = DraftLengthSchedule::heuristic,
                       .do_sample = true,
                       .temperature = 1.2f,
                       .top_k = 10,
                       .repetition_penalty = 1.1f,
                       .seed = 77};
  SpeculativeDecoder a(draft, target, cfg);
  SpeculativeDecoder b(draft, target, cfg);
  const auto ra = a.generate(kPrompt);
  const auto rb = b.generate(kPrompt);
  REQUIRE(ra.tokens == rb.tokens);
  REQUIRE(ra.stats.drafted == rb.stats.drafted);
  REQUIRE(ra.stats.accepted == rb.stats.accepted);
  check_stats(ra, 200);
  b.set_seed(78);
  REQUIRE(b.generate(kPrompt).tokens != ra.tokens);
  b.set_seed(77);
  // heuristic K persists across calls, so the block sizes (and possibly the
  // draws) differ from a fresh decoder: use the transient schedule to repeat.
  cfg.schedule = DraftLengthSchedule::heuristic_transient;
  SpeculativeDecoder c(draft, target, cfg);
  const auto first = c.generate(kPrompt);
  REQUIRE(c.generate(kPrompt).tokens == first.tokens);
}

TEST_CASE("compatibility checks", "[speculative][compat]") {
  const FnModel target = toy::hash_model(kVocab, 1);
  const FnModel small = toy::hash_model(kVocab - 1, 1);
  REQUIRE_THROWS_MATCHES(
      SpeculativeDecoder(small, target, GenerationConfig{}), CompatibilityError,
      Catch::Matchers::Message("draft vocabulary size 15 is smaller than the target's 16 and target "
                               "token 15 is not suppressed (a draft must cover every target token that "
                               "can be generated; suppress the target's padding rows)"));
  // With the row it lacks suppressed on the target (a padded vocabulary),
  // the smaller draft assists, and greedy output is the target's own.
  GenerationConfig padded{.max_new_tokens = 12};
  padded.suppress_tokens = {15};
  SpeculativeDecoder with_padding(small, target, padded);
  REQUIRE(with_padding.generate(std::vector<Token>{1, 2, 3}).tokens ==
          generate_autoregressive(target, std::vector<Token>{1, 2, 3}, padded).tokens);

  // A larger draft vocabulary is fine; its extra logits (made the largest
  // here) are ignored, so it never proposes a token the target lacks (the toy
  // target would throw on one).
  const FnModel big(kVocab + 4, [](std::span<const Token> h, std::span<float> row) {
    toy::hash_logits(h, 1, row.first(kVocab));
    for (std::size_t i = kVocab; i < row.size(); ++i) row[i] = 100.0f;
  });
  GenerationConfig cfg{.max_new_tokens = 30, .num_assistant_tokens = 4};
  SpeculativeDecoder dec(big, target, cfg);
  const auto r = dec.generate(kPrompt);
  REQUIRE(r.tokens == generate_autoregressive(target, kPrompt, cfg).tokens);
  REQUIRE(r.stats.acceptance_rate() == 1.0);
  cfg.do_sample = true;
  SpeculativeDecoder sampler(big, target, cfg);
  REQUIRE(sampler.generate(kPrompt).tokens.size() == 30);

  GenerationConfig special{.draft_special_tokens = SpecialTokens{.eos_token_ids = {2}},
                           .target_special_tokens = SpecialTokens{.eos_token_ids = {3, 2}}};
  REQUIRE_THROWS_MATCHES(
      SpeculativeDecoder(target, target, special), CompatibilityError,
      Catch::Matchers::Message("EOS token ids differ: draft [2], target [2, 3]"));
  special.draft_special_tokens->eos_token_ids = {2, 3};
  special.draft_special_tokens->bos_token_id = 1;
  special.target_special_tokens->bos_token_id = 0;
  REQUIRE_THROWS_MATCHES(SpeculativeDecoder(target, target, special), CompatibilityError,
                         Catch::Matchers::Message("BOS token ids differ: draft 1, target 0"));
  special.target_special_tokens->bos_token_id = 1;
  SpeculativeDecoder ok(target, target, special);
  // EOS ids come from the target's special tokens when the config has none.
  REQUIRE(std::vector<Token>(ok.eos_token_ids().begin(), ok.eos_token_ids().end()) ==
          std::vector<Token>{3, 2});
}

TEST_CASE("bad arguments are clear errors", "[speculative]") {
  const FnModel m = toy::hash_model(kVocab, 1);
  SpeculativeDecoder dec(m, m, GenerationConfig{.max_new_tokens = 4});
  REQUIRE_THROWS_AS(dec.generate(std::vector<Token>{}), InvalidArgument);
  REQUIRE_THROWS_WITH(
      dec.generate(std::vector<Token>{1, 16}),
      Catch::Contains("prompt token 16 at position 1 is outside the target vocabulary of 16"));
  REQUIRE_THROWS_WITH(SpeculativeDecoder(m, m, GenerationConfig{.num_assistant_tokens = 0}),
                      Catch::Contains("num_assistant_tokens"));
  REQUIRE_THROWS_WITH(
      SpeculativeDecoder(m, m, GenerationConfig{.do_sample = true, .temperature = 0.0f}),
      Catch::Contains("temperature"));
  REQUIRE_THROWS_WITH(SpeculativeDecoder(m, m, GenerationConfig{.prompt_lookup_num_tokens = 3}),
                      Catch::Contains("prompt_lookup_num_tokens"));
  REQUIRE_THROWS_WITH(SpeculativeDecoder(m, GenerationConfig{}),
                      Catch::Contains("prompt_lookup_num_tokens"));
  REQUIRE_THROWS_WITH(SpeculativeDecoder(m, m, GenerationConfig{.eos_token_ids = {99}}),
                      Catch::Contains("eos_token_ids: token 99"));
}

TEST_CASE("cache capacity: documented clean stop, prompt too long is a CapacityError",
          "[speculative]") {
  const FnModel m = toy::hash_model(kVocab, 1);
  const FnModel d = toy::hash_model(kVocab, 2);
  GenerationConfig cfg{
      .max_new_tokens = 20, .num_assistant_tokens = 6, .cache_capacity = kPrompt.size() + 4};
  SpeculativeDecoder dec(d, m, cfg);
  const auto r = dec.generate(kPrompt);
  REQUIRE(r.tokens.size() == 5);  // capacity + 1 - prompt
  REQUIRE(r.stop_reason == StopReason::capacity);
  REQUIRE(r.tokens == generate_autoregressive(m, kPrompt, {.max_new_tokens = 5}).tokens);
  const auto plain = generate_autoregressive(m, kPrompt, cfg);
  REQUIRE(plain.tokens == r.tokens);
  REQUIRE(plain.stop_reason == StopReason::capacity);
  cfg.cache_capacity = kPrompt.size() - 1;
  SpeculativeDecoder small(d, m, cfg);
  REQUIRE_THROWS_AS(small.generate(kPrompt), CapacityError);
}

TEST_CASE("streaming callback sees tokens in order and can stop", "[speculative]") {
  const FnModel target = toy::hash_model(kVocab, 1);
  const FnModel draft = toy::hash_model(kVocab, 1);
  SpeculativeDecoder dec(draft, target, {.max_new_tokens = 30, .num_assistant_tokens = 5});
  std::size_t rounds = 0;
  observe_caches(dec, rounds);
  std::vector<Token> streamed;
  auto r = dec.generate(kPrompt, [&](Token t) {
    streamed.push_back(t);
    return true;
  });
  REQUIRE(streamed == r.tokens);
  const std::vector<Token> all = r.tokens;

  streamed.clear();
  r = dec.generate(kPrompt, [&](Token t) {
    streamed.push_back(t);
    return streamed.size() < 3;  // stop inside the first block of 6
  });
  REQUIRE(r.stop_reason == StopReason::callback);
  REQUIRE(r.tokens == std::vector<Token>(all.begin(), all.begin() + 3));
  REQUIRE(streamed == r.tokens);
  check_stats(r, 5);
}

TEST_CASE("prompt lookup: HF candidate semantics", "[prompt_lookup]") {
  PromptLookup pl(3, 2);
  std::vector<Token> out;
  const std::vector<Token> eos{9};
  // Bigram "1 2" occurs at 0 and 4: the earliest wins.
  pl.propose(std::vector<Token>{1, 2, 3, 4, 1, 2, 5, 6, 1, 2}, 10, eos, out);
  REQUIRE(out == std::vector<Token>{3, 4, 1});
  // Limited by the caller's limit, and by the end of the sequence.
  pl.propose(std::vector<Token>{1, 2, 3, 4, 1, 2, 5, 6, 1, 2}, 2, eos, out);
  REQUIRE(out == std::vector<Token>{3, 4});
  pl.propose(std::vector<Token>{5, 1, 2, 1}, 10, eos,
             out);  // bigram "2 1" absent, unigram "1" at 1
  REQUIRE(out == std::vector<Token>{2, 1});
  // Larger n-grams first: "7 1" matches at 3 although "1" matches earlier at 0.
  pl.propose(std::vector<Token>{1, 8, 8, 7, 1, 4, 4, 7, 1}, 10, eos, out);
  REQUIRE(out == std::vector<Token>{4, 4, 7});
  // Never proposes EOS or anything after it.
  pl.propose(std::vector<Token>{1, 2, 3, 9, 4, 1, 2}, 10, eos, out);
  REQUIRE(out == std::vector<Token>{3});
  // First match followed directly by EOS: no candidates (HF does not look further).
  pl.propose(std::vector<Token>{1, 2, 9, 3, 1, 2, 4, 1, 2}, 10, eos, out);
  REQUIRE(out.empty());
  pl.propose(std::vector<Token>{1, 2, 3}, 10, eos, out);  // no match
  REQUIRE(out.empty());
  pl.propose(std::vector<Token>{1}, 10, eos, out);
  REQUIRE(out.empty());
  PromptLookup three(4, 3);
  three.propose(std::vector<Token>{1, 2, 3, 9, 2, 3, 8, 1, 2, 3}, 10, {},
                out);  // trigram at 0 before bigram at 1
  REQUIRE(out == std::vector<Token>{9, 2, 3, 8});
  REQUIRE_THROWS_AS(PromptLookup(0, 2), InvalidArgument);
  REQUIRE_THROWS_AS(PromptLookup(3, 0), InvalidArgument);
}

TEST_CASE("prompt lookup decoding equals plain greedy and accepts copied text", "[prompt_lookup]") {
  // The target continues the period-5 pattern 1 2 3 4 5 of its prompt.
  const FnModel target =
      toy::script_model(8, [](std::span<const Token> h) { return Token(h.back() % 5 + 1); });
  const std::vector<Token> prompt{1, 2, 3, 4, 5, 1, 2};
  GenerationConfig cfg{.max_new_tokens = 30, .prompt_lookup_num_tokens = 4};
  SpeculativeDecoder dec(target, cfg);
  static_assert(std::is_same_v<decltype(dec), SpeculativeDecoder<NoDraft, FnModel>>);
  std::size_t rounds = 0;
  observe_caches(dec, rounds, false);
  target.reset_counters();
  const auto r = dec.generate(prompt);
  REQUIRE(target.calls() == r.stats.rounds + 1);  // the rounds and the prompt's prefill
  REQUIRE(r.tokens == generate_autoregressive(target, prompt, cfg).tokens);
  REQUIRE(r.stats.acceptance_rate() == 1.0);
  REQUIRE(r.stats.rounds == 6);  // 4 candidates + 1 per round
  REQUIRE(r.stats.draft_calls == 0);
  check_stats(r, 4);

  // Arbitrary target: still identical to greedy, any n-gram size.
  const FnModel hashed = toy::hash_model(kVocab, 3);
  for (std::size_t n : {1, 2, 3})
    for (std::size_t k : {1, 3, 10}) {
      GenerationConfig c{
          .max_new_tokens = 40, .prompt_lookup_num_tokens = k, .max_matching_ngram_size = n};
      SpeculativeDecoder d(hashed, c);
      const auto out = d.generate(kPrompt);
      REQUIRE(out.tokens == generate_autoregressive(hashed, kPrompt, c).tokens);
      check_stats(out, k);
    }
}

TEST_CASE("heuristic schedule: K += 2 when all accepted, else max(1, K - 1)", "[schedule]") {
  const FnModel target = toy::hash_model(kVocab, 1);
  const FnModel self = toy::hash_model(kVocab, 1);
  const FnModel partial = toy::partial_model(kVocab, 1, 2, 60);
  for (const FnModel* draft : {&self, &partial}) {
    SpeculativeDecoder dec(
        *draft, target,
        {.max_new_tokens = 60, .num_assistant_tokens = 2, .schedule = DraftLengthSchedule::heuristic});
    std::vector<std::pair<std::size_t, std::size_t>> rounds;  // (drafted, accepted)
    dec.set_round_observer([&](const auto& r) { rounds.emplace_back(r.drafted, r.accepted); });
    const auto r = dec.generate(kPrompt);
    REQUIRE(rounds.size() >= 2);
    std::size_t k = 2;
    std::size_t left = 60;
    for (const auto& [drafted, accepted] : rounds) {
      REQUIRE(drafted == std::min(k, left - 1));  // greedy draft without EOS drafts all it may
      left -= accepted + 1;
      k = accepted == k ? k + 2 : std::max<std::size_t>(1, k - 1);
    }
    REQUIRE(dec.num_assistant_tokens() == k);
    if (draft == &self) REQUIRE(rounds[3].first == 8);  // 2, 4, 6, 8

    // K is kept across calls: the next call starts where this one ended.
    rounds.clear();
    dec.generate(kPrompt);
    REQUIRE(rounds.front().first == std::min<std::size_t>(k, 59));
    check_stats(r, 200);
  }
}

TEST_CASE("heuristic_transient restarts K at every call", "[schedule]") {
  const FnModel target = toy::hash_model(kVocab, 1);
  SpeculativeDecoder dec(
      target, target,
      {.max_new_tokens = 30, .num_assistant_tokens = 3, .schedule = DraftLengthSchedule::heuristic_transient});
  std::vector<std::size_t> drafted;
  dec.set_round_observer([&](const auto& r) { drafted.push_back(r.drafted); });
  dec.generate(kPrompt);
  REQUIRE(drafted.at(1) == 5);
  REQUIRE(dec.num_assistant_tokens() != 3);
  drafted.clear();
  dec.generate(kPrompt);
  REQUIRE(drafted.front() == 3);
}

TEST_CASE("confidence schedule: the draft stops below the threshold", "[schedule]") {
  const FnModel target = toy::hash_model(kVocab, 1);
  // Flat draft logits except a small bump: its top probability is ~0.12 < 0.4.
  const FnModel unsure(kVocab, [](std::span<const Token> h, std::span<float> row) {
    std::fill(row.begin(), row.end(), 0.0f);
    row[static_cast<std::size_t>(h.back() * 5 + 1) % kVocab] = 0.7f;
  });
  // A confident draft: one token gets almost all the mass.
  const FnModel sure(kVocab, [](std::span<const Token> h, std::span<float> row) {
    std::fill(row.begin(), row.end(), 0.0f);
    row[static_cast<std::size_t>(h.back() * 5 + 1) % kVocab] = 10.0f;
  });
  GenerationConfig cfg{
      .max_new_tokens = 30, .num_assistant_tokens = 5, .schedule = DraftLengthSchedule::confidence};
  const auto expected = generate_autoregressive(target, kPrompt, cfg).tokens;
  SpeculativeDecoder a(unsure, target, cfg);
  std::vector<std::size_t> drafted;
  a.set_round_observer([&](const auto& r) { drafted.push_back(r.drafted); });
  auto r = a.generate(kPrompt);
  REQUIRE(r.tokens == expected);
  // The low-confidence token is still proposed; the last round (one token
  // left) drafts nothing.
  REQUIRE(drafted.back() == 0);
  for (std::size_t i = 0; i + 1 < drafted.size(); ++i) REQUIRE(drafted[i] == 1);
  SpeculativeDecoder b(sure, target, cfg);
  drafted.clear();
  b.set_round_observer([&](const auto& r2) { drafted.push_back(r2.drafted); });
  r = b.generate(kPrompt);
  REQUIRE(r.tokens == expected);
  REQUIRE(drafted.front() == 5);
  // Sampling uses the sampled token's q.
  cfg.do_sample = true;
  SpeculativeDecoder c(unsure, target, cfg);
  drafted.clear();
  c.set_round_observer([&](const auto& r3) { drafted.push_back(r3.drafted); });
  c.generate(kPrompt);
  for (std::size_t d : drafted) REQUIRE(d <= 1);
}

TEST_CASE("dynamic confidence threshold: equal-error-rate fit", "[schedule]") {
  using S = std::vector<std::pair<float, bool>>;
  // Separable: any threshold in (0.5, 0.6] has no error; the highest sample
  // probability at which FNR == FPR is 0.6.
  REQUIRE(DraftLengthPolicy::fit_threshold(S{{0.9f, true},
                                     {0.8f, true},
                                     {0.7f, true},
                                     {0.6f, true},
                                     {0.5f, false},
                                     {0.3f, false},
                                     {0.2f, false}},
                                   0.4f) == 0.6f);
  // Overlapping: at 0.5 FNR = FPR = 1/3.
  REQUIRE(
      DraftLengthPolicy::fit_threshold(
          S{{0.9f, true}, {0.5f, true}, {0.4f, true}, {0.6f, false}, {0.3f, false}, {0.2f, false}},
          0.4f) == 0.5f);
  // Too few samples or a single outcome: unchanged.
  REQUIRE(DraftLengthPolicy::fit_threshold(S{{0.9f, true}, {0.1f, false}}, 0.4f) == 0.4f);
  REQUIRE(DraftLengthPolicy::fit_threshold(S(10, {0.5f, true}), 0.4f) == 0.4f);

  const FnModel target = toy::hash_model(kVocab, 1);
  const FnModel draft = toy::partial_model(kVocab, 1, 2, 50);
  GenerationConfig cfg{.max_new_tokens = 60,
                       .num_assistant_tokens = 5,
                       .schedule = DraftLengthSchedule::confidence,
                       .assistant_confidence_threshold = 0.05f,
                       .dynamic_confidence_threshold = true};
  SpeculativeDecoder dec(draft, target, cfg);
  const auto r = dec.generate(kPrompt);
  REQUIRE(r.tokens == generate_autoregressive(target, kPrompt, cfg).tokens);
  const auto& samples = dec.draft_length().samples();
  REQUIRE(samples.size() > 5);
  REQUIRE(dec.confidence_threshold() == DraftLengthPolicy::fit_threshold(samples, 0.05f));
  REQUIRE(dec.confidence_threshold() != 0.05f);
}

// ---------------------------------------------------------------------------
// Sampled distributions through the whole decoder: the first two tokens
// (the first round) and a pair of tokens further on, produced by later rounds
// after a rollback or with the draft lagging behind (its cache lacks the
// previous round's bonus token). The expected laws are computed here with
// plain code written from HF's documented semantics, not with the library's
// processor chain, so a bug shared by the decoder and the chain shows.

namespace {

/// The target's processed next-token distribution after `history`, in
/// double, independently of include/assistgen/sampling: HF's order
/// (repetition penalty, suppressed tokens, then the sampling warpers
/// temperature, top-k, top-p, min-p) and HF's definitions of each.
std::vector<double> reference_probs(const FnModel& target, const GenerationConfig& cfg,
                                    const std::vector<Token>& history) {
  ToyCache c = target.make_cache(history.size());
  const Logits l = target.forward(history, c);
  const auto last = l.row(l.rows() - 1);
  const std::size_t v = last.size();
  constexpr double kMasked = -std::numeric_limits<double>::infinity();
  std::vector<double> x(last.begin(), last.end());
  // Repetition penalty: once per distinct token of the history (prompt included).
  std::vector<bool> seen(v, false);
  for (Token t : history) seen[static_cast<std::size_t>(t)] = true;
  for (std::size_t i = 0; i < v; ++i)
    if (seen[i] && cfg.repetition_penalty != 1.0f)
      x[i] = x[i] < 0 ? x[i] * cfg.repetition_penalty : x[i] / cfg.repetition_penalty;
  for (Token t : cfg.suppress_tokens) x[static_cast<std::size_t>(t)] = kMasked;
  if (cfg.do_sample) {
    for (double& e : x) e /= cfg.temperature;
    if (cfg.top_k != 0 && cfg.top_k < v) {  // keep values >= the k-th largest (its ties too)
      std::vector<double> sorted = x;
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      const double kth = sorted[cfg.top_k - 1];
      for (double& e : x)
        if (e < kth) e = kMasked;
    }
    auto softmax = [&] {
      const double m = *std::max_element(x.begin(), x.end());
      std::vector<double> p(v);
      double z = 0;
      for (std::size_t i = 0; i < v; ++i) z += p[i] = std::exp(x[i] - m);
      for (double& e : p) e /= z;
      return p;
    };
    if (cfg.top_p < 1.0f) {  // keep the most likely tokens while the mass before them is < top_p
      const auto p = softmax();
      std::vector<std::size_t> order(v);
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return p[a] > p[b]; });
      double before = 0;
      for (std::size_t i : order) {
        if (before >= cfg.top_p) x[i] = kMasked;
        before += p[i];
      }
    }
    if (cfg.min_p > 0.0f) {  // drop tokens below min_p times the top probability
      const auto p = softmax();
      const double top = *std::max_element(p.begin(), p.end());
      for (std::size_t i = 0; i < v; ++i)
        if (p[i] < cfg.min_p * top) x[i] = kMasked;
    }
  }
  const double m = *std::max_element(x.begin(), x.end());
  std::vector<double> p(v);
  double z = 0;
  for (std::size_t i = 0; i < v; ++i) z += p[i] = std::exp(x[i] - m);
  for (double& e : p) e /= z;
  return p;
}

/// The exact joint law of output tokens (j, j + 1) under the target alone,
/// by enumerating every continuation of `prompt` up to j + 2 tokens.
std::vector<double> expected_pair(const FnModel& target, const GenerationConfig& cfg,
                                  const std::vector<Token>& prompt, std::size_t j) {
  const std::size_t v = target.vocab_size();
  std::vector<double> joint(v * v, 0.0);
  std::vector<Token> h = prompt;
  auto walk = [&](auto&& self, double prob) -> void {
    const std::size_t depth = h.size() - prompt.size();  // tokens generated so far
    const auto p = reference_probs(target, cfg, h);
    for (std::size_t a = 0; a < v; ++a) {
      if (p[a] == 0.0) continue;
      if (depth == j + 1) {
        joint[static_cast<std::size_t>(h[prompt.size() + j]) * v + a] += prob * p[a];
        continue;
      }
      h.push_back(static_cast<Token>(a));
      self(self, prob * p[a]);
      h.pop_back();
    }
  };
  walk(walk, 1.0);
  return joint;
}

/// Where the rounds that emitted output token j came from, over all runs.
struct Coverage {
  std::size_t first_round = 0;    ///< token j emitted by round 0
  std::size_t after_rollback = 0; ///< by a later round whose predecessor rejected a draft
  std::size_t draft_lagging = 0;  ///< by a later round whose predecessor accepted every draft
};

/// Runs `runs` seeded generations and checks the joint law of output tokens
/// (j, j + 1) by Pearson chi-square at significance 0.001.
template <class Decoder>
Coverage check_pair(Decoder& dec, const FnModel& target, const GenerationConfig& cfg,
                    const std::vector<Token>& prompt, std::size_t j, int runs = 100000) {
  const std::size_t v = target.vocab_size();
  std::vector<std::size_t> joint(v * v);
  Coverage cov;
  std::size_t emitted_before = 0, prev_drafted = 0, prev_accepted = 0;
  bool counted = false;
  dec.set_round_observer([&](const auto& r) {
    const std::size_t end = emitted_before + r.emitted.size();
    if (!counted && emitted_before <= j && j < end) {
      counted = true;
      if (r.round == 0)
        ++cov.first_round;
      else if (prev_accepted < prev_drafted)
        ++cov.after_rollback;
      else
        ++cov.draft_lagging;
    }
    emitted_before = end;
    prev_drafted = r.drafted;
    prev_accepted = r.accepted;
  });
  for (int i = 0; i < runs; ++i) {
    emitted_before = prev_drafted = prev_accepted = 0;
    counted = false;
    dec.set_seed(static_cast<std::uint64_t>(i));
    const auto r = dec.generate(prompt);
    REQUIRE(r.tokens.size() >= j + 2);
    REQUIRE(counted);
    ++joint[static_cast<std::size_t>(r.tokens[j]) * v + static_cast<std::size_t>(r.tokens[j + 1])];
  }
  dec.set_round_observer({});
  const auto expected = expected_pair(target, cfg, prompt, j);
  const auto cs = toy::chi_square(joint, expected);
  INFO("tokens " << j << ", " << j + 1 << ": chi2 " << cs.statistic << " df " << cs.df << " critical "
                 << toy::chi2_critical_001(cs.df) << "; token " << j << " from round 0 "
                 << cov.first_round << ", after a rollback " << cov.after_rollback
                 << ", with the draft lagging " << cov.draft_lagging);
  REQUIRE(cs.impossible == 0);
  REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));
  return cov;
}

constexpr std::size_t kSmallVocab = 8;
const std::vector<Token> kShortPrompt{2, 5};

}  // namespace

TEST_CASE("reference_probs agrees with HF's definitions on a hand-made case", "[speculative][statistical]") {
  // Guards the independent reference itself: logits log(0.5, 0.25, 0.15,
  // 0.1) with top_p 0.6 keep two tokens (0.5 < 0.6, then 0.75 >= 0.6); min_p
  // 0.25 then drops nothing more (0.25 / 0.5 is kept exactly at the cut? no:
  // 0.25 >= 0.25 * 0.5 is kept) and the result is (2/3, 1/3, 0, 0).
  const FnModel m = toy::fixed_model({std::log(0.5f), std::log(0.25f), std::log(0.15f), std::log(0.1f)});
  GenerationConfig cfg{.do_sample = true, .top_p = 0.6f, .min_p = 0.25f};
  const auto p = reference_probs(m, cfg, {0});
  REQUIRE_THAT(p[0], Catch::Matchers::WithinAbs(2.0 / 3.0, 1e-6));
  REQUIRE_THAT(p[1], Catch::Matchers::WithinAbs(1.0 / 3.0, 1e-6));
  REQUIRE(p[2] == 0.0);
  REQUIRE(p[3] == 0.0);
  // Top-k 2 with a tie for second keeps three; the penalty divides the seen
  // positive logit and multiplies the seen negative one.
  const FnModel t = toy::fixed_model({2.0f, 1.0f, 1.0f, -1.0f});
  cfg = GenerationConfig{.do_sample = true, .top_k = 2, .repetition_penalty = 2.0f};
  const auto q = reference_probs(t, cfg, {0, 3, 0});  // logits become 1, 1, 1, -2: top-2 keeps the three 1s
  for (int i = 0; i < 3; ++i) REQUIRE_THAT(q[i], Catch::Matchers::WithinAbs(1.0 / 3.0, 1e-12));
  REQUIRE(q[3] == 0.0);
}

TEST_CASE("sampled first two tokens follow the target: q == p", "[speculative][statistical]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(1, kSmallVocab, 1.5f));
  const FnModel draft = toy::table_model(kSmallVocab, toy::random_table(1, kSmallVocab, 1.5f));
  GenerationConfig cfg{.max_new_tokens = 3, .num_assistant_tokens = 3, .do_sample = true};
  SpeculativeDecoder dec(draft, target, cfg);
  check_pair(dec, target, cfg, kShortPrompt, 0);
}

TEST_CASE("sampled first two tokens follow the target: unrelated q, heuristic K",
          "[speculative][statistical]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(1, kSmallVocab, 1.5f));
  const FnModel draft = toy::table_model(kSmallVocab, toy::random_table(2, kSmallVocab, 1.5f));
  GenerationConfig cfg{.max_new_tokens = 3,
                       .num_assistant_tokens = 3,
                       .schedule = DraftLengthSchedule::heuristic_transient,
                       .do_sample = true};
  SpeculativeDecoder dec(draft, target, cfg);
  check_pair(dec, target, cfg, kShortPrompt, 0);
}

TEST_CASE("sampled first two tokens follow the target: one-hot q and q zero where p > 0",
          "[speculative][statistical]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(1, kSmallVocab, 1.5f));
  // One-hot draft: all mass on (last * 3 + 1) % V.
  const FnModel onehot(kSmallVocab, [](std::span<const Token> h, std::span<float> row) {
    std::fill(row.begin(), row.end(), toy::kNegInf);
    row[static_cast<std::size_t>(h.back() * 3 + 1) % kSmallVocab] = 0.0f;
  });
  GenerationConfig cfg{.max_new_tokens = 3, .num_assistant_tokens = 3, .do_sample = true};
  SpeculativeDecoder a(onehot, target, cfg);
  check_pair(a, target, cfg, kShortPrompt, 0);
  // Draft with no mass on half of the vocabulary.
  const FnModel holes(kSmallVocab, [](std::span<const Token> h, std::span<float> row) {
    toy::hash_logits(h, 9, row);
    for (std::size_t i = 0; i < row.size(); i += 2) row[i] = toy::kNegInf;
  });
  SpeculativeDecoder b(holes, target, cfg);
  check_pair(b, target, cfg, kShortPrompt, 0);
}

TEST_CASE("sampled first two tokens follow the processed target: temperature, top-k, top-p, min-p",
          "[speculative][statistical]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(1, kSmallVocab, 2.0f));
  const FnModel draft = toy::table_model(kSmallVocab, toy::random_table(3, kSmallVocab, 2.0f));
  GenerationConfig cfg{.max_new_tokens = 3,
                       .num_assistant_tokens = 3,
                       .do_sample = true,
                       .temperature = 1.5f,
                       .top_k = 6,
                       .top_p = 0.9f,
                       .min_p = 0.05f};
  SpeculativeDecoder dec(draft, target, cfg);
  check_pair(dec, target, cfg, kShortPrompt, 0);
}

TEST_CASE(
    "sampled first two tokens follow the processed target: repetition penalty sees drafted history",
    "[speculative][statistical]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(4, kSmallVocab, 1.0f));
  const FnModel draft = toy::table_model(kSmallVocab, toy::random_table(4, kSmallVocab, 1.2f));
  GenerationConfig cfg{.max_new_tokens = 3,
                       .num_assistant_tokens = 3,
                       .do_sample = true,
                       .repetition_penalty = 3.0f,
                       .suppress_tokens = {0}};
  SpeculativeDecoder dec(draft, target, cfg);
  check_pair(dec, target, cfg, kShortPrompt, 0);
}

TEST_CASE("sampled first two tokens follow the target with prompt lookup (one-hot q)",
          "[speculative][statistical][prompt_lookup]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(5, kSmallVocab, 1.0f));
  GenerationConfig cfg{
      .max_new_tokens = 3, .do_sample = true, .temperature = 1.3f, .prompt_lookup_num_tokens = 3};
  SpeculativeDecoder dec(target, cfg);
  const std::vector<Token> prompt{1, 2, 3, 4, 1, 2, 6, 7, 3, 1, 2};
  check_pair(dec, target, cfg, prompt, 0);
}

// Steady state: tokens 3 and 4 of 6 with K = 2 come from the second round
// on, after a rejection rolled both caches back, or after a round that
// accepted every draft (the draft then has not seen the bonus token and
// must catch up). Each case asserts that both situations occurred often.

TEST_CASE("steady-state rounds: tokens 3 and 4 follow the target, unrelated q, constant K",
          "[speculative][statistical][steady]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(1, kSmallVocab, 1.5f));
  const FnModel draft = toy::table_model(kSmallVocab, toy::random_table(2, kSmallVocab, 1.5f));
  GenerationConfig cfg{.max_new_tokens = 6, .num_assistant_tokens = 2, .do_sample = true};
  SpeculativeDecoder dec(draft, target, cfg);
  const auto cov = check_pair(dec, target, cfg, kShortPrompt, 3);
  CHECK(cov.first_round == 0);
  CHECK(cov.after_rollback > 10000);
  CHECK(cov.draft_lagging > 10000);
}

TEST_CASE("steady-state rounds: tokens 3 and 4 follow the target, close q, heuristic K",
          "[speculative][statistical][steady]") {
  // A draft close to the target (q = p on a third of the rows): long runs of
  // acceptance grow K, rejections shrink it.
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(6, kSmallVocab, 2.0f));
  auto table = toy::random_table(6, kSmallVocab, 2.0f);
  const auto other = toy::random_table(7, kSmallVocab, 2.0f);
  for (std::size_t i = 0; i < table.size(); ++i)
    if ((i / kSmallVocab) % 3 != 0) table[i] = 0.7f * table[i] + 0.3f * other[i];
  const FnModel draft = toy::table_model(kSmallVocab, table);
  GenerationConfig cfg{.max_new_tokens = 6,
                       .num_assistant_tokens = 1,
                       .schedule = DraftLengthSchedule::heuristic,
                       .do_sample = true};
  SpeculativeDecoder dec(draft, target, cfg);
  const auto cov = check_pair(dec, target, cfg, kShortPrompt, 3);
  CHECK(cov.after_rollback > 5000);
  CHECK(cov.draft_lagging > 5000);
}

TEST_CASE("steady-state rounds: the processed target (temperature, top-k, top-p, min-p) at tokens 3 and 4",
          "[speculative][statistical][steady]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(1, kSmallVocab, 2.0f));
  const FnModel draft = toy::table_model(kSmallVocab, toy::random_table(3, kSmallVocab, 2.0f));
  GenerationConfig cfg{.max_new_tokens = 6,
                       .num_assistant_tokens = 2,
                       .do_sample = true,
                       .temperature = 1.5f,
                       .top_k = 6,
                       .top_p = 0.9f,
                       .min_p = 0.05f};
  SpeculativeDecoder dec(draft, target, cfg);
  const auto cov = check_pair(dec, target, cfg, kShortPrompt, 3);
  CHECK(cov.after_rollback > 10000);
  CHECK(cov.draft_lagging > 10000);
}

TEST_CASE("steady-state rounds: the repetition penalty sees the whole history at tokens 3 and 4",
          "[speculative][statistical][steady]") {
  // Not a Markov chain any more: the law of token 4 depends on every token
  // before it (expected_pair enumerates them all).
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(4, kSmallVocab, 1.0f));
  const FnModel draft = toy::table_model(kSmallVocab, toy::random_table(4, kSmallVocab, 1.2f));
  GenerationConfig cfg{.max_new_tokens = 6,
                       .num_assistant_tokens = 2,
                       .do_sample = true,
                       .repetition_penalty = 3.0f,
                       .suppress_tokens = {0}};
  SpeculativeDecoder dec(draft, target, cfg);
  const auto cov = check_pair(dec, target, cfg, kShortPrompt, 3);
  CHECK(cov.after_rollback > 5000);  // q is close to p here: rejections are rarer
  CHECK(cov.draft_lagging > 10000);
}

TEST_CASE("steady-state rounds: prompt lookup at tokens 3 and 4", "[speculative][statistical][steady][prompt_lookup]") {
  const FnModel target = toy::table_model(kSmallVocab, toy::random_table(5, kSmallVocab, 1.0f));
  GenerationConfig cfg{
      .max_new_tokens = 6, .do_sample = true, .temperature = 1.3f, .prompt_lookup_num_tokens = 2};
  SpeculativeDecoder dec(target, cfg);
  const std::vector<Token> prompt{1, 2, 3, 4, 1, 2, 6, 7, 3, 1, 2};
  const auto cov = check_pair(dec, target, cfg, prompt, 3);
  CHECK(cov.after_rollback + cov.draft_lagging > 50000);  // mostly from later rounds
}
