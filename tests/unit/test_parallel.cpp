// The CPU backend's worker pool (src/cpu/parallel.hpp, private: included by
// path): every index runs exactly once, for any thread count and any number
// of back-to-back calls (a lost wake-up would hang this test), also when
// several threads call at once (the pool's owner runs in parallel, the others
// serially), with calls far enough apart that the workers fall asleep, and
// with chunks long enough that the work is shared.
// Part of the ThreadSanitizer stage (scripts/sanitize.sh).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "../../src/cpu/parallel.hpp"

using assistgen::cpu::detail::parallel_for;

namespace {

// Runs parallel_for and checks that each index in [0, n) ran once.
bool each_once(int threads, std::size_t n) {
  std::vector<std::atomic<int>> hits(n);
  parallel_for(threads, n, [&](std::size_t i) { hits[i].fetch_add(1, std::memory_order_relaxed); });
  for (auto& h : hits)
    if (h.load() != 1) return false;
  return true;
}

}  // namespace

TEST_CASE("parallel_for runs every index exactly once", "[parallel]") {
  for (int threads : {0, 1, 2, 3, 8})
    for (std::size_t n : {0, 1, 2, 3, 7, 16, 100}) {
      INFO("threads " << threads << " n " << n);
      REQUIRE(each_once(threads, n));
    }
}

TEST_CASE("parallel_for survives many back-to-back calls and calls after the workers slept",
          "[parallel]") {
  for (int call = 0; call < 5000; ++call) REQUIRE(each_once(2 + call % 3, 1 + call % 9));
  for (int call = 0; call < 5; ++call) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // longer than the workers spin
    REQUIRE(each_once(4, 64));
  }
}

TEST_CASE("parallel_for from several threads at once", "[parallel]") {
  constexpr int kCallers = 4;
  std::atomic<int> failures{0};
  std::barrier start(kCallers);
  {
    std::vector<std::jthread> callers;
    for (int t = 0; t < kCallers; ++t)
      callers.emplace_back([&] {
        start.arrive_and_wait();
        for (int call = 0; call < 500; ++call)
          if (!each_once(3, 1 + static_cast<std::size_t>(call % 13))) failures.fetch_add(1);
      });
  }
  CHECK(failures.load() == 0);
}

TEST_CASE("parallel_for's work is visible to the caller when it returns", "[parallel]") {
  std::vector<std::uint64_t> out(4096);
  for (std::uint64_t round = 1; round <= 200; ++round) {
    parallel_for(2, out.size() / 64, [&](std::size_t c) {
      for (std::size_t i = c * 64; i < (c + 1) * 64; ++i) out[i] = round * i;
    });
    for (std::size_t i = 0; i < out.size(); ++i) REQUIRE(out[i] == round * i);
  }
}

TEST_CASE("parallel_for shares long chunks between threads", "[parallel]") {
  // Chunks of about 0.2 ms: the workers wake well before the caller is done,
  // so the work is shared (a worker that is late only finds nothing left).
  std::mutex m;
  std::set<std::thread::id> seen;
  for (int call = 0; call < 50 && seen.size() < 2; ++call) {
    std::vector<std::atomic<int>> hits(16);
    parallel_for(2, hits.size(), [&](std::size_t i) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (std::chrono::steady_clock::now() < until) {
      }
      hits[i].fetch_add(1);
      const std::lock_guard lock(m);
      seen.insert(std::this_thread::get_id());
    });
    for (auto& h : hits) REQUIRE(h.load() == 1);
  }
  CHECK(seen.size() == 2);
}

#ifndef __SANITIZE_THREAD__  // TSan's runtime does not support fork() in a threaded process
TEST_CASE("parallel_for in a child of fork() runs on the calling thread", "[parallel]") {
  REQUIRE(each_once(2, 64));  // the workers exist in this process
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(each_once(2, 64) && each_once(3, 7) ? 0 : 1);  // no workers here
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
#endif

TEST_CASE("StreamChunks covers the units once, a long range per thread first", "[parallel]") {
  using assistgen::cpu::detail::StreamChunks;
  for (std::size_t threads : {1, 2, 3, 8})
    for (std::size_t units : {0, 1, 2, 3, 5, 9, 24, 40, 128, 1536}) {
      INFO("threads " << threads << " units " << units);
      const StreamChunks chunks(units, threads);
      REQUIRE(chunks.count() >= threads);
      std::size_t next = 0, head = 0;
      for (std::size_t c = 0; c < chunks.count(); ++c) {
        const auto [u0, u1] = chunks[c];
        REQUIRE(u0 == next);  // in order, no gap, no overlap
        REQUIRE(u1 >= u0);
        if (c >= threads) CHECK(u1 > u0);  // the tail has no empty chunk
        if (c < threads) head += u1 - u0;
        next = u1;
      }
      CHECK(next == units);
      // The head ranges: 90% of the units (all of them when that is fewer
      // than one a thread), shared evenly.
      CHECK(head == std::max(std::min(units, threads), units * StreamChunks::kStreamShare / 100));
      for (std::size_t c = 0; c < threads; ++c) {
        const auto [u0, u1] = chunks[c];
        CHECK(u1 - u0 + 1 >= head / threads);
        CHECK(u1 - u0 <= head / threads + 1);
      }
      // The tail: at most about two chunks a thread.
      CHECK(chunks.count() - threads <= 2 * threads);
    }
}
