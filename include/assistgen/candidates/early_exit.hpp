// Self-speculation (LayerSkip, Elhoushi et al. 2024; Hugging Face's
// assistant_early_exit): the draft is the target itself run through its first
// E layers, then its final norm and LM head. No second model and no second
// cache: the draft writes the K/V rows of layers < E into the target's own
// cache, which the verification then completes. A CandidateSource
// (candidate_source.hpp) that AssistedDecoder hands the target's cache
// (bind_target_cache) and lets run the verification (verify);
// SelfSpeculativeDecoder is AssistedDecoder over it.
//
// The target's cache in a round (S, n, d_1..d_k as in assisted_decoder.hpp;
// F = slots holding every layer, F = n - 1 in steady state):
//
//   start of round   S[0..F), all layers
//   draft            layers < E of S[F..n) (the whole prompt in the first
//                    round) then of d_1..d_{k-1}, one call per token; the
//                    residual rows after layer E - 1 are kept (reuse mode)
//   verify, reuse    layers < E of what is left (d_k), then layers >= E of
//                    the slots [F, n + k) from the kept rows: logits of the
//                    last k + 1 rows, bit-identical to a full forward's
//                    (batch-invariant kernels), at about (L - E) / L of its
//                    weight reads
//   verify, recompute  (a backend with layer plans but no split): the cache
//                    is cut back to F and [F, n + k) runs through all layers
//   end of round     the decoder cuts the cache to n + accepted (all layers)
//
// Reuse needs SplitsLayers (layer_split.hpp: cpu::Transformer, and AnyModel
// when the model it wraps splits); recompute needs RunsLayerPlans.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/error.hpp"
#include "assistgen/layer_split.hpp"
#include "assistgen/sampling/rng.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// How the verification of a self-speculative round uses the draft's work.
enum class EarlyExitVerify {
  automatic,  ///< reuse when the backend splits its forward pass, else recompute
  reuse,      ///< layers >= E from the draft's residual rows (SplitsLayers); else UnsupportedError
  recompute,  ///< every layer again from the embeddings (RunsLayerPlans)
};

/// Lower-case name of an EarlyExitVerify value ("reuse", ...).
constexpr std::string_view early_exit_verify_name(EarlyExitVerify v) {
  switch (v) {
    case EarlyExitVerify::automatic:
      return "automatic";
    case EarlyExitVerify::reuse:
      return "reuse";
    case EarlyExitVerify::recompute:
      return "recompute";
  }
  return "?";
}

/// Candidates from the target's own first `exit_layer` layers (see the file
/// comment). Holds a reference to the target (it must outlive this object)
/// and, during a generation, a pointer to the target's cache lent by the
/// decoder.
template <CausalLM Target>
requires SplitsLayers<Target> || RunsLayerPlans<Target>
class EarlyExitCandidates {
 public:
  using Cache = typename Target::Cache;  ///< the target's cache type (shared, not owned)

  /// A draft of the first `exit_layer` layers of `target`. Throws
  /// InvalidArgument naming early_exit when it is not in [1, layers - 1]
  /// (known only for a backend with num_layers(); otherwise the backend's
  /// forward rejects it), UnsupportedError when `verify` asks for reuse and
  /// the backend cannot split its forward pass.
  EarlyExitCandidates(const Target& target, std::size_t exit_layer,
                      EarlyExitVerify verify = EarlyExitVerify::automatic)
      : target_(&target), exit_(exit_layer), vocab_(static_cast<std::size_t>(target.vocab_size())) {
    bool can_split = false;
    if constexpr (SplitsLayers<Target>) {
      if constexpr (requires { target.splits_layers(); })
        can_split = target.splits_layers();
      else
        can_split = true;
    }
    if (exit_layer == 0)
      throw InvalidArgument(
          "early_exit: 0 is not a layer count; the draft runs layers [0, E) with E >= 1");
    if (can_split) {
      const std::size_t layers = static_cast<std::size_t>(target.num_layers());
      if (exit_layer >= layers)
        throw InvalidArgument(
            "early_exit " + std::to_string(exit_layer) + " must be below the target's " +
            std::to_string(layers) +
            " layers (the draft runs layers [0, E), the verification all of them)");
      hidden_size_ = static_cast<std::size_t>(target.hidden_size());
    }
    if (verify == EarlyExitVerify::reuse && !can_split)
      throw UnsupportedError(
          "early_exit: verification by reuse asks the backend to split its forward pass at layer E "
          "(forward_lower / forward_upper, layer_split.hpp), and this backend cannot");
    if (!(verify != EarlyExitVerify::recompute && can_split) && !RunsLayerPlans<Target>)
      throw UnsupportedError(
          "early_exit: self-speculation needs a backend that splits its forward pass at a layer "
          "(layer_split.hpp) or runs layer plans (kLayerPlans), and this one does neither");
    reuse_ =
        verify == EarlyExitVerify::reuse || (verify == EarlyExitVerify::automatic && can_split);
  }

  /// E: the layers the draft runs.
  std::size_t exit_layer() const { return exit_; }
  /// Whether the verification reuses the draft's rows (else it recomputes).
  bool reuses() const { return reuse_; }

  // ---- shared cache (AssistedDecoder calls these when a source has them)

  /// The target's cache for this generation (the decoder's; valid until the
  /// next bind).
  void bind_target_cache(Cache& cache) { cache_ = &cache; }

  /// The target's verification of `seq` (S + d_1..d_k, cached up to what the
  /// draft wrote): completes every slot to seq.size() and writes the logits
  /// of the last `rows` positions into `out`.
  void verify(std::span<const Token> seq, std::size_t rows, Logits& out) {
    Cache& c = cache();
    if (full_ == c.size() || !reuse_) {
      if (c.size() > full_) c.truncate(full_);
      detail::forward_rows(*target_, seq.subspan(full_), c, rows, out, "target");
    } else if constexpr (SplitsLayers<Target>) {
      if (c.size() < seq.size())
        target_->forward_lower(seq.subspan(c.size()), c, exit_, hidden_, scratch_, 0);
      target_->forward_upper(c, full_, hidden_, exit_, out, rows);
    }
    full_ = c.size();
    hidden_.clear();
  }

  /// For a loop that verifies many sequences in one target call
  /// (BatchEngine, DraftsOnTargetCache): drops the draft's kept rows and
  /// cuts the cache back to the slots holding every layer, so that the
  /// loop's full forward of seq[cache.size()..) is the verification (the
  /// recompute path of verify(), with the same logits bits).
  void prepare_batched_verify() {
    Cache& c = cache();
    if (c.size() > full_) c.truncate(full_);
    hidden_.clear();
  }

  // ---- CandidateSource (see candidate_source.hpp)

  /// A generation starts on the bound cache (kept to `keep` positions by the
  /// decoder): counters reset.
  void start(std::size_t, std::size_t, CandidateContext&) {
    calls_ = 0;
    seconds_ = 0.0;
    full_ = cache().size();
    hidden_.clear();
  }
  /// K from the draft-length policy.
  std::size_t limit(const CandidateContext& ctx) const { return ctx.draft_length.k(); }
  /// Up to `limit` tokens from the first E layers after seq[0..n), appended
  /// to `seq`, one early-exit call per token on the target's cache.
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit,
                      CandidateContext& ctx) {
    seq.resize(n);
    probs_.clear();
    Cache& c = cache();
    full_ = c.size();
    hidden_.clear();
    if (limit == 0) return 0;
    const bool sample = ctx.config.do_sample;
    if (sample && q_.size() < limit * vocab_) q_.resize(limit * vocab_);
    for (std::size_t i = 0; i < limit; ++i) {
      const std::span<const Token> input = i == 0
                                               ? std::span<const Token>(seq).subspan(c.size())
                                               : std::span<const Token>(seq).subspan(n + i - 1, 1);
      const auto t0 = std::chrono::steady_clock::now();
      draft_forward(input, c);
      seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++calls_;
      std::span<float> q =
          sample ? std::span<float>(q_.data() + i * vocab_, vocab_) : std::span<float>();
      const DraftStep step = choose_draft_token(logits_.row(0).first(vocab_), seq, probs_, q,
                                                ctx.chain, ctx.rng, ctx.draft_length, ctx.eos);
      if (step != DraftStep::more) break;
    }
    return seq.size() - n;
  }
  /// Processed draft distribution of proposed token j (sampling only).
  std::span<const float> q_row(std::size_t j) const { return {q_.data() + j * vocab_, vocab_}; }
  /// Drops the proposal: the cache keeps S[0..n) (layers < E of the slots
  /// past full_ stay pending for the verification).
  void discard(std::size_t n) {
    Cache& c = cache();
    if (c.size() > n) {
      c.truncate(n);
      if (reuse_) hidden_.resize((n - full_) * hidden_size_);
    }
    probs_.clear();
  }
  /// The decoder has cut the cache to what was accepted; K adapts.
  void learn(std::size_t, std::size_t accepted, CandidateContext& ctx) {
    full_ = cache().size();
    ctx.draft_length.update(probs_, accepted);
  }
  /// Generation stopped inside the block (the decoder cut the cache).
  void cut(std::size_t) { full_ = std::min(full_, cache().size()); }
  /// Early-exit calls and their seconds into `stats`.
  void finish(GenerationStats& stats) const {
    stats.draft_calls = calls_;
    stats.draft_seconds = seconds_;
  }

 private:
  Cache& cache() {
    if (!cache_)
      throw Error(
          "EarlyExitCandidates: no target cache bound (the decoder lends it with bind_target_cache "
          "before "
          "start)");
    return *cache_;
  }

  // Layers < E of `input` on the shared cache; the last row's logits in logits_.
  void draft_forward(std::span<const Token> input, Cache& c) {
    if (reuse_) {
      if constexpr (SplitsLayers<Target>)
        target_->forward_lower(input, c, exit_, hidden_, logits_, 1);
    } else if constexpr (RunsLayerPlans<Target>) {
      const ForwardRequest request{input, {}, 1};
      Cache* const ptr = &c;
      LayerPlan plan;
      plan.early_exit = exit_;
      forward_batch(*target_, std::span<const ForwardRequest>(&request, 1),
                    std::span<Cache* const>(&ptr, 1), logits_, plan);
    }
  }

  const Target* target_;
  std::size_t exit_;
  std::size_t vocab_;
  std::size_t hidden_size_ = 0;
  bool reuse_ = false;
  Cache* cache_ = nullptr;
  std::size_t full_ = 0;       // slots of the cache holding every layer
  std::vector<float> hidden_;  // residual rows of the slots [full_, cache size) (reuse)
  Logits logits_;              // the draft's last row
  Logits scratch_;             // forward_lower's (empty) output in verify()
  std::vector<float> q_;
  std::vector<float> probs_;
  std::size_t calls_ = 0;
  double seconds_ = 0.0;
};

}  // namespace assistgen
