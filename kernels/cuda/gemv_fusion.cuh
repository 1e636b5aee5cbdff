// What the decode GEMV (gemv.cu) folds around its product for ops::LinearFused: the RMSNorm of its
// input rows before it (staged in shared memory once per CTA as the MMA's B operand), and after it
// the residual add or SiLU(gate) * up (in the output loop). Each piece rounds exactly as the op it
// replaces, so that the values are those of the composition (see each one for how close).
#ifndef CHAI_KERNELS_CUDA_GEMV_FUSION_CUH_
#define CHAI_KERNELS_CUDA_GEMV_FUSION_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/gemv_tile.cuh"

namespace chai::cuda::gemv {

enum class Input { kPlain, kRmsNorm };              // B = x, or RmsNorm(x)
enum class Output { kStore, kAddTo, kSiluMul };  // out = P, out += P, out = SiLU(gate) * up of P's halves

// The element in the low 16 bits of `bits` as fp32, and an fp32 value rounded to T as 16 bits.
template <typename T>
__device__ __forceinline__ float BitsToFloat(uint32_t bits);
template <>
__device__ __forceinline__ float BitsToFloat<__half>(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xffffu)));
}
template <>
__device__ __forceinline__ float BitsToFloat<__nv_bfloat16>(uint32_t bits) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(bits & 0xffffu)));
}
template <typename T>
__device__ __forceinline__ uint32_t FloatToBits(float x);
template <>
__device__ __forceinline__ uint32_t FloatToBits<__half>(float x) {
  return __half_as_ushort(FromFloat<__half>(x));
}
template <>
__device__ __forceinline__ uint32_t FloatToBits<__nv_bfloat16>(float x) {
  return __bfloat16_as_ushort(FromFloat<__nv_bfloat16>(x));
}

// Two elements (a 32-bit word: element 2i in the low half) of RmsNorm's output, with NormRow's
// expression (norm_row.cuh: (x - mean) * inv * w, mean = 0 for RMSNorm) and rounding.
template <typename T>
__device__ __forceinline__ uint32_t NormPair(uint32_t x, uint32_t w, float scale) {
  const float lo = BitsToFloat<T>(x) * scale * BitsToFloat<T>(w);
  const float hi = BitsToFloat<T>(x >> 16) * scale * BitsToFloat<T>(w >> 16);
  return FloatToBits<T>(lo) | (FloatToBits<T>(hi) << 16);
}

// scales[t] = rsqrt(mean(x[t]^2) + eps) for t < tokens (x [tokens, k], k % 8 == 0, 16-byte
// aligned), for every thread of the CTA on return. The sum of squares runs in the order of
// NormRow's for a block of norm_threads threads (NormRowThreads(k / 8), a multiple of 32, at most
// 1024), so that the scales equal those of the RmsNorm kernel: virtual thread v adds vectors v,
// v + norm_threads, ... of 8 elements in turn; each virtual warp's partial sums go through
// WarpSum, and the virtual warps' totals through a last WarpSum in warp order (BlockSum). The
// CTA's kThreads threads play the virtual threads in rounds. x is read through the read-only
// path, which leaves it in L1 for StageRmsNorm.
template <typename T, int kThreads, int kMaxTokens>
__device__ __forceinline__ void RmsScales(const T* __restrict__ x, int tokens, int64_t k, int norm_threads, float eps,
                                          float* scales) {
  __shared__ float warp_sums[kMaxTokens][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t vecs = k / 8;
  for (int base = 0; base < norm_threads; base += kThreads) {
    const int v = base + static_cast<int>(threadIdx.x);
    if (v >= norm_threads) break;  // whole warps: norm_threads and kThreads are multiples of 32
    float ss[kMaxTokens];
#pragma unroll
    for (int t = 0; t < kMaxTokens; ++t) ss[t] = 0.f;
    for (int64_t i = v; i < vecs; i += norm_threads) {
      uint4 c[kMaxTokens];  // all the tokens' loads in flight before the sums
#pragma unroll
      for (int t = 0; t < kMaxTokens; ++t) {
        if (t < tokens) c[t] = LoadCached(reinterpret_cast<const uint4*>(x + t * k) + i);
      }
#pragma unroll
      for (int t = 0; t < kMaxTokens; ++t) {
        if (t >= tokens) continue;
        const uint32_t words[4] = {c[t].x, c[t].y, c[t].z, c[t].w};
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float d = BitsToFloat<T>(words[j / 2] >> (16 * (j % 2)));
          ss[t] += d * d;
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kMaxTokens; ++t) {
      if (t >= tokens) break;
      const float s = WarpSum(ss[t]);
      if (lane == 0) warp_sums[t][v / 32] = s;
    }
  }
  __syncthreads();
  for (int t = warp; t < tokens; t += kThreads / 32) {
    const float s = WarpSum(lane < norm_threads / 32 ? warp_sums[t][lane] : 0.f);
    if (lane == 0) scales[t] = rsqrtf(s / static_cast<float>(k) + eps);
  }
  __syncthreads();
}

// Chunks per staged token row for a CTA span of `span` chunks: rounded up to 8 (128 bytes), plus
// 4, so that consecutive rows start in opposite halves of the 32 banks and the 8 lanes of a
// quarter warp (two tokens, chunks q = 0..3) read 16-byte words without a conflict.
__host__ __device__ __forceinline__ int64_t StagedStride(int64_t span) { return (span + 7) / 8 * 8 + 4; }

// B = RmsNorm(x, norm_w) for the CTA's chunks [cb, ce) of every token row, computed once per CTA
// into shared memory: staged[t * stride + (c - cb)] = T(x * scale[t] * norm_w) for chunk c.
// Ends with a barrier.
template <typename T>
__device__ __forceinline__ void StageRmsNorm(const T* __restrict__ x, const T* __restrict__ norm_w, int tokens,
                                             int64_t k, int64_t cb, int64_t ce, const float* scales, uint4* staged) {
  const int64_t span = ce > cb ? ce - cb : 0, stride = StagedStride(span);
  const uint4* wc = reinterpret_cast<const uint4*>(norm_w);
  for (int64_t e = threadIdx.x; e < tokens * span; e += blockDim.x) {
    const int t = static_cast<int>(e / span);
    const int64_t i = e - t * span;
    const uint4 xv = LoadCached(reinterpret_cast<const uint4*>(x + t * k) + cb + i), wv = LoadCached(wc + cb + i);
    const float scale = scales[t];
    staged[t * stride + i] = make_uint4(NormPair<T>(xv.x, wv.x, scale), NormPair<T>(xv.y, wv.y, scale),
                                        NormPair<T>(xv.z, wv.z, scale), NormPair<T>(xv.w, wv.w, scale));
  }
  __syncthreads();
}

// The MMA's B chunks from the staged rows: `row` is the lane's token row of `staged`, offset by
// its q; chunk c (c >= cb, from the lane's own offset as in AccumulateSpan) is row[c - cb].
struct StagedInput {
  const uint4* row;
  int64_t cb;
  using Raw = uint4;
  __device__ __forceinline__ Raw Load(int64_t c) const { return row[c - cb]; }
  __device__ __forceinline__ uint4 Finish(const Raw& raw) const { return raw; }
};

// The outputs of one CTA from its fp32 sums: sum(e) is the dot product of tile element e (token
// e / kRows, tile row e % kRows; see ConsecutiveRows and PairedHalvesRows for which W row a tile
// row streams). `first`: the CTA's first row (kStore, kAddTo) or output column (kSiluMul).
//  kStore:   out[t][row] = T(P), P = sum + bias[row], as the plain GEMV stores it;
//  kAddTo:   out[t][row] = T(out[t][row] + T(P)): Linear then ops::Add (or the add of AddRmsNorm),
//            bit for bit; out is the residual stream, updated in place (each element by one thread);
//  kSiluMul: out[t][j] = T(silu(G) * U) with G = T(P_gate), U = T(P_up) the values Linear would
//            store for gate | up rows j and half + j, then SiluMulFused's expression, bit for bit.
template <typename T, int kRows, Output kOut, typename Sum>
__device__ __forceinline__ void WriteOutputs(const Sum& sum, const T* __restrict__ bias, int tokens, int64_t n,
                                             int64_t first, T* __restrict__ out, int threads) {
  if constexpr (kOut == Output::kSiluMul) {
    constexpr int kCols = kRows / 2;
    const int64_t half = n / 2;
    for (int e = threadIdx.x; e < kCols * 8; e += threads) {
      const int t = e / kCols, jj = e % kCols;
      const int64_t j = first + jj;
      if (t >= tokens || j >= half) continue;
      const int gate = t * kRows + (jj / 8) * 16 + jj % 8;  // the up sum is 8 tile rows further on
      float pg = sum(gate), pu = sum(gate + 8);
      if (bias != nullptr) {
        pg += ToFloat(bias[j]);
        pu += ToFloat(bias[half + j]);
      }
      const float g = ToFloat(FromFloat<T>(pg)), u = ToFloat(FromFloat<T>(pu));
      out[t * half + j] = FromFloat<T>(g / (1.f + expf(-g)) * u);  // SiluMulOp (elementwise.cu)
    }
  } else {
    for (int e = threadIdx.x; e < kRows * 8; e += threads) {
      const int t = e / kRows;
      const int64_t row = first + e % kRows;
      if (t >= tokens || row >= n) continue;
      float p = sum(e);
      if (bias != nullptr) p += ToFloat(bias[row]);
      T* o = out + t * n + row;
      if constexpr (kOut == Output::kAddTo) {
        *o = FromFloat<T>(ToFloat(*o) + ToFloat(FromFloat<T>(p)));  // AddOp (elementwise.cu)
      } else {
        *o = FromFloat<T>(p);
      }
    }
  }
}

}  // namespace chai::cuda::gemv

#endif  // CHAI_KERNELS_CUDA_GEMV_FUSION_CUH_
