// EXPECT: CausalLM: forward\(std::span<const Token>, Cache&\) const must return assistgen::Logits
#include <vector>

#include "good_backend.hpp"

struct Model {
  using Cache = GoodCache;
  std::size_t vocab_size() const { return 4; }
  Cache make_cache(std::size_t capacity) const { return Cache{0, capacity}; }
  std::vector<float> forward(std::span<const assistgen::Token>, Cache&) const { return {}; }
};
ASSISTGEN_ASSERT_CAUSAL_LM(Model);
