// SpeculativeDecoder<Draft, Target>: assisted generation written only against
// the CausalLM / KvCache concepts of backend.hpp. Each round a candidate source
// (a draft model, or prompt lookup when Draft is NoDraft) proposes up to K
// tokens, the target verifies them all in ONE forward call, acceptance keeps a
// prefix plus one target token, and both caches are rolled back to what was
// accepted. Greedy output is token-for-token the target's own greedy output;
// sampled output follows the target's processed distribution exactly.
//
// What the caches hold. Let S be the sequence (prompt + emitted tokens) at the
// start of a round, n = |S|, d_1..d_k the candidates, a the accepted count and
// t the target's token after them (correction or bonus):
//
//   start of round   target: S[0..n-1)  (everything but the last token; the
//                                        first round: nothing)
//                    draft:  a prefix S[0..m), m <= n-1 (m = n-1 or n-2 in
//                                        steady state; 0 in the first round)
//   target forward   S[target.size()..n) + d_1..d_k  -> the last k+1 rows are
//                    p_1..p_{k+1} (the prompt prefill rides on the first round)
//   draft proposal   feeds S[m..n), then d_1..d_{k-1}: holds S + d_1..d_{k-1}
//   end of round     S' = S + d_1..d_a + t
//                    target: S + d_1..d_a = S'[0..|S'|-1)
//                    draft:  S + d_1..d_min(a, k-1), i.e. S' minus its last
//                            token, or minus its last two when all k drafts
//                            were accepted (d_k was never fed); the next round
//                            feeds the missing one or two tokens in one call.
//   a round that drafts nothing (only one token of the budget left) leaves the
//   draft cache as it was; on a stop inside the block (EOS, callback) S' ends
//   at the stopping token and both caches are cut to at most |S'| - 1.
//
// Prefix reuse (set_prefix_reuse, for chat sessions): both caches always hold
// a prefix of the last sequence, so the next generate() keeps the part its
// prompt shares with that sequence (less the prompt's last token) and the
// first round feeds only the rest.
//
// Capacity. With K clipped to (tokens left - 1), the target cache never holds
// more than prompt + max_new_tokens - 1 positions and the draft one less, so
// the default capacity prompt + max_new_tokens always suffices. A smaller
// `cache_capacity` limits the output to capacity + 1 - prompt tokens and
// stops with StopReason::capacity; a prompt longer than the capacity is a
// CapacityError before anything runs. A model with a hard position limit
// (learned positions, PositionLimits) caps the capacity the same way, so
// K is clipped to fit and generation stops there with its output kept.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "assistgen/acceptance.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/candidates/prompt_lookup.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/lookahead.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

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

// DraftModelCandidates<NoDraft> must never be named (its constraint fails).
template <class D>
struct DraftSource {
  using type = DraftModelCandidates<D>;
};
template <>
struct DraftSource<NoDraft> {
  struct type {};
};

}  // namespace detail

/// Throws CompatibilityError, naming what differs, unless a draft with
/// `draft_vocab` logits can assist a target with `target_vocab`: the draft's
/// vocabulary may be larger (its extra logits are ignored) but not smaller,
/// and declared special tokens (when both sides declare them) must agree.
inline void check_compatibility(std::size_t draft_vocab, std::size_t target_vocab,
                                const std::optional<SpecialTokens>& draft,
                                const std::optional<SpecialTokens>& target) {
  if (draft_vocab < target_vocab)
    throw CompatibilityError("draft vocabulary size " + std::to_string(draft_vocab) +
                             " is smaller than the target's " + std::to_string(target_vocab) +
                             " (a draft must cover every target token)");
  if (!draft || !target) return;
  const std::string de = detail::token_list(draft->eos_token_ids);
  const std::string te = detail::token_list(target->eos_token_ids);
  if (de != te) throw CompatibilityError("EOS token ids differ: draft " + de + ", target " + te);
  if (draft->bos_token_id && target->bos_token_id && *draft->bos_token_id != *target->bos_token_id)
    throw CompatibilityError("BOS token ids differ: draft " + std::to_string(*draft->bos_token_id) +
                             ", target " + std::to_string(*target->bos_token_id));
}

/// What a round observer sees after each round (a test and tracing hook).
template <class DraftCache, class TargetCache>
struct RoundInfo {
  std::size_t round = 0;            ///< 0-based
  std::span<const Token> sequence;  ///< prompt + every token emitted so far
  std::span<const Token> emitted;   ///< the tokens this round emitted
  std::size_t drafted = 0;          ///< candidates proposed
  std::size_t accepted = 0;         ///< candidates the target accepted
  /// The target's cache after the round's rollback; valid only during the
  /// observer call.
  const TargetCache* target_cache = nullptr;
  /// The draft's cache after the round's rollback (valid only during the
  /// observer call); null for prompt lookup.
  const DraftCache* draft_cache = nullptr;
};

/// Assisted generation with a draft model (or prompt lookup when Draft is
/// NoDraft) for a target model. Holds references to both models (they must
/// outlive the decoder), one cache for each, reused across generate() calls,
/// and the lookahead state. Not thread-safe; use one decoder per thread.
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
requires CausalLM<Target> &&
    (CausalLM<Draft> || std::same_as<Draft, NoDraft>)class SpeculativeDecoder {
 public:
  /// True with a draft model, false for prompt lookup (Draft = NoDraft).
  static constexpr bool kHasDraft = !std::same_as<Draft, NoDraft>;
  using DraftCache = typename Draft::Cache;    ///< the draft's cache (NoDraft::Cache without one)
  using TargetCache = typename Target::Cache;  ///< the target's cache
  using Round = RoundInfo<DraftCache, TargetCache>;  ///< what the round observer receives
  /// Callback run after every round (set_round_observer()).
  using RoundObserver = std::function<void(const Round&)>;

  /// A decoder with a draft model. Throws CompatibilityError when the models
  /// cannot be paired, InvalidArgument for a bad option (naming it).
  SpeculativeDecoder(const Draft& draft, const Target& target,
                     GenerationConfig cfg) requires kHasDraft : target_(&target),
                                                                cfg_(std::move(cfg)),
                                                                lookahead_(cfg_) {
    check_compatibility(static_cast<std::size_t>(draft.vocab_size()), vocab(),
                        cfg_.draft_special_tokens, cfg_.target_special_tokens);
    if (cfg_.prompt_lookup_num_tokens != 0)
      throw InvalidArgument(
          "GenerationConfig: prompt_lookup_num_tokens is set but a draft model was given; "
          "build the decoder without a draft model to use prompt lookup");
    draft_.emplace(draft, vocab());
    init();
  }

  /// A decoder whose candidates come from prompt lookup
  /// (cfg.prompt_lookup_num_tokens must be > 0).
  SpeculativeDecoder(const Target& target, GenerationConfig cfg) requires(!kHasDraft)
      : target_(&target), cfg_(std::move(cfg)), lookahead_(cfg_) {
    if (cfg_.prompt_lookup_num_tokens == 0)
      throw InvalidArgument(
          "GenerationConfig: prompt_lookup_num_tokens is 0 and there is no draft model: "
          "nothing can propose candidates");
    lookup_.emplace(cfg_.prompt_lookup_num_tokens, cfg_.max_matching_ngram_size);
    init();
  }

  SpeculativeDecoder(const SpeculativeDecoder&) = delete;
  SpeculativeDecoder& operator=(const SpeculativeDecoder&) = delete;
  /// Takes over the other decoder's caches and state (same model references).
  SpeculativeDecoder(SpeculativeDecoder&&) noexcept = default;
  /// Takes over the other decoder's caches and state (same model references).
  SpeculativeDecoder& operator=(SpeculativeDecoder&&) noexcept = default;

  /// Generates up to cfg.max_new_tokens tokens after `prompt` (not empty).
  /// `on_token` receives each token as soon as it is accepted; returning
  /// false stops generation after that token.
  GenerationResult generate(std::span<const Token> prompt, const TokenCallback& on_token = {}) {
    const auto t_start = std::chrono::steady_clock::now();
    GenerationResult res;
    GenerationStats& st = res.stats;
    const std::size_t P = prompt.size();
    const auto [cap, budget] = detail::plan_generation("SpeculativeDecoder::generate", prompt, vocab(), cfg_, limits());
    // Prefix reuse: both caches hold a prefix of seq_ (the last sequence);
    // keep what the new prompt shares with it, less its last token (fed
    // for logits). Cleared during a call, so a call that threw reuses nothing.
    const std::size_t keep =
        reuse_prefix_ && seq_valid_ ? std::min(detail::common_prefix(seq_, prompt), P - 1) : 0;
    seq_valid_ = false;
    TargetCache& tc = detail::reuse_or_make_cache(*target_, target_cache_, cap, keep);
    st.reused_tokens = tc.size();
    if constexpr (kHasDraft) {
      draft_->start(cap, keep);
      draft_->reset_counters();
    }
    rng_.reseed(cfg_.seed);
    lookahead_.begin_generation();
    chain_.reset();
    seq_.assign(prompt.begin(), prompt.end());
    seq_.reserve(P + budget + 1);
    res.tokens.reserve(budget);
    st.prompt_tokens = P;

    StopReason reason =
        budget < cfg_.max_new_tokens ? StopReason::capacity : StopReason::max_new_tokens;
    bool stopped = false;
    double lookup_seconds = 0.0;
    std::size_t round = 0;
    while (!stopped && res.tokens.size() < budget) {
      const std::size_t n = seq_.size();
      const std::size_t remaining = budget - res.tokens.size();

      // 1. Candidates: at most remaining - 1, so that with the target's own
      //    token a round never emits more than what is left.
      std::size_t limit = kHasDraft ? lookahead_.k() : lookup_->num_tokens();
      limit = std::min(limit, remaining - 1);
      std::size_t k = 0;
      if constexpr (kHasDraft) {
        k = draft_->propose(seq_, n, limit, chain_, cfg_.do_sample, lookahead_, eos_, rng_);
        if (k > 0 && k < cfg_.draft_min_tokens) {  // too few to be worth a verification
          seq_.resize(n);
          draft_->discard(n);
          k = 0;
        }
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        lookup_->propose(seq_, limit, eos_, drafts_);
        lookup_seconds +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (drafts_.size() < cfg_.draft_min_tokens) drafts_.clear();
        seq_.insert(seq_.end(), drafts_.begin(), drafts_.end());
        k = drafts_.size();
      }

      // 2. One target call over everything it has not seen: [last, d_1..d_k]
      //    (plus the rest of the prompt in the first round).
      const std::span<const Token> input = std::span<const Token>(seq_).subspan(tc.size());
      const auto t0 = std::chrono::steady_clock::now();
      forward_into(*target_, input, tc, target_logits_);
      Logits& logits = target_logits_;
      st.target_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++st.target_calls;
      if (logits.rows() != input.size() || logits.cols() < vocab())
        throw Error("target forward returned logits of shape [" + std::to_string(logits.rows()) +
                    ", " + std::to_string(logits.cols()) + "] for " + std::to_string(input.size()) +
                    " tokens");
      const std::size_t row0 = input.size() - (k + 1);

      // 3. Accept. Target row j predicts the token after S + d_1..d_j and is
      //    processed with exactly that history, as the draft's row j was.
      const std::span<const Token> drafts(seq_.data() + n, k);
      auto process = [&](std::size_t j) {
        std::span<float> row = logits.row(row0 + j).first(vocab());
        chain_.apply(row, std::span<const Token>(seq_.data(), n + j));
        return row;
      };
      Verdict v;
      if (cfg_.do_sample) {
        v = verify_sampling(
            drafts,
            [&](std::size_t j) {
              std::span<float> row = process(j);
              softmax_inplace(row);
              return std::span<const float>(row);
            },
            [&](std::size_t j) {
              if constexpr (kHasDraft)
                return draft_->q_row(j);
              else
                return std::span<const float>();  // prompt lookup: one-hot q
            },
            rng_);
      } else {
        v = verify_greedy(drafts, [&](std::size_t j) { return argmax(process(j)); });
      }

      // 4. Roll back to the accepted prefix and adapt K.
      tc.truncate(n + v.accepted);
      if constexpr (kHasDraft) {
        draft_->rollback(n + v.accepted);
        lookahead_.update(draft_->probs(), v.accepted);
      }
      ++st.rounds;
      st.record_round(k, v.accepted);
      st.k_sum += limit;

      // 5. Emit d_1..d_a, t, stopping after an EOS or when the callback asks.
      seq_.resize(n + v.accepted);
      seq_.push_back(v.next);
      const auto [end, stop] = detail::emit_tokens(seq_, n, eos_, on_token, res, reason);
      stopped = stop;
      if (end < seq_.size()) {
        seq_.resize(end);
        if (tc.size() > end - 1) tc.truncate(end - 1);
        if constexpr (kHasDraft) draft_->rollback(end - 1);
      }

      if (observer_) {
        Round info;
        info.round = round;
        info.sequence = seq_;
        info.emitted = std::span<const Token>(seq_).subspan(n);
        info.drafted = k;
        info.accepted = v.accepted;
        info.target_cache = &tc;
        if constexpr (kHasDraft) info.draft_cache = &draft_->cache();
        observer_(info);
      }
      ++round;
    }

    res.stop_reason = reason;
    st.new_tokens = res.tokens.size();
    if constexpr (kHasDraft) {
      st.draft_calls = draft_->calls();
      st.draft_seconds = draft_->seconds();
    } else {
      st.draft_seconds = lookup_seconds;
    }
    st.total_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    seq_valid_ = true;
    return res;
  }

  /// Prefix reuse (a chat session's next turn): when on, generate() keeps
  /// the positions of both caches that the new prompt shares with the last
  /// call's sequence (prompt + output), rolls the rest back and feeds only
  /// the new tokens; stats.reused_tokens counts what was kept. The output is
  /// the same as with fresh caches (bit-identical logits). Off by default.
  void set_prefix_reuse(bool on) { reuse_prefix_ = on; }
  /// Replaces max_new_tokens for the next generate() calls (the other
  /// options stay those the decoder was made with).
  void set_max_new_tokens(std::size_t n) { cfg_.max_new_tokens = n; }
  /// Replaces the seed used by the next generate() calls.
  void set_seed(std::uint64_t seed) { cfg_.seed = seed; }
  /// Called after every round with the sequence, counts and both caches.
  void set_round_observer(RoundObserver observer) { observer_ = std::move(observer); }

  /// The configuration in effect (with any set_seed() applied).
  const GenerationConfig& config() const { return cfg_; }
  /// The EOS ids in effect (from the config or the target's special tokens).
  std::span<const Token> eos_token_ids() const { return eos_; }
  /// K the next round will use (heuristic schedules change it).
  std::size_t num_assistant_tokens() const { return lookahead_.k(); }
  /// The confidence threshold in effect (the dynamic schedule re-fits it).
  float confidence_threshold() const { return lookahead_.confidence_threshold(); }
  /// The lookahead state (K, threshold, dynamic-threshold samples).
  const Lookahead& lookahead() const { return lookahead_; }

  /// The position limits generate() plans with: the target's, and with a
  /// draft model the draft's (its cache holds one position fewer).
  PositionLimits limits() const {
    if constexpr (kHasDraft)
      return detail::combined_limits(position_limits(*target_), position_limits(draft_->model()));
    else
      return position_limits(*target_);
  }

  /// The target model (not owned).
  const Target& target() const { return *target_; }
  /// The target's vocabulary size; draft logits beyond it are ignored.
  std::size_t vocab() const { return static_cast<std::size_t>(target_->vocab_size()); }

 private:
  void init() {
    eos_ = detail::stop_tokens(cfg_, vocab());
    chain_ = make_processor_chain(cfg_);
  }

  const Target* target_;
  GenerationConfig cfg_;
  Lookahead lookahead_;
  std::vector<Token> eos_;
  LogitsProcessorChain chain_;
  Rng rng_;
  std::optional<typename detail::DraftSource<Draft>::type> draft_;  // kHasDraft only
  std::optional<PromptLookup> lookup_;                              // !kHasDraft only
  std::optional<TargetCache> target_cache_;
  Logits target_logits_;  // reused every round
  std::vector<Token> seq_;     // S, plus the candidates during a round
  std::vector<Token> drafts_;  // prompt-lookup candidates
  RoundObserver observer_;
  bool reuse_prefix_ = false;  // set_prefix_reuse()
  bool seq_valid_ = false;     // seq_ is the last finished call's sequence
};

template <class D, class T>
SpeculativeDecoder(const D&, const T&, GenerationConfig) -> SpeculativeDecoder<D, T>;
template <class T>
SpeculativeDecoder(const T&, GenerationConfig) -> SpeculativeDecoder<NoDraft, T>;

}  // namespace assistgen
