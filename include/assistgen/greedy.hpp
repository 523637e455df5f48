// Deprecated header: AutoregressiveDecoder (plain decoding, greedy or
// sampled) is in autoregressive.hpp. This header goes away in the next release.
#pragma once

#include "assistgen/autoregressive.hpp"
