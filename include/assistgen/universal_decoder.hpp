// UniversalDecoder<Draft, Target>: assisted generation when the draft and the
// target use DIFFERENT tokenizers (Hugging Face's "universal assisted
// generation", AssistedCandidateGeneratorDifferentTokenizers), greedy only.
//
// The draft keeps its own token sequence. Each round:
//   1. the target's newest tokens (a window of `target_lookbehind`) are
//      decoded to text and re-encoded with the draft's tokenizer and lined up
//      with the draft sequence: at the known boundary (the draft's length
//      when the previous proposal started) when the tokens there agree, else
//      by align_tokens (HF's search: the longest run of equal tokens on one
//      diagonal of the comparison matrix with the draft's tail). The draft
//      sequence is cut there and continued with the re-encoded tokens after
//      it, so its rejected proposals disappear; its KV cache is rolled back
//      to the prefix the old and new draft sequences share;
//   2. the draft proposes up to K tokens greedily from its own cache;
//   3. a window of the draft sequence (from `assistant_lookbehind` tokens
//      before the proposal) is decoded and re-encoded with the target's
//      tokenizer and lined up with the target sequence the same way (known
//      boundary first, then HF's search); the target tokens after it are the
//      candidates;
//   4. the target verifies the candidates in one forward call (greedy match),
//      and its cache is rolled back to what it accepted.
// Only the target decides what is emitted, so the output is token for token
// the target's plain greedy output, however well or badly the two
// tokenizations line up; a poor alignment only costs acceptance.
//
// Sampling is not supported with different tokenizers (as in Hugging Face's
// AssistedCandidateGeneratorDifferentTokenizers): do_sample is an
// UnsupportedError. Prompt lookup is not combined with a draft either.
//
// Differences from HF, all on the candidate side (they cannot change the
// output): the known-boundary check before the diagonal search (the search
// alone can line a repetitive window, "and, and, and", up one period off and
// propose nothing); windows re-encoded without special tokens (HF adds e.g. a
// BOS in the middle of a window, which then never aligns); when the
// draft-side search finds nothing (HF's tail can consist of rejected
// proposals only), a tail longer by the previous proposal is searched;
// candidates clipped to the tokens left in the budget. With two tokenizers
// that encode the same text the same way, the candidates are exactly the
// draft's proposals (test_universal pins this).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "assistgen/acceptance.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/lookahead.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
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

/// Greedy assisted generation with a draft whose tokenizer differs from the
/// target's. Holds references to both models (they must outlive the
/// decoder), cheap copies of both tokenizers (sharing their tables) and one
/// cache for each model. Not thread-safe.
template <CausalLM Draft, CausalLM Target>
class UniversalDecoder {
 public:
  using DraftCache = typename Draft::Cache;    ///< the draft's cache type
  using TargetCache = typename Target::Cache;  ///< the target's cache type

  /// Throws UnsupportedError when cfg.do_sample is set, InvalidArgument for a
  /// bad option (naming it). The draft only ever proposes ids its tokenizer
  /// has (rows of its logits beyond the tokenizer's vocabulary are ignored).
  UniversalDecoder(const Draft& draft, const Tokenizer& draft_tokenizer, const Target& target,
                   const Tokenizer& target_tokenizer, GenerationConfig cfg,
                   UniversalOptions options = {})
      : target_(&target),
        draft_tok_(draft_tokenizer),
        target_tok_(target_tokenizer),
        cfg_(std::move(cfg)),
        opts_(std::move(options)),
        lookahead_(cfg_),
        draft_(draft, std::min<std::size_t>(draft.vocab_size(), draft_tokenizer.vocab_size())) {
    if (cfg_.do_sample)
      throw UnsupportedError(
          "GenerationConfig: do_sample is true, but a draft with a different tokenizer "
          "supports greedy decoding only (as in Hugging Face); set do_sample to false or use "
          "a draft with the target's tokenizer");
    if (cfg_.prompt_lookup_num_tokens != 0)
      throw InvalidArgument(
          "GenerationConfig: prompt_lookup_num_tokens is set but a draft model was given; "
          "prompt lookup works without a draft model");
    if (opts_.target_lookbehind == 0 || opts_.assistant_lookbehind == 0)
      throw InvalidArgument(
          "UniversalOptions: target_lookbehind and assistant_lookbehind must be at least 1");
    eos_ = detail::stop_tokens(cfg_, vocab());
    chain_ = make_processor_chain(cfg_);
    if (!opts_.draft_suppress_tokens.empty())
      draft_chain_.emplace<SuppressTokensProcessor>(opts_.draft_suppress_tokens);
    draft_eos_ = draft_tok_.eos_ids();
  }

  UniversalDecoder(const UniversalDecoder&) = delete;
  UniversalDecoder& operator=(const UniversalDecoder&) = delete;

  /// Generates up to cfg.max_new_tokens target tokens after `prompt` (target
  /// ids, not empty); `on_token` as in SpeculativeDecoder.
  GenerationResult generate(std::span<const Token> prompt, const TokenCallback& on_token = {}) {
    const auto t_start = std::chrono::steady_clock::now();
    GenerationResult res;
    GenerationStats& st = res.stats;
    const std::size_t P = prompt.size();
    const auto [cap, budget] = detail::plan_generation("UniversalDecoder::generate", prompt, vocab(), cfg_,
                                                   position_limits(*target_));
    // Prefix reuse of the target's cache as in SpeculativeDecoder; the
    // draft side (another tokenization) starts afresh every call.
    const std::size_t keep =
        reuse_prefix_ && seq_valid_ ? std::min(detail::common_prefix(seq_, prompt), P - 1) : 0;
    seq_valid_ = false;
    TargetCache& tc = detail::reuse_or_make_cache(*target_, target_cache_, cap, keep);
    st.reused_tokens = tc.size();
    lookahead_.begin_generation();
    chain_.reset();
    draft_chain_.reset();
    draft_.reset_counters();
    seq_.assign(prompt.begin(), prompt.end());
    dseq_.clear();
    last_proposed_ = 0;
    sync_n_ = sync_d_ = 0;
    draft_capacity_ = 0;
    res.tokens.reserve(budget);
    st.prompt_tokens = P;

    StopReason reason =
        budget < cfg_.max_new_tokens ? StopReason::capacity : StopReason::max_new_tokens;
    bool stopped = false;
    bool first = true;
    double convert_seconds = 0.0;
    while (!stopped && res.tokens.size() < budget) {
      const std::size_t n = seq_.size();
      const std::size_t remaining = budget - res.tokens.size();
      const std::size_t limit = std::min(lookahead_.k(), remaining - 1);

      // 1-3. Candidates in target tokens (none when nothing is left to draft).
      std::size_t k = 0;
      bool proposed = false;
      if (limit > 0) {
        const auto t0 = std::chrono::steady_clock::now();
        sync_draft(first);
        first = false;
        convert_seconds += seconds_since(t0);
        // A draft with learned positions proposes only within them (its
        // cache would need position before + draft_limit - 1).
        const std::size_t before = dseq_.size();
        const std::size_t draft_hard = position_limits(draft_.model()).hard;
        const std::size_t draft_limit =
            !draft_hard ? limit : before <= draft_hard ? std::min(limit, draft_hard + 1 - before) : 0;
        if (!dseq_.empty() && draft_limit > 0) {
          sync_n_ = n;
          sync_d_ = before;
          ensure_draft_capacity(before + draft_limit);
          draft_.propose(dseq_, before, draft_limit, draft_chain_, false, lookahead_, draft_eos_,
                         rng_);
          proposed = true;
          last_proposed_ = dseq_.size() - before;
          const auto t1 = std::chrono::steady_clock::now();
          k = target_candidates(before, remaining - 1);
          if (k > 0 && k < cfg_.draft_min_tokens) {  // too few to be worth a verification
            seq_.resize(n);
            k = 0;
            proposed = false;
          }
          convert_seconds += seconds_since(t1);
        }
      }

      // 4. One target call over everything it has not seen, then greedy match.
      const std::span<const Token> input = std::span<const Token>(seq_).subspan(tc.size());
      const auto t0 = std::chrono::steady_clock::now();
      forward_into(*target_, input, tc, target_logits_);
      Logits& logits = target_logits_;
      st.target_seconds += seconds_since(t0);
      ++st.target_calls;
      if (logits.rows() != input.size() || logits.cols() < vocab())
        throw Error("target forward returned logits of shape [" + std::to_string(logits.rows()) +
                    ", " + std::to_string(logits.cols()) + "] for " + std::to_string(input.size()) +
                    " tokens");
      const std::size_t row0 = input.size() - (k + 1);
      const std::span<const Token> drafts(seq_.data() + n, k);
      const Verdict v = verify_greedy(drafts, [&](std::size_t j) {
        std::span<float> row = logits.row(row0 + j).first(vocab());
        chain_.apply(row, std::span<const Token>(seq_.data(), n + j));
        return argmax(row);
      });
      tc.truncate(n + v.accepted);
      // K counts draft tokens and `accepted` target tokens: HF's schedule
      // compares the two the same way.
      if (proposed) lookahead_.update(draft_.probs(), v.accepted);
      ++st.rounds;
      st.record_round(k, v.accepted);
      st.k_sum += limit;

      // 5. Emit, stopping after an EOS or when the callback asks.
      seq_.resize(n + v.accepted);
      seq_.push_back(v.next);
      const auto [end, stop] = detail::emit_tokens(seq_, n, eos_, on_token, res, reason);
      stopped = stop;
      if (end < seq_.size()) {
        seq_.resize(end);
        if (tc.size() > end - 1) tc.truncate(end - 1);
      }
    }

    res.stop_reason = reason;
    st.new_tokens = res.tokens.size();
    st.draft_calls = draft_.calls();
    // Re-tokenization is the draft side's cost, so it is counted there.
    st.draft_seconds = draft_.seconds() + convert_seconds;
    st.total_seconds = seconds_since(t_start);
    seq_valid_ = true;
    return res;
  }

  /// Prefix reuse of the target's cache, as SpeculativeDecoder's (the
  /// draft's cache, of another tokenization, is refilled). Off by default.
  void set_prefix_reuse(bool on) { reuse_prefix_ = on; }
  /// Replaces max_new_tokens for the next generate() calls.
  void set_max_new_tokens(std::size_t n) { cfg_.max_new_tokens = n; }

  /// The configuration as given to the constructor (eos_token_ids stays
  /// empty when the stop ids come from target_special_tokens).
  const GenerationConfig& config() const { return cfg_; }
  /// The candidate-conversion options as given.
  const UniversalOptions& options() const { return opts_; }
  /// K the next round will use (heuristic schedules change it).
  std::size_t num_assistant_tokens() const { return lookahead_.k(); }
  /// The draft's own token sequence after the last round (its proposals included).
  std::span<const Token> draft_sequence() const { return dseq_; }
  /// The target's vocabulary size (logits per position): prompt ids must be
  /// below it, and candidates at or beyond it are cut off.
  std::size_t vocab() const { return static_cast<std::size_t>(target_->vocab_size()); }

 private:
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // Text of target / draft ids; special tokens dropped, as HF's batch_decode
  // with skip_special_tokens=True.
  std::vector<Token> target_to_draft(std::span<const Token> ids, bool add_special) const {
    return draft_tok_.encode(target_tok_.decode(ids, true), {.add_special_tokens = add_special});
  }

  // Step 1: bring the draft sequence in line with the target sequence.
  void sync_draft(bool first) {
    const std::size_t n = seq_.size();
    std::vector<Token> next;
    if (first || n <= opts_.target_lookbehind) {
      // HF re-encodes the whole target sequence while it is short.
      next = target_to_draft(seq_, true);
      if (next.empty())
        if (auto bos = draft_tok_.bos_id()) next.push_back(*bos);
    } else {
      const std::vector<Token> window =
          target_to_draft(std::span<const Token>(seq_).subspan(n - opts_.target_lookbehind), false);
      // The window's first `old` tokens re-encode target text the draft had
      // at the previous round's start (sync_n_ target tokens, sync_d_ draft
      // tokens). When the window's token before that boundary is the draft's
      // token there, the draft continues from its own prefix with the
      // window's tokens after the boundary (not in HF; see target_candidates).
      const std::size_t w0 = n - opts_.target_lookbehind;
      std::size_t old = 0;
      if (sync_n_ >= w0 && sync_n_ <= n && sync_d_ > 0 && sync_d_ <= dseq_.size())
        old = target_to_draft(std::span<const Token>(seq_).subspan(w0, sync_n_ - w0), false).size();
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
    draft_capacity_ = std::max<std::size_t>({need * 2, 64, cfg_.max_new_tokens * 2});
    draft_.start(draft_capacity_);
  }

  // Step 3: the draft's new tokens as target candidates, appended to seq_.
  std::size_t target_candidates(std::size_t before, std::size_t max_candidates) {
    const std::size_t n = seq_.size();
    if (dseq_.size() == before) return 0;
    const std::size_t start =
        before > opts_.assistant_lookbehind ? before - opts_.assistant_lookbehind : 0;
    const std::vector<Token> window =
        target_tok_.encode(draft_tok_.decode(std::span<const Token>(dseq_).subspan(start), true),
                           {.add_special_tokens = false});
    const std::size_t use = std::min(window.size(), n);
    const std::span<const Token> tail = std::span<const Token>(seq_).subspan(n - use);
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
      seq_.push_back(window[i]);
    }
    return k;
  }

  const Target* target_;
  Tokenizer draft_tok_;
  Tokenizer target_tok_;
  GenerationConfig cfg_;
  UniversalOptions opts_;
  Lookahead lookahead_;
  DraftModelCandidates<Draft> draft_;
  std::vector<Token> eos_;
  std::vector<Token> draft_eos_;
  LogitsProcessorChain chain_;
  LogitsProcessorChain draft_chain_;
  Rng rng_;  // unused by greedy drafting; propose() takes one
  std::optional<TargetCache> target_cache_;
  Logits target_logits_;  // reused every round
  std::size_t draft_capacity_ = 0;
  std::size_t last_proposed_ = 0;  // draft tokens proposed in the latest round
  std::size_t sync_n_ = 0;         // target / draft lengths when the latest
  std::size_t sync_d_ = 0;         // proposal started (the two texts agreed there)
  std::vector<Token> seq_;         // target sequence, plus the candidates during a round
  std::vector<Token> dseq_;        // draft sequence, with its latest proposal
  bool reuse_prefix_ = false;      // set_prefix_reuse()
  bool seq_valid_ = false;         // seq_ is the last finished call's sequence
};

}  // namespace assistgen
