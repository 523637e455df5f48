// A forward pass split at a layer boundary: an optional backend capability
// for self-speculation (candidates/early_exit.hpp). The draft is the model's
// first E layers plus the final norm and LM head; it writes the K/V rows of
// layers < E into the model's own cache and keeps the residual stream after
// layer E - 1 of every row it ran. Verification then runs only layers
// [E, L) from those rows, instead of recomputing layers < E: with
// batch-invariant kernels the rows (and so the logits) are bit-identical to
// a full forward of the same tokens.
//
// A backend with the capability (SplitsLayers) has:
//   hidden_size()                  floats per residual row
//   forward_lower(tokens, cache, split, hidden, out, outputs)
//       appends `tokens` after cache.size() running layers [0, split) only:
//       the K/V of layers >= split at the new slots stay unwritten (cache.size()
//       counts them; truncate them away or complete them with forward_upper
//       before a full forward reads them). Appends each row's residual stream
//       after layer split - 1 to `hidden` (tokens.size() * hidden_size() floats)
//       and writes the logits of the last min(outputs, tokens.size()) rows,
//       through the final norm and LM head, into `out` (0: none).
//   forward_upper(cache, first, hidden, split, out, outputs)
//       completes the slots [first, first + rows) (rows = hidden.size() /
//       hidden_size(), first + rows <= cache.size()), whose layers < split
//       forward_lower wrote from the rows in `hidden`: runs layers [split, L)
//       over them, writing the missing K/V rows, and writes the logits of the
//       last min(outputs, rows) rows into `out`. The cache's size is
//       unchanged. Every slot before `first` must hold all layers.
// Both throw InvalidArgument for a split outside [1, layers] (naming it) and
// leave the cache's size (and `hidden`) unchanged on any error.
#pragma once

#include <concepts>
#include <cstddef>
#include <span>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// Optional: the backend runs a forward pass in two halves at a layer (see
/// the file comment). cpu::Transformer has it; AnyModel forwards it to the
/// model it wraps (and throws UnsupportedError when that model lacks it).
template <class M>
concept SplitsLayers = CausalLM<M> &&
    requires(const M& m, std::span<const Token> tokens, typename M::Cache& cache, std::size_t n,
             std::vector<float>& hidden, std::span<const float> rows, Logits& out) {
  { m.hidden_size() } -> std::convertible_to<std::size_t>;
  { m.num_layers() } -> std::convertible_to<std::size_t>;
  m.forward_lower(tokens, cache, n, hidden, out, n);
  m.forward_upper(cache, n, rows, n, out, n);
};

}  // namespace assistgen
