// The draft-length policy: how many tokens the draft proposes per round (K),
// and when it stops early. (Named Lookahead before; "lookahead decoding" is a
// different algorithm, so the old name survives only as a deprecated alias in
// lookahead.hpp.) Semantics follow Hugging Face's assisted generation:
// `constant`; `heuristic` (all K accepted: K += 2, else K = max(1, K - 1),
// kept across calls); `heuristic_transient` (the same, restarted every call);
// `confidence` (the draft stops after proposing a token whose own probability
// is below a threshold), optionally re-fitting the threshold from observed
// outcomes.
//
// Dynamic threshold (HF fits an ROC curve with scikit-learn and takes the
// point where the false-negative rate equals the false-positive rate). Here:
// every drafted token of the current generation gives a sample
// (draft probability, accepted?); tokens after the first rejection are not
// judged and give none. After each round, when more than 5 samples exist and
// both outcomes occur, every distinct sample probability t is tried as the
// threshold "predict accept iff prob >= t"; with TPR = accepted samples at or
// above t / all accepted and FPR = rejected samples at or above t / all
// rejected, the chosen t minimises |(1 - TPR) - FPR| (the equal error rate),
// the highest t winning ties. Samples are reset at each call (the latest
// 1024 are kept); the fitted threshold persists, as in HF where it lives in
// the assistant's generation config.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"

namespace assistgen {

/// The state of a draft-length schedule for one decoder.
class DraftLengthPolicy {
 public:
  /// Most (probability, accepted) samples kept for the dynamic threshold;
  /// older ones are dropped first.
  static constexpr std::size_t kMaxSamples = 1024;

  /// Starts with K = `k` (at least 1) and confidence threshold `threshold`
  /// (in [0, 1]); `dynamic_threshold` re-fits it (DraftLengthSchedule::confidence only).
  /// Throws InvalidArgument naming the GenerationConfig option out of range.
  DraftLengthPolicy(DraftLengthSchedule schedule, std::size_t k, float threshold, bool dynamic_threshold)
      : schedule_(schedule),
        initial_k_(k),
        k_(k),
        threshold_(threshold),
        dynamic_(dynamic_threshold) {
    if (k == 0) throw InvalidArgument("GenerationConfig: num_assistant_tokens must be at least 1");
    if (!(threshold >= 0.0f && threshold <= 1.0f))
      throw InvalidArgument(
          "GenerationConfig: assistant_confidence_threshold must be in [0, 1], got " +
          std::to_string(threshold));
  }
  /// From cfg.schedule, num_assistant_tokens, assistant_confidence_threshold,
  /// dynamic_confidence_threshold and draft_p_min; throws as the constructor
  /// above,
  /// and draft_p_min also throws InvalidArgument when out of [0, 1].
  explicit DraftLengthPolicy(const GenerationConfig& cfg)
      : DraftLengthPolicy(cfg.schedule, cfg.num_assistant_tokens, cfg.assistant_confidence_threshold,
                  cfg.dynamic_confidence_threshold) {
    if (!(cfg.draft_p_min >= 0.0f && cfg.draft_p_min <= 1.0f))
      throw InvalidArgument("GenerationConfig: draft_p_min must be in [0, 1], got " +
                            std::to_string(cfg.draft_p_min));
    p_min_ = cfg.draft_p_min;
  }

  /// Called when a generation starts.
  void begin_generation() {
    if (schedule_ == DraftLengthSchedule::heuristic_transient) k_ = initial_k_;
    samples_.clear();
  }

  /// Tokens to propose next round (before clipping to what remains).
  std::size_t k() const { return k_; }
  /// The schedule it follows.
  DraftLengthSchedule schedule() const { return schedule_; }
  /// The threshold in effect: the configured one, or the last re-fitted one.
  float confidence_threshold() const { return threshold_; }
  /// Whether the schedule is DraftLengthSchedule::confidence (the draft's probability of
  /// each proposed token is then needed, even when greedy).
  bool uses_confidence() const { return schedule_ == DraftLengthSchedule::confidence; }

  /// Whether the draft stops after proposing a token it gave probability `prob`.
  bool stop_after(float prob) const { return uses_confidence() && prob < threshold_; }
  /// Whether the draft stops before proposing a token it gave probability
  /// `prob` (GenerationConfig::draft_p_min, any schedule).
  bool stop_before(float prob) const { return prob < p_min_; }
  /// Whether proposals need the draft's probability of each token.
  bool needs_probability() const { return uses_confidence() || p_min_ > 0.0f; }

  /// Records a round: `draft_probs[j]` is the draft's probability of drafted
  /// token j (only read for the dynamic threshold), `accepted` how many the
  /// target accepted.
  void update(std::span<const float> draft_probs, std::size_t accepted) {
    if (schedule_ == DraftLengthSchedule::heuristic || schedule_ == DraftLengthSchedule::heuristic_transient) {
      // HF compares with the scheduled K, not with the (possibly clipped) count.
      if (accepted == k_)
        k_ += 2;
      else
        k_ = std::max<std::size_t>(1, k_ - 1);
    }
    if (schedule_ == DraftLengthSchedule::confidence && dynamic_) {
      for (std::size_t j = 0; j < draft_probs.size() && j <= accepted; ++j)
        samples_.emplace_back(draft_probs[j], j < accepted);
      if (samples_.size() > kMaxSamples)
        samples_.erase(samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(
                                                                samples_.size() - kMaxSamples));
      refit();
    }
  }

  /// The (probability, accepted) samples of the current generation.
  const std::vector<std::pair<float, bool>>& samples() const { return samples_; }

  /// The equal-error-rate threshold of a sample set (see the file comment);
  /// returns `fallback` when there are 5 samples or fewer or only one outcome.
  static float fit_threshold(std::vector<std::pair<float, bool>> samples, float fallback) {
    return fit_sorted(samples, fallback);
  }

 private:
  void refit() {
    scratch_.assign(samples_.begin(), samples_.end());  // reuses the allocation
    threshold_ = fit_sorted(scratch_, threshold_);
  }

  // Sorts `samples` by probability, descending, then scans the thresholds.
  static float fit_sorted(std::vector<std::pair<float, bool>>& samples, float fallback) {
    std::size_t positives = 0;
    for (const auto& s : samples) positives += s.second ? 1 : 0;
    const std::size_t negatives = samples.size() - positives;
    if (samples.size() <= 5 || positives == 0 || negatives == 0) return fallback;
    std::sort(samples.begin(), samples.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    double best_diff = 2.0;
    float best = fallback;
    std::size_t tp = 0, fp = 0;
    for (std::size_t i = 0; i < samples.size();) {
      const float t = samples[i].first;
      for (; i < samples.size() && samples[i].first == t; ++i) (samples[i].second ? tp : fp) += 1;
      const double fnr = 1.0 - double(tp) / double(positives);
      const double fpr = double(fp) / double(negatives);
      const double diff = std::abs(fnr - fpr);
      if (diff < best_diff) {
        best_diff = diff;
        best = t;
      }
    }
    return best;
  }

  DraftLengthSchedule schedule_;
  std::size_t initial_k_;
  std::size_t k_;
  float threshold_;
  bool dynamic_;
  float p_min_ = 0.0f;
  std::vector<std::pair<float, bool>> samples_;
  std::vector<std::pair<float, bool>> scratch_;
};

}  // namespace assistgen
