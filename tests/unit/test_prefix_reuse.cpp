// Prefix reuse in the decoders (set_prefix_reuse, what ChatSession builds
// on), on toy backends whose caches remember their tokens: a second
// generate() keeps exactly the longest common prefix of its prompt with the
// last sequence (less the prompt's last token), every cache holds a prefix of
// the sequence in every round (nothing stale survives the rollback), and the
// output equals a fresh decoder's, greedy and sampled.
#include <catch2/catch.hpp>
#include <vector>

#include "assistgen/autoregressive.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;

namespace {

constexpr std::size_t kVocab = 40;

bool holds_prefix(const toy::ToyCache& c, std::span<const Token> seq) {
  return c.tokens.size() <= seq.size() && std::equal(c.tokens.begin(), c.tokens.end(), seq.begin());
}

std::size_t common(std::span<const Token> a, std::span<const Token> b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// Prompts of a conversation: the next starts with the last sequence, cut
// `cut` tokens before its end, and continues with new tokens.
std::vector<Token> next_prompt(std::vector<Token> seq, std::size_t cut, Token first) {
  seq.resize(seq.size() - cut);
  for (Token t = first; t < first + 6; ++t) seq.push_back(t % Token(kVocab));
  return seq;
}

}  // namespace

TEST_CASE("prefix reuse: decoders keep the common prefix and match fresh decoders",
          "[decoder][reuse]") {
  const toy::FnModel target = toy::hash_model(kVocab, 11);
  const toy::FnModel draft = toy::partial_model(kVocab, 11, 12, 70);
  const bool sample = GENERATE(false, true);
  const int kind = GENERATE(0, 1, 2);  // draft model, prompt lookup, plain
  INFO((sample ? "sampling" : "greedy") << " decoder " << kind);
  GenerationConfig cfg;
  cfg.max_new_tokens = 20;
  cfg.do_sample = sample;
  cfg.seed = 5;
  cfg.num_assistant_tokens = 4;
  cfg.cache_capacity = 200;
  if (kind == 1) cfg.prompt_lookup_num_tokens = 3;

  auto run = [&](auto& decoder, const std::vector<std::vector<Token>>& prompts, bool reuse) {
    decoder.set_prefix_reuse(reuse);
    std::vector<GenerationResult> out;
    for (const auto& p : prompts) out.push_back(decoder.generate(p));
    return out;
  };
  auto check = [&](auto make) {
    // The conversation: each prompt extends the last sequence, cut by 0, 1
    // or 3 tokens (a reply re-tokenized differently), and one that diverges
    // early (after a reset).
    auto decoder = make();
    std::size_t rounds_checked = 0;
    if constexpr (requires { decoder.set_round_observer({}); }) {
      decoder.set_round_observer([&](const auto& info) {
        CHECK(holds_prefix(*info.target_cache, info.sequence));
        CHECK(info.target_cache->size() == info.sequence.size() - 1);
        if constexpr (requires { info.draft_cache->tokens; })
          if (info.draft_cache) CHECK(holds_prefix(*info.draft_cache, info.sequence));
        ++rounds_checked;
      });
    }
    decoder.set_prefix_reuse(true);
    std::vector<Token> prompt{1, 2, 3, 4, 5, 6, 7};
    std::vector<Token> last;
    std::vector<std::vector<Token>> prompts;
    const std::size_t cuts[] = {0, 1, 3};
    for (int turn = 0; turn < 5; ++turn) {
      INFO("turn " << turn);
      const GenerationResult r = decoder.generate(prompt);
      prompts.push_back(prompt);
      const std::size_t keep =
          last.empty() ? 0 : std::min({common(last, prompt), last.size() - 1, prompt.size() - 1});
      CHECK(r.stats.reused_tokens == keep);
      if (turn > 0 && turn < 4) CHECK(keep >= last.size() - 4);
      last = prompt;
      last.insert(last.end(), r.tokens.begin(), r.tokens.end());
      if (turn < 3)
        prompt = next_prompt(last, cuts[turn], Token(turn * 7 + 1));
      else
        prompt = {1, 2, 3, 9, 9};
    }
    // The same prompts through a fresh decoder each, and one without reuse.
    auto plain = make();
    const auto again = run(plain, prompts, false);
    auto reuse = make();
    const auto reused = run(reuse, prompts, true);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      auto fresh = make();
      const GenerationResult f = fresh.generate(prompts[i]);
      CHECK(again[i].tokens == f.tokens);
      CHECK(again[i].stats.reused_tokens == 0);
      CHECK(reused[i].tokens == f.tokens);
    }
    if constexpr (requires { decoder.set_round_observer({}); }) CHECK(rounds_checked > 5);
  };
  if (kind == 0)
    check([&] { return SpeculativeDecoder(draft, target, cfg); });
  else if (kind == 1)
    check([&] { return SpeculativeDecoder(target, cfg); });
  else
    check([&] { return AutoregressiveDecoder<toy::FnModel>(target, cfg); });
}
