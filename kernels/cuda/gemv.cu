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
// Under PDL (CHAI_PDL=1, pdl.cuh) each warp first issues L2 prefetches of its first 64 bytes of
// each of its rows (weights only, never written during a step), then waits for the previous
// kernel; with PDL off the kernel skips the prefetch and the wait returns at once.
// No allocation per call (the split-K scratch is allocated at the first call, like the cuBLASLt
// workspace), no synchronisation: graph-capturable after one eager call.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/gemv_tile.cuh"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

using gemv::AccumulateSpan;
using gemv::StoreWarpTiles;
using gemv::TileSum;

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
  // Launched with PDL (pdl.cuh): before waiting for the previous kernel, warm L2 with the first
  // weight tile each warp will stream (gemv::PrefetchFirstTile). Off: the kernel is unchanged.
  bool l2_prefetch = false;
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
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t chunks = k / 8;  // 16-byte chunks per row
  const int splits = gridDim.y, split = blockIdx.y;
  const int64_t cb = split * args.split_chunks;  // this CTA's chunks: [cb, ce)
  const int64_t ce = cb + args.split_chunks < chunks ? cb + args.split_chunks : chunks;
  // Weights are never written while steps run, so they may be fetched before the wait; x, the
  // output and the split-K scratch only after it (pdl.cuh).
  if (args.l2_prefetch) gemv::PrefetchFirstTile<T, kWarps, kR, kU>(w, k, n, row0, cb, ce);
  PdlWait();

  float acc[kR][2][4];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[r][0][i] = acc[r][1][i] = 0.f;
  }
  AccumulateSpan<T, kWarps, kR, kU>(x, w, tokens, k, n, row0, cb, ce, acc);
  __shared__ float partial[kWarps][kR * 128];
  StoreWarpTiles<kWarps, kR>(acc, partial);
  // Output e of the CTA: token e / kRows, row e % kRows (consecutive threads, consecutive rows).
  if (splits == 1) {
    for (int e = threadIdx.x; e < kRows * 8; e += kWarps * 32) {
      const int t = e / kRows;
      const int64_t row = row0 + e % kRows;
      if (t >= tokens || row >= n) continue;
      float s = TileSum<kWarps, kR>(partial, e);
      if (bias != nullptr) s += ToFloat(bias[row]);
      out[t * n + row] = FromFloat<T>(s);
    }
    return;
  }

  float* mine = args.partials + (static_cast<int64_t>(blockIdx.x) * splits + split) * (kRows * 8);
  for (int e = threadIdx.x; e < kRows * 8; e += kWarps * 32) mine[e] = TileSum<kWarps, kR>(partial, e);
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
  args.l2_prefetch = PdlEnabled();
  const dim3 grid(static_cast<unsigned>(row_blocks), static_cast<unsigned>(splits));
  LaunchPdl(GemvKernel<T, kWarps, kR, kU, kMinBlocks>, grid, dim3(kWarps * 32), 0, CurrentStream(), args);
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

// CHAI_GEMV_VARIANT=<name> forces one configuration for every GEMV (to time variants end to end
// without rebuilding); -1 when unset or unknown (with a warning).
int ForcedVariant() {
  static const int forced = [] {
    const char* env = std::getenv("CHAI_GEMV_VARIANT");
    if (env == nullptr || *env == '\0') return -1;
    for (int v = 0; v < kNumVariants; ++v) {
      if (std::strcmp(env, kVariants[v].name) == 0) return v;
    }
    std::fprintf(stderr, "chai: warning: CHAI_GEMV_VARIANT=%s is not a GEMV configuration; using the default\n", env);
    return -1;
  }();
  return forced;
}

// The default, from the H100 sweep in benchmarks/results/gemm-h100.md (commit 1782d80): u8.b2
// (16 loads in flight per thread, 2 CTAs per SM) was the fastest at every T for the wide weights
// (N = 11008 and 32000: 89% / 99% of copy bandwidth against 87% / 98% for u4.b3), u4.b3 at
// N = 4096 (o: 77% against 76%; down, K = 11008: tied at T = 1, 4, ahead at T = 8). The stacked
// Q|K|V (N = 12288) and gate|up (N = 22016) weights are wide: 91.6% / 95.4% (commit 456f513).
// Stream-K variants (one wave of equal contiguous work per CTA) were tried there and lost at every
// shape (77-87% against 91-98%), so they were removed.
int ChooseVariant(int64_t /*tokens*/, int64_t /*k*/, int64_t n) {
  if (ForcedVariant() >= 0) return ForcedVariant();
  return n >= 8192 ? 2 : 0;
}

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
