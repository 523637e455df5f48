// Self-speculation inside a batch (BatchEngine over EarlyExitCandidates, the
// DraftsOnTargetCache hooks): each sequence drafts with the target's first
// E layers on its own target cache, and is verified with the others in the
// round's one target call (or, alone in its round, by its source reusing
// the draft's rows). Pins: every sequence's output, greedy and seeded
// sampling, is bit-identical to SelfSpeculativeDecoder alone (the same
// rounds and acceptances) and, greedy, to the target alone, under random
// arrivals and batch limits, for both verification modes of the source; the
// text API (generate_batch / TextBatchEngine with assistant_early_exit)
// equals generate() alone.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <random>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/self_speculative_decoder.hpp"
#include "assistgen/text_engine.hpp"
#include "integration/batch_arrivals.hpp"

using namespace assistgen;
using batch_test::Job;
using cpu::Transformer;

namespace {

const std::filesystem::path kModels = ASSISTGEN_MODELS_DIR;

const Transformer& target() {
  static const Transformer t = Transformer::load(kModels / "kjv-target", {.threads = 1});
  return t;
}

std::vector<Job> make_jobs(std::size_t count, bool sample, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Job> jobs;
  for (std::size_t i = 0; i < count; ++i) {
    Job j;
    const std::size_t len = 1 + rng() % 10;
    for (std::size_t t = 0; t < len; ++t) j.prompt.push_back(static_cast<Token>(5 + rng() % 3000));
    j.cfg.max_new_tokens = 4 + rng() % 24;
    j.cfg.num_assistant_tokens = 1 + rng() % 5;
    j.cfg.do_sample = sample;
    j.cfg.seed = 500 + i;
    if (sample) {
      j.cfg.temperature = 0.8f + 0.1f * static_cast<float>(i % 3);
      j.cfg.top_k = i % 2 ? 30 : 0;
    }
    if (i % 4 == 3) j.cfg.repetition_penalty = 1.2f;
    if (i % 5 == 1) j.cfg.schedule = DraftLengthSchedule::heuristic;
    jobs.push_back(std::move(j));
  }
  return jobs;
}

}  // namespace

TEST_CASE("BatchEngine: self-speculative sequences equal SelfSpeculativeDecoder alone") {
  const Transformer& t = target();
  const bool sample = GENERATE(false, true);
  const std::size_t max_batch = GENERATE(1, 3, 8);
  const std::size_t exit_layer = GENERATE(1, 3);
  const EarlyExitVerify verify = GENERATE(EarlyExitVerify::reuse, EarlyExitVerify::recompute);
  const std::vector<Job> jobs =
      make_jobs(10, sample, 40 + static_cast<std::uint32_t>(max_batch + exit_layer));
  using Source = EarlyExitCandidates<Transformer>;
  STATIC_REQUIRE(DraftsOnTargetCache<Source, Transformer::Cache>);
  BatchEngine<Transformer, Source> engine(t, {.max_batch = max_batch});

  const std::vector<GenerationResult> got = batch_test::run_with_arrivals(
      engine, jobs, static_cast<std::uint32_t>(max_batch * 7 + exit_layer), 2,
      [&](const Job&) { return Source(t, exit_layer, verify); });

  std::size_t accepted = 0;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    INFO("job " << j << " sample " << sample << " max_batch " << max_batch << " E " << exit_layer);
    SelfSpeculativeDecoder alone(t, exit_layer, jobs[j].cfg, verify);
    const GenerationResult a = alone.generate(jobs[j].prompt);
    CHECK(got[j].tokens == a.tokens);
    CHECK(got[j].stop_reason == a.stop_reason);
    CHECK(got[j].stats.rounds == a.stats.rounds);
    CHECK(got[j].stats.drafted == a.stats.drafted);
    CHECK(got[j].stats.accepted == a.stats.accepted);
    CHECK(got[j].stats.draft_calls == a.stats.draft_calls);
    if (!sample)
      CHECK(got[j].tokens == generate_autoregressive(t, jobs[j].prompt, jobs[j].cfg).tokens);
    accepted += got[j].stats.accepted;
  }
  CHECK(accepted > 0);
  const BatchStats st = engine.stats();
  CHECK(st.target_calls == st.rounds);  // one verification per round, batched or alone
  if (max_batch > 1) CHECK(st.mean_batch() > 1.0);
  CHECK(engine.cache_manager().live_count() == 0);
}

TEST_CASE("generate_batch and TextBatchEngine: assistant_early_exit equals generate() alone") {
  const Model model = load_model(kModels / "kjv-target", {.threads = 1});
  std::vector<BatchRequest> q(5);
  const char* prompts[] = {"And God said", "In the beginning", "And the LORD spake unto Moses",
                           "Blessed", "And it came to pass"};
  for (std::size_t i = 0; i < q.size(); ++i) {
    q[i].prompt = prompts[i];
    q[i].options.max_new_tokens = 12 + 5 * i;
    q[i].options.assistant_early_exit = 1 + i % 3;
    if (i % 2) {
      q[i].options.do_sample = true;
      q[i].options.temperature = 1.1f;
      q[i].options.seed = 70 + i;
    }
  }
  q[4].options.assistant_early_exit.reset();  // a plain request in the same batch
  const BatchTextResult r = model.generate_batch(q, nullptr, {.max_batch = 4});
  for (std::size_t i = 0; i < q.size(); ++i) {
    INFO("request " << i);
    REQUIRE_FALSE(r.errors[i]);
    const TextResult alone = model.generate(q[i].prompt, q[i].options);
    CHECK(r.results[i].assistance == alone.assistance);
    CHECK(r.results[i].tokens == alone.tokens);
    CHECK(r.results[i].text == alone.text);
    CHECK(r.results[i].stats.accepted == alone.stats.accepted);
  }
  CHECK(r.results[0].assistance == Assistance::early_exit);
  CHECK(r.results[4].assistance == Assistance::none);
  CHECK(r.stats.mean_batch() > 1.0);

  // Bad combinations are refused per request, naming the options.
  std::vector<BatchRequest> bad(2);
  bad[0].prompt = "x";
  bad[0].options = {.assistant_early_exit = 1, .prompt_lookup_num_tokens = 3};
  bad[1].prompt = "x";
  bad[1].options = {.assistant_early_exit = 6};  // the model has 6 layers
  const BatchTextResult rb = model.generate_batch(bad);
  REQUIRE(rb.errors[0]);
  CHECK_THROWS_WITH(std::rethrow_exception(rb.errors[0]),
                    Catch::Contains("assistant_early_exit and prompt_lookup_num_tokens"));
  REQUIRE(rb.errors[1]);
  CHECK_THROWS_WITH(std::rethrow_exception(rb.errors[1]),
                    Catch::Contains("early_exit 6 must be below the target's 6 layers"));
  const Model draft = load_model(kModels / "kjv-draft", {.threads = 1});
  TextBatchEngine with_draft(model, &draft);
  CHECK_THROWS_WITH(with_draft.submit("x", {.assistant_early_exit = 1}),
                    Catch::Contains("assistant_early_exit"));
}
