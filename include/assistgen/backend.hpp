// The backend contract. A model backend is any type that models CausalLM; the
// speculative decoder and the generation helpers are written only against
// these concepts, so a new backend (another accelerator, a remote server, a
// lookup table) needs no change anywhere else. See docs/custom_backend.md.
#pragma once

#include <concepts>
#include <cstddef>
#include <span>

#include "assistgen/types.hpp"

namespace assistgen {

/// A per-sequence cache of a model's past keys and values.
///
/// - `size()`: positions held; `capacity()`: positions it can ever hold.
/// - `truncate(n)`: rollback to the first n positions. It must be O(1) or
///   O(layers), never a copy, and must throw assistgen::InvalidArgument when
///   n > size(), leaving the cache unchanged.
template <class C>
concept KvCache = std::movable<C> && requires(C& c, const C& cc, std::size_t n) {
  { cc.size() } -> std::convertible_to<std::size_t>;
  { cc.capacity() } -> std::convertible_to<std::size_t>;
  c.truncate(n);
};

/// A causal language model.
///
/// - `vocab_size()`: the number of logits per position.
/// - `make_cache(capacity)`: an empty cache able to hold `capacity` positions.
/// - `forward(tokens, cache)`: appends `tokens` after `cache.size()` positions
///   and returns logits for every appended position, shape
///   [tokens.size(), vocab_size()]. Prefill, one-token decode and K+1-token
///   verification are all this call. On any error it throws and leaves the
///   cache's size unchanged. It is const: a loaded model is immutable and may
///   be shared by threads that each use their own cache.
template <class M>
concept CausalLM = requires { typename M::Cache; } && KvCache<typename M::Cache> &&
                   requires(const M& m, std::span<const Token> tokens, typename M::Cache& cache,
                            std::size_t capacity) {
                     { m.vocab_size() } -> std::convertible_to<std::size_t>;
                     { m.make_cache(capacity) } -> std::same_as<typename M::Cache>;
                     { m.forward(tokens, cache) } -> std::same_as<Logits>;
                   };

}  // namespace assistgen
