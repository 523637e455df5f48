// TreeDecoder<Draft, Target>: assisted generation with tree-shaped drafts
// (candidates/draft_tree.hpp) verified in one target pass per round
// (tree_acceptance.hpp). It is AssistedDecoder over DraftTreeCandidates: the
// same round loop, caches and guarantees as SpeculativeDecoder (greedy output
// token for token the target's; sampled output the target's distribution),
// with GenerationConfig::tree_nodes / tree_width / tree_shape choosing the
// tree and num_assistant_tokens its depth. The target needs tree attention
// (AttendsTrees) and a cache with keep() (CacheHasKeep); otherwise the first
// round throws UnsupportedError naming the capability. BatchEngine runs the
// same source for many sequences (Source = DraftTreeCandidates<Draft>).
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "assistgen/assisted_decoder.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/candidates/draft_tree.hpp"
#include "assistgen/generation_config.hpp"

namespace assistgen {

/// Assisted generation with a draft model proposing trees. Holds references
/// to both models (they must outlive the decoder). Not thread-safe; one
/// decoder per thread (the models may be shared).
template <CausalLM Draft, CausalLM Target>
class TreeDecoder : public AssistedDecoder<DraftTreeCandidates<Draft>, Target> {
  using Base = AssistedDecoder<DraftTreeCandidates<Draft>, Target>;

 public:
  /// Throws CompatibilityError when the models cannot be paired,
  /// InvalidArgument for a bad option (naming it; tree_nodes 0 with an
  /// empty tree_shape is one).
  TreeDecoder(const Draft& draft, const Target& target, GenerationConfig cfg)
      : Base(target, std::move(cfg), "TreeDecoder::generate", [&](const GenerationConfig& c) {
          const auto vocab = static_cast<std::size_t>(target.vocab_size());
          check_compatibility(static_cast<std::size_t>(draft.vocab_size()), vocab,
                              c.draft_special_tokens, c.target_special_tokens, c.suppress_tokens);
          detail::reject_prompt_lookup_with_draft(c);
          return DraftTreeCandidates<Draft>(draft, vocab, c, c.suppress_tokens);
        }) {}
};

template <class D, class T>
TreeDecoder(const D&, const T&, GenerationConfig) -> TreeDecoder<D, T>;

}  // namespace assistgen
