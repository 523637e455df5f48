// ExclusiveUseFlag: detects two threads using one per-sequence object (a
// cache, a decoder) at once, in every build type. A loaded model is immutable
// and may be shared by any number of threads, each with its own caches and
// decoders; a cache or a decoder serves one sequence on one thread at a time,
// and using one from two threads at once is the caller's error, caught here.
#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <thread>

#include "assistgen/error.hpp"

namespace assistgen {

/// Detects two threads using one per-sequence object (a cache, a decoder) at
/// once. Hold it for the duration of each use; an overlapping second use
/// throws InvalidArgument. The holding thread itself passes check_free(), so
/// code that holds the flag may call the checked operations. A moved-to flag
/// starts free (moving an object that another thread is using is a race of
/// its own).
class ExclusiveUseFlag {
 public:
  ExclusiveUseFlag() = default;
  ExclusiveUseFlag(ExclusiveUseFlag&&) noexcept {}                            ///< A new, free flag.
  ExclusiveUseFlag& operator=(ExclusiveUseFlag&&) noexcept { return *this; }  ///< Keeps this flag's state.
  ExclusiveUseFlag(const ExclusiveUseFlag&) = delete;
  ExclusiveUseFlag& operator=(const ExclusiveUseFlag&) = delete;

  /// Marks the flag busy until destroyed. The acquire/release pair also
  /// orders a hand-over between threads (one use after the other).
  class [[nodiscard]] Hold {
   public:
    /// Throws InvalidArgument naming `user` when another thread holds the
    /// flag. Re-entrant: a Hold taken by the thread that already holds the
    /// flag (a decoder holding it around a backend's forward) is a no-op.
    Hold(ExclusiveUseFlag& flag, std::string_view user) {
      if (flag.busy_.load(std::memory_order_acquire) &&
          flag.owner_.load(std::memory_order_relaxed) == std::this_thread::get_id())
        return;  // nested: the outer Hold releases
      if (flag.busy_.exchange(true, std::memory_order_acquire))
        throw InvalidArgument(std::string(user) +
                              ": already in use by another thread; a cache or decoder serves one "
                              "sequence on one thread at a time (use one per thread)");
      flag.owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
      flag_ = &flag;
    }
    ~Hold() {
      if (!flag_) return;
      flag_->owner_.store(std::thread::id(), std::memory_order_relaxed);
      flag_->busy_.store(false, std::memory_order_release);
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    ExclusiveUseFlag* flag_ = nullptr;  // null for a nested Hold
  };

  /// Throws InvalidArgument, naming `user`, while another thread holds the flag.
  void check_free(std::string_view user) const {
    if (busy_.load(std::memory_order_acquire) &&
        owner_.load(std::memory_order_relaxed) != std::this_thread::get_id())
      throw InvalidArgument(std::string(user) +
                            ": the cache is in use by another thread (use one cache or decoder per thread)");
  }
  /// Whether a Hold is alive.
  bool busy() const { return busy_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> busy_{false};
  std::atomic<std::thread::id> owner_{};  // the holder; id() while free or being taken
};

}  // namespace assistgen
