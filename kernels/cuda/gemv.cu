// Skinny GEMM for decode: out[T, N] = x[T, K] * W[N, K]^T (+ bias[N]) for T <= 8, fp16/bf16.
//
// At decode the product is a stream over W (N * K elements read once); x is T * K, tiny. The
// kernel is built to keep many 16-byte loads of W in flight and to spend almost no issue slots
// on arithmetic, so that it runs at the memory system's rate.
//
// Arithmetic on the tensor cores (mma.sync m16n8k16, fp32 accumulation). The MMA's k order is
// free: a dot product does not care in which order its terms are summed, so long as A and B use
// the same order. In the m16n8k16 fragments, lane (g = lane / 4, q = lane % 4) holds A[g][k] and
// A[g + 8][k] and B[k][g] for the same four k slots {2q, 2q + 1, 2q + 8, 2q + 9}. So one 16-byte
// load of W row g (8 consecutive k), one of W row g + 8 and one of x row g (the same 8 k) fill
// A and B of two MMAs, with no shuffles and no shared memory:
//   A = W tile [16 rows, 16 k], B = x^T [16 k, 8 tokens], C[row][token] in fp32.
// Tokens past T read x row T - 1 (their C columns are discarded), rows past N read row N - 1
// (discarded), so the main loop has no predicates; only the K tail (K / 8 not a multiple of the
// per-step width) is predicated.
//
// Work split: a CTA owns 16 * R consecutive rows; its warps split K. A warp step covers 4 chunks
// of 8 k (64 bytes) of each of the CTA's rows; a warp handles U consecutive steps per iteration
// (U * 64 contiguous bytes per row, 2 * R * U independent 16-byte W loads per thread in flight),
// iterations interleaved over the warps. The warps' partial C tiles are summed in shared memory
// in warp order (deterministic), the bias is added and T * 16R outputs are written.
//
// W is read with ld.global.nc.L1::no_allocate (read once; keeps x resident in L1) and the
// L2::256B prefetch hint; x with ld.global.nc (L1-cached: every CTA of an SM reads all of x).
// No allocation, no synchronisation: graph-capturable.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/internal.h"

namespace chai::cuda {
namespace {

__device__ __forceinline__ uint4 LoadStream(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ uint4 LoadCached(const uint4* p) { return __ldg(p); }

template <typename T>
__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                    uint32_t b1);

template <>
__device__ __forceinline__ void Mma<__half>(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                            uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void Mma<__nv_bfloat16>(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                   uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 16 rows x 8 k-chunk pair: wa = 8 k of row g, wb = the same 8 k of row g + 8, xv = those 8 k of
// token g. Elements 0-3 go to the first MMA (slots 2q, 2q+1 <- 0, 1; 2q+8, 2q+9 <- 2, 3), 4-7
// to the second; two accumulators halve the MMA dependency chain.
template <typename T>
__device__ __forceinline__ void MmaChunk(float (&c0)[4], float (&c1)[4], const uint4& wa, const uint4& wb,
                                         const uint4& xv) {
  Mma<T>(c0, wa.x, wb.x, wa.y, wb.y, xv.x, xv.y);
  Mma<T>(c1, wa.z, wb.z, wa.w, wb.w, xv.z, xv.w);
}

// kMinBlocks: CTAs per SM the register budget must allow. It also makes ptxas issue all of an
// iteration's loads before the first MMA; without it ptxas caps registers near 64 and
// interleaves loads with MMAs, leaving only 5-6 loads in flight per thread.
template <typename T, int kWarps, int kR, int kU, int kMinBlocks>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    GemvKernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ out,
               int tokens, int64_t k, int64_t n) {
  constexpr int kRows = 16 * kR;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t chunks = k / 8;  // 16-byte chunks per row

  // Lane pointers at chunk q of its rows (clamped to the last row) and of its token's x row.
  const uint4* wp[kR][2];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = row0 + r * 16 + h * 8 + g < n ? row0 + r * 16 + h * 8 + g : n - 1;
      wp[r][h] = reinterpret_cast<const uint4*>(w + row * k) + q;
    }
  }
  const uint4* xp = reinterpret_cast<const uint4*>(x + static_cast<int64_t>(g < tokens ? g : tokens - 1) * k) + q;

  float acc[kR][2][4];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[r][0][i] = acc[r][1][i] = 0.f;
  }

  constexpr int kGroup = 4 * kU;  // chunks per warp iteration
  const int64_t groups = chunks / kGroup;
#pragma unroll 1
  for (int64_t grp = warp; grp < groups; grp += kWarps) {
    const int64_t c0 = grp * kGroup;
    uint4 xv[kU], wv[kU][kR][2];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        wv[u][r][0] = LoadStream(wp[r][0] + c0 + 4 * u);
        wv[u][r][1] = LoadStream(wp[r][1] + c0 + 4 * u);
      }
      xv[u] = LoadCached(xp + c0 + 4 * u);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
#pragma unroll
      for (int r = 0; r < kR; ++r) MmaChunk<T>(acc[r][0], acc[r][1], wv[u][r][0], wv[u][r][1], xv[u]);
    }
  }
  // The K tail: fewer than kGroup chunks, taken by the warp next in the rotation. Chunks past the
  // end contribute zeros (both operands, so no 0 * NaN from whatever lies beyond).
  if (groups * kGroup < chunks && warp == groups % kWarps) {
    const int64_t c0 = groups * kGroup;
    const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const bool valid = c0 + 4 * u + q < chunks;
      uint4 xv = zero, wv[kR][2];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        wv[r][0] = valid ? LoadStream(wp[r][0] + c0 + 4 * u) : zero;
        wv[r][1] = valid ? LoadStream(wp[r][1] + c0 + 4 * u) : zero;
      }
      if (valid) xv = LoadCached(xp + c0 + 4 * u);
#pragma unroll
      for (int r = 0; r < kR; ++r) MmaChunk<T>(acc[r][0], acc[r][1], wv[r][0], wv[r][1], xv);
    }
  }

  // Sum the warps' C tiles in a fixed order. C fragment: c[0], c[1] = (row g, tokens 2q, 2q + 1),
  // c[2], c[3] = (row g + 8, tokens 2q, 2q + 1).
  __shared__ float partial[kWarps][kR * 128];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][r * 128 + lane * 4 + i] = acc[r][0][i] + acc[r][1][i];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kRows * 8; e += kWarps * 32) {
    const int t = e / kRows, rr = e % kRows;  // consecutive threads: consecutive rows of one token
    const int64_t row = row0 + rr;
    if (t >= tokens || row >= n) continue;
    const int r = rr / 16, m = rr % 16;
    const int idx = r * 128 + ((m % 8) * 4 + t / 2) * 4 + (m / 8) * 2 + (t & 1);
    float s = 0.f;
#pragma unroll
    for (int v = 0; v < kWarps; ++v) s += partial[v][idx];
    if (bias != nullptr) s += ToFloat(bias[row]);
    out[t * n + row] = FromFloat<T>(s);
  }
}

using LaunchFn = void (*)(const void* x, const void* w, const void* bias, void* out, int tokens, int64_t k,
                          int64_t n);

template <typename T, int kWarps, int kR, int kU, int kMinBlocks>
void LaunchGemv(const void* x, const void* w, const void* bias, void* out, int tokens, int64_t k, int64_t n) {
  const int64_t blocks = (n + 16 * kR - 1) / (16 * kR);
  GemvKernel<T, kWarps, kR, kU, kMinBlocks><<<static_cast<unsigned>(blocks), kWarps * 32, 0, CurrentStream()>>>(
      static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), static_cast<T*>(out), tokens,
      k, n);
  CHAI_CUDA_CHECK_LAUNCH();
}

struct Variant {
  const char* name;
  LaunchFn f16, bf16;
};

template <int kWarps, int kR, int kU, int kMinBlocks>
constexpr Variant MakeVariant(const char* name) {
  return Variant{name, &LaunchGemv<__half, kWarps, kR, kU, kMinBlocks>,
                 &LaunchGemv<__nv_bfloat16, kWarps, kR, kU, kMinBlocks>};
}

// name: warps per CTA (w), rows per CTA (r), steps per warp iteration (u; 16-byte W loads in
// flight per thread = 2 * r / 16 * u), CTAs per SM the registers allow (b).
const Variant kVariants[] = {
    MakeVariant<8, 1, 4, 3>("w8.r16.u4.b3"),    //
    MakeVariant<8, 1, 2, 4>("w8.r16.u2.b4"),    //
    MakeVariant<8, 1, 8, 2>("w8.r16.u8.b2"),    //
    MakeVariant<4, 1, 4, 6>("w4.r16.u4.b6"),    //
    MakeVariant<8, 2, 2, 3>("w8.r32.u2.b3"),    //
    MakeVariant<16, 1, 2, 2>("w16.r16.u2.b2"),  //
    MakeVariant<4, 2, 4, 4>("w4.r32.u4.b4"),    //
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);

// The default: first guess, to be replaced by the variant the benchmark finds fastest.
int ChooseVariant(int64_t /*tokens*/, int64_t /*k*/, int64_t /*n*/) { return 0; }

}  // namespace

bool GemvApplies(const Tensor& x, const Tensor& weight) {
  const DType dtype = x.dtype();
  if (dtype != DType::kF16 && dtype != DType::kBF16) return false;
  if (weight.dtype() != dtype) return false;
  const int64_t tokens = x.dim(0), k = x.dim(1);
  if (tokens < 1 || tokens > kGemvMaxTokens || k % 8 != 0) return false;
  return Aligned(16, {x.raw(), weight.raw()});
}

int GemvNumVariants() { return kNumVariants; }

const char* GemvVariantName(int variant) {
  return variant >= 0 && variant < kNumVariants ? kVariants[variant].name : "auto";
}

void Gemv(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out, int variant) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (tokens == 0 || n == 0) return;
  if (!GemvApplies(x, weight)) {
    std::fprintf(stderr, "chai: internal error in CUDA op Linear: GEMV called on %s x %s (unaligned or unsupported)\n",
                 x.ShapeString().c_str(), weight.ShapeString().c_str());
    std::abort();
  }
  if (variant < 0 || variant >= kNumVariants) variant = ChooseVariant(tokens, k, n);
  const Variant& v = kVariants[variant];
  const LaunchFn fn = x.dtype() == DType::kF16 ? v.f16 : v.bf16;
  fn(x.raw(), weight.raw(), bias.defined() ? bias.raw() : nullptr, out->raw(), static_cast<int>(tokens), k, n);
}

}  // namespace chai::cuda
