// EXPECT: CausalLM: make_cache\(std::size_t\) const must return Cache by value
#include <memory>

#include "good_backend.hpp"

struct Model {
  using Cache = GoodCache;
  std::size_t vocab_size() const { return 4; }
  std::unique_ptr<Cache> make_cache(std::size_t) const { return {}; }
  assistgen::Logits forward(std::span<const assistgen::Token>, Cache&) const { return {}; }
};
ASSISTGEN_ASSERT_CAUSAL_LM(Model);
