// BatchEngine's KV memory bound with a draft that has another tokenizer
// (DifferentTokenizerCandidates, the ProvidedDraftCache hooks): the draft's
// caches come from the engine's KvCacheManager and count against its byte
// bound like the target's, so a full manager makes new sequences wait (not
// fail), and a draft cache that cannot grow under the bound makes its
// sequence propose less, its output unchanged. Random test checkpoints with
// two tokenizers (tests/integration/text_fixtures.hpp); each output is
// checked against the target alone and UniversalDecoder alone.
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/candidates/different_tokenizer.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/kv_cache_manager.hpp"
#include "assistgen/universal_decoder.hpp"
#include "integration/text_fixtures.hpp"

using namespace assistgen;
using text_fixtures::make_model_dir;
using Source = DifferentTokenizerCandidates<AnyModel>;

namespace {

struct Pair {
  Model target, draft;
  // The draft's logit rows past its tokenizer are suppressed, as the text
  // API does (the test checkpoints have 256 rows, the tokenizers fewer).
  UniversalOptions options() const {
    UniversalOptions uo;
    const auto masked = draft.masked_tokens();
    uo.draft_suppress_tokens.assign(masked.begin(), masked.end());
    return uo;
  }
  Source source() const {
    return Source(draft.backend(), draft.tokenizer(), target.tokenizer(),
                  target.backend().vocab_size(), options());
  }
  UniversalDecoder<AnyModel, AnyModel> alone(const GenerationConfig& cfg) const {
    return UniversalDecoder<AnyModel, AnyModel>(draft.backend(), draft.tokenizer(), target.backend(),
                                                target.tokenizer(), cfg, options());
  }
};

// `coarse_draft`: the target's text in characters, the draft's in merged
// tokens (fewer draft tokens than target tokens: the draft never needs more
// positions than the target's plan); else the other way round (the draft
// needs more, and its cache grows).
const Pair& pair(bool coarse_draft = true) {
  static const Pair a{
      load_model(make_model_dir("bc-t", "llama-gqa", "char"), {.threads = 1}),
      load_model(make_model_dir("bc-o", "llama-draft", "merged"), {.threads = 1})};
  static const Pair b{
      load_model(make_model_dir("bc-t2", "llama-gqa", "merged"), {.threads = 1}),
      load_model(make_model_dir("bc-o2", "llama-draft", "char"), {.threads = 1})};
  return coarse_draft ? a : b;
}

struct Job {
  std::vector<Token> prompt;
  GenerationConfig cfg;
};

// Jobs whose caches all have the same capacity: the longest job's prompt
// and new tokens plus `capacity_slack`.
std::vector<Job> jobs(const Pair& p, std::size_t capacity_slack) {
  std::vector<Job> out;
  std::size_t i = 0;
  for (const char* text : {"And God said", "Hello, world!", "The quick brown fox", "x y z",
                           "Let there be light", "In the beginning"}) {
    Job j;
    j.prompt = p.target.tokenizer().encode(text);
    j.cfg.max_new_tokens = 10 + 2 * (i % 3);
    j.cfg.num_assistant_tokens = 3 + i % 4;
    const auto masked = p.target.masked_tokens();  // rows past the tokenizer
    j.cfg.suppress_tokens.assign(masked.begin(), masked.end());
    out.push_back(std::move(j));
    ++i;
  }
  std::size_t cap = 0;
  for (const Job& j : out) cap = std::max(cap, j.prompt.size() + j.cfg.max_new_tokens);
  for (Job& j : out) j.cfg.cache_capacity = cap + capacity_slack;
  return out;
}

// Runs `js` through an engine over `caches`, checking the bound after every
// round; returns the results in job order and the most sequences running.
std::vector<GenerationResult> run(const Pair& p, const std::vector<Job>& js, KvCacheManager& caches,
                                  std::size_t bound, std::size_t& most_running) {
  BatchEngine<AnyModel, Source> engine(p.target.backend(), {.max_batch = 8}, &caches);
  for (const Job& j : js) engine.submit(j.prompt, j.cfg, p.source());
  std::vector<GenerationResult> got(js.size());
  most_running = 0;
  auto take = [&] {
    for (auto& f : engine.take_finished()) {
      if (f.error) std::rethrow_exception(f.error);  // Catch reports its message
      got[f.id] = std::move(f.result);
    }
  };
  while (engine.step()) {
    most_running = std::max(most_running, engine.running());
    // Target and draft caches of every running sequence are in the manager.
    CHECK(caches.live_count() == 2 * engine.running());
    CHECK(caches.bytes_total() <= bound);
    take();
  }
  take();
  CHECK(caches.live_count() == 0);
  return got;
}

}  // namespace

TEST_CASE("BatchEngine: a different-tokenizer draft's caches count against the manager's bound") {
  const Pair& p = pair();
  const std::vector<Job> js = jobs(p, 8);
  const std::size_t cap = js[0].cfg.cache_capacity;
  // Every sequence holds a target and a draft cache of at most `cap`
  // positions (its plan's capacity; the draft needs no more here).
  const std::size_t target_bytes = p.target.backend().make_cache(cap).bytes();
  const std::size_t draft_bytes = p.draft.backend().make_cache(cap).bytes();
  REQUIRE(target_bytes > 0);
  REQUIRE(draft_bytes > 0);
  const std::size_t per_seq = target_bytes + draft_bytes;
  // Room for two sequences and a half: the target's caches alone would let
  // more than two run.
  const std::size_t bound = 2 * per_seq + per_seq / 2;
  REQUIRE(bound / target_bytes > 2);
  KvCacheManager caches(bound);
  std::size_t most_running = 0;
  const auto got = run(p, js, caches, bound, most_running);
  CHECK(most_running == 2);  // the others waited for room
  for (std::size_t i = 0; i < js.size(); ++i) {
    INFO("job " << i);
    auto alone = p.alone(js[i].cfg);
    const GenerationResult a = alone.generate(js[i].prompt);
    CHECK(got[i].tokens == a.tokens);
    CHECK(got[i].stats.drafted == a.stats.drafted);
    CHECK(got[i].stats.accepted == a.stats.accepted);
    CHECK(got[i].tokens ==
          generate_autoregressive(p.target.backend(), js[i].prompt, js[i].cfg).tokens);
  }
}

TEST_CASE("BatchEngine: a draft cache that cannot grow under the bound proposes less, same output") {
  const Pair& p = pair(false);
  // A draft tokenizing more finely than the target soon needs more
  // positions than its first cache (the target's plan), and the bound
  // leaves no room for a second one.
  const std::vector<Job> js = jobs(p, 0);
  const std::size_t cap = js[0].cfg.cache_capacity;
  const std::size_t per_seq =
      p.target.backend().make_cache(cap).bytes() + p.draft.backend().make_cache(cap).bytes();
  const std::size_t bound = per_seq + per_seq / 4;
  KvCacheManager caches(bound);
  std::size_t most_running = 0;
  const auto got = run(p, js, caches, bound, most_running);
  CHECK(most_running == 1);
  std::size_t drafted = 0, drafted_alone = 0;
  for (std::size_t i = 0; i < js.size(); ++i) {
    INFO("job " << i);
    CHECK(got[i].tokens ==
          generate_autoregressive(p.target.backend(), js[i].prompt, js[i].cfg).tokens);
    auto alone = p.alone(js[i].cfg);
    const GenerationResult a = alone.generate(js[i].prompt);
    CHECK(got[i].tokens == a.tokens);
    drafted += got[i].stats.drafted;
    drafted_alone += a.stats.drafted;
  }
  // Alone, the draft's cache grew; under the bound it could not.
  CHECK(drafted < drafted_alone);

  // Caches that can never fit: the sequence fails alone with a CapacityError.
  KvCacheManager tiny(per_seq / 2);
  BatchEngine<AnyModel, Source> engine(p.target.backend(), {.max_batch = 2}, &tiny);
  engine.submit(js[0].prompt, js[0].cfg, p.source());
  engine.run();
  const auto fin = engine.take_finished();
  REQUIRE(fin.size() == 1);
  REQUIRE(fin[0].error);
  CHECK_THROWS_AS(std::rethrow_exception(fin[0].error), CapacityError);
}
