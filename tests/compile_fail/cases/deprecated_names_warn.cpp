// EXPECT: deprecated.*DraftLengthPolicy
// The old name of the draft-length policy warns, pointing at the new one
// (made an error here so that the test sees it).
#pragma GCC diagnostic error "-Wdeprecated-declarations"
#include <assistgen/lookahead.hpp>

assistgen::Lookahead policy() { return assistgen::Lookahead(assistgen::GenerationConfig{}); }
