// Private to the CPU backend: the bf16 and int8 matmuls of kernels.hpp on
// AMX tiles (Intel Xeon since Sapphire Rapids), used by linear() for every
// row count when the active Isa is amx, so that batch invariance holds on
// those CPUs with one order of operations (kernels.hpp states it).
//
// The packed weights need no second copy: a unit's k steps (128 bytes each:
// 16 columns x one bf16 pair or int8 quad, then the other 16 columns) are
// already the B tiles of TDPBF16PS / TDPBUSD read with a 128-byte stride, 16
// steps to a tile, once pack_linear() pads k to whole tiles (32 bf16, 64
// int8). Activations go into a panel of A tiles per call (amx_panel_*).
#pragma once

#include <cstddef>

#include "kernels.hpp"

namespace assistgen::cpu::detail {

/// Whether the CPU has AMX-TILE, AMX-BF16 and AMX-INT8 (with AVX-512) and
/// Linux granted this process the tile state: arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA), asked on the first call. False on a refusal.
bool amx_usable();

/// Bytes of the A-tile panel of m rows for p (bf16 or int8; k_pad whole tiles).
std::size_t amx_panel_bytes(const PackedLinear& p, std::size_t m);
/// Copies row r of m (converted: k_pad bf16 values or u8 bytes) into the panel.
void amx_panel_row(const PackedLinear& p, std::size_t m, std::size_t r, const void* row,
                   std::byte* panel);
/// Zeroes the panel's padding rows (m > 16 rows go into equal blocks of at
/// most 16, the last one padded).
void amx_panel_pad(const PackedLinear& p, std::size_t m, std::byte* panel);

/// y[r, j] for every row r < m and the columns of units [u0, u1), from the
/// panel (64-byte aligned) and, for int8, the row scales xs.
void amx_units(const PackedLinear& p, std::size_t u0, std::size_t u1, const std::byte* panel,
               const float* xs, std::size_t m, float* y);

}  // namespace assistgen::cpu::detail
