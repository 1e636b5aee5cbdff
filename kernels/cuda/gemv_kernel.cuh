// The decode GEMV kernel (gemv.cu launches it): out[T, N] = x[T, K] * W[N, K]^T (+ bias[N]) for
// T <= 8, fp16/bf16. Included by gemv.cu only.
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
// L2::128B prefetch hint (CHAI_GEMV_L2_HINT, gemv_tile.cuh); x with ld.global.nc (L1-cached: every
// CTA of an SM reads all of x).
// __launch_bounds__' minimum CTAs per SM matters beyond occupancy: without it ptxas holds the
// kernel near 64 registers and interleaves each iteration's loads with its MMAs (5-6 loads in
// flight instead of all of them; seen in the SASS of nvcc 13.0).
// Under PDL (CHAI_PDL=1, pdl.cuh) each warp first issues L2 prefetches of its first 64 bytes of
// each of its rows (weights only, never written during a step), then waits for the previous
// kernel; with PDL off the kernel skips the prefetch and the wait returns at once.
// No allocation per call (the split-K scratch is allocated at the first call, like the cuBLASLt
// workspace), no synchronisation: graph-capturable after one eager call.
//
// Fusions (ops::LinearFused, gemv_fusion.cuh), which take small kernels out of the decode step:
// - SiLU epilogue over the stacked gate | up weight: a CTA streams the gate and the up rows of the
//   same 8 * kR output columns (tile rows g and g + 8 of each MMA), so the thread that writes an
//   output holds both sums and writes T(silu(G) * U) [T, N / 2]. (A prologue of the down GEMV
//   instead would evaluate SiLU once per row block of the down weight: 256 times over at N = 4096.)
// - ReLU epilogue (OPT's fc1): the output loop stores T(P) clamped at zero.
// - Residual epilogue: the output loop adds T(P) into the residual stream in place (the last CTA of
//   a split-K row block, which alone writes its outputs).
// - RMSNorm folded in (gemv::RmsScaledInput): B = T(x * w_norm) as x arrives, the lanes sum x^2
//   on the way, and the output loop scales the sums by rsqrt(mean(x^2) + eps). With split K each
//   split's sum of squares of its span goes to the scratch beside its partial tile, and the last
//   CTA adds them in split order. (It replaced a prologue that normalised x into shared memory
//   before the weight stream: 2-3 us (T = 1) to 7 us (T = 8) per GEMV on an H100, more than the
//   norm kernel it saved.)
// - Peer mirror (kStoreMirror, gemv::WriteMirrored): a plain store that also writes each 16-byte
//   output group into this rank's receive slots of the flag-free IPC all-reduce on every peer
//   (kernels/peer_mirror.h), for row-parallel layers at TP > 1 (by default at TP = 2).
// The epilogues cost nothing measurable.
#ifndef CHAI_KERNELS_CUDA_GEMV_KERNEL_CUH_
#define CHAI_KERNELS_CUDA_GEMV_KERNEL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/gemv_fusion.cuh"
#include "kernels/cuda/gemv_tile.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {  // one includer (gemv.cu): the kernels stay internal to it, as before the split

using gemv::AccumulateSpan;
using gemv::StoreWarpTiles;
using gemv::TileSum;

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
  int64_t split_chunks = 0;
  float* partials = nullptr;
  unsigned* counters = nullptr;
  // Launched with PDL (pdl.cuh): before waiting for the previous kernel, warm L2 with the first
  // weight tile each warp will stream (gemv::PrefetchFirstTile). Off: the kernel is unchanged.
  bool l2_prefetch = false;
  // The RMSNorm folded in (gemv::Input::kRmsNorm): norm weights [k] and eps; with split K, each
  // split's sums of squares (kGemvMaxTokens floats per row block and split) go to `squares`.
  const void* norm_w = nullptr;
  float eps = 0.f;
  float* squares = nullptr;
  // kStoreMirror: the peers' receive slots the outputs are also written into (gemv::WriteMirrored).
  PeerMirror mirror;
};

// The CTA's outputs from its sums (`sum`, see gemv::WriteOutputs), by kOut.
template <typename T, int kRows, gemv::Output kOut, typename Sum>
__device__ __forceinline__ void WriteCta(const Sum& sum, const T* __restrict__ bias, int tokens, int64_t n,
                                         int64_t first, T* __restrict__ out, const gemv::QkvAppend& qkv,
                                         const PeerMirror& mirror, int threads) {
  if constexpr (kOut == gemv::Output::kQkvAppend) {
    gemv::WriteQkvAppend<T, kRows>(sum, bias, tokens, n / 2, first, out, qkv, threads);
  } else if constexpr (kOut == gemv::Output::kStoreMirror) {
    gemv::WriteMirrored<T, kRows>(sum, bias, tokens, n, first, out, mirror, threads);
  } else {
    gemv::WriteOutputs<T, kRows, kOut>(sum, bias, tokens, n, first, out, threads);
  }
}

// kMinBlocks: CTAs per SM the register budget must allow (see the top of the file). kIn, kOut:
// the fusions of ops::LinearFused (gemv_fusion.cuh); plain Linear is (kPlain, kStore).
template <typename T, int kWarps, int kR, int kU, int kMinBlocks, gemv::Input kIn, gemv::Output kOut>
// qkv: the Q | K | V epilogue's operands (kQkvAppend: out is q, k and v go to the cache); a
// separate parameter so that the other instances' code is as it was without it.
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks) GemvKernel(const GemvArgs args, const gemv::QkvAppend qkv) {
  const T* __restrict__ x = static_cast<const T*>(args.x);
  const T* __restrict__ w = static_cast<const T*>(args.w);
  const T* __restrict__ bias = static_cast<const T*>(args.bias);
  T* __restrict__ out = static_cast<T*>(args.out);
  const int tokens = args.tokens;
  const int64_t k = args.k, n = args.n;
  constexpr int kRows = 16 * kR;
  constexpr bool kNorm = kIn == gemv::Input::kRmsNorm;
  // Row block rb streams 16 * kR consecutive rows of W, or with the SiLU epilogue the gate and up
  // rows of 8 * kR consecutive output columns (gemv::PairedHalvesRows), or with the Q | K | V one
  // the rotary partners of 8 * kR consecutive head elements (gemv::HeadHalvesRows); `first` is its
  // first row or output column (pair).
  constexpr bool kQkv = kOut == gemv::Output::kQkvAppend;
  constexpr bool kPaired = kOut == gemv::Output::kSiluMul || kQkv;
  using Rows = std::conditional_t<kQkv, gemv::HeadHalvesRows,
                                  std::conditional_t<kPaired, gemv::PairedHalvesRows, gemv::ConsecutiveRows>>;
  constexpr int kPerBlock = kPaired ? kRows / 2 : kRows;
  const int64_t limit = kPaired ? n / 2 : n;
  const int64_t chunks = k / 8;  // 16-byte chunks per row
  const int splits = gridDim.y, split = blockIdx.y;
  const int64_t cb = split * args.split_chunks;  // this CTA's chunks: [cb, ce)
  const int64_t ce = cb + args.split_chunks < chunks ? cb + args.split_chunks : chunks;
  // Weights are never written while steps run, so they may be fetched before the wait; x, the
  // output and the split-K scratch only after it (pdl.cuh).
  const int64_t rb = blockIdx.x;
  const Rows rows = [&] {
    if constexpr (kQkv) {
      return Rows{rb * kPerBlock, limit, qkv.half};
    } else {
      return Rows{rb * kPerBlock, limit};
    }
  }();
  if (args.l2_prefetch) gemv::PrefetchFirstTile<T, kWarps, kR, kU, 1>(w, k, rows, cb, ce);
  PdlWait();

  // The lane's B column: token g (columns past T read token T - 1; their outputs are discarded),
  // from chunk q of its row: x itself, or x * w_norm (the RMSNorm folded in).
  const int g = (threadIdx.x & 31) >> 2, q = threadIdx.x & 3;
  const int tok = g < tokens ? g : tokens - 1;
  const uint4* x_lane = reinterpret_cast<const uint4*>(x + tok * k) + q;
  using Input = std::conditional_t<kNorm, gemv::RmsScaledInput<T>, gemv::PlainInput>;
  Input input;
  if constexpr (kNorm) {
    input = Input{x_lane, reinterpret_cast<const uint4*>(args.norm_w) + q};
  } else {
    input = Input{x_lane};
  }

  // The dot products over [cb, ce), then the outputs (output e of the CTA: token e / kRows, tile
  // row e % kRows; consecutive threads, consecutive rows).
  float acc[kR][2][4];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[r][0][i] = acc[r][1][i] = 0.f;
  }
  AccumulateSpan<T, kWarps, kR, kU>(input, w, k, rows, cb, ce, acc);
  __shared__ float partial[kWarps][kR * 128];
  __shared__ float squares[kWarps][8];  // the RMSNorm's: this CTA's warps' sums of squares per token
  if constexpr (kNorm) gemv::ReduceSquares<kWarps>(input.squares, squares);
  StoreWarpTiles<kWarps, kR>(acc, partial);  // ends with a barrier: `squares` is complete too
  // The norm's scale of token t from its sum of squares over K (1 without the norm).
  const float eps = args.eps;
  auto scale = [&](float sum_squares) { return rsqrtf(sum_squares / static_cast<float>(k) + eps); };
  auto cta_squares = [&](int t) {
    float s = 0.f;
#pragma unroll
    for (int v = 0; v < kWarps; ++v) s += squares[v][t];
    return s;
  };
  if (splits == 1) {
    if constexpr (kNorm) {
      __shared__ float scales[8];
      if (threadIdx.x < 8) scales[threadIdx.x] = scale(cta_squares(threadIdx.x));
      __syncthreads();
      WriteCta<T, kRows, kOut>([&](int e) { return TileSum<kWarps, kR>(partial, e) * scales[e / kRows]; }, bias,
                               tokens, n, rows.first, out, qkv, args.mirror, kWarps * 32);
    } else {
      WriteCta<T, kRows, kOut>([&](int e) { return TileSum<kWarps, kR>(partial, e); }, bias, tokens, n, rows.first,
                               out, qkv, args.mirror, kWarps * 32);
    }
    return;
  }
  float* mine = args.partials + (rb * splits + split) * (kRows * 8);
  for (int e = threadIdx.x; e < kRows * 8; e += kWarps * 32) mine[e] = TileSum<kWarps, kR>(partial, e);
  if constexpr (kNorm) {
    if (threadIdx.x < 8) args.squares[(rb * splits + split) * 8 + threadIdx.x] = cta_squares(threadIdx.x);
  }
  __threadfence();  // this CTA's partials are visible before its arrival is counted
  __syncthreads();
  __shared__ bool last;
  if (threadIdx.x == 0) last = atomicAdd(&args.counters[rb], 1u) == static_cast<unsigned>(splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  const float* all = args.partials + rb * splits * (kRows * 8);
  auto split_sum = [&](int e) {
    float s = 0.f;
    for (int sp = 0; sp < splits; ++sp) s += __ldcg(all + sp * (kRows * 8) + e);  // L2: other SMs wrote them
    return s;
  };
  if constexpr (kNorm) {
    __shared__ float scales[8];
    if (threadIdx.x < 8) {
      float s = 0.f;
      for (int sp = 0; sp < splits; ++sp) s += __ldcg(args.squares + (rb * splits + sp) * 8 + threadIdx.x);
      scales[threadIdx.x] = scale(s);
    }
    __syncthreads();
    WriteCta<T, kRows, kOut>([&](int e) { return split_sum(e) * scales[e / kRows]; }, bias, tokens, n, rows.first,
                             out, qkv, args.mirror, kWarps * 32);
  } else {
    WriteCta<T, kRows, kOut>(split_sum, bias, tokens, n, rows.first, out, qkv, args.mirror, kWarps * 32);
  }
  if (threadIdx.x == 0) args.counters[rb] = 0;  // ready for the next launch
}

}  // namespace
}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_GEMV_KERNEL_CUH_
