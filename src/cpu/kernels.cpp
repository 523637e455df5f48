// The batch-invariant kernels of kernels.hpp: packing, the AVX-512 kernels,
// the scalar fallback (same operations, same order) and the dispatcher.
#include "kernels.hpp"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string_view>
#include <utility>

#include "../core/float_exp.hpp"
#include "kernels_q4.hpp"
#include "matmul_amx.hpp"
#include "parallel.hpp"

// GCC 12 warns about _mm512_undefined_ps() inside its own intrinsic headers
// when they are inlined (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace assistgen::cpu::detail {

namespace {

// Rows per register tile: 14 rows x 2 zmm = 28 accumulators, plus the two
// weight vectors and a broadcast, fill the 32 zmm registers. One pass covers
// every verification of up to K = 13 drafted tokens.
constexpr std::size_t kMaxRows = 14;
// Tiles of 3 or more rows prefetch the unit's weights this far ahead: with
// that much arithmetic per cache line the out-of-order window no longer keeps
// enough DRAM reads in flight by itself (1 and 2 rows stream at full speed on
// the hardware prefetcher alone, and a software prefetch only costs them).
// Into L2 (T1), not L1: on an AMD EPYC (Zen 4) with 2 threads, the weights
// of the demo target took 4-5% less time for 5, 8 and 14 rows and 12% less
// for 16 (int8 and f32 alike) than with T0, whose L1 fills cap the reads in
// flight.
constexpr std::size_t kPrefetchBytes = 8192;
constexpr std::size_t kPrefetchMinRows = 3;

std::uint16_t to_bf16(float f) {
  const auto u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<std::uint16_t>((u >> 16) | 0x40);         // quiet NaN
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);  // nearest, ties to even
  return static_cast<std::uint16_t>(rounded >> 16);
}

float from_bf16(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// k per step of a unit (each step: two halves of 16 columns, 64 bytes each;
// bf16_f32 32 bytes each): f32 1, bf16 2 (pairs), bf16_f32 1, int8 4 (quads).
std::size_t step_k(WeightType t) { return t == WeightType::bf16 ? 2 : t == WeightType::i8 ? 4 : 1; }
// k_pad is a multiple of this: whole AMX tiles of 16 k steps for bf16 and
// int8 (model dimensions are multiples of 64, so this costs them nothing).
std::size_t tile_k(WeightType t) {
  return t == WeightType::bf16 || t == WeightType::i8 ? 16 * step_k(t) : 1;
}
// Whether the AVX-512 reductions and conversions run (amx uses them too).
bool vector_isa(Isa isa) { return isa == Isa::avx512 || isa == Isa::amx; }
std::size_t elem_size(WeightType t) {
  return t == WeightType::f32 ? 4 : t == WeightType::i8 ? 1 : 2;
}
std::size_t unit_bytes(const PackedLinear& p) { return p.k_pad * kUnit * elem_size(p.type); }

// Element offset of column c (0..31) of a unit at k step kk, from the unit's
// start: step, then half (columns 0-15, 16-31), then column, then the
// position inside the step.
std::size_t unit_index(WeightType t, std::size_t c, std::size_t kk) {
  const std::size_t sk = step_k(t);
  return ((kk / sk * 2 + c / kBlock) * kBlock + c % kBlock) * sk + kk % sk;
}
std::size_t packed_index(const PackedLinear& p, std::size_t j, std::size_t kk) {
  return (j / kUnit) * p.k_pad * kUnit + unit_index(p.type, j % kUnit, kk);
}

struct TileArgs {
  const std::byte* w;  // the tile's unit
  std::size_t k, k_pad;
  // Activations as a panel of dwords, k step major: the tile's row r at step
  // s is xp[s * ldp + r] (f32: the value; bf16: a pair; int8: a quad). All
  // rows of a step share a cache line: separate rows, k * 4 bytes apart,
  // would all map to the same L1 set and evict each other.
  const std::uint32_t* xp;
  std::size_t ldp;
  const float* xs;  // int8: per-row scales
  float* y;         // output of the tile's first row and column, row stride ldy
  std::size_t ldy;
  const float* bias;           // at the tile's first column, or null
  const float* scale;          // int8: at the tile's first column
  const std::int32_t* offset;  // int8: at the tile's first column
  std::size_t ncols;           // valid columns from the tile's first (may exceed the tile)
};

// ---------------------------------------------------------------------------
// Scalar: the same operations in the same order, one element at a time.

// VDPBF16PS's arithmetic: denormal inputs and results are zero.
float flush(float v) { return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v; }

// amx_order: bf16 in the AMX path's order (kernels.hpp), else VDPBF16PS's.
void scalar_tile(WeightType type, const TileArgs& a, std::size_t rows, bool amx_order) {
  const std::size_t cols = std::min(a.ncols, kUnit);
  const std::byte* w = a.w;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      float out;
      switch (type) {
        case WeightType::f32:
        case WeightType::bf16_f32: {
          float acc = 0.0f;
          for (std::size_t kk = 0; kk < a.k; ++kk) {
            const float xv = std::bit_cast<float>(a.xp[kk * a.ldp + r]);
            float wv;
            if (type == WeightType::f32) {
              std::memcpy(&wv, w + unit_index(type, c, kk) * 4, 4);
            } else {
              std::uint16_t h;
              std::memcpy(&h, w + unit_index(type, c, kk) * 2, 2);
              wv = from_bf16(h);
            }
            acc = std::fma(xv, wv, acc);
          }
          out = a.bias ? acc + a.bias[c] : acc;
          break;
        }
        case WeightType::bf16: {
          float acc = 0.0f;
          if (amx_order) {
            auto x_at = [&](std::size_t kk) {
              std::uint16_t h;
              std::memcpy(&h, reinterpret_cast<const std::byte*>(a.xp + (kk / 2) * a.ldp + r) + kk % 2 * 2, 2);
              return flush(from_bf16(h));
            };
            auto w_at = [&](std::size_t kk) {
              std::uint16_t h;
              std::memcpy(&h, w + unit_index(type, c, kk) * 2, 2);
              return flush(from_bf16(h));
            };
            for (std::size_t t = 0; t < a.k_pad; t += tile_k(type)) {
              float even = 0.0f, odd = 0.0f;
              for (std::size_t kk = t; kk < t + tile_k(type); kk += 2) {
                // (TDPBF16PS's FMA: one rounding, also where a product underflows)
                even = flush(std::fma(x_at(kk), w_at(kk), even));
                odd = flush(std::fma(x_at(kk + 1), w_at(kk + 1), odd));
              }
              acc = flush(acc + flush(even + odd));
            }
            out = a.bias ? acc + a.bias[c] : acc;
            break;
          }
          for (std::size_t kk = 0; kk < a.k_pad; kk += 2) {
            std::uint16_t wp[2], x[2];
            std::memcpy(wp, w + unit_index(type, c, kk) * 2, 4);
            std::memcpy(x, a.xp + (kk / 2) * a.ldp + r, 4);
            acc = flush(acc + flush(from_bf16(x[1])) * flush(from_bf16(wp[1])));
            acc = flush(acc + flush(from_bf16(x[0])) * flush(from_bf16(wp[0])));
          }
          out = a.bias ? acc + a.bias[c] : acc;
          break;
        }
        case WeightType::i8: {
          std::int32_t acc = 0;
          const auto* wq = reinterpret_cast<const std::int8_t*>(w);
          for (std::size_t kk = 0; kk < a.k_pad; ++kk) {
            std::uint8_t x[4];
            std::memcpy(x, a.xp + (kk / 4) * a.ldp + r, 4);
            acc += static_cast<std::int32_t>(x[kk % 4]) * wq[unit_index(type, c, kk)];
          }
          const float v = static_cast<float>(acc - a.offset[c]);
          const float sxw = a.xs[r] * a.scale[c];
          out = a.bias ? std::fma(v, sxw, a.bias[c]) : v * sxw;
          break;
        }
        case WeightType::grouped:  // kernels_q4.cpp
          out = 0.0f;
          break;
      }
      a.y[r * a.ldy + c] = out;
    }
}

// ---------------------------------------------------------------------------
// AVX-512: a tile of R rows x C blocks, R * C <= 16 accumulators.

#define ASSISTGEN_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,fma")))

// Lanes [0, min(left, 16)) of a zmm of floats.
ASSISTGEN_AVX512 inline __mmask16 tail_mask(std::size_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
}

ASSISTGEN_AVX512 inline void store_block(float* y, __m512 v, std::size_t ncols) {
  if (ncols >= kBlock)
    _mm512_storeu_ps(y, v);
  else
    _mm512_mask_storeu_ps(y, tail_mask(ncols), v);
}

template <bool kInt>
struct AccType {
  using type = __m512;
};
template <>
struct AccType<true> {
  using type = __m512i;
};

template <WeightType T, std::size_t R>
ASSISTGEN_AVX512 void avx512_tile(const TileArgs& a) {
  constexpr std::size_t C = 2;
  constexpr bool kInt = T == WeightType::i8;
  using Acc = typename AccType<kInt>::type;
  Acc acc[R][C];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (std::size_t c = 0; c < C; ++c) {
      if constexpr (kInt)
        acc[r][c] = _mm512_setzero_si512();
      else
        acc[r][c] = _mm512_setzero_ps();
    }
  constexpr std::size_t sk = T == WeightType::bf16 ? 2 : T == WeightType::i8 ? 4 : 1;
  constexpr std::size_t row_bytes = T == WeightType::bf16_f32 ? 32 : 64;
  const std::size_t steps = a.k_pad / sk;
  constexpr std::size_t step_bytes = 2 * row_bytes;
  // An address, not a pointer into the buffer: the last unit's prefetches
  // run past its end, which a prefetch allows and pointer arithmetic does not.
  const std::uintptr_t pf = reinterpret_cast<std::uintptr_t>(a.w) + kPrefetchBytes;
  for (std::size_t s = 0; s < steps; ++s) {
    const std::uint32_t* xs = a.xp + s * a.ldp;
    if constexpr (R >= kPrefetchMinRows) {
#pragma GCC unroll 4
      for (std::size_t l = 0; l < step_bytes; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(pf + s * step_bytes + l), _MM_HINT_T1);
    }
    if constexpr (T == WeightType::f32 || T == WeightType::bf16_f32) {
      __m512 w[C];
#pragma GCC unroll 16
      for (std::size_t c = 0; c < C; ++c) {
        const std::byte* p = a.w + (2 * s + c) * row_bytes;
        if constexpr (T == WeightType::f32)
          w[c] = _mm512_load_ps(reinterpret_cast<const float*>(p));
        else
          w[c] = _mm512_castsi512_ps(_mm512_slli_epi32(
              _mm512_cvtepu16_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(p))), 16));
      }
#pragma GCC unroll 16
      for (std::size_t r = 0; r < R; ++r) {
        const __m512 b = _mm512_set1_ps(std::bit_cast<float>(xs[r]));
#pragma GCC unroll 16
        for (std::size_t c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(b, w[c], acc[r][c]);
      }
    } else {
      __m512i w[C];
#pragma GCC unroll 16
      for (std::size_t c = 0; c < C; ++c) w[c] = _mm512_load_si512(a.w + (2 * s + c) * 64);
#pragma GCC unroll 16
      for (std::size_t r = 0; r < R; ++r) {
        const __m512i b = _mm512_set1_epi32(static_cast<int>(xs[r]));
#pragma GCC unroll 16
        for (std::size_t c = 0; c < C; ++c) {
          if constexpr (T == WeightType::bf16)
            acc[r][c] = _mm512_dpbf16_ps(acc[r][c], reinterpret_cast<__m512bh>(b),
                                         reinterpret_cast<__m512bh>(w[c]));
          else
            acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], b, w[c]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (std::size_t c = 0; c < C; ++c) {
    if (c * kBlock >= a.ncols) break;
    const std::size_t nc = a.ncols - c * kBlock;
    if constexpr (kInt) {
      const __m512 sw = _mm512_loadu_ps(a.scale + c * kBlock);
      const __m512i off = _mm512_loadu_si512(a.offset + c * kBlock);
#pragma GCC unroll 16
      for (std::size_t r = 0; r < R; ++r) {
        const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][c], off));
        const __m512 f = _mm512_mul_ps(_mm512_set1_ps(a.xs[r]), sw);
        const __m512 y = a.bias ? _mm512_fmadd_ps(v, f, _mm512_loadu_ps(a.bias + c * kBlock))
                                : _mm512_mul_ps(v, f);
        store_block(a.y + r * a.ldy + c * kBlock, y, nc);
      }
    } else {
#pragma GCC unroll 16
      for (std::size_t r = 0; r < R; ++r) {
        __m512 y = acc[r][c];
        if (a.bias) y = _mm512_add_ps(y, _mm512_loadu_ps(a.bias + c * kBlock));
        store_block(a.y + r * a.ldy + c * kBlock, y, nc);
      }
    }
  }
}

// Activation conversion, vectorized: the same operations as quantize_row's
// and bf16_row's scalar loops, element for element, so the same bits.

// quantize_row's largest |x| (NaN skipped) and 127 / it, as a vector.
struct Avx512RowScale {
  float s;
  __m512 inv;
};
ASSISTGEN_AVX512 inline Avx512RowScale avx512_row_scale(const float* x, std::size_t k) {
  __m512 vmax = _mm512_setzero_ps();
  for (std::size_t i = 0; i < k; i += 16) {
    const __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(tail_mask(k - i), x + i));
    vmax = _mm512_max_ps(v, vmax);  // a NaN in v gives vmax, as std::max(amax, NaN) does
  }
  const float amax = _mm512_reduce_max_ps(vmax);  // max is exact in any order
  return {amax > 0.0f ? amax / 127.0f : 1.0f, _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f)};
}
// The codes q (in [-127, 127], NaN 0) of the lanes of mk at x; 0 elsewhere.
ASSISTGEN_AVX512 inline __m512i avx512_codes(const float* x, __mmask16 mk, __m512 inv) {
  __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x), inv),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(q, q, _CMP_ORD_Q), q);  // NaN -> 0
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
  return _mm512_cvtps_epi32(q);
}

ASSISTGEN_AVX512 float avx512_quantize_row(const float* x, std::size_t k, std::size_t k_pad,
                                           std::uint8_t* out) {
  const Avx512RowScale rs = avx512_row_scale(x, k);
  const __m512i bias = _mm512_set1_epi32(128);
  for (std::size_t i = 0; i < k; i += 16) {
    const __mmask16 mk = tail_mask(k - i);
    _mm_mask_storeu_epi8(out + i, mk,
                         _mm512_cvtepi32_epi8(_mm512_add_epi32(avx512_codes(x + i, mk, rs.inv), bias)));
  }
  std::fill(out + k, out + k_pad, std::uint8_t{128});
  return rs.s;
}

// avx512_quantize_row's codes stored as q (s8) instead of q + 128, and each
// group's sum of codes (exact in int32, then a float).
ASSISTGEN_AVX512 float avx512_quantize_groups(const float* x, std::size_t k, std::size_t k_pad,
                                              std::size_t group, std::int8_t* out, float* sums) {
  const Avx512RowScale rs = avx512_row_scale(x, k);
  for (std::size_t g0 = 0; g0 < k_pad; g0 += group) {
    __m512i sum = _mm512_setzero_si512();
    for (std::size_t i = g0; i < g0 + group; i += 16) {
      // Past k (the padding, and a group's tail when group is not a
      // multiple of 16) the codes are 0, as quantize_row's 128 ^ 0x80.
      const __mmask16 mk = i < k ? tail_mask(std::min(k - i, g0 + group - i)) : __mmask16{0};
      const __m512i qi = _mm512_maskz_mov_epi32(mk, avx512_codes(x + i, mk, rs.inv));
      sum = _mm512_add_epi32(sum, qi);
      _mm_mask_storeu_epi8(out + i, tail_mask(g0 + group - i), _mm512_cvtepi32_epi8(qi));
    }
    sums[g0 / group] = static_cast<float>(_mm512_reduce_add_epi32(sum));
  }
  return rs.s;
}

ASSISTGEN_AVX512 void avx512_bf16_row(const float* x, std::size_t k, std::size_t k_pad,
                                      std::uint16_t* out) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000),
                half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1),
                quiet = _mm512_set1_epi32(0x40);
  for (std::size_t i = 0; i < k; i += 16) {
    const __mmask16 mk = tail_mask(k - i);
    const __m512i u = _mm512_maskz_loadu_epi32(mk, x + i);
    // to_bf16(): nearest, ties to even; NaN quieted.
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, half), lsb), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), quiet));
    _mm256_mask_storeu_epi16(out + i, mk, _mm512_cvtepi32_epi16(r));
  }
  std::fill(out + k, out + k_pad, std::uint16_t{0});
}

// xp[s * m + r] = rows[r * ld + s]: 16 rows x 16 steps at a time, loaded as
// 16 vectors (one a row), transposed in registers (32-bit, then 64-bit
// unpacks give each 128-bit lane 4 rows of one step; 128-bit shuffles gather
// the 4 lanes of a step) and stored as one vector a step, masked to the rows.
ASSISTGEN_AVX512 void avx512_panel_words(const std::uint32_t* rows, std::size_t ld, std::size_t m,
                                         std::size_t steps, std::uint32_t* xp) {
  for (std::size_t r0 = 0; r0 < m; r0 += 16) {
    const std::size_t nr = std::min<std::size_t>(16, m - r0);
    const __mmask16 rmask = tail_mask(nr);
    for (std::size_t s0 = 0; s0 < steps; s0 += 16) {
      const std::size_t ns = std::min<std::size_t>(16, steps - s0);
      const __mmask16 smask = tail_mask(ns);
      __m512i v[16];
#pragma GCC unroll 16
      for (std::size_t i = 0; i < 16; ++i)
        v[i] = i < nr ? _mm512_maskz_loadu_epi32(smask, rows + (r0 + i) * ld + s0)
                      : _mm512_setzero_si512();
      // c[g][q], lane L: rows 4g..4g+3 of step 4L + q.
      __m512i c[4][4];
#pragma GCC unroll 4
      for (std::size_t g = 0; g < 4; ++g) {
        const __m512i t0 = _mm512_unpacklo_epi32(v[4 * g], v[4 * g + 1]);
        const __m512i t1 = _mm512_unpackhi_epi32(v[4 * g], v[4 * g + 1]);
        const __m512i t2 = _mm512_unpacklo_epi32(v[4 * g + 2], v[4 * g + 3]);
        const __m512i t3 = _mm512_unpackhi_epi32(v[4 * g + 2], v[4 * g + 3]);
        c[g][0] = _mm512_unpacklo_epi64(t0, t2);
        c[g][1] = _mm512_unpackhi_epi64(t0, t2);
        c[g][2] = _mm512_unpacklo_epi64(t1, t3);
        c[g][3] = _mm512_unpackhi_epi64(t1, t3);
      }
#pragma GCC unroll 4
      for (std::size_t q = 0; q < 4; ++q) {
        const __m512i x0 = _mm512_shuffle_i32x4(c[0][q], c[1][q], 0x44);
        const __m512i x1 = _mm512_shuffle_i32x4(c[0][q], c[1][q], 0xee);
        const __m512i x2 = _mm512_shuffle_i32x4(c[2][q], c[3][q], 0x44);
        const __m512i x3 = _mm512_shuffle_i32x4(c[2][q], c[3][q], 0xee);
        const __m512i out[4] = {
            _mm512_shuffle_i32x4(x0, x2, 0x88), _mm512_shuffle_i32x4(x0, x2, 0xdd),
            _mm512_shuffle_i32x4(x1, x3, 0x88), _mm512_shuffle_i32x4(x1, x3, 0xdd)};
#pragma GCC unroll 4
        for (std::size_t l = 0; l < 4; ++l)
          if (4 * l + q < ns)
            _mm512_mask_storeu_epi32(xp + (s0 + 4 * l + q) * m + r0, rmask, out[l]);
      }
    }
  }
}

using TileFn = void (*)(const TileArgs&);

// kTiles[type][R - 1].
template <WeightType T, std::size_t... I>
constexpr std::array<TileFn, kMaxRows> row_table(std::index_sequence<I...>) {
  return {&avx512_tile<T, I + 1>...};
}
const std::array<std::array<TileFn, kMaxRows>, 4> kTiles{
    row_table<WeightType::f32>(std::make_index_sequence<kMaxRows>{}),
    row_table<WeightType::bf16>(std::make_index_sequence<kMaxRows>{}),
    row_table<WeightType::bf16_f32>(std::make_index_sequence<kMaxRows>{}),
    row_table<WeightType::i8>(std::make_index_sequence<kMaxRows>{})};

// ---------------------------------------------------------------------------
// Dispatch.

Isa detect() {
  __builtin_cpu_init();
  if (amx_usable()) return Isa::amx;  // (AMX CPUs have the AVX-512 below)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("avx512bf16"))
    return Isa::avx512;
  return Isa::scalar;
}

// isa if this CPU runs it, else the next one down (amx -> avx512 -> scalar).
Isa best_below(Isa isa) {
  if (isa == Isa::amx && !isa_available(isa)) isa = Isa::avx512;
  if (isa == Isa::avx512 && !isa_available(isa)) isa = Isa::scalar;
  return isa;
}

std::atomic<int>& isa_slot() {
  static std::atomic<int> slot{[] {
    const char* env = std::getenv("ASSISTGEN_KERNELS");
    for (Isa isa : {Isa::scalar, Isa::avx512, Isa::amx, Isa::scalar_amx})
      if (env && std::string_view(env) == isa_name(isa)) return static_cast<int>(best_below(isa));
    return static_cast<int>(detected_isa());
  }()};
  return slot;
}

// All m rows for units [u0, u1): rows in balanced passes of at most 8.
void run_units(const PackedLinear& p, Isa isa, std::size_t u0, std::size_t u1,
               const std::uint32_t* xp, const float* xs, std::size_t m, float* y) {
  const std::size_t passes = (m + kMaxRows - 1) / kMaxRows;
  const std::size_t rows_per_pass = (m + passes - 1) / passes;
  const std::size_t ub = unit_bytes(p);
  for (std::size_t u = u0; u < u1; ++u) {
    for (std::size_t r0 = 0; r0 < m; r0 += rows_per_pass) {
      const std::size_t rows = std::min(rows_per_pass, m - r0);
      TileArgs a;
      a.w = p.data.data() + u * ub;
      a.k = p.k;
      a.k_pad = p.k_pad;
      a.xp = xp + r0;
      a.ldp = m;
      a.xs = xs ? xs + r0 : nullptr;
      a.y = y + r0 * p.n + u * kUnit;
      a.ldy = p.n;
      a.bias = p.bias.empty() ? nullptr : p.bias.data() + u * kUnit;
      a.scale = p.scale.empty() ? nullptr : p.scale.data() + u * kUnit;
      a.offset = p.offset.empty() ? nullptr : p.offset.data() + u * kUnit;
      a.ncols = p.n - u * kUnit;
      if (vector_isa(isa))
        kTiles[static_cast<std::size_t>(p.type)][rows - 1](a);
      else
        scalar_tile(p.type, a, rows, isa == Isa::scalar_amx);
    }
  }
}

}  // namespace

namespace {

constexpr std::size_t kHuge = std::size_t{2} << 20;
// Buffers from kShared up to kHuge (a small model's layers, a draft's) share
// slabs of kSlab bytes, 2 MiB-aligned and advised for huge pages, instead of
// each sitting on 4 KiB pages of its own. Measured on an AMD EPYC (Zen 4), 2
// threads, the demo target's 29 matmuls (bf16; its qkv and output
// projections are below 2 MiB) with every buffer on huge pages against only
// those of 2 MiB and more, both copies in one process, interleaved: 1-6% less
// time for 1-14 rows in every run. Under AddressSanitizer every buffer is
// its own allocation, so that overflows between them stay visible.
constexpr std::size_t kShared = std::size_t{64} << 10;
constexpr std::size_t kSlab = std::size_t{32} << 20;

std::byte* huge_block(std::size_t bytes) {  // bytes: a multiple of kHuge
  void* p = std::aligned_alloc(kHuge, bytes);
  if (!p) throw std::bad_alloc();
  // Advice only: where transparent huge pages are off it changes nothing.
  madvise(p, bytes, MADV_HUGEPAGE);
  return static_cast<std::byte*>(p);
}

// The slabs by base address, with the bytes handed out from each and the
// buffers still alive in it. New buffers go to the open slab; a slab whose
// buffers are all freed is released, so nothing stays held once every
// model is gone.
struct Slabs {
  struct Slab {
    std::size_t used = 0, live = 0;
  };
  std::mutex mu;
  std::map<std::byte*, Slab> slabs;
  std::byte* open = nullptr;
};
Slabs& slabs() {
  static Slabs* const s = new Slabs;  // never destroyed: models may outlive static destructors
  return *s;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUseSlabs = false;
#else
constexpr bool kUseSlabs = true;
#endif

}  // namespace

std::byte* allocate_bytes(std::size_t n) {
  if (n >= kHuge) return huge_block((n + kHuge - 1) / kHuge * kHuge);
  const std::size_t size = (n + 63) / 64 * 64;
  if (!kUseSlabs || n < kShared) {
    void* p = std::aligned_alloc(64, size);
    if (!p) throw std::bad_alloc();
    return static_cast<std::byte*>(p);
  }
  Slabs& s = slabs();
  const std::lock_guard lock(s.mu);
  Slabs::Slab* slab = s.open ? &s.slabs.at(s.open) : nullptr;
  if (!slab || slab->used + size > kSlab) {
    std::byte* const base = huge_block(kSlab);
    try {
      slab = &s.slabs.emplace(base, Slabs::Slab{}).first->second;
    } catch (...) {
      std::free(base);
      throw;
    }
    s.open = base;  // the previous open slab has live buffers (else it was released)
  }
  std::byte* const p = s.open + slab->used;
  slab->used += size;
  ++slab->live;
  return p;
}

std::size_t shared_slabs() {
  Slabs& s = slabs();
  const std::lock_guard lock(s.mu);
  return s.slabs.size();
}

void free_bytes(std::byte* p) {
  if (!p) return;
  if (kUseSlabs) {
    Slabs& s = slabs();
    const std::lock_guard lock(s.mu);
    auto it = s.slabs.upper_bound(p);
    if (it != s.slabs.begin() && p < std::prev(it)->first + kSlab) {
      --it;
      if (--it->second.live == 0) {
        if (it->first == s.open) s.open = nullptr;
        std::free(it->first);
        s.slabs.erase(it);
      }
      return;
    }
  }
  std::free(p);
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

bool isa_available(Isa isa) {
  switch (isa) {
    case Isa::scalar:
    case Isa::scalar_amx:
      return true;
    case Isa::avx512:
      return detected_isa() != Isa::scalar;
    case Isa::amx:
      return detected_isa() == Isa::amx;
  }
  return false;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx512:
      return "avx512";
    case Isa::amx:
      return "amx";
    case Isa::scalar_amx:
      return "scalar_amx";
  }
  return "?";
}

Isa active_isa() { return static_cast<Isa>(isa_slot().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  isa = best_below(isa);
  isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

PackedLinear pack_linear(WeightType type, const float* w, std::size_t n, std::size_t k,
                         const float* bias) {
  if (type == WeightType::grouped)
    return pack_grouped(io::quantize_int4(std::span<const float>(w, n * k), n, k), bias);
  PackedLinear p;
  p.type = type;
  p.n = n;
  p.k = k;
  const std::size_t tk = tile_k(type);
  p.k_pad = (k + tk - 1) / tk * tk;
  const std::size_t cols = p.units() * kUnit;
  if (bias) p.bias.assign(bias, bias + n), p.bias.resize(cols, 0.0f);
  p.data = AlignedBytes(p.units() * unit_bytes(p));
  std::memset(p.data.data(), 0, p.data.size());
  const auto total = static_cast<std::ptrdiff_t>(n);
  if (type == WeightType::i8) {
    p.scale.assign(cols, 0.0f);
    p.offset.assign(cols, 0);
  }
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t jj = 0; jj < total; ++jj) {
    const auto j = static_cast<std::size_t>(jj);
    const float* row = w + j * k;
    switch (type) {
      case WeightType::f32: {
        auto* d = reinterpret_cast<float*>(p.data.data());
        for (std::size_t kk = 0; kk < k; ++kk) d[packed_index(p, j, kk)] = row[kk];
        break;
      }
      case WeightType::bf16:
      case WeightType::bf16_f32: {
        auto* d = reinterpret_cast<std::uint16_t*>(p.data.data());
        for (std::size_t kk = 0; kk < k; ++kk) d[packed_index(p, j, kk)] = to_bf16(row[kk]);
        break;
      }
      case WeightType::grouped:
        break;
      case WeightType::i8: {
        auto* d = reinterpret_cast<std::int8_t*>(p.data.data());
        float amax = 0.0f;
        for (std::size_t kk = 0; kk < k; ++kk) amax = std::max(amax, std::abs(row[kk]));
        const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
        std::int32_t qsum = 0;
        for (std::size_t kk = 0; kk < k; ++kk) {
          const float q = std::clamp(std::nearbyint(row[kk] / s), -127.0f, 127.0f);
          d[packed_index(p, j, kk)] = static_cast<std::int8_t>(q);
          qsum += static_cast<std::int32_t>(q);
        }
        p.scale[j] = s;
        p.offset[j] = 128 * qsum;
        break;
      }
    }
  }
  return p;
}

float packed_weight(const PackedLinear& p, std::size_t j, std::size_t kk) {
  if (p.type == WeightType::grouped) return grouped_weight(p, j, kk);
  const std::size_t i = packed_index(p, j, kk);
  switch (p.type) {
    case WeightType::f32:
      return reinterpret_cast<const float*>(p.data.data())[i];
    case WeightType::bf16:
    case WeightType::bf16_f32:
      return from_bf16(reinterpret_cast<const std::uint16_t*>(p.data.data())[i]);
    case WeightType::i8:
      return static_cast<float>(reinterpret_cast<const std::int8_t*>(p.data.data())[i]) *
             p.scale[j];
    case WeightType::grouped:
      break;
  }
  return 0.0f;
}

float quantize_row(const float* x, std::size_t k, std::size_t k_pad, std::uint8_t* out) {
  if (vector_isa(active_isa())) return avx512_quantize_row(x, k, k_pad, out);
  float amax = 0.0f;
  for (std::size_t i = 0; i < k; ++i) amax = std::max(amax, std::abs(x[i]));  // NaN: skipped
  const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  for (std::size_t i = 0; i < k; ++i) {
    float q = std::nearbyint(x[i] * inv);
    if (std::isnan(q)) q = 0.0f;  // NaN, or an infinity against amax = inf
    q = std::clamp(q, -127.0f, 127.0f);
    out[i] = static_cast<std::uint8_t>(static_cast<int>(q) + 128);
  }
  std::fill(out + k, out + k_pad, std::uint8_t{128});
  return s;
}

float quantize_groups(const float* x, std::size_t k, std::size_t k_pad, std::size_t group,
                      std::int8_t* out, float* sums) {
  if (vector_isa(active_isa())) return avx512_quantize_groups(x, k, k_pad, group, out, sums);
  auto* u = reinterpret_cast<std::uint8_t*>(out);
  const float s = quantize_row(x, k, k_pad, u);
  for (std::size_t i = 0; i < k_pad; ++i) u[i] ^= 0x80u;  // q + 128 as u8 -> q as s8
  for (std::size_t g = 0; g < k_pad / group; ++g) {
    std::int32_t sum = 0;
    for (std::size_t i = g * group; i < (g + 1) * group; ++i) sum += out[i];
    sums[g] = static_cast<float>(sum);
  }
  return s;
}

void bf16_row(const float* x, std::size_t k, std::size_t k_pad, std::uint16_t* out) {
  if (vector_isa(active_isa())) return avx512_bf16_row(x, k, k_pad, out);
  for (std::size_t i = 0; i < k; ++i) out[i] = to_bf16(x[i]);
  std::fill(out + k, out + k_pad, std::uint16_t{0});
}

const std::uint32_t* panel_words(const std::uint32_t* rows, std::size_t ld, std::size_t m,
                                 std::size_t steps, std::uint32_t* xp) {
  if (m == 1) return rows;  // one row is its own panel
  // The 16 x 16 blocks pay from 4 rows on (k = 768: 2 rows 0.37 us against
  // 0.23 us word by word, 4 rows 0.35 against 0.46, 14 rows 0.48 against 1.6).
  if (m >= 4 && vector_isa(active_isa())) {
    avx512_panel_words(rows, ld, m, steps, xp);
    return xp;
  }
  for (std::size_t r = 0; r < m; ++r)
    for (std::size_t s = 0; s < steps; ++s) xp[s * m + r] = rows[r * ld + s];
  return xp;
}

void linear(const PackedLinear& p, const float* x, std::size_t m, float* y, LinearScratch& scratch,
            int max_threads) {
  if (p.type == WeightType::grouped) return linear_grouped(p, x, m, y, scratch, max_threads);
  const Isa isa = active_isa();
  const bool amx = isa == Isa::amx && (p.type == WeightType::bf16 || p.type == WeightType::i8);
  // The activation panel (see TileArgs; AMX: amx_panel_row), after the
  // converted rows (one row buffer for AMX), both 64-byte aligned.
  const std::size_t steps = p.k_pad / step_k(p.type);
  const std::size_t row_bytes = steps * 4, row_space = (row_bytes + 63) / 64 * 64;
  const std::size_t rows_space = amx ? row_space : m * row_space;
  const std::size_t panel_bytes = amx ? amx_panel_bytes(p, m) : m * row_bytes;
  if (scratch.q.size() < rows_space + panel_bytes + 64)
    scratch.q.resize(rows_space + panel_bytes + 64);
  if (p.type == WeightType::i8 && scratch.q_scale.size() < m) scratch.q_scale.resize(m);
  auto* rows = reinterpret_cast<std::uint8_t*>(
      (reinterpret_cast<std::uintptr_t>(scratch.q.data()) + 63) / 64 * 64);
  auto* xp = reinterpret_cast<std::uint32_t*>(rows + rows_space);
  for (std::size_t r = 0; r < m; ++r) {
    const float* xr = x + r * p.k;
    std::uint8_t* row = amx ? rows : rows + r * row_space;
    switch (p.type) {
      case WeightType::f32:
      case WeightType::bf16_f32:
        std::memcpy(row, xr, p.k * 4);
        break;
      case WeightType::bf16:
        bf16_row(xr, p.k, p.k_pad, reinterpret_cast<std::uint16_t*>(row));
        break;
      case WeightType::i8:
        scratch.q_scale[r] = quantize_row(xr, p.k, p.k_pad, row);
        break;
      case WeightType::grouped:
        break;
    }
    if (amx) amx_panel_row(p, m, r, row, reinterpret_cast<std::byte*>(xp));
  }
  if (amx) amx_panel_pad(p, m, reinterpret_cast<std::byte*>(xp));
  const std::uint32_t* const panel =
      amx ? xp
          : panel_words(reinterpret_cast<const std::uint32_t*>(rows), row_space / 4, m, steps, xp);
  const float* xs = p.type == WeightType::i8 ? scratch.q_scale.data() : nullptr;
  const std::size_t units = p.units();
  // Work in weight-stream equivalents: a pass over the weights, plus the
  // arithmetic of the rows (about one pass per 8 rows).
  const std::size_t work = p.data.size() * (1 + m / 8);
  // (Tests may force the split whatever the size: parallel.hpp's force_split.)
  const std::size_t by_work =
      split_forced() ? units : std::max<std::size_t>(1, work / kThreadWork);
  const int threads = static_cast<int>(
      std::min({static_cast<std::size_t>(std::max(max_threads, 1)), by_work, units}));
  auto run = [&](std::size_t u0, std::size_t u1) {
    if (amx)
      amx_units(p, u0, u1, reinterpret_cast<const std::byte*>(xp), xs, m, y);
    else
      run_units(p, isa, u0, u1, panel, xs, m, y);
  };
  if (threads <= 1) {
    run(0, units);
    return;
  }
  // A long range per thread, then small chunks for whoever is first done
  // (StreamChunks). Which thread computes a unit never changes how.
  const StreamChunks chunks(units, static_cast<std::size_t>(threads));
  parallel_for(threads, chunks.count(), [&](std::size_t c) {
    const auto [u0, u1] = chunks[c];
    if (u0 < u1) run(u0, u1);
  });
}

namespace {
constexpr std::size_t kLanes = 16;
float fold(float (&acc)[kLanes]) {
  for (std::size_t w = kLanes / 2; w > 0; w /= 2)
    for (std::size_t l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// Attention's arithmetic: fused multiply-adds (one rounding per product and
// sum), as the AVX-512 kernels below do. Each body is compiled twice, for
// CPUs with FMA (every AVX2 one: std::fma is an instruction there) and
// without (a libm call), and chosen by a CPU check on first use (not an
// ifunc: a resolver runs before the sanitizers' runtimes start).
[[gnu::always_inline]] inline float attention_dot_body(const float* a, const float* b,
                                                       std::size_t n) {
  float acc[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) acc[l] = std::fma(a[i + l], b[i + l], acc[l]);
  for (std::size_t l = 0; i + l < n; ++l) acc[l] = std::fma(a[i + l], b[i + l], acc[l]);
  return fold(acc);
}
[[gnu::always_inline]] inline void attention_axpy_body(float p, const float* v, std::size_t n,
                                                       float* out) {
  for (std::size_t d = 0; d < n; ++d) out[d] = std::fma(p, v[d], out[d]);
}
__attribute__((target("avx2,fma"))) float attention_dot_fma(const float* a, const float* b,
                                                            std::size_t n) {
  return attention_dot_body(a, b, n);
}
__attribute__((target("avx2,fma"))) void attention_axpy_fma(float p, const float* v, std::size_t n,
                                                            float* out) {
  attention_axpy_body(p, v, n, out);
}
bool has_fma() {
  static const bool fma = __builtin_cpu_supports("fma");
  return fma;
}

// sum_i a[i] * b[i] in dot()'s order, each product added by a fused multiply-add.
float attention_dot(const float* a, const float* b, std::size_t n) {
  return has_fma() ? attention_dot_fma(a, b, n) : attention_dot_body(a, b, n);
}

// out[d] = fma(p, v[d], out[d]).
void attention_axpy(float p, const float* v, std::size_t n, float* out) {
  if (has_fma()) return attention_axpy_fma(p, v, n, out);
  attention_axpy_body(p, v, n, out);
}

// The scalar loops below, 16 lanes to a zmm: each lane sees the same
// additions in the same order (products rounded before they are added, as
// the scalar code compiled with -ffp-contract=off does), and the fold adds
// the same pairs in the same order.
ASSISTGEN_AVX512 float avx512_fold(__m512 acc) {
  const __m256 v8 =
      _mm256_add_ps(_mm512_castps512_ps256(acc),
                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

ASSISTGEN_AVX512 float avx512_dot(const float* a, const float* b, std::size_t n) {
  __m512 acc = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  if (i < n) {
    const __mmask16 mk = tail_mask(n - i);
    acc = _mm512_mask_add_ps(
        acc, mk, acc,
        _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, a + i), _mm512_maskz_loadu_ps(mk, b + i)));
  }
  return avx512_fold(acc);
}

// attention_dot on 16 lanes (masked lanes keep their sums).
ASSISTGEN_AVX512 float avx512_attention_dot(const float* a, const float* b, std::size_t n) {
  __m512 acc = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    const __mmask16 mk = tail_mask(n - i);
    acc = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + i), _mm512_maskz_loadu_ps(mk, b + i),
                                acc, mk);
  }
  return avx512_fold(acc);
}

ASSISTGEN_AVX512 float avx512_sum(const float* a, std::size_t n) {
  __m512 acc = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = _mm512_add_ps(acc, _mm512_loadu_ps(a + i));
  if (i < n) {
    const __mmask16 mk = tail_mask(n - i);
    acc = _mm512_mask_add_ps(acc, mk, acc, _mm512_maskz_loadu_ps(mk, a + i));
  }
  return avx512_fold(acc);
}

// A loaded vector that several multiply-adds share stays in its register:
// without this the compiler folds the load into each of them, and the
// loads, not the multiply-adds, bound the loop.
ASSISTGEN_AVX512 inline void keep_in_register(__m512& v) { asm("" : "+v"(v)); }

// The first fold of keys j and j + 8: lanes l and l + 8 of each added, the
// 128-bit quarters of the result holding key j's two sums, then key j + 8's.
ASSISTGEN_AVX512 inline __m512 avx512_fold_pair(__m512 acc_j, __m512 acc_j8) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(acc_j, acc_j8, _MM_SHUFFLE(1, 0, 1, 0)),
                       _mm512_shuffle_f32x4(acc_j, acc_j8, _MM_SHUFFLE(3, 2, 3, 2)));
}

// The rest of the folds from the 8 first folds b[j] (keys j and j + 8), and
// the 16 scores times `scale` stored in key order.
ASSISTGEN_AVX512 inline void avx512_fold16_store(const __m512* b, float scale, float* scores) {
  // Lanes l and l + 4: quarters hold keys j, j + 8, j + 4, j + 12.
  __m512 c[4];
#pragma GCC unroll 4
  for (std::size_t j = 0; j < 4; ++j)
    c[j] = _mm512_add_ps(_mm512_shuffle_f32x4(b[j], b[j + 4], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[j], b[j + 4], _MM_SHUFFLE(3, 1, 3, 1)));
  // Lanes l and l + 2, then 0 and 1.
  __m512 d[2];
#pragma GCC unroll 2
  for (std::size_t j = 0; j < 2; ++j)
    d[j] = _mm512_add_ps(_mm512_shuffle_ps(c[j], c[j + 2], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(c[j], c[j + 2], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // Lane 4 quarter + p holds key {0, 8, 4, 12}[quarter] + {0, 2, 1, 3}[p].
  const __m512i order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
  _mm512_storeu_ps(scores, _mm512_mul_ps(_mm512_permutexvar_ps(order, e), _mm512_set1_ps(scale)));
}

// scores[j] = avx512_attention_dot(q, key_j, hd) * scale for 16 keys at
// once: each key's lanes take the same fused multiply-adds, and the folds of
// the 16 accumulators run together, every sum between the lanes avx512_fold
// adds, in its order (lower lanes first), so the bits are
// avx512_attention_dot's.
ASSISTGEN_AVX512 void avx512_scores16(const float* q, const float* const* key, std::size_t hd,
                                      float scale, float* scores) {
  __m512 acc[kLanes];
#pragma GCC unroll 16
  for (std::size_t j = 0; j < kLanes; ++j) acc[j] = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + kLanes <= hd; i += kLanes) {
    const __m512 qi = _mm512_loadu_ps(q + i);
#pragma GCC unroll 16
    for (std::size_t j = 0; j < kLanes; ++j)
      acc[j] = _mm512_fmadd_ps(qi, _mm512_loadu_ps(key[j] + i), acc[j]);
  }
  if (i < hd) {
    const __mmask16 mk = tail_mask(hd - i);
    const __m512 qi = _mm512_maskz_loadu_ps(mk, q + i);
#pragma GCC unroll 16
    for (std::size_t j = 0; j < kLanes; ++j)
      acc[j] = _mm512_mask3_fmadd_ps(qi, _mm512_maskz_loadu_ps(mk, key[j] + i), acc[j], mk);
  }
  __m512 b[8];
#pragma GCC unroll 8
  for (std::size_t j = 0; j < 8; ++j) b[j] = avx512_fold_pair(acc[j], acc[j + 8]);
  avx512_fold16_store(b, scale, scores);
}

// avx512_scores16 for two queries over the same 16 keys: each key vector is
// loaded once for both. Keys {h, h + 8} for h in a half of 0..7 are summed
// together (16 accumulators) and folded at once, so the two queries' 8 first
// folds and one half's accumulators fit the registers. Every key's lanes
// take avx512_scores16's multiply-adds and folds in its order: the same bits.
ASSISTGEN_AVX512 void avx512_scores16_pair(const float* q0, const float* q1,
                                           const float* const* key, std::size_t hd, float scale,
                                           float* scores0, float* scores1) {
  __m512 b0[8], b1[8];
#pragma GCC unroll 2
  for (std::size_t h = 0; h < 8; h += 4) {
    // a[t]: key h + t for t < 4, key h + 4 + t (the partner h + (t - 4) + 8) for t >= 4.
    const float* k[8];
#pragma GCC unroll 8
    for (std::size_t t = 0; t < 8; ++t) k[t] = key[t < 4 ? h + t : h + t + 4];
    __m512 a0[8], a1[8];
#pragma GCC unroll 8
    for (std::size_t t = 0; t < 8; ++t) a0[t] = a1[t] = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + kLanes <= hd; i += kLanes) {
      const __m512 x0 = _mm512_loadu_ps(q0 + i), x1 = _mm512_loadu_ps(q1 + i);
#pragma GCC unroll 8
      for (std::size_t t = 0; t < 8; ++t) {
        __m512 kv = _mm512_loadu_ps(k[t] + i);
        keep_in_register(kv);
        a0[t] = _mm512_fmadd_ps(x0, kv, a0[t]);
        a1[t] = _mm512_fmadd_ps(x1, kv, a1[t]);
      }
    }
    if (i < hd) {
      const __mmask16 mk = tail_mask(hd - i);
      const __m512 x0 = _mm512_maskz_loadu_ps(mk, q0 + i), x1 = _mm512_maskz_loadu_ps(mk, q1 + i);
#pragma GCC unroll 8
      for (std::size_t t = 0; t < 8; ++t) {
        const __m512 kv = _mm512_maskz_loadu_ps(mk, k[t] + i);
        a0[t] = _mm512_mask3_fmadd_ps(x0, kv, a0[t], mk);
        a1[t] = _mm512_mask3_fmadd_ps(x1, kv, a1[t], mk);
      }
    }
#pragma GCC unroll 4
    for (std::size_t t = 0; t < 4; ++t) {
      b0[h + t] = avx512_fold_pair(a0[t], a0[t + 4]);
      b1[h + t] = avx512_fold_pair(a1[t], a1[t + 4]);
    }
  }
  avx512_fold16_store(b0, scale, scores0);
  avx512_fold16_store(b1, scale, scores1);
}

// max(-inf, a[0], a[1], ...) as std::max folds it (a NaN is passed over):
// per lane a > m ? a : m (VMAXPS), then the lanes. Which of +0 and -0 comes
// out may differ from the sequential fold; attend_rows only subtracts the
// maximum, and x - (+0) and x - (-0) are the same floats but for x = -0,
// whose exp is 1 either way.
ASSISTGEN_AVX512 float avx512_max(const float* a, std::size_t n) {
  const __m512 lowest = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 m = lowest;
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) m = _mm512_max_ps(_mm512_loadu_ps(a + i), m);
  if (i < n) m = _mm512_max_ps(_mm512_mask_loadu_ps(lowest, tail_mask(n - i), a + i), m);
  return _mm512_reduce_max_ps(m);
}

// kernel_exp: src/core/float_exp.hpp's reduction and polynomial, x
// clamped to [kExpMin, kExpMax] first: below, e^x rounds to 0; above, to
// infinity.
constexpr float kExpMin = -104.0f, kExpMax = 89.0f;
using namespace assistgen::detail::float_exp;

// kernel_exp on 16 lanes: the same operations (VMAXPS(lo, x) is
// `lo > x ? lo : x`, a NaN passing through; VSCALEFPS is y * 2^n, rounded once).
ASSISTGEN_AVX512 inline __m512 avx512_exp(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(kExpMin), x);
  x = _mm512_min_ps(_mm512_set1_ps(kExpMax), x);
  const __m512 shift = _mm512_set1_ps(kRoundShift);
  const __m512 n =
      _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), shift), shift);
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Hi)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Lo)));
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
#pragma GCC unroll 5
  for (std::size_t i = 1; i < 6; ++i)
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(kExpPoly[i]));
  const __m512 y =
      _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

// a[j] = kernel_exp(a[j] - mx); returns sum(a) as avx512_sum folds it.
ASSISTGEN_AVX512 float avx512_exp_sum(float* a, std::size_t n, float mx) {
  const __m512 m = _mm512_set1_ps(mx);
  __m512 acc = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m512 e = avx512_exp(_mm512_sub_ps(_mm512_loadu_ps(a + i), m));
    _mm512_storeu_ps(a + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    const __mmask16 mk = tail_mask(n - i);
    const __m512 e = avx512_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, a + i), m));
    _mm512_mask_storeu_ps(a + i, mk, e);
    acc = _mm512_mask_add_ps(acc, mk, acc, e);
  }
  return avx512_fold(acc);
}

// a[j] = e_j / sum(e) with e_j = kernel_exp(a[j] - max a): the softmax of
// attend_rows()'s scalar loops.
ASSISTGEN_AVX512 void avx512_softmax(float* a, std::size_t n) {
  const __m512 dv = _mm512_set1_ps(avx512_exp_sum(a, n, avx512_max(a, n)));
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    _mm512_storeu_ps(a + i, _mm512_div_ps(_mm512_loadu_ps(a + i), dv));
  if (i < n) {
    const __mmask16 mk = tail_mask(n - i);
    _mm512_mask_storeu_ps(a + i, mk, _mm512_div_ps(_mm512_maskz_loadu_ps(mk, a + i), dv));
  }
}

// out[i] = gate[i] / (1 + kernel_exp(-gate[i])) (* up[i]), as silu() does.
ASSISTGEN_AVX512 void avx512_silu(const float* gate, const float* up, std::size_t n, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (std::size_t i = 0; i < n; i += kLanes) {
    const __mmask16 mk = tail_mask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(mk, gate + i);
    __m512 v =
        _mm512_div_ps(g, _mm512_add_ps(one, avx512_exp(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    if (up) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, up + i));
    _mm512_mask_storeu_ps(out + i, mk, v);
  }
}

// out = sum_j p[j] v_j with the sum kept in registers: for each 16 lanes,
// acc = fma(p_j, v_j[lanes], acc) for j = 0, 1, ..., from zero, the order
// of attend()'s scalar loop.
// With `resume`, the sum goes on from the partial sum in out (a stored
// float is the register's value, so a sum split into runs of j is the
// same bits as one run).
ASSISTGEN_AVX512 void avx512_weighted_sum(const float* values, const float* p, std::size_t first,
                                          std::size_t count, std::span<const std::uint32_t> extra,
                                          std::size_t hd, float* out, bool resume = false) {
  const std::size_t len = count + extra.size();
  for (std::size_t d = 0; d < hd; d += 4 * kLanes) {
    __m512 acc[4];
    __mmask16 mk[4];
    for (std::size_t b = 0; b < 4; ++b) {
      mk[b] = d + b * kLanes < hd ? tail_mask(hd - d - b * kLanes) : 0;
      acc[b] = resume ? _mm512_maskz_loadu_ps(mk[b], out + d + b * kLanes) : _mm512_setzero_ps();
    }
    for (std::size_t j = 0; j < len; ++j) {
      const __m512 pj = _mm512_set1_ps(p[j]);
      const std::size_t slot = j < count ? first + j : extra[j - count];
      const float* v = values + slot * hd + d;
#pragma GCC unroll 4
      for (std::size_t b = 0; b < 4; ++b)
        acc[b] = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(mk[b], v + b * kLanes), acc[b]);
    }
    for (std::size_t b = 0; b < 4; ++b) _mm512_mask_storeu_ps(out + d + b * kLanes, mk[b], acc[b]);
  }
}

// avx512_weighted_sum over the value slots [s, s + count) for Q >= 2
// queries at once, each query's sum going on from its out when the block is
// not its first (s > first): every value vector is loaded once for the Q
// queries instead of once a query, and each query's lanes get the same
// multiply-adds in the same order as avx512_weighted_sum's, so the same bits.
template <std::size_t Q>
ASSISTGEN_AVX512 void avx512_weighted_sum_shared(const float* values, const AttendQuery* qs,
                                                 std::size_t s, std::size_t count, std::size_t hd) {
  const float* p[Q];
  bool resume[Q];
  for (std::size_t q = 0; q < Q; ++q) {
    p[q] = qs[q].scores + (s - qs[q].first);
    resume[q] = s > qs[q].first;
  }
  for (std::size_t d = 0; d < hd; d += 4 * kLanes) {
    __m512 acc[Q][4];
    __mmask16 mk[4];
#pragma GCC unroll 4
    for (std::size_t b = 0; b < 4; ++b)
      mk[b] = d + b * kLanes < hd ? tail_mask(hd - d - b * kLanes) : 0;
#pragma GCC unroll 4
    for (std::size_t q = 0; q < Q; ++q)
#pragma GCC unroll 4
      for (std::size_t b = 0; b < 4; ++b)
        acc[q][b] = resume[q] ? _mm512_maskz_loadu_ps(mk[b], qs[q].out + d + b * kLanes)
                              : _mm512_setzero_ps();
    for (std::size_t j = 0; j < count; ++j) {
      const float* v = values + (s + j) * hd + d;
      __m512 vb[4];
#pragma GCC unroll 4
      for (std::size_t b = 0; b < 4; ++b) {
        vb[b] = _mm512_maskz_loadu_ps(mk[b], v + b * kLanes);
        keep_in_register(vb[b]);
      }
#pragma GCC unroll 4
      for (std::size_t q = 0; q < Q; ++q) {
        const __m512 pj = _mm512_set1_ps(p[q][j]);
#pragma GCC unroll 4
        for (std::size_t b = 0; b < 4; ++b) acc[q][b] = _mm512_fmadd_ps(pj, vb[b], acc[q][b]);
      }
    }
#pragma GCC unroll 4
    for (std::size_t q = 0; q < Q; ++q)
#pragma GCC unroll 4
      for (std::size_t b = 0; b < 4; ++b)
        _mm512_mask_storeu_ps(qs[q].out + d + b * kLanes, mk[b], acc[q][b]);
  }
}

// scores[j] for j in [j0, j1) of a query whose key j sits at slot(j): blocks
// of 16 keys, then one dot at a time (the same bits either way).
template <class Slot>
ASSISTGEN_AVX512 void avx512_scores(const float* q, const float* keys, Slot slot, std::size_t j0,
                                    std::size_t j1, std::size_t hd, float scale, float* scores) {
  for (; j0 + kLanes <= j1; j0 += kLanes) {
    const float* key[kLanes];
    for (std::size_t t = 0; t < kLanes; ++t) key[t] = keys + slot(j0 + t) * hd;
    avx512_scores16(q, key, hd, scale, scores + j0);
  }
  for (; j0 < j1; ++j0) scores[j0] = avx512_attention_dot(q, keys + slot(j0) * hd, hd) * scale;
}

// Value rows per block of the shared weighted sums: 32 rows of 64 floats
// are 8 KiB, in L1 while every query adds them.
constexpr std::size_t kValueBlock = 32;

// attend_many() on AVX-512 for queries that share the cache slots [c0, c1)
// (c1 >= c0 + 16): the scores of the shared keys 16 at a time and the
// weighted sums of the shared values kValueBlock at a time, each block for
// every query in turn, so a block is read from L2 once, not once per query.
// Every query's scores are avx512_attention_dot's bits and its sum runs over j in
// attend_rows()'s order: its slots before c0, the shared ones, the rest.
ASSISTGEN_AVX512 void avx512_attend_many(std::span<const AttendQuery> qs, const float* keys,
                                         const float* values, std::size_t hd, float scale,
                                         std::size_t c0, std::size_t c1) {
  const std::size_t cb = c0 + (c1 - c0) / kLanes * kLanes;
  for (std::size_t b = c0; b < cb; b += kLanes) {
    const float* key[kLanes];
    for (std::size_t t = 0; t < kLanes; ++t) key[t] = keys + (b + t) * hd;
    std::size_t i = 0;
    for (; i + 2 <= qs.size(); i += 2)
      avx512_scores16_pair(qs[i].q, qs[i + 1].q, key, hd, scale, qs[i].scores + (b - qs[i].first),
                           qs[i + 1].scores + (b - qs[i + 1].first));
    if (i < qs.size()) avx512_scores16(qs[i].q, key, hd, scale, qs[i].scores + (b - qs[i].first));
  }
  for (const AttendQuery& a : qs) {
    const std::size_t len = a.count + a.extra.size();
    auto slot = [&](std::size_t j) {
      return j < a.count ? a.first + j : static_cast<std::size_t>(a.extra[j - a.count]);
    };
    avx512_scores(a.q, keys, slot, 0, c0 - a.first, hd, scale, a.scores);
    avx512_scores(a.q, keys, slot, cb - a.first, len, hd, scale, a.scores);
    avx512_softmax(a.scores, len);
    if (c0 > a.first) avx512_weighted_sum(values, a.scores, a.first, c0 - a.first, {}, hd, a.out);
  }
  for (std::size_t s = c0; s < c1; s += kValueBlock) {
    const std::size_t e = std::min(c1, s + kValueBlock);
    std::size_t i = 0;
    for (; i + 4 <= qs.size(); i += 4) avx512_weighted_sum_shared<4>(values, &qs[i], s, e - s, hd);
    if (qs.size() - i >= 2) {
      avx512_weighted_sum_shared<2>(values, &qs[i], s, e - s, hd);
      i += 2;
    }
    for (; i < qs.size(); ++i)
      avx512_weighted_sum(values, qs[i].scores + (s - qs[i].first), s, e - s, {}, hd, qs[i].out,
                          s > qs[i].first);
  }
  for (const AttendQuery& a : qs) {
    const std::size_t rest = a.first + a.count - c1;
    if (rest + a.extra.size() > 0)
      avx512_weighted_sum(values, a.scores + (c1 - a.first), c1, rest, a.extra, hd, a.out, true);
  }
}
}  // namespace

float kernel_exp(float x) {
  if (std::isnan(x)) return x;
  x = kExpMin > x ? kExpMin : x;
  x = kExpMax < x ? kExpMax : x;
  float n;
  const float y = exp_of_remainder(x, n);
  // y * 2^n rounded once: a multiplication while 2^n is a normal float.
  const int e = static_cast<int>(n);
  if (e >= -126 && e <= 127)
    return y * std::bit_cast<float>(static_cast<std::uint32_t>(e + 127) << 23);
  return std::ldexp(y, e);
}

void silu(const float* gate, const float* up, std::size_t n, float* out) {
  if (vector_isa(active_isa())) return avx512_silu(gate, up, n, out);
  for (std::size_t i = 0; i < n; ++i) {
    const float v = gate[i] / (1.0f + kernel_exp(-gate[i]));
    out[i] = up ? v * up[i] : v;
  }
}

float dot(const float* a, const float* b, std::size_t n) {
  if (vector_isa(active_isa())) return avx512_dot(a, b, n);
  float acc[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  for (std::size_t l = 0; i + l < n; ++l) acc[l] += a[i + l] * b[i + l];
  return fold(acc);
}

float sum_squares(const float* a, std::size_t n) { return dot(a, a, n); }

float sum(const float* a, std::size_t n) {
  if (vector_isa(active_isa())) return avx512_sum(a, n);
  float acc[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) acc[l] += a[i + l];
  for (std::size_t l = 0; i + l < n; ++l) acc[l] += a[i + l];
  return fold(acc);
}

void attend_rows(const float* q, const float* keys, const float* values, std::size_t first,
                 std::size_t count, std::span<const std::uint32_t> extra, std::size_t hd, float scale,
                 float* scores, float* out) {
  const std::size_t len = count + extra.size();
  auto slot = [&](std::size_t j) { return j < count ? first + j : static_cast<std::size_t>(extra[j - count]); };
  if (vector_isa(active_isa())) {
    avx512_scores(q, keys, slot, 0, len, hd, scale, scores);
    avx512_softmax(scores, len);
    return avx512_weighted_sum(values, scores, first, count, extra, hd, out);
  }
  for (std::size_t j = 0; j < len; ++j)
    scores[j] = attention_dot(q, keys + slot(j) * hd, hd) * scale;
  float mx = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < len; ++j) mx = std::max(mx, scores[j]);
  for (std::size_t j = 0; j < len; ++j) scores[j] = kernel_exp(scores[j] - mx);
  const float denom = sum(scores, len);
  for (std::size_t j = 0; j < len; ++j) scores[j] = scores[j] / denom;
  std::fill_n(out, hd, 0.0f);
  for (std::size_t j = 0; j < len; ++j) attention_axpy(scores[j], values + slot(j) * hd, hd, out);
}

void attend_many(std::span<const AttendQuery> queries, const float* keys, const float* values,
                 std::size_t hd, float scale) {
  std::size_t c0 = 0, c1 = std::numeric_limits<std::size_t>::max();
  for (const AttendQuery& a : queries) {
    c0 = std::max(c0, a.first);
    c1 = std::min(c1, a.first + a.count);
  }
  if (queries.size() > 1 && c1 >= c0 + kLanes && vector_isa(active_isa()))
    return avx512_attend_many(queries, keys, values, hd, scale, c0, c1);
  for (const AttendQuery& a : queries)
    attend_rows(a.q, keys, values, a.first, a.count, a.extra, hd, scale, a.scores, a.out);
}

void attend(const float* q, const float* keys, const float* values, std::size_t len, std::size_t hd,
            float scale, float* scores, float* out) {
  attend_rows(q, keys, values, 0, len, {}, hd, scale, scores, out);
}

}  // namespace assistgen::cpu::detail
