// Private to the text API (generate_batch.cpp, text_engine.cpp): the
// candidate sources BatchEngine runs for the batched calls, made per
// sequence from its resolved GenerationConfig, with the checks the
// one-sequence decoders make.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/candidates/draft_tree.hpp"
#include "assistgen/candidates/prompt_lookup.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/generation_config.hpp"

namespace assistgen::detail {

// Prompt lookup for the sequences that ask for it, nothing (plain decoding)
// for the others, so that one engine runs both.
class LookupOrPlain {
 public:
  explicit LookupOrPlain(const GenerationConfig& cfg) {
    if (cfg.prompt_lookup_num_tokens > 0) lookup_.emplace(cfg);
  }
  void start(std::size_t capacity, std::size_t keep, CandidateContext& ctx) {
    if (lookup_) lookup_->start(capacity, keep, ctx);
  }
  std::size_t limit(const CandidateContext& ctx) const { return lookup_ ? lookup_->limit(ctx) : 0; }
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit,
                      CandidateContext& ctx) {
    return lookup_ ? lookup_->propose(seq, n, limit, ctx) : 0;
  }
  std::span<const float> q_row(std::size_t j) const {
    return lookup_ ? lookup_->q_row(j) : std::span<const float>();
  }
  void discard(std::size_t n) {
    if (lookup_) lookup_->discard(n);
  }
  void learn(std::size_t n, std::size_t accepted, CandidateContext& ctx) {
    if (lookup_) lookup_->learn(n, accepted, ctx);
  }
  void cut(std::size_t n) {
    if (lookup_) lookup_->cut(n);
  }
  void finish(GenerationStats& stats) const {
    if (lookup_) lookup_->finish(stats);
  }

 private:
  std::optional<PromptLookupCandidates> lookup_;
};

// Sources of a draft with the target's ids, checked as SpeculativeDecoder checks them.
inline auto draft_sources(const AnyModel& draft, const AnyModel& target) {
  return [&draft, vocab = target.vocab_size()](const GenerationConfig& c) {
    check_compatibility(draft.vocab_size(), vocab, c.draft_special_tokens, c.target_special_tokens);
    detail::reject_prompt_lookup_with_draft(c);
    return DraftModelCandidates<AnyModel>(draft, vocab);
  };
}

/// The sources of a batch whose sequences draft trees with `draft`: each
/// sequence's configuration with the batch's tree options.
inline auto tree_sources(const AnyModel& draft, const AnyModel& target,
                         const BatchGenerateOptions& batch) {
  return [&draft, vocab = target.vocab_size(), nodes = batch.tree_nodes, width = batch.tree_width,
          shape = batch.tree_shape](const GenerationConfig& c) {
    check_compatibility(draft.vocab_size(), vocab, c.draft_special_tokens, c.target_special_tokens);
    detail::reject_prompt_lookup_with_draft(c);
    GenerationConfig t = c;
    t.tree_nodes = nodes;
    t.tree_width = width;
    t.tree_shape = shape;
    return DraftTreeCandidates<AnyModel>(draft, vocab, t);
  };
}

}  // namespace assistgen::detail
