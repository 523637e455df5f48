// Prompt lookup: candidate tokens without a draft model. The last n tokens of
// the sequence (prompt + output so far) are searched for earlier in the
// sequence; the tokens that followed the first earlier occurrence are the
// candidates. Works well when the output copies from the prompt (summaries,
// code edits, extraction). Semantics of Hugging Face's
// PromptLookupCandidateGenerator: n runs from max_matching_ngram_size (capped
// at length - 1) down to 1; the earliest occurrence with at least one
// following token wins; at most prompt_lookup_num_tokens candidates; the
// candidates are cut before the first EOS token, so EOS is never proposed.
// Candidates have no distribution: the decoder treats q as one-hot.
// PromptLookupCandidates is the CandidateSource (candidate_source.hpp) over it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <span>
#include <vector>

#include "assistgen/candidate_source.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// N-gram matching candidate source.
class PromptLookup {
 public:
  /// At most `num_tokens` candidates per call, from n-grams of at most
  /// `max_ngram` tokens. Throws InvalidArgument when either is 0.
  PromptLookup(std::size_t num_tokens, std::size_t max_ngram)
      : num_tokens_(num_tokens), max_ngram_(max_ngram) {
    if (num_tokens == 0)
      throw InvalidArgument("GenerationConfig: prompt_lookup_num_tokens must be at least 1");
    if (max_ngram == 0)
      throw InvalidArgument("GenerationConfig: max_matching_ngram_size must be at least 1");
  }

  /// Most candidates one propose() call returns (prompt_lookup_num_tokens).
  std::size_t num_tokens() const { return num_tokens_; }
  /// Longest n-gram tried (max_matching_ngram_size).
  std::size_t max_ngram() const { return max_ngram_; }

  /// Appends up to min(limit, num_tokens()) candidates continuing `sequence`
  /// to `out` (which is cleared first). `eos` ends the candidates before it.
  void propose(std::span<const Token> sequence, std::size_t limit, std::span<const Token> eos,
               std::vector<Token>& out) const {
    out.clear();
    const std::size_t len = sequence.size();
    const std::size_t want = std::min(limit, num_tokens_);
    if (want == 0 || len < 2) return;
    for (std::size_t n = std::min(max_ngram_, len - 1); n >= 1; --n) {
      const Token* tail = sequence.data() + (len - n);
      // Windows starting at i < len - n; the window at len - n is the tail
      // itself and has no following token.
      for (std::size_t i = 0; i + n < len; ++i) {
        if (!std::equal(tail, tail + n, sequence.data() + i)) continue;
        const std::size_t start = i + n;
        const std::size_t end = std::min(start + want, len);
        for (std::size_t j = start; j < end; ++j) {
          if (std::find(eos.begin(), eos.end(), sequence[j]) != eos.end()) break;
          out.push_back(sequence[j]);
        }
        // HF stops at the first match with a non-empty window, even when the
        // EOS cut then leaves no candidates.
        return;
      }
    }
  }

 private:
  std::size_t num_tokens_;
  std::size_t max_ngram_;
};

/// Prompt lookup as a candidate source: SpeculativeDecoder<NoDraft, T> is
/// AssistedDecoder over it. Proposes only what the n-gram match gives (no
/// draft-length policy, no distribution), and counts the seconds the search
/// takes as draft time.
class PromptLookupCandidates {
 public:
  /// Stands in for a draft cache in RoundInfo (there is none).
  using Cache = NoDraft::Cache;

  /// From GenerationConfig::prompt_lookup_num_tokens and
  /// max_matching_ngram_size; throws InvalidArgument naming the option when
  /// prompt lookup is off (0) or the n-gram size is 0.
  explicit PromptLookupCandidates(const GenerationConfig& cfg)
      : lookup_(checked(cfg).prompt_lookup_num_tokens, cfg.max_matching_ngram_size) {}

  /// The n-gram search.
  const PromptLookup& lookup() const { return lookup_; }

  /// A generation starts (nothing is kept between generations).
  void start(std::size_t, std::size_t, CandidateContext&) { seconds_ = 0.0; }
  /// prompt_lookup_num_tokens.
  std::size_t limit(const CandidateContext&) const { return lookup_.num_tokens(); }
  /// Appends the tokens that followed the latest n-gram's earlier occurrence.
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit, CandidateContext& ctx) {
    const auto t0 = std::chrono::steady_clock::now();
    lookup_.propose(std::span<const Token>(seq.data(), n), limit, ctx.eos, found_);
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    seq.insert(seq.end(), found_.begin(), found_.end());
    return found_.size();
  }
  /// No distribution: the candidates are one-hot.
  std::span<const float> q_row(std::size_t) const { return {}; }
  void discard(std::size_t) {}                                 ///< nothing to undo
  void learn(std::size_t, std::size_t, CandidateContext&) {}  ///< nothing to learn
  void cut(std::size_t) {}                                     ///< nothing to cut
  /// The search's seconds as draft time (no draft calls).
  void finish(GenerationStats& stats) const { stats.draft_seconds = seconds_; }

 private:
  static const GenerationConfig& checked(const GenerationConfig& cfg) {
    if (cfg.prompt_lookup_num_tokens == 0)
      throw InvalidArgument(
          "GenerationConfig: prompt_lookup_num_tokens is 0 and there is no draft model: "
          "nothing can propose candidates");
    return cfg;
  }

  PromptLookup lookup_;
  std::vector<Token> found_;
  double seconds_ = 0.0;
};

}  // namespace assistgen
