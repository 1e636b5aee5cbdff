// Pieces of the fused IPC all-reduce + add + norm kernel (ipc_allreduce_norm.cu): the
// shared-memory staging of a row and its norm weights, the batched receive of a thread's groups and
// the launcher's dispatch over dtype, norm and rank count. Internal to parallel/.
#ifndef CHAI_PARALLEL_IPC_ALLREDUCE_NORM_PARTS_CUH_
#define CHAI_PARALLEL_IPC_ALLREDUCE_NORM_PARTS_CUH_

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/norm_row.cuh"
#include "kernels/cuda/pdl.cuh"  // PrefetchL2
#include "kernels/cuda/per_device_once.h"
#include "parallel/ipc_allreduce_groups.cuh"
#include "parallel/ipc_allreduce_kernel.h"
#include "parallel/ipc_lamport.cuh"

namespace chai::ipc {

// Shared memory for one row received whole before its norm (16-bit rows of up to 16384 columns).
constexpr int kRowBufBytes = 32 * 1024;

// Vectors a thread receives at once (ReceiveBatch): with W ranks, B * W 16-byte loads in flight.
// As many as fit 128 registers (__launch_bounds__(kThreads) = 512) without spilling (ptxas -v,
// nvcc 13, sm_90): a 9216-column fp16 row (1152 vectors) is received in one round at W = 4.
template <typename T, int W>
constexpr int kBatch = W <= 2 ? (sizeof(T) == 4 ? 3 : 4) : W <= 4 ? (std::is_same_v<T, __half> ? 3 : 2) : 1;

// Dynamic shared memory of a launch: the staged row, the norm's weight and bias (when there is one)
// of cols elements each; none when rows are not staged.
inline size_t StagedSharedBytes(bool whole_row, int64_t cols, size_t dtype_bytes, bool bias) {
  return whole_row ? (bias ? 3 : 2) * static_cast<size_t>(cols) * dtype_bytes : 0;
}

// 16 bytes global -> shared, without passing through registers; complete after WaitCopiesToShared.
__device__ __forceinline__ void CopyToShared16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n"
               ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(dst))), "l"(__cvta_generic_to_global(src))
               : "memory");
}
__device__ __forceinline__ void WaitCopiesToShared() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// Receives vectors i0, i0 + stride, ... (up to kBatch<T, W> of them, those below vecs) of row `row`:
// each the ranks' partials summed in rank order and rounded once, added to x and rounded (the
// fallback's first_load in ipc_allreduce_norm.cu, which the norm kernel's rounding also follows),
// stored into x and into buf. Every load is issued before any is waited on;
// peers' slots not yet written are polled again until they are, then each slot gets its sentinel
// back.
template <typename T, int N, int W>
__device__ __forceinline__ void ReceiveBatch(char* self, size_t data, size_t half, int rank, const T* partial,
                                             T* in, int64_t row, int64_t vecs, int64_t i0, int64_t stride, T* buf) {
  constexpr int B = kBatch<T, W>;
  uint4 own[B], got[B][W];  // (rank varies at run time: got is indexed by unrolled q only)
  Vec<T, N> h[B];
  bool pending[B][W];
#pragma unroll
  for (int b = 0; b < B; ++b) {
    const int64_t i = i0 + b * stride;
    if (i < vecs) {
      own[b] = NotSentinel<T>(AsBits<T, N>(cuda::LoadVec<T, N>(partial + (row * vecs + i) * N)));
      h[b] = cuda::LoadVec<T, N>(in + i * N);
    }
#pragma unroll
    for (int q = 0; q < W; ++q) pending[b][q] = i < vecs && q != rank;
  }
  for (bool waiting = true; waiting;) {
#pragma unroll
    for (int b = 0; b < B; ++b) {
#pragma unroll
      for (int q = 0; q < W; ++q) {
        if (pending[b][q]) got[b][q] = LoadVolatile(self + data + q * half + (row * vecs + i0 + b * stride) * 16);
      }
    }
    waiting = false;
#pragma unroll
    for (int b = 0; b < B; ++b) {
#pragma unroll
      for (int q = 0; q < W; ++q) {
        if (!pending[b][q]) continue;
        bool sentinel = false;
#pragma unroll
        for (int j = 0; j < N; ++j) sentinel |= IsSentinel<T>(Bits<T>(got[b][q], j));
        pending[b][q] = sentinel;
        waiting |= sentinel;
      }
    }
  }
#pragma unroll
  for (int b = 0; b < B; ++b) {
    const int64_t i = i0 + b * stride;
    if (i >= vecs) continue;
    Vec<T, N> v[W];
#pragma unroll
    for (int q = 0; q < W; ++q) {
      if (q != rank) {
        StoreVolatile(self + data + q * half + (row * vecs + i) * 16,
                      make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord));
      }
      v[q] = FromBits<T, N>(q == rank ? own[b] : got[b][q]);
    }
    h[b] = cuda::AddRounded<T, N>(h[b], RankOrderSum<T, N, W>(v));
    cuda::StoreVec<T, N>(in + i * N, h[b]);
    cuda::StoreVec<T, N>(buf + i * N, h[b]);
  }
}

// Where a row's block reads the norm's weight and bias from.
template <typename T>
struct NormWeights {
  const T* weight;
  const T* bias;  // null for RMSNorm
};

// The norm's weights, which no earlier kernel writes, fetched while the row is received (they were
// evicted from L2 by the layer's weight stream since the last step: read by the last pass
// instead, they were a DRAM round trip per vector there): copied into shared memory at `staged`
// ([weight | bias], cols elements each; complete after WaitCopiesToShared), or, when staged is
// null (rows too wide to stage), prefetched into L2 and read from global memory.
template <typename T, int N>
__device__ __forceinline__ NormWeights<T> FetchNormWeights(const T* weight, const T* bias, int64_t cols, T* staged) {
  if (staged == nullptr) {
    constexpr int64_t kLine = 128 / sizeof(T);
    for (int64_t e = threadIdx.x * kLine; e < cols; e += int64_t{blockDim.x} * kLine) {
      cuda::PrefetchL2(weight + e);
      if (bias != nullptr) cuda::PrefetchL2(bias + e);
    }
    return NormWeights<T>{weight, bias};
  }
  T* const b_staged = staged + cols;
  for (int64_t i = threadIdx.x; i < cols / N; i += blockDim.x) {
    CopyToShared16(staged + i * N, weight + i * N);
    if (bias != nullptr) CopyToShared16(b_staged + i * N, bias + i * N);
  }
  return NormWeights<T>{staged, bias != nullptr ? b_staged : nullptr};
}

// The push: groups [0, groups) of `partial` (16 bytes each) into slot `rank` of half `data` on every
// peer, at group offset `base` there; this thread takes groups start, start + stride, ..., B of them
// loaded before any is sent (a volatile store orders the loads after it). Sentinel bit patterns
// are nudged off the sentinel (NotSentinel), so the receiver cannot mistake data for "not yet".
template <typename T, int N, int W>
__device__ __forceinline__ void PushGroups(const Peers& peers, size_t data, size_t half, int rank, const T* partial,
                                           int64_t groups, int64_t start, int64_t stride, int64_t base = 0) {
  constexpr int B = kBatch<T, W>;
  char* dst[W];  // slot `rank` of the half on every rank (own entry unused)
#pragma unroll
  for (int q = 0; q < W; ++q) dst[q] = peers.base[q] + data + rank * half + base * 16;
  for (int64_t g0 = start; g0 < groups; g0 += stride * B) {
    uint4 v[B];
#pragma unroll
    for (int b = 0; b < B; ++b) {
      const int64_t g = g0 + b * stride;
      if (g < groups) v[b] = NotSentinel<T>(AsBits<T, N>(cuda::LoadVec<T, N>(partial + g * N)));
    }
#pragma unroll
    for (int b = 0; b < B; ++b) {
      const int64_t g = g0 + b * stride;
      if (g >= groups) continue;
#pragma unroll
      for (int q = 0; q < W; ++q) {
        if (q != rank) StoreVolatile(dst[q] + g * 16, v[b]);
      }
    }
  }
}

// Lets the kernel take a staged row's dynamic shared memory above the default 48 KB ([row | weight |
// bias] of a 32 KB row: 96 KB; OPT-66B's rows stage 54 KB), once per kernel and device. The first
// step of each shape runs eagerly (runtime/engine_step.cc), so this runs before any graph capture.
template <auto kKernel>
void AllowStagedRows() {
  static cuda::PerDeviceOnce once;
  once.Run([] {
    CHAI_CUDA_CHECK(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 3 * kRowBufBytes));
  });
}

// The launchers' dispatch: f(T{}, std::bool_constant<kRms>{}, std::integral_constant<int, W>{}) for
// the dtype, the norm and the rank count (2, 4 or 8); cudaErrorInvalidValue for any other.
template <typename F>
cudaError_t DispatchNormKernel(DType dtype, bool rms, int size, F&& f) {
  auto by_size = [&](auto tag, auto rms_tag) -> cudaError_t {
    switch (size) {
      case 2: return f(tag, rms_tag, std::integral_constant<int, 2>{});
      case 4: return f(tag, rms_tag, std::integral_constant<int, 4>{});
      case 8: return f(tag, rms_tag, std::integral_constant<int, 8>{});
      default: return cudaErrorInvalidValue;
    }
  };
  auto by_norm = [&](auto tag) {
    return rms ? by_size(tag, std::true_type{}) : by_size(tag, std::false_type{});
  };
  switch (dtype) {
    case DType::kF32: return by_norm(float{});
    case DType::kF16: return by_norm(__half{});
    case DType::kBF16: return by_norm(__nv_bfloat16{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace chai::ipc

#endif  // CHAI_PARALLEL_IPC_ALLREDUCE_NORM_PARTS_CUH_
