// The tile arithmetic of the decode GEMV (gemv_kernel.cuh, which explains the layout): streaming loads
// of W, the m16n8k16 MMAs, one CTA's pass over a range of K for its 16 * kR rows, and the
// fixed-order sum of the warps' C tiles.
#ifndef CHAI_KERNELS_CUDA_GEMV_TILE_CUH_
#define CHAI_KERNELS_CUDA_GEMV_TILE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace chai::cuda::gemv {

// CHAI_GEMV_L2_HINT (compile time, 128 unless set; 256, 64 or 0 for none): the L2 prefetch size
// W's loads ask for. 256 B was the first default, never A/B'd until the twenty-fourth session; on
// an H200 `gpu_check.sh gemvab` then measured 128 B 3-10% faster at the large shards (LLaMA-7B
// gate|up 87-88% -> 90-93% of copy, OPT-66B fc1 84-85% -> 88-89%) and LLaMA-7B's batch-1 decode step 4%
// faster, with 64 B and no hint slower than 256 B (benchmarks/results/gemm-h200.md). Measured, not
// derived: a warp's group reads 128-512 contiguous bytes of a row, so neither size is the group's.
#ifndef CHAI_GEMV_L2_HINT
#define CHAI_GEMV_L2_HINT 128
#endif
#if CHAI_GEMV_L2_HINT == 256
#define CHAI_GEMV_LOAD_STREAM "ld.global.nc.L1::no_allocate.L2::256B.v4.u32"
#elif CHAI_GEMV_L2_HINT == 128
#define CHAI_GEMV_LOAD_STREAM "ld.global.nc.L1::no_allocate.L2::128B.v4.u32"
#elif CHAI_GEMV_L2_HINT == 64
#define CHAI_GEMV_LOAD_STREAM "ld.global.nc.L1::no_allocate.L2::64B.v4.u32"
#elif CHAI_GEMV_L2_HINT == 0
#define CHAI_GEMV_LOAD_STREAM "ld.global.nc.L1::no_allocate.v4.u32"
#else
#error "CHAI_GEMV_L2_HINT must be 256, 128, 64 or 0"
#endif

__device__ __forceinline__ uint4 LoadStream(const uint4* p) {
  uint4 v;
  asm(CHAI_GEMV_LOAD_STREAM " {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
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

// The W rows a CTA's tile slots stream: lane group g's rows (r, h) are tile rows r * 16 + h * 8 + g.
// Consecutive: the CTA's 16 * kR rows from `first`; rows past n read row n - 1 (their outputs are
// discarded).
struct ConsecutiveRows {
  int64_t first, n;
  __device__ __forceinline__ int64_t operator()(int r, int h, int g) const {
    const int64_t row = first + r * 16 + h * 8 + g;
    return row < n ? row : n - 1;
  }
};

// Paired halves, for W = [gate; up] with `half` rows each (the SiLU epilogue): tile rows r * 16 + g
// and r * 16 + 8 + g stream gate row j and up row j, j = first + r * 8 + g (past half: half - 1,
// discarded), so the thread that sums an output's gate also sums its up.
struct PairedHalvesRows {
  int64_t first, half;
  __device__ __forceinline__ int64_t operator()(int r, int h, int g) const {
    const int64_t j = first + r * 8 + g;
    return h * half + (j < half ? j : half - 1);
  }
};

// The B operand as stored: chunk c (counted from the lane's own pointer, which is at chunk q of
// its token's row) of x. Input functors split the read (Load) from the arithmetic (Finish) so that
// the main loop issues every load of an iteration before it waits on any of them; Finish may also
// keep state of its own (RmsScaledInput sums squares there).
struct PlainInput {
  const uint4* x;
  using Raw = uint4;
  __device__ __forceinline__ Raw Load(int64_t c) const { return LoadCached(x + c); }
  __device__ __forceinline__ uint4 Finish(const Raw& raw) const { return raw; }
};

// Lane pointers at chunk q of the tile's rows (`rows`, see above): wp[r][h] for tile rows
// r * 16 + h * 8 + g.
template <typename T, int kR, typename Rows>
__device__ __forceinline__ void LanePointers(const T* __restrict__ w, int64_t k, const Rows& rows,
                                             const uint4* (&wp)[kR][2]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int h = 0; h < 2; ++h) wp[r][h] = reinterpret_cast<const uint4*>(w + rows(r, h, g) * k) + q;
  }
}

// One 4-chunk step of W for the tile's rows: wv[r][h] = chunk c (from each lane's own offset).
template <int kR>
__device__ __forceinline__ void LoadStep(const uint4* const (&wp)[kR][2], int64_t c, uint4 (&wv)[kR][2]) {
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    wv[r][0] = LoadStream(wp[r][0] + c);
    wv[r][1] = LoadStream(wp[r][1] + c);
  }
}

// The MMAs of one group: each step's B chunk (finished from its raw load) against its W.
template <typename T, int kR, int kU, typename Input>
__device__ __forceinline__ void MmaGroup(Input& input, const typename Input::Raw (&xr)[kU],
                                         const uint4 (&wv)[kU][kR][2], float (&acc)[kR][2][4]) {
#pragma unroll
  for (int u = 0; u < kU; ++u) {
    const uint4 xv = input.Finish(xr[u]);
#pragma unroll
    for (int r = 0; r < kR; ++r) MmaChunk<T>(acc[r][0], acc[r][1], wv[u][r][0], wv[u][r][1], xv);
  }
}

// Adds chunks [cb, ce) of the tile's rows (`rows`, see above) times the lanes' B chunks (`input`)
// into acc (zeroed by the caller). Warps take the groups of 4 * kU chunks in turn; the K tail
// (fewer than a group of chunks, only at the end of K) goes to the warp next in the rotation,
// predicated.
template <typename T, int kWarps, int kR, int kU, typename Rows, typename Input>
__device__ __forceinline__ void AccumulateSpan(Input& input, const T* __restrict__ w, int64_t k, const Rows& rows,
                                               int64_t cb, int64_t ce, float (&acc)[kR][2][4]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int q = lane & 3;
  const int64_t span = ce > cb ? ce - cb : 0;
  const uint4* wp[kR][2];
  LanePointers<T, kR>(w, k, rows, wp);

  constexpr int kGroup = 4 * kU;  // chunks per warp iteration
  const int64_t groups = span / kGroup;
#pragma unroll 1
  for (int64_t grp = warp; grp < groups; grp += kWarps) {
    const int64_t c0 = cb + grp * kGroup;
    typename Input::Raw xr[kU];
    uint4 wv[kU][kR][2];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      LoadStep<kR>(wp, c0 + 4 * u, wv[u]);
      xr[u] = input.Load(c0 + 4 * u);
    }
    MmaGroup<T, kR, kU>(input, xr, wv, acc);
  }
  // The K tail. Chunks past the end contribute zeros (both operands, so no 0 * NaN from whatever
  // lies beyond).
  if (groups * kGroup < span && warp == groups % kWarps) {
    const int64_t c0 = cb + groups * kGroup;
    const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const bool valid = c0 + 4 * u + q < ce;
      uint4 wv[kR][2];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        wv[r][0] = valid ? LoadStream(wp[r][0] + c0 + 4 * u) : zero;
        wv[r][1] = valid ? LoadStream(wp[r][1] + c0 + 4 * u) : zero;
      }
      typename Input::Raw raw{};
      if (valid) raw = input.Load(c0 + 4 * u);
      __syncwarp();  // mma.sync.aligned: the whole warp, converged
      const uint4 xv = input.Finish(raw);  // every lane (zeros add nothing to RmsScaledInput's squares)
#pragma unroll
      for (int r = 0; r < kR; ++r) MmaChunk<T>(acc[r][0], acc[r][1], wv[r][0], wv[r][1], xv);
    }
  }
}

// L2 prefetch of the first kSteps * 64 bytes (kSteps of the 4-chunk steps, at most kU) of each of
// the tile's rows in the first group this warp streams in AccumulateSpan (chunks from
// cb + warp * 4 * kU, none at or past ce): 16 * kR * 64 * kSteps bytes per warp, 8 KB per step for
// a CTA of 8 warps and 16 rows. Issued before griddepcontrol.wait under PDL, while the previous
// kernel drains, or (RMSNorm prologue) before the CTA normalises x, so the first loads find their
// lines in L2 or on the way. W only: it is never written while steps run. A hint; it changes no
// result. (Prefetching a CTA's whole first row block instead made the RMSNorm GEMVs slower.)
template <typename T, int kWarps, int kR, int kU, int kSteps, typename Rows>
__device__ __forceinline__ void PrefetchFirstTile(const T* w, int64_t k, const Rows& rows, int64_t cb, int64_t ce) {
  static_assert(kSteps >= 1 && kSteps <= kU, "prefetch within the first group");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int64_t c = cb + int64_t{warp} * (4 * kU) + q;
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    if (c + 4 * s >= ce) return;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint4* p = reinterpret_cast<const uint4*>(w + rows(r, h, g) * k) + c + 4 * s;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
      }
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
