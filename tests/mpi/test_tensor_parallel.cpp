// The tensor-parallel target (docs/distributed.md) under mpirun: every rank
// runs this program; each test case loads the same model whole (one rank's
// reference, computed on every rank) and split across all ranks, and
// requires the same bits. Registered for 2 and 4 ranks and for each kernel
// path (ASSISTGEN_KERNELS: amx where the CPU has it, avx512, scalar), so the
// claim that a kernel's column does not depend on the other columns of the
// call is checked on every path. A failing REQUIRE on one rank would leave
// the others waiting in a collective: the main below aborts every rank then.
#define CATCH_CONFIG_RUNNER
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "assistgen/autoregressive.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/mpi/mpi.hpp"
#include "assistgen/speculative_decoder.hpp"

using namespace assistgen;
using cpu::Transformer;

namespace {

mpi::Environment* g_env = nullptr;
const std::filesystem::path kData = ASSISTGEN_TEST_DATA_DIR;

Transformer load(const std::filesystem::path& path, std::optional<DType> dtype, bool split) {
  cpu::LoadOptions o;
  o.dtype = dtype;
  o.threads = 1;
  if (split) o.tensor_parallel = g_env->world();
  return Transformer::load(path, o);
}

bool same_bits(const Logits& a, const Logits& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), a.rows() * a.cols() * sizeof(float)) == 0;
}

// Every rank's `v` equals rank 0's.
bool same_on_every_rank(const std::vector<Token>& v) {
  const std::size_t n = g_env->size();
  std::vector<std::size_t> counts(n, v.size() * sizeof(Token));
  std::vector<Token> all(n * v.size());
  g_env->world()->all_gather(v.data(), counts, all.data());
  for (std::size_t r = 1; r < n; ++r)
    if (!std::equal(v.begin(), v.end(), all.begin() + static_cast<std::ptrdiff_t>(r * v.size())))
      return false;
  return true;
}

// Prefill, one-token decode, a verification pass, a rollback and a batched
// tree call: the logits of the split model against the whole one.
void check_same_logits(const std::filesystem::path& path, std::optional<DType> dtype) {
  const Transformer whole = load(path, dtype, false);
  const Transformer split = load(path, dtype, true);
  REQUIRE(split.weight_bytes() < whole.weight_bytes());
  const std::vector<Token> prompt{1, 17, 200, 45, 3, 99, 7};
  auto cw = whole.make_cache(32), cs = split.make_cache(32);
  CHECK(cs.kv().kv_heads() <= cw.kv().kv_heads());
  REQUIRE(same_bits(whole.forward(prompt, cw), split.forward(prompt, cs)));
  const std::vector<Token> one{42}, verify{5, 250, 0, 128};
  REQUIRE(same_bits(whole.forward(one, cw), split.forward(one, cs)));
  REQUIRE(same_bits(whole.forward(verify, cw), split.forward(verify, cs)));
  cw.truncate(9);
  cs.truncate(9);
  REQUIRE(same_bits(whole.forward(verify, cw), split.forward(verify, cs)));
  // A batch of a chain and a tree over two caches.
  auto cw2 = whole.make_cache(16), cs2 = split.make_cache(16);
  const std::vector<Token> tree{3, 4, 5, 6};
  const std::vector<std::int32_t> parent{-1, 0, 0, 1};
  const ForwardRequest reqs[] = {{one}, {tree, parent}};
  Transformer::Cache* pw[] = {&cw, &cw2};
  Transformer::Cache* ps[] = {&cs, &cs2};
  Logits lw, ls;
  whole.forward(reqs, pw, lw);
  split.forward(reqs, ps, ls);
  REQUIRE(same_bits(lw, ls));
}

}  // namespace

TEST_CASE("split logits are the bits of one rank: every model, every dtype") {
  std::vector<std::filesystem::path> models;
  for (const auto& e : std::filesystem::directory_iterator(kData / "models"))
    models.push_back(e.path());
  std::sort(models.begin(), models.end());  // the same order on every rank
  REQUIRE(models.size() >= 10);
  for (const auto& m : models)
    for (const DType dt : {DType::f32, DType::bf16, DType::i8, DType::i4}) {
      INFO(m.filename().string() << " " << dtype_name(dt) << " on " << g_env->size()
                                 << " ranks, kernels " << cpu::kernel_isa());
      check_same_logits(m, dt);
    }
}

TEST_CASE("split logits are the bits of one rank: GGUF files with their stored codes") {
  for (const char* f : {"llama-256-q4_0.gguf", "llama-256-q4_k_m.gguf", "llama-draft-q8_0.gguf",
                        "llama-draft-q5_0.gguf",
                        "llama-draft-bf16.gguf", "gpt2-target-f32.gguf", "qwen2-real-bf16.gguf",
                        "mistral-f16-f16.gguf"}) {
    INFO(f << " on " << g_env->size() << " ranks, kernels " << cpu::kernel_isa());
    check_same_logits(kData / "gguf" / f, std::nullopt);
  }
}

TEST_CASE("split target: greedy assisted output is one rank's greedy output") {
  const Transformer whole = load(kData / "models" / "llama-gqa", std::nullopt, false);
  const Transformer split = load(kData / "models" / "llama-gqa", std::nullopt, true);
  // Drafts run whole on every rank.
  const Transformer unrelated = load(kData / "models" / "llama-draft", std::nullopt, false);
  const Transformer noisy = load(kData / "models" / "llama-gqa-noisy", std::nullopt, false);
  const std::vector<Token> prompt{1, 17, 200, 45, 3, 99};
  const GenerationConfig base{.max_new_tokens = 40};
  const auto plain = generate_autoregressive(whole, prompt, base).tokens;
  REQUIRE(generate_autoregressive(split, prompt, base).tokens == plain);
  for (const Transformer* d : {&unrelated, &noisy})
    for (std::size_t k : {1, 3, 6}) {
      GenerationConfig cfg = base;
      cfg.num_assistant_tokens = k;
      SpeculativeDecoder dec(*d, split, cfg);
      const auto out = dec.generate(prompt).tokens;
      REQUIRE(out == plain);
      REQUIRE(same_on_every_rank(out));
    }
}

TEST_CASE("split target: seeded sampling gives one rank's tokens on every rank") {
  const Transformer whole = load(kData / "models" / "llama-gqa", std::nullopt, false);
  const Transformer split = load(kData / "models" / "llama-gqa", std::nullopt, true);
  const Transformer draft = load(kData / "models" / "llama-gqa-noisy", std::nullopt, false);
  const std::vector<Token> prompt{1, 17, 200, 45, 3, 99};
  for (std::uint64_t seed : {1u, 7u, 12345u}) {
    const GenerationConfig cfg{.max_new_tokens = 30,
                               .num_assistant_tokens = 4,
                               .do_sample = true,
                               .temperature = 0.8f,
                               .top_k = 50,
                               .seed = seed};
    const auto plain = generate_autoregressive(whole, prompt, cfg).tokens;
    const auto plain_split = generate_autoregressive(split, prompt, cfg).tokens;
    SpeculativeDecoder w(draft, whole, cfg), s(draft, split, cfg);
    const auto assisted = w.generate(prompt).tokens, assisted_split = s.generate(prompt).tokens;
    REQUIRE(plain_split == plain);
    REQUIRE(assisted_split == assisted);
    REQUIRE(same_on_every_rank(assisted_split));
  }
}

TEST_CASE("a bad input is the same error on every rank, and the ranks stay in step") {
  const Transformer split = load(kData / "models" / "llama-gqa", std::nullopt, true);
  auto cache = split.make_cache(8);
  const std::vector<Token> bad{1, 256};
  REQUIRE_THROWS_AS(split.forward(bad, cache), InvalidArgument);
  REQUIRE(cache.size() == 0);
  // The next call still pairs every rank's collectives.
  const std::vector<Token> good{1, 2};
  const Transformer whole = load(kData / "models" / "llama-gqa", std::nullopt, false);
  auto cw = whole.make_cache(8);
  REQUIRE(same_bits(whole.forward(good, cw), split.forward(good, cache)));
}

int main(int argc, char** argv) {
  mpi::Environment env(argc, argv);
  g_env = &env;
  if (env.size() < 2) {
    std::fprintf(stderr, "run me under mpirun with at least 2 ranks\n");
    return 2;
  }
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  int failed = 0;
  try {
    failed = session.run();
  } catch (const std::exception& e) {
    env.abort(std::string("uncaught: ") + e.what());
  }
  // A rank that failed may have left the others in a collective: end them all.
  if (failed != 0) env.abort(std::to_string(failed) + " test case(s) failed on this rank");
  env.world()->barrier();
  return 0;
}
