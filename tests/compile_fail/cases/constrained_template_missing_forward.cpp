// EXPECT: HasForward
// Without an explicit check, using a type that lacks forward() with any
// template constrained on CausalLM (here KvCacheManager::acquire; the decoders
// are constrained the same way) still names the failed requirement.
#include <assistgen/kv_cache.hpp>

#include "good_backend.hpp"

struct Model {
  using Cache = GoodCache;
  std::size_t vocab_size() const { return 4; }
  Cache make_cache(std::size_t capacity) const { return Cache{0, capacity}; }
};

void use(const Model& m) {
  assistgen::KvCacheManager manager;
  manager.acquire(m, 0, 16);
}
