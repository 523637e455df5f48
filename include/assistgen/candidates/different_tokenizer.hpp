// Candidates from a draft whose tokenizer differs from the target's (Hugging
// Face's "universal assisted generation", AssistedCandidateGeneratorDifferent-
// Tokenizers): a CandidateSource (candidate_source.hpp) whose draft keeps its
// own token sequence and converts through text in both directions.
// UniversalDecoder is AssistedDecoder over it; universal_decoder.hpp
// describes the round and where it differs from HF.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/tokenizer.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// Where a re-encoded window lines up with the tail of a sequence.
struct TokenAlignment {
  bool found = false;      ///< false: no token of the window occurs in the tail
  std::size_t window = 0;  ///< start of the matched run in the window
  std::size_t tail = 0;    ///< start of the matched run in the tail
  std::size_t length = 0;  ///< tokens in the run
};

/// The longest run of equal tokens along one diagonal of the matrix
/// window[i] == tail[j] (HF's _get_longest_diag_index): window[i + r] ==
/// tail[j + r] for r < length. Ties go to the run that starts first in
/// row-major (window-major) order, as in HF.
inline TokenAlignment align_tokens(std::span<const Token> tail, std::span<const Token> window) {
  TokenAlignment best;
  for (std::size_t i = 0; i < window.size(); ++i)
    for (std::size_t j = 0; j < tail.size(); ++j) {
      if (window[i] != tail[j]) continue;
      if (i > 0 && j > 0 && window[i - 1] == tail[j - 1]) continue;  // inside a run already counted
      std::size_t len = 1;
      while (i + len < window.size() && j + len < tail.size() && window[i + len] == tail[j + len])
        ++len;
      if (len > best.length) best = TokenAlignment{true, i, j, len};
    }
  return best;
}

/// Options of the different-tokenizer candidate conversion.
struct UniversalOptions {
  /// Target tokens re-encoded for the draft each round (HF: target_lookbehind).
  std::size_t target_lookbehind = 10;
  /// Draft tokens before the new proposal re-encoded with it for the target
  /// (HF: assistant_lookbehind).
  std::size_t assistant_lookbehind = 10;
  /// Draft ids whose logits are masked (e.g. rows of a padded embedding the
  /// draft's tokenizer has no token for).
  std::vector<Token> draft_suppress_tokens = {};
};

/// Greedy candidates from a draft with its own tokenizer. Holds a reference
/// to the draft (it must outlive this object), cheap copies of both
/// tokenizers (sharing their tables) and the draft's cache. Its candidates
/// have no distribution usable against the target's (they are re-tokenized),
/// so UniversalDecoder rejects do_sample.
template <CausalLM Draft>
class DifferentTokenizerCandidates {
 public:
  using Cache = typename Draft::Cache;  ///< the draft model's cache type

  /// The draft only ever proposes ids its tokenizer has (rows of its logits
  /// beyond the tokenizer's vocabulary are ignored); `target_vocab` bounds
  /// the candidates. Throws InvalidArgument for a zero lookbehind.
  DifferentTokenizerCandidates(const Draft& draft, const Tokenizer& draft_tokenizer,
                               const Tokenizer& target_tokenizer, std::size_t target_vocab,
                               UniversalOptions options)
      : draft_tok_(draft_tokenizer),
        target_tok_(target_tokenizer),
        opts_(std::move(options)),
        target_vocab_(target_vocab),
        draft_(draft, std::min<std::size_t>(draft.vocab_size(), draft_tokenizer.vocab_size())) {
    if (opts_.target_lookbehind == 0 || opts_.assistant_lookbehind == 0)
      throw InvalidArgument(
          "UniversalOptions: target_lookbehind and assistant_lookbehind must be at least 1");
    if (!opts_.draft_suppress_tokens.empty())
      draft_chain_.emplace<SuppressTokensProcessor>(opts_.draft_suppress_tokens);
    draft_eos_ = draft_tok_.eos_ids();
  }

  /// The candidate-conversion options as given.
  const UniversalOptions& options() const { return opts_; }
  /// The draft's own token sequence after the last round (its proposals included).
  std::span<const Token> draft_sequence() const { return dseq_; }

  // ---- CandidateSource (see candidate_source.hpp)

  /// A generation starts: the draft sequence is rebuilt from the prompt in
  /// the first round and the draft's cache refilled (another tokenization:
  /// nothing of the previous sequence is kept); the cache is made when first
  /// needed.
  void start(std::size_t, std::size_t, CandidateContext& ctx) {
    draft_chain_.reset();
    draft_.reset_counters();
    dseq_.clear();
    last_proposed_ = 0;
    sync_n_ = sync_d_ = 0;
    draft_capacity_ = 0;
    max_new_tokens_ = ctx.config.max_new_tokens;
    first_ = true;
    proposed_ = false;
    convert_seconds_ = 0.0;
  }
  /// K from the draft-length policy (in draft tokens).
  std::size_t limit(const CandidateContext& ctx) const { return ctx.draft_length.k(); }
  /// Steps 1-3 of the round: sync the draft with the target's sequence
  /// seq[0..n), let it propose up to `limit` draft tokens, and append their
  /// re-encoding as at most ctx.room target candidates.
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit, CandidateContext& ctx) {
    proposed_ = false;
    if (limit == 0) return 0;  // nothing left to draft
    const auto t0 = std::chrono::steady_clock::now();
    sync_draft(std::span<const Token>(seq.data(), n), first_);
    first_ = false;
    convert_seconds_ += seconds_since(t0);
    // A draft with learned positions proposes only within them (its cache
    // would need position before + draft_limit - 1).
    const std::size_t before = dseq_.size();
    const std::size_t draft_hard = position_limits(draft_.model()).hard;
    const std::size_t draft_limit =
        !draft_hard ? limit : before <= draft_hard ? std::min(limit, draft_hard + 1 - before) : 0;
    if (dseq_.empty() || draft_limit == 0) return 0;
    sync_n_ = n;
    sync_d_ = before;
    ensure_draft_capacity(before + draft_limit);
    draft_.propose(dseq_, before, draft_limit, draft_chain_, false, ctx.draft_length, draft_eos_, ctx.rng);
    proposed_ = true;
    last_proposed_ = dseq_.size() - before;
    const auto t1 = std::chrono::steady_clock::now();
    const std::size_t k = target_candidates(seq, before, ctx.room);
    convert_seconds_ += seconds_since(t1);
    return k;
  }
  /// Re-tokenized candidates have no distribution (greedy only).
  std::span<const float> q_row(std::size_t) const { return {}; }
  /// Too few candidates: the proposal teaches the policy nothing.
  void discard(std::size_t) { proposed_ = false; }
  /// K counts draft tokens and `accepted` target tokens: HF's schedule
  /// compares the two the same way.
  void learn(std::size_t, std::size_t accepted, CandidateContext& ctx) {
    if (proposed_) ctx.draft_length.update(draft_.probs(), accepted);
  }
  /// Nothing to cut: the next round re-syncs the draft from the target's text.
  void cut(std::size_t) {}
  /// Draft calls, and the draft's seconds plus re-tokenization (the draft
  /// side's cost).
  void finish(GenerationStats& stats) const {
    stats.draft_calls = draft_.calls();
    stats.draft_seconds = draft_.seconds() + convert_seconds_;
  }
  /// The draft's cache for round observers (null before the first proposal).
  const Cache* draft_cache() const { return draft_.has_cache() ? &draft_.cache() : nullptr; }

 private:
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::size_t vocab() const { return target_vocab_; }

  // Text of target / draft ids; special tokens dropped, as HF's batch_decode
  // with skip_special_tokens=True.
  std::vector<Token> target_to_draft(std::span<const Token> ids, bool add_special) const {
    return draft_tok_.encode(target_tok_.decode(ids, true), {.add_special_tokens = add_special});
  }

  // Step 1: bring the draft sequence in line with the target sequence.
  void sync_draft(std::span<const Token> seq, bool first) {
    const std::size_t n = seq.size();
    std::vector<Token> next;
    if (first || n <= opts_.target_lookbehind) {
      // HF re-encodes the whole target sequence while it is short.
      next = target_to_draft(seq, true);
      if (next.empty())
        if (auto bos = draft_tok_.bos_id()) next.push_back(*bos);
    } else {
      const std::vector<Token> window =
          target_to_draft(std::span<const Token>(seq).subspan(n - opts_.target_lookbehind), false);
      // The window's first `old` tokens re-encode target text the draft had
      // at the previous round's start (sync_n_ target tokens, sync_d_ draft
      // tokens). When the window's token before that boundary is the draft's
      // token there, the draft continues from its own prefix with the
      // window's tokens after the boundary (not in HF; see target_candidates).
      const std::size_t w0 = n - opts_.target_lookbehind;
      std::size_t old = 0;
      if (sync_n_ >= w0 && sync_n_ <= n && sync_d_ > 0 && sync_d_ <= dseq_.size())
        old = target_to_draft(std::span<const Token>(seq).subspan(w0, sync_n_ - w0), false).size();
      if (old > 0 && old <= window.size() && window[old - 1] == dseq_[sync_d_ - 1]) {
        next.assign(dseq_.begin(), dseq_.begin() + static_cast<std::ptrdiff_t>(sync_d_));
        next.insert(next.end(), window.begin() + static_cast<std::ptrdiff_t>(old), window.end());
      } else {
        // HF compares with the last window.size() draft tokens. Those end
        // with the previous proposal, which the target may have rejected
        // entirely; when nothing aligns, the proposal's length is searched
        // as well.
        std::size_t use = std::min(window.size(), dseq_.size());
        TokenAlignment a =
            align_tokens(std::span<const Token>(dseq_).subspan(dseq_.size() - use), window);
        if (!a.found && last_proposed_ > 0) {
          use = std::min(window.size() + last_proposed_, dseq_.size());
          a = align_tokens(std::span<const Token>(dseq_).subspan(dseq_.size() - use), window);
        }
        const std::size_t base = dseq_.size() - use;
        if (a.found) {
          next.assign(dseq_.begin(),
                      dseq_.begin() + static_cast<std::ptrdiff_t>(base + a.tail + a.length));
          next.insert(next.end(), window.begin() + static_cast<std::ptrdiff_t>(a.window + a.length),
                      window.end());
        } else {
          next = dseq_;  // no overlap at all: append the window (HF's edge case)
          next.insert(next.end(), window.begin(), window.end());
        }
      }
    }
    // Ids outside the draft's logits cannot be fed; cut there (never expected
    // with a consistent tokenizer / model pair, but an out-of-range id is a
    // backend error, not a reason to stop generating).
    const std::size_t dv = static_cast<std::size_t>(draft_.model().vocab_size());
    for (std::size_t i = 0; i < next.size(); ++i)
      if (next[i] < 0 || static_cast<std::size_t>(next[i]) >= dv) {
        next.resize(i);
        break;
      }
    std::size_t common = 0;
    while (common < next.size() && common < dseq_.size() && next[common] == dseq_[common]) ++common;
    if (draft_.has_cache()) draft_.rollback(common);
    dseq_ = std::move(next);
  }

  // The draft cache must hold the sequence plus the proposal; it grows by
  // doubling (the new cache is refilled by the next propose()).
  void ensure_draft_capacity(std::size_t need) {
    if (need <= draft_capacity_) return;
    draft_capacity_ = std::max<std::size_t>({need * 2, 64, max_new_tokens_ * 2});
    draft_.start(draft_capacity_);
  }

  // Step 3: the draft's new tokens as target candidates, appended to `seq`.
  std::size_t target_candidates(std::vector<Token>& seq, std::size_t before, std::size_t max_candidates) {
    const std::size_t n = seq.size();
    if (dseq_.size() == before) return 0;
    const std::size_t start =
        before > opts_.assistant_lookbehind ? before - opts_.assistant_lookbehind : 0;
    const std::vector<Token> window =
        target_tok_.encode(draft_tok_.decode(std::span<const Token>(dseq_).subspan(start), true),
                           {.add_special_tokens = false});
    const std::size_t use = std::min(window.size(), n);
    const std::span<const Token> tail = std::span<const Token>(seq).subspan(n - use);
    // The window's first `old` tokens re-encode text the target already has.
    // When the window's token just before that boundary is the target's last
    // token, the boundary is where the new text starts: take it. This is not
    // in HF, whose diagonal search alone can align a repetitive window
    // ("and, and, and") one period too early and propose nothing.
    const std::size_t old =
        target_tok_
            .encode(draft_tok_.decode(std::span<const Token>(dseq_).subspan(start, before - start),
                                      true),
                    {.add_special_tokens = false})
            .size();
    std::size_t from = 0;
    if (old > 0 && old <= window.size() && use > 0 && window[old - 1] == tail[use - 1]) {
      from = old;
    } else if (const TokenAlignment a = align_tokens(tail, window); a.found) {
      // HF skips as many window tokens as the tail has after the run.
      const std::size_t discrepancy = use - (a.tail + a.length);
      from = std::min(window.size(), a.window + a.length + discrepancy);
    }
    std::size_t k = 0;
    for (std::size_t i = from; i < window.size() && k < max_candidates; ++i, ++k) {
      if (window[i] < 0 || static_cast<std::size_t>(window[i]) >= vocab()) break;
      seq.push_back(window[i]);
    }
    return k;
  }

  Tokenizer draft_tok_;
  Tokenizer target_tok_;
  UniversalOptions opts_;
  std::size_t target_vocab_;
  DraftModelCandidates<Draft> draft_;
  std::vector<Token> draft_eos_;
  LogitsProcessorChain draft_chain_;
  std::size_t draft_capacity_ = 0;
  std::size_t max_new_tokens_ = 0;
  std::size_t last_proposed_ = 0;  // draft tokens proposed in the latest round
  std::size_t sync_n_ = 0;         // target / draft lengths when the latest
  std::size_t sync_d_ = 0;         // proposal started (the two texts agreed there)
  bool first_ = true;              // the next sync re-encodes the whole sequence
  bool proposed_ = false;          // the draft proposed this round
  double convert_seconds_ = 0.0;
  std::vector<Token> dseq_;  // draft sequence, with its latest proposal
};

}  // namespace assistgen
