// Set-up of the IPC all-reduce: the ranks vote at every step, so that either all of them use
// it or none does (a rank taking NCCL while its peers spin on IPC flags would hang them).
#include "parallel/ipc_allreduce.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "parallel/bootstrap.h"
#include "parallel/ipc_allreduce_kernel.h"

namespace chai {
namespace {

static_assert(kIpcAllReduceMaxRanks == ipc::kMaxRanks && PeerMirror::kMaxRanks == ipc::kMaxRanks);
constexpr size_t kMaxBytesLimit = size_t{64} << 20;
constexpr int kBusIdChars = 32;

absl::Status MpiStatus(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " failed (MPI error ", rc, ")"));
}

std::string CudaReason(cudaError_t err, const char* what) {
  cudaGetLastError();  // do not leave the error for the next launch check to find
  return absl::StrCat(what, " failed: ", cudaGetErrorString(err));
}

// "" when every rank's `reason` is empty; else the lowest failing rank's, prefixed with its rank.
absl::StatusOr<std::string> Agree(const std::string& reason, MPI_Comm comm, int rank, int size) {
  int bad = reason.empty() ? size : rank, first = size;
  if (absl::Status s = MpiStatus(MPI_Allreduce(&bad, &first, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce"); !s.ok()) {
    return s;
  }
  if (first == size) return std::string();
  absl::StatusOr<std::string> shared = BroadcastBytesFromRoot(reason, comm, first);
  if (!shared.ok()) return shared.status();
  return absl::StrCat("rank ", first, ": ", *shared);
}

// The byte threshold this rank asks for: the argument, else the environment, else the default.
size_t WantedMaxBytes(size_t max_bytes, std::string* reason) {
  if (max_bytes > 0) return std::min(max_bytes, kMaxBytesLimit);
  const char* env = std::getenv("CHAI_IPC_ALLREDUCE_MAX_BYTES");
  if (env == nullptr || env[0] == '\0') return kIpcAllReduceDefaultMaxBytes;
  uint64_t parsed = 0;
  if (!absl::SimpleAtoi(env, &parsed) || parsed < 16 || parsed > kMaxBytesLimit) {
    *reason =
        absl::StrCat("CHAI_IPC_ALLREDUCE_MAX_BYTES='", env, "' is not a byte count in [16, ", kMaxBytesLimit, "]");
    return 0;
  }
  return parsed;
}

// The grid this rank asks for (before the SM cap): the option, else the environment, else kMaxBlocks.
int WantedBlocks(int blocks, std::string* reason) {
  if (blocks > 0) return std::min(blocks, ipc::kMaxBlocks);
  const char* env = std::getenv("CHAI_IPC_ALLREDUCE_BLOCKS");
  if (env == nullptr || env[0] == '\0') return ipc::kMaxBlocks;
  int parsed = 0;
  if (!absl::SimpleAtoi(env, &parsed) || parsed < 1 || parsed > ipc::kMaxBlocks) {
    if (reason->empty()) {
      *reason = absl::StrCat("CHAI_IPC_ALLREDUCE_BLOCKS='", env, "' is not a block count in [1, ", ipc::kMaxBlocks, "]");
    }
    return 0;
  }
  return parsed;
}

constexpr const char* kAlgoNames[] = {"pull", "push", "lamport"};
constexpr int kNumAlgos = 3;

// The algorithm this rank asks for: the option, else the environment, else lamport (on 2 x H100
// 2.6-3.4 us per graph call for 2-64 KiB, against pull's 5.1-6.3: benchmarks/results/allreduce-h100.md).
int WantedAlgo(int algo, std::string* reason) {
  if (algo >= 0 && algo < kNumAlgos) return algo;
  const char* env = std::getenv("CHAI_IPC_ALLREDUCE_ALGO");
  if (env == nullptr || env[0] == '\0') return static_cast<int>(IpcAllReduceAlgo::kLamport);
  for (int a = 0; a < kNumAlgos; ++a) {
    if (std::string(env) == kAlgoNames[a]) return a;
  }
  if (reason->empty()) *reason = absl::StrCat("CHAI_IPC_ALLREDUCE_ALGO='", env, "' is not pull, push or lamport");
  return static_cast<int>(IpcAllReduceAlgo::kPull);
}

}  // namespace

absl::StatusOr<IpcAllReduce::Setup> IpcAllReduce::Create(MPI_Comm comm, size_t max_bytes) {
  Options options;
  options.max_bytes = max_bytes;
  return Create(comm, options);
}

std::string IpcAllReduce::Describe() const {
  return absl::StrCat(kAlgoNames[static_cast<int>(algo_)], ", ", blocks_,
                      blocks_ == 1 ? " block" : " blocks");
}

absl::StatusOr<IpcAllReduce::Setup> IpcAllReduce::Create(MPI_Comm comm, const Options& options) {
  Setup setup;
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) {
    setup.reason = "MPI is not initialised (a single process)";
    return setup;
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  // The same on every rank: no vote needed.
  if (size < 2 || size > ipc::kMaxRanks) {
    setup.reason = absl::StrCat("world size ", size, " is not in [2, ", ipc::kMaxRanks, "]");
    return setup;
  }

  // Vote 1: enabled, one host, a sane threshold; every rank learns the smallest threshold and
  // SM count (the grid must be the same everywhere: it decides which block owns which bytes).
  std::string reason;
  const char* enabled = std::getenv("CHAI_IPC_ALLREDUCE");
  if (enabled != nullptr && std::string(enabled) == "0") reason = "disabled by CHAI_IPC_ALLREDUCE=0";
  const size_t wanted = WantedMaxBytes(options.max_bytes, &reason);
  const int wanted_blocks = WantedBlocks(options.blocks, &reason);
  const int wanted_algo = WantedAlgo(options.algo, &reason);
  if (rank == 0 && reason.rfind("CHAI_IPC_ALLREDUCE_", 0) == 0) {  // a malformed setting, not "disabled"
    std::fprintf(stderr, "chai: warning: %s; all-reduces go through NCCL\n", reason.c_str());
  }
  MPI_Comm node;
  if (absl::Status s =
          MpiStatus(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
      !s.ok()) {
    return s;
  }
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  if (reason.empty() && node_size != size) reason = "the ranks are not all on one host";
  int device = 0, sms = 0;
  char bus_id[kBusIdChars] = {0};
  if (cudaError_t err = cudaGetDevice(&device); reason.empty() && err != cudaSuccess) {
    reason = CudaReason(err, "cudaGetDevice");
  }
  if (cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
      reason.empty() && err != cudaSuccess) {
    reason = CudaReason(err, "cudaDeviceGetAttribute");
  }
  if (cudaError_t err = cudaDeviceGetPCIBusId(bus_id, kBusIdChars - 1, device); reason.empty() && err != cudaSuccess) {
    reason = CudaReason(err, "cudaDeviceGetPCIBusId");
  }
  // An algorithm other than pull only if every rank asked for it (the minimum of the codes and of
  // their complements agree), so all launch the same kernel.
  uint64_t mine[5] = {wanted, static_cast<uint64_t>(std::max(sms, 0)), static_cast<uint64_t>(wanted_blocks),
                      static_cast<uint64_t>(wanted_algo), static_cast<uint64_t>(kNumAlgos - 1 - wanted_algo)};
  uint64_t agreed[5] = {0, 0, 0, 0, 0};
  if (absl::Status s = MpiStatus(MPI_Allreduce(mine, agreed, 5, MPI_UINT64_T, MPI_MIN, comm), "MPI_Allreduce");
      !s.ok()) {
    return s;
  }
  const bool same_algo = agreed[3] == static_cast<uint64_t>(kNumAlgos - 1) - agreed[4];
  absl::StatusOr<std::string> verdict = Agree(reason, comm, rank, size);
  if (!verdict.ok()) return verdict.status();
  if (!verdict->empty()) {
    setup.reason = *verdict;
    return setup;
  }

  // Vote 2: every peer's GPU is visible here, distinct, and peer-accessible (NVLink or PCIe P2P).
  std::vector<char> bus_ids(static_cast<size_t>(kBusIdChars) * size);
  if (absl::Status s = MpiStatus(
          MPI_Allgather(bus_id, kBusIdChars, MPI_CHAR, bus_ids.data(), kBusIdChars, MPI_CHAR, comm), "MPI_Allgather");
      !s.ok()) {
    return s;
  }
  for (int q = 0; q < size && reason.empty(); ++q) {
    if (q == rank) continue;
    const char* peer_bus = bus_ids.data() + static_cast<size_t>(q) * kBusIdChars;
    int peer = -1, can = 0;
    if (cudaError_t err = cudaDeviceGetByPCIBusId(&peer, peer_bus); err != cudaSuccess) {
      reason = absl::StrCat("rank ", q, "'s GPU ", peer_bus, " is not visible here (", CudaReason(err, "lookup"),
                            "); per-task CUDA_VISIBLE_DEVICES hides peers");
    } else if (peer == device) {
      reason = absl::StrCat("rank ", q, " uses the same GPU ", peer_bus);
    } else if (cudaError_t err = cudaDeviceCanAccessPeer(&can, device, peer); err != cudaSuccess) {
      reason = CudaReason(err, "cudaDeviceCanAccessPeer");
    } else if (!can) {
      reason = absl::StrCat("GPU ", bus_id, " cannot access GPU ", peer_bus, " as a peer");
    }
  }
  verdict = Agree(reason, comm, rank, size);
  if (!verdict.ok()) return verdict.status();
  if (!verdict->empty()) {
    setup.reason = *verdict;
    return setup;
  }

  // Vote 3: this rank's buffer, zeroed (epochs and flags start at 0) before any peer can map it.
  auto ipc = std::unique_ptr<IpcAllReduce>(new IpcAllReduce());
  ipc->rank_ = rank;
  ipc->size_ = size;
  ipc->blocks_ = static_cast<int>(std::min<uint64_t>({uint64_t{ipc::kMaxBlocks}, agreed[1], agreed[2]}));
  ipc->algo_ = same_algo ? static_cast<IpcAllReduceAlgo>(agreed[3]) : IpcAllReduceAlgo::kPull;
  ipc->max_bytes_ = static_cast<size_t>(agreed[0]);
  const size_t bytes = ipc->algo_ == IpcAllReduceAlgo::kPull ? ipc::AllocationBytes(ipc->max_bytes_)
                                                             : ipc::PushAllocationBytes(ipc->max_bytes_, size);
  cudaIpcMemHandle_t handle;
  std::memset(&handle, 0, sizeof(handle));
  if (cudaError_t err = cudaMalloc(&ipc->local_, bytes); err != cudaSuccess) {
    ipc->local_ = nullptr;
    reason = CudaReason(err, "cudaMalloc (IPC all-reduce buffer)");
  } else if (cudaError_t err = cudaMemset(ipc->local_, 0, bytes); err != cudaSuccess) {
    reason = CudaReason(err, "cudaMemset");
  } else if (cudaError_t err = ipc->algo_ == IpcAllReduceAlgo::kLamport
                                   ? ipc::FillLamportReceiveArea(ipc->local_, bytes, nullptr)
                                   : cudaSuccess;
             err != cudaSuccess) {
    reason = CudaReason(err, "filling the receive slots");
  } else if (cudaError_t err = cudaDeviceSynchronize(); err != cudaSuccess) {
    reason = CudaReason(err, "cudaDeviceSynchronize");
  } else if (cudaError_t err = cudaIpcGetMemHandle(&handle, ipc->local_); err != cudaSuccess) {
    reason = CudaReason(err, "cudaIpcGetMemHandle");
  }
  verdict = Agree(reason, comm, rank, size);
  if (!verdict.ok()) return verdict.status();
  if (!verdict->empty()) {
    if (ipc->local_ != nullptr) cudaFree(ipc->local_);  // nobody has mapped it yet
    ipc->local_ = nullptr;
    setup.reason = *verdict;
    return setup;
  }

  // Vote 4: map every peer's buffer (peer access is enabled on first use of the mapping).
  std::vector<cudaIpcMemHandle_t> handles(size);
  if (absl::Status s =
          MpiStatus(MPI_Allgather(&handle, sizeof(handle), MPI_BYTE, handles.data(), sizeof(handle), MPI_BYTE, comm),
                    "MPI_Allgather");
      !s.ok()) {
    return s;
  }
  ipc->peers_[rank] = ipc->local_;
  for (int q = 0; q < size && reason.empty(); ++q) {
    if (q == rank) continue;
    if (cudaError_t err = cudaIpcOpenMemHandle(&ipc->peers_[q], handles[q], cudaIpcMemLazyEnablePeerAccess);
        err != cudaSuccess) {
      ipc->peers_[q] = nullptr;
      reason = CudaReason(err, absl::StrCat("cudaIpcOpenMemHandle (rank ", q, ")").c_str());
    }
  }
  verdict = Agree(reason, comm, rank, size);
  if (!verdict.ok()) return verdict.status();
  if (!verdict->empty()) {
    // Unmap everywhere before anyone frees: freeing a buffer a peer still maps is undefined.
    for (int q = 0; q < size; ++q) {
      if (q != rank && ipc->peers_[q] != nullptr) cudaIpcCloseMemHandle(ipc->peers_[q]);
      ipc->peers_[q] = nullptr;
    }
    if (absl::Status s = MpiStatus(MPI_Barrier(comm), "MPI_Barrier"); !s.ok()) return s;
    cudaFree(ipc->local_);
    ipc->local_ = nullptr;
    setup.reason = *verdict;
    return setup;
  }
  setup.ipc = std::move(ipc);
  return setup;
}

// Unmaps the peers' buffers but deliberately leaves this rank's own allocation to process exit:
// a peer may still map it, freeing it before every peer has unmapped it is undefined, and
// waiting for them here (a barrier) would turn one rank's error exit into a hang of all ranks.
// The caller has synchronised the stream, so no kernel of this rank still uses the mappings.
IpcAllReduce::~IpcAllReduce() {
  for (int q = 0; q < size_; ++q) {
    if (q != rank_ && peers_[q] != nullptr) cudaIpcCloseMemHandle(peers_[q]);
  }
}

bool IpcAllReduce::Supports(DType dtype, size_t bytes) const {
  const bool floating = dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
  return floating && bytes > 0 && bytes <= max_bytes_;
}

absl::Status IpcAllReduce::AllReduceSum(const void* in, void* out, int64_t count, DType dtype, CUstream_st* stream) {
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 0)) * DTypeSize(dtype);
  if (!Supports(dtype, bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("IPC all-reduce: ", count, " ", DTypeName(dtype), " elements (",
                                                   bytes, " bytes) exceed its ", max_bytes_,
                                                   "-byte buffer or are not fp32/fp16/bf16"));
  }
  ipc::Peers peers{};
  for (int q = 0; q < size_; ++q) peers.base[q] = static_cast<char*>(peers_[q]);
  const size_t half = ipc::HalfBytes(max_bytes_);
  cudaError_t err = cudaSuccess;
  switch (algo_) {
    case IpcAllReduceAlgo::kPull:
      err = ipc::LaunchOneShotAllReduce(peers, rank_, size_, blocks_, half, in, out, count, dtype, stream);
      break;
    case IpcAllReduceAlgo::kPush:
      err = ipc::LaunchPushAllReduce(peers, rank_, size_, blocks_, half, in, out, count, dtype, stream);
      break;
    case IpcAllReduceAlgo::kLamport:
      err = ipc::LaunchLamportAllReduce(peers, rank_, size_, blocks_, half, in, out, count, dtype, stream);
      break;
  }
  if (err != cudaSuccess) {
    return absl::InternalError(absl::StrCat("IPC all-reduce launch failed: ", cudaGetErrorString(err)));
  }
  return absl::OkStatus();
}

}  // namespace chai

namespace chai {

bool IpcAllReduce::SupportsAddNorm(DType dtype, int64_t rows, int64_t cols,
                                   std::initializer_list<const void*> ptrs) const {
  return algo_ == IpcAllReduceAlgo::kLamport && rows > 0 &&
         Supports(dtype, static_cast<size_t>(rows) * static_cast<size_t>(std::max<int64_t>(cols, 0)) *
                             DTypeSize(dtype)) &&
         ipc::LamportNormSupported(size_, cols, DTypeSize(dtype), ptrs);
}

bool IpcAllReduce::Mirror(DType dtype, int64_t rows, int64_t cols, PeerMirror* mirror) const {
  // 2-byte types only (the decode GEMV's), and exactly what SupportsAddNorm takes for any pointers.
  if ((dtype != DType::kF16 && dtype != DType::kBF16) || !SupportsAddNorm(dtype, rows, cols, {})) return false;
  const size_t half = ipc::HalfBytes(max_bytes_);
  *mirror = PeerMirror{};
  for (int q = 0; q < size_; ++q) mirror->base[q] = peers_[q];
  mirror->epochs = static_cast<const char*>(local_) + ipc::kEpochsOffset;
  mirror->offset = ipc::kDataOffset + static_cast<size_t>(rank_) * half;
  mirror->parity_stride = static_cast<size_t>(size_) * half;
  mirror->world = size_;
  mirror->rank = rank_;
  mirror->reader_blocks = blocks_;
  return true;
}

absl::Status IpcAllReduce::AllReduceAddNorm(const void* partial, void* x, const void* weight, const void* bias,
                                            float eps, bool rms, int64_t rows, int64_t cols, DType dtype, void* out,
                                            CUstream_st* stream, bool pushed, const L2Prefetch& then) {
  if (!SupportsAddNorm(dtype, rows, cols, {partial, x, weight, bias, out})) {
    return absl::InvalidArgumentError(absl::StrCat("IPC all-reduce + norm: [", rows, ", ", cols, "] ",
                                                   DTypeName(dtype), " unsupported by ", Describe(), " on ", size_,
                                                   " ranks"));
  }
  ipc::Peers peers{};
  for (int q = 0; q < size_; ++q) peers.base[q] = static_cast<char*>(peers_[q]);
  const cudaError_t err =
      ipc::LaunchLamportAllReduceNorm(peers, rank_, size_, blocks_, ipc::HalfBytes(max_bytes_), partial, x, weight,
                                      bias, eps, rms, rows, cols, dtype, out, pushed, then, stream);
  if (err != cudaSuccess) {
    return absl::InternalError(absl::StrCat("IPC all-reduce + norm launch failed: ", cudaGetErrorString(err)));
  }
  return absl::OkStatus();
}

}  // namespace chai
