// E4M3 encoding and decoding, and the load-time fp8 quantizer.
#include "low_precision.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace assistgen::hpu::detail {
namespace {

// The 256 code values, computed once.
const std::array<float, 256>& fp8_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (unsigned c = 0; c < 256; ++c) {
      const unsigned e = (c >> 3) & 0xf, m = c & 7;
      float mag;
      if (e == 0xf && m == 7)
        mag = std::numeric_limits<float>::quiet_NaN();
      else if (e == 0)
        mag = std::ldexp(static_cast<float>(m), -9);  // m/8 * 2^-6
      else
        mag = std::ldexp(static_cast<float>(8 + m), static_cast<int>(e) - 10);  // (1 + m/8) 2^(e-7)
      t[c] = (c & 0x80) ? -mag : mag;
    }
    return t;
  }();
  return table;
}

}  // namespace

float fp8_to_float(std::uint8_t code) { return fp8_table()[code]; }

std::uint8_t float_to_fp8(float v) {
  if (std::isnan(v)) return 0x7f;
  const std::uint8_t sign = std::signbit(v) ? 0x80 : 0;
  const float a = std::min(std::abs(v), kFp8Max);
  // Positive codes 0..126 increase with the code: find the nearest by
  // binary search, ties to the even code (an even mantissa).
  const auto& t = fp8_table();
  unsigned lo = 0, hi = 126;
  while (hi - lo > 1) {
    const unsigned mid = (lo + hi) / 2;
    (t[mid] <= a ? lo : hi) = mid;
  }
  const float dlo = a - t[lo], dhi = t[hi] - a;
  unsigned code = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
  if (a >= t[hi]) code = hi;
  return static_cast<std::uint8_t>(sign | code);
}

Fp8Weight quantize_fp8(std::span<const float> w, std::size_t rows, std::size_t cols,
                       bool per_channel) {
  Fp8Weight q;
  q.codes.resize(rows * cols);
  auto scale_of = [](float max_abs) { return max_abs > 0 ? max_abs / kFp8Max : 1.0f; };
  if (!per_channel) {
    float m = 0;
    for (const float x : w) m = std::max(m, std::abs(x));
    q.scales.assign(1, scale_of(m));
  } else {
    q.scales.resize(rows);
    for (std::size_t r = 0; r < rows; ++r) {
      float m = 0;
      for (std::size_t c = 0; c < cols; ++c) m = std::max(m, std::abs(w[r * cols + c]));
      q.scales[r] = scale_of(m);
    }
  }
  for (std::size_t r = 0; r < rows; ++r) {
    const float s = q.scales[per_channel ? r : 0];
    for (std::size_t c = 0; c < cols; ++c)
      q.codes[r * cols + c] = float_to_fp8(w[r * cols + c] / s);
  }
  return q;
}

}  // namespace assistgen::hpu::detail
