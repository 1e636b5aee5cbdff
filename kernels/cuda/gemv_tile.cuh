// The tile arithmetic of the decode GEMV (gemv.cu, which explains the layout): streaming loads
// of W, the m16n8k16 MMAs, one CTA's pass over a range of K for its 16 * kR rows, and the
// fixed-order sum of the warps' C tiles.
#ifndef CHAI_KERNELS_CUDA_GEMV_TILE_CUH_
#define CHAI_KERNELS_CUDA_GEMV_TILE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace chai::cuda::gemv {

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

// Adds chunks [cb, ce) of rows row0 .. row0 + 16 * kR (past n: row n - 1, discarded later) times
// the tokens' x into acc (zeroed by the caller). Warps take the groups of 4 * kU chunks in turn;
// the K tail (fewer than a group of chunks, only at the end of K) goes to the warp next in the
// rotation, predicated.
template <typename T, int kWarps, int kR, int kU>
__device__ __forceinline__ void AccumulateSpan(const T* __restrict__ x, const T* __restrict__ w, int tokens, int64_t k,
                                               int64_t n, int64_t row0, int64_t cb, int64_t ce,
                                               float (&acc)[kR][2][4]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int64_t span = ce > cb ? ce - cb : 0;

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

  constexpr int kGroup = 4 * kU;  // chunks per warp iteration
  const int64_t groups = span / kGroup;
#pragma unroll 1
  for (int64_t grp = warp; grp < groups; grp += kWarps) {
    const int64_t c0 = cb + grp * kGroup;
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
  // The K tail. Chunks past the end contribute zeros (both operands, so no 0 * NaN from whatever
  // lies beyond).
  if (groups * kGroup < span && warp == groups % kWarps) {
    const int64_t c0 = cb + groups * kGroup;
    const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const bool valid = c0 + 4 * u + q < ce;
      uint4 xv = zero, wv[kR][2];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        wv[r][0] = valid ? LoadStream(wp[r][0] + c0 + 4 * u) : zero;
        wv[r][1] = valid ? LoadStream(wp[r][1] + c0 + 4 * u) : zero;
      }
      if (valid) xv = LoadCached(xp + c0 + 4 * u);
      __syncwarp();  // mma.sync.aligned: the whole warp, converged
#pragma unroll
      for (int r = 0; r < kR; ++r) MmaChunk<T>(acc[r][0], acc[r][1], wv[r][0], wv[r][1], xv);
    }
  }
}

// L2 prefetch of the first 64 bytes (4 chunks) of each of the rows row0 .. row0 + 16 * kR in the
// first group this warp streams in AccumulateSpan (chunks from cb + warp * 4 * kU, none at or past
// ce): 16 * kR * 64 bytes per warp, 8 KB for a CTA of 8 warps and 16 rows. Issued under PDL
// before griddepcontrol.wait, while the previous kernel drains, so the first loads find their
// lines in L2 or on the way. W only: it is never written while steps run. A hint; it changes no
// result.
template <typename T, int kWarps, int kR, int kU>
__device__ __forceinline__ void PrefetchFirstTile(const T* w, int64_t k, int64_t n, int64_t row0, int64_t cb,
                                                  int64_t ce) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int64_t c = cb + int64_t{warp} * (4 * kU) + q;
  if (c >= ce) return;
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = row0 + r * 16 + h * 8 + g < n ? row0 + r * 16 + h * 8 + g : n - 1;
      const uint4* p = reinterpret_cast<const uint4*>(w + row * k) + c;
      asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
    }
  }
}

// Stores each warp's C tile into partial[warp] and waits for the whole CTA. C fragment: c[0],
// c[1] = (row g, tokens 2q, 2q + 1), c[2], c[3] = (row g + 8, tokens 2q, 2q + 1).
template <int kWarps, int kR>
__device__ __forceinline__ void StoreWarpTiles(const float (&acc)[kR][2][4], float (*partial)[kR * 128]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][r * 128 + lane * 4 + i] = acc[r][0][i] + acc[r][1][i];
  }
  __syncthreads();
}

// The CTA's sum for its output e (token e / (16 kR), row e % (16 kR)): the warps' tiles added in
// warp order, so the result does not depend on timing.
template <int kWarps, int kR>
__device__ __forceinline__ float TileSum(const float (*partial)[kR * 128], int e) {
  constexpr int kRows = 16 * kR;
  const int t = e / kRows, rr = e % kRows, r = rr / 16, m = rr % 16;
  const int idx = r * 128 + ((m % 8) * 4 + t / 2) * 4 + (m / 8) * 2 + (t & 1);
  float s = 0.f;
#pragma unroll
  for (int v = 0; v < kWarps; ++v) s += partial[v][idx];
  return s;
}

}  // namespace chai::cuda::gemv

#endif  // CHAI_KERNELS_CUDA_GEMV_TILE_CUH_
