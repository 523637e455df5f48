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
#include <functional>
#include <limits>
#include <optional>
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

/// The tokens two vocabularies share, by token string (HF's
/// AssistantToTargetTranslator, for universal speculative decoding with
/// sampling): draft id d and target id t correspond when their vocabulary
/// strings are equal, after the draft's word-start sign (the first character
/// of how " " tokenizes: 'Ġ' for byte-level BPE, '▁' for SentencePiece) is
/// replaced by the target's when the two differ, as HF does. The map is one
/// to one (a second draft token for the same target token is left out), so
/// a draft distribution over mapped ids is exactly a distribution over
/// target ids.
struct VocabularyMap {
  std::vector<Token> draft_to_target;  ///< per draft row: the target id, or -1
  std::vector<Token> target_to_draft;  ///< per target row: the draft id, or -1
  std::size_t shared = 0;              ///< pairs mapped

  /// The map of the first `draft_rows` draft ids and `target_rows` target ids.
  static VocabularyMap build(const Tokenizer& draft, std::size_t draft_rows, const Tokenizer& target,
                             std::size_t target_rows) {
    VocabularyMap m;
    m.draft_to_target.assign(draft_rows, -1);
    m.target_to_draft.assign(target_rows, -1);
    auto token = [](const Tokenizer& t, std::size_t id) -> std::optional<std::string> {
      try {
        return t.id_to_token(static_cast<Token>(id));
      } catch (const InvalidArgument&) {
        return std::nullopt;  // a hole of a sparse vocabulary
      }
    };
    // The first UTF-8 character of the first token " " encodes to.
    auto space_sign = [&](const Tokenizer& t) -> std::string {
      const std::vector<Token> ids = t.encode(" ", {.add_special_tokens = false});
      if (ids.empty()) return {};
      const std::optional<std::string> s = token(t, static_cast<std::size_t>(ids[0]));
      if (!s || s->empty()) return {};
      std::size_t len = 1;
      while (len < s->size() && (static_cast<unsigned char>((*s)[len]) & 0xC0) == 0x80) ++len;
      return s->substr(0, len);
    };
    const std::string ds = space_sign(draft), ts = space_sign(target);
    const bool respell = !ds.empty() && !ts.empty() && ds != ts;
    for (std::size_t d = 0; d < std::min(draft_rows, draft.vocab_size()); ++d) {
      std::optional<std::string> s = token(draft, d);
      if (!s) continue;
      if (respell && s->starts_with(ds)) s = ts + s->substr(ds.size());
      const std::optional<Token> t = target.token_to_id(*s);
      if (!t || *t < 0 || static_cast<std::size_t>(*t) >= target_rows) continue;
      if (m.target_to_draft[static_cast<std::size_t>(*t)] != -1) continue;  // keep it one to one
      m.draft_to_target[d] = *t;
      m.target_to_draft[static_cast<std::size_t>(*t)] = static_cast<Token>(d);
      ++m.shared;
    }
    return m;
  }
};

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

/// Candidates from a draft with its own tokenizer. Holds a reference to the
/// draft (it must outlive this object), cheap copies of both tokenizers
/// (sharing their tables) and the draft's cache.
///
/// Greedy: the draft proposes in its own tokens and the proposal's text is
/// re-tokenized for the target (any number of target tokens).
///
/// Sampling (universal speculative decoding, Timor et al. 2025; HF's
/// UniversalSpeculativeDecodingGenerator): the draft proposes only tokens
/// the two vocabularies share (VocabularyMap); each draft row is scattered
/// onto the target's vocabulary (-inf where nothing maps), processed by the
/// target's processors with the target's history, and sampled there, so
/// every candidate is one target token drawn from a distribution q over
/// target ids, and q_row() gives that q: rejection sampling against the
/// target's p is then exact. The draft's sequence follows the target's by
/// the same map while the target's new tokens are all shared, and is
/// re-synced through text otherwise.
template <CausalLM Draft>
class DifferentTokenizerCandidates {
 public:
  using Cache = typename Draft::Cache;  ///< the draft model's cache type

  /// The draft only ever proposes ids its tokenizer has (rows of its logits
  /// beyond the tokenizer's vocabulary are ignored); `target_vocab` bounds
  /// the candidates. Throws InvalidArgument for a zero lookbehind.
  DifferentTokenizerCandidates(const Draft& draft, const Tokenizer& draft_tokenizer,
                               const Tokenizer& target_tokenizer, std::size_t target_vocab,
                               UniversalOptions options, bool sampling = false)
      : sampling_(sampling),
        draft_tok_(draft_tokenizer),
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
    if (sampling_) {
      map_ = VocabularyMap::build(draft_tok_, std::min<std::size_t>(draft.vocab_size(), draft_tok_.vocab_size()),
                                  target_tok_, target_vocab);
      for (const Token t : opts_.draft_suppress_tokens)
        if (t >= 0 && static_cast<std::size_t>(t) < map_.draft_to_target.size()) {
          const Token mapped = map_.draft_to_target[static_cast<std::size_t>(t)];
          if (mapped >= 0) {
            map_.target_to_draft[static_cast<std::size_t>(mapped)] = -1;
            map_.draft_to_target[static_cast<std::size_t>(t)] = -1;
            --map_.shared;
          }
        }
      if (map_.shared == 0)
        throw CompatibilityError(
            "universal speculative sampling: the draft's and the target's vocabularies share no token "
            "string, so the draft can propose nothing");
    }
  }

  /// Hands out the draft's cache when the caller bounds memory (BatchEngine:
  /// its KvCacheManager): `provide(capacity)` returns a cache of at least
  /// `capacity` positions that replaces the one it returned before (whose
  /// contents are then lost), or throws CapacityError, leaving the previous
  /// one in place, when none fits now.
  using CacheProvider = std::function<Cache&(std::size_t capacity)>;

  /// Takes the draft's caches from `provide`, the first one of `capacity`
  /// positions at once (its CapacityError propagates, and nothing changes).
  /// When the draft later needs more positions than `provide` can give, the
  /// rounds propose what the cache it has can hold, down to none (the
  /// target's own token: the output is unchanged, the acceptance may be
  /// lower than alone).
  void use_cache_provider(CacheProvider provide, std::size_t capacity) {
    Cache& c = provide(capacity);
    provider_ = std::move(provide);
    provided_ = capacity;
    draft_.use_cache(c);
  }

  /// Sampling mode: the shared tokens of the two vocabularies.
  const VocabularyMap& vocabulary_map() const { return map_; }

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
    sampled_ = false;
    sampled_calls_ = 0;
    sampled_seconds_ = 0.0;
    draft_tokens_ = 0;
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
    if (sampling_ && ctx.config.do_sample) return propose_sampled(seq, n, limit, ctx, t0);
    sync_draft(std::span<const Token>(seq.data(), n), first_);
    first_ = false;
    convert_seconds_ += seconds_since(t0);
    // A draft with learned positions proposes only within them (its cache
    // would need position before + draft_limit - 1).
    const std::size_t before = dseq_.size();
    const std::size_t draft_hard = position_limits(draft_.model()).hard;
    std::size_t draft_limit =
        !draft_hard ? limit : before <= draft_hard ? std::min(limit, draft_hard + 1 - before) : 0;
    if (dseq_.empty() || draft_limit == 0) return 0;
    sync_n_ = n;
    sync_d_ = before;
    draft_limit = std::min(draft_limit, room_after(before, ensure_draft_capacity(before + draft_limit)));
    if (draft_limit == 0) return 0;
    draft_.propose(dseq_, before, draft_limit, draft_chain_, false, ctx.draft_length, draft_eos_, ctx.rng);
    proposed_ = true;
    last_proposed_ = dseq_.size() - before;
    const auto t1 = std::chrono::steady_clock::now();
    const std::size_t k = target_candidates(seq, before, ctx.room);
    convert_seconds_ += seconds_since(t1);
    return k;
  }
  /// Sampling: the distribution over target ids candidate j was drawn from;
  /// greedy: empty (re-tokenized candidates have no distribution).
  std::span<const float> q_row(std::size_t j) const {
    if (!sampled_) return {};
    return {q_.data() + j * target_vocab_, target_vocab_};
  }
  /// Too few candidates: the proposal teaches the policy nothing.
  void discard(std::size_t) { proposed_ = false; }
  /// K counts draft tokens and `accepted` target tokens: HF's schedule
  /// compares the two the same way.
  void learn(std::size_t, std::size_t accepted, CandidateContext& ctx) {
    if (proposed_) draft_tokens_ += last_proposed_;
    if (proposed_) ctx.draft_length.update(sampled_ ? std::span<const float>(probs_) : draft_.probs(), accepted);
  }
  /// Nothing to cut: the next round re-syncs the draft from the target's text.
  void cut(std::size_t) {}
  /// Draft calls, and the draft's seconds plus re-tokenization (the draft
  /// side's cost).
  void finish(GenerationStats& stats) const {
    stats.draft_calls = draft_.calls() + sampled_calls_;
    stats.draft_seconds = draft_.seconds() + sampled_seconds_ + convert_seconds_;
    stats.draft_tokens = draft_tokens_;
  }
  /// The draft model (not owned).
  const Draft& model() const { return draft_.model(); }
  /// The draft's cache for round observers (null before the first proposal).
  const Cache* draft_cache() const { return draft_.has_cache() ? &draft_.cache() : nullptr; }

 private:
  // Sampling: steps 1-3 with the vocabulary map (see the class comment).
  std::size_t propose_sampled(std::vector<Token>& seq, std::size_t n, std::size_t limit, CandidateContext& ctx,
                              std::chrono::steady_clock::time_point t0) {
    sampled_ = true;
    probs_.clear();
    // Step 1: the target's tokens since the last proposal, mapped when all
    // are shared tokens (the accepted candidates always are), else via text.
    bool mapped = !first_ && sync_n_ <= n && sync_d_ <= dseq_.size() && sync_d_ > 0;
    for (std::size_t i = sync_n_; mapped && i < n; ++i) {
      const Token t = seq[i];
      mapped = t >= 0 && static_cast<std::size_t>(t) < map_.target_to_draft.size() &&
               map_.target_to_draft[static_cast<std::size_t>(t)] >= 0;
    }
    if (mapped) {
      std::vector<Token> next(dseq_.begin(), dseq_.begin() + static_cast<std::ptrdiff_t>(sync_d_));
      for (std::size_t i = sync_n_; i < n; ++i) next.push_back(map_.target_to_draft[static_cast<std::size_t>(seq[i])]);
      std::size_t common = 0;
      while (common < next.size() && common < dseq_.size() && next[common] == dseq_[common]) ++common;
      if (draft_.has_cache()) draft_.rollback(common);
      dseq_ = std::move(next);
    } else {
      sync_draft(std::span<const Token>(seq.data(), n), first_);
    }
    first_ = false;
    convert_seconds_ += seconds_since(t0);
    const std::size_t before = dseq_.size();
    const std::size_t draft_hard = position_limits(draft_.model()).hard;
    std::size_t k_max = std::min(limit, ctx.room);
    if (draft_hard) k_max = before <= draft_hard ? std::min(k_max, draft_hard + 1 - before) : 0;
    if (dseq_.empty() || k_max == 0) return 0;
    sync_n_ = n;
    sync_d_ = before;
    k_max = std::min(k_max, room_after(before, ensure_draft_capacity(before + k_max)));
    if (k_max == 0) return 0;
    // Step 2: one draft call per candidate, sampled over target ids.
    auto& cache = draft_.cache();
    if (cache.size() >= before) cache.truncate(before - 1);
    if (q_.size() < k_max * target_vocab_) q_.resize(k_max * target_vocab_);
    const std::size_t rows = map_.draft_to_target.size();
    for (std::size_t i = 0; i < k_max; ++i) {
      const std::span<const Token> input = i == 0 ? std::span<const Token>(dseq_).subspan(cache.size())
                                                  : std::span<const Token>(dseq_).subspan(before + i - 1, 1);
      const auto t1 = std::chrono::steady_clock::now();
      detail::forward_rows(draft_.model(), input, cache, 1, logits_, "draft");
      sampled_seconds_ += seconds_since(t1);
      ++sampled_calls_;
      draft_chain_.apply(logits_.row(0).first(rows), std::span<const Token>(dseq_));
      row_.assign(target_vocab_, -std::numeric_limits<float>::infinity());
      bool any = false;
      for (std::size_t d = 0; d < rows; ++d) {
        const Token t = map_.draft_to_target[d];
        const float x = logits_.row(0)[d];
        if (t < 0 || !(x > -std::numeric_limits<float>::infinity())) continue;
        row_[static_cast<std::size_t>(t)] = x;
        any = true;
      }
      if (!any) break;  // every shared token suppressed: nothing to propose
      const DraftStep step = choose_draft_token(row_, seq, probs_, {q_.data() + i * target_vocab_, target_vocab_},
                                                ctx.chain, ctx.rng, ctx.draft_length, ctx.eos);
      if (step == DraftStep::declined) break;
      dseq_.push_back(map_.target_to_draft[static_cast<std::size_t>(seq.back())]);
      if (step == DraftStep::last) break;
    }
    proposed_ = seq.size() > n;
    last_proposed_ = seq.size() - n;
    return seq.size() - n;
  }

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
  // doubling (the new cache is refilled by the next propose()). Returns the
  // positions the cache holds: less than `need` only when a provider could
  // not give more (use_cache_provider).
  std::size_t ensure_draft_capacity(std::size_t need) {
    if (need <= draft_capacity_) return draft_capacity_;
    const std::size_t grown = std::max<std::size_t>({need * 2, 64, max_new_tokens_ * 2});
    if (provider_) {
      if (need > provided_) {
        try {
          draft_.use_cache(provider_(grown));
          provided_ = grown;
        } catch (const CapacityError&) {
          if (draft_capacity_ != 0) return draft_capacity_;  // keeps the cache it has
        }
      }
      draft_capacity_ = provided_;  // a first start in this generation: the provider's cache
      draft_.start(draft_capacity_);
      return draft_capacity_;
    }
    draft_capacity_ = grown;
    draft_.start(draft_capacity_);
    return draft_capacity_;
  }
  // Draft tokens a proposal may add after `before` in a cache of `capacity`.
  static std::size_t room_after(std::size_t before, std::size_t capacity) {
    return capacity > before ? capacity - before : 0;
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

  bool sampling_ = false;          // built for sampling: map_ is made
  bool sampled_ = false;           // the latest proposal was sampled (q_ holds its rows)
  VocabularyMap map_;
  Logits logits_;                  // sampling: the draft's last row
  std::vector<float> row_;         // sampling: that row over target ids
  std::vector<float> q_;           // sampling: q of each candidate, over target ids
  std::vector<float> probs_;       // sampling: q of each candidate's token
  std::size_t sampled_calls_ = 0;
  double sampled_seconds_ = 0.0;
  std::size_t draft_tokens_ = 0;   // draft tokens of the proposals verified this generation
  Tokenizer draft_tok_;
  Tokenizer target_tok_;
  UniversalOptions opts_;
  std::size_t target_vocab_;
  DraftModelCandidates<Draft> draft_;
  std::vector<Token> draft_eos_;
  LogitsProcessorChain draft_chain_;
  std::size_t draft_capacity_ = 0;
  CacheProvider provider_;     // use_cache_provider()
  std::size_t provided_ = 0;   // capacity of the provider's current cache
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
