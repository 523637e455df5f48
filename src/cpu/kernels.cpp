// The batch-invariant kernels of kernels.hpp: packing, the AVX-512 kernels,
// the scalar fallback (same operations, same order) and the dispatcher.
#include "kernels.hpp"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

// GCC 12 warns about _mm512_undefined_ps() inside its own intrinsic headers
// when they are inlined (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace assistgen::cpu::detail {

namespace {

constexpr std::size_t kHalf = kUnit / 2;  // columns per zmm of f32 / int32
constexpr std::size_t kRows = 8;          // rows per register tile

std::uint16_t to_bf16(float f) {
  const auto u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // quiet NaN
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);  // nearest, ties to even
  return static_cast<std::uint16_t>(rounded >> 16);
}

float from_bf16(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

// Offsets of W[j, kk] in each packed layout (in elements of the stored type).
std::size_t f32_index(const PackedLinear& p, std::size_t j, std::size_t kk) {
  return ((j / kUnit) * p.k + kk) * kUnit + j % kUnit;
}
// bf16: per pair of k steps, two halves of 16 columns; dword c of a half holds
// that column's (k even, k odd) pair, the layout VDPBF16PS multiplies.
std::size_t bf16dp_index(const PackedLinear& p, std::size_t j, std::size_t kk) {
  const std::size_t c = j % kUnit, pairs = p.k_pad / 2;
  return ((((j / kUnit) * pairs + kk / 2) * 2 + c / kHalf) * kHalf + c % kHalf) * 2 + kk % 2;
}
// bf16_f32: per k step, 16 dwords; dword c holds column c (low half) and c + 16 (high half).
std::size_t bf16_index(const PackedLinear& p, std::size_t j, std::size_t kk) {
  const std::size_t c = j % kUnit;
  return (((j / kUnit) * p.k + kk) * kHalf + c % kHalf) * 2 + c / kHalf;
}
// int8: per group of 4 k steps, two halves of 16 columns x 4 bytes.
std::size_t i8_index(const PackedLinear& p, std::size_t j, std::size_t kk) {
  const std::size_t c = j % kUnit, groups = p.k_pad / 4;
  return (((j / kUnit) * groups + kk / 4) * 2 + c / kHalf) * 64 + (c % kHalf) * 4 + kk % 4;
}

// ---------------------------------------------------------------------------
// Scalar kernels: one unit of 32 columns for `rows` rows, in the documented
// order. `ncols` <= 32 columns are written.

struct UnitArgs {
  const std::byte* w;          // the unit's packed weights
  std::size_t k, k_pad;
  const float* x;              // f32 / bf16_f32: activations, row stride ldx
  const std::uint8_t* xq;      // int8: quantized activations (bf16: bf16 activations), row stride k_pad elements
  const float* xs;             // int8: per-row scales
  std::size_t ldx;
  float* y;                    // output, row stride ldy, first column of the unit
  std::size_t ldy;
  const float* bias;           // the unit's 32 bias values (padded) or null
  const float* scale;          // int8: the unit's 32 weight scales
  const std::int32_t* offset;  // int8: the unit's 32 offsets
  std::size_t ncols;
};

float unit_weight_f32(const std::byte* w, std::size_t kk, std::size_t c) {
  float v;
  std::memcpy(&v, w + (kk * kUnit + c) * sizeof(float), sizeof v);
  return v;
}
float unit_weight_bf16(const std::byte* w, std::size_t kk, std::size_t c) {
  std::uint16_t h;
  std::memcpy(&h, w + ((kk * kHalf + c % kHalf) * 2 + c / kHalf) * 2, 2);
  return from_bf16(h);
}

template <bool kBf16>
void scalar_float_unit(const UnitArgs& a, std::size_t rows) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < a.ncols; ++c) {
      float acc = 0.0f;
      const float* x = a.x + r * a.ldx;
      for (std::size_t kk = 0; kk < a.k; ++kk)
        acc = std::fma(x[kk], kBf16 ? unit_weight_bf16(a.w, kk, c) : unit_weight_f32(a.w, kk, c), acc);
      a.y[r * a.ldy + c] = a.bias ? acc + a.bias[c] : acc;
    }
}

// VDPBF16PS's arithmetic: denormal inputs and results are zero.
float flush(float v) { return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v; }

void scalar_bf16dp_unit(const UnitArgs& a, std::size_t rows) {
  const auto* w = reinterpret_cast<const std::uint16_t*>(a.w);
  for (std::size_t r = 0; r < rows; ++r) {
    const auto* x = reinterpret_cast<const std::uint16_t*>(a.xq) + r * a.k_pad;
    for (std::size_t c = 0; c < a.ncols; ++c) {
      float acc = 0.0f;
      for (std::size_t kk = 0; kk < a.k_pad; kk += 2) {
        const std::uint16_t* wp = w + (((kk / 2) * 2 + c / kHalf) * kHalf + c % kHalf) * 2;
        acc = flush(acc + flush(from_bf16(x[kk + 1])) * flush(from_bf16(wp[1])));
        acc = flush(acc + flush(from_bf16(x[kk])) * flush(from_bf16(wp[0])));
      }
      a.y[r * a.ldy + c] = a.bias ? acc + a.bias[c] : acc;
    }
  }
}

void scalar_i8_unit(const UnitArgs& a, std::size_t rows) {
  const auto* w = reinterpret_cast<const std::int8_t*>(a.w);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < a.ncols; ++c) {
      std::int32_t acc = 0;
      const std::uint8_t* x = a.xq + r * a.k_pad;
      for (std::size_t kk = 0; kk < a.k_pad; ++kk)
        acc += static_cast<std::int32_t>(x[kk]) *
               w[((kk / 4) * 2 + c / kHalf) * 64 + (c % kHalf) * 4 + kk % 4];
      const float v = static_cast<float>(acc - a.offset[c]);
      const float sxw = a.xs[r] * a.scale[c];
      a.y[r * a.ldy + c] = a.bias ? std::fma(v, sxw, a.bias[c]) : v * sxw;
    }
}

// ---------------------------------------------------------------------------
// AVX-512 kernels.

#define ASSISTGEN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,fma")))

ASSISTGEN_AVX512 inline void store_cols(float* y, __m512 lo, __m512 hi, std::size_t ncols) {
  if (ncols >= kUnit) {
    _mm512_storeu_ps(y, lo);
    _mm512_storeu_ps(y + kHalf, hi);
    return;
  }
  const auto mlo = static_cast<__mmask16>(ncols >= kHalf ? 0xffffu : (1u << ncols) - 1u);
  const auto mhi = static_cast<__mmask16>(ncols <= kHalf ? 0u : (1u << (ncols - kHalf)) - 1u);
  _mm512_mask_storeu_ps(y, mlo, lo);
  _mm512_mask_storeu_ps(y + kHalf, mhi, hi);
}

template <std::size_t R, bool kBf16>
ASSISTGEN_AVX512 void avx512_float_unit(const UnitArgs& a) {
  __m512 lo[R], hi[R];
  for (std::size_t r = 0; r < R; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
  const __m512i high_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (std::size_t kk = 0; kk < a.k; ++kk) {
    __m512 wl, wh;
    if constexpr (kBf16) {
      const __m512i v = _mm512_load_si512(a.w + kk * kUnit * 2);
      wl = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      wh = _mm512_castsi512_ps(_mm512_and_si512(v, high_mask));
    } else {
      const auto* w = reinterpret_cast<const float*>(a.w) + kk * kUnit;
      wl = _mm512_load_ps(w);
      wh = _mm512_load_ps(w + kHalf);
    }
    for (std::size_t r = 0; r < R; ++r) {
      const __m512 b = _mm512_set1_ps(a.x[r * a.ldx + kk]);
      lo[r] = _mm512_fmadd_ps(b, wl, lo[r]);
      hi[r] = _mm512_fmadd_ps(b, wh, hi[r]);
    }
  }
  for (std::size_t r = 0; r < R; ++r) {
    if (a.bias) {
      lo[r] = _mm512_add_ps(lo[r], _mm512_loadu_ps(a.bias));
      hi[r] = _mm512_add_ps(hi[r], _mm512_loadu_ps(a.bias + kHalf));
    }
    store_cols(a.y + r * a.ldy, lo[r], hi[r], a.ncols);
  }
}

template <std::size_t R>
ASSISTGEN_AVX512 void avx512_bf16dp_unit(const UnitArgs& a) {
  __m512 lo[R], hi[R];
  for (std::size_t r = 0; r < R; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
  const std::size_t pairs = a.k_pad / 2;
  const auto* x = reinterpret_cast<const std::uint16_t*>(a.xq);
  for (std::size_t p = 0; p < pairs; ++p) {
    const auto wl = reinterpret_cast<__m512bh>(_mm512_load_si512(a.w + p * 128));
    const auto wh = reinterpret_cast<__m512bh>(_mm512_load_si512(a.w + p * 128 + 64));
    for (std::size_t r = 0; r < R; ++r) {
      std::int32_t two;
      std::memcpy(&two, x + r * a.k_pad + 2 * p, 4);
      const auto b = reinterpret_cast<__m512bh>(_mm512_set1_epi32(two));
      lo[r] = _mm512_dpbf16_ps(lo[r], b, wl);
      hi[r] = _mm512_dpbf16_ps(hi[r], b, wh);
    }
  }
  for (std::size_t r = 0; r < R; ++r) {
    if (a.bias) {
      lo[r] = _mm512_add_ps(lo[r], _mm512_loadu_ps(a.bias));
      hi[r] = _mm512_add_ps(hi[r], _mm512_loadu_ps(a.bias + kHalf));
    }
    store_cols(a.y + r * a.ldy, lo[r], hi[r], a.ncols);
  }
}

template <std::size_t R>
ASSISTGEN_AVX512 void avx512_i8_unit(const UnitArgs& a) {
  __m512i lo[R], hi[R];
  for (std::size_t r = 0; r < R; ++r) lo[r] = hi[r] = _mm512_setzero_si512();
  const std::size_t groups = a.k_pad / 4;
  for (std::size_t g = 0; g < groups; ++g) {
    const __m512i wl = _mm512_load_si512(a.w + g * 128);
    const __m512i wh = _mm512_load_si512(a.w + g * 128 + 64);
    for (std::size_t r = 0; r < R; ++r) {
      std::int32_t four;
      std::memcpy(&four, a.xq + r * a.k_pad + g * 4, 4);
      const __m512i b = _mm512_set1_epi32(four);
      lo[r] = _mm512_dpbusd_epi32(lo[r], b, wl);
      hi[r] = _mm512_dpbusd_epi32(hi[r], b, wh);
    }
  }
  const __m512 sl = _mm512_loadu_ps(a.scale), sh = _mm512_loadu_ps(a.scale + kHalf);
  const __m512i ol = _mm512_loadu_si512(a.offset), oh = _mm512_loadu_si512(a.offset + kHalf);
  for (std::size_t r = 0; r < R; ++r) {
    const __m512 sx = _mm512_set1_ps(a.xs[r]);
    const __m512 vl = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo[r], ol));
    const __m512 vh = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi[r], oh));
    const __m512 fl = _mm512_mul_ps(sx, sl), fh = _mm512_mul_ps(sx, sh);
    __m512 yl, yh;
    if (a.bias) {
      yl = _mm512_fmadd_ps(vl, fl, _mm512_loadu_ps(a.bias));
      yh = _mm512_fmadd_ps(vh, fh, _mm512_loadu_ps(a.bias + kHalf));
    } else {
      yl = _mm512_mul_ps(vl, fl);
      yh = _mm512_mul_ps(vh, fh);
    }
    store_cols(a.y + r * a.ldy, yl, yh, a.ncols);
  }
}

template <template <std::size_t> class K>
void dispatch_rows(const UnitArgs& a, std::size_t rows) {
  switch (rows) {
    case 1: K<1>::run(a); break;
    case 2: K<2>::run(a); break;
    case 3: K<3>::run(a); break;
    case 4: K<4>::run(a); break;
    case 5: K<5>::run(a); break;
    case 6: K<6>::run(a); break;
    case 7: K<7>::run(a); break;
    default: K<8>::run(a); break;
  }
}
template <std::size_t R>
struct F32K {
  static void run(const UnitArgs& a) { avx512_float_unit<R, false>(a); }
};
template <std::size_t R>
struct Bf16K {
  static void run(const UnitArgs& a) { avx512_float_unit<R, true>(a); }
};
template <std::size_t R>
struct Bf16DpK {
  static void run(const UnitArgs& a) { avx512_bf16dp_unit<R>(a); }
};
template <std::size_t R>
struct I8K {
  static void run(const UnitArgs& a) { avx512_i8_unit<R>(a); }
};

// ---------------------------------------------------------------------------
// Dispatch.

Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("avx512bf16"))
    return Isa::avx512;
  return Isa::scalar;
}

std::atomic<int>& isa_slot() {
  static std::atomic<int> slot{[] {
    const char* env = std::getenv("ASSISTGEN_KERNELS");
    if (env && std::string_view(env) == "scalar") return static_cast<int>(Isa::scalar);
    return static_cast<int>(detect());
  }()};
  return slot;
}

// Rows [r0, r0 + rows) of unit u.
void run_unit(const PackedLinear& p, Isa isa, std::size_t u, const float* x, const std::uint8_t* xq,
              const float* xs, std::size_t r0, std::size_t rows, float* y) {
  const std::size_t elem = p.type == WeightType::f32 ? 4 : p.type == WeightType::i8 ? 1 : 2;
  const std::size_t xelem = p.type == WeightType::bf16 ? 2 : 1;
  UnitArgs a;
  a.w = p.data.data() + u * p.k_pad * kUnit * elem;
  a.k = p.k;
  a.k_pad = p.k_pad;
  a.x = x ? x + r0 * p.k : nullptr;
  a.xq = xq ? xq + r0 * p.k_pad * xelem : nullptr;
  a.xs = xs ? xs + r0 : nullptr;
  a.ldx = p.k;
  a.y = y + r0 * p.n + u * kUnit;
  a.ldy = p.n;
  a.bias = p.bias.empty() ? nullptr : p.bias.data() + u * kUnit;
  a.scale = p.scale.empty() ? nullptr : p.scale.data() + u * kUnit;
  a.offset = p.offset.empty() ? nullptr : p.offset.data() + u * kUnit;
  a.ncols = std::min(kUnit, p.n - u * kUnit);
  for (std::size_t done = 0; done < rows;) {
    const std::size_t t = std::min(kRows, rows - done);
    if (isa == Isa::avx512) {
      switch (p.type) {
        case WeightType::f32: dispatch_rows<F32K>(a, t); break;
        case WeightType::bf16: dispatch_rows<Bf16DpK>(a, t); break;
        case WeightType::bf16_f32: dispatch_rows<Bf16K>(a, t); break;
        case WeightType::i8: dispatch_rows<I8K>(a, t); break;
      }
    } else {
      switch (p.type) {
        case WeightType::f32: scalar_float_unit<false>(a, t); break;
        case WeightType::bf16: scalar_bf16dp_unit(a, t); break;
        case WeightType::bf16_f32: scalar_float_unit<true>(a, t); break;
        case WeightType::i8: scalar_i8_unit(a, t); break;
      }
    }
    done += t;
    if (a.x) a.x += t * a.ldx;
    if (a.xq) a.xq += t * a.k_pad * xelem;
    if (a.xs) a.xs += t;
    a.y += t * a.ldy;
  }
}

}  // namespace

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() { return static_cast<Isa>(isa_slot().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  if (isa == Isa::avx512 && detected_isa() != Isa::avx512) isa = Isa::scalar;
  isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

PackedLinear pack_linear(WeightType type, const float* w, std::size_t n, std::size_t k, const float* bias) {
  PackedLinear p;
  p.type = type;
  p.n = n;
  p.k = k;
  p.k_pad = type == WeightType::i8 ? (k + 3) / 4 * 4 : type == WeightType::bf16 ? (k + 1) / 2 * 2 : k;
  const std::size_t units = p.units(), cols = units * kUnit;
  if (bias) p.bias.assign(bias, bias + n), p.bias.resize(cols, 0.0f);
  const auto total = static_cast<std::ptrdiff_t>(n);
  switch (type) {
    case WeightType::f32: {
      p.data = AlignedBytes(cols * k * sizeof(float));
      std::memset(p.data.data(), 0, p.data.size());
      auto* d = reinterpret_cast<float*>(p.data.data());
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t j = 0; j < total; ++j)
        for (std::size_t kk = 0; kk < k; ++kk) d[f32_index(p, j, kk)] = w[j * k + kk];
      break;
    }
    case WeightType::bf16: {
      p.data = AlignedBytes(cols * p.k_pad * 2);
      std::memset(p.data.data(), 0, p.data.size());
      auto* d = reinterpret_cast<std::uint16_t*>(p.data.data());
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t j = 0; j < total; ++j)
        for (std::size_t kk = 0; kk < k; ++kk) d[bf16dp_index(p, j, kk)] = to_bf16(w[j * k + kk]);
      break;
    }
    case WeightType::bf16_f32: {
      p.data = AlignedBytes(cols * k * 2);
      std::memset(p.data.data(), 0, p.data.size());
      auto* d = reinterpret_cast<std::uint16_t*>(p.data.data());
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t j = 0; j < total; ++j)
        for (std::size_t kk = 0; kk < k; ++kk) d[bf16_index(p, j, kk)] = to_bf16(w[j * k + kk]);
      break;
    }
    case WeightType::i8: {
      p.data = AlignedBytes(cols * p.k_pad);
      std::memset(p.data.data(), 0, p.data.size());
      p.scale.assign(cols, 0.0f);
      p.offset.assign(cols, 0);
      auto* d = reinterpret_cast<std::int8_t*>(p.data.data());
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t j = 0; j < total; ++j) {
        const float* row = w + j * k;
        float amax = 0.0f;
        for (std::size_t kk = 0; kk < k; ++kk) amax = std::max(amax, std::abs(row[kk]));
        const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
        std::int32_t qsum = 0;
        for (std::size_t kk = 0; kk < k; ++kk) {
          const float q = std::clamp(std::nearbyint(row[kk] / s), -127.0f, 127.0f);
          d[i8_index(p, j, kk)] = static_cast<std::int8_t>(q);
          qsum += static_cast<std::int32_t>(q);
        }
        p.scale[j] = s;
        p.offset[j] = 128 * qsum;
      }
      break;
    }
  }
  return p;
}

float packed_weight(const PackedLinear& p, std::size_t j, std::size_t kk) {
  switch (p.type) {
    case WeightType::f32: return reinterpret_cast<const float*>(p.data.data())[f32_index(p, j, kk)];
    case WeightType::bf16:
      return from_bf16(reinterpret_cast<const std::uint16_t*>(p.data.data())[bf16dp_index(p, j, kk)]);
    case WeightType::bf16_f32:
      return from_bf16(reinterpret_cast<const std::uint16_t*>(p.data.data())[bf16_index(p, j, kk)]);
    case WeightType::i8:
      return static_cast<float>(reinterpret_cast<const std::int8_t*>(p.data.data())[i8_index(p, j, kk)]) *
             p.scale[j];
  }
  return 0.0f;
}

float quantize_row(const float* x, std::size_t k, std::size_t k_pad, std::uint8_t* out) {
  float amax = 0.0f;
  for (std::size_t i = 0; i < k; ++i) amax = std::max(amax, std::abs(x[i]));
  const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  for (std::size_t i = 0; i < k; ++i) {
    const float q = std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f);
    out[i] = static_cast<std::uint8_t>(static_cast<int>(q) + 128);
  }
  std::fill(out + k, out + k_pad, std::uint8_t{128});
  return s;
}

void bf16_row(const float* x, std::size_t k, std::size_t k_pad, std::uint16_t* out) {
  for (std::size_t i = 0; i < k; ++i) out[i] = to_bf16(x[i]);
  std::fill(out + k, out + k_pad, std::uint16_t{0});
}

void linear(const PackedLinear& p, const float* x, std::size_t m, float* y, LinearScratch& scratch,
            int max_threads) {
  const std::uint8_t* xq = nullptr;
  const float* xs = nullptr;
  if (p.type == WeightType::bf16) {
    if (scratch.q.size() < m * p.k_pad * 2) scratch.q.resize(m * p.k_pad * 2);
    auto* xb = reinterpret_cast<std::uint16_t*>(scratch.q.data());
    for (std::size_t r = 0; r < m; ++r) bf16_row(x + r * p.k, p.k, p.k_pad, xb + r * p.k_pad);
    xq = scratch.q.data();
    x = nullptr;
  } else if (p.type == WeightType::i8) {
    if (scratch.q.size() < m * p.k_pad) scratch.q.resize(m * p.k_pad);
    if (scratch.q_scale.size() < m) scratch.q_scale.resize(m);
    for (std::size_t r = 0; r < m; ++r)
      scratch.q_scale[r] = quantize_row(x + r * p.k, p.k, p.k_pad, scratch.q.data() + r * p.k_pad);
    xq = scratch.q.data();
    xs = scratch.q_scale.data();
    x = nullptr;
  }
  const Isa isa = active_isa();
  const std::size_t units = p.units();
  // Work in weight-stream equivalents: a pass over the weights, plus the
  // arithmetic of the rows (about one pass per 8 rows).
  const std::size_t work = p.data.size() * (1 + m / kRows);
  const std::size_t by_work = std::max<std::size_t>(1, work / (std::size_t{1} << 20));
  const int threads = static_cast<int>(std::min({static_cast<std::size_t>(std::max(max_threads, 1)), by_work, units}));
  if (threads <= 1) {
    for (std::size_t u = 0; u < units; ++u) run_unit(p, isa, u, x, xq, xs, 0, m, y);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const auto t = static_cast<std::size_t>(omp_get_thread_num());
    const auto nt = static_cast<std::size_t>(omp_get_num_threads());
    const std::size_t begin = units * t / nt, end = units * (t + 1) / nt;
    for (std::size_t u = begin; u < end; ++u) run_unit(p, isa, u, x, xq, xs, 0, m, y);
  }
}

namespace {
constexpr std::size_t kLanes = 16;
float fold(float (&acc)[kLanes]) {
  for (std::size_t w = kLanes / 2; w > 0; w /= 2)
    for (std::size_t l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}
}  // namespace

float dot(const float* a, const float* b, std::size_t n) {
  float acc[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  for (std::size_t l = 0; i + l < n; ++l) acc[l] += a[i + l] * b[i + l];
  return fold(acc);
}

float sum_squares(const float* a, std::size_t n) { return dot(a, a, n); }

float sum(const float* a, std::size_t n) {
  float acc[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) acc[l] += a[i + l];
  for (std::size_t l = 0; i + l < n; ++l) acc[l] += a[i + l];
  return fold(acc);
}

}  // namespace assistgen::cpu::detail
