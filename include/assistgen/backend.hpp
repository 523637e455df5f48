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

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "assistgen/error.hpp"
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

// ---------------------------------------------------------------------------
// The extended forward contract: batches, trees, fewer output rows, layer
// plans, and keeping a tree branch. Every part is an optional capability; a
// backend that has only forward(tokens, cache) gets the generic fallbacks of
// forward_batch() and keep_rows() below (docs/custom_backend.md).

/// `outputs` value of a ForwardRequest: logits for every row.
inline constexpr std::size_t kAllRows = std::numeric_limits<std::size_t>::max();
/// `tree_base` value of a ForwardRequest: the cache holds no tree nodes.
inline constexpr std::size_t kNoTreeBase = std::numeric_limits<std::size_t>::max();

/// One sequence's part of a forward call: `tokens` are appended to its cache
/// after the `cache.size()` positions it holds (row i goes into cache slot
/// cache.size() + i).
///
/// - `parent` empty: a chain, token i at position cache.size() + i, seeing
///   every cached position and the tokens before it (the plain causal mask).
/// - `parent` of tokens.size() entries: a tree. parent[i] < i is the token i
///   follows, or -1 for the last cached position. Token i sits at position
///   cache.size() + depth(i) (depth 0 for parent -1) and sees the cached
///   positions and its ancestors (itself included), nothing else. A chain is
///   the tree parent[i] = i - 1.
/// - `outputs`: logits only for the last min(outputs, tokens.size()) rows;
///   kAllRows (the default) for all, 0 for none (a prefill that only fills
///   the cache).
/// - `tree_base` (backends that continue trees, ContinuesTrees): a tree
///   request may go on growing a tree that earlier tree requests left in the
///   cache. Positions [0, tree_base) are the sequence; the slots [tree_base,
///   cache.size()) hold tree nodes, cached_parent[j] the parent of slot
///   tree_base + j (-1: it follows position tree_base - 1; else an earlier
///   slot, relative to tree_base). parent[i] = -2 - j makes token i follow
///   the cached node at slot tree_base + j; -1 now means position
///   tree_base - 1. Token i sits at position tree_base + depth(i), depth
///   counted from the sequence through the cached nodes, and sees positions
///   [0, tree_base) and its ancestors, cached or in the request (itself
///   included): the cached nodes off its path stay invisible to it. A draft
///   that grows a tree level by level then feeds each level's nodes once.
struct ForwardRequest {
  std::span<const Token> tokens;              ///< appended after cache.size()
  std::span<const std::int32_t> parent = {};  ///< empty: a chain; else a tree (see above)
  std::size_t outputs = kAllRows;             ///< logits for the last `outputs` rows
  std::size_t tree_base = kNoTreeBase;        ///< kNoTreeBase: no cached tree (see above)
  std::span<const std::int32_t> cached_parent = {};  ///< with tree_base: the cached nodes' parents

  /// Whether the request goes on growing a cached tree (tree_base is set).
  bool continues_tree() const { return tree_base != kNoTreeBase; }
};

/// Rows of logits a request produces.
inline std::size_t output_rows(const ForwardRequest& r) { return std::min(r.outputs, r.tokens.size()); }

/// Which transformer layers a forward call runs. The default runs all. A
/// plan that skips layers leaves the K/V rows of the skipped layers unwritten
/// for the appended positions; truncate them away before a full forward reads
/// those positions (self-speculation drafts with a plan and verifies with all
/// layers).
struct LayerPlan {
  /// Run only layers [0, early_exit), then the final norm and LM head (0: all).
  std::size_t early_exit = 0;
  /// Layers not run, in any order (applies within early_exit too).
  std::span<const std::uint32_t> skip = {};

  /// Whether every layer runs.
  bool runs_all() const { return early_exit == 0 && skip.empty(); }
  /// Whether layer `l` runs.
  bool runs(std::size_t l) const {
    if (early_exit != 0 && l >= early_exit) return false;
    return std::find(skip.begin(), skip.end(), static_cast<std::uint32_t>(l)) == skip.end();
  }
};

/// Optional: `m.forward(requests, caches, out, plan)` runs several requests,
/// request r over `*caches[r]`, in one call. `out` is resized to
/// [sum of output_rows(r), vocab_size()], the rows of request 0 first. The
/// logits of a token must not depend on what else is in the call. The
/// backend throws UnsupportedError, naming the capability, for what it does
/// not support (trees, layer plans), before touching any cache; on any error
/// every cache keeps its size.
template <class M>
concept ForwardsBatches = CausalLM<M> && requires(const M& m, std::span<const ForwardRequest> requests,
                                                  std::span<typename M::Cache* const> caches, Logits& out,
                                                  const LayerPlan& plan) {
  m.forward(requests, caches, out, plan);
};

/// Optional: the backend's batched forward accepts tree requests (a non-empty
/// `parent`). Declared with `static constexpr bool kTreeRequests = true;`.
template <class M>
concept AttendsTrees = ForwardsBatches<M> && requires {
  requires static_cast<bool>(M::kTreeRequests);
};

/// Optional: the backend's tree requests may continue a tree left in the
/// cache (ForwardRequest::tree_base). Declared with `bool continues_trees()
/// const` answering true (a type-erased wrapper answers for the model it
/// wraps); see continues_trees() below.
template <class M>
concept ContinuesTrees = AttendsTrees<M> && requires(const M& m) {
  { m.continues_trees() } -> std::convertible_to<bool>;
};

/// Whether `model` runs tree requests that continue a cached tree.
template <class M>
bool continues_trees(const M& model) {
  if constexpr (ContinuesTrees<M>)
    return static_cast<bool>(model.continues_trees());
  else
    return false;
}

/// Optional: the backend's batched forward accepts LayerPlans other than
/// "all layers". Declared with `static constexpr bool kLayerPlans = true;`.
template <class M>
concept RunsLayerPlans = ForwardsBatches<M> && requires {
  requires static_cast<bool>(M::kLayerPlans);
};

/// Optional: `c.keep(base, rows)` keeps positions [0, base) and moves the
/// rows `rows` (strictly increasing slots in [base, size())) to base, base+1,
/// ...; size becomes base + rows.size(). keep(n, {}) is truncate(n).
template <class C>
concept CacheHasKeep = requires(C& c, std::size_t base, std::span<const std::uint32_t> rows) {
  c.keep(base, rows);
};

namespace detail {

/// Checks what every batched forward must check, before any cache is touched:
/// one cache per request, no cache twice, no empty request, well-formed
/// parents. Throws InvalidArgument naming `who` and the request at fault.
template <class Cache>
void check_requests(std::string_view who, std::span<const ForwardRequest> requests,
                    std::span<Cache* const> caches) {
  // Messages are built only on failure: the check runs on every forward.
  auto at = [&](std::size_t r) { return std::string(who) + ": request " + std::to_string(r); };
  if (requests.size() != caches.size())
    throw InvalidArgument(std::string(who) + ": " + std::to_string(requests.size()) + " requests but " +
                          std::to_string(caches.size()) + " caches (one cache per request)");
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const ForwardRequest& q = requests[r];
    if (!caches[r]) throw InvalidArgument(at(r) + " has no cache (null pointer)");
    for (std::size_t o = 0; o < r; ++o)
      if (caches[o] == caches[r])
        throw InvalidArgument(at(r) + " uses the cache of request " + std::to_string(o) +
                              " (each request needs its own cache)");
    if (q.tokens.empty()) throw InvalidArgument(at(r) + " has no tokens to append");
    if (q.continues_tree()) {
      const std::size_t size = caches[r]->size();
      if (q.parent.empty())
        throw InvalidArgument(at(r) +
                              " continues a cached tree (tree_base) but is a chain (no parents)");
      if (q.tree_base == 0 || q.tree_base > size)
        throw InvalidArgument(at(r) + ": tree_base " + std::to_string(q.tree_base) +
                              " must be in [1, " + std::to_string(size) + "] (the cache's size)");
      if (q.cached_parent.size() != size - q.tree_base)
        throw InvalidArgument(at(r) + " has " + std::to_string(q.cached_parent.size()) +
                              " cached parents for the " + std::to_string(size - q.tree_base) +
                              " cached tree nodes after tree_base");
      for (std::size_t j = 0; j < q.cached_parent.size(); ++j)
        if (q.cached_parent[j] < -1 || q.cached_parent[j] >= static_cast<std::int64_t>(j))
          throw InvalidArgument(at(r) + ": cached_parent[" + std::to_string(j) +
                                "] = " + std::to_string(q.cached_parent[j]) +
                                " must be -1 (position tree_base - 1) or an earlier cached node");
    } else if (!q.cached_parent.empty()) {
      throw InvalidArgument(at(r) + " has cached parents but no tree_base");
    }
    if (q.parent.empty()) continue;
    if (q.parent.size() != q.tokens.size())
      throw InvalidArgument(at(r) + " has " + std::to_string(q.parent.size()) + " parents for " +
                            std::to_string(q.tokens.size()) + " tokens");
    // With a cached tree, -2 - j names cached node j.
    const std::int64_t lowest =
        q.continues_tree() ? -1 - static_cast<std::int64_t>(q.cached_parent.size()) : -1;
    for (std::size_t i = 0; i < q.parent.size(); ++i)
      if (q.parent[i] < lowest || q.parent[i] >= static_cast<std::int64_t>(i))
        throw InvalidArgument(
            at(r) + ": parent[" + std::to_string(i) + "] = " + std::to_string(q.parent[i]) +
            (q.continues_tree()
                 ? " must be -1 (position tree_base - 1), -2 - j for cached node j, "
                   "or an earlier token's index"
                 : " must be -1 (the last cached position) or an earlier token's index"));
  }
}

/// UnsupportedError, before any cache is touched, when a request continues a
/// cached tree and `model` cannot (continues_trees()).
template <class M>
void check_tree_continuation(const M& model, std::string_view who,
                             std::span<const ForwardRequest> requests) {
  for (std::size_t r = 0; r < requests.size(); ++r)
    if (requests[r].continues_tree() && !continues_trees(model))
      throw UnsupportedError(std::string(who) + ": request " + std::to_string(r) +
                             " continues a cached tree (tree_base), and this backend cannot "
                             "(it declares no continues_trees())");
}

/// Whether a request is a chain (parent empty, or parent[i] = i - 1, and no
/// cached tree: with one, its first token would not see every cached position).
inline bool is_chain(const ForwardRequest& r) {
  if (r.continues_tree()) return false;
  for (std::size_t i = 0; i < r.parent.size(); ++i)
    if (r.parent[i] != static_cast<std::int64_t>(i) - 1) return false;
  return true;
}

}  // namespace detail

/// Runs `requests` over `caches` with the logits of every request's output
/// rows in `out` (request 0's first). Through the backend's batched forward
/// when it has one (ForwardsBatches); otherwise the generic fallback: one
/// forward_into() per request, keeping the last output_rows(r) rows of each.
/// The fallback runs chains only (a tree whose parents form a chain is one)
/// and all layers: a tree or a LayerPlan on a backend without the capability
/// is an UnsupportedError naming it, thrown before any cache is touched. On
/// an error in the fallback, the caches of the requests already run keep
/// their new positions (each forward call is atomic, the loop is not).
template <CausalLM M>
void forward_batch(const M& model, std::span<const ForwardRequest> requests,
                   std::span<typename M::Cache* const> caches, Logits& out, const LayerPlan& plan = {}) {
  using Cache = typename M::Cache;
  // A backend that predates tree_base would read such a request as a plain
  // tree: refused here for every backend that does not declare it.
  detail::check_tree_continuation(model, "forward_batch", requests);
  if constexpr (ForwardsBatches<M>) {
    model.forward(requests, caches, out, plan);
  } else {
    detail::check_requests<Cache>("forward_batch", requests, caches);
    if (!plan.runs_all())
      throw UnsupportedError(
          "forward_batch: this backend runs every layer (no layer plans: it declares no "
          "kLayerPlans batched forward), but the call asked to skip layers");
    std::size_t rows = 0;
    for (std::size_t r = 0; r < requests.size(); ++r) {
      if (!detail::is_chain(requests[r]))
        throw UnsupportedError("forward_batch: request " + std::to_string(r) +
                               " is a tree, and this backend has no tree attention (it declares no "
                               "kTreeRequests batched forward)");
      rows += output_rows(requests[r]);
    }
    const auto vocab = static_cast<std::size_t>(model.vocab_size());
    auto check_shape = [&](const Logits& got, std::size_t expect) {
      if (got.rows() != expect || got.cols() != vocab)
        throw Error("forward_batch: the backend returned logits of shape [" + std::to_string(got.rows()) +
                    ", " + std::to_string(got.cols()) + "] for " + std::to_string(expect) + " tokens");
    };
    if (requests.size() == 1) {
      // One request: straight into `out`, then only its last rows kept (moved
      // up in place, so a decoding loop that keeps `out` allocates nothing).
      const std::size_t all = requests[0].tokens.size();
      forward_into(model, requests[0].tokens, *caches[0], out);
      check_shape(out, all);
      if (rows < all) {
        std::copy_n(out.row(all - rows).data(), rows * vocab, out.data());
        out.resize(rows, vocab);
      }
      return;
    }
    out.resize(rows, vocab);
    Logits one;
    std::size_t row = 0;
    for (std::size_t r = 0; r < requests.size(); ++r) {
      const std::size_t keep = output_rows(requests[r]);
      forward_into(model, requests[r].tokens, *caches[r], one);
      check_shape(one, requests[r].tokens.size());
      std::copy_n(one.row(one.rows() - keep).data(), keep * vocab, out.row(row).data());
      row += keep;
    }
  }
}

/// Keeps positions [0, base) and the slots `rows` of `cache`, moved into
/// place (CacheHasKeep). A cache without keep() can only drop a suffix: rows
/// that are already in place (base, base+1, ...) become truncate(base +
/// rows.size()); anything else is an UnsupportedError naming the capability.
template <KvCache C>
void keep_rows(C& cache, std::size_t base, std::span<const std::uint32_t> rows) {
  if constexpr (CacheHasKeep<C>) {
    cache.keep(base, rows);
  } else {
    for (std::size_t j = 0; j < rows.size(); ++j)
      if (rows[j] != base + j)
        throw UnsupportedError("keep_rows: row " + std::to_string(rows[j]) + " would have to move to " +
                               std::to_string(base + j) +
                               ", and this cache type has no keep(base, rows) (it can only truncate)");
    cache.truncate(base + rows.size());
  }
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
