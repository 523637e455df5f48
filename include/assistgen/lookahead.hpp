// Deprecated header: the draft-length policy is in draft_length.hpp
// (DraftLengthPolicy, named Lookahead before). This header and the alias go
// away in the next release.
#pragma once

#include "assistgen/draft_length.hpp"

namespace assistgen {

/// The old name of DraftLengthPolicy, kept for one release.
using Lookahead [[deprecated("use assistgen::DraftLengthPolicy (assistgen/draft_length.hpp)")]] =
    DraftLengthPolicy;

}  // namespace assistgen
