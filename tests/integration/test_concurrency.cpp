// Sharing loaded models and tokenizers between threads. A loaded
// cpu::Transformer and a Tokenizer are immutable: threads that each own their
// decoders (and so their caches) must produce exactly what one thread does.
// Using one cache from two threads at once is detected (KvStorage's exclusive
// use flag, see kv_cache.hpp) and rejected with InvalidArgument.
//
// scripts/sanitize.sh runs this file under ThreadSanitizer with
// OMP_NUM_THREADS=1: libgomp and oneDNN are not TSan-instrumented, and their
// thread pools would otherwise show up as false races.
#include <catch2/catch.hpp>

#include <barrier>
#include <filesystem>
#include <future>
#include <string>
#include <cstring>
#include <thread>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/kv_cache.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/tokenizer.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {

constexpr int kThreads = 4;

const fs::path kData(ASSISTGEN_TEST_DATA_DIR);

// Everything one generation run produces, for exact comparison.
struct Outputs {
  std::vector<std::vector<Token>> tokens;
  bool operator==(const Outputs&) const = default;
};

std::vector<std::vector<Token>> prompts() {
  return {{1, 17, 42, 99, 3}, {1, 200, 201, 202}, {5, 5, 5, 5, 5, 5, 5, 9}};
}

// One thread's work: plain greedy, assisted greedy and assisted sampling on
// every prompt, each with decoders (and caches) owned by this call.
Outputs generate_all(const cpu::Transformer& draft, const cpu::Transformer& target) {
  Outputs out;
  AutoregressiveDecoder plain(target, GenerationConfig{.max_new_tokens = 20});
  SpeculativeDecoder greedy(draft, target, GenerationConfig{.max_new_tokens = 20, .num_assistant_tokens = 3});
  SpeculativeDecoder sampled(draft, target,
                             GenerationConfig{.max_new_tokens = 20,
                                              .num_assistant_tokens = 4,
                                              .schedule = DraftLengthSchedule::heuristic,
                                              .do_sample = true,
                                              .temperature = 0.8f,
                                              .top_k = 40,
                                              .seed = 1234});
  for (const auto& p : prompts()) {
    out.tokens.push_back(plain.generate(p).tokens);
    out.tokens.push_back(greedy.generate(p).tokens);
    out.tokens.push_back(sampled.generate(p).tokens);
  }
  return out;
}

}  // namespace

TEST_CASE("threads sharing one model generate exactly what one thread does", "[concurrency]") {
  const auto target = cpu::Transformer::load(kData / "models" / "llama-gqa");
  const auto draft = cpu::Transformer::load(kData / "models" / "llama-draft");
  const Outputs reference = generate_all(draft, target);
  REQUIRE(reference.tokens.size() == 9);
  // Greedy assisted output equals plain greedy output (a sanity check that
  // the reference itself is meaningful).
  CHECK(reference.tokens[0] == reference.tokens[1]);

  std::vector<Outputs> results(kThreads);
  std::barrier start(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        start.arrive_and_wait();  // all threads run forward passes at the same time
        results[t] = generate_all(draft, target);
      });
  }
  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t);
    CHECK(results[t] == reference);
  }
}

TEST_CASE("threads sharing one model get the same logits as one thread", "[concurrency]") {
  const auto model = cpu::Transformer::load(kData / "models" / "llama-gqa");
  const std::vector<Token> prompt{1, 10, 20, 30, 40, 50, 60, 70};
  auto reference_cache = model.make_cache(32);
  const Logits reference = model.forward(prompt, reference_cache);

  std::vector<float> max_diff(kThreads, 0.0f);
  std::vector<int> differing(kThreads, 0);
  std::barrier start(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        auto cache = model.make_cache(32);
        start.arrive_and_wait();
        for (int rep = 0; rep < 5; ++rep) {
          cache.truncate(0);
          // Prefill in two calls on some repetitions: the cache path must agree too.
          Logits l;
          if (rep % 2 == 0) {
            l = model.forward(prompt, cache);
          } else {
            model.forward(std::span<const Token>(prompt).first(3), cache);
            l = model.forward(std::span<const Token>(prompt).subspan(3), cache);
          }
          const std::size_t row0 = prompt.size() - l.rows();
          // The bits must be the reference's (a NaN would count as differing).
          if (std::memcmp(l.data(), reference.row(row0).data(), l.rows() * l.cols() * sizeof(float)) != 0)
            ++differing[t];
          for (std::size_t r = 0; r < l.rows(); ++r)
            for (std::size_t c = 0; c < l.cols(); ++c)
              max_diff[t] = std::max(max_diff[t], std::abs(l.row(r)[c] - reference.row(row0 + r)[c]));
        }
      });
  }
  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t);
    // Same math in another thread, and the kernels are batch-invariant: a
    // prefill split in two calls gives the same bits as one call, so every
    // repetition must reproduce the reference exactly.
    INFO("max |diff| " << max_diff[t]);
    CHECK(differing[t] == 0);
  }
}

TEST_CASE("threads sharing one tokenizer encode and decode like one thread", "[concurrency][tokenizer]") {
  const auto tok = Tokenizer::load(kData / "tokenizers" / "llama3-8k");
  const std::vector<std::string> texts{"The quick brown fox jumps over the lazy dog.",
                                       "Ünïcödé, 日本語, emoji 😀 and numbers 1234567.",
                                       "  spaces\tand\nnewlines  "};
  std::vector<std::vector<Token>> ids;
  std::vector<std::string> decoded;
  for (const auto& s : texts) {
    ids.push_back(tok.encode(s));
    decoded.push_back(tok.decode(ids.back()));
  }
  std::vector<int> mismatches(kThreads, 0);
  std::barrier start(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        for (int rep = 0; rep < 20; ++rep)
          for (std::size_t i = 0; i < texts.size(); ++i) {
            const auto e = tok.encode(texts[i]);
            auto stream = tok.streaming();
            std::string pieces;
            for (const Token id : e) pieces += stream.push(id);
            pieces += stream.finish();
            if (e != ids[i] || tok.decode(e) != decoded[i] || pieces != decoded[i]) ++mismatches[t];
          }
      });
  }
  for (int t = 0; t < kThreads; ++t) CHECK(mismatches[t] == 0);
}

TEST_CASE("a cache in use by one thread is rejected by another", "[concurrency][misuse]") {
  const auto model = cpu::Transformer::load(kData / "models" / "llama-draft");
  auto cache = model.make_cache(16);
  const std::vector<Token> toks{1, 2, 3};
  model.forward(toks, cache);

  // Thread A holds the cache as a forward call does; thread B tries to roll
  // it back meanwhile.
  std::promise<void> held, done;
  std::future<void> release = done.get_future();
  std::jthread a([&] {
    auto hold = cache.kv().exclusive_use("thread A");
    held.set_value();
    release.wait();
  });
  held.get_future().wait();
  std::string message;
  try {
    cache.truncate(1);
  } catch (const InvalidArgument& e) {
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains("in use by another thread"));
  CHECK(cache.size() == 3);  // unchanged
  done.set_value();
  a.join();
  // Used one after the other, it is fine again.
  CHECK_NOTHROW(cache.truncate(1));
  CHECK(cache.size() == 1);
}

TEST_CASE("ExclusiveUseFlag rejects overlapping holds and allows hand-over", "[concurrency][misuse]") {
  ExclusiveUseFlag flag;
  {
    ExclusiveUseFlag::Hold first(flag, "decoder");
    CHECK(flag.busy());
    std::string message;
    std::jthread other([&] {
      try {
        ExclusiveUseFlag::Hold second(flag, "SpeculativeDecoder::generate");
      } catch (const InvalidArgument& e) {
        message = e.what();
      }
    });
    other.join();
    CHECK_THAT(message, Catch::Contains("SpeculativeDecoder::generate") && Catch::Contains("another thread"));
    bool other_rejected = false;
    std::jthread checker([&] {
      try {
        flag.check_free("truncate");
      } catch (const InvalidArgument&) {
        other_rejected = true;
      }
    });
    checker.join();
    CHECK(other_rejected);
    CHECK_NOTHROW(flag.check_free("truncate"));  // the holder itself may proceed
    {
      ExclusiveUseFlag::Hold nested(flag, "cpu::Transformer::forward");  // re-entrant
      CHECK(flag.busy());
    }
    CHECK(flag.busy());  // the nested hold left the outer one in place
  }
  CHECK_FALSE(flag.busy());
  // Sequential use from many threads is legal.
  int uses = 0;
  for (int t = 0; t < kThreads; ++t) {
    std::jthread th([&] {
      ExclusiveUseFlag::Hold h(flag, "sequential");
      ++uses;
    });
  }
  CHECK(uses == kThreads);
}

// forward() calls KvStorage::check_append before touching the cache, which
// rejects a call from a thread other than the one holding exclusive_use().
// (cpu::Transformer::forward holds exclusive_use for the whole call, so two
// overlapping forward calls on one cache are rejected the same way.)
TEST_CASE("forward on a cache another thread is using is rejected", "[concurrency][misuse]") {
  const auto model = cpu::Transformer::load(kData / "models" / "llama-draft");
  auto cache = model.make_cache(16);
  auto hold = cache.kv().exclusive_use("thread A");  // as if a forward call were running
  const std::vector<Token> toks{1, 2, 3};
  std::string message;
  std::jthread b([&] {
    try {
      model.forward(toks, cache);
    } catch (const InvalidArgument& e) {
      message = e.what();
    }
  });
  b.join();
  CHECK_THAT(message, Catch::Contains("another thread"));
  CHECK(cache.size() == 0);
  // The holding thread itself may run forward (a decoder holding the flag).
  CHECK(model.forward(toks, cache).rows() == 3);
  CHECK(cache.size() == 3);
}
