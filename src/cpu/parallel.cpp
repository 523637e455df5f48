// The worker pool of parallel.hpp.
#include "parallel.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace assistgen::cpu::detail {

namespace {

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
  ~Pool() {
    // A new generation with stop_ set: every worker wakes and returns.
    stop_.store(true, std::memory_order_relaxed);
    seq_.fetch_add(kGeneration, std::memory_order_release);
    seq_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(int threads, std::size_t n, void (*fn)(void*, std::size_t), void* ctx) {
    std::unique_lock lock(use_, std::try_to_lock);
    if (!lock.owns_lock()) return serial(n, fn, ctx);
    const std::size_t want = static_cast<std::size_t>(threads) - 1;
    try {
      while (workers_.size() < want && workers_.size() < kMaxWorkers)
        workers_.emplace_back([this, id = workers_.size(),
                               // The generation before this call's job: a new
                               // worker must not mistake that job for a past one.
                               seen = seq_.load(std::memory_order_relaxed)] { work(id, seen); });
    } catch (const std::system_error&) {  // no more threads: use the ones there are
    }
    const std::size_t helpers = std::min({want, workers_.size(), n - 1});
    if (helpers == 0) return serial(n, fn, ctx);
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    pending_.store(static_cast<int>(helpers), std::memory_order_relaxed);
    // The job's fields above are published by this release; the low bits
    // tell the workers how many of them take part.
    const std::uint64_t seq =
        (seq_.load(std::memory_order_relaxed) & ~(kGeneration - 1)) + kGeneration + helpers;
    seq_.store(seq, std::memory_order_release);
    seq_.notify_all();
    chunks();
    auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(done))
      for (int p; (p = pending_.load(std::memory_order_acquire)) != 0;)
        pending_.wait(p, std::memory_order_acquire);
  }

 private:
  static constexpr std::uint64_t kGeneration = 256;  // low 8 bits: helpers of the job
  static constexpr std::size_t kMaxWorkers = kGeneration - 1;

  static void serial(std::size_t n, void (*fn)(void*, std::size_t), void* ctx) {
    for (std::size_t i = 0; i < n; ++i) fn(ctx, i);
  }

  void chunks() {
    for (std::size_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n_;) fn_(ctx_, i);
  }

  void work(std::size_t id, std::uint64_t seen) {
    for (;;) {
      auto changed = [&] { return seq_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(changed))
        while (!changed()) seq_.wait(seen, std::memory_order_acquire);
      seen = seq_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_relaxed)) return;
      if (id >= (seen & (kGeneration - 1))) continue;  // not needed for this job
      chunks();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  std::mutex use_;  // one caller at a time owns the workers
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> seq_{0};
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> next_{0};
  std::atomic<int> pending_{0};
  void (*fn_)(void*, std::size_t) = nullptr;
  void* ctx_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace

void parallel_for(int threads, std::size_t n, void (*fn)(void*, std::size_t), void* ctx) {
  if (threads <= 1 || n <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(ctx, i);
    return;
  }
  static Pool pool;
  pool.run(threads, n, fn, ctx);
}

}  // namespace assistgen::cpu::detail
