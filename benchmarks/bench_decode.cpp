// Decode, verification and prefill cost of cpu::Transformer on models with
// random weights made in memory (no files needed), and the machine's memory
// copy bandwidth, so results can be read against the roofline:
//   decode GB/s counter = weight bytes per token / time per token.
// Shapes: "tinyllama" (TinyLlama-1.1B: hidden 2048, 22 layers, 32 heads,
// 4 kv heads, ffn 5632, vocab 32000) and "small" (a ~25M-parameter model),
// each with f32, bf16 and int8 weights. Kernel benchmarks run the private
// batch-invariant kernels (src/cpu/kernels.hpp) on one TinyLlama MLP-in layer
// ([11264, 2048]) for M = 1..16 rows (dtype 0 f32, 1 bf16, 2 int8, 3 bf16
// weights with f32 activations), and oneDNN's f32 matmul on the same
// layer for comparison (and its bf16 matmul, AMX where the CPU has it, from
// one row to prefill-sized M; BM_OneDnnPrefill: the backend's oneDNN prefill
// path, bf16 and int8 on the packed weights); the kernels run on the active Isa (ASSISTGEN_KERNELS=avx512
// forces AVX-512 on an AMX CPU); read bandwidth is a streaming sum over 1 GiB.
// On a shared machine compare the CPU-time columns of single-threaded runs:
// wall time includes time the scheduler gave to other processes.
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "../src/cpu/kernels.hpp"
#include "../src/cpu/matmul.hpp"
#include "../src/cpu/prefill_onednn.hpp"
#include "assistgen/cpu/transformer.hpp"

using namespace assistgen;

namespace {

ModelConfig shape(const std::string& name) {
  if (name == "tinyllama") return tinyllama_shape();
  ModelConfig c = tinyllama_shape();  // "small": the same family, ~25M parameters
  c.vocab_size = 4096;
  c.hidden_size = 512;
  c.intermediate_size = 1536;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

// One model at a time is kept (TinyLlama in f32 is 4.4 GB).
const cpu::Transformer& model(const std::string& name, DType dtype = DType::f32) {
  static std::string key;
  static std::unique_ptr<cpu::Transformer> m;
  const std::string want = name + "/" + std::string(dtype_name(dtype));
  if (key != want) {
    m.reset();
    m = std::make_unique<cpu::Transformer>(
        cpu::Transformer::random(shape(name), 1, {.dtype = dtype}));
    key = want;
  }
  return *m;
}

DType dtype_arg(std::int64_t i) {
  const DType types[] = {DType::f32, DType::bf16, DType::i8, DType::i4};
  return types[i];
}

constexpr std::size_t kContext = 64;

// One forward of `n` tokens after a kContext-token prefix.
void run_forward(benchmark::State& state, const std::string& name, std::size_t n,
                 DType dtype = DType::f32) {
  const auto& m = model(name, dtype);
  auto cache = m.make_cache(kContext + n + 1);
  std::vector<Token> prefix(kContext, 1), block(n, 2);
  Logits out;
  m.forward(prefix, cache, out);
  for (auto _ : state) {
    cache.truncate(kContext);
    m.forward(block, cache, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(std::string(dtype_name(dtype)));
  state.counters["weight_GB/s"] = benchmark::Counter(
      static_cast<double>(m.bytes_per_token()) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(n) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

// range(0): 0 f32, 1 bf16, 2 int8, 3 int4; range(1): K (a forward of K + 1 tokens), or the prefill length.
void BM_Decode_Small(benchmark::State& s) { run_forward(s, "small", 1, dtype_arg(s.range(0))); }
void BM_Decode_TinyLlama(benchmark::State& s) {
  run_forward(s, "tinyllama", 1, dtype_arg(s.range(0)));
}
void BM_Verify_Small(benchmark::State& s) {
  run_forward(s, "small", static_cast<std::size_t>(s.range(1)) + 1, dtype_arg(s.range(0)));
}
void BM_Verify_TinyLlama(benchmark::State& s) {
  run_forward(s, "tinyllama", static_cast<std::size_t>(s.range(1)) + 1, dtype_arg(s.range(0)));
}
void BM_Prefill_Small(benchmark::State& s) {
  run_forward(s, "small", static_cast<std::size_t>(s.range(1)), dtype_arg(s.range(0)));
}

// Copies of one packed [n, k] layer, 1 GiB in all, to be cycled so that the
// weights come from DRAM (more than the L3 of the machines measured, up to
// 480 MB), not from the cache.
std::vector<assistgen::cpu::detail::PackedLinear> cycled_layers(assistgen::cpu::detail::WeightType type,
                                                                const std::vector<float>& w,
                                                                std::size_t n, std::size_t k) {
  using assistgen::cpu::detail::pack_linear;
  std::vector<assistgen::cpu::detail::PackedLinear> layers;
  layers.push_back(pack_linear(type, w.data(), n, k, nullptr));
  while (layers.size() * layers[0].data.size() < (std::size_t{1} << 30))
    layers.push_back(pack_linear(type, w.data(), n, k, nullptr));
  return layers;
}

// The kernels alone on TinyLlama's MLP-in layer: range(0) dtype, range(1) M, range(2) threads.
void BM_Kernel(benchmark::State& state) {
  using namespace assistgen::cpu::detail;
  const std::size_t n = 11264, k = 2048, m = static_cast<std::size_t>(state.range(1));
  static std::vector<float> w;
  if (w.empty()) {
    w.resize(n * k);
    std::mt19937 eng(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (auto& e : w) e = d(eng);
  }
  const WeightType types[] = {WeightType::f32, WeightType::bf16, WeightType::i8,
                              WeightType::bf16_f32, WeightType::grouped};
  const char* names[] = {"f32", "bf16 (bf16 x bf16, VDPBF16PS)", "int8",
                         "bf16_f32 (bf16 widened, f32 FMA)", "int4 (groups of 32)"};
  const WeightType type = types[state.range(0)];
  // The layers of the last type measured are kept (the runs go type by type),
  // and freed before the next type is packed: 1 GiB of layers at a time.
  static std::vector<PackedLinear> layers;
  static int layers_type = -1;
  if (layers_type != static_cast<int>(state.range(0))) {
    layers.clear();
    layers = cycled_layers(type, w, n, k);
    layers_type = static_cast<int>(state.range(0));
  }
  std::vector<float> x(m * k, 0.5f), y(m * n);
  std::vector<std::uint8_t> q;
  std::vector<float> qs;
  LinearScratch s{q, qs};
  std::size_t i = 0;
  for (auto _ : state) {
    linear(layers[i++ % layers.size()], x.data(), m, y.data(), s, static_cast<int>(state.range(2)));
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(names[state.range(0)]);
  state.counters["weight_GB/s"] = benchmark::Counter(
      static_cast<double>(layers[0].data.size()) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
  state.counters["rows/s"] = benchmark::Counter(
      static_cast<double>(m) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// The prefill path on oneDNN (src/cpu/prefill_onednn.hpp) on the same packed
// layer as BM_Kernel, cycled the same way: range(0) dtype (1 bf16, 2 int8),
// range(1) M, range(2) threads. Compare with BM_Kernel/<dtype>/<M>/<threads>
// (rows/s): where it wins is where LoadOptions::onednn_prefill_rows is set.
void BM_OneDnnPrefill(benchmark::State& state) {
  using namespace assistgen::cpu::detail;
  const std::size_t n = 11264, k = 2048, m = static_cast<std::size_t>(state.range(1));
  std::vector<float> w(n * k);
  std::mt19937 eng(1);
  std::normal_distribution<float> d(0.0f, 0.02f);
  for (auto& e : w) e = d(eng);
  const WeightType type = state.range(0) == 1 ? WeightType::bf16 : WeightType::i8;
  const std::vector<PackedLinear> layers = cycled_layers(type, w, n, k);
  std::vector<float> x(m * k, 0.5f), y(m * n);
  std::vector<std::uint8_t> q;
  std::vector<float> qs;
  LinearScratch s{q, qs};
  onednn_linear(layers[0], x.data(), m, y.data(), s, static_cast<int>(state.range(2)));  // makes the primitive
  std::size_t i = 0;
  for (auto _ : state) {
    onednn_linear(layers[i++ % layers.size()], x.data(), m, y.data(), s, static_cast<int>(state.range(2)));
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(type == WeightType::bf16 ? "oneDNN bf16 on the packed units" : "oneDNN int8 on the packed units");
  state.counters["rows/s"] = benchmark::Counter(
      static_cast<double>(m) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// oneDNN 2.6's f32 matmul on the same layer (weights [n, k] as "ba"), M = range(0).
void BM_OneDnnF32(benchmark::State& state) {
  using namespace assistgen::cpu::detail;
  const std::size_t n = 11264, k = 2048, m = static_cast<std::size_t>(state.range(0));
  LinearWeights lw;
  lw.n = n;
  lw.k = k;
  lw.w.assign(n * k, 0.01f);
  MatmulEngine eng;
  dnnl::stream stream = eng.make_stream();
  std::vector<std::byte> scratch;
  std::vector<float> x(m * k, 0.5f), y(m * n);
  for (auto _ : state) {
    eng.run(lw, x.data(), m, y.data(), scratch, stream);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["weight_GB/s"] = benchmark::Counter(
      static_cast<double>(n * k * 4) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

// oneDNN 2.6's bf16 matmul (bf16 activations and weights, f32 output; AMX
// on CPUs that have it, else AVX-512 BF16) on the same layer, weights
// reordered once into the layout it picks (format_tag::any), M = range(0):
// the reference for prefill on our AMX kernels (BM_Kernel/1/M).
void BM_OneDnnBf16(benchmark::State& state) {
  using dnnl::memory;
  const auto n = static_cast<memory::dim>(11264), k = static_cast<memory::dim>(2048),
             m = static_cast<memory::dim>(state.range(0));
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  const memory::desc src({m, k}, memory::data_type::bf16, memory::format_tag::ab),
      wei_any({k, n}, memory::data_type::bf16, memory::format_tag::any),
      wei_ba({k, n}, memory::data_type::bf16, memory::format_tag::ba),
      dst({m, n}, memory::data_type::f32, memory::format_tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei_any, dst), eng);
  std::vector<std::uint16_t> w(static_cast<std::size_t>(n * k), 0x3c23),  // bf16 0.01
      x(static_cast<std::size_t>(m * k), 0x3f00);                           // bf16 0.5
  memory w_ba(wei_ba, eng, w.data()), w_packed(pd.weights_desc(), eng);
  dnnl::reorder(w_ba, w_packed).execute(stream, w_ba, w_packed);
  std::vector<float> y(static_cast<std::size_t>(m * n));
  memory xs(src, eng, x.data()), ys(dst, eng, y.data());
  dnnl::matmul prim(pd);
  for (auto _ : state) {
    prim.execute(stream, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, w_packed}, {DNNL_ARG_DST, ys}});
    stream.wait();
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(pd.impl_info_str());
  state.counters["rows/s"] = benchmark::Counter(
      static_cast<double>(m) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
// Read bandwidth: a streaming sum over 1 GiB on range(0) threads.
void BM_ReadBandwidth(benchmark::State& state) {
  const std::size_t words = (std::size_t{1} << 30) / 8;
  static std::vector<std::uint64_t> buf(words, 1);
  const auto threads = static_cast<std::size_t>(state.range(0));
  std::vector<std::uint64_t> sums(threads);
  auto part = [&](std::size_t t) {
    std::uint64_t a = 0, b = 0, c = 0, d = 0;
    for (std::size_t i = words * t / threads; i + 4 <= words * (t + 1) / threads; i += 4)
      a += buf[i], b += buf[i + 1], c += buf[i + 2], d += buf[i + 3];
    sums[t] = a + b + c + d;
  };
  for (auto _ : state) {
    if (threads == 1) {
      part(0);  // on the benchmark thread, so its CPU time is meaningful
    } else {
      std::vector<std::thread> ts;
      for (std::size_t t = 0; t < threads; ++t) ts.emplace_back(part, t);
      for (auto& t : ts) t.join();
    }
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["read_GB/s"] = benchmark::Counter(
      static_cast<double>(words * 8) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

// Memory copy bandwidth over a buffer much larger than the caches.
void BM_CopyBandwidth(benchmark::State& state) {
  const std::size_t bytes = std::size_t{512} << 20;
  std::vector<char> a(bytes, 1), b(bytes, 0);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::ClobberMemory();
  }
  // Counted as bytes read, the quantity decoding is bound by.
  state.counters["read_GB/s"] =
      benchmark::Counter(static_cast<double>(bytes) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_CopyBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Kernel)
    ->ArgsProduct({{0, 1, 2, 3, 4}, {1, 2, 4, 5, 6, 8, 9, 12, 16, 17, 24, 32, 33, 64, 128, 512}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_OneDnnPrefill)
    ->ArgsProduct({{1, 2}, {1, 4, 16, 32, 64, 128, 512}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_OneDnnF32)->Arg(1)->Arg(5)->Arg(16)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OneDnnBf16)
    ->Arg(1)->Arg(4)->Arg(16)->Arg(32)->Arg(64)->Arg(128)->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Decode_Small)->DenseRange(0, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Verify_Small)
    ->ArgsProduct({{0, 1, 2}, {1, 4, 8, 16}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Prefill_Small)
    ->ArgsProduct({{0, 1, 2}, {128, 512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Decode_TinyLlama)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Verify_TinyLlama)
    ->ArgsProduct({{0, 1, 2, 3}, {1, 4, 8, 16, 32}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
