// hpu::Transformer shared between threads, as its header documents: a loaded
// model is immutable (the graph cache is internally synchronised), so threads
// that each own a cache get exactly the logits one thread gets, while they
// compile the buckets they need at the same time. scripts/sanitize.sh runs
// this file under ThreadSanitizer (the CPU reference device uses no OpenMP).
#include <barrier>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "assistgen/hpu/transformer.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/autoregressive.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(ASSISTGEN_TEST_DATA_DIR) / "models";
constexpr int kThreads = 4;

hpu::LoadOptions small_buckets() {
  hpu::LoadOptions o;
  o.buckets.tokens = {1, 4, 16};  // 1, 2, 4, 8, 12, 16
  o.buckets.kv_len = {16, 16, 64};
  return o;  // no warm-up: the threads compile concurrently
}

std::vector<Token> sequence(std::size_t n, std::size_t vocab, std::size_t salt) {
  std::vector<Token> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<Token>((i * 37 + salt * 11 + 3) % vocab);
  return t;
}

// One thread's work on the shared model: a prefill in calls of several sizes
// (several buckets), a rollback, verification blocks and decode steps. Returns
// every row of logits it got, concatenated.
std::vector<float> work(const hpu::Transformer& m, std::size_t salt) {
  const auto tokens = sequence(40, m.vocab_size(), salt);
  const std::span<const Token> all(tokens);
  auto cache = m.make_cache(64);
  std::vector<float> rows;
  auto keep = [&](const Logits& l) { rows.insert(rows.end(), l.data(), l.data() + l.rows() * l.cols()); };
  keep(m.forward(all.first(3 + salt % 5), cache));
  keep(m.forward(all.subspan(cache.size(), 9), cache));
  cache.truncate(cache.size() - 4);
  for (std::size_t k : {5, 1, 3, 1, 7}) keep(m.forward(all.subspan(cache.size(), k), cache));
  return rows;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("threads sharing one hpu::Transformer get one thread's logits, bit for bit",
          "[hpu][concurrency]") {
  for (const char* name : {"llama-gqa", "mistral-window", "qwen2-bias"}) {
    INFO(name);
    const auto model = hpu::Transformer::load(kModels / name, small_buckets());
    REQUIRE(model.graph_cache().size() == 0);
    std::vector<std::vector<float>> got(kThreads);
    std::barrier start(kThreads);
    {
      std::vector<std::jthread> threads;
      for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
          start.arrive_and_wait();  // all threads compile and run at the same time
          for (int rep = 0; rep < 2; ++rep) got[t] = work(model, static_cast<std::size_t>(t));
        });
    }
    const auto compiled = model.graph_cache().stats().misses;
    CHECK(compiled == model.graph_cache().size());  // no bucket compiled twice
    for (int t = 0; t < kThreads; ++t) {
      INFO("thread " << t);
      // A fresh model, one thread: the reference.
      const auto alone = hpu::Transformer::load(kModels / name, small_buckets());
      CHECK(same_bits(got[t], work(alone, static_cast<std::size_t>(t))));
      // And the shared model, now single-threaded, agrees too.
      CHECK(same_bits(got[t], work(model, static_cast<std::size_t>(t))));
    }
    CHECK(model.graph_cache().stats().misses == compiled);  // everything was compiled already
  }
}

TEST_CASE("threads sharing one hpu::Transformer as target and draft decode like one thread",
          "[hpu][concurrency]") {
  const auto target = hpu::Transformer::load(kModels / "llama-gqa", small_buckets());
  const auto draft = hpu::Transformer::load(kModels / "llama-gqa-noisy", small_buckets());
  const std::vector<Token> prompt{1, 17, 200, 45, 3, 99};
  const GenerationConfig cfg{.max_new_tokens = 24, .num_assistant_tokens = 4};
  std::vector<std::vector<Token>> got(kThreads);
  std::barrier start(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        GenerationConfig c = cfg;
        c.num_assistant_tokens = 1 + static_cast<std::size_t>(t);  // different block sizes at once
        SpeculativeDecoder dec(draft, target, c);
        got[t] = dec.generate(prompt).tokens;
      });
  }
  const auto plain = generate_autoregressive(target, prompt, cfg).tokens;
  REQUIRE(plain.size() == cfg.max_new_tokens);
  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t);
    CHECK(got[t] == plain);
  }
}
