// An experimental decode GEMV whose weights reach shared memory through the copy engine
// (cp.async.bulk), for gemm_bench's `bulk` table; not used by ops::Linear.
//
// Why: the decode GEMV (gemv_kernel.cuh) streams W with every thread's 16-byte ld.global and reaches
// 80-85% of the copy bandwidth on an H200 at the large shards (gemm-h200.md), where stream_bench
// measured the copy engine, at 2 CTAs per SM with 96 KB in flight each, at 102-107% of it and
// every thread's 16-byte loads at ~85% (stream-h200.md). The GEMVs are most of a decode step's
// bytes, so that gap is most of what issues 6 and 8 still miss on H200. This kernel asks whether
// the copy engine's rate survives the GEMV's arithmetic.
//
// Shape of the kernel: a CTA owns whole row blocks of 16 rows (several, strided by nothing: a
// contiguous range, so that every CTA gets the same count and the last wave is not a tail) and
// streams each row block's 16 x K weights in stages of 16 rows x kRowBytes; a producer warp
// issues one bulk copy per row a stage (16 lanes) into a ring of kStages, and runs ahead across
// row-block boundaries, so the ring never drains between row blocks. Eight consumer warps split
// each stage's bytes (kRowBytes / 8 a warp) and run the decode GEMV's m16n8k16 MMAs on them
// (gemv_tile.cuh: lane (g, q) takes 16 bytes of rows g and g + 8 and of x's token g), then
// release the slot on its `empty` mbarrier. After a row block the warps' C tiles are summed in
// shared memory in warp order and written. Rows sit in the ring at a pitch of kRowBytes + 64
// bytes: a quarter-warp's 16-byte loads (rows g and g + 1, 64 bytes each) then cover all 32
// banks once.
//
// Limits (checked): fp16 or bf16, T <= 8, K % 32 == 0, x and W 16-byte aligned, sm_90. No bias.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/gemv_tile.cuh"
#include "kernels/cuda/internal.h"

namespace chai::cuda {
namespace {

constexpr int kConsumerWarps = 8;
constexpr int kThreads = (kConsumerWarps + 1) * 32;  // the last warp produces
constexpr int kTileRows = 16;
constexpr int kReduceBytes = kConsumerWarps * kTileRows * kGemvMaxTokens * 4;

__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// One arrival on `bar` (the consumer warps' release of a slot).
__device__ __forceinline__ void MbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// The consumer warps' own barrier (the producer warp does not take part).
__device__ __forceinline__ void ConsumerBarrier() {
  asm volatile("bar.sync 1, %0;\n" ::"n"(kConsumerWarps * 32) : "memory");
}
#endif

template <int kRowBytes, int kStages>
constexpr int SharedBytes() {
  return kStages * kTileRows * (kRowBytes + 64) + kReduceBytes;
}

template <typename T, int kRowBytes, int kStages, int kMinCtas>
__global__ void __launch_bounds__(kThreads, kMinCtas)
    GemvBulkKernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out, int tokens, int64_t n,
                   int64_t k, int64_t row_blocks, int64_t blocks_per_cta) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int kPitch = kRowBytes + 64;
  constexpr int kStageBytes = kTileRows * kPitch;
  constexpr int kWarpBytes = kRowBytes / kConsumerWarps;  // a consumer warp's bytes of each row a stage
  static_assert(kWarpBytes % 64 == 0, "a warp step covers 64 bytes of a row");
  extern __shared__ __align__(128) unsigned char smem[];
  float* reduce = reinterpret_cast<float*>(smem + kStages * kStageBytes);
  __shared__ __align__(8) uint64_t full[kStages], empty[kStages];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      MbarInit(SmemAddress(&full[s]), 1);
      MbarInit(SmemAddress(&empty[s]), kConsumerWarps);
    }
    MbarInitFence();
  }
  __syncthreads();
  const int64_t row_bytes = k * static_cast<int64_t>(sizeof(T));
  const int64_t chunks = (row_bytes + kRowBytes - 1) / kRowBytes;
  const int64_t first_block = blockIdx.x * blocks_per_cta;
  const int64_t end_block = min(row_blocks, first_block + blocks_per_cta);
  if (first_block >= end_block) return;

  if (warp == kConsumerWarps) {
    const int64_t fills = (end_block - first_block) * chunks;
    for (int64_t i = 0; i < fills; ++i) {
      const int s = static_cast<int>(i % kStages);
      const int64_t round = i / kStages;
      if (round > 0) MbarWait(SmemAddress(&empty[s]), static_cast<uint32_t>((round - 1) & 1));
      const int64_t block = first_block + i / chunks, chunk = i % chunks;
      const uint32_t bytes = static_cast<uint32_t>(min(int64_t{kRowBytes}, row_bytes - chunk * kRowBytes));
      if (lane == 0) MbarArriveExpectTx(SmemAddress(&full[s]), kTileRows * bytes);
      __syncwarp();
      if (lane < kTileRows) {
        const int64_t row = min(block * kTileRows + lane, n - 1);  // rows past n: row n - 1, discarded
        const unsigned char* src = reinterpret_cast<const unsigned char*>(w) + row * row_bytes + chunk * kRowBytes;
        BulkCopyG2S(SmemAddress(smem + s * kStageBytes + lane * kPitch), src, bytes, SmemAddress(&full[s]));
      }
    }
    return;
  }

  const int g = lane / 4, q = lane % 4;
  const unsigned char* xrow = reinterpret_cast<const unsigned char*>(x + min(g, tokens - 1) * k);
  int64_t i = 0;
  for (int64_t block = first_block; block < end_block; ++block) {
    float c0[4] = {0.f, 0.f, 0.f, 0.f}, c1[4] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t chunk = 0; chunk < chunks; ++chunk, ++i) {
      const int s = static_cast<int>(i % kStages);
      MbarWait(SmemAddress(&full[s]), static_cast<uint32_t>((i / kStages) & 1));
      const int64_t base = chunk * kRowBytes;
      const int64_t valid = min(int64_t{kRowBytes}, row_bytes - base);  // a multiple of 64 (K % 32 == 0)
      const unsigned char* stage = smem + s * kStageBytes;
#pragma unroll
      for (int j = 0; j < kWarpBytes / 64; ++j) {
        const int off = warp * kWarpBytes + j * 64;
        if (off < valid) {
          const uint4 wa = *reinterpret_cast<const uint4*>(stage + g * kPitch + off + q * 16);
          const uint4 wb = *reinterpret_cast<const uint4*>(stage + (g + 8) * kPitch + off + q * 16);
          const uint4 xv = gemv::LoadCached(reinterpret_cast<const uint4*>(xrow + base + off + q * 16));
          gemv::MmaChunk<T>(c0, c1, wa, wb, xv);
        }
      }
      __syncwarp();
      if (lane == 0) MbarArrive(SmemAddress(&empty[s]));
    }
    // C fragments: c[0] = C[g][2q], c[1] = C[g][2q + 1], c[2] = C[g + 8][2q], c[3] = C[g + 8][2q + 1].
    float* mine = reduce + warp * kTileRows * kGemvMaxTokens;
    mine[g * kGemvMaxTokens + 2 * q] = c0[0] + c1[0];
    mine[g * kGemvMaxTokens + 2 * q + 1] = c0[1] + c1[1];
    mine[(g + 8) * kGemvMaxTokens + 2 * q] = c0[2] + c1[2];
    mine[(g + 8) * kGemvMaxTokens + 2 * q + 1] = c0[3] + c1[3];
    ConsumerBarrier();
    if (threadIdx.x < kTileRows * kGemvMaxTokens) {
      const int r = threadIdx.x / kGemvMaxTokens, t = threadIdx.x % kGemvMaxTokens;
      const int64_t row = block * kTileRows + r;
      if (t < tokens && row < n) {
        float sum = 0.f;
        for (int wi = 0; wi < kConsumerWarps; ++wi) sum += reduce[wi * kTileRows * kGemvMaxTokens + threadIdx.x];
        out[t * n + row] = FromFloat<T>(sum);
      }
    }
    ConsumerBarrier();  // the sums are read before the next row block's tiles overwrite them
  }
#endif
}

template <typename T, int kRowBytes, int kStages, int kMinCtas>
void LaunchGemvBulk(const Tensor& x, const Tensor& weight, Tensor* out) {
  const auto kernel = GemvBulkKernel<T, kRowBytes, kStages, kMinCtas>;
  constexpr int shared = SharedBytes<kRowBytes, kStages>();
  static bool configured = false;  // per instantiation; one device per process here (benchmark use)
  if (!configured) {
    CHAI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared));
    configured = true;
  }
  int per_sm = 0;
  CHAI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, shared));
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  const int64_t row_blocks = (n + kTileRows - 1) / kTileRows;
  const int64_t resident = int64_t{std::max(per_sm, 1)} * SmCount();
  const int64_t per_cta = (row_blocks + resident - 1) / resident;
  const int64_t grid = (row_blocks + per_cta - 1) / per_cta;
  kernel<<<static_cast<unsigned>(grid), kThreads, shared, CurrentStream()>>>(
      static_cast<const T*>(x.raw()), static_cast<const T*>(weight.raw()), static_cast<T*>(out->raw()),
      static_cast<int>(tokens), n, k, row_blocks, per_cta);
  CHAI_CUDA_CHECK_LAUNCH();
}

template <typename T>
void GemvBulkTyped(const Tensor& x, const Tensor& weight, Tensor* out, int variant) {
  switch (variant) {
    case 0:
      return LaunchGemvBulk<T, 2048, 3, 2>(x, weight, out);  // 3 x 32 KB stages, 2 CTAs per SM
    case 1:
      return LaunchGemvBulk<T, 1024, 6, 2>(x, weight, out);  // 6 x 16 KB, 2 CTAs per SM
    default:
      return LaunchGemvBulk<T, 1024, 3, 3>(x, weight, out);  // 3 x 16 KB, 3-4 CTAs per SM
  }
}

}  // namespace

const char* GemvBulkVariantName(int variant) {
  static const char* const kNames[] = {"bulk.s32k.x3", "bulk.s16k.x6", "bulk.s16k.x3"};
  return kNames[std::clamp(variant, 0, kGemvBulkVariants - 1)];
}

bool GemvBulkApplies(const Tensor& x, const Tensor& weight) {
  return CopyEngineDevice() && GemvApplies(x, weight) && x.dim(1) % 32 == 0;
}

void GemvBulk(const Tensor& x, const Tensor& weight, Tensor* out, int variant) {
  if (x.dim(0) == 0 || weight.dim(0) == 0) return;
  if (!GemvBulkApplies(x, weight)) {
    std::fprintf(stderr, "chai: internal error: GemvBulk called on %s x %s (needs sm_90, K %% 32 == 0, aligned)\n",
                 x.ShapeString().c_str(), weight.ShapeString().c_str());
    std::abort();
  }
  if (x.dtype() == DType::kF16) {
    GemvBulkTyped<__half>(x, weight, out, variant);
  } else {
    GemvBulkTyped<__nv_bfloat16>(x, weight, out, variant);
  }
}

}  // namespace chai::cuda
