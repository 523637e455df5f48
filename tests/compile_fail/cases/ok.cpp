// EXPECT-SUCCESS
// The positive control: a complete backend passes every check, so the failing
// cases below fail because of what they break, not because of the harness.
#include "good_backend.hpp"

ASSISTGEN_ASSERT_CAUSAL_LM(GoodModel);
ASSISTGEN_ASSERT_KV_CACHE(GoodCache);
static_assert(assistgen::CausalLM<GoodModel>);
