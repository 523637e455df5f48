// The prompt prefill on oneDNN (LoadOptions::onednn_prefill_rows,
// src/cpu/prefill_onednn.hpp): its matmuls against our kernels and a double
// reference, which calls take it (the threshold, the option, the environment
// variable, PrefillPath), and, for every model of tests/data/models with bf16
// and int8 weights, greedy output with it on equal in plain, assisted (draft
// model and prompt lookup) and batched generation, run after run.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../../src/cpu/kernels.hpp"
#include "../../src/cpu/prefill_onednn.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/candidates/prompt_lookup.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/speculative_decoder.hpp"

using namespace assistgen;
using cpu::Transformer;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(ASSISTGEN_TEST_DATA_DIR) / "models";

std::vector<float> normal(std::size_t n, std::uint32_t seed, float sd) {
  std::mt19937 eng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& e : v) e = d(eng);
  return v;
}

// A prompt of `n` tokens with a repeated phrase (prompt lookup finds it).
std::vector<Token> prompt_of(std::size_t n, std::size_t vocab) {
  std::vector<Token> p;
  for (std::size_t i = 0; p.size() < n; ++i)
    p.push_back(static_cast<Token>((i % 11) * 37 % vocab + 3));
  return p;
}

// Sets an environment variable for a scope.
struct EnvVar {
  EnvVar(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~EnvVar() { ::unsetenv(name_); }
  const char* name_;
};

// Runs `tokens` as one prefill call (no logits) and says whether oneDNN ran.
bool prefill_used_onednn(const Transformer& m, std::size_t n, std::size_t outputs = 0) {
  auto cache = m.make_cache(n + 1);
  const std::vector<Token> tokens = prompt_of(n, m.vocab_size());
  const ForwardRequest request{tokens, {}, outputs};
  Transformer::Cache* const caches[1] = {&cache};
  Logits out;
  const std::size_t before = cpu::detail::onednn_calls();
  m.forward({&request, 1}, caches, out);
  REQUIRE(cache.size() == n);
  REQUIRE(out.rows() == std::min(outputs, n));
  return cpu::detail::onednn_calls() > before;
}

}  // namespace

TEST_CASE(
    "oneDNN prefill matmul: int8 bit-identical to the kernels, bf16 within the f32 bound of a "
    "double reference") {
  using namespace cpu::detail;
  // n not a multiple of 32 and k not of the AMX k tile: the padded units.
  const std::size_t n = 70, k = 100;
  const std::vector<float> w = normal(n * k, 1, 0.05f), b = normal(n, 2, 0.1f);
  for (const WeightType type : {WeightType::bf16, WeightType::i8}) {
    const PackedLinear p = pack_linear(type, w.data(), n, k, b.data());
    REQUIRE(onednn_handles(p));
    for (const std::size_t m : {1, 5, 33, 70}) {
      INFO("type " << (type == WeightType::bf16 ? "bf16" : "int8") << " m " << m);
      const std::vector<float> x = normal(m * k, 3 + static_cast<std::uint32_t>(m), 1.0f);
      std::vector<float> ours(m * n), theirs(m * n);
      std::vector<std::uint8_t> q;
      std::vector<float> qs;
      LinearScratch s{q, qs};
      linear(p, x.data(), m, ours.data(), s, 1);
      const std::size_t calls = onednn_calls();
      onednn_linear(p, x.data(), m, theirs.data(), s, 2);
      CHECK(onednn_calls() == calls + 1);
      if (type == WeightType::i8) {  // the exact int32 dot and the same epilogue
        for (std::size_t i = 0; i < m * n; ++i)
          REQUIRE(std::bit_cast<std::uint32_t>(theirs[i]) == std::bit_cast<std::uint32_t>(ours[i]));
        continue;
      }
      // bf16: the same bf16 inputs (activations rounded per row as linear()
      // does), summed in f32 in oneDNN's order: within k ulps of the sum of
      // |products| of the exact (double) result.
      std::vector<std::uint16_t> xr(p.k_pad);
      for (std::size_t r = 0; r < m; ++r) {
        bf16_row(x.data() + r * k, k, p.k_pad, xr.data());
        for (std::size_t j = 0; j < n; ++j) {
          double exact = b[j], mag = std::abs(b[j]);
          for (std::size_t kk = 0; kk < k; ++kk) {
            const double xv = std::bit_cast<float>(static_cast<std::uint32_t>(xr[kk]) << 16);
            const double pr = xv * packed_weight(p, j, kk);
            exact += pr;
            mag += std::abs(pr);
          }
          const double bound = static_cast<double>(k + 1) * std::ldexp(mag, -24);
          REQUIRE(std::abs(theirs[r * n + j] - exact) <= bound);
          REQUIRE(std::abs(ours[r * n + j] - exact) <= bound);
        }
      }
    }
  }
  // f32, bf16_f32 and grouped weights have no oneDNN path.
  CHECK_FALSE(onednn_handles(pack_linear(WeightType::f32, w.data(), n, k, nullptr)));
  CHECK_FALSE(onednn_handles(pack_linear(WeightType::bf16_f32, w.data(), n, k, nullptr)));
}

TEST_CASE("oneDNN prefill: only prefill calls of at least the threshold take it") {
  const fs::path dir = kModels / "llama-gqa";
  const Transformer m = Transformer::load(dir, {.dtype = DType::bf16, .onednn_prefill_rows = 8});
  CHECK_FALSE(prefill_used_onednn(m, 7));
  CHECK(prefill_used_onednn(m, 8));
  CHECK(prefill_used_onednn(m, 20));
  CHECK_FALSE(prefill_used_onednn(m, 20, 1));  // a call that yields logits keeps the kernels
  {
    // Two requests (a batch): never, whatever their lengths.
    auto c1 = m.make_cache(16), c2 = m.make_cache(16);
    const std::vector<Token> t = prompt_of(10, m.vocab_size());
    const ForwardRequest requests[2] = {{t, {}, 0}, {t, {}, 0}};
    Transformer::Cache* const caches[2] = {&c1, &c2};
    Logits out;
    const std::size_t before = cpu::detail::onednn_calls();
    m.forward(requests, caches, out);
    CHECK(cpu::detail::onednn_calls() == before);
  }
  // PrefillPath overrides the threshold for every model of the process.
  cpu::set_prefill_path(cpu::PrefillPath::kernels);
  CHECK_FALSE(prefill_used_onednn(m, 20));
  cpu::set_prefill_path(cpu::PrefillPath::onednn);
  CHECK(prefill_used_onednn(m, 2));
  CHECK_FALSE(prefill_used_onednn(m, 2, 1));
  cpu::set_prefill_path(cpu::PrefillPath::automatic);
  CHECK(cpu::prefill_path() == cpu::PrefillPath::automatic);

  // Off by the option; f32 weights never.
  CHECK_FALSE(prefill_used_onednn(
      Transformer::load(dir, {.dtype = DType::bf16, .onednn_prefill_rows = 0}), 20));
  CHECK_FALSE(prefill_used_onednn(
      Transformer::load(dir, {.dtype = DType::f32, .onednn_prefill_rows = 1}), 20));
  CHECK(prefill_used_onednn(Transformer::load(dir, {.dtype = DType::i8, .onednn_prefill_rows = 1}),
                            20));

  // The environment variable, when the option is unset.
  {
    EnvVar env("ASSISTGEN_ONEDNN_PREFILL", "off");
    CHECK_FALSE(prefill_used_onednn(Transformer::load(dir, {.dtype = DType::bf16}), 20));
    CHECK(prefill_used_onednn(
        Transformer::load(dir, {.dtype = DType::bf16, .onednn_prefill_rows = 4}), 20));
  }
  {
    EnvVar env("ASSISTGEN_ONEDNN_PREFILL", "12");
    const Transformer e = Transformer::load(dir, {.dtype = DType::bf16});
    CHECK_FALSE(prefill_used_onednn(e, 11));
    CHECK(prefill_used_onednn(e, 12));
  }
  for (const char* bad : {"many", "-3", "12x"}) {
    EnvVar env("ASSISTGEN_ONEDNN_PREFILL", bad);
    CHECK_THROWS_WITH(Transformer::load(dir, {.dtype = DType::bf16}),
                      Catch::Contains("ASSISTGEN_ONEDNN_PREFILL='" + std::string(bad) + "'"));
    CHECK_THROWS_AS(Transformer::load(dir, {.dtype = DType::bf16}), InvalidArgument);
  }
}

TEST_CASE(
    "oneDNN prefill: greedy plain == assisted == batched for every model, bf16 and int8, run after "
    "run") {
  for (const auto& entry : fs::directory_iterator(kModels)) {
    if (!fs::exists(entry.path() / "config.json")) continue;
    for (const DType dtype : {DType::bf16, DType::i8}) {
      const std::string what =
          entry.path().filename().string() + " " + std::string(dtype_name(dtype));
      INFO(what);
      const Transformer on =
          Transformer::load(entry.path(), {.dtype = dtype, .onednn_prefill_rows = 1});
      const Transformer off =
          Transformer::load(entry.path(), {.dtype = dtype, .onednn_prefill_rows = 0});
      const std::size_t hard = on.position_limits().hard, limit = hard ? hard : 1024;
      const std::size_t P = std::min<std::size_t>(40, limit / 2),
                        N = std::min<std::size_t>(24, limit - P);
      const std::vector<Token> prompt = prompt_of(P, on.vocab_size());
      const GenerationConfig cfg{.max_new_tokens = N, .num_assistant_tokens = 4};

      const std::size_t before = cpu::detail::onednn_calls();
      const GenerationResult plain = generate_autoregressive(on, prompt, cfg);
      REQUIRE(cpu::detail::onednn_calls() > before);  // the prompt went through oneDNN
      REQUIRE(plain.tokens.size() == N);
      CHECK(generate_autoregressive(on, prompt, cfg).tokens == plain.tokens);  // run after run

      SpeculativeDecoder with_draft(off, on, cfg);
      CHECK(with_draft.generate(prompt).tokens == plain.tokens);
      CHECK(with_draft.generate(prompt).tokens == plain.tokens);

      GenerationConfig lookup = cfg;
      lookup.prompt_lookup_num_tokens = 3;
      BatchEngine<Transformer, PromptLookupCandidates> engine(on, {.max_batch = 3});
      std::map<BatchEngine<Transformer, PromptLookupCandidates>::SequenceId, std::size_t> ids;
      const std::vector<Token> other = prompt_of(P / 2 + 3, on.vocab_size());
      ids[engine.submit(prompt, lookup, PromptLookupCandidates(lookup))] = 0;
      ids[engine.submit(other, lookup, PromptLookupCandidates(lookup))] = 1;
      ids[engine.submit(prompt, lookup, PromptLookupCandidates(lookup))] = 2;
      std::map<std::size_t, std::vector<Token>> got;
      while (engine.step())
        for (auto& f : engine.take_finished()) got[ids.at(f.id)] = f.result.tokens;
      for (auto& f : engine.take_finished()) got[ids.at(f.id)] = f.result.tokens;
      CHECK(got[0] == plain.tokens);
      CHECK(got[2] == plain.tokens);
      CHECK(got[1] == generate_autoregressive(on, other, cfg).tokens);

      // int8: the oneDNN prefill gives the kernels' bits, so also equal with it off.
      if (dtype == DType::i8)
        CHECK(generate_autoregressive(off, prompt, cfg).tokens == plain.tokens);
    }
  }
}
