// The process-wide bound on KV-cache memory. Every KvStorage (the CPU
// backend's caches, in all threads) reserves its bytes here before it
// allocates, after checking the size computation for overflow, so a cache that
// would not fit is a CapacityError naming the sizes, never std::bad_alloc or
// an OOM kill halfway through zero-filling. Default: the machine's physical
// memory. Another backend's caches may reserve here too (KvReservation).
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <utility>

#include "assistgen/error.hpp"

namespace assistgen {

namespace detail {
struct KvBudget {
  static inline std::atomic<std::size_t> limit{0};  // 0: not set, the default applies
  static inline std::atomic<std::size_t> in_use{0};
};
/// The machine's physical memory in bytes, or SIZE_MAX when unknown
/// (src/core/kv_budget.cpp; the platform headers stay out of this header).
std::size_t physical_memory_bytes();
}  // namespace detail

/// The process-wide bound on the bytes of all live KvStorage objects (every
/// KV cache of the CPU backend, in all threads). Default: physical memory.
inline std::size_t kv_memory_limit() {
  const std::size_t l = detail::KvBudget::limit.load(std::memory_order_relaxed);
  if (l != 0) return l;
  static const std::size_t kDefault = detail::physical_memory_bytes();
  return kDefault;
}

/// Sets the process-wide KV memory bound; 0 restores the default. Caches
/// already allocated are kept when they exceed a lowered bound; the next
/// allocation fails instead.
inline void set_kv_memory_limit(std::size_t bytes) {
  detail::KvBudget::limit.store(bytes, std::memory_order_relaxed);
}

/// Bytes held by all live KvStorage objects of the process.
inline std::size_t kv_memory_in_use() { return detail::KvBudget::in_use.load(std::memory_order_relaxed); }

/// Bytes taken from the process-wide KV budget, returned when destroyed.
/// Move-only; an empty reservation holds nothing.
class KvReservation {
 public:
  KvReservation() = default;
  /// Takes `bytes` from the budget, or throws CapacityError naming `capacity`
  /// (the positions the bytes are for) and the limit.
  KvReservation(std::size_t bytes, std::size_t capacity) {
    const std::size_t limit = kv_memory_limit();
    std::size_t used = detail::KvBudget::in_use.load(std::memory_order_relaxed);
    do {
      if (bytes > limit || used > limit - bytes)
        throw CapacityError("KV cache of capacity " + std::to_string(capacity) + " needs " + std::to_string(bytes) +
                            " bytes; with " + std::to_string(used) + " bytes held by other caches that exceeds " +
                            "the KV memory limit of " + std::to_string(limit) +
                            " bytes (lower the capacity, free caches or raise set_kv_memory_limit)");
    } while (!detail::KvBudget::in_use.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    bytes_ = bytes;
  }
  /// Returns the bytes to the budget.
  ~KvReservation() { release(); }
  /// Takes over the other reservation's bytes; the other holds none.
  KvReservation(KvReservation&& o) noexcept : bytes_(std::exchange(o.bytes_, 0)) {}
  /// Returns this reservation's bytes, then takes over the other's.
  KvReservation& operator=(KvReservation&& o) noexcept {
    if (this != &o) {
      release();
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  KvReservation(const KvReservation&) = delete;
  KvReservation& operator=(const KvReservation&) = delete;

  /// Bytes held.
  std::size_t bytes() const { return bytes_; }
  /// Returns the bytes to the budget now.
  void release() noexcept {
    if (bytes_ != 0) detail::KvBudget::in_use.fetch_sub(std::exchange(bytes_, 0), std::memory_order_relaxed);
  }

 private:
  std::size_t bytes_ = 0;
};

}  // namespace assistgen
