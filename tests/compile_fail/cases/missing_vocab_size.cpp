// EXPECT: CausalLM: missing member function vocab_size\(\) const
#include "good_backend.hpp"

struct Model {
  using Cache = GoodCache;
  Cache make_cache(std::size_t capacity) const { return Cache{0, capacity}; }
  assistgen::Logits forward(std::span<const assistgen::Token>, Cache&) const { return {}; }
};
ASSISTGEN_ASSERT_CAUSAL_LM(Model);
