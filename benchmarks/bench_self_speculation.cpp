// Self-speculation on the demo target (models/kjv-target, 6 layers):
// greedy decoding of 128 tokens alone (E = 0) and with the target's first E
// layers as the draft, verification reusing the draft's rows (mode 0) or
// recomputing every layer (mode 1). Counters: tokens/s, acceptance rate,
// tokens per target call; the speedup is the tokens/s ratio to E = 0 of the
// same run (docs/performance.md). Threads: ASSISTGEN_BENCH_THREADS (default 2).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "assistgen/autoregressive.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/self_speculative_decoder.hpp"

using namespace assistgen;

namespace {

const std::string kDir = std::string(ASSISTGEN_MODELS_DIR) + "/kjv-target";

int threads() {
  const char* t = std::getenv("ASSISTGEN_BENCH_THREADS");
  return t ? std::atoi(t) : 2;
}

const cpu::Transformer& target() {
  static const cpu::Transformer m = cpu::Transformer::load(kDir, {.threads = threads()});
  return m;
}

const std::vector<Token>& prompt() {
  static const std::vector<Token> p = Tokenizer::load(kDir).encode(
      "In the beginning God created the heaven and the earth. And the earth was");
  return p;
}

std::size_t k_from_env() {
  const char* k = std::getenv("ASSISTGEN_BENCH_K");
  return k ? static_cast<std::size_t>(std::atoi(k)) : 3;
}

void BM_SelfSpeculation(benchmark::State& state) {
  const auto e = static_cast<std::size_t>(state.range(0));
  const auto mode = state.range(1) == 0 ? EarlyExitVerify::reuse : EarlyExitVerify::recompute;
  GenerationConfig cfg{.max_new_tokens = 128, .num_assistant_tokens = k_from_env()};
  // No EOS ids and no special tokens given: every run decodes 128 tokens.
  GenerationStats last;
  std::size_t tokens = 0;
  if (e == 0) {
    AutoregressiveDecoder<cpu::Transformer> dec(target(), cfg);
    dec.generate(prompt());  // warm-up
    for (auto _ : state) {
      const auto r = dec.generate(prompt());
      tokens += r.tokens.size();
      last = r.stats;
    }
  } else {
    SelfSpeculativeDecoder dec(target(), e, cfg, mode);
    dec.generate(prompt());
    for (auto _ : state) {
      const auto r = dec.generate(prompt());
      tokens += r.tokens.size();
      last = r.stats;
    }
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["acceptance"] = last.acceptance_rate();
  state.counters["tok/call"] = last.tokens_per_target_call();
}

}  // namespace

BENCHMARK(BM_SelfSpeculation)
    ->Args({0, 0})
    ->ArgsProduct({{1, 2, 3, 4, 5}, {0, 1}})
    ->ArgNames({"E", "recompute"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_MAIN();
