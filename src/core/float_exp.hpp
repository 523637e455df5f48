// The float e^x of the CPU kernels (src/cpu/kernels.cpp, kernel_exp) and
// of log_sum_exp (src/core/log_sum_exp.cpp): e^x = 2^n e^r with n =
// round(x log2 e) (adding and subtracting kRoundShift rounds |v| < 2^22 to
// an integer, ties to even) and r = x - n ln 2, ln 2 split as kLn2Hi +
// kLn2Lo (kLn2Hi has 9 significant bits, so n * kLn2Hi and x - n * kLn2Hi
// are exact), and Cephes' expf polynomial for e^r - 1 - r on |r| <= ln 2 / 2:
// e^r = (p(r) r^2 + r) + 1, p by Horner from kExpPoly[0]. Both files are
// compiled with -ffp-contract=off, so every step below is one rounding, and
// their vector forms (AVX-512, AVX2) repeat these steps lane by lane.
#pragma once

namespace assistgen::detail::float_exp {

inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f;
inline constexpr float kLn2Lo = -2.12194440e-4f;
inline constexpr float kRoundShift = 0x1.8p23f;
inline constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                      4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

/// e^r for x = n ln 2 + r, |r| <= ln 2 / 2; sets n (an integer-valued float).
/// e^x is the result times 2^n.
inline float exp_of_remainder(float x, float& n) {
  n = (x * kLog2e + kRoundShift) - kRoundShift;
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kExpPoly[0];
  for (int i = 1; i < 6; ++i) p = p * r + kExpPoly[i];
  return (p * (r * r) + r) + 1.0f;
}

}  // namespace assistgen::detail::float_exp
