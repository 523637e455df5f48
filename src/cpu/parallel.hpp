// Private to the CPU backend: the worker threads that run a matmul's column
// chunks (and attention's tasks) in parallel.
//
// A forward pass makes about four parallel calls per layer, each 0.1-1 ms
// long on a TinyLlama-sized model. Waking a sleeping thread costs tens of
// microseconds on a virtual machine, which is a fifth of such a call, and
// OpenMP's only portable alternative, OMP_WAIT_POLICY=active, spins without
// bound and starves other processes on a shared machine. These workers spin
// for a short, bounded time after each call (kSpin) and then sleep: back to
// back calls of one forward pass find them awake; an idle process leaves them
// asleep.
//
// Chunks are handed out dynamically and every chunk is computed by the same
// code whichever thread takes it, so results do not depend on the thread
// count or on scheduling.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>

namespace assistgen::cpu::detail {

/// Calls fn(i) for every i in [0, n), each exactly once, on up to `threads`
/// threads (the calling thread included) and returns when all are done. fn
/// must not throw. Serial when threads <= 1 or n <= 1, and when another
/// thread's call is using the workers (concurrent forward passes then run
/// side by side, each on its own thread, instead of waiting).
void parallel_for(int threads, std::size_t n, void (*fn)(void*, std::size_t), void* ctx);

/// What parallel_for has done since the process started, for tests that must
/// show that work really was split (counters only grow; relaxed atomics).
struct ParallelStats {
  std::size_t jobs = 0;           ///< calls handed to the workers (helpers asked for)
  std::size_t helper_chunks = 0;  ///< indices fn(i) run by a worker, not the caller
};
ParallelStats parallel_stats();

/// Tests only: when on, the CPU backend splits every matmul, attention and
/// activation over its threads however small the work is (the size
/// thresholds that normally keep small calls serial are ignored), so
/// invariance tests on small models exercise the split. Off by default.
void force_split(bool on);
/// Whether force_split is on.
bool split_forced();

/// How a matmul's `units` (its blocks of 32 output columns, each a
/// contiguous slice of the packed weights) split into chunks for
/// parallel_for on `threads` threads. The first `threads` chunks share
/// kStreamShare of the units evenly, so each thread streams one long
/// contiguous range that the prefetchers follow; the remaining units come in
/// chunks of about a 1/(2 threads) part of them, taken by whichever thread
/// is done first (on a shared machine a thread that lost its core holds back
/// no more than its own range). Measured on an AMD EPYC (Zen 4), 2 threads,
/// the demo target's 29 matmuls with 1-16 rows (bf16), each split interleaved
/// with the next in one process: 5-15% less time than 8 equal chunks per
/// thread, whose starts each restart a stream (the same bits either way).
class StreamChunks {
 public:
  static constexpr std::size_t kStreamShare = 90;  ///< percent of the units

  StreamChunks(std::size_t units, std::size_t threads)
      : units_(units), threads_(threads == 0 ? 1 : threads) {
    head_ = std::max(std::min(units_, threads_), units_ * kStreamShare / 100);
    const std::size_t tail = units_ - head_;
    step_ = std::max<std::size_t>(1, (tail + 2 * threads_ - 1) / (2 * threads_));
    count_ = threads_ + (tail + step_ - 1) / step_;
  }
  /// Chunks to hand to parallel_for.
  std::size_t count() const { return count_; }
  /// Units [first, second) of chunk c (empty for a head chunk when there are
  /// fewer units than threads).
  std::pair<std::size_t, std::size_t> operator[](std::size_t c) const {
    if (c < threads_) return {head_ * c / threads_, head_ * (c + 1) / threads_};
    const std::size_t b = head_ + (c - threads_) * step_;
    return {b, std::min(units_, b + step_)};
  }

 private:
  std::size_t units_, threads_, head_ = 0, step_ = 1, count_ = 0;
};

template <class F>
void parallel_for(int threads, std::size_t n, F&& fn) {
  parallel_for(
      threads, n, [](void* c, std::size_t i) { (*static_cast<std::remove_reference_t<F>*>(c))(i); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace assistgen::cpu::detail
