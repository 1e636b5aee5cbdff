// One-shot all-reduce over CUDA IPC peer buffers, for the small messages of tensor-parallel decode.
//
// At batch 1 a LLaMA-7B decode step all-reduces 8 KB 65 times; NCCL spends tens of microseconds
// on each, more than the step's matrix work at TP=4. Here every rank copies its input into its
// own peer-visible buffer, tells every peer, waits for every peer, and sums all ranks' buffers
// directly over NVLink: one kernel, one round of flags, a few microseconds.
//
// Defined only in CUDA builds (like the NCCL communicator; callers guard with CHAI_WITH_CUDA).
// This header needs no CUDA headers.
//
// Synchronisation (ipc_allreduce_kernel.cu has the details): each of the kernel's blocks keeps
// an epoch counter in device memory that the kernel itself increments, so a CUDA graph replays
// correctly with the arguments it was captured with. Block b of rank r writes its share of the
// input into the buffer half chosen by the epoch's parity, then stores the epoch (release,
// system scope) into slot [b][r] of every peer's flags and waits (acquire) until its own slots
// [b][q] reach the epoch. The halves alternate, so a rank one call ahead writes the other half;
// it cannot be two calls ahead, because that needs every peer's flag of the call in between,
// which a peer sets only after its previous kernel (its last read of this half) has finished.
//
// Variants (chosen at set-up, agreed by all ranks; the default is lamport, the fastest measured):
//  - pull (CHAI_IPC_ALLREDUCE_ALGO=pull): the scheme above. CHAI_IPC_ALLREDUCE_BLOCKS=N (1..32) sets the grid (default
//    min(32, SMs)); fewer blocks mean fewer flag rounds and fewer blocks issuing remote reads.
//  - push (CHAI_IPC_ALLREDUCE_ALGO=push): each rank writes its input straight into its own
//    receive slot on every peer (posted NVLink writes, no remote reads), the kernel's blocks meet
//    at a local arrival counter, and the last one stores one flag per peer: one flag round per
//    call, W - 1 remote flag stores per rank whatever the grid. Every block then waits for the
//    peers' flags and sums the local slots. Also epoch-on-device and double-buffered by parity;
//    the buffer holds 2 * size slots of max_bytes. The safety argument is in the kernel file.
//  - lamport (CHAI_IPC_ALLREDUCE_ALGO=lamport): push's writes with no flag at all: the receive
//    slots hold a sentinel value between calls, and each element's arrival shows in its value;
//    the reader resets what it read (ipc_allreduce_lamport.cu). One posted write per peer is
//    the whole synchronisation. Per-block epochs pick the half, as in pull. On 2 x H100, 2.6-3.4
//    us per call in a CUDA graph for 2-64 KiB, pull 5.1-6.3, NCCL 6.1-7.1.
#ifndef CHAI_PARALLEL_IPC_ALLREDUCE_H_
#define CHAI_PARALLEL_IPC_ALLREDUCE_H_

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/l2_prefetch.h"
#include "kernels/peer_mirror.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace chai {

// Messages up to this many bytes take the one-shot path by default; CHAI_IPC_ALLREDUCE_MAX_BYTES
// overrides it (the buffer is twice this size on every rank). 512 KiB: lamport/32 beat NCCL there
// on 2 and 4 GPUs of both the H100 and the H200 hosts (1.30-1.90x; allreduce-h100.md,
// allreduce-h200.md), and OPT-66B's batch-16 message (294912 B at TP = 4) and LLaMA-7B's batch-64
// one (524288 B) are above the 256 KiB it was, where they went to NCCL.
inline constexpr size_t kIpcAllReduceDefaultMaxBytes = size_t{512} << 10;
inline constexpr int kIpcAllReduceMaxRanks = 8;

enum class IpcAllReduceAlgo : int { kPull = 0, kPush = 1, kLamport = 2 };

class IpcAllReduce {
 public:
  // What to set up; zero / unset fields come from the environment, then the defaults. All ranks
  // use the smallest max_bytes and blocks any rank asked for, and pull unless every rank asked for
  // the same algorithm.
  struct Options {
    size_t max_bytes = 0;  // 0: CHAI_IPC_ALLREDUCE_MAX_BYTES or kIpcAllReduceDefaultMaxBytes
    int blocks = 0;        // 0: CHAI_IPC_ALLREDUCE_BLOCKS or min(32, SMs); capped at the SM count
    int algo = -1;         // -1: CHAI_IPC_ALLREDUCE_ALGO (pull, push, lamport) or lamport; else an IpcAllReduceAlgo
  };

  // What Create found: the object, or why there is none (for logs; not an error).
  struct Setup {
    std::unique_ptr<IpcAllReduce> ipc;
    std::string reason;  // why `ipc` is null
  };

  // Collective over `comm` (every rank must call it, with its CUDA device current). Returns a
  // null `ipc` on every rank, with the reason, unless every rank can use it: 2..8 ranks on one
  // host, CHAI_IPC_ALLREDUCE not "0" anywhere, every pair of GPUs peer-accessible, and the IPC
  // buffers allocated and opened. `max_bytes` 0 means CHAI_IPC_ALLREDUCE_MAX_BYTES or the
  // default; all ranks use the smallest value any rank asked for, so they take the same path for
  // every message. An error only when MPI itself fails.
  static absl::StatusOr<Setup> Create(MPI_Comm comm, size_t max_bytes = 0);
  static absl::StatusOr<Setup> Create(MPI_Comm comm, const Options& options);

  ~IpcAllReduce();
  IpcAllReduce(const IpcAllReduce&) = delete;
  IpcAllReduce& operator=(const IpcAllReduce&) = delete;

  // True for fp32/fp16/bf16 messages of 1..max_bytes() bytes: the same answer on every rank.
  bool Supports(DType dtype, size_t bytes) const;
  size_t max_bytes() const { return max_bytes_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  int blocks() const { return blocks_; }
  IpcAllReduceAlgo algo() const { return algo_; }
  // "pull, 32 blocks" / "lamport, 8 blocks": for logs and benchmark columns.
  std::string Describe() const;

  // out[i] = sum over ranks of in[i], `count` elements of `dtype` on this rank's device
  // (in == out is allowed), enqueued on `stream`; graph-capturable. Sums in fp32 in rank order
  // 0, 1, ..., so every rank gets bit-identical results (NCCL's fp16/bf16 sum rounds after each
  // addition; this one rounds once). Every rank must make the same sequence of calls, as with
  // any collective. Requires Supports(dtype, count * size of dtype).
  absl::Status AllReduceSum(const void* in, void* out, int64_t count, DType dtype, CUstream_st* stream);

  // The all-reduce fused with the residual add and norm that follow it (lamport only):
  // x += sum over ranks of `partial`, then out = RMSNorm(x) * weight (`rms`) or LayerNorm(x) *
  // weight + bias, for [rows, cols] rows; out may alias x. Bit-identical to AllReduceSum then
  // the norm ops (ops::AddRmsNorm / AddLayerNorm). True from SupportsAddNorm: the lamport kernel,
  // 2, 4 or 8 ranks, a message within max_bytes(), 16-byte rows and 16-byte aligned pointers.
  // `pushed`: every rank's producer of `partial` already wrote it into the peers' receive slots
  // through Mirror's PeerMirror (ops::LinearFused with a mirror), so the kernel only receives.
  // `then`: bytes for the kernel's blocks without a row to fetch into L2 (kernels/l2_prefetch.h).
  bool SupportsAddNorm(DType dtype, int64_t rows, int64_t cols, std::initializer_list<const void*> ptrs) const;
  absl::Status AllReduceAddNorm(const void* partial, void* x, const void* weight, const void* bias, float eps,
                                bool rms, int64_t rows, int64_t cols, DType dtype, void* out, CUstream_st* stream,
                                bool pushed = false, const L2Prefetch& then = {});
  // Where the next AllReduceAddNorm of a [rows, cols] fp16/bf16 partial is this kernel (the same
  // answer on every rank): fills `mirror` with this rank's receive slots on the peers and true.
  bool Mirror(DType dtype, int64_t rows, int64_t cols, PeerMirror* mirror) const;

 private:
  IpcAllReduce() = default;

  int rank_ = 0;
  int size_ = 1;
  int blocks_ = 0;                           // the kernel's grid: fixed, since each block has its own epoch
  IpcAllReduceAlgo algo_ = IpcAllReduceAlgo::kPull;
  size_t max_bytes_ = 0;                     // one buffer half (push: one receive slot)
  void* local_ = nullptr;                    // this rank's cudaMalloc: flags, epochs, two data halves
  void* peers_[kIpcAllReduceMaxRanks] = {};  // every rank's allocation mapped here (own: local_)
};

}  // namespace chai

#endif  // CHAI_PARALLEL_IPC_ALLREDUCE_H_
