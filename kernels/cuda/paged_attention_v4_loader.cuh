// Decode kernel 4's stage loads (paged_attention_decode_v4.cuh has the kernel and its design
// notes; paged_attention_v4_shape.cuh the stage layout and load modes): which pool rows a stage
// of one work item covers, and their copies into the ring slot, by warp 0's bulk copies (one per
// block and side, and in the P·V pass the representatives' logits rows) or every thread's
// 16-byte cp.async (the dense pass's compile-time variant).
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_LOADER_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_LOADER_CUH_

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_prefill_mma.cuh"  // SharedAddress
#include "kernels/cuda/paged_attention_v4_shape.cuh"

namespace chai::cuda::paged {

#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// CpAsync16 with the `.L2::128B` prefetch qualifier, as CUTLASS-style sm80 kernels issue theirs
// (the dense pass's cp.async variant, CHAI_V4_CPASYNC=1). On an H200 it cut that pass's L2 tag
// requests by 14% and its time by 0.7-1.3% while the ring was misaligned; `.L2::256B` was slower.
// The rest of its extra requests were the ring's alignment (paged_attention_common.cuh).
__device__ __forceinline__ void V4CpAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(SharedAddress(dst)),
               "l"(__cvta_generic_to_global(src)), "r"(valid ? 16 : 0)
               : "memory");
}

// The loads of one work item (sequence s, KV head g, chunk [c0, c0 + cl)) of pass kPass. Stage t
// covers chunk rows t * kRows .. and lands in ring slot (u0 + t) % kStages, whose mbarrier is
// full0 + 8 * slot. Warp 0 keeps a 32-entry window of the block tables, one id per lane (kernel
// 2's scheme), so that a stage's block ids come from shuffles instead of dependent loads.
template <typename T, int kD, int kPass>
struct V4Loader {
  using Stage = V4Stage<kD, kPass>;
  static constexpr int kRows = Stage::kRows;
  static constexpr int kStages = Stage::kStages;
  static constexpr int kRowBytes = kD * 2;
  static constexpr bool kHasK = Stage::kHasK, kHasV = Stage::kHasV;
  // Which sides warp 0's bulk copies fill and which every thread's cp.async (kV4Load).
  static constexpr int kLoad = kV4Load<kPass>;
  static constexpr bool kBulkK = kHasK && kLoad != 1, kBulkV = kHasV && kLoad == 0;
  static constexpr bool kCpK = kHasK && kLoad == 1, kCpV = kHasV && kLoad != 0;
  static constexpr unsigned kAll = 0xffffffffu;

  const Params& p;
  uint4* smem;     // the ring (dynamic shared memory)
  uint32_t ring;   // its shared-space address
  uint32_t full0;  // slot 0's mbarrier
  const T* pool;
  const int32_t* ktab;  // this (sequence, KV head)'s K and V block lists
  const int32_t* vtab;
  int s, c0, cl, ntiles, u0, my_rep, lane;  // ntiles: stages of the chunk
  int bs, shift;
  int win_base = 0, kwin = -1, vwin = -1;  // warp 0: block ids win_base + lane

  __device__ __forceinline__ int block_of(int pos) const { return shift >= 0 ? pos >> shift : pos / bs; }

  __device__ __forceinline__ void load_window(int base) {
    win_base = base;
    const int b = base + lane;
    if constexpr (kBulkK) kwin = b < p.max_blocks ? __ldg(ktab + b) : -1;
    if constexpr (kBulkV) vwin = b < p.max_blocks ? __ldg(vtab + b) : -1;
  }

  // Stage t's positions [pos0, pos1) and the blocks b0..b1 they touch.
  __device__ __forceinline__ void stage_blocks(int t, int* pos0, int* pos1, int* b0, int* b1) const {
    *pos0 = c0 + t * kRows;
    *pos1 = c0 + min(cl, (t + 1) * kRows);
    *b0 = block_of(*pos0);
    *b1 = block_of(*pos1 - 1);
  }

  // The P·V pass: the bytes of head `lane`'s representative's logits over [pos0, pos1), rounded
  // up to whole 16-byte units (inside the row: the stride is a multiple of 4 and pos0 of
  // kChunkAlign).
  __device__ __forceinline__ uint32_t logit_bytes(int pos0, int pos1) const {
    return kPass == kV4Pv && lane < p.group ? static_cast<uint32_t>((pos1 - pos0 + 3) / 4 * 16) : 0u;
  }

  // The P·V pass: lanes < G copy their head's representative's logits over stage t (warp 0).
  __device__ __forceinline__ void issue_logits(int t) {
    if constexpr (kPass == kV4Pv) {
      static_assert(kV4Load<kV4Pv> == 0, "warp 0 alone issues the P·V pass's copies (lanes < G its logits)");
      const int slot = (u0 + t) % kStages;
      int pos0, pos1, b0, b1;
      stage_blocks(t, &pos0, &pos1, &b0, &b1);
      const uint32_t lbytes = logit_bytes(pos0, pos1);
      if (lbytes == 0) return;
      const float* src = p.logits + (int64_t{s} * p.heads + my_rep) * p.logit_stride + pos0;
      BulkCopyG2S(ring + slot * Stage::kBytes + Stage::kLogitOff + lane * Stage::kLogitRow * 4, src, lbytes,
                  full0 + 8 * slot);
    }
  }

  // Stage t's K and/or V, and the arming of its barrier for every byte it will receive (the
  // logits' too, which issue_logits copies). Lane i of warp 0 takes the i-th block the stage
  // touches: one copy per side of the rows of that block inside the stage.
  __device__ __forceinline__ void issue_data(int t) {
    const int slot = (u0 + t) % kStages;
    const uint32_t bar = full0 + 8 * slot;
    int pos0, pos1, b0, b1;
    stage_blocks(t, &pos0, &pos1, &b0, &b1);
    if constexpr (kCpK || kCpV) {
      // Every thread: one 16-byte piece per row and side of rows tid / kPieces + k * kRowStep
      // (a missing block reads as zeros: src-size 0), then its arrival on the stage's barrier.
      constexpr int kPieces = kRowBytes / 16, kRowStep = kDecodeThreads / kPieces;
      static_assert(kRows % kRowStep == 0, "stage rows");
      const int piece = threadIdx.x % kPieces;
      unsigned char* dst = reinterpret_cast<unsigned char*>(smem) + slot * Stage::kBytes + 16 * piece;
#pragma unroll
      for (int k = 0; k < kRows / kRowStep; ++k) {
        const int r = static_cast<int>(threadIdx.x) / kPieces + k * kRowStep, pos = pos0 + r;
        if (pos < pos1) {
          const int b = block_of(pos), in = pos - b * bs;
          if constexpr (kCpK) {
            const int kb = __ldg(ktab + b);
            V4CpAsync16(dst + r * kRowBytes, pool + (int64_t{max(kb, 0)} * bs + in) * kD + 8 * piece, kb >= 0);
          }
          if constexpr (kCpV) {
            const int vb = __ldg(vtab + b);
            V4CpAsync16(dst + Stage::kVOff + r * kRowBytes, pool + (int64_t{max(vb, 0)} * bs + in) * kD + 8 * piece,
                        vb >= 0);
          }
        }
      }
      CpAsyncMbarArrive(bar);
      if (!kV4BulkAny<kPass> || threadIdx.x / 32 != 0) return;
    }
    if (b1 >= win_base + 32) load_window(b0);  // warp-uniform; only when the prefetch below could not cover it
    const int b = b0 + lane;
    const int from = (b - win_base) & 31;
    const int kb = kBulkK ? __shfl_sync(kAll, kwin, from) : 0;
    const int vb = kBulkV ? __shfl_sync(kAll, vwin, from) : 0;
    const bool mine = b <= b1;
    const int lo = max(pos0, b * bs), hi = min(pos1, (b + 1) * bs);
    const uint32_t bytes = mine ? static_cast<uint32_t>(hi - lo) * kRowBytes : 0u;
    const uint32_t sbase = static_cast<uint32_t>(slot) * Stage::kBytes + static_cast<uint32_t>(lo - pos0) * kRowBytes;
    if (mine && (kb < 0 || vb < 0)) {
      // A missing block (a dense layer has none) reads as zeros, as kernels 1 and 2 read it.
      // Ordinary stores that later copies into this slot overwrite: fence them for the copy engine.
      uint4* dst = smem + sbase / 16;
      for (uint32_t k = 0; k < bytes / 16; ++k) {
        if (kb < 0) dst[k] = make_uint4(0u, 0u, 0u, 0u);
        if (vb < 0) dst[Stage::kVOff / 16 + k] = make_uint4(0u, 0u, 0u, 0u);
      }
      FenceProxyAsyncShared();
    }
    uint32_t total = (kBulkK && kb >= 0 ? bytes : 0u) + (kBulkV && vb >= 0 ? bytes : 0u) + logit_bytes(pos0, pos1);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) total += __shfl_xor_sync(kAll, total, off);
    __syncwarp();  // the zero-fills happen before the arrival that completes the phase
    if (lane == 0) MbarArriveExpectTx(bar, total);
    const int in_block = lo - b * bs;  // the run's first row inside the block
    if (kBulkK && mine && kb >= 0) BulkCopyG2S(ring + sbase, pool + (int64_t{kb} * bs + in_block) * kD, bytes, bar);
    if (kBulkV && mine && vb >= 0) {
      BulkCopyG2S(ring + sbase + Stage::kVOff, pool + (int64_t{vb} * bs + in_block) * kD, bytes, bar);
    }
    // Next stage's block ids outside the window: load the window now, so that the table read's
    // latency passes while the ring drains instead of delaying the next refill.
    if (t + 1 < ntiles) {
      stage_blocks(t + 1, &pos0, &pos1, &b0, &b1);
      if (b1 >= win_base + 32) load_window(b0);
    }
  }

  __device__ __forceinline__ void issue(int t) {
    issue_data(t);
    issue_logits(t);
  }
};
#endif  // __CUDACC__ && __CUDA_ARCH__ >= 900

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_LOADER_CUH_
