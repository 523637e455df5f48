// Private to the text API (generate.cpp, chat_session.cpp): the decoders a
// ChatSession keeps between turns. Each decoder owns its caches, so keeping
// the decoder keeps the caches; prefix reuse (set_prefix_reuse) then feeds
// only what a new turn adds. At most one of them is ever made per session:
// a session's target, assistant and options do not change.
#pragma once

#include <optional>

#include "assistgen/any_model.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/self_speculative_decoder.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/universal_decoder.hpp"

namespace assistgen::detail {

struct SessionDecoders {
  std::optional<SpeculativeDecoder<AnyModel, AnyModel>> draft;
  std::optional<SpeculativeDecoder<NoDraft, AnyModel>> lookup;
  std::optional<UniversalDecoder<AnyModel, AnyModel>> universal;
  std::optional<AutoregressiveDecoder<AnyModel>> plain;
  std::optional<SelfSpeculativeDecoder<AnyModel>> early_exit;

  /// Drops every decoder and so every cache (the next turn prefills all).
  void clear() {
    draft.reset();
    lookup.reset();
    universal.reset();
    plain.reset();
    early_exit.reset();
  }
};

}  // namespace assistgen::detail
