// EXPECT: KvCache: the cache type must be movable
#include <assistgen/backend.hpp>

#include <cstddef>
#include <mutex>

struct Cache {
  std::size_t size() const { return 0; }
  std::size_t capacity() const { return 0; }
  void truncate(std::size_t) {}
  std::mutex m;  // neither copyable nor movable
};
ASSISTGEN_ASSERT_KV_CACHE(Cache);
