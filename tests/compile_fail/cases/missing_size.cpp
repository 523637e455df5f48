// EXPECT: KvCache: missing member function size\(\) const
#include <assistgen/backend.hpp>

#include <cstddef>

struct Cache {
  std::size_t capacity() const { return 0; }
  void truncate(std::size_t) {}
};
ASSISTGEN_ASSERT_KV_CACHE(Cache);
