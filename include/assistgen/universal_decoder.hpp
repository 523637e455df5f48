// UniversalDecoder<Draft, Target>: assisted generation when the draft and the
// target use DIFFERENT tokenizers (Hugging Face's "universal assisted
// generation", AssistedCandidateGeneratorDifferentTokenizers) when greedy, and
// universal speculative decoding (HF's UniversalSpeculativeDecodingGenerator,
// Timor et al. 2025) when sampling: AssistedDecoder (assisted_decoder.hpp)
// over DifferentTokenizerCandidates (candidates/different_tokenizer.hpp).
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
// Sampling (do_sample): the draft proposes only the tokens whose strings both
// vocabularies have (VocabularyMap), one target token per draft token, drawn
// from the draft's distribution scattered onto the target's vocabulary and
// processed by the target's processors; the target's rejection sampling
// against that q keeps its distribution exactly (see
// DifferentTokenizerCandidates). Prompt lookup is not combined with a draft.
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

#include <cstddef>
#include <span>
#include <string>
#include <utility>

#include "assistgen/assisted_decoder.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/candidates/different_tokenizer.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/tokenizer.hpp"

namespace assistgen {

/// Assisted generation (greedy, or sampling with the shared tokens) with a
/// draft whose tokenizer differs from the target's. Holds references to both models (they must outlive the
/// decoder), cheap copies of both tokenizers (sharing their tables) and one
/// cache for each model. Not thread-safe.
template <CausalLM Draft, CausalLM Target>
class UniversalDecoder : public AssistedDecoder<DifferentTokenizerCandidates<Draft>, Target> {
  using Base = AssistedDecoder<DifferentTokenizerCandidates<Draft>, Target>;

 public:
  using DraftCache = typename Draft::Cache;    ///< the draft's cache type
  using TargetCache = typename Target::Cache;  ///< the target's cache type

  /// Throws InvalidArgument for a bad option (naming it), CompatibilityError
  /// when sampling and the vocabularies share no token. The draft only ever
  /// proposes ids its tokenizer has (rows of its logits beyond the
  /// tokenizer's vocabulary are ignored).
  UniversalDecoder(const Draft& draft, const Tokenizer& draft_tokenizer, const Target& target,
                   const Tokenizer& target_tokenizer, GenerationConfig cfg,
                   UniversalOptions options = {})
      : Base(target, std::move(cfg), "UniversalDecoder::generate", [&](const GenerationConfig& c) {
          detail::reject_prompt_lookup_with_draft(c);
          return DifferentTokenizerCandidates<Draft>(draft, draft_tokenizer, target_tokenizer,
                                                     static_cast<std::size_t>(target.vocab_size()),
                                                     std::move(options), c.do_sample);
        }) {}

  /// The candidate-conversion options as given.
  const UniversalOptions& options() const { return this->source().options(); }
  /// The draft's own token sequence after the last round (its proposals included).
  std::span<const Token> draft_sequence() const { return this->source().draft_sequence(); }
};

}  // namespace assistgen
