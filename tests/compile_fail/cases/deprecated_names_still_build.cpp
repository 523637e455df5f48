// EXPECT-SUCCESS
// The names renamed in this release still build for one release: the old
// headers (greedy.hpp, config.hpp, lookahead.hpp) and the aliases Lookahead,
// Schedule and SpeculativeDecoder::lookahead(). (They warn: see
// deprecated_names_warn.cpp.)
#include <assistgen/config.hpp>
#include <assistgen/greedy.hpp>
#include <assistgen/lookahead.hpp>
#include <assistgen/speculative_decoder.hpp>
#include <type_traits>

#include "good_backend.hpp"

static_assert(std::is_same_v<assistgen::Lookahead, assistgen::DraftLengthPolicy>);
static_assert(std::is_same_v<assistgen::Schedule, assistgen::DraftLengthSchedule>);

assistgen::Lookahead policy() {
  return assistgen::Lookahead(assistgen::GenerationConfig{.schedule = assistgen::Schedule::heuristic});
}
assistgen::ModelConfig model_config() { return {}; }

template <class Decoder>
std::size_t k_of(const Decoder& d) {
  return d.lookahead().k();
}
template std::size_t k_of(const assistgen::SpeculativeDecoder<assistgen::NoDraft, GoodModel>&);
