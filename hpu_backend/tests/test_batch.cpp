// Batch in the buckets: the batched forward of hpu::Transformer against
// single-sequence forwards (same bits), and BatchEngine driving the HPU
// backend through (batch, tokens, kv_len) buckets in a long run with joins
// and leaves: every sequence equals its run alone, nothing compiles after
// warm-up (counted through the injected compile function), in f32, bf16 and
// fp8. The padding waste is reported by LaunchStats.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "assistgen/autoregressive.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/hpu/transformer.hpp"
#include "assistgen/speculative_decoder.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(ASSISTGEN_TEST_DATA_DIR) / "models";

hpu::LoadOptions batch_buckets(DType dtype, std::shared_ptr<hpu::Device> dev,
                               std::size_t* compiled) {
  hpu::LoadOptions o;
  o.device = dev;
  o.dtype = dtype;
  o.buckets.batch = {1, 4, 4};      // 1, 2, 4
  o.buckets.tokens = {1, 8, 16};    // 1, 2, 4, 8, 16
  o.buckets.kv_len = {32, 32, 96};  // 32, 64, 96
  o.compile = [dev, compiled](const hpu::Graph& g) {
    ++*compiled;
    return dev->compile(g);
  };
  o.warmup = true;
  return o;
}

}  // namespace

TEST_CASE("hpu batched forward: each request's rows are the bits it gets alone", "[hpu][batch]") {
  std::size_t compiled = 0;
  auto dev = hpu::make_cpu_reference_device();
  for (const char* name : {"llama-gqa", "mistral-window", "gpt2-target"}) {
    INFO(name);
    const auto m =
        hpu::Transformer::load(kModels / name, batch_buckets(DType::f32, dev, &compiled));
    const std::vector<std::vector<Token>> prefix = {
        {1, 2, 3}, {}, {7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {5}, {40, 41}};
    const std::vector<std::vector<Token>> next = {
        {4, 5}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 9, 8, 7, 6, 5, 4, 3, 2, 1}, {17}, {6, 7, 8}, {42}};
    std::vector<hpu::Transformer::Cache> batch, alone;
    std::vector<Logits> want;
    for (std::size_t r = 0; r < prefix.size(); ++r) {
      batch.push_back(m.make_cache(64));
      alone.push_back(m.make_cache(64));
      if (!prefix[r].empty()) {
        m.forward(prefix[r], batch.back());
        m.forward(prefix[r], alone.back());
      }
      want.push_back(m.forward(next[r], alone.back()));
    }
    // Five requests: a group of four and one of one; request 1 needs two chunks.
    std::vector<ForwardRequest> reqs;
    std::vector<hpu::Transformer::Cache*> ptrs;
    for (std::size_t r = 0; r < next.size(); ++r) {
      reqs.push_back({next[r], {}, r == 3 ? std::size_t{1} : kAllRows});
      ptrs.push_back(&batch[r]);
    }
    const auto before = m.launch_stats();
    Logits out;
    m.forward(reqs, ptrs, out);
    CHECK(m.launch_stats().batched_launches > before.batched_launches);
    std::size_t row = 0;
    for (std::size_t r = 0; r < next.size(); ++r) {
      const std::size_t keep = output_rows(reqs[r]);
      const std::size_t first = want[r].rows() - keep;
      CHECK(std::memcmp(out.row(row).data(), want[r].row(first).data(),
                        keep * m.vocab_size() * sizeof(float)) == 0);
      row += keep;
      CHECK(batch[r].size() == prefix[r].size() + next[r].size());
    }
    // A bad request leaves every cache as it was.
    const std::vector<Token> bad = {1, 999};
    reqs[2] = {bad};
    CHECK_THROWS_WITH(m.forward(reqs, ptrs, out), Catch::Contains("request 2"));
    for (std::size_t r = 0; r < next.size(); ++r)
      CHECK(batch[r].size() == prefix[r].size() + next[r].size());
    const std::vector<std::int32_t> tree = {-1, -1};
    const std::vector<Token> two = {1, 2};
    const ForwardRequest t{two, tree};
    auto* p0 = ptrs[0];
    CHECK_THROWS_AS(m.forward({&t, 1}, {&p0, 1}, out), UnsupportedError);
  }
  CHECK(compiled > 0);
}

TEST_CASE(
    "BatchEngine drives hpu::Transformer through the buckets: outputs as alone, no "
    "compilation after warm-up, padding waste reported",
    "[hpu][batch]") {
  for (const DType dt : {DType::f32, DType::bf16, DType::f8_e4m3}) {
    SECTION(std::string(dtype_name(dt))) {
      std::size_t compiled = 0;
      auto dev = hpu::make_cpu_reference_device();
      const auto target =
          hpu::Transformer::load(kModels / "llama-gqa", batch_buckets(dt, dev, &compiled));
      const auto draft = hpu::Transformer::load(kModels / "llama-gqa-noisy",
                                                batch_buckets(DType::f32, dev, &compiled));
      const std::size_t warm = compiled;
      CHECK(warm == 2 * 3 * 5 * 3);  // two models, 3 x 5 x 3 buckets each

      // 16 sequences of different prompts, lengths and K, joining 0..2 per
      // round and leaving as they finish.
      std::mt19937 rng(26);
      struct Job {
        std::vector<Token> prompt;
        GenerationConfig cfg;
      };
      std::vector<Job> jobs;
      for (int i = 0; i < 16; ++i) {
        Job j;
        for (std::size_t t = 0, n = 2 + rng() % 12; t < n; ++t)
          j.prompt.push_back(static_cast<Token>(rng() % 256));
        j.cfg.max_new_tokens = 10 + rng() % 40;
        j.cfg.num_assistant_tokens = 1 + rng() % 5;
        jobs.push_back(j);
      }
      using Source = DraftModelCandidates<hpu::Transformer>;
      BatchEngine<hpu::Transformer, Source> engine(target, {.max_batch = 4});
      std::map<BatchEngine<hpu::Transformer, Source>::SequenceId, std::size_t> job_of;
      std::vector<std::vector<Token>> got(jobs.size());
      std::size_t next = 0, done = 0;
      while (done < jobs.size()) {
        for (std::size_t a = rng() % 3; a > 0 && next < jobs.size(); --a, ++next)
          job_of[engine.submit(jobs[next].prompt, jobs[next].cfg,
                               Source(draft, target.vocab_size()))] = next;
        if (next < jobs.size() && done == next) {  // nothing running: let one join
          job_of[engine.submit(jobs[next].prompt, jobs[next].cfg,
                               Source(draft, target.vocab_size()))] = next;
          ++next;
        }
        engine.step();
        for (auto& f : engine.take_finished()) {
          REQUIRE_FALSE(f.error);
          got[job_of.at(f.id)] = f.result.tokens;
          ++done;
        }
      }
      CHECK(compiled == warm);  // the whole batched run compiled nothing
      CHECK(engine.stats().mean_batch() > 1.5);
      const hpu::LaunchStats st = target.launch_stats();
      CHECK(st.batched_launches > 0);
      CHECK(st.padded_rows > 0);  // batches of 3 run in the bucket of 4
      CHECK(st.token_waste() > 0);
      CHECK(st.token_waste() < 1);
      WARN("hpu batch " << dtype_name(dt) << ": " << st.launches
                        << " target launches, mean batch bucket "
                        << static_cast<double>(st.batch_rows) / static_cast<double>(st.launches)
                        << ", padded rows " << st.padded_rows << ", token-slot waste "
                        << st.token_waste());
      // Each sequence equals its assisted run alone (and so the target's greedy).
      for (std::size_t j = 0; j < jobs.size(); ++j) {
        INFO("job " << j);
        SpeculativeDecoder<hpu::Transformer, hpu::Transformer> dec(draft, target, jobs[j].cfg);
        CHECK(got[j] == dec.generate(jobs[j].prompt).tokens);
      }
      CHECK(compiled == warm);
    }
  }
}
