// An experimental decode GEMV whose weight loads go through warp-private cp.async rings, for
// gemm_bench's `cpasync` table; not used by ops::Linear.
//
// Why: the decode GEMV (gemv_kernel.cuh) holds its W loads in registers, so the bytes a thread can
// have in flight are bounded by its registers and drop to the next iteration's between its MMAs
// and its next loads; it reaches 80-85% of the copy bandwidth at the large shards on an H200.
// stream_bench measured every thread's 16-byte cp.async into a ring at 102% of copy (4 CTAs of
// 128 threads per SM, a CTA barrier a stage) where register loads stayed at ~85%, and a bulk-copy
// GEMV with a producer warp and cross-warp releases lost to its per-stage round trip
// (gemm-h200.md). Here nothing is shared between warps until the end: each lane copies its own
// 16-byte pieces (the same ones the register GEMV loads: rows g and g + 8 at chunk q of every
// step) into its own slots of its warp's ring, waits for its own copy groups
// (cp.async.wait_group), reads them back and runs the same MMAs; no barrier, no mbarrier. The
// grid, the row blocks and the warps' groups of K are the register GEMV's with kR = 1.
//
// Limits (checked): fp16 or bf16, T <= 8, K % 128 == 0 (whole groups only), x and W 16-byte
// aligned, sm_80+. No bias, no split of K over CTAs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/gemv_tile.cuh"
#include "kernels/cuda/internal.h"

namespace chai::cuda {
namespace {

constexpr int kTileRows = 16;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ void CopyPiece(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;\n" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
               "l"(__cvta_generic_to_global(src))
               : "memory");
}
__device__ __forceinline__ void CommitPieces() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most `pending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void WaitPieces() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}
#endif

// Bytes of shared memory a CTA uses: each warp's ring (kStages groups of 2 * kU pieces per lane)
// and the warps' C tiles.
template <int kWarps, int kU, int kStages>
constexpr int SharedBytes() {
  return kWarps * kStages * 2 * kU * 32 * 16 + kWarps * 128 * 4;
}

template <typename T, int kWarps, int kU, int kStages, int kMinCtas>
__global__ void __launch_bounds__(kWarps * 32, kMinCtas)
    GemvCpAsyncKernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out, int tokens, int64_t n,
                      int64_t k) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kPieces = 2 * kU;  // a lane's pieces a group: rows g and g + 8 at each of kU steps
  constexpr int kGroupChunks = 4 * kU;
  extern __shared__ __align__(128) uint4 smem4[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
  // This lane's slots: ring[stage][piece] at a stride of 32 lanes (consecutive lanes, consecutive
  // 16-byte words: no bank conflicts).
  uint4* ring = smem4 + warp * kStages * kPieces * 32 + lane;
  float(*partial)[128] = reinterpret_cast<float(*)[128]>(smem4 + kWarps * kStages * kPieces * 32);

  const int64_t first_row = int64_t{blockIdx.x} * kTileRows;
  const int64_t row_a = min(first_row + g, n - 1), row_b = min(first_row + g + 8, n - 1);  // past n: discarded
  const uint4* wa = reinterpret_cast<const uint4*>(w + row_a * k) + q;
  const uint4* wb = reinterpret_cast<const uint4*>(w + row_b * k) + q;
  const uint4* xp = reinterpret_cast<const uint4*>(x + min(g, tokens - 1) * k) + q;
  const int64_t groups = (k / 8) / kGroupChunks;
  // This warp's groups: warp, warp + kWarps, ... (the register GEMV's rotation).
  const int64_t mine = groups > warp ? (groups - warp + kWarps - 1) / kWarps : 0;
  const auto issue = [&](int64_t j) {  // this warp's j-th group into slot j % kStages
    const int64_t c0 = (warp + j * kWarps) * kGroupChunks;
    uint4* slot = ring + (j % kStages) * kPieces * 32;
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      CopyPiece(slot + (2 * u) * 32, wa + c0 + 4 * u);
      CopyPiece(slot + (2 * u + 1) * 32, wb + c0 + 4 * u);
    }
  };
  // kStages groups in flight; a commit per group even where there is none to copy, so that
  // wait_group's count stays the number of groups ahead.
#pragma unroll
  for (int s = 0; s < kStages; ++s) {
    if (s < mine) issue(s);
    CommitPieces();
  }
  float acc0[4] = {0.f, 0.f, 0.f, 0.f}, acc1[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t j = 0; j < mine; ++j) {
    WaitPieces<kStages - 1>();  // group j has landed (this lane's pieces: no other lane reads them)
    const uint4* slot = ring + (j % kStages) * kPieces * 32;
    const int64_t c0 = (warp + j * kWarps) * kGroupChunks;
    uint4 wv[kPieces], xv[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) xv[u] = gemv::LoadCached(xp + c0 + 4 * u);
#pragma unroll
    for (int p = 0; p < kPieces; ++p) wv[p] = slot[p * 32];
#pragma unroll
    for (int u = 0; u < kU; ++u) gemv::MmaChunk<T>(acc0, acc1, wv[2 * u], wv[2 * u + 1], xv[u]);
    // The slot is read (the MMAs consumed its registers): refill it with group j + kStages.
    if (j + kStages < mine) issue(j + kStages);
    CommitPieces();
  }
  WaitPieces<0>();
#pragma unroll
  for (int i = 0; i < 4; ++i) partial[warp][lane * 4 + i] = acc0[i] + acc1[i];
  __syncthreads();
  // Output e = token t of tile row m: the warps' tiles in warp order (gemv::TileSum's layout).
  for (int e = threadIdx.x; e < kTileRows * tokens; e += kWarps * 32) {
    const int t = e / kTileRows, m = e % kTileRows;
    const int64_t row = first_row + m;
    if (row >= n) continue;
    const int idx = ((m % 8) * 4 + t / 2) * 4 + (m / 8) * 2 + (t & 1);
    float sum = 0.f;
    for (int v = 0; v < kWarps; ++v) sum += partial[v][idx];
    out[t * n + row] = FromFloat<T>(sum);
  }
#endif
}

template <typename T, int kWarps, int kU, int kStages, int kMinCtas>
void LaunchGemvCpAsync(const Tensor& x, const Tensor& weight, Tensor* out) {
  const auto kernel = GemvCpAsyncKernel<T, kWarps, kU, kStages, kMinCtas>;
  constexpr int shared = SharedBytes<kWarps, kU, kStages>();
  static bool configured = false;  // per instantiation; one device per process here (benchmark use)
  if (!configured) {
    CHAI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared));
    configured = true;
  }
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  const int64_t row_blocks = (n + kTileRows - 1) / kTileRows;
  kernel<<<static_cast<unsigned>(row_blocks), kWarps * 32, shared, CurrentStream()>>>(
      static_cast<const T*>(x.raw()), static_cast<const T*>(weight.raw()), static_cast<T*>(out->raw()),
      static_cast<int>(tokens), n, k);
  CHAI_CUDA_CHECK_LAUNCH();
}

template <typename T>
void GemvCpAsyncTyped(const Tensor& x, const Tensor& weight, Tensor* out, int variant) {
  switch (variant) {
    case 0:
      return LaunchGemvCpAsync<T, 8, 4, 3, 2>(x, weight, out);  // 96 KB of rings, 2 CTAs per SM
    case 1:
      return LaunchGemvCpAsync<T, 8, 2, 6, 2>(x, weight, out);  // the same bytes in finer groups
    default:
      return LaunchGemvCpAsync<T, 4, 4, 4, 3>(x, weight, out);  // 4 warps, 64 KB, 3 CTAs per SM
  }
}

}  // namespace

const char* GemvCpAsyncVariantName(int variant) {
  static const char* const kNames[] = {"cp.w8.u4.s3", "cp.w8.u2.s6", "cp.w4.u4.s4"};
  return kNames[std::clamp(variant, 0, kGemvCpAsyncVariants - 1)];
}

bool GemvCpAsyncApplies(const Tensor& x, const Tensor& weight) { return GemvApplies(x, weight) && x.dim(1) % 128 == 0; }

void GemvCpAsync(const Tensor& x, const Tensor& weight, Tensor* out, int variant) {
  if (x.dim(0) == 0 || weight.dim(0) == 0) return;
  if (!GemvCpAsyncApplies(x, weight)) {
    std::fprintf(stderr, "chai: internal error: GemvCpAsync called on %s x %s (needs K %% 128 == 0, aligned)\n",
                 x.ShapeString().c_str(), weight.ShapeString().c_str());
    std::abort();
  }
  if (x.dtype() == DType::kF16) {
    GemvCpAsyncTyped<__half>(x, weight, out, variant);
  } else {
    GemvCpAsyncTyped<__nv_bfloat16>(x, weight, out, variant);
  }
}

}  // namespace chai::cuda
