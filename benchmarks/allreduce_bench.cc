// All-reduce latency, NCCL vs variants of the one-shot IPC all-reduce, for message sizes
// 2 KiB .. 1 MiB. Run under mpirun with one rank per GPU; rank 0 prints a markdown table (the
// slowest rank's time for each cell):
//   mpirun -np 4 -x NCCL_NVLS_ENABLE=0 build/benchmarks/allreduce_bench [fp16|bf16|fp32] [VARIANTS]
// VARIANTS is a comma-separated list of ALGO:BLOCKS (ALGO pull, push or lamport, BLOCKS 1..32;
// capped at the SM count), default kDefaultVariants below; lamport:32 is the default path.
// Each variant is its own IpcAllReduce (own buffers), set up collectively; the environment's
// CHAI_IPC_ALLREDUCE_ALGO / _BLOCKS do not apply here.
// "eager": kLoop back-to-back calls between two CUDA events, each call launched from the host.
// "graph": kGraphCalls calls captured in a CUDA graph (as a decode step is), replayed kReplays
// times between the events; this is the number the decode step sees. A second table times the
// fused all-reduce + add + norm of decode rows against the plain all-reduce (FusedNormTable).
#include <cstdio>
#include <cstdlib>
#include <string>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

#include "kernels/dtype.h"
#include "parallel/bootstrap.h"
#include "parallel/ipc_allreduce.h"
#include "parallel/ipc_allreduce_kernel.h"
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

constexpr const char* kAlgoNames[] = {"pull", "push", "lamport"};  // by IpcAllReduceAlgo
constexpr const char* kDefaultVariants = "pull:32,pull:4,push:8,lamport:32,lamport:8,lamport:2";

// Parses VARIANTS into options; false (with a message on rank 0) when malformed.
bool ParseVariants(const std::string& spec, std::vector<IpcAllReduce::Options>* out, bool root) {
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    int blocks = 0;
    int algo = -1;
    for (int a = 0; a < 3 && parts.size() == 2; ++a) {
      if (parts[0] == kAlgoNames[a]) algo = a;
    }
    if (algo < 0 || !absl::SimpleAtoi(parts[1], &blocks) || blocks < 1 || blocks > 32) {
      if (root) {
        std::fprintf(stderr, "allreduce_bench: variant '%s' is not ALGO:BLOCKS (pull|push|lamport, 1..32)\n",
                     std::string(item).c_str());
      }
      return false;
    }
    IpcAllReduce::Options options;
    options.max_bytes = kMaxBytes;
    options.blocks = blocks;
    options.algo = algo;
    out->push_back(options);
  }
  return !out->empty();
}

// A table cell: the value with two decimals, "-" for a variant that did not run.
std::string Cell(double v) {
  if (v <= 0) return "-";
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f", v);
  return text;
}

// The fused all-reduce + residual add + norm of the decode step (IpcAllReduce::AllReduceAddNorm)
// against the plain all-reduce of the same bytes, both graphed, on one lamport grid of 32 blocks:
// the difference is what the add and the norm cost inside the collective. Shapes: OPT-66B's
// LayerNorm rows (9216) and LLaMA-7B's RMSNorm rows (4096), at decode batches. Zeros in, so
// repeated calls stay finite.
void FusedNormTable(DType dtype, cudaStream_t stream, bool root) {
  struct Shape {
    const char* model;
    bool rms;
    int64_t cols, rows;
  };
  constexpr Shape kShapes[] = {{"OPT-66B", false, 9216, 1}, {"OPT-66B", false, 9216, 16},
                               {"LLaMA-7B", true, 4096, 1}, {"LLaMA-7B", true, 4096, 8}};
  IpcAllReduce::Options options;
  options.max_bytes = kMaxBytes;
  options.blocks = 32;
  options.algo = static_cast<int>(IpcAllReduceAlgo::kLamport);
  absl::StatusOr<IpcAllReduce::Setup> setup = IpcAllReduce::Create(MPI_COMM_WORLD, options);
  if (!setup.ok() || setup->ipc == nullptr) {
    if (root) {
      std::printf("\nfused all-reduce + norm: unavailable (%s)\n",
                  setup.ok() ? setup->reason.c_str() : std::string(setup.status().message()).c_str());
    }
    return;
  }
  IpcAllReduce& ipc = *setup->ipc;
  if (root) {
    std::printf("\nfused all-reduce + add + norm (%s), graphed, us per call, slowest rank\n", ipc.Describe().c_str());
    std::printf("| model | norm | rows x cols | bytes | all-reduce | all-reduce + add + norm | difference |\n");
    std::printf("|---|---|---|---:|---:|---:|---:|\n");
  }
  void* bufs[5] = {};  // partial, x, weight, bias, out
  for (void*& b : bufs) {
    Check(cudaMalloc(&b, kMaxBytes), "cudaMalloc");
    Check(cudaMemset(b, 0, kMaxBytes), "cudaMemset");
  }
  for (const Shape& shape : kShapes) {
    const int64_t count = shape.rows * shape.cols;
    const size_t bytes = static_cast<size_t>(count) * DTypeSize(dtype);
    if (bytes > kMaxBytes) continue;
    auto check = [](const absl::Status& s) {
      if (s.ok()) return;
      std::fprintf(stderr, "allreduce_bench: %s\n", std::string(s.message()).c_str());
      MPI_Abort(MPI_COMM_WORLD, 1);
    };
    const double plain = MicrosPerCall([&] { check(ipc.AllReduceSum(bufs[0], bufs[0], count, dtype, stream)); },
                                       stream, true);
    double unused[ipc::kNormPhases];
    ipc::ReadNormPhases(unused, /*reset=*/true);
    const double fused = MicrosPerCall(
        [&] {
          check(ipc.AllReduceAddNorm(bufs[0], bufs[1], bufs[2], shape.rms ? nullptr : bufs[3], 1e-5f, shape.rms,
                                     shape.rows, shape.cols, dtype, bufs[4], stream));
        },
        stream, true);
    if (root) {
      std::printf("| %s | %s | %lld x %lld | %zu | %s | %s | %+.2f |\n", shape.model, shape.rms ? "RMSNorm" : "LayerNorm",
                  static_cast<long long>(shape.rows), static_cast<long long>(shape.cols), bytes, Cell(plain).c_str(),
                  Cell(fused).c_str(), fused - plain);
      std::fflush(stdout);
    }
    // Rank 0's own phases (a -DCHAI_ARNORM_PHASES build only), cycles from the kernel's start.
    double cycles[ipc::kNormPhases];
    if (ipc::ReadNormPhases(cycles, /*reset=*/true) && root) {
      int khz = 0;
      cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0);
      std::printf("|   phases, block 0 (cycles; us at %.2f GHz) | pushed %.0f (%.2f) | own receive %.0f (%.2f) | "
                  "row + weights in smem %.0f (%.2f) | norm done %.0f (%.2f) | |\n",
                  khz / 1e6, cycles[0], cycles[0] / khz * 1e3, cycles[1], cycles[1] / khz * 1e3, cycles[2],
                  cycles[2] / khz * 1e3, cycles[3], cycles[3] / khz * 1e3);
    }
  }
  Check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  for (void* b : bufs) cudaFree(b);
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
  std::vector<IpcAllReduce::Options> variants;
  if (!ParseVariants(argc > 2 ? argv[2] : kDefaultVariants, &variants, root)) {
    ncclCommDestroy(nccl);
    Finalize();
    return 1;
  }
  std::vector<std::unique_ptr<IpcAllReduce>> ipcs;  // a null entry: that variant is unavailable
  std::vector<std::string> reasons;
  for (const IpcAllReduce::Options& options : variants) {
    absl::StatusOr<IpcAllReduce::Setup> setup = IpcAllReduce::Create(MPI_COMM_WORLD, options);
    if (!setup.ok()) {
      std::fprintf(stderr, "allreduce_bench: %s\n", std::string(setup.status().message()).c_str());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    ipcs.push_back(std::move(setup->ipc));
    reasons.push_back(setup->reason);
  }
  const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
  if (root) {
    char name[256] = {0};
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, *device) == cudaSuccess) std::snprintf(name, sizeof(name), "%s", prop.name);
    std::printf("all-reduce latency, %d x %s, %s, NCCL_NVLS_ENABLE=%s; us per call, slowest rank\n", group->world_size,
                name, DTypeName(*dtype), nvls != nullptr ? nvls : "(unset)");
    std::vector<std::string> names;
    for (size_t v = 0; v < ipcs.size(); ++v) {
      const char* algo = kAlgoNames[variants[v].algo];
      if (ipcs[v] == nullptr) {
        std::printf("IPC %s:%d unavailable: %s\n", algo, variants[v].blocks, reasons[v].c_str());
      }
      // The agreed grid (capped at the SM count) when set up, else the one asked for.
      names.push_back(std::string(algo) + "/" +
                      std::to_string(ipcs[v] != nullptr ? ipcs[v]->blocks() : variants[v].blocks));
    }
    std::string header = "| bytes | NCCL eager |", rule = "|---|---|";
    for (const std::string& name : names) header += " " + name + " eager |", rule += "---|";
    header += " NCCL graph |", rule += "---|";
    for (const std::string& name : names) header += " " + name + " graph |", rule += "---|";
    header += " best IPC graph | NCCL / best |";
    rule += "---|---|";
    std::printf("%s\n%s\n", header.c_str(), rule.c_str());
  }
  void* buf = nullptr;
  Check(cudaMalloc(&buf, kMaxBytes), "cudaMalloc");
  Check(cudaMemset(buf, 0, kMaxBytes), "cudaMemset");  // zeros: repeated in-place sums stay finite
  const ncclDataType_t type = *dtype == DType::kF32 ? ncclFloat32 : *dtype == DType::kF16 ? ncclFloat16 : ncclBfloat16;
  for (size_t bytes = 2048; bytes <= kMaxBytes; bytes *= 2) {
    const int64_t count = static_cast<int64_t>(bytes / DTypeSize(*dtype));
    auto nccl_call = [&] { CheckNccl(ncclAllReduce(buf, buf, count, type, ncclSum, nccl, stream), "ncclAllReduce"); };
    const double nccl_eager = MicrosPerCall(nccl_call, stream, false);
    const double nccl_graph = MicrosPerCall(nccl_call, stream, true);
    std::vector<double> eager(ipcs.size(), 0), graph(ipcs.size(), 0);
    for (size_t v = 0; v < ipcs.size(); ++v) {
      IpcAllReduce* ipc = ipcs[v].get();
      if (ipc == nullptr) continue;  // the same on every rank (Create agrees)
      auto ipc_call = [&] {
        absl::Status s = ipc->AllReduceSum(buf, buf, count, *dtype, stream);
        if (!s.ok()) {
          std::fprintf(stderr, "allreduce_bench: %s\n", std::string(s.message()).c_str());
          MPI_Abort(MPI_COMM_WORLD, 1);
        }
      };
      eager[v] = MicrosPerCall(ipc_call, stream, false);
      graph[v] = MicrosPerCall(ipc_call, stream, true);
    }
    if (root) {
      std::string row = "| " + std::to_string(bytes) + " | " + Cell(nccl_eager) + " |";
      for (size_t v = 0; v < ipcs.size(); ++v) row += " " + Cell(eager[v]) + " |";
      row += " " + Cell(nccl_graph) + " |";
      double best = 0;
      std::string best_name = "-";
      for (size_t v = 0; v < ipcs.size(); ++v) {
        row += " " + Cell(graph[v]) + " |";
        if (graph[v] > 0 && (best == 0 || graph[v] < best)) {
          best = graph[v];
          best_name = ipcs[v]->Describe();
        }
      }
      row += " " + best_name + " | " + (best > 0 ? Cell(nccl_graph / best) + "x" : std::string("-")) + " |";
      std::printf("%s\n", row.c_str());
      std::fflush(stdout);
    }
  }
  Check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  ipcs.clear();
  FusedNormTable(*dtype, stream, root);
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
