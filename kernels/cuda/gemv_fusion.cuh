// What the decode GEMV (gemv.cu) folds around its product for ops::LinearFused: the RMSNorm of its
// input rows before it (the MMA's B operand is computed from x on the fly), and after it the
// residual add or SiLU(gate) * up (in the output loop). Each piece rounds exactly as the op it
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

// B = RmsNorm(x, norm_w) chunk by chunk: T(x * scale * norm_w), scale = the lane's token's
// rsqrt(mean(x^2) + eps) (RmsScales). x and norm_w point at chunk q of the lane's token row and
// of the norm weights.
template <typename T>
struct RmsNormInput {
  const uint4* x;
  const uint4* norm_w;
  float scale;
  struct Raw {
    uint4 x, w;
  };
  __device__ __forceinline__ Raw Load(int64_t c) const { return Raw{LoadCached(x + c), LoadCached(norm_w + c)}; }
  __device__ __forceinline__ uint4 Finish(const Raw& r) const {
    return make_uint4(NormPair<T>(r.x.x, r.w.x, scale), NormPair<T>(r.x.y, r.w.y, scale),
                      NormPair<T>(r.x.z, r.w.z, scale), NormPair<T>(r.x.w, r.w.w, scale));
  }
};

// scales[t] = rsqrt(mean(x[t]^2) + eps) for t < tokens (x [tokens, k], k % 8 == 0, 16-byte
// aligned), for every thread of the CTA on return. The sum of squares runs in the order of
// NormRow's for a block of norm_threads threads (NormRowThreads(k / 8), a multiple of 32, at most
// 1024), so that the scales equal those of the RmsNorm kernel: virtual thread v adds vectors v,
// v + norm_threads, ... of 8 elements in turn; each virtual warp's partial sums go through
// WarpSum, and the virtual warps' totals through a last WarpSum in warp order (BlockSum). The
// CTA's kThreads threads play the virtual threads in rounds. x is read through the read-only
// path, which leaves it in L1 for the main loop.
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
#pragma unroll
      for (int t = 0; t < kMaxTokens; ++t) {
        if (t >= tokens) break;
        const uint4 c = LoadCached(reinterpret_cast<const uint4*>(x + t * k) + i);
        const uint32_t words[4] = {c.x, c.y, c.z, c.w};
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
