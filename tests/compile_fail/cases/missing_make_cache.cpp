// EXPECT: CausalLM: missing member function make_cache\(std::size_t\) const returning Cache
#include "good_backend.hpp"

struct Model {
  using Cache = GoodCache;
  std::size_t vocab_size() const { return 4; }
  assistgen::Logits forward(std::span<const assistgen::Token>, Cache&) const { return {}; }
};
ASSISTGEN_ASSERT_CAUSAL_LM(Model);
