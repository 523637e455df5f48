// EXPECT: KvCache: missing member function truncate\(std::size_t\)
// The cache check runs as part of the model check.
#include <assistgen/backend.hpp>

#include <cstddef>
#include <span>

struct Model {
  struct Cache {
    std::size_t size() const { return 0; }
    std::size_t capacity() const { return 0; }
  };
  std::size_t vocab_size() const { return 4; }
  Cache make_cache(std::size_t) const { return {}; }
  assistgen::Logits forward(std::span<const assistgen::Token>, Cache&) const { return {}; }
};
ASSISTGEN_ASSERT_CAUSAL_LM(Model);
