// log(sum_i e^x[i]) of a logits row, for the candidate sources that rank
// tokens by their log probability (the tree drafts' cumulative scores).
#pragma once

#include <span>

namespace assistgen::detail {

/// log(sum_i e^x[i]), given max = max_i x[i] (finite): max + log(sum_i
/// e^(x[i] - max)), each e^t a float within 1 ulp (t >= -80; below, the term
/// counts as 0, less than 2e-35 of the sum, which holds e^0 = 1), summed in
/// double over 8 lanes (element i into lane i mod 8) folded in a fixed
/// order. The same bits on every x86-64 CPU: the AVX2 path does the
/// portable path's operations.
double log_sum_exp(std::span<const float> x, float max);
/// The portable path of log_sum_exp(), whatever the CPU has (for tests).
double log_sum_exp_portable(std::span<const float> x, float max);

}  // namespace assistgen::detail
