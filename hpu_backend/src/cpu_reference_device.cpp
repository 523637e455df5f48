// The CPU reference device: host memory stands in for device memory (every
// address is checked against the allocation table, so a binding that overruns
// its buffer is an error, not a silent corruption), compile() validates the
// graph and plans the workspace, launch() interprets the nodes with Eigen.
#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/hpu/device.hpp"
#include "assistgen/io/safetensors.hpp"
#include "low_precision.hpp"

namespace assistgen::hpu {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Idx = Eigen::Index;

class CpuRecipe final : public Recipe {
 public:
  CpuRecipe(Graph g, std::vector<std::size_t> offsets, std::size_t ws)
      : graph_(std::move(g)), offsets_(std::move(offsets)), workspace_(ws) {}
  const Graph& graph() const override { return graph_; }
  std::size_t workspace_bytes() const override { return workspace_; }
  const std::vector<std::size_t>& offsets() const { return offsets_; }

 private:
  Graph graph_;
  std::vector<std::size_t> offsets_;  // workspace offset of each intermediate
  std::size_t workspace_;
};

constexpr std::size_t kAlign = 64;
constexpr std::size_t kMaxRank = 8;
std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Row-major strides of a shape.
std::vector<std::size_t> strides_of(const std::vector<std::int64_t>& shape) {
  std::vector<std::size_t> s(shape.size());
  std::size_t acc = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    acc *= static_cast<std::size_t>(shape[i]);
  }
  return s;
}

// ---- kernels ---------------------------------------------------------------

void embedding(const std::int32_t* ids, std::size_t n, const float* table, std::size_t rows,
               std::size_t h, float* out, const std::string& node) {
  for (std::size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || static_cast<std::size_t>(ids[i]) >= rows)
      throw InvalidArgument("hpu cpu-reference, node '" + node + "': id " + std::to_string(ids[i]) +
                            " outside the table of " + std::to_string(rows) + " rows");
    std::memcpy(out + i * h, table + static_cast<std::size_t>(ids[i]) * h, h * sizeof(float));
  }
}

// Sums in index order (fixed, as every reduction here).
void rmsnorm(const float* x, const float* w, float* y, std::size_t rows, std::size_t h, float eps) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * h;
    float sq = 0;
    for (std::size_t i = 0; i < h; ++i) sq += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(sq / static_cast<float>(h) + eps);
    for (std::size_t i = 0; i < h; ++i) y[r * h + i] = (xr[i] * inv) * w[i];
  }
}

// c[M, N] = a[M, K] * (b[N, K]^T or b[K, N]) (+ bias). Every output is
// summed from zero in k order, then the bias added: the same operations
// whatever M is and wherever the row sits (Eigen's GEMM picks kernels and
// blockings by size and row position), so a token's logits do not depend on
// its batch mates, its bucket's padding or its chunk (batch invariance).
void gemm(const float* a, const float* b, const float* bias, float* c, std::size_t M, std::size_t K,
          std::size_t N, bool transpose_b) {
  if (transpose_b) {
    for (std::size_t i = 0; i < M; ++i) {
      const float* ai = a + i * K;
      for (std::size_t j = 0; j < N; ++j) {
        const float* bj = b + j * K;
        float acc = 0.0f;
        for (std::size_t k = 0; k < K; ++k) acc += ai[k] * bj[k];
        c[i * N + j] = bias ? acc + bias[j] : acc;
      }
    }
    return;
  }
  // b [K, N]: accumulate whole rows, each element still in k order.
  for (std::size_t i = 0; i < M; ++i) {
    float* ci = c + i * N;
    std::fill_n(ci, N, 0.0f);
    for (std::size_t k = 0; k < K; ++k) {
      const float aik = a[i * K + k];
      const float* bk = b + k * N;
      for (std::size_t j = 0; j < N; ++j) ci[j] += aik * bk[j];
    }
    if (bias)
      for (std::size_t j = 0; j < N; ++j) ci[j] += bias[j];
  }
}

// The MME's low-precision gemm as this device models it: c[M, N] =
// a[M, K] (bf16) * b[N, K]^T (bf16, or E4M3 codes times scale[N] / scale[1]).
// Every product is exact in f32 (8 x 8 or 8 x 4 significant bits), summed in
// f32 from zero in k order, each sum rounded to nearest even; then
// c = acc (* scale[j] for fp8, rounded) (+ bias[j], rounded). The library
// compiles with -ffp-contract=off so that no fma merges these roundings.
// One output's operations never depend on M, so rows are batch-invariant.
void gemm_low(const std::uint16_t* a, const void* b, bool fp8, const float* scale,
              std::size_t n_scales, const float* bias, float* c, std::size_t M, std::size_t K,
              std::size_t N) {
  std::vector<float> af(M * K), bf(K);
  for (std::size_t i = 0; i < M * K; ++i) af[i] = io::bf16_to_float(a[i]);
  for (std::size_t j = 0; j < N; ++j) {
    if (fp8) {
      const auto* bj = static_cast<const std::uint8_t*>(b) + j * K;
      for (std::size_t k = 0; k < K; ++k) bf[k] = detail::fp8_to_float(bj[k]);
    } else {
      const auto* bj = static_cast<const std::uint16_t*>(b) + j * K;
      for (std::size_t k = 0; k < K; ++k) bf[k] = io::bf16_to_float(bj[k]);
    }
    const float bj_bias = bias ? bias[j] : 0.0f;
    const float s = fp8 ? scale[n_scales == 1 ? 0 : j] : 1.0f;
    for (std::size_t i = 0; i < M; ++i) {
      const float* ai = af.data() + i * K;
      float acc = 0.0f;
      for (std::size_t k = 0; k < K; ++k) acc += ai[k] * bf[k];  // exact product: fma or not, same
      const float y = fp8 ? acc * s : acc;
      c[i * N + j] = bias ? y + bj_bias : y;
    }
  }
}

// The CPU backend's LayerNorm (biased variance), in its order of operations.
void layernorm(const float* x, const float* w, const float* b, float* y, std::size_t rows,
               std::size_t h, float eps) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * h;
    float* yr = y + r * h;
    float sum = 0;
    for (std::size_t i = 0; i < h; ++i) sum += xr[i];
    const float mean = sum / static_cast<float>(h);
    float sq = 0;
    for (std::size_t i = 0; i < h; ++i) {
      yr[i] = xr[i] - mean;
      sq += yr[i] * yr[i];
    }
    const float inv = 1.0f / std::sqrt(sq / static_cast<float>(h) + eps);
    for (std::size_t i = 0; i < h; ++i) yr[i] = (yr[i] * inv) * w[i] + b[i];
  }
}

void gelu_tanh(const float* x, float* out, std::size_t n) {
  constexpr float kC = 0.7978845608028654f;  // sqrt(2/pi)
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i];
    out[i] = 0.5f * v * (1.0f + std::tanh(kC * (v + 0.044715f * (v * v * v))));
  }
}

// cos / sin are [T, half] (shared by the batch) or [B, T, half] (per row).
void rope(const float* x, const float* cos_t, const float* sin_t, float* out, std::size_t B,
          std::size_t T, std::size_t width, std::size_t hd, bool per_row) {
  const std::size_t half = hd / 2;
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t) {
      const std::size_t row = per_row ? b * T + t : t;
      const float* c = cos_t + row * half;
      const float* s = sin_t + row * half;
      for (std::size_t h = 0; h < width / hd; ++h) {
        const std::size_t o = (b * T + t) * width + h * hd;
        for (std::size_t i = 0; i < half; ++i) {
          const float p = x[o + i], q = x[o + i + half];
          out[o + i] = p * c[i] - q * s[i];
          out[o + i + half] = q * c[i] + p * s[i];
        }
      }
    }
}

void transpose(const float* x, float* out, const std::vector<std::int64_t>& in_shape,
               const std::vector<std::int64_t>& perm) {
  // Fixed-size index arrays: the rank is small (validate() caps it at kMaxRank).
  const std::size_t r = in_shape.size();
  std::array<std::size_t, kMaxRank> in_strides{}, out_shape{}, src_stride{}, idx{};
  std::size_t acc = 1;
  for (std::size_t i = r; i-- > 0;) {
    in_strides[i] = acc;
    acc *= static_cast<std::size_t>(in_shape[i]);
  }
  for (std::size_t i = 0; i < r; ++i) {
    out_shape[i] = static_cast<std::size_t>(in_shape[static_cast<std::size_t>(perm[i])]);
    src_stride[i] = in_strides[static_cast<std::size_t>(perm[i])];  // input stride of output dim i
  }
  std::size_t src = 0;
  for (std::size_t o = 0; o < acc; ++o) {
    out[o] = x[src];
    for (std::size_t d = r; d-- > 0;) {  // odometer increment over the output index
      src += src_stride[d];
      if (++idx[d] < out_shape[d]) break;
      src -= src_stride[d] * idx[d];
      idx[d] = 0;
    }
  }
}

// out = a (+ or *) b, b broadcast over a's shape.
template <class F>
void broadcast(const float* a, const float* b, float* out, const std::vector<std::int64_t>& as,
               const std::vector<std::int64_t>& bs, F op) {
  std::size_t total = 1;
  for (auto d : as) total *= static_cast<std::size_t>(d);
  if (as == bs) {
    for (std::size_t i = 0; i < total; ++i) out[i] = op(a[i], b[i]);
    return;
  }
  const std::size_t r = as.size();
  const auto b_strides = strides_of(bs);
  const std::size_t last = static_cast<std::size_t>(as.back());
  const bool b_last = bs.back() != 1;
  for (std::size_t row = 0; row < total / last; ++row) {
    std::size_t rem = row, boff = 0;
    for (std::size_t d = r - 1; d-- > 0;) {
      const std::size_t i = rem % static_cast<std::size_t>(as[d]);
      rem /= static_cast<std::size_t>(as[d]);
      if (bs[d] != 1) boff += i * b_strides[d];
    }
    const float* ar = a + row * last;
    float* orow = out + row * last;
    if (b_last)
      for (std::size_t j = 0; j < last; ++j) orow[j] = op(ar[j], b[boff + j]);
    else
      for (std::size_t j = 0; j < last; ++j) orow[j] = op(ar[j], b[boff]);
  }
}

// Masked entries (-inf) give exact zeros, and adding zeros in index order
// changes no bit: a longer kv bucket gives the same probabilities.
void softmax(const float* x, float* out, std::size_t rows, std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* o = out + r * n;
    float mx = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < n; ++i) mx = std::max(mx, xr[i]);
    if (mx == -std::numeric_limits<float>::infinity()) {  // fully masked row
      std::fill_n(o, n, 0.0f);
      continue;
    }
    float sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
      o[i] = std::exp(xr[i] - mx);
      sum += o[i];
    }
    for (std::size_t i = 0; i < n; ++i) o[i] = o[i] / sum;
  }
}

// Scalar libm exp: an element's value never depends on its neighbours.
void silu_mul(const float* g, const float* u, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// ---- the device -------------------------------------------------------------

class CpuReferenceDevice final : public Device {
 public:
  std::string name() const override { return "cpu-reference"; }

  DeviceAddress allocate(std::size_t bytes) override {
    if (bytes == 0) throw InvalidArgument("hpu cpu-reference: allocate(0)");
    std::unique_ptr<std::byte[]> mem;
    try {
      mem = std::make_unique<std::byte[]>(bytes);
    } catch (const std::bad_alloc&) {
      throw CapacityError("hpu cpu-reference: out of memory allocating " + std::to_string(bytes) +
                          " bytes");
    }
    const auto addr = reinterpret_cast<DeviceAddress>(mem.get());
    std::lock_guard lock(mu_);
    blocks_.emplace(addr, Block{std::move(mem), bytes});
    return addr;
  }

  void free(DeviceAddress address) noexcept override {
    if (address == 0) return;
    std::lock_guard lock(mu_);
    blocks_.erase(address);
  }

  void copy_to_device(DeviceAddress dst, const void* src, std::size_t bytes) override {
    if (bytes) std::memcpy(resolve(dst, bytes, "copy_to_device"), src, bytes);
  }
  void copy_to_host(void* dst, DeviceAddress src, std::size_t bytes) override {
    if (bytes) std::memcpy(dst, resolve(src, bytes, "copy_to_host"), bytes);
  }
  void synchronize() override {}

  std::shared_ptr<const Recipe> compile(const Graph& graph) override {
    graph.validate();
    std::vector<std::size_t> offsets(graph.tensors().size(), 0);
    std::size_t ws = 0;
    for (std::size_t i = 0; i < graph.tensors().size(); ++i) {
      const auto& t = graph.tensors()[i];
      if (t.kind != TensorKind::intermediate) continue;
      offsets[i] = ws;
      ws += align_up(t.bytes());
    }
    return std::make_shared<CpuRecipe>(graph, std::move(offsets), ws);
  }

  void launch(const Recipe& recipe, std::span<const Binding> bindings,
              DeviceAddress workspace) override {
    const auto* r = dynamic_cast<const CpuRecipe*>(&recipe);
    if (!r)
      throw InvalidArgument("hpu cpu-reference: launch of a recipe compiled by another device");
    const Graph& g = r->graph();
    std::vector<std::byte*> ptr(g.tensors().size(), nullptr);
    std::unordered_map<std::string, DeviceAddress> bound;
    for (const auto& b : bindings) bound[b.name] = b.address;
    std::size_t used = 0;
    std::byte* ws =
        r->workspace_bytes() ? resolve(workspace, r->workspace_bytes(), "workspace") : nullptr;
    for (std::size_t i = 0; i < g.tensors().size(); ++i) {
      const auto& t = g.tensors()[i];
      if (t.kind == TensorKind::intermediate) {
        ptr[i] = ws + r->offsets()[i];
        continue;
      }
      auto it = bound.find(t.name);
      if (it == bound.end())
        throw InvalidArgument("hpu cpu-reference: launch of '" + g.kind() +
                              "' without a binding for '" + t.name + "'");
      ptr[i] = resolve(it->second, t.bytes(), "binding '" + t.name + "'");
      ++used;
    }
    if (used != bound.size())
      for (const auto& b : bindings) {
        bool known = false;
        for (const auto& t : g.tensors())
          known |= t.name == b.name && t.kind != TensorKind::intermediate;
        if (!known)
          throw InvalidArgument("hpu cpu-reference: binding '" + b.name +
                                "' names no bound tensor of '" + g.kind() + "'");
      }
    for (const Node& n : g.nodes()) run(g, n, ptr);
  }

 private:
  struct Block {
    std::unique_ptr<std::byte[]> mem;
    std::size_t bytes;
  };

  std::byte* resolve(DeviceAddress addr, std::size_t bytes, const std::string& what) const {
    std::lock_guard lock(mu_);
    auto it = blocks_.upper_bound(addr);
    if (it != blocks_.begin()) {
      --it;
      const std::size_t off = addr - it->first;
      if (addr >= it->first && off <= it->second.bytes && bytes <= it->second.bytes - off)
        return it->second.mem.get() + off;
    }
    throw InvalidArgument("hpu cpu-reference: " + what + ": " + std::to_string(bytes) +
                          " bytes at address " + std::to_string(addr) +
                          " are not inside one allocation");
  }

  static void run(const Graph& g, const Node& n, const std::vector<std::byte*>& ptr) {
    auto f = [&](std::size_t i) {
      return reinterpret_cast<float*>(ptr[static_cast<std::size_t>(n.inputs[i])]);
    };
    auto o = [&]() {
      return reinterpret_cast<float*>(ptr[static_cast<std::size_t>(n.outputs[0])]);
    };
    auto t = [&](std::size_t i) -> const TensorInfo& { return g.tensor(n.inputs[i]); };
    auto d = [](std::int64_t v) { return static_cast<std::size_t>(v); };
    switch (n.op) {
      case Op::embedding:
        embedding(reinterpret_cast<const std::int32_t*>(f(0)), t(0).numel(), f(1), d(t(1).shape[0]),
                  d(t(1).shape[1]), o(), n.name);
        break;
      case Op::rmsnorm: {
        const std::size_t h = d(t(0).shape.back());
        rmsnorm(f(0), f(1), o(), t(0).numel() / h, h, n.attrs.eps);
        break;
      }
      case Op::gemm: {
        const std::size_t K = d(t(0).shape.back());
        const std::size_t N = d(n.attrs.transpose_b ? t(1).shape[0] : t(1).shape[1]);
        const DType wt = t(1).dtype;
        if (wt == DType::f32) {
          gemm(f(0), f(1), n.inputs.size() == 3 ? f(2) : nullptr, o(), t(0).numel() / K, K, N,
               n.attrs.transpose_b);
          break;
        }
        if (!n.attrs.transpose_b)
          throw UnsupportedError("hpu cpu-reference, node '" + n.name + "': a " +
                                 std::string(dtype_name(wt)) +
                                 " gemm needs transpose_b (weights [N, K])");
        const bool fp8 = wt == DType::f8_e4m3;
        const std::size_t n_in = n.inputs.size();
        const bool has_bias = n_in == (fp8 ? 4u : 3u);
        gemm_low(reinterpret_cast<const std::uint16_t*>(f(0)), f(1), fp8,
                 fp8 ? f(n_in - 1) : nullptr, fp8 ? t(n_in - 1).numel() : 0,
                 has_bias ? f(2) : nullptr, o(), t(0).numel() / K, K, N);
        break;
      }
      case Op::layernorm: {
        const std::size_t h = d(t(0).shape.back());
        layernorm(f(0), f(1), f(2), o(), t(0).numel() / h, h, n.attrs.eps);
        break;
      }
      case Op::gelu_tanh:
        gelu_tanh(f(0), o(), t(0).numel());
        break;
      case Op::cast_bf16: {
        auto* y = reinterpret_cast<std::uint16_t*>(ptr[static_cast<std::size_t>(n.outputs[0])]);
        const float* x = f(0);
        for (std::size_t i = 0, e = t(0).numel(); i < e; ++i) y[i] = io::float_to_bf16(x[i]);
        break;
      }
      case Op::batch_gemm: {
        const std::size_t G = d(t(0).shape[0]), M = d(t(0).shape[1]), K = d(t(0).shape[2]);
        const std::size_t N = d(n.attrs.transpose_b ? t(1).shape[1] : t(1).shape[2]);
        for (std::size_t b = 0; b < G; ++b)
          gemm(f(0) + b * M * K, f(1) + b * N * K, nullptr, o() + b * M * N, M, K, N,
               n.attrs.transpose_b);
        break;
      }
      case Op::rope:
        rope(f(0), f(1), f(2), o(), d(t(0).shape[0]), d(t(0).shape[1]), d(t(0).shape[2]),
             d(n.attrs.head_dim), t(1).shape.size() == 3);
        break;
      case Op::transpose:
        transpose(f(0), o(), t(0).shape, n.attrs.perm);
        break;
      case Op::reshape:
        std::memcpy(o(), f(0), t(0).bytes());
        break;
      case Op::add:
        broadcast(f(0), f(1), o(), t(0).shape, t(1).shape, [](float x, float y) { return x + y; });
        break;
      case Op::batch_row: {
        const std::size_t row = t(0).bytes() / d(t(0).shape[0]);
        std::memcpy(o(), reinterpret_cast<const std::byte*>(f(0)) + d(n.attrs.length) * row, row);
        break;
      }
      case Op::concat: {
        std::byte* dst = ptr[static_cast<std::size_t>(n.outputs[0])];
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
          std::memcpy(dst, f(i), t(i).bytes());
          dst += t(i).bytes();
        }
        break;
      }
      case Op::mul:
        broadcast(f(0), f(1), o(), t(0).shape, t(1).shape, [](float x, float y) { return x * y; });
        break;
      case Op::softmax: {
        const std::size_t last = d(t(0).shape.back());
        softmax(f(0), o(), t(0).numel() / last, last);
        break;
      }
      case Op::silu_mul:
        silu_mul(f(0), f(1), o(), t(0).numel());
        break;
      case Op::kv_write: {
        const auto& c = t(0).shape;
        const std::size_t BH = d(c[0] * c[1]), S = d(c[2]), D = d(c[3]), T = d(t(1).shape[0]);
        const auto* idx = reinterpret_cast<const std::int32_t*>(f(1));
        for (std::size_t i = 0; i < T; ++i)
          if (idx[i] < 0 || d(idx[i]) >= S)
            throw InvalidArgument("hpu cpu-reference, node '" + n.name + "': index " +
                                  std::to_string(idx[i]) + " outside the " + std::to_string(S) +
                                  " slots of '" + t(0).name + "'");
        float* cache = f(0);
        const float* src = f(2);
        for (std::size_t bh = 0; bh < BH; ++bh)
          for (std::size_t i = 0; i < T; ++i)
            std::memcpy(cache + (bh * S + d(idx[i])) * D, src + (bh * T + i) * D,
                        D * sizeof(float));
        break;
      }
      case Op::kv_read: {
        const auto& c = t(0).shape;
        const std::size_t BH = d(c[0] * c[1]), S = d(c[2]), D = d(c[3]), L = d(n.attrs.length);
        for (std::size_t bh = 0; bh < BH; ++bh)
          std::memcpy(o() + bh * L * D, f(0) + bh * S * D, L * D * sizeof(float));
        break;
      }
    }
  }

  mutable std::mutex mu_;
  std::map<DeviceAddress, Block> blocks_;
};

}  // namespace

std::shared_ptr<Device> make_cpu_reference_device() {
  return std::make_shared<CpuReferenceDevice>();
}

}  // namespace assistgen::hpu
