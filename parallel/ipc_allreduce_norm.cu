// The flag-free all-reduce fused with what follows it in every transformer sublayer: the residual
// add and the next norm. x += sum over ranks of `partial`, then out = Norm(x) (RMSNorm, or
// LayerNorm with a bias), in one kernel instead of two: at TP > 1 a decode step makes 2 per layer.
//
// The exchange is the Lamport protocol of ipc_allreduce_lamport.cu, over the same receive area and
// per-block epochs (so calls of either kernel may follow each other in any order); only the
// mapping of groups to threads differs: a block owns whole rows (row b, b + grid, ...), and thread
// t the row's 16-byte groups t, t + blockDim, ..., the same on every rank. The norm's first pass
// (NormRow, kernels/cuda/norm_row.cuh) receives each group: the ranks' partials summed in fp32 in
// rank order and rounded once (the plain kernel's all-reduce result), then added to x and rounded
// (the norm kernel's residual add), and the row's sums run over the norm kernel's thread count
// (NormRowThreads), so the output equals the unfused pair bit for bit.
// `pushed`: the producer of `partial` already wrote it into every peer's receive slot (the decode
// GEMV's mirror, kernels/peer_mirror.h, in the parity half this call's epochs pick), so the kernel
// skips its own push and only receives; the rest is the same.
#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/norm_row.cuh"
#include "parallel/ipc_allreduce_groups.cuh"
#include "parallel/ipc_allreduce_kernel.h"
#include "parallel/ipc_lamport.cuh"

namespace chai::ipc {
namespace {

using cuda::kVec16;
using cuda::LoadVec;
using cuda::StoreVec;

template <typename T, int W, bool kRms>
__global__ void __launch_bounds__(kThreads)
    LamportAllReduceNorm(Peers peers, char* self, int rank, size_t half, const T* partial, T* x, const T* weight,
                         const T* bias, float eps, int64_t rows, int64_t cols, int norm_threads, bool pushed, T* out) {
  constexpr int N = kVec16<T>;
  __shared__ uint64_t block_epoch;
  __shared__ float scratch[32];
  if (threadIdx.x == 0) {
    uint64_t* const epochs = reinterpret_cast<uint64_t*>(self + kEpochsOffset);
    block_epoch = epochs[blockIdx.x] + 1;
    epochs[blockIdx.x] = block_epoch;
  }
  __syncthreads();
  const size_t data = kDataOffset + (block_epoch & 1) * W * half;
  const int64_t vecs = cols / N;

  char* dst[W];  // slot `rank` of half p on every rank (own entry unused)
#pragma unroll
  for (int q = 0; q < W; ++q) dst[q] = peers.base[q] + data + rank * half;
  for (int64_t row = pushed ? rows : blockIdx.x; row < rows; row += gridDim.x) {
    for (int64_t i = threadIdx.x; i < vecs; i += blockDim.x) {
      const int64_t g = row * vecs + i;
      const uint4 v = NotSentinel<T>(AsBits<T, N>(LoadVec<T, N>(partial + g * N)));
#pragma unroll
      for (int q = 0; q < W; ++q) {
        if (q != rank) StoreVolatile(dst[q] + g * 16, v);
      }
    }
  }

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    T* const in = x + row * cols;
    auto first_load = [&](int64_t i) {
      const int64_t g = row * vecs + i;
      Vec<T, N> v[W];
#pragma unroll
      for (int q = 0; q < W; ++q) {
        v[q] = q == rank ? FromBits<T, N>(NotSentinel<T>(AsBits<T, N>(LoadVec<T, N>(partial + g * N))))
                         : ReceiveGroup<T, N>(self + data + q * half + g * 16, N);
      }
      const Vec<T, N> sum = RankOrderSum<T, N, W>(v);
      Vec<T, N> h = LoadVec<T, N>(in + i * N);
#pragma unroll
      for (int j = 0; j < N; ++j) h.v[j] = FromFloat<T>(ToFloat(h.v[j]) + ToFloat(sum.v[j]));
      StoreVec<T, N>(in + i * N, h);
      return h;
    };
    cuda::NormRow<T, N, kRms>(in, first_load, weight, bias, eps, cols, out + row * cols, scratch, norm_threads);
  }
}

}  // namespace

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
                                       cudaStream_t stream) {
  if (blocks < 1 || blocks > kMaxBlocks || rank < 0 || rank >= size || rows < 1) return cudaErrorInvalidValue;
  if (!LamportNormSupported(size, cols, DTypeSize(dtype), {partial, x, weight, bias, out})) {
    return cudaErrorInvalidValue;
  }
  auto launch = [&](auto tag, auto rms_tag) -> cudaError_t {
    using T = decltype(tag);
    constexpr bool kRms = decltype(rms_tag)::value;
    const auto* p = static_cast<const T*>(partial);
    auto* xp = static_cast<T*>(x);
    const auto* w = static_cast<const T*>(weight);
    const auto* b = static_cast<const T*>(bias);
    auto* o = static_cast<T*>(out);
    char* self = peers.base[rank];
    // The norm kernel's threads per row, so that the row sums run in its order (bit-identical).
    const int norm_threads = cuda::NormRowThreads(cols / kVec16<T>);
    switch (size) {
      case 2:
        LamportAllReduceNorm<T, 2, kRms><<<blocks, kThreads, 0, stream>>>(peers, self, rank, half, p, xp, w, b, eps,
                                                                          rows, cols, norm_threads, pushed, o);
        break;
      case 4:
        LamportAllReduceNorm<T, 4, kRms><<<blocks, kThreads, 0, stream>>>(peers, self, rank, half, p, xp, w, b, eps,
                                                                          rows, cols, norm_threads, pushed, o);
        break;
      case 8:
        LamportAllReduceNorm<T, 8, kRms><<<blocks, kThreads, 0, stream>>>(peers, self, rank, half, p, xp, w, b, eps,
                                                                          rows, cols, norm_threads, pushed, o);
        break;
      default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
  };
  auto by_norm = [&](auto tag) {
    return rms ? launch(tag, std::true_type{}) : launch(tag, std::false_type{});
  };
  switch (dtype) {
    case DType::kF32: return by_norm(float{});
    case DType::kF16: return by_norm(__half{});
    case DType::kBF16: return by_norm(__nv_bfloat16{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace chai::ipc
