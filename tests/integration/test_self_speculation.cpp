// Self-speculation (candidates/early_exit.hpp, layer_split.hpp) on the CPU
// backend with the random checkpoints of tests/data/models. Pins: a forward
// pass split at any layer gives the bits of the whole pass (logits and every
// K/V row); self-speculative greedy output equals the target's plain greedy
// output for every exit layer, K, schedule and both verification modes, and
// after every round the shared cache holds exactly the rows a fresh prefill
// writes; self-speculative sampling gives the target's distribution for the
// first two tokens (chi-square and total variation against the exact law);
// bad exit layers and backends that cannot do it are clear errors.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/self_speculative_decoder.hpp"
#include "integration/random_models.hpp"
#include "integration/sampling_stats.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;
using cpu::Transformer;

namespace {

const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";
const std::vector<Token> kPrompt{1, 17, 200, 45, 3, 99};

const Transformer& llama() {
  static const Transformer m = Transformer::load(kModels / "llama-gqa");
  return m;
}
const Transformer& gpt2() {  // 3 layers, learned positions
  static const Transformer m = Transformer::load(kModels / "gpt2-target");
  return m;
}
const Transformer& qwen2_window() {  // sliding window on layer 0
  static const Transformer m = [] {
    ModelConfig c = testing_models::config("qwen2");
    c.num_hidden_layers = 3;
    c.sliding_layers = {true, false, true};
    return Transformer::random(c, 7);
  }();
  return m;
}

/// Every K/V row of slots [0, n) is the same bits in both caches.
bool same_rows(const Transformer::Cache& a, const Transformer::Cache& b, std::size_t n) {
  const KvStorage& x = a.kv();
  const KvStorage& y = b.kv();
  for (std::size_t l = 0; l < x.layers(); ++l)
    for (std::size_t h = 0; h < x.kv_heads(); ++h)
      for (std::size_t p = 0; p < n; ++p)
        if (std::memcmp(x.key(l, h, p), y.key(l, h, p), x.head_dim() * sizeof(float)) != 0 ||
            std::memcmp(x.value(l, h, p), y.value(l, h, p), x.head_dim() * sizeof(float)) != 0)
          return false;
  return true;
}

}  // namespace

TEST_CASE("a forward pass split at any layer gives the bits of the whole pass",
          "[self_speculation]") {
  for (const Transformer* m : {&llama(), &gpt2(), &qwen2_window()}) {
    const std::vector<Token> tokens = testing_models::some_tokens(11, m->vocab_size());
    auto whole_cache = m->make_cache(32);
    Logits whole;
    m->forward(tokens, whole_cache, whole);
    for (std::size_t split = 1; split <= m->num_layers(); ++split) {
      // 4 prompt tokens at once, then 3 tokens one by one (drafting), then
      // the last 4 in one lower call; the upper half completes all 11.
      INFO("model with " << m->num_layers() << " layers, split " << split);
      auto c = m->make_cache(32);
      std::vector<float> hidden;
      Logits lower, upper;
      m->forward_lower(std::span(tokens).first(4), c, split, hidden, lower, 1);
      REQUIRE(lower.rows() == 1);
      for (std::size_t i = 4; i < 7; ++i)
        m->forward_lower(std::span(tokens).subspan(i, 1), c, split, hidden, lower, 1);
      m->forward_lower(std::span(tokens).subspan(7), c, split, hidden, lower, 0);
      REQUIRE(lower.rows() == 0);
      REQUIRE(c.size() == 11);
      REQUIRE(hidden.size() == 11 * m->hidden_size());
      m->forward_upper(c, 0, hidden, split, upper, 5);
      REQUIRE(c.size() == 11);
      REQUIRE(upper.rows() == 5);
      for (std::size_t r = 0; r < 5; ++r) REQUIRE(testing_models::same_row(upper, r, whole, 6 + r));
      REQUIRE(same_rows(c, whole_cache, 11));
      // Completing a suffix only: slots [0, 6) full, [6, 11) from the lower half.
      auto d = m->make_cache(32);
      Logits tmp;
      m->forward(std::span(tokens).first(6), d, tmp);
      hidden.clear();
      m->forward_lower(std::span(tokens).subspan(6), d, split, hidden, lower, 1);
      m->forward_upper(d, 6, hidden, split, upper, kAllRows);
      REQUIRE(upper.rows() == 5);
      for (std::size_t r = 0; r < 5; ++r) REQUIRE(testing_models::same_row(upper, r, whole, 6 + r));
      REQUIRE(same_rows(d, whole_cache, 11));
    }
  }
}

TEST_CASE("a split forward pass rejects bad layers and slots, leaving the cache as it was",
          "[self_speculation]") {
  const Transformer& m = llama();
  auto c = m.make_cache(16);
  std::vector<float> hidden;
  Logits out;
  const std::vector<Token> t{1, 2, 3};
  REQUIRE_THROWS_WITH(m.forward_lower(t, c, 0, hidden, out, 1),
                      Catch::Contains("split layer 0 must be in [1, 2]"));
  REQUIRE_THROWS_AS(m.forward_lower(t, c, 3, hidden, out, 1), InvalidArgument);
  REQUIRE(c.size() == 0);
  REQUIRE(hidden.empty());
  const std::vector<Token> bad{1, 9999};
  REQUIRE_THROWS_AS(m.forward_lower(bad, c, 1, hidden, out, 1), InvalidArgument);
  REQUIRE(c.size() == 0);
  REQUIRE(hidden.empty());
  m.forward_lower(t, c, 1, hidden, out, 1);
  REQUIRE_THROWS_WITH(m.forward_upper(c, 1, hidden, 1, out, 1),
                      Catch::Contains("are not all in the cache"));
  REQUIRE_THROWS_WITH(m.forward_upper(c, 0, std::span(hidden).first(5), 1, out, 1),
                      Catch::Contains("not a positive number of rows"));
  REQUIRE_THROWS_AS(m.forward_upper(c, 0, hidden, 0, out, 1), InvalidArgument);
  REQUIRE(c.size() == 3);
}

TEST_CASE("self-speculative greedy equals plain greedy: every exit layer, K, schedule and mode",
          "[self_speculation]") {
  for (const Transformer* m : {&llama(), &gpt2(), &qwen2_window()}) {
    GenerationConfig base{.max_new_tokens = 30};
    const auto want = generate_autoregressive(*m, kPrompt, base).tokens;
    REQUIRE(want.size() == 30);
    for (std::size_t e = 1; e < m->num_layers(); ++e)
      for (const EarlyExitVerify mode : {EarlyExitVerify::reuse, EarlyExitVerify::recompute})
        for (const DraftLengthSchedule s :
             {DraftLengthSchedule::constant, DraftLengthSchedule::heuristic,
              DraftLengthSchedule::confidence})
          for (std::size_t k : {1, 3, 7}) {
            INFO("layers " << m->num_layers() << " E " << e << " mode "
                           << early_exit_verify_name(mode) << " K " << k << " schedule "
                           << static_cast<int>(s));
            GenerationConfig cfg = base;
            cfg.num_assistant_tokens = k;
            cfg.schedule = s;
            SelfSpeculativeDecoder dec(*m, e, cfg, mode);
            REQUIRE(dec.reuses() == (mode == EarlyExitVerify::reuse));
            std::size_t rounds = 0;
            dec.set_round_observer([&](const auto& r) {
              ++rounds;
              // The shared cache holds every layer of the sequence but its
              // last token, bit for bit what a fresh prefill writes.
              REQUIRE(r.target_cache->size() == r.sequence.size() - 1);
              auto fresh = m->make_cache(64);
              m->forward(r.sequence.first(r.sequence.size() - 1), fresh);
              REQUIRE(same_rows(*r.target_cache, fresh, r.sequence.size() - 1));
            });
            const auto got = dec.generate(kPrompt);
            REQUIRE(got.tokens == want);
            REQUIRE(got.stats.rounds == rounds);
            REQUIRE(got.stats.target_calls == rounds);
            REQUIRE(got.stats.draft_calls >= got.stats.drafted);
            // A second call on the same decoder (caches reused) agrees.
            REQUIRE(dec.generate(kPrompt).tokens == want);
          }
  }
}

TEST_CASE("self-speculation with draft_min_tokens, stops and prefix reuse stays exact",
          "[self_speculation]") {
  const Transformer& m = gpt2();
  GenerationConfig cfg{
      .max_new_tokens = 25, .num_assistant_tokens = 4, .draft_p_min = 0.02f, .draft_min_tokens = 2};
  cfg.cache_capacity = 100;  // room for the longer second prompt: the cache is kept
  const auto want = generate_autoregressive(m, kPrompt, cfg).tokens;
  SelfSpeculativeDecoder dec(m, 2, cfg);
  REQUIRE(dec.generate(kPrompt).tokens == want);
  // A callback stop inside a block, then a continuation reusing the prefix.
  dec.set_prefix_reuse(true);
  std::size_t seen = 0;
  const auto stopped = dec.generate(kPrompt, [&](Token) { return ++seen < 7; });
  REQUIRE(stopped.tokens == std::vector<Token>(want.begin(), want.begin() + 7));
  std::vector<Token> longer = kPrompt;
  longer.insert(longer.end(), stopped.tokens.begin(), stopped.tokens.end());
  const auto more = dec.generate(longer);
  REQUIRE(more.stats.reused_tokens == longer.size() - 1);
  REQUIRE(more.tokens == generate_autoregressive(m, longer, cfg).tokens);
}

TEST_CASE("self-speculative sampling: the first two tokens follow the target's distribution",
          "[self_speculation][statistical]") {
  // As the draft-model test of test_speculative_cpu: temperature 1.5, the
  // exact laws of tokens 1 and 2 from the target's raw logits in double,
  // runs from the power calculation (a total variation of 0.03 is caught
  // with probability 0.99), chi-square at 0.001 and the TV bound.
  const Transformer& m = llama();
  const std::size_t v = m.vocab_size();
  const GenerationConfig cfg{
      .max_new_tokens = 3, .num_assistant_tokens = 3, .do_sample = true, .temperature = 1.5f};
  auto processed = [&](std::span<const Token> h) {
    auto c = m.make_cache(h.size());
    const Logits l = m.forward(h, c);
    return stats::exact_softmax(l.row(l.rows() - 1), 1.5);
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
  const std::size_t runs =
      std::max(stats::runs_for_power(p1, 0.03), stats::runs_for_power(p2, 0.03));
  INFO("runs " << runs);
  SelfSpeculativeDecoder dec(m, 1, cfg);
  REQUIRE(dec.reuses());
  std::vector<std::size_t> c1(v), c2(v);
  std::size_t drafted = 0, accepted = 0;
  for (std::size_t i = 0; i < runs; ++i) {
    dec.set_seed(static_cast<std::uint64_t>(i));
    const auto r = dec.generate(kPrompt);
    ++c1[static_cast<std::size_t>(r.tokens[0])];
    ++c2[static_cast<std::size_t>(r.tokens[1])];
    drafted += r.stats.drafted;
    accepted += r.stats.accepted;
  }
  INFO("acceptance " << double(accepted) / double(drafted));
  REQUIRE(accepted > 0);        // the draft's tokens are really used ...
  REQUIRE(accepted < drafted);  // ... and really checked
  stats::require_follows(c1, p1, runs);
  stats::require_follows(c2, p2, runs);
}

TEST_CASE("self-speculation rejects bad exit layers and backends that cannot split",
          "[self_speculation]") {
  const Transformer& m = llama();
  REQUIRE_THROWS_WITH(SelfSpeculativeDecoder(m, 0, GenerationConfig{}),
                      Catch::Contains("early_exit"));
  REQUIRE_THROWS_WITH(SelfSpeculativeDecoder(m, 2, GenerationConfig{}),
                      Catch::Contains("early_exit 2 must be below the target's 2 layers"));
  GenerationConfig lookup;
  lookup.prompt_lookup_num_tokens = 3;
  REQUIRE_THROWS_AS(SelfSpeculativeDecoder(m, 1, lookup), InvalidArgument);
  // AnyModel forwards the capability of the model it wraps ...
  const AnyModel any = AnyModel::borrow(m);
  REQUIRE(any.splits_layers());
  SelfSpeculativeDecoder<AnyModel> via_any(any, 1, GenerationConfig{.max_new_tokens = 20});
  REQUIRE(via_any.reuses());
  REQUIRE(via_any.generate(kPrompt).tokens ==
          generate_autoregressive(m, kPrompt, GenerationConfig{.max_new_tokens = 20}).tokens);
  // ... and one without it is an UnsupportedError naming what is missing.
  const AnyModel toy_model{toy::script_model(16, [](std::span<const Token>) { return Token{3}; })};
  REQUIRE_FALSE(toy_model.splits_layers());
  REQUIRE_THROWS_AS(SelfSpeculativeDecoder<AnyModel>(toy_model, 1, GenerationConfig{}),
                    UnsupportedError);
  REQUIRE_THROWS_WITH(toy_model.num_layers(), Catch::Contains("cannot split a forward pass"));
  REQUIRE_THROWS_AS(
      SelfSpeculativeDecoder<AnyModel>(any, 1, GenerationConfig{}, EarlyExitVerify::recompute),
      UnsupportedError);
}
