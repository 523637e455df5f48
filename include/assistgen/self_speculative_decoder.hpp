// SelfSpeculativeDecoder<Target>: self-speculative decoding (LayerSkip;
// Hugging Face's assistant_early_exit): AssistedDecoder (assisted_decoder.hpp)
// over EarlyExitCandidates (candidates/early_exit.hpp), whose draft is the
// target's first E layers on the target's own cache. One model, one cache;
// greedy output equals the target's own, sampled output follows its
// distribution, as with any candidate source.
//
//   assistgen::SelfSpeculativeDecoder dec(target, /*exit_layer=*/2, cfg);
//   auto out = dec.generate(prompt_ids);
#pragma once

#include <cstddef>
#include <utility>

#include "assistgen/assisted_decoder.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/candidates/early_exit.hpp"
#include "assistgen/generation_config.hpp"

namespace assistgen {

/// Assisted generation of `Target` by its own first E layers. Holds a
/// reference to the target (it must outlive the decoder) and its one cache.
/// Not thread-safe; use one decoder per thread.
template <CausalLM Target>
requires SplitsLayers<Target> || RunsLayerPlans<Target>
class SelfSpeculativeDecoder : public AssistedDecoder<EarlyExitCandidates<Target>, Target> {
  using Base = AssistedDecoder<EarlyExitCandidates<Target>, Target>;

 public:
  /// Drafts with layers [0, exit_layer). Throws InvalidArgument for an
  /// exit_layer outside [1, layers - 1] or a bad option (naming it), and for
  /// prompt lookup, which needs no draft; UnsupportedError when `verify`
  /// asks for what the backend cannot do.
  SelfSpeculativeDecoder(const Target& target, std::size_t exit_layer, GenerationConfig cfg,
                         EarlyExitVerify verify = EarlyExitVerify::automatic)
      : Base(target, std::move(cfg), "SelfSpeculativeDecoder::generate",
             [&](const GenerationConfig& c) {
               detail::reject_prompt_lookup_with_draft(c);
               return EarlyExitCandidates<Target>(target, exit_layer, verify);
             }) {}

  /// E: the layers the draft runs.
  std::size_t exit_layer() const { return this->source().exit_layer(); }
  /// Whether the verification reuses the draft's rows (else it recomputes).
  bool reuses() const { return this->source().reuses(); }
};

}  // namespace assistgen
