// Tensor parallelism: a target split over the ranks of a group (processes,
// usually on several machines) that run the same calls in lockstep. This
// header is the backend's view of the group, with no transport in it: the
// MPI implementation is assistgen::mpi (include/assistgen/mpi/mpi.hpp), and a
// test may implement RankGroup over anything else. How a model is split, why
// it gives the bits of one rank, and what it sends: docs/distributed.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace assistgen {

/// The ranks of a tensor-parallel group, from the view of one of them. Every
/// rank calls the collectives in the same order with matching sizes (the
/// model's forward does); a rank that stops calling them blocks the others
/// until the transport aborts the group (MPI: MPI_Abort on an error).
class RankGroup {
 public:
  virtual ~RankGroup() = default;  ///< Destroys the group's view (the transport's own cleanup).
  /// This process's rank, 0 .. size() - 1.
  virtual std::size_t rank() const = 0;
  /// Ranks in the group.
  virtual std::size_t size() const = 0;
  /// Every rank passes its `counts[rank()]` bytes at `mine`; `all` receives
  /// the blocks of ranks 0, 1, ... concatenated (sum of counts bytes). The
  /// bytes are copied, never combined, so the result is the same bits
  /// whatever the transport's algorithm.
  virtual void all_gather(const void* mine, std::span<const std::size_t> counts, void* all) = 0;
  /// Rank `root`'s `bytes` bytes at `data` into every rank's `data`.
  virtual void broadcast(void* data, std::size_t bytes, std::size_t root) = 0;
  /// broadcast() of a message the root may send much later than the others
  /// arrive (an idle server's next round, ServerOptions::ranks), so the
  /// transport may wait for it without keeping a core busy. Every rank calls
  /// it where the others do; it does not match a broadcast() call.
  /// Default: broadcast().
  virtual void await_broadcast(void* data, std::size_t bytes, std::size_t root) {
    broadcast(data, bytes, root);
  }
};

/// The contiguous share of `total` items (heads, columns, vocabulary rows)
/// of rank `rank` of `ranks`: [total * rank / ranks, total * (rank + 1) / ranks).
struct Share {
  std::size_t begin = 0;  ///< first item of the share
  std::size_t end = 0;    ///< one past its last item
  /// Items in the share.
  std::size_t size() const { return end - begin; }
};
/// Rank `rank`'s Share of `total` items split over `ranks` (ranks > 0).
inline Share share_of(std::size_t total, std::size_t rank, std::size_t ranks) {
  return {total * rank / ranks, total * (rank + 1) / ranks};
}

}  // namespace assistgen
