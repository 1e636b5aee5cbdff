// Collectives over MPI on host tensors: tensor parallelism of the CPU backend (and CI).
#ifndef CHAI_PARALLEL_MPI_COMMUNICATOR_H_
#define CHAI_PARALLEL_MPI_COMMUNICATOR_H_

// The C API only (the top-level CMakeLists defines OMPI_SKIP_MPICXX for every target).
#include <mpi.h>

#include <memory>

#include "parallel/communicator.h"

namespace chai {

// Works on a duplicate of `comm` (its messages never mix with the caller's), with
// MPI_ERRORS_RETURN so that MPI failures come back as absl errors. MPI must be initialised
// (see Bootstrap); calling this without it is a programmer error and aborts. Destroy the
// communicator before Finalize().
//
// All tensors must be on the host. AllReduceSum: fp32, i32, i64 natively; fp16/bf16 summed
// in fp32 and rounded once. AllGatherColumns: any dtype; `local` is [..., cols] (leading
// dimensions are rows), `out` is [..., cols * size] and is allocated when undefined.
// Broadcast: raw bytes of any dtype.
std::unique_ptr<Communicator> MakeMpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace chai

#endif  // CHAI_PARALLEL_MPI_COMMUNICATOR_H_
