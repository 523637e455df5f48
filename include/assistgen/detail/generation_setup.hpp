// Private to the decoders (speculative, universal, autoregressive): the checks
// and cache set-up every generate() call starts with, so all of them accept
// the same prompts, size their caches alike and word their errors alike.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/log.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/types.hpp"

namespace assistgen::detail {

/// Cache positions and new-token budget of one generate() call.
struct GenerationPlan {
  std::size_t capacity = 0;  ///< positions each cache is made for
  std::size_t budget = 0;    ///< tokens that may be generated (<= max_new_tokens)
};

/// The limits of a target assisted by a draft that holds one position fewer
/// than the target (SpeculativeDecoder's draft cache): the draft's hard limit
/// D allows a target cache of D + 1 positions. Trained positions are the
/// target's (its output is what degrades).
inline PositionLimits combined_limits(PositionLimits target, PositionLimits draft) {
  if (draft.hard && (!target.hard || draft.hard + 1 < target.hard)) target.hard = draft.hard + 1;
  return target;
}

/// Checks `prompt` (not empty, every id below `vocab`) and derives the cache
/// capacity and the token budget from `cfg` and the model's position
/// `limits`. `who` names the caller in errors. The cache holds every token
/// but the newest one, so capacity + 1 - prompt tokens fit. A hard position
/// limit caps the capacity (generation then stops with StopReason::capacity
/// there, keeping its output); running past the trained positions warns.
inline GenerationPlan plan_generation(std::string_view who, std::span<const Token> prompt,
                                      std::size_t vocab, const GenerationConfig& cfg,
                                      PositionLimits limits = {}) {
  const std::size_t P = prompt.size();
  if (P == 0)
    throw InvalidArgument(std::string(who) + ": the prompt is empty (one token at least)");
  for (std::size_t i = 0; i < P; ++i)
    if (prompt[i] < 0 || static_cast<std::size_t>(prompt[i]) >= vocab)
      throw InvalidArgument(std::string(who) + ": prompt token " + std::to_string(prompt[i]) +
                            " at position " + std::to_string(i) +
                            " is outside the target vocabulary of " + std::to_string(vocab));
  std::size_t cap = cfg.cache_capacity ? cfg.cache_capacity : P + cfg.max_new_tokens;
  if (limits.hard) {
    if (P > limits.hard)
      throw CapacityError(std::string(who) + ": prompt of " + std::to_string(P) +
                          " tokens exceeds the model's " + std::to_string(limits.hard) +
                          " positions (learned positions: n_positions / max_position_embeddings)");
    cap = std::min(cap, limits.hard);
  }
  if (P > cap)
    throw CapacityError(std::string(who) + ": prompt of " + std::to_string(P) +
                        " tokens exceeds cache_capacity " + std::to_string(cap));
  const GenerationPlan plan{cap, std::min(cfg.max_new_tokens, cap + 1 - P)};
  // The newest token is never fed, so positions 0 .. P + budget - 2 are used.
  if (!limits.hard && limits.trained && P + plan.budget - 1 > limits.trained)
    warn(std::string(who) + ": prompt + new tokens (" + std::to_string(P) + " + " +
         std::to_string(plan.budget) + ") pass the " + std::to_string(limits.trained) +
         " positions the model was trained for (max_position_embeddings); the output may "
         "degrade past them");
  return plan;
}

/// The EOS ids a decoder stops at: `cfg.eos_token_ids`, else the target's
/// declared ones. Validates the sampling options and those ids against `vocab`
/// (InvalidArgument naming the option).
inline std::vector<Token> stop_tokens(const GenerationConfig& cfg, std::size_t vocab) {
  std::vector<Token> eos = cfg.eos_token_ids;
  if (eos.empty() && cfg.target_special_tokens) eos = cfg.target_special_tokens->eos_token_ids;
  GenerationConfig checked = cfg;
  checked.eos_token_ids = eos;
  validate_sampling_options(checked, vocab);
  return eos;
}

/// What emit_tokens() emitted.
struct Emitted {
  std::size_t end = 0;   ///< one past the last emitted position of the sequence
  bool stopped = false;  ///< an EOS or the callback ended generation
};

/// Emits `seq[from..)` into `res.tokens`, calling `on_token` for each, and
/// stops after an EOS (StopReason::eos) or a token the callback refused
/// (StopReason::callback); `reason` is set only on such a stop.
inline Emitted emit_tokens(std::span<const Token> seq, std::size_t from,
                           std::span<const Token> eos, const TokenCallback& on_token,
                           GenerationResult& res, StopReason& reason) {
  for (std::size_t i = from; i < seq.size(); ++i) {
    const Token t = seq[i];
    res.tokens.push_back(t);
    const bool keep_going = !on_token || on_token(t);
    if (std::find(eos.begin(), eos.end(), t) != eos.end()) {
      reason = StopReason::eos;
      return {i + 1, true};
    }
    if (!keep_going) {
      reason = StopReason::callback;
      return {i + 1, true};
    }
  }
  return {seq.size(), false};
}

/// Appends `tokens` to `cache` and puts the logits of the last `outputs` of
/// them in `out` (one chain request through forward_batch(): a backend with
/// a batched forward computes only those LM-head rows). `who` names the model
/// in the error thrown when the backend returns another shape. A non-empty
/// `parent` makes it a tree request (backend.hpp).
template <CausalLM M>
void forward_rows(const M& model, std::span<const Token> tokens, typename M::Cache& cache,
                  std::size_t outputs, Logits& out, std::string_view who,
                  std::span<const std::int32_t> parent = {}) {
  const ForwardRequest request{tokens, parent, outputs};
  typename M::Cache* const caches[1] = {&cache};
  forward_batch(model, std::span<const ForwardRequest>(&request, 1),
                std::span<typename M::Cache* const>(caches), out);
  const std::size_t rows = output_rows(request);
  if (out.rows() != rows || out.cols() < static_cast<std::size_t>(model.vocab_size()))
    throw Error(std::string(who) + " forward returned logits of shape [" + std::to_string(out.rows()) + ", " +
                std::to_string(out.cols()) + "] for the last " + std::to_string(rows) + " of " +
                std::to_string(tokens.size()) + " tokens");
}

/// Feeds the prompt's tokens before the last that `cache` does not hold yet
/// in one call of their own asking for no logits (nothing when there are
/// none). Every decoder prefills a prompt this way, before its first step or
/// round, which then feeds [last] or [last, d_1..d_k] as in every later one:
/// a backend whose prefill path differs from its decode path
/// (cpu::Transformer's oneDNN prefill, LoadOptions::onednn_prefill_rows)
/// thus computes the same K/V for the prompt in plain, assisted and batched
/// generation, and greedy assisted output stays the target's own.
template <CausalLM M>
void prefill_prompt(const M& model, std::span<const Token> prompt, typename M::Cache& cache, Logits& scratch,
                    std::string_view who) {
  const std::size_t cached = cache.size();
  if (cached + 1 >= prompt.size()) return;
  forward_rows(model, prompt.subspan(cached, prompt.size() - 1 - cached), cache, 0, scratch, who);
}

/// Length of the longest common prefix of `a` and `b`.
inline std::size_t common_prefix(std::span<const Token> a, std::span<const Token> b) {
  const std::size_t n = std::min(a.size(), b.size());
  std::size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

/// The cache in `slot` cut to at most `keep` positions (0: emptied; a
/// decoder's prefix reuse keeps more) when it can hold `capacity` positions;
/// else a new one made by `model`. A cache that cannot be made is a
/// CapacityError that names the options its size came from.
template <CausalLM M>
typename M::Cache& reuse_or_make_cache(const M& model, std::optional<typename M::Cache>& slot,
                                       std::size_t capacity, std::size_t keep = 0) {
  if (!slot || slot->capacity() < capacity) {
    slot.reset();
    try {
      slot.emplace(model.make_cache(capacity));
    } catch (const CapacityError& e) {
      throw CapacityError("generate: a cache of " + std::to_string(capacity) +
                          " positions (the prompt's tokens + GenerationConfig::max_new_tokens, "
                          "or GenerationConfig::cache_capacity when set) cannot be made: " +
                          e.what());
    }
  } else {
    slot->truncate(std::min(slot->size(), keep));
  }
  return *slot;
}

}  // namespace assistgen::detail
