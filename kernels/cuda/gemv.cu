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
// A and B of two MMAs, with no exchange between lanes and no shared memory (only register moves
// to pair W rows g and g + 8 in A's registers):
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
// When there are fewer row blocks than SMs (N < 16 * R * SMs), K is also split over CTAs
// (blockIdx.y) so that a wave fills the chip: each CTA stores its fp32 partial tile, and the
// last CTA of a row block to arrive sums them in split order (deterministic) and writes out.
//
// W is read with ld.global.nc.L1::no_allocate (read once; keeps x resident in L1) and the
// L2::256B prefetch hint; x with ld.global.nc (L1-cached: every CTA of an SM reads all of x).
// __launch_bounds__' minimum CTAs per SM matters beyond occupancy: without it ptxas holds the
// kernel near 64 registers and interleaves each iteration's loads with its MMAs (5-6 loads in
// flight instead of all of them; seen in the SASS of nvcc 13.0).
// No allocation per call (the split-K scratch is allocated at the first call, like the cuBLASLt
// workspace), no synchronisation: graph-capturable after one eager call.
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

// kMinBlocks: CTAs per SM the register budget must allow (see the top of the file).
struct GemvArgs {
  const void* x;
  const void* w;
  const void* bias;  // null: none
  void* out;
  int tokens;
  int64_t k, n;
  // Split-K over gridDim.y CTAs when there are too few row blocks to fill the SMs: split s
  // covers chunks [s * split_chunks, (s + 1) * split_chunks); partial sums go to `partials`
  // and the last CTA of a row block to finish (counted in `counters`, which it resets to 0)
  // sums them in split order, so the result does not depend on which CTA finished last.
  int64_t split_chunks;
  float* partials;
  unsigned* counters;
};

template <typename T, int kWarps, int kR, int kU, int kMinBlocks>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks) GemvKernel(const GemvArgs args) {
  const T* __restrict__ x = static_cast<const T*>(args.x);
  const T* __restrict__ w = static_cast<const T*>(args.w);
  const T* __restrict__ bias = static_cast<const T*>(args.bias);
  T* __restrict__ out = static_cast<T*>(args.out);
  const int tokens = args.tokens;
  const int64_t k = args.k, n = args.n;
  constexpr int kRows = 16 * kR;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t chunks = k / 8;  // 16-byte chunks per row
  const int splits = gridDim.y, split = blockIdx.y;
  const int64_t cb = split * args.split_chunks;  // this CTA's chunks: [cb, ce)
  const int64_t ce = cb + args.split_chunks < chunks ? cb + args.split_chunks : chunks;
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

  float acc[kR][2][4];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[r][0][i] = acc[r][1][i] = 0.f;
  }

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
  // The K tail: fewer than kGroup chunks, taken by the warp next in the rotation. Chunks past the
  // end contribute zeros (both operands, so no 0 * NaN from whatever lies beyond).
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

  // Sum the warps' C tiles in a fixed order. C fragment: c[0], c[1] = (row g, tokens 2q, 2q + 1),
  // c[2], c[3] = (row g + 8, tokens 2q, 2q + 1).
  __shared__ float partial[kWarps][kR * 128];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][r * 128 + lane * 4 + i] = acc[r][0][i] + acc[r][1][i];
  }
  __syncthreads();
  // Output e of the CTA: token e / kRows, row e % kRows (consecutive threads, consecutive rows).
  auto partial_index = [](int e) {
    const int t = e / kRows, rr = e % kRows, r = rr / 16, m = rr % 16;
    return r * 128 + ((m % 8) * 4 + t / 2) * 4 + (m / 8) * 2 + (t & 1);
  };
  if (splits == 1) {
    for (int e = threadIdx.x; e < kRows * 8; e += kWarps * 32) {
      const int t = e / kRows;
      const int64_t row = row0 + e % kRows;
      if (t >= tokens || row >= n) continue;
      const int idx = partial_index(e);
      float s = 0.f;
#pragma unroll
      for (int v = 0; v < kWarps; ++v) s += partial[v][idx];
      if (bias != nullptr) s += ToFloat(bias[row]);
      out[t * n + row] = FromFloat<T>(s);
    }
    return;
  }

  float* mine = args.partials + (static_cast<int64_t>(blockIdx.x) * splits + split) * (kRows * 8);
  for (int e = threadIdx.x; e < kRows * 8; e += kWarps * 32) {
    const int idx = partial_index(e);
    float s = 0.f;
#pragma unroll
    for (int v = 0; v < kWarps; ++v) s += partial[v][idx];
    mine[e] = s;
  }
  __threadfence();  // this CTA's partials are visible before its arrival is counted
  __syncthreads();
  __shared__ bool last;
  if (threadIdx.x == 0) last = atomicAdd(&args.counters[blockIdx.x], 1u) == static_cast<unsigned>(splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  const float* all = args.partials + static_cast<int64_t>(blockIdx.x) * splits * (kRows * 8);
  for (int e = threadIdx.x; e < kRows * 8; e += kWarps * 32) {
    const int t = e / kRows;
    const int64_t row = row0 + e % kRows;
    if (t >= tokens || row >= n) continue;
    float s = 0.f;
    for (int sp = 0; sp < splits; ++sp) s += __ldcg(all + sp * (kRows * 8) + e);  // L2: other SMs wrote them
    if (bias != nullptr) s += ToFloat(bias[row]);
    out[t * n + row] = FromFloat<T>(s);
  }
  if (threadIdx.x == 0) args.counters[blockIdx.x] = 0;  // ready for the next launch
}

// Split-K scratch: fp32 partials and per-row-block arrival counters (zero between launches).
// Allocated once, like the cuBLASLt workspace, and used only in stream order on CurrentStream().
struct SplitScratch {
  float* partials = nullptr;
  int64_t partial_floats = 0;
  unsigned* counters = nullptr;
  int64_t counter_count = 0;
};

// Split-K CTAs never exceed SmCount() * kMaxMinBlocks in all, over fewer than SmCount() row blocks.
constexpr int kMaxMinBlocks = 8;
constexpr int kMaxRows = 32;

const SplitScratch& Scratch() {
  static SplitScratch scratch = [] {
    SplitScratch sc;
    sc.partial_floats = int64_t{SmCount()} * kMaxMinBlocks * kMaxRows * 8;
    sc.counter_count = SmCount();
    CHAI_CUDA_CHECK(cudaMalloc(&sc.partials, sc.partial_floats * sizeof(float)));
    CHAI_CUDA_CHECK(cudaMalloc(&sc.counters, sc.counter_count * sizeof(unsigned)));
    CHAI_CUDA_CHECK(cudaMemsetAsync(sc.counters, 0, sc.counter_count * sizeof(unsigned), CurrentStream()));
    return sc;
  }();
  return scratch;
}

using LaunchFn = void (*)(const void* x, const void* w, const void* bias, void* out, int tokens, int64_t k, int64_t n);

template <typename T, int kWarps, int kR, int kU, int kMinBlocks>
void LaunchGemv(const void* x, const void* w, const void* bias, void* out, int tokens, int64_t k, int64_t n) {
  static_assert(kMinBlocks <= kMaxMinBlocks && 16 * kR <= kMaxRows, "split-K scratch too small");
  const int64_t row_blocks = (n + 16 * kR - 1) / (16 * kR);
  const int64_t chunks = k / 8;
  GemvArgs args{x, w, bias, out, tokens, k, n, chunks, nullptr, nullptr};
  int64_t splits = 1;
  // Fewer row blocks than SMs: split K over CTAs, up to one full wave at the occupancy the kernel
  // is built for, each warp of a split keeping at least one full iteration.
  if (row_blocks < SmCount()) {
    const int64_t by_k = chunks / (4 * kU * kWarps);
    splits = std::max<int64_t>(1, std::min<int64_t>(int64_t{SmCount()} * kMinBlocks / row_blocks, by_k));
  }
  if (splits > 1) {
    const int64_t group = 4 * kU;
    args.split_chunks = (chunks + splits * group - 1) / (splits * group) * group;
    splits = (chunks + args.split_chunks - 1) / args.split_chunks;
  }
  if (splits > 1) {
    const SplitScratch& sc = Scratch();
    if (row_blocks * splits * 16 * kR * 8 > sc.partial_floats || row_blocks > sc.counter_count) {
      std::fprintf(stderr, "chai: internal error in CUDA op Linear: GEMV split-K scratch too small\n");
      std::abort();
    }
    args.partials = sc.partials;
    args.counters = sc.counters;
  }
  const dim3 grid(static_cast<unsigned>(row_blocks), static_cast<unsigned>(splits));
  GemvKernel<T, kWarps, kR, kU, kMinBlocks><<<grid, kWarps * 32, 0, CurrentStream()>>>(args);
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
  Scratch();  // allocated at the first call, which the engine and the tests make eagerly
  if (variant < 0 || variant >= kNumVariants) variant = ChooseVariant(tokens, k, n);
  const Variant& v = kVariants[variant];
  const LaunchFn fn = x.dtype() == DType::kF16 ? v.f16 : v.bf16;
  fn(x.raw(), weight.raw(), bias.defined() ? bias.raw() : nullptr, out->raw(), static_cast<int>(tokens), k, n);
}

}  // namespace chai::cuda
