// The backend contract. A model backend is any type that models CausalLM; the
// speculative decoder and the generation helpers are written only against
// these concepts, so a new backend (another accelerator, a remote server, a
// lookup table) needs no change anywhere else. See docs/custom_backend.md.
//
// Each requirement is its own named concept, so a compiler diagnostic names
// the one that failed, and check_causal_lm<M>() / check_kv_cache<C>() (or the
// ASSISTGEN_ASSERT_CAUSAL_LM / ASSISTGEN_ASSERT_KV_CACHE macros) turn every
// missing member into one static_assert message that names it, e.g.
// "CausalLM: missing member function forward(std::span<const Token>, Cache&)
// const returning assistgen::Logits". Put the assert right after your class.
#pragma once

#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>

#include "assistgen/types.hpp"

namespace assistgen {

/// `c.size()` on a const cache: positions held, convertible to std::size_t.
template <class C>
concept CacheHasSize = requires(const C& c) {
  { c.size() } -> std::convertible_to<std::size_t>;
};

/// `c.capacity()` on a const cache: positions it can ever hold.
template <class C>
concept CacheHasCapacity = requires(const C& c) {
  { c.capacity() } -> std::convertible_to<std::size_t>;
};

/// `c.truncate(n)`: rollback to the first n positions.
template <class C>
concept CacheHasTruncate = requires(C& c, std::size_t n) { c.truncate(n); };

/// A per-sequence cache of a model's past keys and values (or whatever state
/// a backend keeps per sequence).
///
/// - movable (the decoder keeps caches in std::optional and containers);
/// - `size()`: positions held; `capacity()`: positions it can ever hold;
/// - `truncate(n)`: rollback to the first n positions. It must be O(1) or
///   O(layers), never a copy, and must throw assistgen::InvalidArgument when
///   n > size(), leaving the cache unchanged.
template <class C>
concept KvCache = std::movable<C> && CacheHasSize<C> && CacheHasCapacity<C> && CacheHasTruncate<C>;

/// `M::Cache` names the model's per-sequence cache type.
template <class M>
concept HasCacheType = requires { typename M::Cache; };

/// `m.vocab_size()` on a const model, convertible to std::size_t.
template <class M>
concept HasVocabSize = requires(const M& m) {
  { m.vocab_size() } -> std::convertible_to<std::size_t>;
};

/// `m.make_cache(capacity)` on a const model returns an `M::Cache` by value.
template <class M>
concept HasMakeCache = HasCacheType<M> && requires(const M& m, std::size_t capacity) {
  { m.make_cache(capacity) } -> std::same_as<typename M::Cache>;
};

/// `m.forward(tokens, cache)` on a const model returns assistgen::Logits.
template <class M>
concept HasForward =
    HasCacheType<M> && requires(const M& m, std::span<const Token> tokens, typename M::Cache& cache) {
      { m.forward(tokens, cache) } -> std::same_as<Logits>;
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
concept CausalLM = HasCacheType<M> && KvCache<typename M::Cache> && HasVocabSize<M> && HasMakeCache<M> &&
                   HasForward<M>;

namespace detail {
template <class>
inline constexpr bool kAlwaysFalse = false;
}  // namespace detail

/// Compile-time check that `C` models KvCache, with one static_assert message
/// per missing requirement. Returns true, so it can sit in a static_assert:
/// `static_assert(assistgen::check_kv_cache<MyCache>());`.
template <class C>
constexpr bool check_kv_cache() {
  static_assert(std::move_constructible<C> && std::assignable_from<C&, C>,
                "KvCache: the cache type must be movable (a move constructor and a move assignment)");
  static_assert(CacheHasSize<C>, "KvCache: missing member function size() const returning std::size_t");
  static_assert(CacheHasCapacity<C>,
                "KvCache: missing member function capacity() const returning std::size_t");
  static_assert(CacheHasTruncate<C>,
                "KvCache: missing member function truncate(std::size_t) (rollback to the first n positions)");
  return KvCache<C>;
}

/// Compile-time check that `M` models CausalLM (its Cache included), with one
/// static_assert message per missing or mistyped member. Returns true, so it
/// can sit in a static_assert: `static_assert(assistgen::check_causal_lm<M>());`.
template <class M>
constexpr bool check_causal_lm() {
  static_assert(HasVocabSize<M>, "CausalLM: missing member function vocab_size() const returning std::size_t");
  if constexpr (!HasCacheType<M>) {
    static_assert(detail::kAlwaysFalse<M>,
                  "CausalLM: missing member type Cache (the per-sequence state made by make_cache; "
                  "it must model assistgen::KvCache)");
  } else {
    using Cache = typename M::Cache;
    check_kv_cache<Cache>();
    if constexpr (!requires(const M& m, std::size_t n) { m.make_cache(n); }) {
      static_assert(detail::kAlwaysFalse<M>,
                    "CausalLM: missing member function make_cache(std::size_t) const returning Cache");
    } else {
      static_assert(HasMakeCache<M>, "CausalLM: make_cache(std::size_t) const must return Cache by value");
    }
    if constexpr (!requires(const M& m, std::span<const Token> t, Cache& c) { m.forward(t, c); }) {
      if constexpr (requires(M& m, std::span<const Token> t, Cache& c) { m.forward(t, c); })
        static_assert(detail::kAlwaysFalse<M>,
                      "CausalLM: forward(std::span<const Token>, Cache&) must be a const member function "
                      "(a loaded model is immutable; per-sequence state belongs in the Cache)");
      else
        static_assert(detail::kAlwaysFalse<M>,
                      "CausalLM: missing member function forward(std::span<const Token>, Cache&) const "
                      "returning assistgen::Logits");
    } else {
      static_assert(HasForward<M>,
                    "CausalLM: forward(std::span<const Token>, Cache&) const must return assistgen::Logits");
    }
  }
  return CausalLM<M>;
}

/// A CausalLM that can also write its logits into a caller's buffer:
/// `forward(tokens, cache, out)` resizes `out` to [tokens.size(), vocab] and
/// fills it, so a decoding loop that keeps `out` allocates nothing per step.
/// Optional: the decoders use it when present, and `forward` otherwise.
template <class M>
concept ForwardsInto = CausalLM<M> && requires(const M& m, std::span<const Token> tokens,
                                               typename M::Cache& cache, Logits& out) {
  m.forward(tokens, cache, out);
};

/// Runs `model` over `tokens` with the logits in `out`: through the
/// allocation-free overload when the backend has one, else by move-assigning
/// the result of `forward(tokens, cache)`.
template <CausalLM M>
void forward_into(const M& model, std::span<const Token> tokens, typename M::Cache& cache,
                  Logits& out) {
  if constexpr (ForwardsInto<M>)
    model.forward(tokens, cache, out);
  else
    out = model.forward(tokens, cache);
}

/// The positions a model can be run at (an optional capability, see
/// HasPositionLimits).
struct PositionLimits {
  /// forward() can never reach position `hard` (a learned position table,
  /// GPT-2's n_positions): the decoders size their caches to stay below it
  /// and stop with StopReason::capacity there. 0: no hard limit.
  std::size_t hard = 0;
  /// Positions the model was trained for (max_position_embeddings). Running
  /// past it works (RoPE) but the output may degrade; the decoders warn
  /// (log.hpp). 0: unknown.
  std::size_t trained = 0;
};

/// Optional: `m.position_limits()` returns PositionLimits. A backend without
/// it is taken to have no limit.
template <class M>
concept HasPositionLimits = requires(const M& m) {
  { m.position_limits() } -> std::convertible_to<PositionLimits>;
};

/// `model.position_limits()` when the backend has it, else no limit.
template <class M>
PositionLimits position_limits(const M& model) {
  if constexpr (HasPositionLimits<M>)
    return model.position_limits();
  else
    return {};
}

}  // namespace assistgen

/// Asserts at compile time that `T` models assistgen::CausalLM; a failure
/// names each missing member. Use at namespace scope after the class.
#define ASSISTGEN_ASSERT_CAUSAL_LM(T) \
  static_assert(::assistgen::check_causal_lm<T>(), #T " does not model assistgen::CausalLM")

/// Asserts at compile time that `T` models assistgen::KvCache; a failure
/// names each missing member.
#define ASSISTGEN_ASSERT_KV_CACHE(T) \
  static_assert(::assistgen::check_kv_cache<T>(), #T " does not model assistgen::KvCache")
