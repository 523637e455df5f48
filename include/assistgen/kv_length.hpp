// KvLength: the length bookkeeping every KV cache of the library shares (the
// CPU backend's KvStorage, the HPU backend's StaticKvCache): positions held,
// positions it may hold, and the checks of a rollback, a kept branch and an
// append, with one wording of their errors. Rollback is only a length; what
// the positions hold is the owner's business.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "assistgen/error.hpp"

namespace assistgen {

/// Size and capacity of a KV cache, and the checks of changing the size.
/// Errors start with the name given at construction (e.g. "KV cache").
/// Moving leaves the source at size 0 and capacity 0.
class KvLength {
 public:
  /// Capacity 0 (a placeholder or moved-from cache).
  KvLength() = default;
  /// An empty cache of `capacity` positions; `name` (a string literal: it is
  /// not copied) starts every error message.
  KvLength(std::size_t capacity, const char* name) : capacity_(capacity), name_(name) {}
  /// Takes the other's length; the other is left empty, of capacity 0.
  KvLength(KvLength&& o) noexcept
      : size_(std::exchange(o.size_, 0)), capacity_(std::exchange(o.capacity_, 0)), name_(o.name_) {}
  /// Takes the other's length; the other is left empty, of capacity 0.
  KvLength& operator=(KvLength&& o) noexcept {
    if (this != &o) {
      size_ = std::exchange(o.size_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
      name_ = o.name_;
    }
    return *this;
  }
  /// A copy (for a deep copy of the cache that owns it).
  KvLength(const KvLength&) = default;
  KvLength& operator=(const KvLength&) = default;  ///< A copy.

  std::size_t size() const { return size_; }          ///< Positions held.
  std::size_t capacity() const { return capacity_; }  ///< Positions it may hold.

  /// Rollback to the first n positions. InvalidArgument when n > size().
  void truncate(std::size_t n) {
    if (n > size_)
      throw InvalidArgument(std::string(name_) + ": truncate(" + std::to_string(n) + ") beyond size " +
                            std::to_string(size_));
    size_ = n;
  }

  /// Checks keep(base, rows): base <= size() and rows strictly increasing,
  /// each in [base, size()). InvalidArgument naming the entry otherwise.
  void check_keep(std::size_t base, std::span<const std::uint32_t> rows) const {
    if (base > size_)
      throw InvalidArgument(std::string(name_) + ": keep: base " + std::to_string(base) + " beyond size " +
                            std::to_string(size_));
    for (std::size_t j = 0; j < rows.size(); ++j)
      if (rows[j] < base || rows[j] >= size_ || (j > 0 && rows[j] <= rows[j - 1]))
        throw InvalidArgument(std::string(name_) + ": keep: row " + std::to_string(rows[j]) + " (entry " +
                              std::to_string(j) + ") is not after the previous one within [base " +
                              std::to_string(base) + ", size " + std::to_string(size_) + ")");
  }
  /// The size after keep(base, rows) moved the rows into place (checked with
  /// check_keep() first).
  void kept(std::size_t base, std::size_t rows) { size_ = base + rows; }

  /// CapacityError (nothing changed) unless n more positions fit.
  void check_append(std::size_t n) const {
    if (n > capacity_ - size_)
      throw CapacityError(std::string(name_) + " full: appending " + std::to_string(n) + " positions to " +
                          std::to_string(size_) + " exceeds capacity " + std::to_string(capacity_));
  }
  /// n more positions written (after the owner wrote their rows); the same
  /// error as check_append().
  void commit(std::size_t n) {
    check_append(n);
    size_ += n;
  }

 private:
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  const char* name_ = "KV cache";
};

}  // namespace assistgen
