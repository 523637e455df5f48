// Acceptance of a tree of drafted tokens against the target, in one target
// pass (SpecInfer, Miao et al. 2024; Medusa; EAGLE-2, Li et al. 2024). The
// tree is a parent array: node i carries tokens[i] and follows parent[i] (an
// earlier node, or -1 for the root: the sequence's last token). Row 0 of the
// target's logits predicts the root's children, row 1 + i the children of
// node i (the ancestor mask of backend.hpp's tree requests).
//
// Greedy: walk from the root, following the child whose token is the
// target's argmax, until no child matches; the target's argmax there is the
// next token. The output is token for token the target's greedy output.
//
// Sampling: multi-candidate speculative sampling (SpecInfer's recursive
// rejection sampling). At a node with children c_1..c_m, child i is
// accepted with probability min(1, p(x_i) / q_i(x_i)) where p is the
// current residual; on a rejection p becomes normalize(max(0, p - q_i)) and
// the next sibling is tried. A node whose children are all rejected (or
// that has none) emits a draw from the residual. Each emitted token then
// follows the target's p exactly, however the tree was shaped (duplicate
// siblings included), provided that q_i is the law of x_i given the
// siblings before it, independently of the target: i.i.d. draws from q;
// draws without replacement (q_i: q without x_1..x_{i-1}, renormalized); or
// an empty q_i, the one-hot law of a deterministic candidate. Drawn
// children must not be kept or dropped by their values (the law of a kept
// child would no longer be q_i).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "assistgen/acceptance.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// Outcome of verifying a tree: the accepted path is in the caller's vector
/// (node indices, root first, strictly increasing), its length here.
struct TreeVerdict {
  std::size_t accepted = 0;  ///< nodes on the accepted path (its depth)
  Token next = 0;            ///< the target's token after the path
};

/// Greedy tree verification. `target_argmax(r)` returns the target's argmax
/// at row r (0: the root, 1 + i: node i); when it is called, `path` holds
/// the accepted nodes leading to that row (for processors that need the
/// history).
template <class ArgmaxFn>
TreeVerdict verify_tree_greedy(std::span<const Token> tokens, std::span<const std::int32_t> parent,
                               ArgmaxFn&& target_argmax, std::vector<std::uint32_t>& path) {
  path.clear();
  std::int64_t cur = -1;
  for (;;) {
    const Token t = target_argmax(static_cast<std::size_t>(cur + 1));
    std::int64_t found = -1;
    for (std::size_t i = static_cast<std::size_t>(cur + 1); i < tokens.size(); ++i)
      if (parent[i] == cur && tokens[i] == t) {
        found = static_cast<std::int64_t>(i);
        break;
      }
    if (found < 0) return {path.size(), t};
    path.push_back(static_cast<std::uint32_t>(found));
    cur = found;
  }
}

/// Sampling tree verification (recursive rejection over siblings, see the
/// file comment). `p_row(r)` returns the target's processed probabilities at
/// row r as a writable span (it is updated in place into the residual);
/// `q_of(i)` the distribution node i's token was drawn from (empty: one-hot
/// on tokens[i]). Siblings are tried in index order. `path` is as in
/// verify_tree_greedy.
template <class PRowFn, class QFn>
TreeVerdict verify_tree_sampling(std::span<const Token> tokens,
                                 std::span<const std::int32_t> parent, PRowFn&& p_row, QFn&& q_of,
                                 Rng& rng, std::vector<std::uint32_t>& path) {
  path.clear();
  std::int64_t cur = -1;
  for (;;) {
    const std::span<float> p = p_row(static_cast<std::size_t>(cur + 1));
    std::int64_t next_node = -1;
    for (std::size_t i = static_cast<std::size_t>(cur + 1); i < tokens.size(); ++i) {
      if (parent[i] != cur) continue;
      const std::span<const float> q = q_of(i);
      const auto d = static_cast<std::size_t>(tokens[i]);
      if (accept_draft_token(p[d], q.empty() ? 1.0f : q[d], rng)) {
        next_node = static_cast<std::int64_t>(i);
        break;
      }
      // p <- normalize(max(0, p - q_i)). No mass left happens only through
      // rounding when p == q_i, and then p is kept.
      double total = 0.0;
      for (std::size_t v = 0; v < p.size(); ++v) {
        const double r = q.empty() ? (v == d ? 0.0 : double(p[v])) : double(p[v]) - double(q[v]);
        if (r > 0.0) total += r;
      }
      if (!(total > 0.0)) continue;
      for (std::size_t v = 0; v < p.size(); ++v) {
        const double r = q.empty() ? (v == d ? 0.0 : double(p[v])) : double(p[v]) - double(q[v]);
        p[v] = r > 0.0 ? static_cast<float>(r / total) : 0.0f;
      }
    }
    if (next_node < 0) return {path.size(), sample_categorical(std::span<const float>(p), rng)};
    path.push_back(static_cast<std::uint32_t>(next_node));
    cur = next_node;
  }
}

}  // namespace assistgen
