// BatchEngine on the CPU backend with the random checkpoints of
// tests/data/models: llama-gqa is the target, llama-gqa-noisy a partially
// agreeing draft (ragged acceptance: sequences of one round accept different
// counts), llama-draft an unrelated one. Pins: every sequence's output,
// greedy and seeded sampling, plain, draft-assisted and prompt lookup, is
// bit-identical to running it alone (AutoregressiveDecoder /
// SpeculativeDecoder), under random arrival orders, batch limits and
// KvCacheManager bounds; one target call per round and batched draft steps;
// cancel, callbacks that stop or throw, and bad submissions.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "integration/batch_arrivals.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;
using batch_test::Job;
using cpu::Transformer;
using toy::FnModel;

namespace {

const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";

struct Models {
  Transformer target = Transformer::load(kModels / "llama-gqa");
  Transformer noisy = Transformer::load(kModels / "llama-gqa-noisy");
  Transformer unrelated = Transformer::load(kModels / "llama-draft");
};

const Models& models() {
  static const Models m;
  return m;
}

// `count` jobs with varied prompts (lengths 1..12, repetitive ones so that
// prompt lookup finds matches), K, lengths, seeds and processors.
std::vector<Job> make_jobs(std::size_t count, bool sample, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Job> jobs;
  for (std::size_t i = 0; i < count; ++i) {
    Job j;
    const std::size_t len = 1 + rng() % 12;
    for (std::size_t t = 0; t < len; ++t) j.prompt.push_back(static_cast<Token>(1 + rng() % 250));
    if (i % 3 == 1)  // a repeated phrase: prompt lookup proposes from it
      for (std::size_t t = 0; t < len; ++t) j.prompt.push_back(j.prompt[t]);
    j.cfg.max_new_tokens = 5 + rng() % 30;
    j.cfg.num_assistant_tokens = 1 + rng() % 6;
    j.cfg.do_sample = sample;
    j.cfg.seed = 1000 + i;
    if (sample) {
      j.cfg.temperature = 0.7f + 0.1f * static_cast<float>(i % 4);
      j.cfg.top_k = i % 2 ? 40 : 0;
      j.cfg.top_p = i % 3 ? 1.0f : 0.9f;
    }
    if (i % 4 == 3) j.cfg.repetition_penalty = 1.3f;
    if (i % 5 == 2) j.cfg.eos_token_ids = {static_cast<Token>(rng() % 256)};
    if (i % 6 == 4) j.cfg.schedule = DraftLengthSchedule::heuristic;
    jobs.push_back(std::move(j));
  }
  return jobs;
}

}  // namespace

TEST_CASE("BatchEngine: plain greedy and sampled sequences equal AutoregressiveDecoder alone") {
  const Models& m = models();
  const bool sample = GENERATE(false, true);
  const std::size_t max_batch = GENERATE(1, 3, 16);
  const std::vector<Job> jobs = make_jobs(12, sample, 7 + static_cast<std::uint32_t>(max_batch));
  BatchEngine<Transformer> engine(m.target, {.max_batch = max_batch});
  const auto got =
      batch_test::run_with_arrivals(engine, jobs, 11 * static_cast<std::uint32_t>(max_batch), 3,
                                    [](const Job&) { return NoCandidates{}; });
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    INFO("job " << j << " sample " << sample << " max_batch " << max_batch);
    const GenerationResult alone = generate_autoregressive(m.target, jobs[j].prompt, jobs[j].cfg);
    CHECK(got[j].tokens == alone.tokens);
    CHECK(got[j].stop_reason == alone.stop_reason);
  }
  const BatchStats st = engine.stats();
  CHECK(st.target_calls == st.rounds);
  CHECK(st.finished == jobs.size());
  CHECK(st.max_batch_seen <= max_batch);
  if (max_batch > 1) CHECK(st.mean_batch() > 1.0);
  CHECK(engine.cache_manager().live_count() == 0);  // every cache went back
}

TEST_CASE(
    "BatchEngine: draft-assisted sequences with ragged acceptance equal SpeculativeDecoder alone") {
  const Models& m = models();
  const bool sample = GENERATE(false, true);
  const int which = GENERATE(0, 1);  // the noisy draft (ragged acceptance), the unrelated one
  const std::size_t max_batch = GENERATE(2, 5, 16);
  const Transformer& draft = which == 0 ? m.noisy : m.unrelated;
  const std::vector<Job> jobs = make_jobs(14, sample, 100 + static_cast<std::uint32_t>(max_batch));
  using Source = DraftModelCandidates<Transformer>;
  BatchEngine<Transformer, Source> engine(m.target, {.max_batch = max_batch});
  const auto vocab = static_cast<std::size_t>(m.target.vocab_size());
  const auto got =
      batch_test::run_with_arrivals(engine, jobs, 3 + static_cast<std::uint32_t>(max_batch), 3,
                                    [&](const Job&) { return Source(draft, vocab); });
  std::size_t per_sequence_draft_calls = 0;
  bool ragged = false;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    INFO("job " << j << " sample " << sample << " draft " << which << " max_batch " << max_batch);
    SpeculativeDecoder decoder(draft, m.target, jobs[j].cfg);
    const GenerationResult alone = decoder.generate(jobs[j].prompt);
    CHECK(got[j].tokens == alone.tokens);
    CHECK(got[j].stop_reason == alone.stop_reason);
    // The same rounds, candidates and acceptances as alone.
    CHECK(got[j].stats.rounds == alone.stats.rounds);
    CHECK(got[j].stats.drafted == alone.stats.drafted);
    CHECK(got[j].stats.accepted == alone.stats.accepted);
    CHECK(got[j].stats.draft_calls == alone.stats.draft_calls);
    per_sequence_draft_calls += got[j].stats.draft_calls;
    if (alone.stats.accepted != 0 && alone.stats.accepted != alone.stats.drafted) ragged = true;
  }
  if (which == 0) CHECK(ragged);
  const BatchStats st = engine.stats();
  CHECK(st.target_calls == st.rounds);
  // Draft steps of several sequences shared forward calls.
  CHECK(st.draft_calls < per_sequence_draft_calls);
  CHECK(engine.cache_manager().live_count() == 0);
}

TEST_CASE("BatchEngine: prompt lookup per sequence equals SpeculativeDecoder alone") {
  const Models& m = models();
  std::vector<Job> jobs = make_jobs(10, false, 5);
  for (auto& j : jobs) j.cfg.prompt_lookup_num_tokens = 1 + j.prompt.size() % 4;
  BatchEngine<Transformer, PromptLookupCandidates> engine(m.target, {.max_batch = 4});
  const auto got = batch_test::run_with_arrivals(
      engine, jobs, 9, 3, [](const Job& j) { return PromptLookupCandidates(j.cfg); });
  std::size_t drafted = 0;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    SpeculativeDecoder decoder(m.target, jobs[j].cfg);
    const GenerationResult alone = decoder.generate(jobs[j].prompt);
    CHECK(got[j].tokens == alone.tokens);
    CHECK(got[j].stats.accepted == alone.stats.accepted);
    drafted += got[j].stats.drafted;
  }
  CHECK(drafted > 0);
}

TEST_CASE("BatchEngine: type-erased models (AnyModel) batch through their batched forward") {
  const Models& m = models();
  const AnyModel target = AnyModel::borrow(m.target);
  const AnyModel draft = AnyModel::borrow(m.noisy);
  const std::vector<Job> jobs = make_jobs(6, true, 21);
  using Source = DraftModelCandidates<AnyModel>;
  BatchEngine<AnyModel, Source> engine(target, {.max_batch = 6});
  const auto got = batch_test::run_with_arrivals(
      engine, jobs, 4, 3, [&](const Job&) { return Source(draft, target.vocab_size()); });
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    SpeculativeDecoder decoder(m.noisy, m.target, jobs[j].cfg);
    CHECK(got[j].tokens == decoder.generate(jobs[j].prompt).tokens);
  }
}

TEST_CASE("BatchEngine: a bounded KvCacheManager makes sequences wait, not fail") {
  const Models& m = models();
  std::vector<Job> jobs = make_jobs(8, false, 31);
  using Source = DraftModelCandidates<Transformer>;
  // Caches of one size, room for those of two and a half sequences.
  std::size_t biggest = 0;
  for (const auto& j : jobs) biggest = std::max(biggest, j.prompt.size() + j.cfg.max_new_tokens);
  for (auto& j : jobs) j.cfg.cache_capacity = biggest;
  const std::size_t per_seq =
      cache_bytes(m.target.make_cache(biggest)) + cache_bytes(m.noisy.make_cache(biggest));
  KvCacheManager caches(2 * per_seq + per_seq / 2);
  BatchEngine<Transformer, Source> engine(m.target, {.max_batch = 8}, &caches);
  const auto vocab = static_cast<std::size_t>(m.target.vocab_size());
  std::size_t most_running = 0;
  for (const auto& j : jobs) engine.submit(j.prompt, j.cfg, Source(m.noisy, vocab));
  std::vector<GenerationResult> got(jobs.size());
  while (engine.step()) {
    most_running = std::max(most_running, engine.running());
    CHECK(caches.bytes_total() <= 2 * per_seq + per_seq / 2);
    for (auto& f : engine.take_finished()) got[f.id] = std::move(f.result);
  }
  for (auto& f : engine.take_finished()) got[f.id] = std::move(f.result);
  CHECK(most_running >= 1);
  CHECK(most_running <= 2);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    SpeculativeDecoder decoder(m.noisy, m.target, jobs[j].cfg);
    CHECK(got[j].tokens == decoder.generate(jobs[j].prompt).tokens);
  }

  // A sequence whose caches can never fit fails alone, with a CapacityError.
  KvCacheManager tiny(1024);
  BatchEngine<Transformer, Source> small(m.target, {.max_batch = 2}, &tiny);
  small.submit(jobs[0].prompt, jobs[0].cfg, Source(m.noisy, vocab));
  small.run();
  const auto fin = small.take_finished();
  REQUIRE(fin.size() == 1);
  REQUIRE(fin[0].error);
  CHECK_THROWS_AS(std::rethrow_exception(fin[0].error), CapacityError);
}

TEST_CASE("BatchEngine: cancel, callbacks that stop or throw, bad submissions") {
  const Models& m = models();
  GenerationConfig cfg;
  cfg.max_new_tokens = 20;
  const std::vector<Token> prompt{1, 17, 200, 45};
  BatchEngine<Transformer> engine(m.target, {.max_batch = 2});

  const auto a = engine.submit(prompt, cfg);  // runs to the end
  const auto b =
      engine.submit(prompt, cfg, [n = 0](Token) mutable { return ++n < 3; });  // stops itself
  const auto c =
      engine.submit(prompt, cfg, [](Token) -> bool { throw std::runtime_error("client gone"); });
  const auto d = engine.submit(prompt, cfg);  // cancelled while waiting
  const auto e = engine.submit(prompt, cfg);  // cancelled while running
  CHECK(engine.waiting() == 5);
  CHECK(engine.cancel(d));
  CHECK_FALSE(engine.cancel(12345));

  // Bad input throws at submit and queues nothing.
  CHECK_THROWS_AS(engine.submit(std::vector<Token>{1, 5000}, cfg), InvalidArgument);
  CHECK_THROWS_AS(engine.submit(std::vector<Token>{}, cfg), InvalidArgument);
  GenerationConfig bad = cfg;
  bad.top_p = 2.0f;
  CHECK_THROWS_AS(engine.submit(prompt, bad), InvalidArgument);
  CHECK(engine.waiting() == 4);

  std::map<std::uint64_t, BatchEngine<Transformer>::Finished> fin;
  bool cancelled_e = false;
  while (engine.step()) {
    if (!cancelled_e && engine.running() > 0 && fin.count(a) && fin.count(b)) {
      // c failed in its first round; e is running now
      cancelled_e = engine.cancel(e);
    }
    for (auto& f : engine.take_finished()) fin.emplace(f.id, std::move(f));
  }
  for (auto& f : engine.take_finished()) fin.emplace(f.id, std::move(f));
  REQUIRE(fin.size() == 5);
  const GenerationResult alone = generate_autoregressive(m.target, prompt, cfg);
  CHECK(fin.at(a).result.tokens == alone.tokens);
  CHECK(fin.at(b).result.tokens ==
        std::vector<Token>(alone.tokens.begin(), alone.tokens.begin() + 3));
  CHECK(fin.at(b).result.stop_reason == StopReason::callback);
  REQUIRE(fin.at(c).error);
  CHECK_THROWS_WITH(std::rethrow_exception(fin.at(c).error), "client gone");
  CHECK(fin.at(d).cancelled);
  CHECK(fin.at(d).result.tokens.empty());
  CHECK(cancelled_e);
  CHECK(fin.at(e).cancelled);
  CHECK(fin.at(e).result.tokens.size() < alone.tokens.size());
  // What e emitted before the cancel is the start of its output alone.
  CHECK(std::equal(fin.at(e).result.tokens.begin(), fin.at(e).result.tokens.end(),
                   alone.tokens.begin()));

  CHECK_THROWS_AS(BatchEngine<Transformer>(m.target, {.max_batch = 0}), InvalidArgument);
}

TEST_CASE(
    "BatchEngine: a failing model call ends that round's sequences only, and max_new_tokens 0") {
  // Logits favour token (last + 1) % 16; the model throws once a cache holds
  // 6 tokens after a prompt that starts with 15.
  const FnModel model(16, [](std::span<const Token> h, std::span<float> row) {
    if (h.front() == 15 && h.size() > 6) throw FormatError("toy model: overflow at position 6");
    std::fill(row.begin(), row.end(), 0.0f);
    row[static_cast<std::size_t>((h.back() + 1) % 16)] = 1.0f;
  });
  GenerationConfig cfg;
  cfg.max_new_tokens = 10;
  BatchEngine<FnModel> engine(model, {.max_batch = 2});
  const auto bad = engine.submit(std::vector<Token>{15, 1}, cfg);
  const auto mate = engine.submit(std::vector<Token>{3}, cfg);
  const auto later = engine.submit(std::vector<Token>{4}, cfg);
  GenerationConfig none = cfg;
  none.max_new_tokens = 0;
  const auto empty = engine.submit(std::vector<Token>{5}, none);
  engine.run();
  std::map<std::uint64_t, BatchEngine<FnModel>::Finished> fin;
  for (auto& f : engine.take_finished()) fin.emplace(f.id, std::move(f));
  REQUIRE(fin.size() == 4);
  REQUIRE(fin.at(bad).error);
  CHECK_THROWS_WITH(std::rethrow_exception(fin.at(bad).error),
                    Catch::Contains("overflow at position 6"));
  REQUIRE(fin.at(mate).error);  // it shared the failing round
  CHECK_FALSE(fin.at(later).error);
  CHECK(fin.at(later).result.tokens ==
        generate_autoregressive(model, std::vector<Token>{4}, cfg).tokens);
  CHECK_FALSE(fin.at(empty).error);
  CHECK(fin.at(empty).result.tokens.empty());
}
