// Private to the text API (generate_batch.cpp, text_engine.cpp): the
// candidate sources BatchEngine runs for the batched calls, made per
// sequence from its resolved GenerationConfig (and its early-exit layer),
// with the checks the one-sequence decoders make.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/candidates/early_exit.hpp"
#include "assistgen/candidates/draft_tree.hpp"
#include "assistgen/candidates/prompt_lookup.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/generation_config.hpp"

namespace assistgen::detail {

// Prompt lookup or self-speculation (the target's first E layers,
// EarlyExitCandidates) for the sequences that ask for them, nothing (plain
// decoding) for the others, so that one engine runs all three. It lends
// BatchEngine the self-speculation hooks (DraftsOnTargetCache); a plain or
// prompt-lookup sequence alone in its round is verified by one target
// forward here, as the engine's batched call would.
class LookupOrPlain {
 public:
  LookupOrPlain(const AnyModel& target, const GenerationConfig& cfg, std::size_t early_exit = 0)
      : target_(&target) {
    if (early_exit) {
      detail::reject_prompt_lookup_with_draft(cfg);
      early_.emplace(target, early_exit);
    } else if (cfg.prompt_lookup_num_tokens > 0) {
      lookup_.emplace(cfg);
    }
  }
  bool early_exit() const { return early_.has_value(); }

  void bind_target_cache(AnyModel::Cache& cache) {
    cache_ = &cache;
    if (early_) early_->bind_target_cache(cache);
  }
  void verify(std::span<const Token> seq, std::size_t rows, Logits& out) {
    if (early_) return early_->verify(seq, rows, out);
    detail::forward_rows(*target_, seq.subspan(cache_->size()), *cache_, rows, out, "target");
  }
  void prepare_batched_verify() {
    if (early_) early_->prepare_batched_verify();
  }

  void start(std::size_t capacity, std::size_t keep, CandidateContext& ctx) {
    if (early_) early_->start(capacity, keep, ctx);
    if (lookup_) lookup_->start(capacity, keep, ctx);
  }
  std::size_t limit(const CandidateContext& ctx) const {
    return early_ ? early_->limit(ctx) : lookup_ ? lookup_->limit(ctx) : 0;
  }
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit,
                      CandidateContext& ctx) {
    return early_    ? early_->propose(seq, n, limit, ctx)
           : lookup_ ? lookup_->propose(seq, n, limit, ctx)
                     : 0;
  }
  std::span<const float> q_row(std::size_t j) const {
    return early_ ? early_->q_row(j) : lookup_ ? lookup_->q_row(j) : std::span<const float>();
  }
  void discard(std::size_t n) {
    if (early_) early_->discard(n);
    if (lookup_) lookup_->discard(n);
  }
  void learn(std::size_t n, std::size_t accepted, CandidateContext& ctx) {
    if (early_) early_->learn(n, accepted, ctx);
    if (lookup_) lookup_->learn(n, accepted, ctx);
  }
  void cut(std::size_t n) {
    if (early_) early_->cut(n);
    if (lookup_) lookup_->cut(n);
  }
  void finish(GenerationStats& stats) const {
    if (early_) early_->finish(stats);
    if (lookup_) lookup_->finish(stats);
  }

 private:
  const AnyModel* target_;
  AnyModel::Cache* cache_ = nullptr;
  std::optional<PromptLookupCandidates> lookup_;
  std::optional<EarlyExitCandidates<AnyModel>> early_;
};

// Sources of a draft with the target's ids, checked as SpeculativeDecoder
// checks them: a draft with fewer rows than a padded target is accepted when
// the rows it lacks are suppressed (cfg.suppress_tokens holds the target's
// masked rows, Model::pairing).
inline auto draft_sources(const AnyModel& draft, const AnyModel& target) {
  return [&draft, vocab = target.vocab_size()](const GenerationConfig& c) {
    check_compatibility(draft.vocab_size(), vocab, c.draft_special_tokens, c.target_special_tokens,
                        c.suppress_tokens);
    detail::reject_prompt_lookup_with_draft(c);
    return DraftModelCandidates<AnyModel>(draft, vocab, c.suppress_tokens);
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
