// assistgen::mpi: the tensor-parallel group of tensor_parallel.hpp over MPI
// (Open MPI from Debian: libopenmpi-dev, openmpi-bin), for a target split
// across the ranks started by `mpirun`. Link assistgen::mpi. This header
// does not include mpi.h. What is split, what is sent and how to run across
// hosts: docs/distributed.md.
//
//   assistgen::mpi::Environment env(argc, argv);          // MPI_Init ... MPI_Finalize
//   cpu::LoadOptions o;  o.tensor_parallel = env.world();   // every rank
//   auto target = cpu::Transformer::load(dir, o);            // this rank's share
//   // ... every rank runs the same decoding loop; rank 0 prints.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "assistgen/tensor_parallel.hpp"

namespace assistgen::mpi {

/// Ranks of the job this process belongs to, as the launcher announces it in
/// the environment (Open MPI's OMPI_COMM_WORLD_SIZE, else PMI_SIZE /
/// PMIX_SIZE...); 0 when no launcher started this process. Reads no MPI
/// state, so it may be called before (or without) Environment.
std::size_t launcher_ranks();

/// What a group's collectives have cost this rank since the last reset.
struct Traffic {
  std::size_t calls = 0;  ///< collective calls
  std::size_t bytes = 0;  ///< bytes received (gathered or broadcast)
  double seconds = 0;     ///< wall time inside them (waiting for slower ranks included)
};

/// A RankGroup over an MPI communicator: all_gather is MPI_Allgatherv (bytes
/// copied, so the result does not depend on MPI's algorithm), broadcast is
/// MPI_Bcast, await_broadcast an MPI_Ibcast polled with sleeps (an idle
/// rank waits without spinning a core). Calls may come from any thread, one
/// at a time.
class Group : public RankGroup {
 public:
  /// Collective time and volume so far (see Traffic).
  virtual Traffic traffic() const = 0;
  /// Zeroes traffic().
  virtual void reset_traffic() = 0;
  /// Waits for every rank (MPI_Barrier).
  virtual void barrier() = 0;
};

/// MPI for the life of the object: MPI_Init_thread (MPI_THREAD_SERIALIZED)
/// at construction, MPI_Finalize at destruction. One per process. Throws
/// Error when MPI cannot start.
class Environment {
 public:
  /// Starts MPI with the program's arguments (MPI_Init_thread).
  Environment(int& argc, char**& argv);
  /// Ends MPI (MPI_Finalize); every rank must get here.
  ~Environment();
  Environment(const Environment&) = delete;             ///< One per process.
  Environment& operator=(const Environment&) = delete;  ///< One per process.

  /// MPI_COMM_WORLD as a group.
  std::shared_ptr<Group> world() const { return world_; }
  /// This process's rank in the world.
  std::size_t rank() const { return world_->rank(); }
  /// Ranks in the world.
  std::size_t size() const { return world_->size(); }

  /// Writes "rank R of N: `message`" to stderr and ends every rank of the
  /// job (MPI_Abort with `code`), so that ranks blocked in a collective
  /// waiting for this one do not hang. Does not return.
  [[noreturn]] void abort(const std::string& message, int code = 1) const;

 private:
  std::shared_ptr<Group> world_;
};

}  // namespace assistgen::mpi
