// Collectives over NCCL on device tensors: tensor parallelism of the CUDA backend.
//
// Defined only in CUDA builds (nccl_communicator.cc is compiled when CHAI_WITH_CUDA is set);
// callers guard their use with #ifdef CHAI_WITH_CUDA. This header needs no CUDA headers.
#ifndef CHAI_PARALLEL_NCCL_COMMUNICATOR_H_
#define CHAI_PARALLEL_NCCL_COMMUNICATOR_H_

// The C API only: the C++ bindings of Open MPI / MPICH need a library chai does not link.
#include <mpi.h>

#include <memory>

#include "absl/status/statusor.h"
#include "parallel/bootstrap.h"
#include "parallel/communicator.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace chai {

// Picks this rank's GPU with ChooseDevice (from the group's device peers and
// cudaGetDeviceCount) and makes it current (cudaSetDevice). Call before any CUDA allocation.
absl::StatusOr<int> SelectCudaDevice(const ProcessGroup& group);

// Rank 0 of `comm` makes an ncclUniqueId, MPI broadcasts it, and every rank joins with
// ncclCommInitRank on the current CUDA device (collective over `comm`; without MPI
// initialised it makes a one-rank communicator). Every operation is enqueued on `stream`
// and is asynchronous with respect to the host, except Barrier, which waits for the stream.
// Tensors must be on the device: AllReduceSum takes fp32, fp16, bf16, i32, i64; AllGatherColumns
// and Broadcast any dtype. AllGatherColumns allocates `out` on the device when undefined.
//
// Small all-reduces (fp32/fp16/bf16 up to kIpcAllReduceDefaultMaxBytes, or
// CHAI_IPC_ALLREDUCE_MAX_BYTES) go through the one-shot IPC all-reduce of ipc_allreduce.h when
// every rank can use it (one host, peer access between all GPUs; CHAI_IPC_ALLREDUCE=0 turns it
// off). It sums in fp32 and rounds once, so fp16/bf16 results can differ from NCCL's (which
// rounds after every addition) by that rounding; larger messages and integers go through NCCL.
absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(MPI_Comm comm,
                                                                   CUstream_st* stream);

}  // namespace chai

#endif  // CHAI_PARALLEL_NCCL_COMMUNICATOR_H_
