// Private to the HPU backend: the number formats of Gaudi's MME operands
// beyond f32, as the reference device, the loader and the tests use them.
// bf16 is io::float_to_bf16 / bf16_to_float (round to nearest even). FP8 is
// OCP E4M3 ("E4M3FN", as Gaudi2/3 and torch.float8_e4m3fn): 1 sign bit, 4
// exponent bits with bias 7, 3 mantissa bits, subnormals, no infinities,
// S.1111.111 is NaN, so the largest finite magnitude is 448.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace assistgen::hpu::detail {

/// Largest finite E4M3 magnitude.
inline constexpr float kFp8Max = 448.0f;

/// The value of an E4M3 code (exact; 0x7f and 0xff are NaN).
float fp8_to_float(std::uint8_t code);
/// The E4M3 code nearest to v, ties to an even mantissa; magnitudes above
/// 448 saturate to +-448 (as the quantizer scales them never should), NaN
/// gives 0x7f.
std::uint8_t float_to_fp8(float v);

/// A [rows, cols] weight quantized to E4M3 with one scale per row (output
/// channel) or one for the whole tensor: w[j, k] ~ scale[j or 0] * code value.
struct Fp8Weight {
  std::vector<std::uint8_t> codes;  ///< [rows, cols]
  std::vector<float> scales;        ///< [rows] (per channel) or [1] (per tensor)
};

/// Quantizes with scale = max |w| / 448 over each row (per_channel) or the
/// tensor (an all-zero row or tensor gets scale 1), codes = E4M3(w / scale).
/// This is Intel Neural Compressor's "maxabs" scaling (without its rounding
/// of scales to powers of two).
Fp8Weight quantize_fp8(std::span<const float> w, std::size_t rows, std::size_t cols,
                       bool per_channel);

}  // namespace assistgen::hpu::detail
