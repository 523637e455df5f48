// Private to the CPU backend: the group-quantized matmul kernels behind
// WeightType::grouped (4-, 6- or 8-bit codes, a scale and a min per group of 16
// or 32 k; io/quantized.hpp), batch-invariant as the others (kernels.hpp).
//
// Per output element y[i, j], whatever the number of rows, the row's place
// in the call or the thread count:
//   activations quantized per row as for int8 (quantize_row: symmetric,
//   sx = max|x| / 127, codes xq in [-127, 127]), and per group g the exact
//   integer sum xs[g] = sum_{k in g} xq[k];
//   out = 0; for each group g in order:
//     acc = sum_{k in g} q[j, k] * xq[k]            (exact int32, VPDPBUSD)
//     out = fma(float(acc), scale[j, g], out)
//     out = fma(-min[j, g], float(xs[g]), out)
//   y = b[j] ? fma(out, sx, b[j]) : out * sx.
// Since w = scale * q - min, out * sx is sum_k w[j, k] * (sx * xq[k]) up to
// the float roundings above: the weights enter exactly as stored.
//
// Packed layout (units of 32 output columns, as the other types): per unit,
// per step of 4 k, 64 bytes for 4-bit codes (byte 4c + t: column c of the
// first 16 in the low nibble, column 16 + c in the high nibble, k = 4s + t),
// 128 bytes for 8-bit codes (two halves of 16 columns x 4 k), or 96 for
// 6-bit codes (codes below 64 in groups of 16: the 4-bit layout's nibbles
// and 32 bytes of top bits, in pairs of steps; kernels_q4.cpp's code_byte).
// Scales and
// mins live in `gscales`: per unit and group, 32 scales then 32 mins, as
// binary16 when every one of them is exactly a binary16, else as float; or,
// for GGUF's K types (io::GroupQuantized::super), coded: per unit and
// superblock of `super` groups, 32 binary16 super-scales, 32 binary16
// super-mins, then per group 32 int8 scale codes and 32 int8 min codes, and
// the kernel forms each scale and min as one float multiply super * code,
// which gives the same floats as the per-group form (pack_grouped codes only
// when it does), so the same bits, in fewer bytes: a Q4_K group of 32 then
// costs 2 bytes of scales instead of 8, a Q6_K group of 16 2 instead of 8.
// Tiles are up to 9 rows x 32 columns (4 accumulators per row, kernels_q4.cpp).
#pragma once

#include <cstddef>

#include "assistgen/io/quantized.hpp"
#include "kernels.hpp"

namespace assistgen::cpu::detail {

/// Packs group-quantized W ([n, k]; q.rows = n, q.cols = k) and an optional
/// bias, keeping every code, scale and min. Throws InvalidArgument for an
/// inconsistent `q` (GroupQuantized::check).
PackedLinear pack_grouped(const io::GroupQuantized& q, const float* bias);

/// W[j, kk] of a grouped PackedLinear, scale * q - min rounded once.
float grouped_weight(const PackedLinear& p, std::size_t j, std::size_t kk);

/// linear() for WeightType::grouped.
void linear_grouped(const PackedLinear& p, const float* x, std::size_t m, float* y,
                    LinearScratch& scratch, int max_threads);

}  // namespace assistgen::cpu::detail
