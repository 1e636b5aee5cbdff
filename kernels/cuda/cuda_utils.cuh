// Device-side helpers shared by the element-wise, norm, embedding and rotary kernels: the
// storage types of each DType, fp32 conversions, 16-byte vectors and block reductions.
#ifndef CHAI_KERNELS_CUDA_CUDA_UTILS_CUH_
#define CHAI_KERNELS_CUDA_CUDA_UTILS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"

namespace chai::cuda {

// Storage <-> fp32. All arithmetic happens in fp32.
__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// N elements moved as one aligned access (N * sizeof(T) == 16 for the wide path).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> LoadVec(const T* p) {
  return *reinterpret_cast<const Vec<T, N>*>(p);
}
template <typename T, int N>
__device__ __forceinline__ void StoreVec(T* p, const Vec<T, N>& v) {
  *reinterpret_cast<Vec<T, N>*>(p) = v;
}

// Elements per 16-byte access.
template <typename T>
constexpr int kVec16 = 16 / sizeof(T);

// True when every pointer is aligned to `bytes` (host side, for choosing the vector path).
inline bool Aligned(size_t bytes, std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs) {
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % bytes != 0) return false;
  }
  return true;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum (or max) over the block, returned to every thread. blockDim.x must be a multiple of 32
// (at most 1024). `scratch` holds 32 floats; the leading barrier lets callers reuse it.
template <bool kMax>
__device__ __forceinline__ float BlockReduce(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = kMax ? WarpMax(v) : WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.f);
  return kMax ? WarpMax(v) : WarpSum(v);
}
__device__ __forceinline__ float BlockSum(float v, float* scratch) { return BlockReduce<false>(v, scratch); }
__device__ __forceinline__ float BlockMax(float v, float* scratch) { return BlockReduce<true>(v, scratch); }

// A rendezvous of `arrivals` CTAs on one counter: true in every thread of the CTA that arrives
// last, which then owns what the others wrote before arriving and resets the counter for the next
// call (launches and graph replays see it at zero). Every thread of each CTA must call it.
// Ordering (PTX memory model): the barrier orders every thread's writes before thread 0's count,
// an acquire-release atomic at GPU scope, whose release is cumulative over what the barrier
// ordered before it; in the last CTA its acquire, then the second barrier, order the count before
// every thread's reads of the others' writes (reads that bypass L1, or of lines this CTA never
// cached: L1 is not coherent). One thread's fenced atomic instead of a __threadfence() in every
// thread: at batch 1 decode attention's 128 fences were ~9% of a CTA's samples.
__device__ __forceinline__ bool LastArrival(int* counter, int arrivals) {
  __shared__ int s_last;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  __syncthreads();
  if (threadIdx.x == 0) {
    int before;
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(before) : "l"(counter) : "memory");
    s_last = before == arrivals - 1;
  }
  __syncthreads();
#else  // before the scoped memory model: a fence in every thread on both sides
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(counter, 1) == arrivals - 1;
  __syncthreads();
  __threadfence();
#endif
  if (!s_last) return false;
  if (threadIdx.x == 0) *counter = 0;
  return true;
}

// Calls f(T{}) with T the storage type of a float dtype.
template <typename F>
void DispatchFloat(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kF32:
      f(float{});
      return;
    case DType::kF16:
      f(__half{});
      return;
    case DType::kBF16:
      f(__nv_bfloat16{});
      return;
    default:
      std::fprintf(stderr, "chai: internal error in CUDA op %s: unsupported dtype %s\n", op, DTypeName(dtype));
      std::abort();
  }
}

// Threads per block for a row of `items` vectors: a multiple of 32 in [32, max_threads].
inline int RowThreads(int64_t items, int max_threads) {
  int64_t t = (items + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > max_threads) t = max_threads;
  return static_cast<int>(t);
}

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_CUDA_UTILS_CUH_
