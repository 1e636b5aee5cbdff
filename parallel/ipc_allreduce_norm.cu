// The flag-free all-reduce fused with what follows it in every transformer sublayer: the residual
// add and the next norm. x += sum over ranks of `partial`, then out = Norm(x) (RMSNorm, or
// LayerNorm with a bias), in one kernel instead of two: at TP > 1 a decode step makes 2 per layer.
//
// The exchange is the Lamport protocol of ipc_allreduce_lamport.cu, over the same receive area and
// per-block epochs (so calls of either kernel may follow each other in any order); only the
// mapping of groups to threads differs: a block receives and normalises whole rows (row b,
// b + grid, ...), thread t the row's 16-byte groups t, t + blockDim, ..., while the push of every
// row is spread over the whole grid (GridPush; the receiver does not care who wrote a slot). The norm's first pass
// (NormRow, kernels/cuda/norm_row.cuh) receives each group: the ranks' partials summed in fp32 in
// rank order and rounded once (the plain kernel's all-reduce result), then added to x and rounded
// (the norm kernel's residual add), and the row's sums run over the norm kernel's thread count
// (NormRowThreads), so the output equals the unfused pair bit for bit.
// `pushed`: the producer of `partial` already wrote it into every peer's receive slot (the decode
// GEMV's mirror, kernels/peer_mirror.h, in the parity half this call's epochs pick), so the kernel
// skips its own push and only receives; the rest is the same.
//
// Latency, which is all a decode row costs: a row of up to kRowBufBytes is first received whole by
// every thread of its block, each thread with all its groups' loads (own partial, x, every peer's
// slot) in flight at once (ReceiveBatch), into shared memory and x; the norm's passes then read
// shared memory, and so do the last pass's weights, copied there while the row was received; the
// last pass runs on all the block's threads (the sums' passes keep the norm kernel's thread count).
// Receiving inside the norm's first pass instead (its 256 or 512 threads, each polling one peer
// after another, one vector after another) made a chain of dependent round trips: 13.6 us a call at
// OPT-66B's 9216 columns on 4 x H200 against 4 us for the plain all-reduce; and the last pass,
// reading its weights from DRAM one vector at a time, five more at 256 threads
// (benchmarks/results/opt-66b-tp4-h200.md). Wider rows keep the receive inside the norm (the
// fallback below), with the weights prefetched into L2.
// One block receives a row even at batch 1: the receive and norm spread over all blocks (each a
// share, the last to arrive normalising) was bit-identical but slower end to end on 4 x H200
// (OPT-66B 0.6-1.5%, LLaMA-7B 8%; docs/cuda-backend.md): it adds a rendezvous and a second pass
// over the row to the chain of a call.
#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/l2_prefetch.cuh"
#include "kernels/cuda/norm_row.cuh"
#include "kernels/env_choice.h"
#include "parallel/ipc_allreduce_groups.cuh"
#include "parallel/ipc_allreduce_kernel.h"
#include "parallel/ipc_allreduce_norm_parts.cuh"
#include "parallel/ipc_lamport.cuh"

namespace chai::ipc {
namespace {

// Where a row's block spends a call (a diagnostic build, -DCHAI_ARNORM_PHASES in the CUDA flags;
// read by ReadNormPhases): thread 0 of block 0 adds the SM cycles from the kernel's start to the
// end of the push, of its own receive, of the block's (every row vector and the norm's weights in
// shared memory) and of the norm, over calls. Compiled out otherwise.
#ifdef CHAI_ARNORM_PHASES
__device__ unsigned long long g_norm_phases[kNormPhases + 1];  // cycles per phase, then the calls
#define CHAI_NORM_PHASE(k)                                                            \
  do {                                                                                \
    if (blockIdx.x == 0 && threadIdx.x == 0) g_norm_phases[k] += clock64() - phase0; \
  } while (0)
#else
#define CHAI_NORM_PHASE(k) \
  do {                     \
  } while (0)
#endif

using cuda::kVec16;
using cuda::LoadVec;
using cuda::StoreVec;

// A row too wide to stage: each group received inside the norm's first pass (its first_load),
// summed over the ranks in rank order, added to x and stored there.
template <typename T, int N, int W, bool kRms>
__device__ __forceinline__ void NormRowReceivedInFirstPass(char* self, size_t data, size_t half, int rank,
                                                           const T* partial, T* in, int64_t row, int64_t vecs,
                                                           NormWeights<T> norm, float eps, T* out, float* scratch,
                                                           int norm_threads) {
  auto first_load = [&](int64_t i) {
    const int64_t g = row * vecs + i;
    Vec<T, N> v[W];
#pragma unroll
    for (int q = 0; q < W; ++q) {
      v[q] = q == rank ? FromBits<T, N>(NotSentinel<T>(AsBits<T, N>(LoadVec<T, N>(partial + g * N))))
                       : ReceiveGroup<T, N>(self + data + q * half + g * 16, N);
    }
    const Vec<T, N> h = cuda::AddRounded<T, N>(LoadVec<T, N>(in + i * N), RankOrderSum<T, N, W>(v));
    StoreVec<T, N>(in + i * N, h);
    return h;
  };
  cuda::NormRow<T, N, kRms, 1>(in, first_load, norm.weight, norm.bias, eps, vecs * N, out, scratch, norm_threads,
                               blockDim.x);
}

template <typename T, int W, bool kRms>
__global__ void __launch_bounds__(kThreads)
    LamportAllReduceNorm(Peers peers, char* self, int rank, size_t half, const T* partial, T* x, const T* weight,
                         const T* bias, float eps, int64_t rows, int64_t cols, int norm_threads, bool pushed, bool staged,
                         bool grid_push, const L2Prefetch then, T* out) {
#ifdef CHAI_ARNORM_PHASES
  const long long phase0 = clock64();
  if (blockIdx.x == 0 && threadIdx.x == 0) ++g_norm_phases[kNormPhases];
#endif
  constexpr int N = kVec16<T>;
  constexpr int B = kBatch<T, W>;
  __shared__ float scratch[32];
  extern __shared__ uint4 staged_smem[];  // [row | weight | bias], StagedSharedBytes
  // Rows of up to kRowBufBytes are staged: the row and the norm's weights in shared memory
  // (FetchNormWeights); wider rows read the weights through L2.
  const bool whole_row = staged && cols * static_cast<int64_t>(sizeof(T)) <= kRowBufBytes;
  T* const buf = reinterpret_cast<T*>(staged_smem);
  const NormWeights<T> norm =
      blockIdx.x < rows ? FetchNormWeights<T, N>(weight, bias, cols, whole_row ? buf + cols : nullptr)
                        : NormWeights<T>{weight, bias};
  // Every thread reads the block's epoch (a broadcast load a warp, so no barrier stands between it and
  // the receive's first loads); thread 0 stores the next one at the end, when all have read it.
  uint64_t* const epochs = reinterpret_cast<uint64_t*>(self + kEpochsOffset);
  const uint64_t epoch = epochs[blockIdx.x] + 1;
  const size_t data = kDataOffset + (epoch & 1) * W * half;
  const int64_t vecs = cols / N;

  // The push (unless the GEMV did it): by every thread of the grid, or by each row's block.
  if (!pushed && grid_push) {
    PushGroups<T, N, W>(peers, data, half, rank, partial, rows * vecs, int64_t{blockIdx.x} * blockDim.x + threadIdx.x,
                        int64_t{gridDim.x} * blockDim.x);
  }
  for (int64_t row = pushed || grid_push ? rows : blockIdx.x; row < rows; row += gridDim.x) {
    PushGroups<T, N, W>(peers, data, half, rank, partial + row * cols, vecs, threadIdx.x, blockDim.x, row * vecs);
  }
  CHAI_NORM_PHASE(0);
  if (blockIdx.x >= rows) {
    // No row here (a decode step's few rows leave most blocks idle): the hint's L2 prefetches
    // (the next GEMV's first weights; DRAM is idle while the rows are all-reduced and normalised),
    // consecutive ranges to different blocks.
    const int64_t idle = gridDim.x - rows;
    cuda::IssueL2Prefetch(then, threadIdx.x * idle + (blockIdx.x - rows), idle * blockDim.x);
  }

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    T* const in = x + row * cols;
    if (whole_row) {
      for (int64_t i0 = threadIdx.x; i0 < vecs; i0 += int64_t{blockDim.x} * B) {
        ReceiveBatch<T, N, W>(self, data, half, rank, partial, in, row, vecs, i0, blockDim.x, buf);
      }
      CHAI_NORM_PHASE(1);
      WaitCopiesToShared();
      __syncthreads();  // the row and the weights are in shared memory
      CHAI_NORM_PHASE(2);
      cuda::NormRow<T, N, kRms, 1>(buf, [&](int64_t i) { return LoadVec<T, N>(buf + i * N); }, norm.weight,
                                   norm.bias, eps, cols, out + row * cols, scratch, norm_threads, blockDim.x);
      __syncthreads();  // buf is read before the next row overwrites it
      CHAI_NORM_PHASE(3);
      continue;
    }
    NormRowReceivedInFirstPass<T, N, W, kRms>(self, data, half, rank, partial, in, row, vecs, norm, eps,
                                              out + row * cols, scratch, norm_threads);
  }
  __syncthreads();  // every thread has read the epoch; the next call of this block is stream-ordered
  if (threadIdx.x == 0) epochs[blockIdx.x] = epoch;
}

// CHAI_IPC_ALLREDUCE_NORM_STAGED=0 receives every row inside the norm's first pass, as before the
// shared-memory row (to compare the two; results are bit-identical either way). Read once.
bool RowStaged() {
  static const bool staged = EnvChoice("CHAI_IPC_ALLREDUCE_NORM_STAGED", {"1", "0"}) == 0;
  return staged;
}

// The rows' push is spread over every block of the grid (each thread a few 16-byte groups), so a
// row's block only receives and normalises; CHAI_IPC_ALLREDUCE_NORM_PUSH=row has each row's block
// push its own row first, as before. Bit-identical either way (the receive does not depend on who
// pushed). On 4 x H200 (allreduce_bench, ranks in step) the grid push took a call at OPT-66B's
// [1, 9216] LayerNorm from 8.5 to 7.7 us and at LLaMA-7B's [1, 4096] RMSNorm from 5.6 to 5.5
// (benchmarks/results/opt-66b-tp4-h200.md). Read once.
bool GridPush() {
  static const bool grid = EnvChoice("CHAI_IPC_ALLREDUCE_NORM_PUSH", {"grid", "row"}) == 0;
  return grid;
}

}  // namespace

bool ReadNormPhases(double cycles[kNormPhases], bool reset) {
#ifdef CHAI_ARNORM_PHASES
  unsigned long long sums[kNormPhases + 1] = {};
  if (cudaMemcpyFromSymbol(sums, g_norm_phases, sizeof(sums)) != cudaSuccess) return false;
  for (int k = 0; k < kNormPhases; ++k) cycles[k] = sums[kNormPhases] > 0 ? double(sums[k]) / sums[kNormPhases] : 0;
  if (reset) {
    const unsigned long long zeros[kNormPhases + 1] = {};
    if (cudaMemcpyToSymbol(g_norm_phases, zeros, sizeof(zeros)) != cudaSuccess) return false;
  }
  return true;
#else
  (void)cycles;
  (void)reset;
  return false;
#endif
}

bool LamportNormSupported(int size, int64_t cols, size_t dtype_bytes, std::initializer_list<const void*> ptrs) {
  if (size != 2 && size != 4 && size != 8) return false;
  if (cols <= 0 || (cols * static_cast<int64_t>(dtype_bytes)) % 16 != 0) return false;
  for (const void* p : ptrs) {
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

cudaError_t LaunchLamportAllReduceNorm(const Peers& peers, int rank, int size, int blocks, size_t half,
                                       const void* partial, void* x, const void* weight, const void* bias, float eps,
                                       bool rms, int64_t rows, int64_t cols, DType dtype, void* out, bool pushed,
                                       const L2Prefetch& then, cudaStream_t stream) {
  if (blocks < 1 || blocks > kMaxBlocks || rank < 0 || rank >= size || rows < 1) return cudaErrorInvalidValue;
  if (!LamportNormSupported(size, cols, DTypeSize(dtype), {partial, x, weight, bias, out})) {
    return cudaErrorInvalidValue;
  }
  return DispatchNormKernel(dtype, rms, size, [&](auto tag, auto rms_tag, auto ranks) -> cudaError_t {
    using T = decltype(tag);
    constexpr bool kRms = decltype(rms_tag)::value;
    constexpr int W = decltype(ranks)::value;
    constexpr auto kKernel = LamportAllReduceNorm<T, W, kRms>;
    AllowStagedRows<kKernel>();
    // The norm kernel's threads per row, so that the row sums run in its order (bit-identical).
    const int norm_threads = cuda::NormRowThreads(cols / kVec16<T>);
    const bool staged = RowStaged();
    const size_t smem = StagedSharedBytes(staged && cols * static_cast<int64_t>(sizeof(T)) <= kRowBufBytes, cols,
                                          sizeof(T), bias != nullptr);
    kKernel<<<blocks, kThreads, smem, stream>>>(peers, peers.base[rank], rank, half, static_cast<const T*>(partial),
                                                static_cast<T*>(x), static_cast<const T*>(weight),
                                                static_cast<const T*>(bias), eps, rows, cols, norm_threads, pushed,
                                                staged, GridPush(), then, static_cast<T*>(out));
    return cudaGetLastError();
  });
}

}  // namespace chai::ipc
