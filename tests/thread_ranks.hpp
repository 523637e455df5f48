// Ranks that are threads of one process: a RankGroup (tensor_parallel.hpp)
// for tests of code that runs on every rank of a split target (the split
// forward pass, the server's lockstep), without MPI. Each collective waits
// until every rank has called it, copies the blocks it needs straight from
// the other ranks' buffers, and returns once every rank has copied.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "assistgen/tensor_parallel.hpp"

namespace test_ranks {

/// `size` ranks; rank(r) is the group as rank r sees it (one thread each).
class ThreadRanks {
 public:
  explicit ThreadRanks(std::size_t size) : shared_(std::make_shared<Shared>(size)) {}
  std::shared_ptr<assistgen::RankGroup> rank(std::size_t r) const {
    return std::make_shared<Rank>(shared_, r);
  }

 private:
  struct Shared {
    explicit Shared(std::size_t n) : size(n), posted(n) {}
    std::mutex m;
    std::condition_variable cv;
    std::size_t size;
    std::vector<const void*> posted;  // each rank's buffer in the collective now
    std::size_t arrived = 0, copied = 0;
    bool copying = false;  // every rank has arrived; buffers may be read
  };

  class Rank final : public assistgen::RankGroup {
   public:
    Rank(std::shared_ptr<Shared> s, std::size_t r) : s_(std::move(s)), rank_(r) {}
    std::size_t rank() const override { return rank_; }
    std::size_t size() const override { return s_->size; }
    void all_gather(const void* mine, std::span<const std::size_t> counts, void* all) override {
      collective(mine, [&](const std::vector<const void*>& in) {
        auto* out = static_cast<unsigned char*>(all);
        for (std::size_t r = 0; r < in.size(); out += counts[r++])
          std::memcpy(out, in[r], counts[r]);
      });
    }
    void broadcast(void* data, std::size_t bytes, std::size_t root) override {
      collective(data, [&](const std::vector<const void*>& in) {
        if (rank_ != root) std::memcpy(data, in[root], bytes);
      });
    }

   private:
    template <class Copy>
    void collective(const void* mine, Copy copy) {
      Shared& s = *s_;
      std::unique_lock lock(s.m);
      s.cv.wait(lock, [&] { return !s.copying; });  // the previous one has ended
      s.posted[rank_] = mine;
      if (++s.arrived == s.size) {
        s.copying = true;
        s.cv.notify_all();
      } else {
        s.cv.wait(lock, [&] { return s.copying; });
      }
      lock.unlock();
      copy(s.posted);
      lock.lock();
      if (++s.copied == s.size) {
        s.arrived = s.copied = 0;
        s.copying = false;
        s.cv.notify_all();
      } else {
        s.cv.wait(lock, [&] { return !s.copying; });
      }
    }
    std::shared_ptr<Shared> s_;
    std::size_t rank_;
  };

  std::shared_ptr<Shared> shared_;
};

}  // namespace test_ranks
