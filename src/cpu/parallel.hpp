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

template <class F>
void parallel_for(int threads, std::size_t n, F&& fn) {
  parallel_for(
      threads, n, [](void* c, std::size_t i) { (*static_cast<std::remove_reference_t<F>*>(c))(i); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace assistgen::cpu::detail
