// GenerationConfig: every option of a generation (lookahead, sampling, stopping,
// prompt lookup, cache size) in one aggregate meant to be filled with
// designated initialisers, plus what a generation returns: the new tokens, the
// reason it stopped and its statistics. Option names follow Hugging Face's
// GenerationConfig so that settings carry over.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "assistgen/types.hpp"

namespace assistgen {

/// How the number of drafted tokens K changes between rounds (HF's
/// `num_assistant_tokens_schedule`, plus the confidence stop).
enum class DraftLengthSchedule {
  /// K stays at `num_assistant_tokens`.
  constant,
  /// After a round where all K drafts were accepted K += 2, else
  /// K = max(1, K - 1). K is kept across generate() calls on one decoder.
  heuristic,
  /// As heuristic, but K restarts from `num_assistant_tokens` at every call.
  heuristic_transient,
  /// Up to `num_assistant_tokens` drafts; the draft stops proposing as soon as
  /// its own probability for the token it just proposed is below
  /// `assistant_confidence_threshold` (that token is still proposed).
  confidence,
};

/// The old name of DraftLengthSchedule, kept for one release.
using Schedule [[deprecated("use assistgen::DraftLengthSchedule")]] = DraftLengthSchedule;


/// Special-token ids a model declares (from its config / tokenizer). Used only
/// to check that a draft and a target agree.
struct SpecialTokens {
  std::vector<Token> eos_token_ids = {};   ///< end-of-sequence ids (compared as a set)
  std::optional<Token> bos_token_id = {};  ///< beginning-of-sequence id, when the model has one
};

/// Options of one generation. Every field has a usable default; fill the
/// ones you need with designated initialisers:
/// `GenerationConfig{.max_new_tokens = 64, .do_sample = true, .temperature = 0.7f}`.
struct GenerationConfig {
  /// Upper bound on generated tokens (the prompt is not counted).
  std::size_t max_new_tokens = 64;

  // --- lookahead -----------------------------------------------------------
  /// K: drafted tokens per round (initial value for the heuristic schedules,
  /// the maximum for `confidence`). At least 1.
  std::size_t num_assistant_tokens = 5;
  /// How K changes between rounds (see DraftLengthSchedule).
  DraftLengthSchedule schedule = DraftLengthSchedule::constant;
  /// Probability below which the draft stops proposing (DraftLengthSchedule::confidence).
  float assistant_confidence_threshold = 0.4f;
  /// DraftLengthSchedule::confidence only: re-fit the threshold after every round from
  /// the observed (draft probability, accepted) pairs of this generation, at
  /// the point where the miss rate equals the false-accept rate (HF's ROC fit,
  /// see lookahead.hpp). The fitted threshold is kept across calls.
  bool dynamic_confidence_threshold = false;
  /// With any schedule: the draft stops before a token it gives a
  /// probability below this (that token is not proposed; llama.cpp's
  /// --draft-p-min). In [0, 1]; 0: off. Greedy drafting computes the
  /// probability only when this (or DraftLengthSchedule::confidence) needs it.
  float draft_p_min = 0.0f;
  /// A round whose draft proposes fewer tokens than this verifies none of
  /// them: the target runs alone for that round (llama.cpp's --draft-min).
  /// 0 (default): every draft is verified.
  std::size_t draft_min_tokens = 0;

  // --- sampling ------------------------------------------------------------
  /// false: greedy (argmax after repetition penalty and suppressed tokens;
  /// temperature, top-k, top-p and min-p are ignored, as in HF).
  bool do_sample = false;
  /// Logits are divided by it before sampling (do_sample only); must be > 0
  /// and finite when do_sample is true. 1: off.
  float temperature = 1.0f;
  std::size_t top_k = 0;            ///< 0: off
  float top_p = 1.0f;               ///< 1: off
  float min_p = 0.0f;               ///< 0: off
  float repetition_penalty = 1.0f;  ///< 1: off
  /// Token ids masked to -inf at every step, greedy or sampled; each must be
  /// inside the target vocabulary (else InvalidArgument).
  std::vector<Token> suppress_tokens = {};
  /// Seed of the generation's RNG; generate() reseeds at every call, so the
  /// same seed, prompt and models give the same output.
  std::uint64_t seed = 0;

  // --- stopping ------------------------------------------------------------
  /// Generation stops after emitting any of these. Empty: take them from
  /// `target_special_tokens` when given, else never stop on EOS.
  std::vector<Token> eos_token_ids = {};

  // --- prompt lookup (candidates without a draft model) ---------------------
  /// Tokens proposed per round by n-gram matching; 0 = off. Needs a decoder
  /// built without a draft model.
  std::size_t prompt_lookup_num_tokens = 0;
  /// Longest n-gram matched; sizes are tried from this down to 1.
  std::size_t max_matching_ngram_size = 2;

  // --- tree drafts (candidates/draft_tree.hpp) ------------------------------
  /// Nodes of a draft tree verified per round; 0 = a chain (the default).
  /// The tree grows to num_assistant_tokens levels, expanding EAGLE-2 style
  /// the tree_width nodes of each level with the highest cumulative draft
  /// probability into their tree_width most likely children, and keeps the
  /// tree_nodes nodes with the highest cumulative probability.
  std::size_t tree_nodes = 0;
  /// Children per expanded node and nodes expanded per level (dynamic tree).
  std::size_t tree_width = 4;
  /// A static tree instead: tree_shape[d] children for every node of depth
  /// d (the draft's most likely ones), so sum over d of prod(tree_shape[0..d])
  /// nodes (capped by tree_nodes when that is set). Empty: the dynamic tree.
  std::vector<std::size_t> tree_shape = {};

  // --- caches ----------------------------------------------------------------
  /// Positions each KV cache is made for; 0 = prompt + max_new_tokens (enough
  /// for any K, see speculative_decoder.hpp). A smaller value stops generation
  /// cleanly with StopReason::capacity when the cache is full; a prompt longer
  /// than it is a CapacityError.
  std::size_t cache_capacity = 0;

  // --- compatibility -----------------------------------------------------------
  /// Optional special-token declarations of the draft model. When both are
  /// given they must agree (else CompatibilityError naming the difference).
  std::optional<SpecialTokens> draft_special_tokens = {};
  /// Optional special-token declarations of the target model; its EOS ids
  /// are the stop tokens when `eos_token_ids` is empty.
  std::optional<SpecialTokens> target_special_tokens = {};
};

/// Why a generation ended.
enum class StopReason {
  max_new_tokens,  ///< emitted max_new_tokens tokens
  eos,             ///< emitted an EOS token (the last token of the output)
  callback,        ///< the streaming callback returned false
  capacity,        ///< the cache_capacity, or the model's last position (PositionLimits::hard), is full
  /// the text API: the text reached one of GenerateOptions::stop (the
  /// decoders see a callback that refused the token completing it)
  stop_string,
};

/// Lower-case name of a stop reason ("eos", ...).
constexpr std::string_view stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::max_new_tokens:
      return "max_new_tokens";
    case StopReason::eos:
      return "eos";
    case StopReason::callback:
      return "callback";
    case StopReason::capacity:
      return "capacity";
    case StopReason::stop_string:
      return "stop_string";
  }
  return "?";
}

/// Counters and timings of one generation.
struct GenerationStats {
  std::size_t prompt_tokens = 0;  ///< length of the prompt
  /// Prompt positions the target's cache still held from the decoder's
  /// previous generate() (prefix reuse, set_prefix_reuse()): not fed again.
  /// 0 without prefix reuse.
  std::size_t reused_tokens = 0;
  std::size_t new_tokens = 0;     ///< tokens generated (the size of GenerationResult::tokens)
  /// Speculative rounds (one target call each; the prompt prefill is merged
  /// into the first round).
  std::size_t rounds = 0;
  std::size_t target_calls = 0;  ///< target forward calls (one per round)
  /// Draft-model forward calls (0 with prompt lookup, which calls no model).
  std::size_t draft_calls = 0;
  std::size_t drafted = 0;   ///< candidate tokens proposed, summed over rounds
  std::size_t accepted = 0;  ///< candidate tokens the target accepted, summed over rounds
  /// Sum over rounds of the K the candidate source was allowed (after
  /// clipping to what remains), in the source's own units: draft tokens
  /// (draft_tokens counts the same units).
  std::size_t k_sum = 0;
  /// Tokens the draft proposed in its own vocabulary, summed over rounds.
  /// drafted, accepted, drafted_at and accepted_at count the target's
  /// candidates for every source (draft model, early exit, prompt lookup,
  /// another tokenizer); this equals drafted except for a greedy draft of
  /// another tokenizer, whose proposals are re-tokenized into a different
  /// number of target tokens.
  std::size_t draft_tokens = 0;
  /// Per draft position i (0-based): rounds that proposed more than i
  /// candidates (drafted_at[i]) and rounds whose candidate i was accepted
  /// (accepted_at[i]); accepted_at[i] / drafted_at[i] is the acceptance rate
  /// at position i + 1. Both have the length of the longest proposal.
  std::vector<std::size_t> drafted_at = {};
  std::vector<std::size_t> accepted_at = {};  ///< see drafted_at
  double draft_seconds = 0.0;   ///< inside draft forward calls and prompt lookup
  double target_seconds = 0.0;  ///< inside target forward calls
  double total_seconds = 0.0;   ///< the whole generate() call

  /// accepted / drafted, in [0, 1]; 0 when nothing was drafted.
  double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
  /// new_tokens / target_calls: the speed-up over plain decoding in target
  /// calls (1 without assistance, at most K + 1); 0 before any call.
  double tokens_per_target_call() const {
    return target_calls ? double(new_tokens) / double(target_calls) : 0.0;
  }
  /// Records a round that proposed `drafted` candidates and accepted the
  /// first `accepted` of them (the counters above, per position included).
  void record_round(std::size_t drafted_count, std::size_t accepted_count) {
    drafted += drafted_count;
    accepted += accepted_count;
    if (drafted_at.size() < drafted_count) {
      drafted_at.resize(drafted_count, 0);
      accepted_at.resize(drafted_count, 0);
    }
    for (std::size_t i = 0; i < drafted_count; ++i) ++drafted_at[i];
    for (std::size_t i = 0; i < accepted_count; ++i) ++accepted_at[i];
  }
  /// Mean K allowed per round (k_sum / rounds); 0 when no round ran.
  double mean_k() const { return rounds ? double(k_sum) / double(rounds) : 0.0; }
  /// Time spent in the decoding loop itself: processors, sampling, bookkeeping.
  double loop_seconds() const {
    const double t = total_seconds - draft_seconds - target_seconds;
    return t > 0.0 ? t : 0.0;
  }
};

/// What a generation returns.
struct GenerationResult {
  std::vector<Token> tokens = {};  ///< new tokens only, EOS included when it stopped generation
  GenerationStats stats = {};      ///< counters and timings
  StopReason stop_reason = StopReason::max_new_tokens;  ///< why generation ended
};

/// Streaming callback: called with each token as soon as it is accepted, in
/// order. Return false to stop; the token passed is still part of the output.
using TokenCallback = std::function<bool(Token)>;

}  // namespace assistgen
