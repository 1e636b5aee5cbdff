// All-reduce latency, NCCL vs the one-shot IPC all-reduce, for message sizes 2 KiB .. 1 MiB.
// Run under mpirun with one rank per GPU; rank 0 prints a markdown table (the slowest rank's
// time for each cell):
//   mpirun -np 4 -x NCCL_NVLS_ENABLE=0 build/benchmarks/allreduce_bench [fp16|bf16|fp32]
// "eager": kLoop back-to-back calls between two CUDA events, each call launched from the host.
// "graph": kGraphCalls calls captured in a CUDA graph (as a decode step is), replayed kReplays
// times between the events; this is the number the decode step sees.
#include <cstdio>
#include <cstdlib>
#include <string>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <functional>
#include <vector>

#include "kernels/dtype.h"
#include "parallel/bootstrap.h"
#include "parallel/ipc_allreduce.h"
#include "parallel/nccl_communicator.h"

namespace chai {
namespace {

constexpr int kLoop = 200;
constexpr int kGraphCalls = 50;
constexpr int kReplays = 4;
constexpr size_t kMaxBytes = size_t{1} << 20;

void Check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  std::fprintf(stderr, "allreduce_bench: %s: %s\n", what, cudaGetErrorString(err));
  MPI_Abort(MPI_COMM_WORLD, 1);
}

void CheckNccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return;
  std::fprintf(stderr, "allreduce_bench: %s: %s\n", what, ncclGetErrorString(r));
  MPI_Abort(MPI_COMM_WORLD, 1);
}

// Microseconds per call of `call` (which enqueues one all-reduce on `stream`): eager or graphed.
// Ranks start together (stream idle, MPI barrier); the result is the maximum over ranks.
double MicrosPerCall(const std::function<void()>& call, cudaStream_t stream, bool graphed) {
  for (int i = 0; i < 5; ++i) call();  // warm-up
  cudaGraphExec_t exec = nullptr;
  cudaGraph_t graph = nullptr;
  if (graphed) {
    Check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    for (int i = 0; i < kGraphCalls; ++i) call();
    Check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
    Check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    Check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");  // warm-up
  }
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "cudaEventCreate");
  Check(cudaEventCreate(&stop), "cudaEventCreate");
  Check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  MPI_Barrier(MPI_COMM_WORLD);
  Check(cudaEventRecord(start, stream), "cudaEventRecord");
  if (graphed) {
    for (int r = 0; r < kReplays; ++r) Check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
  } else {
    for (int i = 0; i < kLoop; ++i) call();
  }
  Check(cudaEventRecord(stop, stream), "cudaEventRecord");
  Check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0;
  Check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (graphed) {
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  double us = ms * 1e3 / (graphed ? kGraphCalls * kReplays : kLoop), worst = us;
  MPI_Allreduce(&us, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}

int Run(int argc, char** argv) {
  absl::StatusOr<ProcessGroup> group = Bootstrap();
  if (!group.ok()) {
    std::fprintf(stderr, "allreduce_bench: %s\n", std::string(group.status().message()).c_str());
    return 1;
  }
  const bool root = group->world_rank == 0;
  if (group->world_size < 2) {
    std::fprintf(stderr, "allreduce_bench: run under mpirun with 2 or more ranks (one per GPU)\n");
    Finalize();
    return 1;
  }
  absl::StatusOr<DType> dtype = ParseDType(argc > 1 ? argv[1] : "fp16");
  absl::StatusOr<int> device = SelectCudaDevice(*group);
  if (!dtype.ok() || !device.ok()) {
    if (root) {
      std::fprintf(stderr, "allreduce_bench: %s\n",
                   std::string((!dtype.ok() ? dtype.status() : device.status()).message()).c_str());
    }
    Finalize();
    return 1;
  }
  cudaStream_t stream;
  Check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  ncclUniqueId id;
  if (root) CheckNccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t nccl;
  CheckNccl(ncclCommInitRank(&nccl, group->world_size, id, group->world_rank), "ncclCommInitRank");
  absl::StatusOr<IpcAllReduce::Setup> setup = IpcAllReduce::Create(MPI_COMM_WORLD, kMaxBytes);
  if (!setup.ok()) {
    std::fprintf(stderr, "allreduce_bench: %s\n", std::string(setup.status().message()).c_str());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  IpcAllReduce* ipc = setup->ipc.get();
  const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
  if (root) {
    char name[256] = {0};
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, *device) == cudaSuccess) std::snprintf(name, sizeof(name), "%s", prop.name);
    std::printf("all-reduce latency, %d x %s, %s, NCCL_NVLS_ENABLE=%s; us per call, slowest rank\n", group->world_size,
                name, DTypeName(*dtype), nvls != nullptr ? nvls : "(unset)");
    if (ipc == nullptr) std::printf("IPC one-shot unavailable: %s\n", setup->reason.c_str());
    std::printf("| bytes | NCCL eager | IPC eager | NCCL graph | IPC graph | graph speedup |\n");
    std::printf("|---|---|---|---|---|---|\n");
  }
  void* buf = nullptr;
  Check(cudaMalloc(&buf, kMaxBytes), "cudaMalloc");
  Check(cudaMemset(buf, 0, kMaxBytes), "cudaMemset");  // zeros: repeated in-place sums stay finite
  const ncclDataType_t type = *dtype == DType::kF32 ? ncclFloat32 : *dtype == DType::kF16 ? ncclFloat16 : ncclBfloat16;
  for (size_t bytes = 2048; bytes <= kMaxBytes; bytes *= 2) {
    const int64_t count = static_cast<int64_t>(bytes / DTypeSize(*dtype));
    auto nccl_call = [&] { CheckNccl(ncclAllReduce(buf, buf, count, type, ncclSum, nccl, stream), "ncclAllReduce"); };
    auto ipc_call = [&] {
      absl::Status s = ipc->AllReduceSum(buf, buf, count, *dtype, stream);
      if (!s.ok()) {
        std::fprintf(stderr, "allreduce_bench: %s\n", std::string(s.message()).c_str());
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
    };
    const double nccl_eager = MicrosPerCall(nccl_call, stream, false);
    const double nccl_graph = MicrosPerCall(nccl_call, stream, true);
    double ipc_eager = 0, ipc_graph = 0;
    if (ipc != nullptr) {
      ipc_eager = MicrosPerCall(ipc_call, stream, false);
      ipc_graph = MicrosPerCall(ipc_call, stream, true);
    }
    if (root) {
      if (ipc != nullptr) {
        std::printf("| %zu | %.2f | %.2f | %.2f | %.2f | %.2fx |\n", bytes, nccl_eager, ipc_eager, nccl_graph,
                    ipc_graph, nccl_graph / ipc_graph);
      } else {
        std::printf("| %zu | %.2f | - | %.2f | - | - |\n", bytes, nccl_eager, nccl_graph);
      }
      std::fflush(stdout);
    }
  }
  Check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  setup->ipc.reset();
  cudaFree(buf);
  ncclCommDestroy(nccl);
  Finalize();
  return 0;
}

}  // namespace
}  // namespace chai

int main(int argc, char** argv) { return chai::Run(argc, argv); }

#else

int main() {
  std::fprintf(stderr, "allreduce_bench: this build has no CUDA backend\n");
  return 1;
}

#endif
