// The fused all-reduce + residual add + norm (ipc_allreduce_norm.cu) with a decode row's 16-byte
// groups spread over the whole grid instead of one block per row; chosen by
// CHAI_IPC_ALLREDUCE_NORM_SPLIT=1 (IpcAllReduce), off until measured against the other.
//
// Why: at batch 1 the other kernel moves everything through one SM: the push of the row to every
// peer, the ranks' partials in, the sentinels and x out (~200 KB at OPT-66B's 9216 columns on 4
// ranks), and on 4 x H200 it takes 8.6 us a call there against ~4 us for the plain all-reduce of
// the same bytes over 32 blocks (benchmarks/results/opt-66b-tp4-h200.md). Here block b owns the
// contiguous groups [b * chunk, (b + 1) * chunk) of the message, the same on every rank
// (norm_split_plan.h, unit-tested): it pushes them to every peer, receives them (ReceiveBatch:
// every load in flight, x += the rank-order sum), and counts itself in on each row it touched
// (cuda::LastArrival). The last block of a row copies
// the row and the norm's weights into shared memory (cp.async.cg: from L2, past its own L1, which
// may hold lines of the row from before the other blocks wrote it) and runs the norm there with the
// norm kernel's thread count and order (NormRow), so the output is the unfused pair's bit for bit.
//
// No block waits for another block of its own rank: the exchange pairs the same block on every
// rank, as the plain all-reduce does, and the rendezvous only elects the last arrival.
#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/l2_prefetch.cuh"
#include "kernels/cuda/norm_row.cuh"
#include "kernels/cuda/pdl.cuh"
#include "parallel/ipc_allreduce_groups.cuh"
#include "parallel/ipc_allreduce_kernel.h"
#include "parallel/ipc_allreduce_norm_parts.cuh"
#include "parallel/ipc_lamport.cuh"
#include "parallel/norm_split_plan.h"

namespace chai::ipc {
namespace {

using cuda::kVec16;

template <typename T, int W, bool kRms>
__global__ void __launch_bounds__(kThreads)
    LamportAllReduceNormSplit(Peers peers, char* self, int rank, size_t half, const T* partial, T* x,
                              const T* weight, const T* bias, float eps, int64_t rows, int64_t cols, int norm_threads,
                              const L2Prefetch then, T* out) {
  constexpr int N = kVec16<T>;
  constexpr int B = kBatch<T, W>;
  __shared__ float scratch[32];
  extern __shared__ uint4 staged_smem[];  // a row's last block: [row | weight | bias], StagedSharedBytes
  // Every thread reads the block's epoch; thread 0 stores the next one at the end.
  uint64_t* const epochs = reinterpret_cast<uint64_t*>(self + kEpochsOffset);
  const uint64_t epoch = epochs[blockIdx.x] + 1;
  const size_t data = kDataOffset + (epoch & 1) * W * half;
  const int64_t vecs = cols / N, groups = rows * vecs;
  const int64_t chunk = norm_split::Chunk(groups, gridDim.x);
  const norm_split::Range owned = norm_split::Owned(groups, gridDim.x, blockIdx.x);
  const int64_t g0 = owned.begin, g1 = owned.end;
  const int64_t thread = int64_t{blockIdx.x} * blockDim.x + threadIdx.x, threads = int64_t{gridDim.x} * blockDim.x;

  // Hints: the next GEMV's first weights, and a share of the norm's weight lines for the rows'
  // last blocks (evicted from L2 by the layer's weight stream since the last step).
  cuda::IssueL2Prefetch(then, threadIdx.x * int64_t{gridDim.x} + blockIdx.x, threads);
  constexpr int64_t kLine = 128 / sizeof(T);
  for (int64_t e = thread * kLine; e < cols; e += threads * kLine) {
    cuda::PrefetchL2(weight + e);
    if (bias != nullptr) cuda::PrefetchL2(bias + e);
  }

  // The push: B of a thread's groups loaded before any is sent to slot `rank` of every peer.
  char* dst[W];
#pragma unroll
  for (int q = 0; q < W; ++q) dst[q] = peers.base[q] + data + rank * half;
  for (int64_t g = g0 + threadIdx.x; g < g1; g += int64_t{blockDim.x} * B) {
    uint4 v[B];
#pragma unroll
    for (int b = 0; b < B; ++b) {
      const int64_t gb = g + b * int64_t{blockDim.x};
      if (gb < g1) v[b] = NotSentinel<T>(AsBits<T, N>(cuda::LoadVec<T, N>(partial + gb * N)));
    }
#pragma unroll
    for (int b = 0; b < B; ++b) {
      const int64_t gb = g + b * int64_t{blockDim.x};
      if (gb >= g1) continue;
#pragma unroll
      for (int q = 0; q < W; ++q) {
        if (q != rank) StoreVolatile(dst[q] + gb * 16, v[b]);
      }
    }
  }
  // The receive, x += the ranks' sum for the block's groups (the message as row 0 of g1 groups).
  for (int64_t g = g0 + threadIdx.x; g < g1; g += int64_t{blockDim.x} * B) {
    ReceiveBatch<T, N, W>(self, data, half, rank, partial, x, /*row=*/0, /*vecs=*/g1, g, blockDim.x, nullptr);
  }

  // Each row the block wrote into: the last of the row's blocks to arrive normalises it.
  int* const counters = reinterpret_cast<int*>(self + kSplitCountersOffset);
  const norm_split::Range touched = norm_split::RowsTouched(owned, vecs);
  for (int64_t row = touched.begin; row < touched.end; ++row) {
    if (!cuda::LastArrival(counters + row, norm_split::Arrivals(row, vecs, chunk))) continue;
    T* const buf = reinterpret_cast<T*>(staged_smem);
    T* const w_buf = buf + cols;
    T* const b_buf = w_buf + cols;
    for (int64_t i = threadIdx.x; i < vecs; i += blockDim.x) {
      CopyToShared16(buf + i * N, x + row * cols + i * N);
      CopyToShared16(w_buf + i * N, weight + i * N);
      if (bias != nullptr) CopyToShared16(b_buf + i * N, bias + i * N);
    }
    WaitCopiesToShared();
    __syncthreads();  // the row and the weights are in shared memory
    cuda::NormRow<T, N, kRms, 1>(buf, [&](int64_t i) { return cuda::LoadVec<T, N>(buf + i * N); }, w_buf,
                                 bias != nullptr ? b_buf : nullptr, eps, cols, out + row * cols, scratch, norm_threads,
                                 blockDim.x);
    __syncthreads();  // buf is read before another row of this block overwrites it
  }
  __syncthreads();  // every thread has read the epoch; the next call of this block is stream-ordered
  if (threadIdx.x == 0) epochs[blockIdx.x] = epoch;
}

}  // namespace

bool LamportNormSplits(int blocks, int64_t rows, int64_t cols, size_t dtype_bytes) {
  return rows >= 1 && rows <= kMaxSplitRows && 2 * rows <= blocks &&
         cols * static_cast<int64_t>(dtype_bytes) <= kRowBufBytes;
}

cudaError_t LaunchLamportAllReduceNormSplit(const Peers& peers, int rank, int size, int blocks, size_t half,
                                            const void* partial, void* x, const void* weight, const void* bias,
                                            float eps, bool rms, int64_t rows, int64_t cols, DType dtype, void* out,
                                            const L2Prefetch& then, cudaStream_t stream) {
  if (blocks < 1 || blocks > kMaxBlocks || rank < 0 || rank >= size) return cudaErrorInvalidValue;
  if (!LamportNormSupported(size, cols, DTypeSize(dtype), {partial, x, weight, bias, out}) ||
      !LamportNormSplits(blocks, rows, cols, DTypeSize(dtype))) {
    return cudaErrorInvalidValue;
  }
  return DispatchNormKernel(dtype, rms, size, [&](auto tag, auto rms_tag, auto ranks) -> cudaError_t {
    using T = decltype(tag);
    constexpr bool kRms = decltype(rms_tag)::value;
    constexpr int W = decltype(ranks)::value;
    constexpr auto kKernel = LamportAllReduceNormSplit<T, W, kRms>;
    AllowStagedRows<kKernel>();
    // The norm kernel's threads per row, so that the row sums run in its order (bit-identical).
    const int norm_threads = cuda::NormRowThreads(cols / kVec16<T>);
    const size_t smem = StagedSharedBytes(true, cols, sizeof(T), bias != nullptr);
    kKernel<<<blocks, kThreads, smem, stream>>>(peers, peers.base[rank], rank, half, static_cast<const T*>(partial),
                                                static_cast<T*>(x), static_cast<const T*>(weight),
                                                static_cast<const T*>(bias), eps, rows, cols, norm_threads, then,
                                                static_cast<T*>(out));
    return cudaGetLastError();
  });
}

}  // namespace chai::ipc
