// The AMX kernels of matmul_amx.hpp.
//
// Order of operations (what the scalar reference, Isa::scalar_amx, repeats):
// each output element is one accumulator tile element, zeroed, then one
// TDPBF16PS / TDPBUSD per 16 k steps in k order. For bf16 the instruction
// does not perform the pseudo-code of older manuals (a chain over pairs):
// measured on a Xeon (random and constructed inputs, every element), each
// instruction sums the even products of its 16 pairs in one chain and the
// odd products in another, from zero, then adds (even + odd) to the
// accumulator; every addition rounds to nearest even, denormal inputs and
// results are zero. That matches the current manual's pseudo-code (two
// temporaries per element). int8 is an exact int32 dot whatever the order.
//
// Rows go into the fewest blocks of at most 16, all of one height (calls of
// up to 16 rows configure tiles of m rows, no padding, so a decode step
// reads one weight tile per 16 k steps and multiplies one row; the last
// block of more rows is zero-padded). Up to two blocks, tmm0-3 accumulate
// the blocks x the two halves of a unit's 32 columns, tmm4-5 hold the
// blocks' activations and tmm6-7 the weights (unit_two). Three or four
// blocks (33-64 rows, a wide verification) still take one pass over the
// weights: one half of the unit at a time, tmm0-3 a block each (unit_four).
// More blocks go in pairs over groups of units kept in L2.
#include "matmul_amx.hpp"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace assistgen::cpu::detail {

namespace {

#define ASSISTGEN_AMX                                                           \
  __attribute__((                                                               \
      target("amx-tile,amx-bf16,amx-int8,avx512f,avx512bw,avx512vl,avx512vnni," \
             "avx512bf16,fma")))

constexpr std::size_t kTileRows = 16;    // rows of an activation or accumulator tile
constexpr std::size_t kTileBytes = 64;   // bytes per tile row
constexpr std::size_t kStepBytes = 128;  // one k step of a unit (both halves)
constexpr std::size_t kTileSteps = 16;   // k steps per weight tile
// Calls of more than 64 rows read the weights once per 32 rows: groups of
// units whose weights stay in L2 meanwhile (the Xeons with AMX have 2 MB).
constexpr std::size_t kL2Group = std::size_t{1} << 20;
// Software prefetch of the weight stream this far ahead (bytes), measured:
// see docs/performance.md.
constexpr std::size_t kPrefetchBytes = 4096;

struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

std::size_t row_bytes(const PackedLinear& p) {
  return p.type == WeightType::i8 ? p.k_pad : p.k_pad * 2;
}
// m rows go into the fewest blocks of at most 16, all of the same height
// (17 rows: two blocks of 9, one padding row): a TDP's time grows with its rows.
std::size_t blocks(std::size_t m) { return (m + kTileRows - 1) / kTileRows; }
std::size_t tile_rows(std::size_t m) { return (m + blocks(m) - 1) / blocks(m); }

bool detect_amx() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = d & (1u << 24), bf16 = d & (1u << 22), int8 = d & (1u << 25);
  if (!(tile && bf16 && int8)) return false;
  // Linux >= 5.16 hands out the 8 KiB tile state only on request.
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

ASSISTGEN_AMX inline __mmask16 tail_mask(std::size_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
}

// The epilogue of kernels.cpp's tiles, on the accumulators stored in c
// (rows of 32: int32 for int8, f32 for bf16), rows [r0, r1) of the call.
ASSISTGEN_AMX void epilogue(const PackedLinear& p, std::size_t u, const void* c, std::size_t r0,
                            std::size_t r1, const float* xs, float* y) {
  const std::size_t col0 = u * kUnit;
  const float* bias = p.bias.empty() ? nullptr : p.bias.data() + col0;
  for (std::size_t r = r0; r < r1; ++r) {
    const std::size_t rr = r - r0;
    for (std::size_t h = 0; h < 2; ++h) {
      if (col0 + h * kBlock >= p.n) break;
      const __mmask16 mk = tail_mask(p.n - col0 - h * kBlock);
      __m512 out;
      if (p.type == WeightType::i8) {
        const __m512i acc =
            _mm512_load_si512(static_cast<const std::int32_t*>(c) + rr * kUnit + h * kBlock);
        const __m512 sw = _mm512_loadu_ps(p.scale.data() + col0 + h * kBlock);
        const __m512i off = _mm512_loadu_si512(p.offset.data() + col0 + h * kBlock);
        const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, off));
        const __m512 f = _mm512_mul_ps(_mm512_set1_ps(xs[r]), sw);
        out =
            bias ? _mm512_fmadd_ps(v, f, _mm512_loadu_ps(bias + h * kBlock)) : _mm512_mul_ps(v, f);
      } else {
        out = _mm512_load_ps(static_cast<const float*>(c) + rr * kUnit + h * kBlock);
        if (bias) out = _mm512_add_ps(out, _mm512_loadu_ps(bias + h * kBlock));
      }
      _mm512_mask_storeu_ps(y + r * p.n + col0 + h * kBlock, mk, out);
    }
  }
}

// C += A B on tiles: TDPBUSD (int8) or TDPBF16PS (bf16).
#define ASSISTGEN_TDP(C, A, B) \
  do {                         \
    if constexpr (kInt8)       \
      _tile_dpbusd(C, A, B);   \
    else                       \
      _tile_dpbf16ps(C, A, B); \
  } while (0)

// Software prefetch of the weights of k tile t of a unit, kPrefetchBytes ahead.
ASSISTGEN_AMX inline void prefetch_tile(const std::byte* w, std::size_t t) {
  const std::uintptr_t pf =
      reinterpret_cast<std::uintptr_t>(w) + kPrefetchBytes + t * kTileSteps * kStepBytes;
#pragma GCC unroll 32
  for (std::size_t l = 0; l < kTileSteps * kStepBytes; l += 64)
    _mm_prefetch(reinterpret_cast<const char*>(pf + l), _MM_HINT_T0);
}

// One unit against one or two blocks of rows (a0, and a1 if two): both
// halves of each k tile at once (tmm0-3 the accumulators, tmm4-5 the
// blocks' activations, tmm6-7 the two halves' weights). c gets the blocks'
// rows of 32 accumulators.
template <bool kInt8>
ASSISTGEN_AMX void unit_two(const std::byte* w, std::size_t tiles, std::size_t rows,
                            const std::byte* a0, const std::byte* a1, bool two, bool prefetch,
                            std::int32_t* c) {
  _tile_zero(0);
  _tile_zero(1);
  if (two) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (std::size_t t = 0; t < tiles; ++t) {
    const std::byte* wt = w + t * kTileSteps * kStepBytes;
    if (prefetch) prefetch_tile(w, t);
    _tile_loadd(6, wt, kStepBytes);
    _tile_loadd(7, wt + kTileBytes, kStepBytes);
    _tile_loadd(4, a0 + t * rows * kTileBytes, kTileBytes);
    ASSISTGEN_TDP(0, 4, 6);
    ASSISTGEN_TDP(1, 4, 7);
    if (two) {
      _tile_loadd(5, a1 + t * rows * kTileBytes, kTileBytes);
      ASSISTGEN_TDP(2, 5, 6);
      ASSISTGEN_TDP(3, 5, 7);
    }
  }
  _tile_stored(0, c, kUnit * 4);
  _tile_stored(1, c + kBlock, kUnit * 4);
  if (two) {
    _tile_stored(2, c + rows * kUnit, kUnit * 4);
    _tile_stored(3, c + rows * kUnit + kBlock, kUnit * 4);
  }
}

// One unit against three or four blocks of rows (the block_bytes apart from
// a0): one half of the unit's columns at a time, so that every block has an
// accumulator (tmm0-3) beside the half's weights (tmm6) and the blocks'
// activations (tmm4, 5, 7 in turn). The second half's weights come from L2,
// where the first half's prefetch brought them (whole 128-byte k steps):
// these calls always stream the weights from memory.
template <bool kInt8>
ASSISTGEN_AMX void unit_four(const std::byte* w, std::size_t tiles, std::size_t rows,
                             const std::byte* a0, std::size_t block_bytes, bool four,
                             std::int32_t* c) {
  for (std::size_t h = 0; h < 2; ++h) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    if (four) _tile_zero(3);
    for (std::size_t t = 0; t < tiles; ++t) {
      if (h == 0) prefetch_tile(w, t);
      _tile_loadd(6, w + t * kTileSteps * kStepBytes + h * kTileBytes, kStepBytes);
      const std::byte* at = a0 + t * rows * kTileBytes;
      _tile_loadd(4, at, kTileBytes);
      ASSISTGEN_TDP(0, 4, 6);
      _tile_loadd(5, at + block_bytes, kTileBytes);
      ASSISTGEN_TDP(1, 5, 6);
      _tile_loadd(7, at + 2 * block_bytes, kTileBytes);
      ASSISTGEN_TDP(2, 7, 6);
      if (four) {
        _tile_loadd(4, at + 3 * block_bytes, kTileBytes);
        ASSISTGEN_TDP(3, 4, 6);
      }
    }
    _tile_stored(0, c + h * kBlock, kUnit * 4);
    _tile_stored(1, c + rows * kUnit + h * kBlock, kUnit * 4);
    _tile_stored(2, c + 2 * rows * kUnit + h * kBlock, kUnit * 4);
    if (four) _tile_stored(3, c + 3 * rows * kUnit + h * kBlock, kUnit * 4);
  }
}

#undef ASSISTGEN_TDP

template <bool kInt8>
ASSISTGEN_AMX void units(const PackedLinear& p, std::size_t u0, std::size_t u1,
                         const std::byte* panel, const float* xs, std::size_t m, float* y) {
  const std::size_t rows = tile_rows(m), nblocks = blocks(m), rb = row_bytes(p);
  const std::size_t tiles = rb / kTileBytes, ub = rb * kUnit;
  const std::size_t block_bytes = tiles * rows * kTileBytes;
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = static_cast<std::uint8_t>(rows);
    cfg.colsb[t] = kTileBytes;
  }
  cfg.rows[6] = kTileSteps;
  // tmm7: the second half's weights, or (passes of 3-4 blocks) activations.
  const bool wide = nblocks == 3 || nblocks == 4;
  if (!wide) cfg.rows[7] = kTileSteps;
  _tile_loadconfig(&cfg);
  alignas(64) std::int32_t c[4 * kTileRows * kUnit];
  if (wide) {  // up to 64 rows: one pass over the weights, from memory
    for (std::size_t u = u0; u < u1; ++u) {
      unit_four<kInt8>(p.data.data() + u * ub, tiles, rows, panel, block_bytes, nblocks == 4, c);
      epilogue(p, u, c, 0, m, xs, y);
    }
    _tile_release();
    return;
  }
  const std::size_t group = nblocks > 2 ? std::max<std::size_t>(1, kL2Group / ub) : 1;
  const bool prefetch = nblocks <= 2;  // a weight stream from memory, not a pass over L2
  for (std::size_t g0 = u0; g0 < u1; g0 += group) {
    const std::size_t g1 = std::min(u1, g0 + group);
    for (std::size_t b0 = 0; b0 < nblocks; b0 += 2) {
      const bool two = b0 + 1 < nblocks;
      const std::byte* a0 = panel + b0 * block_bytes;
      for (std::size_t u = g0; u < g1; ++u) {
        unit_two<kInt8>(p.data.data() + u * ub, tiles, rows, a0, a0 + block_bytes, two, prefetch,
                        c);
        const std::size_t r0 = b0 * rows;
        epilogue(p, u, c, r0, std::min(m, r0 + (two ? 2 : 1) * rows), xs, y);
      }
    }
  }
  _tile_release();
}

}  // namespace

bool amx_usable() {
  static const bool usable = detect_amx();
  return usable;
}

std::size_t amx_panel_bytes(const PackedLinear& p, std::size_t m) {
  return blocks(m) * tile_rows(m) * row_bytes(p);
}

void amx_panel_row(const PackedLinear& p, std::size_t m, std::size_t r, const void* row,
                   std::byte* panel) {
  const std::size_t rows = tile_rows(m), rb = row_bytes(p), tiles = rb / kTileBytes;
  std::byte* block = panel + (r / rows) * tiles * rows * kTileBytes;
  const auto* src = static_cast<const std::byte*>(row);
  for (std::size_t t = 0; t < tiles; ++t)
    std::memcpy(block + (t * rows + r % rows) * kTileBytes, src + t * kTileBytes, kTileBytes);
}

void amx_panel_pad(const PackedLinear& p, std::size_t m, std::byte* panel) {
  const std::size_t rows = tile_rows(m), rb = row_bytes(p), tiles = rb / kTileBytes;
  const std::size_t last = (blocks(m) - 1) * rows, used = m - last;  // rows of the last block
  if (used == rows) return;
  std::byte* block = panel + (last / rows) * tiles * rows * kTileBytes;
  for (std::size_t t = 0; t < tiles; ++t)
    std::memset(block + (t * rows + used) * kTileBytes, 0, (rows - used) * kTileBytes);
}

void amx_units(const PackedLinear& p, std::size_t u0, std::size_t u1, const std::byte* panel,
               const float* xs, std::size_t m, float* y) {
  if (p.type == WeightType::i8)
    units<true>(p, u0, u1, panel, xs, m, y);
  else
    units<false>(p, u0, u1, panel, xs, m, y);
}

}  // namespace assistgen::cpu::detail
