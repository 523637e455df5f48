// Candidate sources: what proposes the tokens a round of assisted generation
// verifies. AssistedDecoder (assisted_decoder.hpp) is the one round loop; a
// candidate source is everything that differs between a draft model, prompt
// lookup, a draft with another tokenizer, and whatever a user plugs in.
//
// A round, as the loop runs it (S = the sequence, n = |S|):
//   limit = min(source.limit(ctx), ctx.room)
//   k     = source.propose(seq, n, limit, ctx)    appends d_1..d_k to seq,
//                                                  k <= ctx.room
//   (k below GenerationConfig::draft_min_tokens: seq cut to n, source.discard(n))
//   the target verifies d_1..d_k in one forward call; sampling compares its
//   rows with source.q_row(j) (an empty span: q is one-hot on d_j)
//   source.learn(n, accepted, ctx)                 a of the k were accepted
//   a stop inside the block (EOS, callback):       source.cut(len)
// and once per generate(): source.start(capacity, keep, ctx) before the first
// round (the first `keep` tokens of the prompt are those of the previous
// generation's sequence, with prefix reuse on; state about them may be kept),
// source.finish(stats) after the last.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/draft_length.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// What the round loop lends a candidate source on each call.
struct CandidateContext {
  const GenerationConfig& config;  ///< the decoder's configuration
  DraftLengthPolicy& draft_length;  ///< K and the early-stop rules (GenerationConfig::schedule)
  /// The target's logits processors. A source whose tokens are the target's
  /// (a draft model) processes its own logits with them, so that q is the
  /// distribution the target's p is compared with.
  LogitsProcessorChain& chain;
  std::span<const Token> eos;  ///< the ids generation stops at
  Rng& rng;                    ///< the decoder's generator (seeded per generate())
  /// The most candidates this round can verify (tokens left in the budget
  /// minus the target's own token). Set before every propose().
  std::size_t room = 0;
};

/// A source of candidate tokens for AssistedDecoder. See the file comment for
/// when each member is called. Optional members: `using Cache = ...;` with
/// `const Cache* draft_cache() const` (shown to round observers), and
/// `PositionLimits limits(PositionLimits target) const` (a draft model's own
/// position limit lowers the capacity generate() plans with).
/// A source that drafts on the target's own cache (self-speculation,
/// candidates/early_exit.hpp) also has `void bind_target_cache(TargetCache&)`,
/// called before start(), and `void verify(std::span<const Token> seq,
/// std::size_t rows, Logits& out)`, which the loop calls instead of its own
/// target forward: it brings the cache to seq.size() positions and writes
/// the logits of the last `rows` positions.
template <class S>
concept CandidateSource = std::movable<S> && requires(S& s, const S& cs, std::vector<Token>& seq,
                                                      std::size_t n, CandidateContext& ctx,
                                                      GenerationStats& stats) {
  s.start(n, n, ctx);  // a generation starts: caches for `capacity` positions, `keep` reusable
  { cs.limit(ctx) } -> std::convertible_to<std::size_t>;          // candidates it wants this round
  { s.propose(seq, n, n, ctx) } -> std::convertible_to<std::size_t>;  // appends at most `limit`
  { cs.q_row(n) } -> std::convertible_to<std::span<const float>>;   // empty: one-hot
  s.discard(n);      // the proposal is dropped; the sequence is back to n tokens
  s.learn(n, n, ctx);  // `accepted` of the proposal after S[0..n) were accepted
  s.cut(n);          // generation stopped with the sequence at n + 1 tokens
  s.finish(stats);   // fills draft_calls / draft_seconds
};

/// The Draft argument of a decoder whose candidates come from prompt lookup.
struct NoDraft {
  /// Stands in for a draft cache in RoundInfo.
  struct Cache {};
};

namespace detail {

inline std::string token_list(std::vector<Token> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

/// Throws CompatibilityError unless a draft with `draft_vocab` logits covers
/// every one of the target's `target_vocab` tokens that can be generated:
/// ids in `never_generated` (the target's suppressed rows, e.g. the padding
/// rows of an embedding larger than its tokenizer) need no draft row.
inline void check_draft_vocab(std::size_t draft_vocab, std::size_t target_vocab,
                              std::span<const Token> never_generated = {}) {
  if (draft_vocab >= target_vocab) return;
  std::vector<bool> masked(target_vocab - draft_vocab, false);
  for (const Token t : never_generated)
    if (t >= 0 && static_cast<std::size_t>(t) >= draft_vocab && static_cast<std::size_t>(t) < target_vocab)
      masked[static_cast<std::size_t>(t) - draft_vocab] = true;
  const auto it = std::find(masked.begin(), masked.end(), false);
  if (it != masked.end())
    throw CompatibilityError("draft vocabulary size " + std::to_string(draft_vocab) +
                             " is smaller than the target's " + std::to_string(target_vocab) +
                             " and target token " + std::to_string(draft_vocab + (it - masked.begin())) +
                             " is not suppressed (a draft must cover every target token that can be "
                             "generated; suppress the target's padding rows)");
}

/// Throws InvalidArgument when `cfg` asks for prompt lookup although a draft
/// model proposes the candidates.
inline void reject_prompt_lookup_with_draft(const GenerationConfig& cfg) {
  if (cfg.prompt_lookup_num_tokens != 0)
    throw InvalidArgument(
        "GenerationConfig: prompt_lookup_num_tokens is set but a draft model was given; "
        "build the decoder without a draft model to use prompt lookup");
}

/// The draft cache type a source shows to round observers.
template <class S>
struct SourceCache {
  using type = NoDraft::Cache;
};
template <class S>
  requires requires { typename S::Cache; }
struct SourceCache<S> {
  using type = typename S::Cache;
};

}  // namespace detail

/// Throws CompatibilityError, naming what differs, unless a draft with
/// `draft_vocab` logits can assist a target with `target_vocab`: the draft's
/// vocabulary may be larger (its extra logits are ignored) but not smaller,
/// except by target rows in `never_generated` (suppressed padding rows: the
/// draft gives them probability 0, as the target does), and declared special
/// tokens (when both sides declare them) must agree.
inline void check_compatibility(std::size_t draft_vocab, std::size_t target_vocab,
                                const std::optional<SpecialTokens>& draft,
                                const std::optional<SpecialTokens>& target,
                                std::span<const Token> never_generated = {}) {
  detail::check_draft_vocab(draft_vocab, target_vocab, never_generated);
  if (!draft || !target) return;
  const std::string de = detail::token_list(draft->eos_token_ids);
  const std::string te = detail::token_list(target->eos_token_ids);
  if (de != te) throw CompatibilityError("EOS token ids differ: draft " + de + ", target " + te);
  if (draft->bos_token_id && target->bos_token_id && *draft->bos_token_id != *target->bos_token_id)
    throw CompatibilityError("BOS token ids differ: draft " + std::to_string(*draft->bos_token_id) +
                             ", target " + std::to_string(*target->bos_token_id));
}

}  // namespace assistgen
