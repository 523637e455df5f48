// log_sum_exp(): a float e^t (float_exp.hpp: a reduction by ln 2 and
// Cephes' degree-6 polynomial, plain IEEE multiplications and additions:
// this file is compiled with -ffp-contract=off) on 8 AVX2 lanes, or one
// element at a time with the same operations.
#include "assistgen/detail/log_sum_exp.hpp"

#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "float_exp.hpp"

namespace assistgen::detail {

namespace {

constexpr float kMin = -80.0f;  // e^-80 = 1.8e-35
using namespace float_exp;
constexpr std::size_t kLanes = 8;

// e^t for kMin <= t <= 0 (n = round(t log2 e) in [-116, 0]: 2^n is normal).
float exp_term(float t) {
  float n;
  const float y = exp_of_remainder(t, n);
  return y * std::bit_cast<float>(static_cast<std::uint32_t>(static_cast<int>(n) + 127) << 23);
}

double term(float x, float max) {
  const float t = x - max;
  return t >= kMin ? static_cast<double>(exp_term(t)) : 0.0;
}

double fold(const double (&acc)[kLanes]) {
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

__attribute__((target("avx2"))) double avx2_sum(std::span<const float> x, float max) {
  const __m256 mx = _mm256_set1_ps(max), lo = _mm256_set1_ps(kMin),
               shift = _mm256_set1_ps(kRoundShift);
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();  // lanes 0-3, 4-7
  std::size_t i = 0;
  for (; i + kLanes <= x.size(); i += kLanes) {
    const __m256 t = _mm256_sub_ps(_mm256_loadu_ps(x.data() + i), mx);
    const __m256 n =
        _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(t, _mm256_set1_ps(kLog2e)), shift), shift);
    __m256 r = _mm256_sub_ps(t, _mm256_mul_ps(n, _mm256_set1_ps(kLn2Hi)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(kLn2Lo)));
    __m256 p = _mm256_set1_ps(kExpPoly[0]);
    for (std::size_t k = 1; k < 6; ++k)
      p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(kExpPoly[k]));
    const __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r),
                                   _mm256_set1_ps(1.0f));
    // 2^n from its exponent bits (lanes below kMin: any n, zeroed next).
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_max_ps(n, _mm256_set1_ps(-126.0f))),
                         _mm256_set1_epi32(127)),
        23);
    const __m256 e = _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(bits)),
                                   _mm256_cmp_ps(t, lo, _CMP_GE_OQ));
    acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  double acc[kLanes];
  _mm256_storeu_pd(acc, acc0);
  _mm256_storeu_pd(acc + 4, acc1);
  for (std::size_t l = 0; i < x.size(); ++i, ++l) acc[l] += term(x[i], max);
  return fold(acc);
}

bool has_avx2() {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2;
}

}  // namespace

double log_sum_exp_portable(std::span<const float> x, float max) {
  double acc[kLanes] = {};
  for (std::size_t i = 0; i < x.size(); ++i) acc[i % kLanes] += term(x[i], max);
  return static_cast<double>(max) + std::log(fold(acc));
}

double log_sum_exp(std::span<const float> x, float max) {
  if (!has_avx2()) return log_sum_exp_portable(x, max);
  return static_cast<double>(max) + std::log(avx2_sum(x, max));
}

}  // namespace assistgen::detail
