#error "a public assistgen header includes mpi.h: Open MPI is a private dependency of assistgen::mpi (docs/distributed.md)"
