// EXPECT: KvCache: missing member function capacity\(\) const
#include <assistgen/backend.hpp>

#include <cstddef>

struct Cache {
  std::size_t size() const { return 0; }
  void truncate(std::size_t) {}
};
ASSISTGEN_ASSERT_KV_CACHE(Cache);
