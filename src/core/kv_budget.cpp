// The platform query behind kv_memory_limit()'s default, kept out of the
// public header (kv_budget.hpp) so that no installed header includes
// <unistd.h>.
#include "assistgen/kv_budget.hpp"

#include <limits>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace assistgen::detail {

std::size_t physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  std::size_t bytes = 0;
  if (pages > 0 && page > 0 &&
      !__builtin_mul_overflow(static_cast<std::size_t>(pages), static_cast<std::size_t>(page), &bytes))
    return bytes;
#endif
  return std::numeric_limits<std::size_t>::max();
}

}  // namespace assistgen::detail
