// EXPECT: KvCache: missing member function truncate\(std::size_t\)
#include <assistgen/backend.hpp>

#include <cstddef>
#include <span>

struct Cache {
  std::size_t size() const { return 0; }
  std::size_t capacity() const { return 0; }
};
ASSISTGEN_ASSERT_KV_CACHE(Cache);
