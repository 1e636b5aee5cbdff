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
// The epilogues cost nothing measurable.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/gemv_fusion.cuh"
#include "kernels/cuda/gemv_tile.cuh"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

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
};

// The CTA's outputs from its sums (`sum`, see gemv::WriteOutputs), by kOut.
template <typename T, int kRows, gemv::Output kOut, typename Sum>
__device__ __forceinline__ void WriteCta(const Sum& sum, const T* __restrict__ bias, int tokens, int64_t n,
                                         int64_t first, T* __restrict__ out, const gemv::QkvAppend& qkv, int threads) {
  if constexpr (kOut == gemv::Output::kQkvAppend) {
    gemv::WriteQkvAppend<T, kRows>(sum, bias, tokens, n / 2, first, out, qkv, threads);
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
                               tokens, n, rows.first, out, qkv, kWarps * 32);
    } else {
      WriteCta<T, kRows, kOut>([&](int e) { return TileSum<kWarps, kR>(partial, e); }, bias, tokens, n, rows.first,
                               out, qkv, kWarps * 32);
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
                             out, qkv, kWarps * 32);
  } else {
    WriteCta<T, kRows, kOut>(split_sum, bias, tokens, n, rows.first, out, qkv, kWarps * 32);
  }
  if (threadIdx.x == 0) args.counters[rb] = 0;  // ready for the next launch
}

// Split-K scratch: fp32 partials and per-row-block arrival counters (zero between launches).
// Allocated once, like the cuBLASLt workspace, and used only in stream order on CurrentStream().
struct SplitScratch {
  float* partials = nullptr;
  int64_t partial_floats = 0;
  float* squares = nullptr;  // the folded RMSNorm's sums of squares: 8 floats per CTA
  int64_t max_ctas = 0;
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
    sc.max_ctas = int64_t{SmCount()} * kMaxMinBlocks;
    CHAI_CUDA_CHECK(cudaMalloc(&sc.squares, sc.max_ctas * kGemvMaxTokens * sizeof(float)));
    CHAI_CUDA_CHECK(cudaMalloc(&sc.counters, sc.counter_count * sizeof(unsigned)));
    CHAI_CUDA_CHECK(cudaMemsetAsync(sc.counters, 0, sc.counter_count * sizeof(unsigned), CurrentStream()));
    return sc;
  }();
  return scratch;
}

// args holds the operands and shape; the launch fills in the split, the grid and the prefetch flag.
template <typename T, int kWarps, int kR, int kU, int kMinBlocks, gemv::Input kIn, gemv::Output kOut>
void LaunchGemv(GemvArgs args, const gemv::QkvAppend& qkv) {
  static_assert(kMinBlocks <= kMaxMinBlocks && 16 * kR <= kMaxRows, "split-K scratch too small");
  // A row block is 16 * kR rows of W, or with the SiLU epilogue 8 * kR output columns (as many
  // gate | up rows: the same blocks as the plain GEMV over the stacked weight).
  constexpr bool kPaired = kOut == gemv::Output::kSiluMul || kOut == gemv::Output::kQkvAppend;
  const int64_t per_block = kPaired ? 8 * kR : 16 * kR;
  const int64_t row_blocks = ((kPaired ? args.n / 2 : args.n) + per_block - 1) / per_block;
  const int64_t chunks = args.k / 8;
  args.split_chunks = chunks;
  args.partials = nullptr;
  args.counters = nullptr;
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
    if (row_blocks * splits * 16 * kR * 8 > sc.partial_floats || row_blocks * splits > sc.max_ctas ||
        row_blocks > sc.counter_count) {
      std::fprintf(stderr, "chai: internal error in CUDA op Linear: GEMV split-K scratch too small\n");
      std::abort();
    }
    args.partials = sc.partials;
    args.squares = sc.squares;
    args.counters = sc.counters;
  }
  args.l2_prefetch = PdlEnabled();
  auto* kernel = GemvKernel<T, kWarps, kR, kU, kMinBlocks, kIn, kOut>;
  const dim3 grid(static_cast<unsigned>(row_blocks), static_cast<unsigned>(splits));
  LaunchPdl(kernel, grid, dim3(kWarps * 32), 0, CurrentStream(), args, qkv);
}

using gemv::Input;
using gemv::Output;
using LaunchFn = void (*)(DType dtype, Input in, Output out, const GemvArgs& args, const gemv::QkvAppend& qkv);

// One configuration's launch for the dtype and fusions; configurations without kFusions have the
// plain kernel only (the fused ones are built for the default configurations, see FusedVariant).
template <typename T, int kWarps, int kR, int kU, int kMinBlocks, bool kFusions>
void LaunchTyped(Input in, Output out, const GemvArgs& args, const gemv::QkvAppend& qkv) {
  if (in == Input::kPlain && out == Output::kStore) {
    LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kStore>(args, qkv);
    return;
  }
  if constexpr (kFusions) {
    if (in == Input::kPlain && out == Output::kAddTo) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kAddTo>(args, qkv);
    } else if (in == Input::kPlain && out == Output::kRelu) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kRelu>(args, qkv);
    } else if (in == Input::kPlain && out == Output::kQkvAppend) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kQkvAppend>(args, qkv);
    } else if (in == Input::kPlain) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kSiluMul>(args, qkv);
    } else if (out == Output::kStore) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kRmsNorm, Output::kStore>(args, qkv);
    } else if (out == Output::kAddTo) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kRmsNorm, Output::kAddTo>(args, qkv);
    } else {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kRmsNorm, Output::kSiluMul>(args, qkv);
    }
    return;
  }
  std::fprintf(stderr, "chai: internal error in CUDA op LinearFused: GEMV configuration without fusions\n");
  std::abort();
}

template <int kWarps, int kR, int kU, int kMinBlocks, bool kFusions>
void Launch(DType dtype, Input in, Output out, const GemvArgs& args, const gemv::QkvAppend& qkv) {
  if (dtype == DType::kF16) {
    LaunchTyped<__half, kWarps, kR, kU, kMinBlocks, kFusions>(in, out, args, qkv);
  } else {
    LaunchTyped<__nv_bfloat16, kWarps, kR, kU, kMinBlocks, kFusions>(in, out, args, qkv);
  }
}

struct Variant {
  const char* name;
  LaunchFn launch;
  bool fusions;  // has the kernels of ops::LinearFused
};

template <int kWarps, int kR, int kU, int kMinBlocks, bool kFusions = false>
constexpr Variant MakeVariant(const char* name) {
  return Variant{name, &Launch<kWarps, kR, kU, kMinBlocks, kFusions>, kFusions};
}

// name: warps per CTA (w), rows per CTA (r), steps per warp iteration (u; 16-byte W loads in
// flight per thread = 2 * r / 16 * u), CTAs per SM the registers allow (b). The two defaults
// (DefaultVariant) also have the fused kernels.
const Variant kVariants[] = {
    MakeVariant<8, 1, 4, 3, true>("w8.r16.u4.b3"),  //
    MakeVariant<8, 1, 2, 4>("w8.r16.u2.b4"),        //
    MakeVariant<8, 1, 8, 2, true>("w8.r16.u8.b2"),  //
    MakeVariant<4, 1, 4, 6>("w4.r16.u4.b6"),        //
    MakeVariant<8, 2, 2, 3>("w8.r32.u2.b3"),        //
    MakeVariant<16, 1, 2, 2>("w16.r16.u2.b2"),      //
    MakeVariant<4, 2, 4, 4>("w4.r32.u4.b4"),        //
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
int DefaultVariant(int64_t n) { return n >= 8192 ? 2 : 0; }

int ChooseVariant(int64_t /*tokens*/, int64_t /*k*/, int64_t n) {
  if (ForcedVariant() >= 0) return ForcedVariant();
  return DefaultVariant(n);
}

// LinearFused: the forced configuration where it has the fused kernels, else the default for the
// weight's rows (the stacked gate | up weight with the SiLU epilogue streams as the plain GEMV does).
int FusedVariant(int64_t tokens, int64_t k, int64_t n) {
  const int v = ChooseVariant(tokens, k, n);
  return kVariants[v].fusions ? v : DefaultVariant(n);
}

GemvArgs MakeArgs(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out) {
  GemvArgs args{};
  args.x = x.raw();
  args.w = weight.raw();
  args.bias = bias.defined() ? bias.raw() : nullptr;
  args.out = out->raw();
  args.tokens = static_cast<int>(x.dim(0));
  args.k = x.dim(1);
  args.n = weight.dim(0);
  return args;
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
  kVariants[variant].launch(x.dtype(), Input::kPlain, Output::kStore, MakeArgs(x, weight, bias, out), {});
}

bool GemvFusedApplies(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion) {
  if (!GemvApplies(x, weight)) return false;
  if (bias.defined() && bias.dtype() != x.dtype()) return false;
  if (fusion.output == ops::LinearOutput::kSiluMul && weight.dim(0) % 2 != 0) return false;
  const Tensor& norm_w = fusion.rms_norm_weight;
  if (!norm_w.defined()) return true;
  if (fusion.output == ops::LinearOutput::kRelu) return false;  // OPT's fc1 reads a LayerNorm: no RMSNorm+ReLU kernel
  return norm_w.dtype() == x.dtype() && norm_w.numel() == x.dim(1) && Aligned(16, {norm_w.raw()});
}

void GemvFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion,
               Tensor* out) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (tokens == 0 || n == 0) return;
  if (!GemvFusedApplies(x, weight, bias, fusion)) {
    std::fprintf(stderr,
                 "chai: internal error in CUDA op LinearFused: GEMV called on %s x %s (unaligned or unsupported)\n",
                 x.ShapeString().c_str(), weight.ShapeString().c_str());
    std::abort();
  }
  Scratch();
  GemvArgs args = MakeArgs(x, weight, bias, out);
  const bool norm = fusion.rms_norm_weight.defined();
  if (norm) {
    args.norm_w = fusion.rms_norm_weight.raw();
    args.eps = fusion.rms_norm_eps;
  }
  const Output o = fusion.output == ops::LinearOutput::kAddTo     ? Output::kAddTo
                   : fusion.output == ops::LinearOutput::kSiluMul ? Output::kSiluMul
                   : fusion.output == ops::LinearOutput::kRelu    ? Output::kRelu
                                                                  : Output::kStore;
  kVariants[FusedVariant(tokens, k, n)].launch(x.dtype(), norm ? Input::kRmsNorm : Input::kPlain, o, args, {});
}

bool QkvLinearAppendIsOneKernel(const Tensor& x, const Tensor& weight, const Tensor& bias, int head_dim,
                                const Tensor& positions, const BatchLayout& batch) {
  if (!GemvApplies(x, weight) || head_dim % 2 != 0 || weight.dim(0) % head_dim != 0) return false;
  if (bias.defined() && bias.dtype() != x.dtype()) return false;
  const auto on_device_ints = [&](const Tensor& t) {
    return t.defined() && t.dtype() == DType::kI32 && t.device() == Device::kCuda && t.numel() == x.dim(0);
  };
  return on_device_ints(positions) && on_device_ints(batch.token_rows);
}

void QkvLinearAppend(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& positions, int heads,
                     int kv_heads, int head_dim, float theta, bool apply_rotary, const PagedKv& kv,
                     const BatchLayout& batch, Tensor* q) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (tokens == 0 || n == 0) return;
  if (!QkvLinearAppendIsOneKernel(x, weight, bias, head_dim, positions, batch)) {
    std::fprintf(stderr, "chai: internal error in CUDA op QkvLinearAppend: GEMV called on %s x %s (unsupported)\n",
                 x.ShapeString().c_str(), weight.ShapeString().c_str());
    std::abort();
  }
  Scratch();
  const GemvArgs args = MakeArgs(x, weight, bias, q);
  gemv::QkvAppend a;
  a.positions = positions.data<int32_t>();
  a.token_rows = batch.token_rows.data<int32_t>();
  a.tables = kv.tables.data<int32_t>();
  a.pool = kv.pool.raw();
  a.block_size = kv.block_size;
  a.max_blocks = kv.max_blocks;
  a.heads = heads;
  a.kv_heads = kv_heads;
  a.half = head_dim / 2;
  a.theta = theta;
  a.rotary = apply_rotary;
  kVariants[FusedVariant(tokens, k, n)].launch(x.dtype(), Input::kPlain, Output::kQkvAppend, args, a);
}

}  // namespace chai::cuda
