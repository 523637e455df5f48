// hpu::Transformer on the CPU reference device against cpu::Transformer and
// the golden logits, the cache invariants, assisted greedy == plain greedy,
// and the static-shape promise: after warm-up, a whole assisted generation
// with varying acceptance compiles nothing.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/hpu/transformer.hpp"
#include "assistgen/io/safetensors.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "golden_models.hpp"

using namespace assistgen;
using hpu_test::kModels;
using hpu_test::kPrompt;
using hpu_test::kTokens;
using hpu_test::models;
namespace fs = std::filesystem;

namespace {

// Both backends compute in f32 with the same math in a different order (the
// HPU graph pads, scales q before RoPE and sums attention over padded
// buckets), so they agree to a few ulps of the logits' scale: bound by
// 1e-4 * max |logit| and require the same argmax in every row.
void check_close(const Logits& a, const Logits& b, const std::string& what) {
  INFO(what);
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  float scale = 0, diff = 0;
  for (std::size_t i = 0; i < a.rows() * a.cols(); ++i) {
    scale = std::max(scale, std::abs(b.data()[i]));
    diff = std::max(diff, std::abs(a.data()[i] - b.data()[i]));
  }
  CHECK(diff <= 1e-4f * scale);
  for (std::size_t r = 0; r < a.rows(); ++r)
    CHECK(std::max_element(a.row(r).begin(), a.row(r).end()) - a.row(r).begin() ==
          std::max_element(b.row(r).begin(), b.row(r).end()) - b.row(r).begin());
}

hpu::LoadOptions small_buckets() {
  hpu::LoadOptions o;
  o.buckets.tokens = {1, 4, 16};  // 1, 2, 4, 8, 12, 16
  o.buckets.kv_len = {16, 16, 64};
  return o;
}

}  // namespace

TEST_CASE(
    "logits match cpu::Transformer and the golden reference on every test checkpoint (GPT-2 too)",
    "[hpu]") {
  const auto dirs = models();
  REQUIRE(dirs.size() >= 6);
  for (const auto& dir : dirs) {
    SECTION(dir.filename().string()) {
      const auto ref = cpu::Transformer::load(dir, {.dtype = DType::f32});
      const auto hpu = hpu::Transformer::load(dir, small_buckets());
      REQUIRE(hpu.device().name() == "cpu-reference");
      auto rc = ref.make_cache(64);
      auto hc = hpu.make_cache(64);
      const Logits want = ref.forward(kTokens, rc);
      const Logits got = hpu.forward(kTokens, hc);
      check_close(got, want, dir.string() + " prefill");

      // Against the float64 HF reference too.
      io::SafetensorsFile golden(dir / "golden.safetensors");
      const auto g = golden.tensor("logits").to_float();
      float scale = 0, diff = 0;
      for (std::size_t i = 0; i < g.size(); ++i) {
        scale = std::max(scale, std::abs(g[i]));
        diff = std::max(diff, std::abs(got.data()[i] - g[i]));
      }
      CHECK(diff <= 1e-3f * scale);

      // Token by token (buckets t1 over growing kv) gives the same rows.
      auto hs = hpu.make_cache(64);
      Logits step(kTokens.size(), hpu.vocab_size());
      for (std::size_t i = 0; i < kTokens.size(); ++i) {
        const Logits row = hpu.forward(std::span(kTokens).subspan(i, 1), hs);
        std::copy_n(row.data(), hpu.vocab_size(), step.row(i).data());
      }
      check_close(step, want, dir.string() + " stepwise");
      CHECK(hs.size() == kTokens.size());
    }
  }
}

TEST_CASE("a request longer than the largest token bucket runs in chunks of it", "[hpu]") {
  const auto dir = kModels / "llama-gqa";
  hpu::LoadOptions o;
  o.buckets.tokens = {1, 4, 4};  // 1, 2, 4
  o.buckets.kv_len = {16, 16, 32};
  const auto hpu = hpu::Transformer::load(dir, o);
  const auto ref = cpu::Transformer::load(dir, {.dtype = DType::f32});
  auto hc = hpu.make_cache(32);
  auto rc = ref.make_cache(32);
  check_close(hpu.forward(kTokens, hc), ref.forward(kTokens, rc), "12 tokens in chunks of 4");
  CHECK(hc.stats().launches == 3);
  CHECK(hc.stats().padded_tokens == 0);
  // Only buckets of the warm-up set were compiled.
  const auto all = hpu.warmup_buckets();
  for (const auto& k : hpu.graph_cache().keys())
    CHECK(std::find(all.begin(), all.end(), hpu::Bucket{k.batch, k.tokens, k.kv_len}) != all.end());
}

TEST_CASE("padded token slots are masked and never touch cached rows", "[hpu]") {
  const auto dir = kModels / "llama-gqa";
  hpu::LoadOptions o;
  o.buckets.tokens = {4, 4, 8};  // 4, 8: three tokens pad to four
  o.buckets.kv_len = {16, 16, 32};
  const auto hpu = hpu::Transformer::load(dir, o);
  const auto ref = cpu::Transformer::load(dir, {.dtype = DType::f32});
  auto hc = hpu.make_cache(32);
  auto rc = ref.make_cache(32);
  const std::vector<Token> three(kTokens.begin(), kTokens.begin() + 3);
  check_close(hpu.forward(three, hc), ref.forward(three, rc), "3 tokens in a bucket of 4");
  CHECK(hc.stats().padded_tokens == 1);

  // Layer 0 keys: rows 0..2 written, 3..31 untouched (zero), the padding
  // slot (row 32) took the padded token.
  const auto& L = hc.kv().layout();
  REQUIRE(L.max_len == 32);
  const auto keys = hc.kv().download(0, false);
  auto row_norm = [&](std::size_t head, std::size_t pos) {
    float s = 0;
    for (std::size_t d = 0; d < L.head_dim; ++d)
      s += std::abs(keys[(head * L.slots() + pos) * L.head_dim + d]);
    return s;
  };
  for (std::size_t h = 0; h < L.kv_heads; ++h) {
    for (std::size_t p = 0; p < 3; ++p) CHECK(row_norm(h, p) > 0);
    for (std::size_t p = 3; p < 32; ++p) CHECK(row_norm(h, p) == 0);
    CHECK(row_norm(h, 32) > 0);
  }
  // Continuing after padding gives the reference's next rows.
  const std::vector<Token> rest(kTokens.begin() + 3, kTokens.end());
  check_close(hpu.forward(rest, hc), ref.forward(rest, rc), "9 more tokens");
}

TEST_CASE("truncate is a rollback: the next forward equals a fresh cache fed the same tokens",
          "[hpu]") {
  const auto hpu = hpu::Transformer::load(kModels / "qwen2-bias", small_buckets());
  auto a = hpu.make_cache(40);
  hpu.forward(kTokens, a);
  a.truncate(5);
  CHECK(a.size() == 5);
  const std::vector<Token> next = {9, 8, 7};
  const Logits after = hpu.forward(next, a);
  auto b = hpu.make_cache(40);
  hpu.forward(std::span(kTokens).first(5), b);
  check_close(after, hpu.forward(next, b), "after truncate(5)");
  CHECK_THROWS_AS(a.truncate(9), InvalidArgument);
  CHECK(a.size() == 8);
}

TEST_CASE("bad input throws and leaves the cache unchanged", "[hpu]") {
  const auto hpu = hpu::Transformer::load(kModels / "llama-draft", small_buckets());
  auto c = hpu.make_cache(8);
  hpu.forward(std::span(kTokens).first(2), c);
  CHECK_THROWS_AS(hpu.forward(std::vector<Token>{256}, c), InvalidArgument);
  CHECK_THROWS_AS(hpu.forward(std::vector<Token>{}, c), InvalidArgument);
  CHECK_THROWS_AS(hpu.forward(kTokens, c), CapacityError);
  CHECK(c.size() == 2);
  CHECK_THROWS_AS(hpu.make_cache(65), CapacityError);  // beyond the largest kv_len bucket
  hpu::Transformer::Cache empty;
  CHECK_THROWS_AS(hpu.forward(std::vector<Token>{1}, empty), InvalidArgument);
  hpu::LoadOptions i8 = small_buckets();
  i8.dtype = DType::i8;
  CHECK_THROWS_WITH(hpu::Transformer::load(kModels / "llama-draft", i8),
                    Catch::Contains("LoadOptions::dtype 'i8'"));
}

TEST_CASE("assisted greedy on hpu::Transformer equals plain greedy", "[hpu]") {
  const auto target = hpu::Transformer::load(kModels / "llama-gqa", small_buckets());
  const auto draft = hpu::Transformer::load(kModels / "llama-gqa-noisy", small_buckets());
  const GenerationConfig cfg{.max_new_tokens = 16, .num_assistant_tokens = 3};
  const auto plain = generate_autoregressive(target, kPrompt, cfg);
  const std::vector<Token> golden = {146, 83,  147, 155, 243, 73, 51, 197,
                                     223, 148, 79,  70,  197, 61, 42, 137};
  CHECK(plain.tokens == golden);
  SpeculativeDecoder<hpu::Transformer, hpu::Transformer> dec(draft, target, cfg);
  const auto assisted = dec.generate(kPrompt);
  CHECK(assisted.tokens == plain.tokens);
  CHECK(assisted.stats.accepted > 0);
}

TEST_CASE("options_for and AnyModel: the path the CLI's hpu-ref backend takes", "[hpu]") {
  const auto o = hpu::options_for(300);
  CHECK(o.buckets.kv_len.max == 384);
  CHECK(o.warmup);
  CHECK(hpu::options_for(5).buckets.kv_len.max == 128);
  AnyModel target(hpu::Transformer::load(kModels / "llama-gqa", o));
  AnyModel draft(hpu::Transformer::load(kModels / "llama-draft", o));
  const GenerationConfig cfg{.max_new_tokens = 16, .num_assistant_tokens = 4};
  SpeculativeDecoder<AnyModel, AnyModel> dec(draft, target, cfg);
  const std::vector<Token> golden = {146, 83,  147, 155, 243, 73, 51, 197,
                                     223, 148, 79,  70,  197, 61, 42, 137};
  CHECK(dec.generate(kPrompt).tokens == golden);
}

TEST_CASE("a 200-token assisted generation compiles nothing beyond the warm-up buckets", "[hpu]") {
  // Counts every compilation through the injected compile function.
  std::size_t compiled = 0;
  std::set<std::string> kinds;
  auto dev = hpu::make_cpu_reference_device();
  hpu::LoadOptions o;
  o.device = dev;
  o.buckets.tokens = {1, 8, 16};     // 1, 2, 4, 8, 16
  o.buckets.kv_len = {32, 32, 256};  // 32, 64, ..., 256
  o.compile = [&](const hpu::Graph& g) {
    ++compiled;
    kinds.insert(g.kind());
    return dev->compile(g);
  };
  o.warmup = true;
  const auto target = hpu::Transformer::load(kModels / "llama-gqa", o);
  const std::size_t per_model = target.warmup_buckets().size();
  CHECK(per_model == 5 * 8);
  CHECK(compiled == per_model);
  const auto draft_a = hpu::Transformer::load(kModels / "llama-draft", o);
  const auto draft_b = hpu::Transformer::load(kModels / "llama-gqa-noisy", o);
  CHECK(compiled == 3 * per_model);
  CHECK(kinds.size() == 2);  // llama-gqa-noisy has llama-gqa's architecture
  const std::size_t after_warmup = compiled;

  // max_position_embeddings is 128, but RoPE runs past it (as in HF and
  // cpu::Transformer); the cache is sized by the kv_len buckets.
  const GenerationConfig cfg{
      .max_new_tokens = 210, .num_assistant_tokens = 4, .schedule = DraftLengthSchedule::heuristic};
  const auto plain =
      generate_autoregressive(cpu::Transformer::load(kModels / "llama-gqa"), kPrompt, cfg);
  REQUIRE(plain.tokens.size() == 210);
  for (const auto* draft : {&draft_a, &draft_b}) {
    SpeculativeDecoder<hpu::Transformer, hpu::Transformer> dec(*draft, target, cfg);
    std::set<std::size_t> accepted_counts;
    dec.set_round_observer([&](const auto& r) { accepted_counts.insert(r.accepted); });
    const auto out = dec.generate(kPrompt);
    CHECK(out.tokens == plain.tokens);
    CHECK(out.stats.new_tokens >= 200);
    CHECK(accepted_counts.size() >= 2);  // acceptance varies from round to round
    CHECK(out.stats.accepted < out.stats.drafted);
  }
  CHECK(compiled == after_warmup);
  CHECK(target.graph_cache().stats().misses == per_model);
  CHECK(target.graph_cache().stats().evictions == 0);
  CHECK(target.graph_cache().stats().hits > 0);
  CHECK(target.warmup() == 0);  // everything is still cached
}

TEST_CASE("forward into a kept Logits gives the same logits and reuses its buffer", "[hpu]") {
  const auto hpu = hpu::Transformer::load(kModels / "llama-gqa", small_buckets());
  auto a = hpu.make_cache(64);
  auto b = hpu.make_cache(64);
  const Logits want = hpu.forward(std::span(kTokens).first(6), a);
  Logits out;
  hpu.forward(std::span(kTokens).first(6), b, out);
  REQUIRE(out.rows() == 6);
  REQUIRE(std::memcmp(out.data(), want.data(), want.rows() * want.cols() * sizeof(float)) == 0);
  // A decode loop: one row per step into the same Logits, whose buffer
  // (large enough after the prefill) is never reallocated.
  const float* buffer = out.data();
  for (std::size_t i = 6; i < kTokens.size(); ++i) {
    const Logits row = hpu.forward(std::span(kTokens).subspan(i, 1), a);
    hpu.forward(std::span(kTokens).subspan(i, 1), b, out);
    REQUIRE(out.rows() == 1);
    REQUIRE(out.data() == buffer);
    REQUIRE(std::memcmp(out.data(), row.data(), row.cols() * sizeof(float)) == 0);
  }
  REQUIRE(b.size() == kTokens.size());
  // Errors leave the cache and the shared length wording as before.
  const Token bad[] = {static_cast<Token>(hpu.vocab_size())};
  REQUIRE_THROWS_WITH(
      hpu.forward(bad, b, out),
      Catch::Contains("token id " + std::to_string(hpu.vocab_size()) + " at position 0") &&
          Catch::Contains("out of range for vocabulary size"));
  REQUIRE_THROWS_WITH(b.truncate(100),
                      Catch::Contains("hpu KV cache: truncate(100) beyond size 12"));
  REQUIRE(b.size() == kTokens.size());
}

TEST_CASE("the deprecated hpu::Options name is hpu::LoadOptions", "[hpu]") {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  STATIC_REQUIRE(std::is_same_v<hpu::Options, hpu::LoadOptions>);
#pragma GCC diagnostic pop
}

TEST_CASE("hpu and cpu word a bad token id alike; the cache keeps its wording", "[hpu]") {
  const auto dir = kModels / "llama-draft";
  const auto hpu = hpu::Transformer::load(dir, small_buckets());
  const auto cpu = cpu::Transformer::load(dir);
  REQUIRE(hpu.vocab_size() == cpu.vocab_size());
  auto hc = hpu.make_cache(8);
  auto cc = cpu.make_cache(8);
  const std::string vocab = std::to_string(hpu.vocab_size());
  const std::vector<std::vector<Token>> bad = {{1, static_cast<Token>(hpu.vocab_size())}, {-3}};
  const std::vector<std::string> want = {
      "token id " + vocab + " at position 1 is out of range for vocabulary size " + vocab,
      "token id -3 at position 0 is out of range for vocabulary size " + vocab};
  for (std::size_t i = 0; i < bad.size(); ++i) {
    std::string from_hpu, from_cpu;
    try {
      (void)hpu.forward(bad[i], hc);
    } catch (const InvalidArgument& e) {
      from_hpu = e.what();
    }
    try {
      (void)cpu.forward(bad[i], cc);
    } catch (const InvalidArgument& e) {
      from_cpu = e.what();
    }
    CHECK(from_hpu == want[i]);
    CHECK(from_cpu == want[i]);
  }
  CHECK(hc.size() == 0);
  hpu.forward(std::span(kTokens).first(6), hc);
  REQUIRE_THROWS_WITH(hpu.forward(std::span(kTokens).first(3), hc),
                      "hpu KV cache full: appending 3 positions to 6 exceeds capacity 8");
  REQUIRE_THROWS_WITH(hc.truncate(7), "hpu KV cache: truncate(7) beyond size 6");
  CHECK(hc.size() == 6);
}
