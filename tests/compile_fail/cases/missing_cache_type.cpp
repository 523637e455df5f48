// EXPECT: CausalLM: missing member type Cache
#include <assistgen/backend.hpp>

#include <cstddef>

struct Model {
  std::size_t vocab_size() const { return 4; }
};
ASSISTGEN_ASSERT_CAUSAL_LM(Model);
