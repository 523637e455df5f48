// The worker pool of parallel.hpp.
#include "parallel.hpp"

#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace assistgen::cpu::detail {

namespace {

std::atomic<std::size_t> g_jobs{0};
std::atomic<std::size_t> g_helper_chunks{0};
std::atomic<bool> g_force_split{false};

// How long a worker (and the caller, waiting for the workers) spins before
// sleeping. A forward pass's calls come well within this of each other.
constexpr std::chrono::microseconds kSpin{100};

// Spins on pred() with pause instructions for up to kSpin; true if it held.
template <class Pred>
bool spin_until(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      _mm_pause();
    }
    if (std::chrono::steady_clock::now() >= until) return pred();
  }
}

class Pool {
 public:
  void run(int threads, std::size_t n, void (*fn)(void*, std::size_t), void* ctx) {
    // In a child of fork() the workers were not copied: run serially there.
    if (::getpid() != owner_) return serial(n, fn, ctx);
    std::unique_lock lock(use_, std::try_to_lock);
    if (!lock.owns_lock()) return serial(n, fn, ctx);
    const std::size_t want = static_cast<std::size_t>(threads) - 1;
    try {
      while (workers_.size() < want && workers_.size() < kMaxWorkers)
        workers_.emplace_back([this, id = workers_.size(),
                               // The job before this call's: a new worker must
                               // not mistake this call's job for a past one.
                               seen = seq_.load(std::memory_order_relaxed)] { work(id, seen); });
    } catch (const std::exception&) {  // no more threads: use the ones there are
    }
    const std::size_t helpers = std::min({want, workers_.size(), n - 1});
    if (helpers == 0) return serial(n, fn, ctx);
    g_jobs.fetch_add(1, std::memory_order_relaxed);
    ++job_;
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    state_.store(job_ << kJobShift, std::memory_order_relaxed);
    // Everything above is published by this release; its low bits tell the
    // workers how many of them are asked to help.
    seq_.store(job_ << 8 | helpers, std::memory_order_release);
    seq_.notify_all();
    chunks();
    // Close the job: a worker that has not entered it by now (asleep, or
    // descheduled on a busy machine) stays out, so only the ones already
    // working are waited for.
    state_.fetch_or(kClosed, std::memory_order_acq_rel);
    auto idle = [&] { return (state_.load(std::memory_order_acquire) & kActive) == 0; };
    if (!spin_until(idle))
      for (std::uint64_t st; ((st = state_.load(std::memory_order_acquire)) & kActive) != 0;)
        state_.wait(st, std::memory_order_acquire);
  }

 private:
  static constexpr std::size_t kMaxWorkers = 255;  // helpers fit the low 8 bits of seq_
  static constexpr unsigned kJobShift = 16;
  static constexpr std::uint64_t kClosed = std::uint64_t{1} << 15;
  static constexpr std::uint64_t kActive = kClosed - 1;  // workers inside the job

  static void serial(std::size_t n, void (*fn)(void*, std::size_t), void* ctx) {
    for (std::size_t i = 0; i < n; ++i) fn(ctx, i);
  }

  // Runs chunks until none is left; returns how many this thread ran.
  std::size_t chunks() {
    std::size_t done = 0;
    for (std::size_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n_; ++done) fn_(ctx_, i);
    return done;
  }

  // Enters job `job` unless it is closed or already replaced by a newer one.
  bool enter(std::uint64_t job) {
    std::uint64_t st = state_.load(std::memory_order_acquire);
    while ((st >> kJobShift) == (job & kJobMask) && (st & kClosed) == 0)
      if (state_.compare_exchange_weak(st, st + 1, std::memory_order_acq_rel)) return true;
    return false;
  }

  void work(std::size_t id, std::uint64_t seen) {
    for (;;) {
      auto changed = [&] { return seq_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(changed))
        while (!changed()) seq_.wait(seen, std::memory_order_acquire);
      seen = seq_.load(std::memory_order_acquire);
      if (id >= (seen & 0xff) || !enter(seen >> 8)) continue;
      const std::size_t done = chunks();
      if (done) g_helper_chunks.fetch_add(done, std::memory_order_relaxed);
      if ((state_.fetch_sub(1, std::memory_order_acq_rel) & kActive) == 1) state_.notify_all();
    }
  }

  static constexpr std::uint64_t kJobMask = (std::uint64_t{1} << (64 - kJobShift)) - 1;

  std::mutex use_;  // one caller at a time owns the workers
  std::vector<std::thread> workers_;
  const ::pid_t owner_ = ::getpid();
  std::uint64_t job_ = 0;                // jobs posted (the owner's count)
  std::atomic<std::uint64_t> seq_{0};    // job << 8 | helpers asked
  std::atomic<std::uint64_t> state_{0};  // job << kJobShift | closed | workers inside
  std::atomic<std::size_t> next_{0};     // the next chunk to hand out
  void (*fn_)(void*, std::size_t) = nullptr;
  void* ctx_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace

ParallelStats parallel_stats() {
  return {g_jobs.load(std::memory_order_relaxed), g_helper_chunks.load(std::memory_order_relaxed)};
}

void force_split(bool on) { g_force_split.store(on, std::memory_order_relaxed); }

bool split_forced() { return g_force_split.load(std::memory_order_relaxed); }

void parallel_for(int threads, std::size_t n, void (*fn)(void*, std::size_t), void* ctx) {
  if (threads <= 1 || n <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(ctx, i);
    return;
  }
  // Never destroyed: static destructors elsewhere may still run forward
  // passes at exit, and the workers, asleep by then, end with the process.
  static Pool* const pool = new Pool;
  pool->run(threads, n, fn, ctx);
}

}  // namespace assistgen::cpu::detail
