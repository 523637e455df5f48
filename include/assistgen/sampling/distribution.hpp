// Turning a row of (processed) logits into a choice: argmax, softmax and
// categorical sampling. These are the only places where probabilities are
// computed, so greedy / plain sampling and the speculative decoder agree
// bit for bit on the same logits.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>

#include "assistgen/error.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// Index of the largest value; the lowest index wins ties (as torch.argmax).
/// Throws InvalidArgument when a value is NaN or +inf (the logits are not
/// numbers a choice can be made from: non-finite values are never skipped
/// silently), or when every value is -inf (nothing can be chosen).
inline Token argmax(std::span<const float> x) {
  std::size_t best = 0;
  float best_v = -std::numeric_limits<float>::infinity();
  bool found = false;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || x[i] == std::numeric_limits<float>::infinity())
      throw InvalidArgument("logits are not finite: token id " + std::to_string(i) + " has " +
                            (std::isnan(x[i]) ? "NaN" : "+inf") +
                            " (the model's weights or activations overflowed float)");
    if (x[i] > best_v) {
      best_v = x[i];
      best = i;
      found = true;
    }
  }
  if (!found)
    throw InvalidArgument("every token is masked (all logits are -inf): nothing to choose");
  return static_cast<Token>(best);
}

/// probs = softmax(logits); `probs` may alias `logits`. -inf logits give
/// probability exactly 0. Throws as argmax() on logits it cannot normalise
/// (NaN, +inf, all -inf). (Before this release it also returned the argmax;
/// call argmax() for that.)
inline void softmax(std::span<const float> logits, std::span<float> probs) {
  const float m = logits[static_cast<std::size_t>(argmax(logits))];
  float sum = 0.0f;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    // A masked logit's exp is 0 exactly; skipping the call changes no bit
    // (most of a row after top-k).
    const float e =
        logits[i] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(logits[i] - m);
    probs[i] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (std::size_t i = 0; i < logits.size(); ++i) probs[i] *= inv;
}

/// In-place softmax of one row.
inline void softmax_inplace(std::span<float> x) { softmax(x, x); }

/// Probability that softmax(logits) gives to token t, without storing probs.
inline float softmax_prob(std::span<const float> logits, Token t) {
  const float m = logits[static_cast<std::size_t>(argmax(logits))];
  float sum = 0.0f;
  for (float v : logits)
    if (v != -std::numeric_limits<float>::infinity()) sum += std::exp(v - m);
  return std::exp(logits[static_cast<std::size_t>(t)] - m) / sum;
}

/// Draws an index with probability proportional to `weights` (non-negative,
/// not necessarily normalised). One uniform draw per call. Throws
/// InvalidArgument when the weights sum to zero.
inline Token sample_categorical(std::span<const float> weights, Rng& rng) {
  double total = 0.0;
  for (float w : weights) total += w;
  if (!(total > 0.0)) throw InvalidArgument("cannot sample from an all-zero distribution");
  const double target = rng.uniform() * total;
  double acc = 0.0;
  std::size_t last_nonzero = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] <= 0.0f) continue;
    acc += weights[i];
    last_nonzero = i;
    if (target < acc) return static_cast<Token>(i);
  }
  // Rounding can leave target >= acc at the very end: the last positive entry.
  return static_cast<Token>(last_nonzero);
}

}  // namespace assistgen
