// Draft-model candidates: a small CausalLM proposes the next tokens one at a
// time from its own KV cache, keeping the processed distribution q of every
// token it proposes (sampling) so that rejection sampling can compare it with
// the target's p. A CandidateSource (candidate_source.hpp): SpeculativeDecoder
// is AssistedDecoder over it. UniversalDecoder's source drives it through
// the lower-level propose() with its own processors; usable on its own.
//
// Cache protocol (n = length of the sequence S = prompt + output so far):
// - before propose(): the draft cache holds a prefix S[0..m) with m <= n - 1;
//   the tokens S[m..n) (one or two in steady state, the whole prompt at the
//   start) are fed in the first forward call of the round;
// - after proposing d_1..d_k: the cache holds S + d_1..d_{k-1}. d_k was sampled
//   from the last logits but never fed (feeding it would cost a draft call
//   whose logits may never be used);
// - rollback(n + a) after the target accepted a drafts keeps S + d_1..d_a when
//   a < k, and S + d_1..d_{k-1} when a == k; the next round then feeds the one
//   missing token (the target's correction) or the two (d_k and the bonus).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/error.hpp"
#include "assistgen/draft_length.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// What a draft step's choice leaves of the proposal (choose_draft_token).
enum class DraftStep {
  more,      ///< the token was appended; the proposal may go on
  last,      ///< the token was appended and ends the proposal (EOS, stop_after)
  declined,  ///< nothing appended: the policy stops before the token (stop_before)
};

/// The choice of one draft step from its logits `row` (processed in place by
/// `chain` with `work` as the history): sampled from q = softmax(row), which
/// is kept in `q`, when `q` is not empty, else the argmax. Applies the
/// draft-length rules; an appended token goes to `work` and its probability
/// to `probs` (1 when greedy and the policy needs none). Every draft whose
/// tokens are the target's (a draft model, the target's own first layers)
/// proposes through it.
inline DraftStep choose_draft_token(std::span<float> row, std::vector<Token>& work,
                                    std::vector<float>& probs, std::span<float> q,
                                    LogitsProcessorChain& chain, Rng& rng,
                                    const DraftLengthPolicy& lookahead, std::span<const Token> eos) {
  chain.apply(row, std::span<const Token>(work));
  Token d;
  float prob = 1.0f;
  if (!q.empty()) {
    softmax(row, q);
    d = sample_categorical(q, rng);
    prob = q[static_cast<std::size_t>(d)];
  } else {
    d = argmax(row);
    if (lookahead.needs_probability()) prob = softmax_prob(row, d);
  }
  if (lookahead.stop_before(prob)) return DraftStep::declined;
  work.push_back(d);
  probs.push_back(prob);
  if (std::find(eos.begin(), eos.end(), d) != eos.end()) return DraftStep::last;
  if (lookahead.stop_after(prob)) return DraftStep::last;
  return DraftStep::more;
}

/// Proposes tokens with a draft model. Holds the draft's cache and the q rows
/// of the last proposal. `vocab` is the target's vocabulary size: draft logits
/// beyond it are ignored, so a draft with a larger vocabulary never proposes
/// a token the target does not have.
template <CausalLM Draft>
class DraftModelCandidates {
 public:
  using Cache = typename Draft::Cache;  ///< the draft model's KV cache type

  /// Keeps a reference to `model` (it must outlive this object); `vocab` is
  /// the target's vocabulary size. A draft with fewer rows is accepted when
  /// the target rows it lacks are all in `never_generated` (the target's
  /// suppressed padding rows): they get logit -inf, so probability 0, in
  /// every draft row. Throws CompatibilityError otherwise. No cache exists
  /// until start().
  DraftModelCandidates(const Draft& model, std::size_t vocab, std::span<const Token> never_generated = {})
      : model_(&model), vocab_(vocab), rows_(std::min<std::size_t>(model.vocab_size(), vocab)) {
    detail::check_draft_vocab(static_cast<std::size_t>(model.vocab_size()), vocab, never_generated);
  }

  /// Starts a sequence: a cache of at least `capacity` positions, empty, or
  /// cut to its first `keep` positions when the caller knows they hold the
  /// new sequence's prefix (prefix reuse, AssistedDecoder::set_prefix_reuse).
  /// The previous cache is reused when it is large enough; a new one is empty.
  void start(std::size_t capacity, std::size_t keep = 0) {
    if (external_) {
      if (external_->capacity() < capacity)
        throw CapacityError("DraftModelCandidates::start: the cache given with use_cache() holds " +
                            std::to_string(external_->capacity()) +
                            " positions, the sequence needs " + std::to_string(capacity));
      external_->truncate(std::min(external_->size(), keep));
    } else {
      detail::reuse_or_make_cache(*model_, own_, capacity, keep);
    }
  }

  /// Proposes up to `limit` tokens after `work[0..n)`, appending them to
  /// `work` (processors see `work` as the history of each position). Returns
  /// how many were proposed. Stops early after an EOS token or when
  /// `lookahead.stop_after(prob)` says so, and before a token when
  /// `lookahead.stop_before(prob)` does (the cache then also holds d_k). When `sample` is true the tokens
  /// are drawn from q with `rng` and q is kept (row j: q_row(j)).
  std::size_t propose(std::vector<Token>& work, std::size_t n, std::size_t limit,
                      LogitsProcessorChain& chain, bool sample, const DraftLengthPolicy& lookahead,
                      std::span<const Token> eos, Rng& rng) {
    if (!begin_steps(work, n, limit, sample)) return 0;
    do {
      const auto t0 = std::chrono::steady_clock::now();
      // Only the last row is used: the first call of a round may feed
      // several tokens (the whole prompt in the first round).
      detail::forward_rows(*model_, step_input(work), cache(), 1, logits_, "draft");
      count_call(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    } while (take_step(logits_.row(0), work, chain, sample, lookahead, eos, rng));
    return work.size() - n;
  }

  // ---- The same proposal in steps, for a loop that runs the draft steps of
  // several sequences in one batched forward (BatchEngine): begin_steps(),
  // then until take_step() returns false: feed step_input() to the draft's
  // cache() with one output row and pass that row to take_step().

  /// Starts a proposal of up to `limit` tokens after `work[0..n)`. Returns
  /// false when there is nothing to propose (limit 0).
  bool begin_steps(std::vector<Token>& work, std::size_t n, std::size_t limit, bool sample) {
    work.resize(n);
    probs_.clear();
    n_ = n;
    limit_ = limit;
    if (limit == 0) return false;
    Cache& c = cache();
    if (c.size() >= n) c.truncate(n - 1);  // the last token must be fed to get logits
    if (sample && q_.size() < limit * vocab_) q_.resize(limit * vocab_);
    return true;
  }
  /// The tokens the next draft forward appends to cache(): what it has not
  /// seen of `work` (several in a round's first step, then one).
  std::span<const Token> step_input(const std::vector<Token>& work) const {
    return std::span<const Token>(work).subspan(cache().size());
  }
  /// Takes the draft's logits `row` of the last step (at least the target's
  /// vocabulary wide; processed in place): picks the next token (drawn from q
  /// with `rng` when `sample`, kept as q_row(j)) and appends it to `work`
  /// unless `lookahead.stop_before(prob)`. Returns whether another step
  /// follows: not after the limit, an EOS, or when `lookahead.stop_after(prob)`.
  bool take_step(std::span<float> row_in, std::vector<Token>& work, LogitsProcessorChain& chain,
                 bool sample, const DraftLengthPolicy& lookahead, std::span<const Token> eos,
                 Rng& rng) {
    const std::size_t i = work.size() - n_;
    std::span<float> row = target_row(row_in);
    chain.apply(row, std::span<const Token>(work));
    Token d;
    float prob = 1.0f;
    if (sample) {
      std::span<float> q(q_.data() + i * vocab_, vocab_);
      softmax(row, q);
      d = sample_categorical(q, rng);
      prob = q[static_cast<std::size_t>(d)];
    } else {
      d = argmax(row);
      if (lookahead.needs_probability()) prob = softmax_prob(row, d);
    }
    if (lookahead.stop_before(prob)) return false;
    work.push_back(d);
    probs_.push_back(prob);
    if (std::find(eos.begin(), eos.end(), d) != eos.end()) return false;
    if (lookahead.stop_after(prob)) return false;
    return i + 1 < limit_;
  }
  /// Counts one draft forward of `seconds` (calls(), seconds()).
  void count_call(double seconds) {
    seconds_ += seconds;
    ++calls_;
  }
  /// Makes start() use `cache` (owned by the caller, e.g. a KvCacheManager,
  /// and outliving this object's use of it) instead of a cache of its own.
  void use_cache(Cache& cache) { external_ = &cache; }

  /// Drops the last proposal (GenerationConfig::draft_min_tokens): rolls
  /// the cache back to `n` positions and forgets the proposal's
  /// probabilities, so that the schedule learns nothing from it.
  void discard(std::size_t n) {
    rollback(n);
    probs_.clear();
  }

  /// Rolls the cache back to at most `n` positions (see the file comment).
  void rollback(std::size_t n) {
    if (has_cache() && cache().size() > n) cache().truncate(n);
  }

  /// Processed draft distribution of proposed token j (sampling only).
  std::span<const float> q_row(std::size_t j) const { return {q_.data() + j * vocab_, vocab_}; }
  /// The draft's probability of each proposed token (1 when greedy without
  /// the confidence schedule, which does not need it).
  std::span<const float> probs() const { return probs_; }

  /// The draft's KV cache; only valid once start() has run (has_cache()).
  const Cache& cache() const { return external_ ? *external_ : *own_; }
  /// The draft's KV cache; only valid once start() has run (has_cache()).
  Cache& cache() { return external_ ? *external_ : *own_; }
  /// Whether start() has made a cache yet.
  bool has_cache() const { return external_ || own_.has_value(); }
  /// The draft model (not owned).
  const Draft& model() const { return *model_; }

  /// Forward calls since the last reset_counters().
  std::size_t calls() const { return calls_; }
  /// Wall-clock seconds spent in forward calls since the last reset_counters().
  double seconds() const { return seconds_; }
  /// Sets calls() and seconds() to 0 (the decoder does so per generation).
  void reset_counters() {
    calls_ = 0;
    seconds_ = 0.0;
  }

  // ---- CandidateSource (AssistedDecoder calls these; see candidate_source.hpp)

  /// A generation starts: the cache cut to its first `keep` positions (made
  /// for `capacity` positions, empty, when the old one is too small), the
  /// counters reset.
  void start(std::size_t capacity, std::size_t keep, CandidateContext&) {
    start(capacity, keep);
    reset_counters();
  }
  /// K from the draft-length policy.
  std::size_t limit(const CandidateContext& ctx) const { return ctx.draft_length.k(); }
  /// propose() above with the decoder's processors, sampling mode, policy,
  /// EOS ids and generator.
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit, CandidateContext& ctx) {
    return propose(seq, n, limit, ctx.chain, ctx.config.do_sample, ctx.draft_length, ctx.eos, ctx.rng);
  }
  /// `accepted` of the proposal after S[0..n) were accepted: the cache keeps
  /// S + d_1..d_accepted (see the file comment) and the policy adapts K.
  void learn(std::size_t n, std::size_t accepted, CandidateContext& ctx) {
    rollback(n + accepted);
    ctx.draft_length.update(probs(), accepted);
  }
  /// Generation stopped inside the block: the cache keeps at most `n` positions.
  void cut(std::size_t n) { rollback(n); }
  /// Draft calls and seconds of this generation into `stats`.
  void finish(GenerationStats& stats) const {
    stats.draft_calls = calls();
    stats.draft_seconds = seconds();
  }
  /// The draft's cache for round observers (null before start()).
  const Cache* draft_cache() const { return has_cache() ? &cache() : nullptr; }
  /// The target's limits lowered by the draft's: its cache holds one
  /// position fewer than the target's, so its hard limit D allows D + 1.
  PositionLimits limits(PositionLimits target) const {
    return detail::combined_limits(target, position_limits(*model_));
  }

 private:
  // The draft's last row over the target's vocabulary: its first vocab_
  // logits, or (a draft with fewer rows: a padded target) its logits then
  // -inf for the rows it lacks.
  std::span<float> target_row(std::span<float> draft_row) {
    if (rows_ == vocab_) return draft_row.first(vocab_);
    padded_.assign(vocab_, -std::numeric_limits<float>::infinity());
    std::copy_n(draft_row.data(), rows_, padded_.data());
    return padded_;
  }

  const Draft* model_;
  std::size_t vocab_;
  std::optional<Cache> own_;   // the cache made by start() (without use_cache())
  Cache* external_ = nullptr;  // use_cache()
  std::size_t n_ = 0;          // begin_steps(): the sequence length the proposal follows
  std::size_t limit_ = 0;      // begin_steps(): the most tokens it may propose
  std::size_t rows_;            // draft rows used: min(draft vocab, vocab_)
  std::vector<float> padded_;   // target_row() of a draft with fewer rows
  Logits logits_;  // reused every draft step
  std::vector<float> q_;
  std::vector<float> probs_;
  std::size_t calls_ = 0;
  double seconds_ = 0.0;
};

}  // namespace assistgen
