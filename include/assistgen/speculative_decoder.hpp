// SpeculativeDecoder<Draft, Target>: assisted generation with a draft model
// (DraftModelCandidates), or with prompt lookup when Draft is NoDraft
// (PromptLookupCandidates), for a target model; written only against the
// CausalLM / KvCache concepts of backend.hpp. It is AssistedDecoder (the one
// round loop, assisted_decoder.hpp, where the target's cache protocol is
// described) over one of those sources, plus the checks that the draft can
// assist the target.
//
// What the draft's cache holds (S, n, d_1..d_k, a as in assisted_decoder.hpp):
//
//   start of round   a prefix S[0..m), m <= n-1 (m = n-1 or n-2 in steady
//                    state; 0 in the first round)
//   draft proposal   feeds S[m..n), then d_1..d_{k-1}: holds S + d_1..d_{k-1}
//   end of round     S + d_1..d_min(a, k-1), i.e. S' minus its last token, or
//                    minus its last two when all k drafts were accepted (d_k
//                    was never fed); the next round feeds the missing one or
//                    two tokens in one call.
//   a round that drafts nothing (only one token of the budget left) leaves the
//   draft cache as it was; on a stop inside the block it is cut to at most
//   |S'| - 1.
//
// Capacity: the draft's cache holds one position fewer than the target's, so
// the default capacity prompt + max_new_tokens suffices for both; a draft
// with learned positions lowers the capacity as the target's would.
#pragma once

#include <concepts>
#include <cstddef>
#include <string>
#include <utility>

#include "assistgen/assisted_decoder.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/candidates/prompt_lookup.hpp"
#include "assistgen/generation_config.hpp"

namespace assistgen {

namespace detail {

// The candidate source of SpeculativeDecoder<Draft, T>.
template <class D>
struct SpeculativeSource {
  using type = DraftModelCandidates<D>;
};
template <>
struct SpeculativeSource<NoDraft> {
  using type = PromptLookupCandidates;
};

}  // namespace detail

/// Assisted generation with a draft model (or prompt lookup when Draft is
/// NoDraft) for a target model. Holds references to both models (they must
/// outlive the decoder), one cache for each, reused across generate() calls,
/// and the draft-length state. Not thread-safe; use one decoder per thread.
///
/// Threads: the models are only read, so any number of decoders on any
/// number of threads may share one draft and one target. A decoder itself
/// holds its caches privately and is one generation session: calling
/// generate() on the same decoder from two threads at once is the caller's
/// error, and is not checked on every path. What is checked (in every build
/// type) is the cache: a KvStorage held with exclusive_use() by one thread
/// rejects forward() and truncate() from another with InvalidArgument (see
/// kv_cache.hpp). Hand a decoder from one thread to another only with the
/// usual synchronisation (a join, a mutex, a future).
template <class Draft, class Target>
  requires CausalLM<Target> && (CausalLM<Draft> || std::same_as<Draft, NoDraft>)
class SpeculativeDecoder
    : public AssistedDecoder<typename detail::SpeculativeSource<Draft>::type, Target> {
  using Base = AssistedDecoder<typename detail::SpeculativeSource<Draft>::type, Target>;

 public:
  /// True with a draft model, false for prompt lookup (Draft = NoDraft).
  static constexpr bool kHasDraft = !std::same_as<Draft, NoDraft>;
  using typename Base::DraftCache;     ///< the draft's cache (NoDraft::Cache without one)
  using typename Base::TargetCache;    ///< the target's cache
  using typename Base::Round;          ///< what the round observer receives
  using typename Base::RoundObserver;  ///< callback run after every round

  /// A decoder with a draft model. A draft with fewer logit rows than the
  /// target is accepted when every target row past the draft's is in
  /// cfg.suppress_tokens (a padded target vocabulary). Throws
  /// CompatibilityError when the models cannot be paired, InvalidArgument for a bad option (naming it).
  SpeculativeDecoder(const Draft& draft, const Target& target, GenerationConfig cfg)
    requires kHasDraft
      : Base(target, std::move(cfg), "SpeculativeDecoder::generate", [&](const GenerationConfig& c) {
          const auto vocab = static_cast<std::size_t>(target.vocab_size());
          check_compatibility(static_cast<std::size_t>(draft.vocab_size()), vocab,
                              c.draft_special_tokens, c.target_special_tokens, c.suppress_tokens);
          detail::reject_prompt_lookup_with_draft(c);
          return DraftModelCandidates<Draft>(draft, vocab, c.suppress_tokens);
        }) {}

  /// A decoder whose candidates come from prompt lookup
  /// (cfg.prompt_lookup_num_tokens must be > 0).
  SpeculativeDecoder(const Target& target, GenerationConfig cfg)
    requires(!kHasDraft)
      : Base(target, std::move(cfg), "SpeculativeDecoder::generate",
             [](const GenerationConfig& c) { return PromptLookupCandidates(c); }) {}
};

template <class D, class T>
SpeculativeDecoder(const D&, const T&, GenerationConfig) -> SpeculativeDecoder<D, T>;
template <class T>
SpeculativeDecoder(const T&, GenerationConfig) -> SpeculativeDecoder<NoDraft, T>;

}  // namespace assistgen
