// The one-shot all-reduce kernel of ipc_allreduce.h and the layout of each rank's IPC buffer.
// Internal to parallel/: only ipc_allreduce.cc and the .cu include it.
#ifndef CHAI_PARALLEL_IPC_ALLREDUCE_KERNEL_H_
#define CHAI_PARALLEL_IPC_ALLREDUCE_KERNEL_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "kernels/dtype.h"
#include "kernels/l2_prefetch.h"

namespace chai::ipc {

inline constexpr int kMaxRanks = 8;
// The grid is fixed for all calls (each block counts its own epochs) and small enough that all
// blocks are resident at once on any GPU this runs on: a block spins until the same block of
// every peer arrives, so a block that could not start would stall its peers' blocks.
inline constexpr int kMaxBlocks = 32;
inline constexpr int kThreads = 512;

// Each rank's allocation: flags that peers write, epochs only this rank touches, then the data.
// All offsets 256-byte aligned.
//  - pull (LaunchOneShotAllReduce): flag slot [b][q] from block b of rank q, epochs[b] per block,
//    then two data halves of `half` bytes (the epoch's parity picks one) that peers read.
//  - push (LaunchPushAllReduce): flag slot [0][q] from rank q (one per rank pair), epochs[0] the
//    rank's epoch, epochs[1] the blocks' arrival counter, then two halves (by parity) of
//    `size` receive slots of `half` bytes each: slot q holds rank q's input, written by rank q.
//  - lamport (LaunchLamportAllReduce): epochs[b] per block (no flags), then the push layout's two
//    halves of receive slots, filled with the sentinel (FillLamportReceiveArea) before first use.
inline constexpr size_t kFlagsOffset = 0;  // uint64_t [kMaxBlocks][kMaxRanks]: slot [b][q] from rank q
inline constexpr size_t kEpochsOffset = kFlagsOffset + sizeof(uint64_t) * kMaxBlocks * kMaxRanks;
inline constexpr size_t kDataOffset = kEpochsOffset + sizeof(uint64_t) * kMaxBlocks;
static_assert(kDataOffset % 256 == 0, "data halves must stay 16-byte aligned");

inline size_t HalfBytes(size_t max_bytes) { return (max_bytes + 255) / 256 * 256; }
inline size_t AllocationBytes(size_t max_bytes) { return kDataOffset + 2 * HalfBytes(max_bytes); }
inline size_t PushAllocationBytes(size_t max_bytes, int size) {
  return kDataOffset + 2 * static_cast<size_t>(size) * HalfBytes(max_bytes);
}

struct Peers {
  char* base[kMaxRanks];  // every rank's allocation, mapped into this process
};

// Enqueues the kernel (fp32/fp16/bf16; 2 <= size <= kMaxRanks; count * dtype size <= half).
cudaError_t LaunchOneShotAllReduce(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                                   void* out, int64_t count, DType dtype, cudaStream_t stream);

// The latency variant: every block pushes its share of the input straight into every peer's
// receive slot (posted NVLink writes, no remote reads), the blocks of this rank meet at an
// arrival counter, the last one stores one flag per peer, and every block sums the local slots.
// Same arguments and requirements as LaunchOneShotAllReduce, on a PushAllocationBytes buffer.
cudaError_t LaunchPushAllReduce(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                                void* out, int64_t count, DType dtype, cudaStream_t stream);

// The flag-free variant (ipc_allreduce_lamport.cu): every block pushes its share of the input
// into every peer's receive slot, and each element's arrival is seen by its value (the slots
// hold a sentinel between calls). Same arguments as the others, on a PushAllocationBytes buffer
// that FillLamportReceiveArea prepared.
cudaError_t LaunchLamportAllReduce(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                                   void* out, int64_t count, DType dtype, cudaStream_t stream);

// The flag-free all-reduce fused with the residual add and norm after it (ipc_allreduce_norm.cu):
// x += sum over ranks of `partial` ([rows, cols] on every rank), out = RMSNorm(x) * weight when
// `rms`, else LayerNorm(x) * weight + bias; out may alias x. Same buffer as the plain kernel.
// Supported for 2, 4 or 8 ranks, 16-byte rows and 16-byte aligned pointers (LamportNormSupported).
// `pushed`: every rank's `partial` is already in its peers' receive slots (written by its
// producer through a PeerMirror), so the kernel only receives. `then`: an L2 prefetch hint that
// the blocks without a row issue (at decode, all but a few of them).
bool LamportNormSupported(int size, int64_t cols, size_t dtype_bytes, std::initializer_list<const void*> ptrs);
cudaError_t LaunchLamportAllReduceNorm(const Peers& peers, int rank, int size, int blocks, size_t half,
                                       const void* partial, void* x, const void* weight, const void* bias, float eps,
                                       bool rms, int64_t rows, int64_t cols, DType dtype, void* out, bool pushed,
                                       const L2Prefetch& then, cudaStream_t stream);

// A diagnostic build's phase times of LaunchLamportAllReduceNorm (CUDA flag -DCHAI_ARNORM_PHASES):
// for block 0's row, the mean SM cycles per call from the kernel's start to the end of the push,
// of thread 0's receive, of the row and weights in shared memory, and of the norm; `reset` zeroes
// the sums after reading. False (nothing read) in other builds. Host code; the device must be idle.
inline constexpr int kNormPhases = 4;
bool ReadNormPhases(double cycles[kNormPhases], bool reset);

// Writes the sentinel over the receive area of an allocation of `bytes` (kDataOffset onwards).
cudaError_t FillLamportReceiveArea(void* allocation, size_t bytes, cudaStream_t stream);

}  // namespace chai::ipc

#endif  // CHAI_PARALLEL_IPC_ALLREDUCE_KERNEL_H_
