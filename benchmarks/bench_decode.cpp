// Decode, verification and prefill cost of cpu::Transformer on models with
// random weights made in memory (no files needed), and the machine's memory
// copy bandwidth, so results can be read against the roofline:
//   decode GB/s counter = weight bytes per token / time per token.
// Shapes: "tinyllama" (TinyLlama-1.1B: hidden 2048, 22 layers, 32 heads,
// 4 kv heads, ffn 5632, vocab 32000) and "small" (a ~25M-parameter model).
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "assistgen/cpu/transformer.hpp"

using namespace assistgen;

namespace {

ModelConfig shape(const std::string& name) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.max_position_embeddings = 2048;
  if (name == "tinyllama") {
    c.vocab_size = 32000;
    c.hidden_size = 2048;
    c.intermediate_size = 5632;
    c.num_hidden_layers = 22;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 4;
  } else {
    c.vocab_size = 4096;
    c.hidden_size = 512;
    c.intermediate_size = 1536;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

const cpu::Transformer& model(const std::string& name) {
  static std::map<std::string, std::unique_ptr<cpu::Transformer>> models;
  auto& m = models[name];
  if (!m) m = std::make_unique<cpu::Transformer>(cpu::Transformer::random(shape(name), 1));
  return *m;
}

constexpr std::size_t kContext = 64;

// One forward of `n` tokens after a kContext-token prefix.
void run_forward(benchmark::State& state, const std::string& name, std::size_t n) {
  const auto& m = model(name);
  auto cache = m.make_cache(kContext + n + 1);
  std::vector<Token> prefix(kContext, 1), block(n, 2);
  m.forward(prefix, cache);
  for (auto _ : state) {
    cache.truncate(kContext);
    benchmark::DoNotOptimize(m.forward(block, cache));
  }
  state.counters["weight_GB/s"] = benchmark::Counter(
      static_cast<double>(m.weight_bytes()) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(n) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Decode_Small(benchmark::State& s) { run_forward(s, "small", 1); }
void BM_Decode_TinyLlama(benchmark::State& s) { run_forward(s, "tinyllama", 1); }
// Verification of K drafted tokens: a forward of K + 1 tokens.
void BM_Verify_Small(benchmark::State& s) { run_forward(s, "small", static_cast<std::size_t>(s.range(0)) + 1); }
void BM_Verify_TinyLlama(benchmark::State& s) {
  run_forward(s, "tinyllama", static_cast<std::size_t>(s.range(0)) + 1);
}
void BM_Prefill_Small(benchmark::State& s) { run_forward(s, "small", static_cast<std::size_t>(s.range(0))); }

// Memory copy bandwidth over a buffer much larger than the caches.
void BM_CopyBandwidth(benchmark::State& state) {
  const std::size_t bytes = std::size_t{512} << 20;
  std::vector<char> a(bytes, 1), b(bytes, 0);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::ClobberMemory();
  }
  // Counted as bytes read, the quantity decoding is bound by.
  state.counters["read_GB/s"] = benchmark::Counter(
      static_cast<double>(bytes) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_CopyBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Decode_Small)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Verify_Small)->DenseRange(1, 8)->Arg(16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Prefill_Small)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Decode_TinyLlama)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Verify_TinyLlama)->Arg(4)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
