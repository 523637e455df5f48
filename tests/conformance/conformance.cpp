// Runs the backend conformance test on every backend the build has. Each
// check is reported as its own SECTION-free line in the failure message, so a
// failing run says which part of the contract broke.
#include <assistgen/any_model.hpp>
#include <assistgen/cpu/transformer.hpp>
#include <assistgen/testing/conformance.hpp>
#include <catch2/catch.hpp>
#include <string>

#ifdef ASSISTGEN_CONFORMANCE_HPU
#include <assistgen/hpu/transformer.hpp>
#endif

#include "ngram_model.hpp"

using assistgen::testing::check_backend;
using assistgen::testing::ConformanceOptions;
using assistgen::testing::ConformanceReport;

namespace {

const std::string kModels = std::string(ASSISTGEN_TEST_DATA_DIR) + "/models/";

void require_conformance(const ConformanceReport& report) {
  INFO(report.summary());
  CHECK(report.checks.size() >= 12);  // every check ran (none skipped by an early failure)
  REQUIRE(report.ok());
}

}  // namespace

// Every checkpoint of tests/data/models (test_transformer_golden.cpp pins the
// list), in the dtype each loads as by default, with two threads of the
// backend's worker pool. The backend promises the same bits however a token
// is batched, so the tolerances are zero.
TEST_CASE("cpu::Transformer conforms on every test checkpoint, bit for bit") {
  const auto name = GENERATE(as<std::string>{}, "gpt2-draft", "gpt2-target", "llama-draft", "llama-gqa",
                             "llama-gqa-noisy", "llama-tied-bf16", "mistral-f16", "mistral-window",
                             "qwen2-bias", "qwen2-real");
  INFO("model " << name);
  assistgen::cpu::LoadOptions load;
  load.threads = 2;
  const auto model = assistgen::cpu::Transformer::load(kModels + name, load);
  ConformanceOptions o;
  o.atol = 0.0f;
  o.rtol = 0.0f;
  require_conformance(check_backend(model, o));
}

TEST_CASE("cpu::Transformer conforms on a longer sequence with the golden tokens") {
  const auto model = assistgen::cpu::Transformer::load(kModels + "llama-gqa");
  ConformanceOptions o;
  o.tokens = {1, 17, 200, 45, 3, 99, 128, 7, 255, 64, 31, 180, 5, 6, 7, 8, 9, 10, 11, 12};
  require_conformance(check_backend(model, o));
}

#ifdef ASSISTGEN_CONFORMANCE_HPU
// hpu::Transformer on its CPU reference device, on every Llama-family test
// checkpoint (GPT-2 is not a graph it builds). Each forward pads to a bucket,
// so calls of different sizes sum over different padding: the default f32
// tolerances, not bits.
TEST_CASE("hpu::Transformer (CPU reference device) conforms on every Llama-family test checkpoint") {
  const auto name = GENERATE(as<std::string>{}, "llama-draft", "llama-gqa", "llama-gqa-noisy", "llama-tied-bf16",
                             "mistral-f16", "mistral-window", "qwen2-bias", "qwen2-real");
  INFO("model " << name);
  assistgen::hpu::LoadOptions options;
  options.buckets.tokens = {1, 4, 16};
  options.buckets.kv_len = {16, 16, 64};
  const auto model = assistgen::hpu::Transformer::load(kModels + name, options);
  REQUIRE(model.device().name() == "cpu-reference");
  require_conformance(check_backend(model));
}
#endif

TEST_CASE("AnyModel wrapping cpu::Transformer conforms") {
  assistgen::AnyModel model(assistgen::cpu::Transformer::load(kModels + "llama-gqa"));
  require_conformance(check_backend(model));
}

TEST_CASE("the example n-gram backend conforms") {
  std::vector<std::vector<assistgen::Token>> corpus = {{1, 5, 9, 5, 9, 5, 7, 3, 1, 5, 9}, {2, 2, 4, 6, 8, 4, 6}};
  const auto order = GENERATE(1, 2, 3);
  const auto model = ngram::NgramModel::train(16, static_cast<std::size_t>(order), corpus);
  ConformanceOptions o;
  o.tokens = {1, 5, 9, 5, 9, 5, 7, 3, 4, 6, 8, 15};
  require_conformance(check_backend(model, o));
}

// The conformance test must catch a broken backend, or passing it means
// nothing: a cache whose truncate forgets to roll back state that forward
// reads (here: a running sum of the history kept outside the length).
namespace {
struct LeakyCache {
  std::size_t size() const { return n; }
  std::size_t capacity() const { return cap; }
  void truncate(std::size_t m) {
    if (m > n) throw assistgen::InvalidArgument("truncate beyond size");
    n = m;  // bug: `sum` still includes the dropped tokens
  }
  std::size_t n = 0, cap = 0;
  long sum = 0;
};
struct LeakyModel {
  using Cache = LeakyCache;
  std::size_t vocab_size() const { return 8; }
  Cache make_cache(std::size_t c) const { return Cache{0, c, 0}; }
  assistgen::Logits forward(std::span<const assistgen::Token> tokens, Cache& c) const {
    if (tokens.empty()) throw assistgen::InvalidArgument("empty");
    for (auto t : tokens)
      if (t < 0 || t >= 8) throw assistgen::InvalidArgument("token out of range");
    if (tokens.size() > c.cap - c.n) throw assistgen::CapacityError("full");
    assistgen::Logits l(tokens.size(), 8);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      c.sum += tokens[i];
      ++c.n;
      for (std::size_t j = 0; j < 8; ++j) l.row(i)[j] = float((c.sum + long(j)) % 8);
    }
    return l;
  }
};
ASSISTGEN_ASSERT_CAUSAL_LM(LeakyModel);
}  // namespace

TEST_CASE("the conformance test catches a cache whose truncate does not roll back") {
  ConformanceOptions o;
  o.tokens = {1, 2, 3, 4, 5, 6, 7, 1, 2, 3};
  const auto report = check_backend(LeakyModel{}, o);
  INFO(report.summary());
  REQUIRE_FALSE(report.ok());
  bool truncate_failed = false;
  for (const auto& f : report.failures()) truncate_failed |= f.name == "truncate_then_forward";
  CHECK(truncate_failed);
}
