// AssistedDecoder<Source, Target>: the one round loop of assisted generation.
// Each round a candidate source (candidate_source.hpp: a draft model, prompt
// lookup, a draft with another tokenizer, or your own) proposes up to K
// tokens, the target verifies them all in ONE forward call, acceptance keeps a
// prefix plus one target token, and the target's cache is rolled back to what
// was accepted (the source rolls back its own state). Greedy output is token
// for token the target's own greedy output; sampled output follows the
// target's processed distribution exactly (when the source gives its q rows,
// or is one-hot). SpeculativeDecoder and UniversalDecoder are this loop with
// their sources.
//
// What the target's cache holds. Let S be the sequence (prompt + emitted
// tokens) at the start of a round, n = |S|, d_1..d_k the candidates, a the
// accepted count and t the target's token after them (correction or bonus):
//
//   before round 1   the prompt but its last token, in a call of its own
//                    with no logits (detail::prefill_prompt, as the plain
//                    decoder and BatchEngine prefill it)
//   start of round   S[0..n-1)  (everything but the last token)
//   target forward   S[n-1] + d_1..d_k, logits for all k+1 rows:
//                    p_1..p_{k+1}
//   end of round     S' = S + d_1..d_a + t; the cache holds S + d_1..d_a =
//                    S'[0..|S'|-1)
//   on a stop inside the block (EOS, callback) S' ends at the stopping token
//   and the cache is cut to at most |S'| - 1.
//
// Prefix reuse (set_prefix_reuse, for chat sessions): the target's cache (and
// the source's state) always hold a prefix of the last sequence, so the next
// generate() keeps the part its prompt shares with that sequence (less the
// prompt's last token, fed for logits) and the first round feeds only the rest.
//
// Capacity. With K clipped to (tokens left - 1), the target cache never holds
// more than prompt + max_new_tokens - 1 positions, so the default capacity
// prompt + max_new_tokens always suffices. A smaller `cache_capacity` limits
// the output to capacity + 1 - prompt tokens and stops with
// StopReason::capacity; a prompt longer than the capacity is a CapacityError
// before anything runs. A model with a hard position limit (learned
// positions, PositionLimits; a draft model's too, see CandidateSource) caps
// the capacity the same way, so K is clipped to fit and generation stops
// there with its output kept.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "assistgen/acceptance.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/detail/assisted_sequence.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/draft_length.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

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
  /// observer call); null when the source has none (prompt lookup).
  const DraftCache* draft_cache = nullptr;
};

/// Assisted generation of `Target` with candidates from `Source`. Holds a
/// reference to the target (it must outlive the decoder), the source, and the
/// target's cache, reused across generate() calls. Not thread-safe; use one
/// decoder per thread (the models are only read, so decoders on many threads
/// may share them; a KvStorage held by one thread rejects use from another,
/// see kv_cache.hpp).
template <CandidateSource Source, CausalLM Target>
class AssistedDecoder {
 public:
  using TargetCache = typename Target::Cache;                      ///< the target's cache
  using DraftCache = typename detail::SourceCache<Source>::type;   ///< the source's cache (if any)
  using Round = RoundInfo<DraftCache, TargetCache>;                ///< what the round observer receives
  /// Callback run after every round (set_round_observer()).
  using RoundObserver = std::function<void(const Round&)>;

  /// A decoder over `source`. `name` prefixes the errors generate() throws
  /// (e.g. "SpeculativeDecoder::generate"). Throws InvalidArgument naming the
  /// GenerationConfig option that is out of range.
  AssistedDecoder(const Target& target, Source source, GenerationConfig cfg,
                  std::string name = "AssistedDecoder::generate")
      : AssistedDecoder(target, std::move(cfg), std::move(name),
                        [&](const GenerationConfig&) { return std::move(source); }) {}

  /// As above, with the source made by `make_source(config())` once the
  /// configuration's schedule options have been checked (the decoders that
  /// check the pairing of draft and target first do so there).
  template <class MakeSource>
  requires std::is_invocable_r_v<Source, MakeSource, const GenerationConfig&> AssistedDecoder(
      const Target& target, GenerationConfig cfg, std::string name, MakeSource&& make_source)
      : target_(&target),
        state_(std::move(cfg), static_cast<std::size_t>(target.vocab_size()), std::move(name),
               std::forward<MakeSource>(make_source)) {}

  AssistedDecoder(const AssistedDecoder&) = delete;
  AssistedDecoder& operator=(const AssistedDecoder&) = delete;
  /// Takes over the other decoder's caches and state (same model references).
  AssistedDecoder(AssistedDecoder&&) noexcept = default;
  /// Takes over the other decoder's caches and state (same model references).
  AssistedDecoder& operator=(AssistedDecoder&&) noexcept = default;

  /// Generates up to cfg.max_new_tokens tokens after `prompt` (not empty).
  /// `on_token` receives each token as soon as it is accepted; returning
  /// false stops generation after that token.
  GenerationResult generate(std::span<const Token> prompt, const TokenCallback& on_token = {}) {
    const auto t_start = std::chrono::steady_clock::now();
    const std::size_t P = prompt.size();
    const detail::GenerationPlan plan =
        detail::plan_generation(state_.name(), prompt, vocab(), state_.config(), limits());
    // Prefix reuse: keep what the new prompt shares with the last sequence,
    // less its last token. Cleared during a call, so a call that threw
    // reuses nothing.
    const std::size_t keep = reuse_prefix_ && seq_valid_
                                 ? std::min(detail::common_prefix(state_.sequence(), prompt), P - 1)
                                 : 0;
    seq_valid_ = false;
    TargetCache& tc = detail::reuse_or_make_cache(*target_, target_cache_, plan.capacity, keep);
    const std::size_t reused = tc.size();
    double prefill_seconds = 0.0;
    // The prompt but its last token, in a call of its own (prefill_prompt):
    // the first round then verifies [last, d_1..d_k] like every other.
    if (plan.budget > 0) {
      const auto t0 = std::chrono::steady_clock::now();
      detail::prefill_prompt(*target_, prompt, tc, target_logits_, "target");
      prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    // A source that drafts on the target's own cache (self-speculation) is
    // lent it, and runs the verification itself (verify below).
    if constexpr (requires { state_.source().bind_target_cache(tc); })
      state_.source().bind_target_cache(tc);
    state_.begin(prompt, plan, keep);
    GenerationStats& st = state_.stats();
    st.reused_tokens = reused;
    st.target_seconds += prefill_seconds;

    std::size_t round = 0;
    while (!state_.done()) {
      // 1. Candidates (detail::AssistedSequence::plan_proposal says how many).
      const std::size_t k = state_.propose();

      // 2. One target call over everything it has not seen: [last, d_1..d_k],
      //    logits for the k + 1 rows that verify.
      const auto t0 = std::chrono::steady_clock::now();
      if constexpr (requires {
                      state_.source().verify(state_.sequence(), k + 1, target_logits_);
                    })
        state_.source().verify(state_.sequence(), k + 1, target_logits_);
      else
        detail::forward_rows(*target_, state_.target_input(tc.size()), tc, k + 1, target_logits_,
                             "target", state_.target_parent(tc.size()));
      st.target_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++st.target_calls;

      // 3-5. Accept, roll back, emit.
      state_.finish_round([&](std::size_t j) { return target_logits_.row(j); }, tc, on_token);

      if (observer_) {
        const std::size_t n = state_.round_start();
        Round info;
        info.round = round;
        info.sequence = state_.sequence();
        info.emitted = state_.sequence().subspan(n);
        info.drafted = k;
        info.accepted = state_.accepted();
        info.target_cache = &tc;
        if constexpr (requires { state_.source().draft_cache(); })
          info.draft_cache = state_.source().draft_cache();
        observer_(info);
      }
      ++round;
    }

    GenerationResult res = state_.finish();
    res.stats.total_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    seq_valid_ = true;
    return res;
  }

  /// Prefix reuse (a chat session's next turn): when on, generate() keeps
  /// the cached positions that the new prompt shares with the last call's
  /// sequence (prompt + output), rolls the rest back and feeds only the new
  /// tokens; stats.reused_tokens counts what the target's cache kept. The
  /// output is the same as with fresh caches (bit-identical logits). Off by
  /// default.
  void set_prefix_reuse(bool on) { reuse_prefix_ = on; }
  /// Replaces max_new_tokens for the next generate() calls (the other
  /// options stay those the decoder was made with).
  void set_max_new_tokens(std::size_t n) { state_.config().max_new_tokens = n; }
  /// Replaces the seed used by the next generate() calls.
  void set_seed(std::uint64_t seed) { state_.config().seed = seed; }
  /// Called after every round with the sequence, counts and caches.
  void set_round_observer(RoundObserver observer) { observer_ = std::move(observer); }

  /// The configuration in effect (with any set_seed() applied).
  const GenerationConfig& config() const { return state_.config(); }
  /// The EOS ids in effect (from the config or the target's special tokens).
  std::span<const Token> eos_token_ids() const { return state_.eos(); }
  /// K the next round will use (heuristic schedules change it).
  std::size_t num_assistant_tokens() const { return state_.draft_length().k(); }
  /// The confidence threshold in effect (the dynamic schedule re-fits it).
  float confidence_threshold() const { return state_.draft_length().confidence_threshold(); }
  /// The draft-length policy's state (K, threshold, dynamic-threshold samples).
  const DraftLengthPolicy& draft_length() const { return state_.draft_length(); }
  /// The old name of draft_length(), kept for one release.
  [[deprecated("use draft_length()")]] const DraftLengthPolicy& lookahead() const {
    return state_.draft_length();
  }

  /// The position limits generate() plans with: the target's, lowered by the
  /// source's when it has its own (a draft model's learned positions).
  PositionLimits limits() const {
    if constexpr (requires { state_.source().limits(PositionLimits{}); })
      return state_.source().limits(position_limits(*target_));
    else
      return position_limits(*target_);
  }

  /// The candidate source.
  const Source& source() const { return state_.source(); }
  /// The target model (not owned).
  const Target& target() const { return *target_; }
  /// The target's vocabulary size; draft logits beyond it are ignored.
  std::size_t vocab() const { return static_cast<std::size_t>(target_->vocab_size()); }

 private:
  const Target* target_;
  detail::AssistedSequence<Source> state_;  // configuration, source, processors, RNG, sequence
  std::optional<TargetCache> target_cache_;
  Logits target_logits_;  // reused every round
  RoundObserver observer_;
  bool reuse_prefix_ = false;  // set_prefix_reuse()
  bool seq_valid_ = false;     // the state's sequence is the last finished call's
};

}  // namespace assistgen
