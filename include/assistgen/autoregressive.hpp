// Plain autoregressive decoding of one model from token ids: greedy, or
// sampling with the same logits processors, RNG, stopping rules and result
// type as SpeculativeDecoder. It is the baseline assisted generation must
// reproduce (greedy: token for token; sampling: in distribution) and the
// reference the benchmarks compare against.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// One token per forward call. Holds a reference to the model (it must
/// outlive the decoder) and a cache reused across generate() calls.
/// Uses max_new_tokens, do_sample and the sampling options, seed,
/// eos_token_ids (or target_special_tokens) and cache_capacity of the config,
/// with the same meaning as SpeculativeDecoder; the assistant options are
/// ignored.
template <CausalLM Model>
class AutoregressiveDecoder {
 public:
  /// Keeps a reference to `model`. Throws InvalidArgument naming the option
  /// when a sampling option, suppressed token or EOS id is out of range.
  AutoregressiveDecoder(const Model& model, GenerationConfig cfg)
      : model_(&model), cfg_(std::move(cfg)) {
    eos_ = detail::stop_tokens(cfg_, vocab());
    chain_ = make_processor_chain(cfg_);
  }

  /// Generates after `prompt` (not empty); `on_token` as in SpeculativeDecoder.
  GenerationResult generate(std::span<const Token> prompt, const TokenCallback& on_token = {}) {
    const auto t_start = std::chrono::steady_clock::now();
    GenerationResult res;
    GenerationStats& st = res.stats;
    const std::size_t P = prompt.size();
    const auto [cap, budget] = detail::plan_generation("AutoregressiveDecoder::generate", prompt, vocab(), cfg_,
                                                   position_limits(*model_));
    // Prefix reuse as in AssistedDecoder: the cache holds a prefix of seq_.
    const std::size_t keep =
        reuse_prefix_ && seq_valid_ ? std::min(detail::common_prefix(seq_, prompt), P - 1) : 0;
    seq_valid_ = false;
    st.reused_tokens = detail::reuse_or_make_cache(*model_, cache_, cap, keep).size();
    rng_.reseed(cfg_.seed);
    chain_.reset();
    seq_.assign(prompt.begin(), prompt.end());
    seq_.reserve(P + budget);
    res.tokens.reserve(budget);
    st.prompt_tokens = P;
    res.stop_reason =
        budget < cfg_.max_new_tokens ? StopReason::capacity : StopReason::max_new_tokens;

    if (budget > 0) {  // the prompt but its last token, as every decoder prefills it
      const auto t0 = std::chrono::steady_clock::now();
      detail::prefill_prompt(*model_, prompt, *cache_, logits_, "target");
      st.target_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    while (res.tokens.size() < budget) {
      const std::span<const Token> input = std::span<const Token>(seq_).subspan(cache_->size());
      const auto t0 = std::chrono::steady_clock::now();
      // Logits of the last row only: a prompt's prefill computes no LM-head rows it drops.
      detail::forward_rows(*model_, input, *cache_, 1, logits_, "target");
      Logits& logits = logits_;
      st.target_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++st.target_calls;
      ++st.rounds;
      std::span<float> row = logits.row(0).first(vocab());
      chain_.apply(row, seq_);
      Token t;
      if (cfg_.do_sample) {
        softmax_inplace(row);
        t = sample_categorical(row, rng_);
      } else {
        t = argmax(row);
      }
      seq_.push_back(t);
      res.tokens.push_back(t);
      const bool keep_going = !on_token || on_token(t);
      if (std::find(eos_.begin(), eos_.end(), t) != eos_.end()) {
        res.stop_reason = StopReason::eos;
        break;
      }
      if (!keep_going) {
        res.stop_reason = StopReason::callback;
        break;
      }
    }
    st.new_tokens = res.tokens.size();
    st.total_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    seq_valid_ = true;
    return res;
  }

  /// Prefix reuse, as AssistedDecoder::set_prefix_reuse(). Off by default.
  void set_prefix_reuse(bool on) { reuse_prefix_ = on; }
  /// Replaces max_new_tokens for the next generate() calls.
  void set_max_new_tokens(std::size_t n) { cfg_.max_new_tokens = n; }
  /// Replaces the seed used by the next generate() calls.
  void set_seed(std::uint64_t seed) { cfg_.seed = seed; }
  /// The configuration in effect (with any set_seed() applied).
  const GenerationConfig& config() const { return cfg_; }
  /// The model's vocabulary size.
  std::size_t vocab() const { return static_cast<std::size_t>(model_->vocab_size()); }

 private:
  const Model* model_;
  GenerationConfig cfg_;
  std::vector<Token> eos_;
  LogitsProcessorChain chain_;
  Rng rng_;
  std::optional<typename Model::Cache> cache_;
  Logits logits_;  // reused every step
  std::vector<Token> seq_;
  bool reuse_prefix_ = false;  // set_prefix_reuse()
  bool seq_valid_ = false;     // seq_ is the last finished call's sequence
};

/// One-shot plain decoding: AutoregressiveDecoder(model, cfg).generate(prompt).
template <CausalLM Model>
GenerationResult generate_autoregressive(const Model& model, std::span<const Token> prompt,
                                         const GenerationConfig& cfg,
                                         const TokenCallback& on_token = {}) {
  AutoregressiveDecoder<Model> decoder(model, cfg);
  return decoder.generate(prompt, on_token);
}

}  // namespace assistgen
