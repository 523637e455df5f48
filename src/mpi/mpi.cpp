// assistgen::mpi (include/assistgen/mpi/mpi.hpp): RankGroup over MPI.
#include "assistgen/mpi/mpi.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "assistgen/error.hpp"

namespace assistgen::mpi {

namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string("MPI: ") + what +
              " failed: " + std::string(text, static_cast<std::size_t>(len)));
}

int as_int(std::size_t v, const char* what) {
  if (v > static_cast<std::size_t>(INT_MAX))
    throw UnsupportedError(std::string("MPI: ") + what + " of " + std::to_string(v) +
                           " bytes is more than one MPI call carries (INT_MAX)");
  return static_cast<int>(v);
}

class CommGroup final : public Group {
 public:
  explicit CommGroup(MPI_Comm comm) : comm_(comm) {
    int r = 0, s = 0;
    check(MPI_Comm_rank(comm_, &r), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &s), "MPI_Comm_size");
    rank_ = static_cast<std::size_t>(r);
    size_ = static_cast<std::size_t>(s);
    counts_.resize(size_);
    displs_.resize(size_);
  }
  std::size_t rank() const override { return rank_; }
  std::size_t size() const override { return size_; }

  void all_gather(const void* mine, std::span<const std::size_t> counts, void* all) override {
    if (counts.size() != size_)
      throw InvalidArgument("mpi::Group::all_gather: " + std::to_string(counts.size()) +
                            " counts for " + std::to_string(size_) + " ranks");
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t off = 0;
    for (std::size_t r = 0; r < size_; ++r) {
      counts_[r] = as_int(counts[r], "a gathered block");
      displs_[r] = as_int(off, "a gather");
      off += counts[r];
    }
    check(MPI_Allgatherv(mine, counts_[rank_], MPI_BYTE, all, counts_.data(), displs_.data(),
                         MPI_BYTE, comm_),
          "MPI_Allgatherv");
    account(t0, off);
  }

  void broadcast(void* data, std::size_t bytes, std::size_t root) override {
    const auto t0 = std::chrono::steady_clock::now();
    check(MPI_Bcast(data, as_int(bytes, "a broadcast"), MPI_BYTE, static_cast<int>(root), comm_),
          "MPI_Bcast");
    account(t0, bytes);
  }

  // MPI_Ibcast polled with MPI_Test: a blocking MPI_Bcast spins a core
  // (Open MPI polls even when it yields), hours long for an idle server's
  // other ranks. Short waits (the next round of a busy server) are polled
  // for 200 us, longer ones sleep between polls, up to 1 ms: at most that
  // much latency when the first request after a pause arrives.
  void await_broadcast(void* data, std::size_t bytes, std::size_t root) override {
    using namespace std::chrono;
    const auto t0 = steady_clock::now();
    MPI_Request request;
    check(MPI_Ibcast(data, as_int(bytes, "a broadcast"), MPI_BYTE, static_cast<int>(root), comm_,
                     &request),
          "MPI_Ibcast");
    auto nap = microseconds(20);
    for (;;) {
      int done = 0;
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) break;
      if (steady_clock::now() - t0 < microseconds(200)) continue;
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, duration_cast<microseconds>(milliseconds(1)));
    }
    account(t0, bytes);
  }

  Traffic traffic() const override { return traffic_; }
  void reset_traffic() override { traffic_ = {}; }
  void barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier"); }

 private:
  void account(std::chrono::steady_clock::time_point t0, std::size_t bytes) {
    ++traffic_.calls;
    traffic_.bytes += bytes;
    traffic_.seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  MPI_Comm comm_;
  std::size_t rank_ = 0, size_ = 1;
  std::vector<int> counts_, displs_;
  Traffic traffic_;
};

}  // namespace

std::size_t launcher_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"}) {
    if (const char* v = std::getenv(var)) {
      char* end = nullptr;
      const unsigned long n = std::strtoul(v, &end, 10);
      if (end != v && *end == '\0') return static_cast<std::size_t>(n);
    }
  }
  return 0;
}

Environment::Environment(int& argc, char**& argv) {
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    throw UnsupportedError(
        "MPI: this MPI library provides thread level " + std::to_string(provided) +
        ", below MPI_THREAD_SERIALIZED (forward passes may run on any one thread)");
  }
  // Errors come back as return codes (turned into exceptions), not aborts
  // without a word of which call failed.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  world_ = std::make_shared<CommGroup>(MPI_COMM_WORLD);
}

Environment::~Environment() {
  world_.reset();
  MPI_Finalize();
}

void Environment::abort(const std::string& message, int code) const {
  std::fprintf(stderr, "rank %zu of %zu: %s\n", rank(), size(), message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this is for the compiler
}

}  // namespace assistgen::mpi
