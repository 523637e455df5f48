// Statistical checks of sampled output against an exact distribution,
// shared by the tests that pin "sampling keeps the target's distribution":
// how many seeded runs a chi-square test needs for a given power, and a
// total-variation bound for the empirical law of those runs.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "unit/toy_models.hpp"

namespace assistgen::stats {

/// Runs needed so that Pearson's chi-square test at significance 0.001
/// (critical value as toy::chi2_critical_001) rejects, with probability at
/// least 0.99, any law whose total variation from `p` is at least `delta`.
/// A law q at total variation delta from p has Cohen's
/// w^2 = sum (q - p)^2 / p >= (sum |q - p|)^2 = 4 delta^2 (Cauchy-Schwarz,
/// sum p = 1), so the statistic's noncentrality is lambda >= 4 N delta^2. Power
/// by the normal approximation of the noncentral chi-square:
/// chi2(df, lambda) ~ N(df + lambda, 2 (df + 2 lambda)); df counts the cells
/// with an expected count of at least 5 at that N (as toy::chi_square pools).
inline std::size_t runs_for_power(const std::vector<double>& p, double delta) {
  for (std::size_t n = 1000;; n += 1000) {
    std::size_t cells = 0;
    double pooled = 0;
    for (double x : p) {
      if (x * static_cast<double>(n) >= 5.0)
        ++cells;
      else
        pooled += x;
    }
    if (pooled > 0) ++cells;
    const double df = static_cast<double>(cells - 1);
    const double lambda = 4.0 * static_cast<double>(n) * delta * delta;
    const double z =
        (df + lambda - toy::chi2_critical_001(cells - 1)) / std::sqrt(2.0 * (df + 2.0 * lambda));
    if (z >= 2.3263478740408408) return n;  // Phi^-1(0.99)
  }
}

/// A bound that the total variation between the empirical law of `runs`
/// draws from `p` and `p` itself exceeds with probability at most 0.001: its
/// mean is at most sum_i sqrt(p_i (1 - p_i) / runs) / 2 (Jensen), and it moves
/// by at most 1 / runs when one draw changes, so by McDiarmid's inequality
/// P(TV > mean + t) <= exp(-2 runs t^2) = 0.001 for t = sqrt(ln(1000) / (2 runs)).
inline double tv_bound_001(const std::vector<double>& p, std::size_t runs) {
  const double n = static_cast<double>(runs);
  double mean = 0;
  for (double x : p) mean += std::sqrt(x * (1 - x) / n) / 2;
  return mean + std::sqrt(std::log(1000.0) / (2 * n));
}

/// softmax(row / temperature) in double: the exact law of a sampled token,
/// computed without the library's processors.
inline std::vector<double> exact_softmax(std::span<const float> row, double temperature) {
  double mx = -std::numeric_limits<double>::infinity(), z = 0;
  for (float x : row) mx = std::max(mx, double(x) / temperature);
  std::vector<double> p(row.size());
  for (std::size_t i = 0; i < row.size(); ++i)
    z += p[i] = std::exp(double(row[i]) / temperature - mx);
  for (double& x : p) x /= z;
  return p;
}

/// Requires that `counts` (of `runs` draws) pass Pearson's chi-square at
/// significance 0.001 against `p` (cells with expected count < 5 pooled) and
/// stay within the 0.001 total-variation bound, with no draw where p is 0.
inline void require_follows(const std::vector<std::size_t>& counts, const std::vector<double>& p,
                            std::size_t runs) {
  const auto cs = toy::chi_square(counts, p);
  double tv = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i)
    tv += std::abs(double(counts[i]) / double(runs) - p[i]) / 2;
  const double bound = tv_bound_001(p, runs);
  INFO("chi2 " << cs.statistic << " df " << cs.df << " critical " << toy::chi2_critical_001(cs.df)
               << ", total variation " << tv << " (bound " << bound << ")");
  REQUIRE(cs.impossible == 0);
  REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));
  REQUIRE(tv < bound);
}

}  // namespace assistgen::stats
