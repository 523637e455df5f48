// The group-quantized kernels of kernels_q4.hpp: packing, the AVX-512 tiles,
// the scalar fallback (same operations, same order) and the dispatcher.
#include "kernels_q4.hpp"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"
#include "parallel.hpp"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace assistgen::cpu::detail {

namespace {

// Rows per pass. A tile keeps 2 int accumulators a row in registers; its
// float sums (2 a row, touched once a group) stay in registers up to 6 rows
// and beyond that go to the stack, where only the group's float step
// reads and writes them. One pass of 7-9 rows against two of at most 6, on
// an AMD EPYC (Zen 4), 2 threads, TinyLlama-shaped int4 layers, interleaved
// in one process: 7 rows 6-7% less time, 8 rows 5-6%, 9 rows 2-4%; 10 or
// more rows in one pass gained nothing (12: 5% more), their arithmetic
// outruns the stream either way.
constexpr std::size_t kMaxRows = 9;
constexpr std::size_t kPrefetchBytes = 4096;
constexpr std::size_t kScaleAhead = 8;  // groups
// When a call's rows take several passes (more than kMaxRows), each unit is
// taken this many groups at a time (rounded up to whole superblocks), every
// pass over the chunk before the next: the later passes find it in L1 while
// the first pass's prefetches keep the DRAM stream going, where whole-unit
// passes left DRAM idle during all but the first. The per-group arithmetic
// is this kernel's bound, so overlapping it with the stream is what counts:
// on an AMD EPYC (Zen 4), 2 threads, TinyLlama-shaped int4 layers, 7 and 8
// rows took 7-14% less time, 9 and 10 rows 4-5% (alternating in one
// process); 4 and 16 groups gained less. The sums wait in f32, exactly, so
// the bits are the same.
constexpr std::size_t kChunkGroups = 8;

constexpr std::size_t step_bytes(unsigned bits) { return bits == 4 ? 64 : bits == 6 ? 96 : 128; }
std::size_t groups_of(const PackedLinear& p) { return p.k_pad / p.group; }
std::size_t unit_bytes(const PackedLinear& p) { return p.k_pad / 4 * step_bytes(p.bits); }
std::size_t scale_bytes(const PackedLinear& p) { return p.f16_scales ? 2 : 4; }
// Coded scales: per superblock, 32 f16 super-scales, 32 f16 super-mins, then
// per group 32 int8 scale codes and 32 int8 min codes.
std::size_t super_bytes(std::size_t super) { return 128 + 64 * super; }
// Tied mins (min_factor): per group the 32 binary16 scales alone.
std::size_t unit_scale_bytes(const PackedLinear& p) {
  if (p.super) return (groups_of(p) + p.super - 1) / p.super * super_bytes(p.super);
  if (p.min_factor > 0.0f) return groups_of(p) * 32 * 2;
  return groups_of(p) * 64 * scale_bytes(p);
}

// Where the code of column c (0..31) at k sits within a unit. 8 bits: a
// byte. 4 bits: a nibble (low for columns 0-15, high for 16-31) of the byte
// code_byte gives. 6 bits (codes below 64: Q6_K's, and Q4_K's stacked with
// them), per pair of steps (192 bytes): each step's low nibbles as the 4-bit
// layout (64 bytes each), then each step's top bits (32 bytes each): byte h
// of a step's plane holds, from bit 0, the top two bits of nibble bytes h
// and h + 32 for columns 0-15, then for columns 16-31 (top_bits6).
std::size_t code_byte(unsigned bits, std::size_t c, std::size_t kk) {
  const std::size_t s = kk / 4, t = kk % 4;
  if (bits == 4) return s * 64 + (c % 16) * 4 + t;
  if (bits == 6) return s / 2 * 192 + s % 2 * 64 + (c % 16) * 4 + t;
  return s * 128 + (c / 16) * 64 + (c % 16) * 4 + t;
}
struct TopBits {
  std::size_t byte;
  unsigned shift;
};
TopBits top_bits6(std::size_t c, std::size_t kk) {
  const std::size_t s = kk / 4, j = (c % 16) * 4 + kk % 4;
  return {s / 2 * 192 + 128 + s % 2 * 32 + j % 32,
          static_cast<unsigned>(2 * (j / 32) + 4 * (c / 16))};
}
// The code of column c at k in a unit's bytes.
unsigned unit_code(unsigned bits, const std::byte* unit, std::size_t c, std::size_t kk) {
  const auto b = static_cast<unsigned>(unit[code_byte(bits, c, kk)]);
  if (bits == 8) return b;
  const unsigned low = c < 16 ? (b & 15u) : (b >> 4);
  if (bits == 4) return low;
  const TopBits tb = top_bits6(c, kk);
  return low | ((static_cast<unsigned>(unit[tb.byte]) >> tb.shift) & 3u) << 4;
}

unsigned code_at(const PackedLinear& p, std::size_t j, std::size_t kk) {
  return unit_code(p.bits, p.data.data() + (j / kUnit) * unit_bytes(p), j % kUnit, kk);
}

float f16_in(const std::byte* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return io::f16_to_float(h);
}

// Scale (which = 0) or min (which = 1) of column c (0..31) of a unit at
// group g; coded: the super value times the code, one float multiply (exact
// for what pack_grouped codes, and the tiles do the same multiply); tied:
// the scale times min_factor (a power of two: exact).
float gscale_at(const PackedLinear& p, const std::byte* unit_scales, std::size_t g,
                std::size_t which, std::size_t c) {
  if (p.min_factor > 0.0f) {
    const float scale = f16_in(unit_scales + 2 * (g * 32 + c));
    return which ? scale * p.min_factor : scale;
  }
  if (p.super) {
    const std::byte* sb = unit_scales + g / p.super * super_bytes(p.super);
    const auto code = static_cast<std::int8_t>(sb[128 + (g % p.super) * 64 + which * 32 + c]);
    return f16_in(sb + which * 64 + 2 * c) * static_cast<float>(code);
  }
  const std::size_t i = g * 64 + which * 32 + c;
  if (p.f16_scales) return f16_in(unit_scales + 2 * i);
  float f;
  std::memcpy(&f, unit_scales + 4 * i, 4);
  return f;
}

struct Tile {
  const std::byte* w;       // the unit's codes
  const std::byte* sc;      // the unit's scales and mins
  std::size_t groups;       // groups along k
  std::size_t super;        // groups per superblock (coded scales)
  const std::uint32_t* xp;  // activation panel at the tile's first row (s8 quads, step major)
  std::size_t ldp;
  const float* sx;  // per-row scales at the tile's first row
  const float* xs;  // group sums at the tile's first row: xs[r * groups + g]
  float* y;
  std::size_t ldy;
  const float* bias;  // at the tile's first column, or null
  std::size_t ncols;  // valid columns from the tile's first
  // The groups [g0, g1) of the unit (g1 = 0: all). With `acc` set the tile
  // is one chunk of a longer sum: it starts from the R x 2 float sums in acc
  // unless g0 == 0, and unless g1 ends the unit it stores them back there
  // instead of writing y (AVX-512 tiles only; g0 starts a superblock).
  std::size_t g0 = 0, g1 = 0;
  float* acc = nullptr;     // 64-byte aligned, R x 2 x 16 floats
  float min_factor = 0.0f;  // tied mins (Scales::tied)
};

void scalar_tile(const PackedLinear& p, const Tile& a, std::size_t rows) {
  const std::size_t cols = std::min(a.ncols, kUnit), gsteps = p.group / 4;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      float out = 0.0f;
      for (std::size_t g = 0; g < a.groups; ++g) {
        std::int32_t acc = 0;
        for (std::size_t s = g * gsteps; s < (g + 1) * gsteps; ++s) {
          std::int8_t x[4];
          std::memcpy(x, a.xp + s * a.ldp + r, 4);
          for (std::size_t t = 0; t < 4; ++t)
            acc += static_cast<std::int32_t>(unit_code(p.bits, a.w, c, 4 * s + t)) * x[t];
        }
        const float s = gscale_at(p, a.sc, g, 0, c);
        const float mn = gscale_at(p, a.sc, g, 1, c);
        out = std::fma(static_cast<float>(acc), s, out);
        out = std::fma(-mn, a.xs[r * a.groups + g], out);
      }
      a.y[r * a.ldy + c] = a.bias ? std::fma(out, a.sx[r], a.bias[c]) : out * a.sx[r];
    }
}

#define ASSISTGEN_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,fma,f16c")))

ASSISTGEN_AVX512 inline __mmask16 tail_mask(std::size_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
}

// How a unit's scales and mins are stored: float, binary16, coded (int8
// codes times binary16 super values per superblock), or tied (binary16
// scales; each min the scale times min_factor).
enum class Scales { f32, f16, coded, tied };

ASSISTGEN_AVX512 inline __m512 load_f16(const std::byte* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

template <Scales S>
ASSISTGEN_AVX512 inline __m512 load_scales(const std::byte* p) {
  if constexpr (S != Scales::f32)
    return load_f16(p);
  else
    return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
}

// 16 int8 codes at p as floats times the super values `sup` (as gscale_at).
ASSISTGEN_AVX512 inline __m512 coded(__m512 sup, const std::byte* p) {
  const __m512i c = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_mul_ps(sup, _mm512_cvtepi32_ps(c));
}

template <unsigned B, std::size_t G, Scales S, std::size_t R>
ASSISTGEN_AVX512 void avx512_tile(const Tile& a) {
  constexpr std::size_t sb = step_bytes(B);
  constexpr std::size_t es = S == Scales::f32 ? 4 : 2;         // bytes per scale (f32, f16, tied)
  constexpr std::size_t gsteps = G / 4;
  __m512 sup[4];  // coded: the superblock's scales (2 x 16 columns) and mins
  const std::byte* codes = nullptr;
  const __m512i lo4 = _mm512_set1_epi8(0x0f);
  // 6 bits: the top-bit plane (32 bytes, in both halves) shifted so that
  // each nibble byte's top bits land on bits 4-5 (code_byte's comment):
  // columns 0-15 left by 4 (bytes 0-31) and 2 (bytes 32-63), columns 16-31
  // right by 0 and 2; 16-bit shifts, whose spill into the neighbouring byte
  // the 0x30 mask drops.
  const __m512i top_mask = _mm512_set1_epi8(0x30);
  const __m512i shl0 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  const __m512i shr1 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
  __m512 out[R][2];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) out[r][0] = out[r][1] = _mm512_setzero_ps();
  if (a.acc && a.g0 > 0) {
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r)
      out[r][0] = _mm512_load_ps(a.acc + 32 * r), out[r][1] = _mm512_load_ps(a.acc + 32 * r + 16);
  }
  const std::size_t g_end = a.g1 ? a.g1 : a.groups;
  const std::uintptr_t pf = reinterpret_cast<std::uintptr_t>(a.w) + kPrefetchBytes;
  for (std::size_t g = a.g0; g < g_end; ++g) {
    __m512i acc[R][2];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    // The scales and mins kScaleAhead groups on: a second stream, beside
    // the codes' (measured on an AMX Xeon, int4: 4 rows took 8% less time,
    // one row the same).
    {
      const std::uintptr_t sc = reinterpret_cast<std::uintptr_t>(a.sc);
      const std::size_t ga = g + kScaleAhead;
      if constexpr (S == Scales::coded) {
        const std::uintptr_t sb = sc + ga / a.super * super_bytes(a.super);
        if (ga % a.super == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(sb), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(sb + 64), _MM_HINT_T0);
        }
        _mm_prefetch(reinterpret_cast<const char*>(sb + 128 + ga % a.super * 64), _MM_HINT_T0);
      } else if constexpr (S == Scales::tied) {
        _mm_prefetch(reinterpret_cast<const char*>(sc + ga * 64), _MM_HINT_T0);
      } else {
#pragma GCC unroll 4
        for (std::size_t l = 0; l < 64 * es; l += 64)
          _mm_prefetch(reinterpret_cast<const char*>(sc + ga * 64 * es + l), _MM_HINT_T0);
      }
    }
#pragma GCC unroll 8
    for (std::size_t i = 0; i < gsteps; ++i) {
      const std::size_t s = g * gsteps + i;
      // Every tile prefetches (one row too: measured on an AMX Xeon, int4
      // decode went from 75-76% to 78-82% of the roofline).
#pragma GCC unroll 2
      for (std::size_t l = 0; l < sb; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(pf + s * sb + l), _MM_HINT_T0);
      __m512i w0, w1;
      if constexpr (B == 4) {
        const __m512i raw = _mm512_load_si512(a.w + s * sb);
        w0 = _mm512_and_si512(raw, lo4);
        w1 = _mm512_and_si512(_mm512_srli_epi16(raw, 4), lo4);
      } else if constexpr (B == 6) {
        const std::byte* pair = a.w + s / 2 * 192;
        const __m512i raw = _mm512_load_si512(pair + s % 2 * 64);
        const __m512i top = _mm512_broadcast_i64x4(
            _mm256_load_si256(reinterpret_cast<const __m256i*>(pair + 128 + s % 2 * 32)));
        // low | (shifted top & 0x30)
        w0 = _mm512_ternarylogic_epi32(_mm512_and_si512(raw, lo4), _mm512_sllv_epi16(top, shl0),
                                       top_mask, 0xf8);
        w1 = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(raw, 4), lo4),
                                       _mm512_srlv_epi16(top, shr1), top_mask, 0xf8);
      } else {
        w0 = _mm512_load_si512(a.w + s * sb);
        w1 = _mm512_load_si512(a.w + s * sb + 64);
      }
      const std::uint32_t* xs = a.xp + s * a.ldp;
#pragma GCC unroll 16
      for (std::size_t r = 0; r < R; ++r) {
        const __m512i b = _mm512_set1_epi32(static_cast<int>(xs[r]));
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], w0, b);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], w1, b);
      }
    }
    __m512 s0, s1, m0, m1;
    if constexpr (S == Scales::coded) {
      const std::size_t gi = g % a.super;
      if (gi == 0) {
        const std::byte* sp = a.sc + g / a.super * super_bytes(a.super);
#pragma GCC unroll 4
        for (std::size_t i = 0; i < 4; ++i) sup[i] = load_f16(sp + 32 * i);
        codes = sp + 128;
      }
      const std::byte* cp = codes + gi * 64;
      s0 = coded(sup[0], cp);
      s1 = coded(sup[1], cp + 16);
      m0 = coded(sup[2], cp + 32);
      m1 = coded(sup[3], cp + 48);
    } else if constexpr (S == Scales::tied) {
      const std::byte* sp = a.sc + g * 64;
      const __m512 factor = _mm512_set1_ps(a.min_factor);
      s0 = load_f16(sp);
      s1 = load_f16(sp + 32);
      m0 = _mm512_mul_ps(s0, factor);
      m1 = _mm512_mul_ps(s1, factor);
    } else {
      const std::byte* sp = a.sc + g * 64 * es;
      s0 = load_scales<S>(sp);
      s1 = load_scales<S>(sp + 16 * es);
      m0 = load_scales<S>(sp + 32 * es);
      m1 = load_scales<S>(sp + 48 * es);
    }
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r) {
      const __m512 xsum = _mm512_set1_ps(a.xs[r * a.groups + g]);
      out[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][0]), s0, out[r][0]);
      out[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][1]), s1, out[r][1]);
      out[r][0] = _mm512_fnmadd_ps(m0, xsum, out[r][0]);
      out[r][1] = _mm512_fnmadd_ps(m1, xsum, out[r][1]);
    }
  }
  if (a.acc && g_end < a.groups) {
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r)
      _mm512_store_ps(a.acc + 32 * r, out[r][0]), _mm512_store_ps(a.acc + 32 * r + 16, out[r][1]);
    return;
  }
#pragma GCC unroll 2
  for (std::size_t c = 0; c < 2; ++c) {
    if (c * kBlock >= a.ncols) break;
    const __mmask16 mk = tail_mask(a.ncols - c * kBlock);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r) {
      const __m512 sx = _mm512_set1_ps(a.sx[r]);
      const __m512 y =
          a.bias ? _mm512_fmadd_ps(out[r][c], sx, _mm512_maskz_loadu_ps(mk, a.bias + c * kBlock))
                 : _mm512_mul_ps(out[r][c], sx);
      _mm512_mask_storeu_ps(a.y + r * a.ldy + c * kBlock, mk, y);
    }
  }
}

using TileFn = void (*)(const Tile&);

template <unsigned B, std::size_t G, Scales S, std::size_t... I>
constexpr std::array<TileFn, kMaxRows> rows_table(std::index_sequence<I...>) {
  return {&avx512_tile<B, G, S, I + 1>...};
}
template <unsigned B, std::size_t G, Scales S>
constexpr std::array<TileFn, kMaxRows> rows_table() {
  return rows_table<B, G, S>(std::make_index_sequence<kMaxRows>{});
}
template <unsigned B, std::size_t G>
constexpr std::array<std::array<TileFn, kMaxRows>, 4> scales_table() {
  return {rows_table<B, G, Scales::f32>(), rows_table<B, G, Scales::f16>(),
          rows_table<B, G, Scales::coded>(), rows_table<B, G, Scales::tied>()};
}

// The formats GGUF's types and int4 produce: 4-bit groups of 32 (Q4_0, Q4_K,
// int4), 8-bit groups of 32 (Q8_0) and of 16, 6-bit groups of 16 (Q6_K, and
// any mix with it: pack_grouped's choice); each with float, binary16 or
// coded scales.
TileFn tile_fn(const PackedLinear& p, std::size_t rows) {
  static const std::array<std::array<std::array<TileFn, kMaxRows>, 4>, 4> kTiles{
      scales_table<4, 32>(), scales_table<8, 32>(), scales_table<8, 16>(), scales_table<6, 16>()};
  std::size_t f = 0;
  if (p.bits == 4 && p.group == 32)
    f = 0;
  else if (p.bits == 8 && p.group == 32)
    f = 1;
  else if (p.bits == 8 && p.group == 16)
    f = 2;
  else if (p.bits == 6 && p.group == 16)
    f = 3;
  else
    return nullptr;
  const std::size_t s = p.super ? 2 : p.min_factor > 0.0f ? 3 : p.f16_scales ? 1 : 0;
  return kTiles[f][s][rows - 1];
}

// All m rows for units [u0, u1), in balanced passes of at most kMaxRows.
void run_units(const PackedLinear& p, bool avx512, std::size_t u0, std::size_t u1,
               const std::uint32_t* xp, const float* sx, const float* xs, std::size_t m, float* y) {
  const std::size_t passes = (m + kMaxRows - 1) / kMaxRows;
  const std::size_t rows_per_pass = (m + passes - 1) / passes;
  const std::size_t ub = unit_bytes(p), usb = unit_scale_bytes(p), groups = groups_of(p);
  // Several passes: kChunkGroups groups (whole superblocks) at a time, every
  // pass over them before the next, the sums waiting in `acc` (see Tile).
  const std::size_t sup = p.super ? p.super : 1;
  const std::size_t chunk_groups = (kChunkGroups + sup - 1) / sup * sup;
  const bool chunked = avx512 && passes > 1 && chunk_groups < groups;
  constexpr std::size_t kAccBytes = kMaxRows * 2 * 64;
  thread_local AlignedBytes acc;
  if (chunked && acc.size() < passes * kAccBytes) acc = AlignedBytes(passes * kAccBytes);
  for (std::size_t u = u0; u < u1; ++u)
    for (std::size_t g0 = 0; g0 < groups; g0 += chunked ? chunk_groups : groups)
      for (std::size_t r0 = 0, pass = 0; r0 < m; r0 += rows_per_pass, ++pass) {
        const std::size_t rows = std::min(rows_per_pass, m - r0);
        Tile a;
        a.w = p.data.data() + u * ub;
        a.sc = p.gscales.data() + u * usb;
        a.groups = groups;
        a.super = p.super;
        a.min_factor = p.min_factor;
        a.xp = xp + r0;
        a.ldp = m;
        a.sx = sx + r0;
        a.xs = xs + r0 * groups;
        a.y = y + r0 * p.n + u * kUnit;
        a.ldy = p.n;
        a.bias = p.bias.empty() ? nullptr : p.bias.data() + u * kUnit;
        a.ncols = p.n - u * kUnit;
        if (chunked) {
          a.g0 = g0;
          a.g1 = std::min(groups, g0 + chunk_groups);
          a.acc = reinterpret_cast<float*>(acc.data() + pass * kAccBytes);
        }
        const TileFn fn = avx512 ? tile_fn(p, rows) : nullptr;
        if (fn)
          fn(a);
        else
          scalar_tile(p, a, rows);
      }
}

bool f16_exact(float v) { return io::f16_to_float(io::float_to_f16(v)) == v; }

}  // namespace

PackedLinear pack_grouped(const io::GroupQuantized& q, const float* bias) {
  q.check("pack_grouped");
  PackedLinear p;
  p.type = WeightType::grouped;
  p.n = q.rows;
  p.k = q.cols;
  p.bits = q.bits;
  p.group = q.group;
  // 8-bit codes that all fit 6 bits in groups of 16 (Q6_K's, and Q4_K's
  // stacked with them) are stored in 6: 25% fewer code bytes, the same codes.
  if (q.bits == 8 && q.group == 16 &&
      std::all_of(q.q.begin(), q.q.end(), [](auto v) { return static_cast<unsigned>(v) < 64u; }))
    p.bits = 6;
  p.k_pad = (q.cols + q.group - 1) / q.group * q.group;
  // Coded scales where the second level gives the same floats from binary16
  // super values; else binary16 scales where they are exact; else float.
  if (q.two_level_exact() && std::all_of(q.super_scale.begin(), q.super_scale.end(), f16_exact) &&
      std::all_of(q.super_min.begin(), q.super_min.end(), f16_exact))
    p.super = q.super;
  else
    p.f16_scales = std::all_of(q.scale.begin(), q.scale.end(), f16_exact) &&
                   std::all_of(q.min.begin(), q.min.end(), f16_exact);
  // Binary16 scales whose mins are all the scale times one power of two
  // (GGUF's Q8_0, Q5_0 and Q4_0: 128, 16 and 8) keep the scales alone: a
  // quarter of these types' bytes (Q8_0 1.125 -> 1.0625 bytes a weight).
  if (p.f16_scales) {
    float factor = 0.0f;
    for (std::size_t i = 0; i < q.scale.size() && factor == 0.0f; ++i)
      if (q.scale[i] != 0.0f) factor = q.min[i] / q.scale[i];
    int e = 0;
    bool tied = factor > 0.0f && std::frexp(factor, &e) == 0.5f && e >= 1 && e <= 16;  // 1 .. 2^15
    for (std::size_t i = 0; tied && i < q.scale.size(); ++i)
      tied = q.min[i] == q.scale[i] * factor && std::isfinite(q.scale[i] * factor);
    if (tied) p.min_factor = factor;
  }
  const std::size_t cols = p.units() * kUnit;
  if (bias) p.bias.assign(bias, bias + p.n), p.bias.resize(cols, 0.0f);
  p.data = AlignedBytes(p.units() * unit_bytes(p));
  std::memset(p.data.data(), 0, p.data.size());
  p.gscales = AlignedBytes(p.units() * unit_scale_bytes(p));
  std::memset(p.gscales.data(), 0, p.gscales.size());
  const std::size_t gpr = q.groups_per_row(), spr = q.supers_per_row(), ub = unit_bytes(p),
                    usb = unit_scale_bytes(p);
  // One unit per iteration: columns c and c + 16 of a unit share bytes.
  const auto units = static_cast<std::ptrdiff_t>(p.units());
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t uu = 0; uu < units; ++uu) {
    const auto u = static_cast<std::size_t>(uu);
    std::byte* unit = p.data.data() + u * ub;
    std::byte* us = p.gscales.data() + u * usb;
    for (std::size_t c = 0; c < kUnit && u * kUnit + c < p.n; ++c) {
      const std::size_t j = u * kUnit + c;
      for (std::size_t kk = 0; kk < q.cols; ++kk) {
        const auto v = static_cast<unsigned>(q.q[j * q.cols + kk]);
        std::byte& b = unit[code_byte(p.bits, c, kk)];
        if (p.bits == 8) {
          b = static_cast<std::byte>(v);
          continue;
        }
        b |= static_cast<std::byte>(c < 16 ? (v & 15u) : (v & 15u) << 4);
        if (p.bits == 6) {
          const TopBits tb = top_bits6(c, kk);
          unit[tb.byte] |= static_cast<std::byte>((v >> 4) << tb.shift);
        }
      }
      if (p.super) {
        for (std::size_t sb = 0; sb < spr; ++sb) {
          std::byte* sp = us + sb * super_bytes(p.super);
          const std::uint16_t hs = io::float_to_f16(q.super_scale[j * spr + sb]);
          const std::uint16_t hm = io::float_to_f16(q.super_min[j * spr + sb]);
          std::memcpy(sp + 2 * c, &hs, 2);
          std::memcpy(sp + 64 + 2 * c, &hm, 2);
        }
        for (std::size_t g = 0; g < gpr; ++g) {
          std::byte* cp = us + g / p.super * super_bytes(p.super) + 128 + (g % p.super) * 64;
          cp[c] = static_cast<std::byte>(q.scale_code[j * gpr + g]);
          cp[32 + c] = static_cast<std::byte>(q.min_code[j * gpr + g]);
        }
        continue;
      }
      if (p.min_factor > 0.0f) {
        for (std::size_t g = 0; g < gpr; ++g) {
          const std::uint16_t h = io::float_to_f16(q.scale[j * gpr + g]);
          std::memcpy(us + 2 * (g * 32 + c), &h, 2);
        }
        continue;
      }
      for (std::size_t g = 0; g < gpr; ++g)
        for (std::size_t which = 0; which < 2; ++which) {
          const float v = (which ? q.min : q.scale)[j * gpr + g];
          const std::size_t i = g * 64 + which * 32 + c;
          if (p.f16_scales) {
            const std::uint16_t h = io::float_to_f16(v);
            std::memcpy(us + 2 * i, &h, 2);
          } else {
            std::memcpy(us + 4 * i, &v, 4);
          }
        }
    }
  }
  return p;
}

float grouped_weight(const PackedLinear& p, std::size_t j, std::size_t kk) {
  const std::byte* us = p.gscales.data() + (j / kUnit) * unit_scale_bytes(p);
  const std::size_t g = kk / p.group;
  const double s = gscale_at(p, us, g, 0, j % kUnit);
  const double mn = gscale_at(p, us, g, 1, j % kUnit);
  return static_cast<float>(s * code_at(p, j, kk) - mn);
}

void linear_grouped(const PackedLinear& p, const float* x, std::size_t m, float* y,
                    LinearScratch& scratch, int max_threads) {
  const std::size_t steps = p.k_pad / 4, row_bytes = p.k_pad, groups = groups_of(p);
  const std::size_t panel = (row_bytes + 63) / 64 * 64;
  // The quantized rows, then the tiles' panel of them (panel_words), both
  // 64-byte aligned.
  if (scratch.q.size() < m * panel + m * steps * 4 + 64)
    scratch.q.resize(m * panel + m * steps * 4 + 64);
  if (scratch.q_scale.size() < m * (1 + groups)) scratch.q_scale.resize(m * (1 + groups));
  auto* rows = reinterpret_cast<std::uint8_t*>(
      (reinterpret_cast<std::uintptr_t>(scratch.q.data()) + 63) / 64 * 64);
  auto* xp = reinterpret_cast<std::uint32_t*>(rows + m * panel);
  float* sx = scratch.q_scale.data();
  float* xs = sx + m;
  for (std::size_t r = 0; r < m; ++r) {
    sx[r] = quantize_groups(x + r * p.k, p.k, p.k_pad, p.group,
                            reinterpret_cast<std::int8_t*>(rows + r * panel), xs + r * groups);
  }
  const std::uint32_t* const xpan =
      panel_words(reinterpret_cast<const std::uint32_t*>(rows), panel / 4, m, steps, xp);
  // The AVX-512 tiles on AVX-512 and AMX CPUs (no AMX tile path for these
  // types); the scalar fallback for scalar and scalar_amx.
  const Isa isa = active_isa();
  const bool avx512 = isa == Isa::avx512 || isa == Isa::amx;
  const std::size_t units = p.units();
  const std::size_t work = (p.data.size() + p.gscales.size()) * (1 + m / 4);
  const std::size_t by_work =
      split_forced() ? units : std::max<std::size_t>(1, work / kThreadWork);
  const int threads = static_cast<int>(
      std::min({static_cast<std::size_t>(std::max(max_threads, 1)), by_work, units}));
  if (threads <= 1) {
    run_units(p, avx512, 0, units, xpan, sx, xs, m, y);
    return;
  }
  const StreamChunks chunks(units, static_cast<std::size_t>(threads));
  parallel_for(threads, chunks.count(), [&](std::size_t c) {
    const auto [u0, u1] = chunks[c];
    if (u0 < u1) run_units(p, avx512, u0, u1, xpan, sx, xs, m, y);
  });
}

}  // namespace assistgen::cpu::detail
