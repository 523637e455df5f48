// Private to src/io: GGUF's block-quantized types (ggml's block_q8_0,
// block_q4_0, block_q4_K, block_q6_K), decoded to floats as ggml's dequantize_row_*
// does (the same float operations in the same order) and to the
// group-quantized form of io/quantized.hpp (the same values, unrounded).
//
// Block layouts (little-endian; k = 32 per Q8_0 / Q4_0 block, 256 per K block):
//   Q8_0 (34 bytes): f16 d; 32 int8 qs; w = qs[i] * d. As groups: code
//     qs[i] + 128, scale d, min 128 d.
//   Q4_0 (18 bytes): f16 d; 16 bytes qs. Element i < 16 is qs[i] & 15,
//     element 16 + i is qs[i] >> 4; w = (q - 8) * d.
//   Q4_K (144 bytes): f16 d, f16 dmin; 12 bytes of 6-bit scales and mins for
//     8 sub-blocks of 32; 128 bytes qs. Sub-block j: scale and min
//     (j < 4) sc = s[j] & 63, m = s[j + 4] & 63; (j >= 4)
//     sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4, m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
//     its elements 64 (j / 2) + 32 (j % 2) + l take qs[32 (j / 2) + l],
//     low nibble for even j, high for odd; w = (d sc) q - (dmin m).
//   Q6_K (210 bytes): 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d.
//     Element e = 128 h + 32 t + l (h < 2, t < 4, l < 32): low 4 bits from
//     ql[64 h + l + 32 (t % 2)] (low nibble for t < 2, high for t >= 2),
//     high 2 bits (qh[32 h + l] >> 2 t) & 3; scale scales[e / 16];
//     w = d scale (q - 32).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "assistgen/io/gguf.hpp"
#include "assistgen/io/quantized.hpp"
#include "assistgen/io/safetensors.hpp"

namespace assistgen::io::detail {

/// Whether `t` is one of the types below.
bool has_groups(GgmlType t);

/// Dequantizes `raw` (rows x cols elements of type `t`, rows of whole
/// blocks) into `out` (rows * cols floats) exactly as ggml does.
void dequantize(GgmlType t, std::span<const std::byte> raw, std::span<float> out);

/// The codes, scales and mins of `raw` ([rows, cols]): Q4_0 and Q4_K 4 bits
/// in groups of 32, Q8_0 8 bits in groups of 32, Q6_K 8 bits (codes < 64)
/// in groups of 16; Q4_K and Q6_K also with their second level (superblocks
/// of 256 columns, GroupQuantized::super). A non-finite
/// scale is a FormatError naming `what` (the file and tensor).
GroupQuantized to_groups(GgmlType t, std::span<const std::byte> raw, std::size_t rows,
                         std::size_t cols, const std::string& what);

/// A view of GGUF tensor `t` of file `src` under the name `hf`: F32, F16 and
/// BF16 as stored; Q8_0, Q5_0, Q4_0, Q4_K and Q6_K decoded to floats as ggml does
/// and with their group form (TensorView::quantized).
/// Another type is an UnsupportedError naming the tensor and the type.
TensorView stored_view(const GgufTensorInfo& t, const std::string& src, std::string hf);

/// load_gguf_model for general.architecture gpt2 (gguf_gpt2.cpp).
GgufModel load_gguf_gpt2(std::shared_ptr<GgufFile> file);

}  // namespace assistgen::io::detail
