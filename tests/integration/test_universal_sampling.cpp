// Universal speculative decoding with sampling (UniversalDecoder with
// do_sample; HF's UniversalSpeculativeDecodingGenerator): the draft has
// another tokenizer and proposes over the tokens both vocabularies share.
// Pins: the vocabulary map pairs equal token strings one to one; sampled
// output follows the target's distribution for the first two tokens (chi-square
// and total variation against the exact law from the target's logits), end to
// end through the text API's models, with two checkpoints of different
// tokenizers (the test checkpoints of tools/make_test_models.py with the
// char-level and merged BPE tokenizers of tools/make_text_fixtures.py).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "assistgen/assistgen.hpp"
#include "integration/sampling_stats.hpp"
#include "integration/text_fixtures.hpp"

using namespace assistgen;
using text_fixtures::make_model_dir;

TEST_CASE("universal sampling: the vocabulary map pairs equal token strings one to one",
          "[universal_sampling]") {
  const Model target = load_model(make_model_dir("ut", "llama-gqa", "char"));
  const Model draft = load_model(make_model_dir("ud", "llama-gqa-noisy", "merged"));
  const VocabularyMap m = VocabularyMap::build(draft.tokenizer(), draft.tokenizer().vocab_size(),
                                               target.tokenizer(), target.backend().vocab_size());
  REQUIRE(m.shared > 50);  // every printable character at least
  std::size_t pairs = 0;
  for (std::size_t d = 0; d < m.draft_to_target.size(); ++d) {
    const Token t = m.draft_to_target[d];
    if (t < 0) continue;
    ++pairs;
    REQUIRE(m.target_to_draft[static_cast<std::size_t>(t)] == static_cast<Token>(d));
    REQUIRE(draft.tokenizer().id_to_token(static_cast<Token>(d)) ==
            target.tokenizer().id_to_token(t));
  }
  REQUIRE(pairs == m.shared);
  // A merged token ("the", ...) has no target counterpart in a char vocabulary.
  std::size_t unmapped = 0;
  for (const Token t : m.draft_to_target) unmapped += t < 0;
  REQUIRE(unmapped > 0);
}

TEST_CASE("universal sampling: the first two tokens follow the target's distribution",
          "[universal_sampling][statistical]") {
  // The target (llama-gqa, char tokenizer: 100 tokens, its other 156 rows
  // masked) and the draft (llama-gqa-noisy, merged BPE). Temperature 1.5,
  // no top-k, no EOS stop. The exact laws: softmax(logits / 1.5) over the
  // tokenizer's ids for token 1, and sum_a P(a) P(. | prompt + a) for
  // token 2, from the target's raw logits in double. Runs from the power
  // calculation (a total variation of 0.03 caught with probability 0.99).
  for (const auto& [t_tok, d_tok] : {std::pair{"char", "merged"}, std::pair{"merged", "char"}}) {
    INFO("target tokenizer " << t_tok << ", draft tokenizer " << d_tok);
    const Model target = load_model(make_model_dir("st", "llama-gqa", t_tok));
    const Model draft = load_model(make_model_dir("sd", "llama-gqa-noisy", d_tok));
    REQUIRE(target.pairing(draft).first == Assistance::universal);
    const GenerateOptions opts{.max_new_tokens = 2,
                               .do_sample = true,
                               .temperature = 1.5f,
                               .top_k = 0,
                               .eos_token_id = std::vector<Token>{},
                               .num_assistant_tokens = 3};
    const std::string prompt = "And God said";
    const std::vector<Token> ids = target.encode_prompt(prompt);
    const std::size_t v = target.backend().vocab_size();
    std::vector<bool> masked(v, false);
    for (const Token t : target.masked_tokens()) masked[static_cast<std::size_t>(t)] = true;
    auto exact = [&](std::span<const Token> h) {
      auto c = target.backend().make_cache(h.size());
      Logits l = target.backend().forward(h, c);
      std::span<float> row = l.row(l.rows() - 1);
      for (std::size_t i = 0; i < v; ++i)
        if (masked[i]) row[i] = -std::numeric_limits<float>::infinity();
      return stats::exact_softmax(row, 1.5);
    };
    const std::vector<double> p1 = exact(ids);
    std::vector<double> p2(v, 0.0);
    std::vector<Token> h = ids;
    h.push_back(0);
    for (std::size_t a = 0; a < v; ++a) {
      if (p1[a] == 0.0) continue;
      h.back() = static_cast<Token>(a);
      const auto cond = exact(h);
      for (std::size_t b = 0; b < v; ++b) p2[b] += p1[a] * cond[b];
    }
    // The text API takes the universal path with sampling ...
    const TextResult once = target.generate(prompt, draft, opts);
    REQUIRE(once.assistance == Assistance::universal);
    REQUIRE(once.tokens.size() == 2);
    // ... whose decoder is run here directly, reseeded per run.
    GenerationConfig cfg = target.generation_config(opts, ids.size());
    cfg.suppress_tokens.insert(cfg.suppress_tokens.end(), target.masked_tokens().begin(),
                               target.masked_tokens().end());
    UniversalOptions uo;
    uo.draft_suppress_tokens.assign(draft.masked_tokens().begin(), draft.masked_tokens().end());
    UniversalDecoder<AnyModel, AnyModel> dec(draft.backend(), draft.tokenizer(), target.backend(),
                                             target.tokenizer(), cfg, uo);
    const std::size_t runs =
        std::max(stats::runs_for_power(p1, 0.03), stats::runs_for_power(p2, 0.03));
    INFO("runs " << runs);
    std::vector<std::size_t> c1(v), c2(v);
    std::size_t drafted = 0, accepted = 0;
    for (std::size_t i = 0; i < runs; ++i) {
      dec.set_seed(i);
      const auto r = dec.generate(ids);
      REQUIRE(r.tokens.size() == 2);
      ++c1[static_cast<std::size_t>(r.tokens[0])];
      ++c2[static_cast<std::size_t>(r.tokens[1])];
      drafted += r.stats.drafted;
      accepted += r.stats.accepted;
    }
    INFO("acceptance " << double(accepted) / double(drafted) << " (" << accepted << "/" << drafted
                       << ")");
    REQUIRE(accepted > runs / 10);  // the draft's candidates are used ...
    REQUIRE(accepted < drafted);    // ... and checked
    stats::require_follows(c1, p1, runs);
    stats::require_follows(c2, p2, runs);
  }
}

TEST_CASE("universal sampling: greedy through the same decoder still equals plain greedy",
          "[universal_sampling]") {
  const Model target = load_model(make_model_dir("gt", "llama-gqa", "merged"));
  const Model draft = load_model(make_model_dir("gd", "llama-gqa-noisy", "char"));
  const TextResult plain = target.generate("In the beginning", {.max_new_tokens = 20});
  const TextResult r = target.generate("In the beginning", draft, {.max_new_tokens = 20});
  REQUIRE(r.assistance == Assistance::universal);
  REQUIRE(r.assistance_reason.find("the tokenizers differ") != std::string::npos);
  REQUIRE(r.tokens == plain.tokens);
}

TEST_CASE("stats have one shape for every candidate source", "[universal_sampling]") {
  // drafted / accepted and their per-position counts are target candidates
  // for every source; draft_tokens is the draft's own count (it differs
  // only when a greedy draft of another tokenizer is re-tokenized).
  const Model target = load_model(make_model_dir("st1", "llama-gqa", "char"));
  const Model same = load_model(make_model_dir("st2", "llama-gqa-noisy", "char"));
  const Model other = load_model(make_model_dir("st3", "llama-gqa-noisy", "merged"));
  const std::string prompt = "In the beginning God";
  struct Case {
    const char* name;
    TextResult r;
  };
  const Case cases[] = {
      {"draft", target.generate(prompt, same, {.max_new_tokens = 40})},
      {"draft sampled", target.generate(prompt, same, {.max_new_tokens = 40, .do_sample = true})},
      {"universal", target.generate(prompt, other, {.max_new_tokens = 40})},
      {"universal sampled",
       target.generate(prompt, other, {.max_new_tokens = 40, .do_sample = true, .top_k = 0})},
      {"early exit", target.generate(prompt, {.max_new_tokens = 40, .assistant_early_exit = 1})},
      {"prompt lookup", target.generate(prompt + " and God and God and God",
                                        {.max_new_tokens = 40, .prompt_lookup_num_tokens = 3})},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    const GenerationStats& s = c.r.stats;
    REQUIRE(s.drafted > 0);
    REQUIRE(s.accepted <= s.drafted);
    REQUIRE(s.rounds == s.target_calls);
    REQUIRE(s.new_tokens <= s.accepted + s.rounds);
    std::size_t d = 0, a = 0;
    for (std::size_t i = 0; i < s.drafted_at.size(); ++i) {
      d += s.drafted_at[i];
      a += s.accepted_at[i];
      REQUIRE(s.accepted_at[i] <= s.drafted_at[i]);
      if (i > 0) REQUIRE(s.drafted_at[i] <= s.drafted_at[i - 1]);
    }
    REQUIRE(d == s.drafted);
    REQUIRE(a == s.accepted);
    if (std::string(c.name) == "universal")
      REQUIRE(s.draft_tokens > 0);
    else
      REQUIRE(s.draft_tokens == s.drafted);
  }
}
