// Private to the CPU backend: the prompt-prefill matmuls on oneDNN (AMX on
// Xeons that have it: brgemm avx512_core_amx_bf16 / _int8), used by
// Transformer::Impl::forward for a call that is a prompt prefill (one chain
// request, no logits, at least the model's threshold of rows: see
// transformer.hpp, LoadOptions::onednn_prefill_rows).
//
// No second copy of the weights: the kernels' packed units (kernels.hpp) are
// already oneDNN blocked layouts of W^T as a [k_pad, n] matrix: bf16 units
// ([n/32][k_pad/2][32 columns][2 k]) are format_tag::BA16a32b2a and int8
// units ([n/32][k_pad/4][32][4 k]) are BA16a32b4a, both of which oneDNN's
// AMX brgemm matmul takes as they are.
//
// What it computes: bf16: the activations rounded to bf16 as linear() does,
// then oneDNN's f32 accumulation in its own order (which depends on the row
// count and the thread count: not batch-invariant, hence prefill only);
// int8: the same u8 x s8 int32 dot as linear() (exact, so order-free) and
// the same epilogue, so the same bits as the kernels for any row count.
#pragma once

#include <cstddef>

#include "kernels.hpp"

namespace assistgen::cpu::detail {

/// Whether onednn_linear() handles p: bf16 or int8 weights (any k, n).
bool onednn_handles(const PackedLinear& p);

/// y[m, n] = x[m, k] W^T + b through oneDNN's matmul on up to `threads`
/// OpenMP threads. Primitives are made once per (type, m, k_pad, n) and kept
/// for the process. Requires onednn_handles(p).
void onednn_linear(const PackedLinear& p, const float* x, std::size_t m, float* y,
                   LinearScratch& scratch, int threads);

/// onednn_linear() calls since the process started (tests check which path a forward took).
std::size_t onednn_calls();

}  // namespace assistgen::cpu::detail
