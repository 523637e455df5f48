// EXPECT: CausalLM: missing member function forward\(std::span<const Token>, Cache&\) const returning assistgen::Logits
#include "good_backend.hpp"

struct Model {
  using Cache = GoodCache;
  std::size_t vocab_size() const { return 4; }
  Cache make_cache(std::size_t capacity) const { return Cache{0, capacity}; }
};
ASSISTGEN_ASSERT_CAUSAL_LM(Model);
