// Acceptance of drafted tokens against the target (step 3 of a speculative
// round). Greedy: the longest prefix of drafts that equal the target's argmax,
// then the target's own token. Sampling: speculative rejection sampling
// (Leviathan et al. 2023; Chen et al. 2023): accept d_i with probability
// min(1, p_i(d_i) / q_i(d_i)); at the first rejection draw from
// normalize(max(0, p_i - q_i)); after K acceptances draw the bonus token from
// p_{K+1}. Every emitted token then follows the target's distribution p
// exactly, whatever q is. Rows are requested lazily through callables so the
// decoder processes no target row past the first rejection.
#pragma once

#include <cstddef>
#include <span>

#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// Outcome of verifying one block of drafts.
struct Verdict {
  /// Drafted tokens accepted (a prefix of the drafts).
  std::size_t accepted = 0;
  /// The token emitted after them: the target's replacement at the first
  /// mismatch / rejection, or the bonus token when every draft was accepted.
  Token next = 0;
};

/// Greedy verification. `target_argmax(j)` returns the target's argmax at row
/// j (row j predicts the token after drafts[0..j)); j runs 0..drafts.size().
template <class ArgmaxFn>
Verdict verify_greedy(std::span<const Token> drafts, ArgmaxFn&& target_argmax) {
  Verdict v;
  for (std::size_t j = 0; j < drafts.size(); ++j) {
    const Token t = target_argmax(j);
    if (t != drafts[j]) {
      v.accepted = j;
      v.next = t;
      return v;
    }
  }
  v.accepted = drafts.size();
  v.next = target_argmax(drafts.size());
  return v;
}

/// One accept / reject decision: true with probability min(1, p_d / q_d).
/// Uses exactly one uniform draw. q_d == 0 (a token the draft could not
/// have sampled) is accepted iff p_d > 0.
inline bool accept_draft_token(float p_d, float q_d, Rng& rng) {
  const double u = rng.uniform();
  return u * double(q_d) < double(p_d);
}

/// Draws from normalize(max(0, p - q)). An empty `q` stands for the one-hot
/// distribution on `drafted` (prompt-lookup candidates), making the residual
/// p with the drafted token removed. If the residual has no mass at all (only
/// possible through float rounding when p == q), falls back to p.
inline Token sample_residual(std::span<const float> p, std::span<const float> q, Token drafted,
                             Rng& rng) {
  auto residual = [&](std::size_t i) -> double {
    if (q.empty()) return i == static_cast<std::size_t>(drafted) ? 0.0 : double(p[i]);
    const double r = double(p[i]) - double(q[i]);
    return r > 0.0 ? r : 0.0;
  };
  double total = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) total += residual(i);
  if (!(total > 0.0)) return sample_categorical(p, rng);
  const double target = rng.uniform() * total;
  double acc = 0.0;
  std::size_t last_positive = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double r = residual(i);
    if (r <= 0.0) continue;
    acc += r;
    last_positive = i;
    if (target < acc) return static_cast<Token>(i);
  }
  return static_cast<Token>(last_positive);
}

/// Speculative-sampling verification. `p_row(j)` returns the target's
/// processed probabilities at row j (j in 0..drafts.size()); `q_row(j)` the
/// draft's processed probabilities for drafts[j], or an empty span for a
/// one-hot q (candidates without a distribution).
template <class PRowFn, class QRowFn>
Verdict verify_sampling(std::span<const Token> drafts, PRowFn&& p_row, QRowFn&& q_row, Rng& rng) {
  Verdict v;
  for (std::size_t j = 0; j < drafts.size(); ++j) {
    const std::span<const float> p = p_row(j);
    const std::span<const float> q = q_row(j);
    const auto d = static_cast<std::size_t>(drafts[j]);
    const float q_d = q.empty() ? 1.0f : q[d];
    if (!accept_draft_token(p[d], q_d, rng)) {
      v.accepted = j;
      v.next = sample_residual(p, q, drafts[j], rng);
      return v;
    }
  }
  v.accepted = drafts.size();
  v.next = sample_categorical(p_row(drafts.size()), rng);
  return v;
}

}  // namespace assistgen
