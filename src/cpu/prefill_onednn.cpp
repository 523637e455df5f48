#include "prefill_onednn.hpp"

#include <omp.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/error.hpp"
#include "transformer_impl.hpp"

namespace assistgen::cpu::detail {

namespace {

using dnnl::memory;
using dims = memory::dims;
using tag = memory::format_tag;
using dt = memory::data_type;

struct Primitive {
  dnnl::matmul prim;
  memory::desc src, wei, bias, dst;
  std::size_t scratch_bytes = 0;
};

// One engine and one primitive per shape for the process (the model is
// const and shared between threads, so the cache is here, behind a mutex).
class Engine {
 public:
  Engine() : engine_(dnnl::engine::kind::cpu, 0) {}

  const Primitive& get(const PackedLinear& p, std::size_t m, int threads) {
    const bool bias = !p.bias.empty() && p.type == WeightType::bf16;
    const auto key = std::make_tuple(static_cast<int>(p.type), m, p.k_pad, p.n, bias, threads);
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(key); it != cache_.end()) return *it->second;
    auto e = std::make_unique<Primitive>();
    const auto M = static_cast<memory::dim>(m), K = static_cast<memory::dim>(p.k_pad),
               N = static_cast<memory::dim>(p.n);
    const bool bf16 = p.type == WeightType::bf16;
    e->src = memory::desc(dims{M, K}, bf16 ? dt::bf16 : dt::u8, tag::ab);
    e->wei = memory::desc(dims{K, N}, bf16 ? dt::bf16 : dt::s8,
                          bf16 ? tag::BA16a32b2a : tag::BA16a32b4a);
    e->dst = memory::desc(dims{M, N}, bf16 ? dt::f32 : dt::s32, tag::ab);
    if (bias) e->bias = memory::desc(dims{1, N}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    try {
      const auto pd = bias ? dnnl::matmul::primitive_desc(
                                 dnnl::matmul::desc(e->src, e->wei, e->bias, e->dst), attr, engine_)
                           : dnnl::matmul::primitive_desc(
                                 dnnl::matmul::desc(e->src, e->wei, e->dst), attr, engine_);
      e->scratch_bytes = pd.scratchpad_desc().get_size();
      e->prim = dnnl::matmul(pd);
    } catch (const dnnl::error& err) {
      throw UnsupportedError(
          std::string("cpu::Transformer: oneDNN has no matmul for the prefill of ") +
          (bf16 ? "bf16" : "int8") + " weights [" + std::to_string(p.n) + ", " +
          std::to_string(p.k) + "] x " + std::to_string(m) + " rows (" + err.what() +
          "); turn it off with LoadOptions::onednn_prefill_rows = 0 or "
          "ASSISTGEN_ONEDNN_PREFILL=off");
    }
    return *cache_.emplace(key, std::move(e)).first->second;
  }

  dnnl::engine& engine() { return engine_; }

 private:
  dnnl::engine engine_;
  std::mutex mu_;
  std::map<std::tuple<int, std::size_t, std::size_t, std::size_t, bool, int>,
           std::unique_ptr<Primitive>>
      cache_;
};

Engine& engine() {
  static Engine e;
  return e;
}

// Prefill rows from which oneDNN beats the kernels, per dtype, measured with
// `assistgen bench --tinyllama --prefill 16,32,64,128,512,2048` on an AMX
// Xeon (2 threads; docs/performance.md, "Prefill on oneDNN"); 0: it never
// did by a margin, so the default leaves it off (opt in by the option or
// ASSISTGEN_ONEDNN_PREFILL).
constexpr std::size_t kBf16Rows = 0;
constexpr std::size_t kI8Rows = 0;

std::atomic<PrefillPath> g_path{PrefillPath::automatic};
std::atomic<std::size_t> g_calls{0};

}  // namespace

std::size_t onednn_prefill_threshold(std::optional<std::size_t> option, WeightType type) {
  if (type != WeightType::bf16 && type != WeightType::i8) return 0;
  if (option) return *option;
  if (const char* env = std::getenv("ASSISTGEN_ONEDNN_PREFILL"); env && *env) {
    const std::string v(env);
    if (v == "off" || v == "0") return 0;
    std::size_t used = 0;
    unsigned long long rows = 0;
    try {
      rows = std::stoull(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || v[0] == '-' || v[0] == '+')
      throw InvalidArgument(
          "ASSISTGEN_ONEDNN_PREFILL='" + v +
          "': expected 'off' or a row count (the prompt prefill length from which "
          "oneDNN runs the matmuls)");
    return static_cast<std::size_t>(rows);
  }
  if (detected_isa() != Isa::amx) return 0;  // measured on AMX only
  return type == WeightType::bf16 ? kBf16Rows : kI8Rows;
}

std::size_t onednn_calls() { return g_calls.load(std::memory_order_relaxed); }

bool onednn_handles(const PackedLinear& p) {
  return (p.type == WeightType::bf16 || p.type == WeightType::i8) && p.n > 0 && p.k > 0;
}

void onednn_linear(const PackedLinear& p, const float* x, std::size_t m, float* y,
                   LinearScratch& scratch, int threads) {
  threads = std::max(threads, 1);
  g_calls.fetch_add(1, std::memory_order_relaxed);
  Engine& eng = engine();
  const Primitive& e = eng.get(p, m, threads);
  const bool bf16 = p.type == WeightType::bf16;
  // The activations, converted per row exactly as linear() converts them.
  const std::size_t row_bytes = p.k_pad * (bf16 ? 2 : 1);
  thread_local std::vector<std::byte> pad;
  if (scratch.q.size() < m * row_bytes) scratch.q.resize(m * row_bytes);
  if (!bf16 && scratch.q_scale.size() < m) scratch.q_scale.resize(m);
  if (pad.size() < e.scratch_bytes) pad.resize(e.scratch_bytes);
  for (std::size_t r = 0; r < m; ++r) {
    std::uint8_t* row = scratch.q.data() + r * row_bytes;
    if (bf16)
      bf16_row(x + r * p.k, p.k, p.k_pad, reinterpret_cast<std::uint16_t*>(row));
    else
      scratch.q_scale[r] = quantize_row(x + r * p.k, p.k, p.k_pad, row);
  }
  dnnl::engine& en = eng.engine();
  memory src(e.src, en, scratch.q.data());
  memory wei(e.wei, en, const_cast<std::byte*>(p.data.data()));
  memory dst(e.dst, en, y);  // int8: int32 results, converted in place below
  memory sp(memory::desc(dims{static_cast<memory::dim>(e.scratch_bytes)}, dt::u8, tag::a), en,
            pad.data());
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, sp}};
  if (bf16 && !p.bias.empty())
    args.emplace(DNNL_ARG_BIAS, memory(e.bias, en, const_cast<float*>(p.bias.data())));
  // oneDNN's OpenMP runtime takes its thread count from the calling thread.
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  dnnl::stream stream(en);
  e.prim.execute(stream, args);
  stream.wait();
  omp_set_num_threads(before);
  if (bf16) return;
  // int8: the kernels' epilogue (kernels.hpp), element by element.
  const float* b = p.bias.empty() ? nullptr : p.bias.data();
  for (std::size_t r = 0; r < m; ++r) {
    float* yr = y + r * p.n;
    const float sx = scratch.q_scale[r];
    for (std::size_t j = 0; j < p.n; ++j) {
      const auto acc = std::bit_cast<std::int32_t>(yr[j]);
      const float v = static_cast<float>(acc - p.offset[j]);
      const float sxw = sx * p.scale[j];
      yr[j] = b ? std::fma(v, sxw, b[j]) : v * sxw;
    }
  }
}

}  // namespace assistgen::cpu::detail

namespace assistgen::cpu {

void set_prefill_path(PrefillPath path) { detail::g_path.store(path); }
PrefillPath prefill_path() { return detail::g_path.load(); }

}  // namespace assistgen::cpu
