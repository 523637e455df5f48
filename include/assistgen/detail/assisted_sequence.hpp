// Private to the round loops: one sequence's state in assisted generation and
// the steps of a round that do not touch a model. AssistedDecoder
// (assisted_decoder.hpp) runs one such sequence, calling the target itself;
// BatchEngine (batch_engine.hpp) runs many, verifying all of them in one
// target call per round. Both therefore make the same candidates, the same
// acceptance decisions and the same random draws for a sequence, which is
// what makes a sequence's output independent of its batch mates.
//
// A round, as the loops drive it:
//   propose()                 (or plan_proposal(), a stepwise proposal by the
//                             loop, end_proposal(k))
//   target forward            target_input(cache.size()), logits for the last
//                             target_outputs() rows; a tree source's
//                             proposal is a tree request, target_parent()
//   finish_round(rows, cache) acceptance (a chain, or a tree's path),
//                             rollback (truncate, or keep of the path),
//                             emission
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/acceptance.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/draft_length.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/tree_acceptance.hpp"
#include "assistgen/types.hpp"

namespace assistgen::detail {

/// A candidate source whose proposal is a tree (candidates/draft_tree.hpp):
/// `tree_parent()` gives the parent of each proposed token (-1: the
/// sequence's last token, else an earlier proposed token's index).
template <class S>
concept TreeSource = requires(const S& s) {
  { s.tree_parent() } -> std::convertible_to<std::span<const std::int32_t>>;
};

/// One sequence of assisted generation: its configuration, candidate source,
/// processors, generator, token sequence and result. Movable; holds no model.
template <CandidateSource Source>
class AssistedSequence {
 public:
  /// `make_source(config())` makes the source once the configuration's
  /// schedule options have been checked (DraftLengthPolicy's constructor).
  /// `vocab` is the target's vocabulary size; `name` prefixes errors.
  template <class MakeSource>
  AssistedSequence(GenerationConfig cfg, std::size_t vocab, std::string name,
                   MakeSource&& make_source)
      : cfg_(std::move(cfg)),
        name_(std::move(name)),
        vocab_(vocab),
        draft_length_(cfg_),
        source_(std::forward<MakeSource>(make_source)(cfg_)) {
    eos_ = stop_tokens(cfg_, vocab_);
    chain_ = make_processor_chain(cfg_);
  }

  /// The context the source is lent on each call.
  CandidateContext context() {
    CandidateContext ctx{cfg_, draft_length_, chain_, eos_, rng_};
    ctx.room = room_;
    return ctx;
  }

  /// Starts a generation after `prompt` with the capacity and budget of
  /// `plan` (plan_generation() checked the prompt); the source may keep its
  /// state about the first `keep` tokens (prefix reuse).
  void begin(std::span<const Token> prompt, const GenerationPlan& plan, std::size_t keep) {
    n_ = k_ = limit_ = accepted_ = room_ = 0;
    CandidateContext ctx = context();
    source_.start(plan.capacity, keep, ctx);
    rng_.reseed(cfg_.seed);
    draft_length_.begin_generation();
    chain_.reset();
    seq_.assign(prompt.begin(), prompt.end());
    seq_.reserve(prompt.size() + plan.budget + 1);
    res_ = GenerationResult{};
    res_.tokens.reserve(plan.budget);
    res_.stats.prompt_tokens = prompt.size();
    budget_ = plan.budget;
    reason_ = plan.budget < cfg_.max_new_tokens ? StopReason::capacity : StopReason::max_new_tokens;
    stopped_ = false;
  }

  /// Whether the generation has ended (budget spent, EOS, callback).
  bool done() const { return stopped_ || res_.tokens.size() >= budget_; }

  /// Step 1, first half: the candidates this round may propose, at most
  /// (tokens left - 1) so that with the target's own token a round never
  /// emits more than what is left. In the source's own units (a draft with
  /// another tokenizer counts draft tokens); the context's room bounds the
  /// candidates.
  std::size_t plan_proposal() {
    n_ = seq_.size();
    room_ = budget_ - res_.tokens.size() - 1;
    const CandidateContext ctx = context();
    limit_ = std::min<std::size_t>(source_.limit(ctx), room_);
    return limit_;
  }

  /// Step 1, second half: checks that the source appended the `k` it
  /// reports, and drops a proposal below draft_min_tokens. Returns k.
  std::size_t end_proposal(std::size_t k) {
    if constexpr (TreeSource<Source>) {
      // A tree may have more nodes than the round has room for tokens; its
      // depth (the most it can emit) may not exceed the room.
      const std::span<const std::int32_t> par = source_.tree_parent();
      if (par.size() != k)
        throw Error(name_ + ": the tree source reported " + std::to_string(k) + " nodes and " +
                    std::to_string(par.size()) + " parents");
      depth_.resize(k);
      std::size_t deepest = 0;
      for (std::size_t i = 0; i < k; ++i) {
        if (par[i] < -1 || par[i] >= static_cast<std::int64_t>(i))
          throw Error(name_ + ": the tree source gave node " + std::to_string(i) + " the parent " +
                      std::to_string(par[i]) + " (-1 or an earlier node)");
        depth_[i] = par[i] < 0 ? 1 : depth_[static_cast<std::size_t>(par[i])] + 1;
        deepest = std::max(deepest, depth_[i]);
      }
      if (seq_.size() != n_ + k || deepest > room_)
        throw Error(name_ + ": the tree source appended " + std::to_string(seq_.size() - n_) +
                    " tokens, reported " + std::to_string(k) + ", with depth " +
                    std::to_string(deepest) + ", and the round has room for " +
                    std::to_string(room_));
      tree_depth_ = deepest;
    } else if (seq_.size() != n_ + k || k > room_)
      throw Error(name_ + ": the candidate source appended " + std::to_string(seq_.size() - n_) +
                  " tokens, reported " + std::to_string(k) + ", and the round has room for " +
                  std::to_string(room_));
    if (k > 0 && k < cfg_.draft_min_tokens) {  // too few to be worth a verification
      seq_.resize(n_);
      source_.discard(n_);
      k = 0;
    }
    k_ = k;
    return k;
  }

  /// Step 1 in one call: the source proposes through its propose().
  std::size_t propose() {
    plan_proposal();
    CandidateContext ctx = context();
    return end_proposal(source_.propose(seq_, n_, limit_, ctx));
  }

  /// What the target is fed this round after the `cached` positions its
  /// cache holds: [last, d_1..d_k] (plus the rest of the prompt in the first
  /// round).
  std::span<const Token> target_input(std::size_t cached) const {
    return std::span<const Token>(seq_).subspan(cached);
  }
  /// Logit rows the verification uses: k + 1.
  std::size_t target_outputs() const { return k_ + 1; }
  /// The parent array of the target's request (target_input(cached)): empty
  /// for a chain; for a tree source's proposal, the unseen part of S as a
  /// chain and the tree's nodes under S's last token.
  std::span<const std::int32_t> target_parent(std::size_t cached) {
    if constexpr (TreeSource<Source>) {
      if (k_ == 0) return {};
      const std::size_t m = n_ - cached;  // S[cached..n): the last one is the root
      const std::span<const std::int32_t> par = source_.tree_parent();
      request_parent_.resize(m + k_);
      for (std::size_t i = 0; i < m; ++i) request_parent_[i] = static_cast<std::int32_t>(i) - 1;
      for (std::size_t i = 0; i < k_; ++i)
        request_parent_[m + i] =
            static_cast<std::int32_t>(par[i] < 0 ? m - 1 : m + static_cast<std::size_t>(par[i]));
      return request_parent_;
    } else {
      (void)cached;
      return {};
    }
  }

  /// Steps 3 to 5: accepts against the target's rows (`row(j)`, a writable
  /// span of at least vocab floats, j in 0..k), rolls `tc` and the source
  /// back, and emits d_1..d_a, t through `on_token`, stopping after an EOS or
  /// when the callback asks.
  template <class RowFn, KvCache TC>
  void finish_round(RowFn&& row, TC& tc, const TokenCallback& on_token) {
    if constexpr (TreeSource<Source>) {
      finish_tree_round(row, tc, on_token);
      return;
    }
    GenerationStats& st = res_.stats;
    const std::size_t n = n_, k = k_;
    // Target row j predicts the token after S + d_1..d_j and is processed
    // with exactly that history, as a draft's row j was.
    const std::span<const Token> drafts(seq_.data() + n, k);
    auto process = [&](std::size_t j) {
      std::span<float> r = std::span<float>(row(j)).first(vocab_);
      chain_.apply(r, std::span<const Token>(seq_.data(), n + j));
      return r;
    };
    Verdict v;
    if (cfg_.do_sample) {
      v = verify_sampling(
          drafts,
          [&](std::size_t j) {
            std::span<float> r = process(j);
            softmax_inplace(r);
            return std::span<const float>(r);
          },
          [&](std::size_t j) { return source_.q_row(j); }, rng_);
    } else {
      v = verify_greedy(drafts, [&](std::size_t j) { return argmax(process(j)); });
    }

    // 4. Roll back to the accepted prefix; the source learns the outcome.
    tc.truncate(n + v.accepted);
    CandidateContext ctx = context();
    source_.learn(n, v.accepted, ctx);
    ++st.rounds;
    st.record_round(k, v.accepted);
    st.k_sum += limit_;
    accepted_ = v.accepted;

    // 5. Emit d_1..d_a, t, stopping after an EOS or when the callback asks.
    seq_.resize(n + v.accepted);
    seq_.push_back(v.next);
    emit(n, tc, on_token);
  }

  /// Deepest level of the last tree proposal (tree sources only).
  std::size_t tree_depth() const { return tree_depth_; }

  /// Ends the generation: stop reason, new-token count and the source's
  /// counters in the result, which is moved out (total_seconds is the
  /// caller's).
  GenerationResult finish() {
    res_.stop_reason = reason_;
    res_.stats.new_tokens = res_.tokens.size();
    res_.stats.draft_tokens = res_.stats.drafted;  // a source that re-tokenizes counts its own
    source_.finish(res_.stats);
    return std::move(res_);
  }

  /// Stops the generation early with `reason` (a cancelled sequence).
  void stop(StopReason reason) {
    reason_ = reason;
    stopped_ = true;
  }

  /// Prompt + tokens emitted so far (+ the candidates during a round).
  std::span<const Token> sequence() const { return seq_; }
  /// The token vector the source proposes into (stepwise proposals).
  std::vector<Token>& work() { return seq_; }
  /// |S| at the start of the current round.
  std::size_t round_start() const { return n_; }
  /// Candidates verified this round (after end_proposal()).
  std::size_t drafted() const { return k_; }
  /// Candidates accepted in the last finish_round().
  std::size_t accepted() const { return accepted_; }
  /// Most candidates allowed this round (after plan_proposal()).
  std::size_t limit() const { return limit_; }
  /// The result so far (counters the loop adds to: target calls, seconds).
  GenerationStats& stats() { return res_.stats; }
  /// The result so far.
  const GenerationResult& result() const { return res_; }
  /// Tokens that may still be generated.
  std::size_t budget() const { return budget_; }

  /// The configuration in effect.
  const GenerationConfig& config() const { return cfg_; }
  /// The configuration, for the set_seed() / set_max_new_tokens() setters.
  GenerationConfig& config() { return cfg_; }
  /// The EOS ids in effect.
  std::span<const Token> eos() const { return eos_; }
  /// The draft-length policy.
  const DraftLengthPolicy& draft_length() const { return draft_length_; }
  /// The candidate source.
  const Source& source() const { return source_; }
  /// The candidate source.
  Source& source() { return source_; }
  /// The processors (a stepwise draft proposal applies them).
  LogitsProcessorChain& chain() { return chain_; }
  /// The generator.
  Rng& rng() { return rng_; }
  /// The name errors are prefixed with.
  const std::string& name() const { return name_; }

 private:
  // Emits seq_[n..), stopping after an EOS or when the callback asks, and
  // cuts the caches after a stop inside the block.
  template <KvCache TC>
  void emit(std::size_t n, TC& tc, const TokenCallback& on_token) {
    const auto [end, stop] = emit_tokens(seq_, n, eos_, on_token, res_, reason_);
    stopped_ = stop;
    if (end < seq_.size()) {
      seq_.resize(end);
      if (tc.size() > end - 1) tc.truncate(end - 1);
      source_.cut(end - 1);
    }
  }

  // finish_round() of a tree proposal: row 0 is the root (S's last token),
  // row 1 + i node i. The target's rows are processed with the history of
  // their node (S and the path to it).
  template <class RowFn, KvCache TC>
  void finish_tree_round(RowFn& row, TC& tc, const TokenCallback& on_token) {
    GenerationStats& st = res_.stats;
    const std::size_t n = n_, k = k_;
    const std::span<const Token> nodes(seq_.data() + n, k);
    const std::span<const std::int32_t> par =
        k == 0 ? std::span<const std::int32_t>() : source_.tree_parent();
    // A row's history is S (copied once) and the path the walk is on.
    history_.assign(seq_.begin(), seq_.begin() + static_cast<std::ptrdiff_t>(n));
    auto process = [&](std::size_t r) {
      history_.resize(n);
      for (const std::uint32_t i : path_) history_.push_back(nodes[i]);
      std::span<float> p = std::span<float>(row(r)).first(vocab_);
      chain_.apply(p, std::span<const Token>(history_));
      return p;
    };
    TreeVerdict v;
    if (cfg_.do_sample) {
      v = verify_tree_sampling(
          nodes, par,
          [&](std::size_t r) {
            std::span<float> p = process(r);
            softmax_inplace(p);
            return p;
          },
          [&](std::size_t i) { return source_.q_row(i); }, rng_, path_);
    } else {
      v = verify_tree_greedy(
          nodes, par, [&](std::size_t r) { return argmax(process(r)); }, path_);
    }

    // Keep the path's K/V rows (slot n + i for node i) after S.
    slots_.clear();
    for (const std::uint32_t i : path_) slots_.push_back(static_cast<std::uint32_t>(n + i));
    keep_rows(tc, n, std::span<const std::uint32_t>(slots_));
    CandidateContext ctx = context();
    source_.learn(n, v.accepted, ctx);
    ++st.rounds;
    // drafted / accepted count nodes verified and path length; per depth,
    // drafted_at[d] counts rounds whose tree reached depth d + 1.
    st.drafted += k;
    st.accepted += v.accepted;
    if (st.drafted_at.size() < tree_depth_) {
      st.drafted_at.resize(tree_depth_, 0);
      st.accepted_at.resize(tree_depth_, 0);
    }
    for (std::size_t d = 0; d < (k ? tree_depth_ : 0); ++d) ++st.drafted_at[d];
    for (std::size_t d = 0; d < v.accepted; ++d) ++st.accepted_at[d];
    st.k_sum += limit_;
    accepted_ = v.accepted;

    history_.assign(nodes.begin(), nodes.end());  // the nodes, before seq_ is overwritten
    seq_.resize(n);
    for (const std::uint32_t i : path_) seq_.push_back(history_[i]);
    seq_.push_back(v.next);
    emit(n, tc, on_token);
  }

  GenerationConfig cfg_;
  std::string name_;
  std::size_t vocab_;
  DraftLengthPolicy draft_length_;
  Source source_;
  std::vector<Token> eos_;
  LogitsProcessorChain chain_;
  Rng rng_;
  std::vector<Token> seq_;  // S, plus the candidates during a round
  GenerationResult res_;
  std::size_t budget_ = 0;
  StopReason reason_ = StopReason::max_new_tokens;
  bool stopped_ = false;
  std::size_t n_ = 0, k_ = 0, limit_ = 0, accepted_ = 0, room_ = 0;
  // Tree rounds' scratch.
  std::size_t tree_depth_ = 0;
  std::vector<std::size_t> depth_;
  std::vector<std::int32_t> request_parent_;
  std::vector<std::uint32_t> path_, slots_;
  std::vector<Token> history_;
};

}  // namespace assistgen::detail
