// EXPECT: CausalLM: forward\(std::span<const Token>, Cache&\) must be a const member function
#include "good_backend.hpp"

struct Model {
  using Cache = GoodCache;
  std::size_t vocab_size() const { return 4; }
  Cache make_cache(std::size_t capacity) const { return Cache{0, capacity}; }
  assistgen::Logits forward(std::span<const assistgen::Token>, Cache&) { return {}; }
};
ASSISTGEN_ASSERT_CAUSAL_LM(Model);
