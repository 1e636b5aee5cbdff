// PagedAttention decode kernel 4 (the default for dense layers on sm_90; CHAI layers with
// CHAI_DECODE_CHAI_KERNEL=4): decode whose K and V stream through Hopper's bulk copy engine.
//
// Scope: one new row per sequence, fp16/bf16, head_dim 64 or 128, up to 8 query heads per KV
// head, block_size >= 8, sm_90. Everything else keeps kernels 1-3 (paged_attention.cu decides).
// A layer runs as one of two launch shapes (the template's kPass):
// - dense (kV4Dense; launch hint 1): one pass reading K and V, described below;
// - CHAI (hint > 1): two passes, kernel 3's split in bulk copies. kV4Scores streams only K of KV
//   groups that hold a representative (score_head[h] == h) and writes the representatives'
//   scaled logits (fp32, exp2 domain) to logits[seq][h][pos]; kV4Pv streams only V, and with it
//   each head's representative's logits row (bulk copies again, into the stage beside V), then
//   runs the dense pass's softmax and P·V on those logits. So a CHAI layer reads K of its
//   representatives and V of every head, plus logits (4 bytes per position and head, from L2).
//   The two passes may split the sequence differently: they share the logits by position only.
// The dense and P·V grids are kernel 2's with one subset and one member share: blockIdx.x =
// sequence * kv_heads + KV head g, blockIdx.y = split; a CTA takes all G query heads of g over its
// chunk of positions, and chunks are sized by MakePlanV2 (dense) or MakePlanV4Chai (whole waves
// of resident CTAs). A sequence split over several chunks writes kernel 2's partials and the last
// CTA to finish merges them, as kernels 1 and 2 do. The scores pass launches about one CTA per
// busy (sequence, KV group) per split and each CTA finds its items on the device (V4ScoreItems).
//
// Streaming (the stage layout, ring and load modes: paged_attention_v4_shape.cuh; the copies that
// fill a stage: paged_attention_v4_loader.cuh): a ring of
// shared-memory stages (V4Stage), a dense stage holding the K rows and the V
// rows of kV4Rows positions (32 KB together: 64 positions at head_dim 128, 128 at 64). Every pass
// streams through the copy engine by default (kV4Load: the dense pass can take every thread's
// 16-byte cp.async instead, a compile-time variant), as follows. The pool stores
// each (block, head) as block_size x head_dim contiguous elements, so the rows a stage needs from
// one block are one contiguous run: warp 0 issues one `cp.async.bulk` per block and side (one lane
// per block, the block ids read from a 32-entry window of the tables held one per lane, as kernel
// 2 does), and lane 0 arms the stage's mbarrier with the bytes to expect. All four warps wait on
// the mbarrier (phase parity = use of the slot mod 2), compute from shared memory, meet at a
// __syncthreads (every warp is done reading the slot), and warp 0 reissues the slot for the
// stage kStages ahead. So two dense stages (64 KB) are in flight while one is consumed. No proxy
// fence is needed for that reuse: the copy engine writes a slot that ordinary loads read earlier
// (ordered by the barrier), and ordinary loads read what the copy engine wrote after the mbarrier
// wait (its acquire); only the zero-fill of a missing block (ordinary stores that a later copy
// overwrites) fences.
//
// Compute, per warp and 16-position tile, on the tensor cores: paged_attention_v4_tile.cuh.
// The warps' (m, l, O) are merged in shared memory (the idle ring) at the end
// (paged_attention_v4_epilogue.cuh).
//
// Dense assumption: the host takes kernel 4 only for layers whose launch hint
// (kv.members_per_rep) is 1, which the engine passes only for unclustered layers. The hint is
// otherwise only a speed hint; kernel 4 cannot compute CHAI's cross-head scores, so a CTA that
// finds a head of its group with score_head[h] != h writes NaN to the group's outputs rather than
// a silently wrong result.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V4_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V4_CUH_

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/l2_prefetch.cuh"
#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_v4_epilogue.cuh"
#include "kernels/cuda/paged_attention_v4_items.cuh"
#include "kernels/cuda/paged_attention_v4_loader.cuh"
#include "kernels/cuda/paged_attention_v4_shape.cuh"
#include "kernels/cuda/paged_attention_v4_tile.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/v4_timeline.h"

namespace chai::cuda::paged {

#ifdef __CUDACC__

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// Diagnostics (CHAI_V4_TIMELINE builds, a timeline set): thread 0 stores word k of this CTA's
// timeline in pass kPass's region (v4_timeline.h). Compiles to nothing otherwise.
template <int kPass>
__device__ __forceinline__ void V4Timeline(const Params& p, int k) {
  if constexpr (kV4Timeline) {
    const int64_t cta = int64_t{blockIdx.y} * gridDim.x + blockIdx.x, region = p.timeline_ctas / 3;
    if (threadIdx.x != 0 || p.timeline == nullptr || cta >= region) return;
    unsigned long long v;
    if (k == kTlSm) {
      unsigned sm;
      asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
      v = sm;
    } else if (k == kTlEntryNs || k == kTlExitNs) {
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(v));
    } else {
      v = static_cast<unsigned long long>(clock64());
    }
    p.timeline[(kPass * region + cta) * kV4TimelineWords + k] = v;
  }
}

// One work item of pass kPass: the (sequence s, KV head g, split) a dense or P·V CTA owns, or one
// of a scores CTA's items. The ring's mbarriers are initialised once per CTA (the kernel);
// `uses` counts the stages this CTA consumed before, so that stage t of this item takes slot
// (uses + t) % kStages with phase parity ((uses + t) / kStages) % 2. Returns with the ring
// drained (every stage waited for and released by a barrier) and *uses advanced.
template <typename T, int kD, int kPass>
__device__ __forceinline__ void V4Item(const Params& p, int s, int g, int split, uint32_t full0, int* uses) {
  static_assert(sizeof(T) == 2, "fp16/bf16 only");
  using Stage = V4Stage<kD, kPass>;
  using Loader = V4Loader<T, kD, kPass>;
  constexpr int kRows = Stage::kRows;
  constexpr int kStages = Stage::kStages;
  constexpr int kWarpRows = kRows / kDecodeWarps;  // rows of a stage each warp takes
  constexpr int kSub = kWarpRows / 16;              // its 16-position tiles
  constexpr int kRowBytes = kD * 2;
  constexpr int kPairs = kD / 32;                   // 16-byte K pieces per lane and row (two k-steps each)
  constexpr int kMTiles = kD / 16;                  // 16-dim tiles of O^T
  constexpr bool kHasK = Stage::kHasK, kHasV = Stage::kHasV;
  constexpr int kLoad = Loader::kLoad;
  static_assert(kSub >= 1 && kWarpRows % 16 == 0, "stage shape");
  static_assert(kPairs >= 2 && kMTiles % 2 == 0, "head_dim 64 or 128");

  CHAI_PAGED_DYNAMIC_SHARED(uint4, v4_smem);  // kStages x Stage; at the end the warps' O
  __shared__ float2 s_ml[kDecodeWarps][kV4MaxGroup];
  __shared__ int s_rep[kV4MaxGroup];

  const int kvh = p.kv_heads;
  const int64_t trow = p.slots != nullptr ? p.slots[s] : s;
  const int H = p.heads, G = p.group, h0 = g * G;
  const int row = p.q_start[s], row_end = p.q_start[s + 1];
  // The CHAI passes clamp the length to the logits' stride: a length above the host's bound (a
  // caller error) must not reach past the scratch.
  const int len = kPass == kV4Dense ? p.seq_lens[s] : min(p.seq_lens[s], p.logit_stride);
  if (row_end - row != 1) return;  // prefill rows take the prefill kernels, idle sequences nothing
  // The chunk scaled to this sequence, as kernels 2 and 3 do.
  const int splits = kPass == kV4Scores ? p.score_splits : p.max_splits;
  const int chunk = kPass == kV4Dense ? min(p.chunk, SeqChunk(len, splits)) : SeqChunk(len, splits);
  const int c0 = split * chunk;
  if (c0 >= len) return;
  const int cl = min(len - c0, chunk);
  const int nsplit = min((len + chunk - 1) / chunk, splits);
  V4Timeline<kPass>(p, kTlBounds);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int gi = lane / 4, c = lane % 4;  // mma fragment row group and column pair
  T* orow = static_cast<T*>(p.out) + int64_t{row} * H * kD;

  // Loads issued before the first barrier so that their latencies overlap: the heads' score
  // heads, Q in the k order of the score mma (lane (gi, c) holds head h0 + gi, dims 32 pi + 8 c ..
  // + 7 for each pi), and warp 0's first window of block ids.
  const int my_rep = threadIdx.x < G ? p.score_head[trow * H + h0 + threadIdx.x] : -1;
  uint4 qv[kPairs];
  if constexpr (kHasK) {
    const T* qp = static_cast<const T*>(p.q) + int64_t{row} * H * kD + int64_t{h0 + gi} * kD + 8 * c;
#pragma unroll
    for (int pi = 0; pi < kPairs; ++pi) {
      qv[pi] = gi < G ? *reinterpret_cast<const uint4*>(qp + 32 * pi) : make_uint4(0u, 0u, 0u, 0u);
    }
  }
  const int32_t* ktab = p.tables + (trow * 2 * kvh + g) * p.max_blocks;
  const int ntiles = (cl + kRows - 1) / kRows;
  Loader ld{p,    v4_smem, SharedAddress(v4_smem), full0, static_cast<const T*>(p.pool), ktab,
            ktab + int64_t{kvh} * p.max_blocks,   s,     c0,    cl,   ntiles,  *uses, my_rep, lane,
            p.block_size, p.block_shift};
  if (warp == 0 && (Loader::kBulkK || Loader::kBulkV)) ld.load_window(ld.block_of(c0));

  if (threadIdx.x < G) s_rep[threadIdx.x] = my_rep;
  // Dense: a head that does not score itself (kernel 4 cannot compute it under the dense pass,
  // see the header comment). Scores pass: a representative in the group (else no K to read).
  const bool mark = threadIdx.x < G && (kPass == kV4Dense ? my_rep != h0 + static_cast<int>(threadIdx.x)
                                                          : my_rep == h0 + static_cast<int>(threadIdx.x));
  const bool any_marked = __syncthreads_or(mark);
  V4Timeline<kPass>(p, kTlBarrier);
  if constexpr (kPass == kV4Dense) {
    if (any_marked) {  // nothing was issued
      for (int idx = threadIdx.x; idx < G * kD; idx += kDecodeThreads) orow[int64_t{h0} * kD + idx] = FromFloat<T>(NAN);
      return;
    }
  }
  if constexpr (kPass == kV4Scores) {
    if (!any_marked) return;
  }

  // The P·V pass released early by its scores pass (p.pv_early; the kernel skipped its PdlWait):
  // everything read so far and the V rows were written by kernels that completed before the
  // scores pass released this grid (its release follows its own PdlWait, and every kernel waits
  // before its first access), so the first stages' V streams in while the scores pass finishes;
  // the logits, its output, are copied only after this PdlWait. The expected bytes
  // count the logits from the start: a stage completes only once both have landed.
  const int u0 = *uses;
  const bool early = kPass == kV4Pv && p.pv_early != 0;
  if (kLoad != 0 || warp == 0) {
    for (int t = 0; t < min(kStages, ntiles); ++t) early ? ld.issue_data(t) : ld.issue(t);
  }
  V4Timeline<kPass>(p, kTlIssued);
  if (early) {
    PdlWait();
    if (warp == 0) {
      for (int t = 0; t < min(kStages, ntiles); ++t) ld.issue_logits(t);
    }
  }

  // The scores pass writes the logits of the group's representatives (row gi if it is one).
  float* lg_row = nullptr;
  if constexpr (kPass == kV4Scores) {
    if (gi < G && s_rep[gi] == h0 + gi) lg_row = p.logits + (int64_t{s} * H + h0 + gi) * p.logit_stride + c0;
  }

  // Running state of head gi (m and l are the same in the four lanes of a row group; l sums only
  // this lane's positions until the end) and O^T (the layout V4MergeWarps describes).
  float m_run = -INFINITY, l_run = 0.f;
  float acc[kMTiles][4];
#pragma unroll
  for (int i = 0; i < kMTiles; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  const float scale = p.scale_log2;

  for (int t = 0; t < ntiles; ++t) {
    const int slot = (u0 + t) % kStages;
    MbarWait(full0 + 8 * slot, static_cast<uint32_t>((u0 + t) / kStages) & 1u);
    if (t == 0) V4Timeline<kPass>(p, kTlFirst);
    const unsigned char* stage = reinterpret_cast<const unsigned char*>(v4_smem) + slot * Stage::kBytes;
#pragma unroll
    for (int sub = 0; sub < kSub; ++sub) {
      const int r0 = warp * kWarpRows + sub * 16;    // the tile's first row in the stage
      const int valid = cl - t * kRows - r0;         // rows of the tile inside the chunk (warp-uniform)
      if (valid <= 0) continue;

      // x[u][e]: head gi's scaled logit at tile position 8u + 2c + e (-inf past the chunk end).
      float x[2][2];
      if constexpr (kHasK) {
        float sc[2][4];
        V4TileScores<T, kD>(stage + r0 * kRowBytes, qv, gi, c, sc);
#pragma unroll
        for (int u = 0; u < 2; ++u)
#pragma unroll
          for (int e = 0; e < 2; ++e) x[u][e] = 8 * u + 2 * c + e < valid ? sc[u][e] * scale : -INFINITY;
        if constexpr (kPass == kV4Scores) {
          if (lg_row != nullptr) {
#pragma unroll
            for (int u = 0; u < 2; ++u) {
              const int j = 8 * u + 2 * c;  // even: the pair is 8-byte aligned
              float* dst = lg_row + t * kRows + r0 + j;
              if (j + 1 < valid) {
                *reinterpret_cast<float2*>(dst) = make_float2(x[u][0], x[u][1]);
              } else if (j < valid) {
                *dst = x[u][0];
              }
            }
          }
          continue;  // no softmax, no V in the scores pass
        }
      } else {
        // The representative's logits, copied beside V; heads past the group (unused mma
        // columns) read as zeros, as a dense group's zero Q rows would score.
        const float* lr = reinterpret_cast<const float*>(stage + Stage::kLogitOff) + gi * Stage::kLogitRow + r0;
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          const int j = 8 * u + 2 * c;
          const float2 v = gi < G ? *reinterpret_cast<const float2*>(lr + j) : make_float2(0.f, 0.f);
          x[u][0] = j < valid ? v.x : -INFINITY;
          x[u][1] = j + 1 < valid ? v.y : -INFINITY;
        }
      }

      if constexpr (kHasV) {
        V4TileSoftmaxPv<T, kD>(x, stage + Stage::kVOff + r0 * kRowBytes, valid, gi, c, &m_run, &l_run, acc);
      }
    }
    __syncthreads();  // every warp is done with the slot: it may be refilled
    if ((kLoad != 0 || warp == 0) && t + kStages < ntiles) ld.issue(t + kStages);
  }
  *uses = u0 + ntiles;
  V4Timeline<kPass>(p, kTlLoopEnd);
  if constexpr (kPass == kV4Scores) return;  // the logits are the pass's whole output

  static_assert(kDecodeWarps * kV4MaxGroup * (kD + 4) * 4 <= Stage::kSharedBytes, "the merge fits the ring");
  V4MergeWarps<T, kD>(p, s, h0, G, split, nsplit, orow, m_run, l_run, acc, reinterpret_cast<float*>(v4_smem), s_ml);
}
#endif  // __CUDA_ARCH__ >= 900

// Dense and P·V passes: grid (num_seqs * kv_heads, splits), one item per CTA. Scores pass: grid
// (plan.v4_score_ctas, score_splits), each CTA taking the items V4ScoreItems gives it.
template <typename T, int kD, int kPass>
__global__ void __launch_bounds__(kDecodeThreads, 2) DecodeV4Kernel(Params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  V4Timeline<kPass>(p, kTlSm);
  V4Timeline<kPass>(p, kTlEntryNs);
  V4Timeline<kPass>(p, kTlEntry);
  // The barriers live in shared memory only: set them up while the previous kernel drains (PDL).
  __shared__ uint64_t s_full[kV4MaxStages];
  const uint32_t full0 = SharedAddress(s_full);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < V4Stage<kD, kPass>::kStages; ++i) MbarInit(full0 + 8 * i, kV4StageArrivals<kPass>);
    MbarInitFence();
  }
  // A P·V pass released early (p.pv_early) waits inside V4Item, after issuing its first V
  // stages, and again here for the CTAs that return before (idle or short sequences): every CTA
  // waits, so this grid completes only after the scores pass has.
  if (kPass != kV4Pv || p.pv_early == 0) PdlWait();
  V4Timeline<kPass>(p, kTlInit);
  if constexpr (kPass == kV4Scores) {
    if (p.pv_early != 0) PdlReleaseDependents();
  }
  // The barriers are visible to every thread before their first use: V4Item meets at a
  // __syncthreads_or before any copy is issued or awaited.
  int uses = 0;
  if constexpr (kPass != kV4Scores) {
    const int kvh = p.kv_heads;
    V4Item<T, kD, kPass>(p, static_cast<int>(blockIdx.x) / kvh, static_cast<int>(blockIdx.x) % kvh,
                         static_cast<int>(blockIdx.y), full0, &uses);
    if constexpr (kPass == kV4Pv) PdlWait();
    // The next GEMV's first weights into L2 (PagedKv::then), after this CTA's own K/V stream so
    // that those requests do not queue behind the prefetches; consecutive ranges from different
    // CTAs (SMs' copy engines).
    const int64_t cta = int64_t{blockIdx.y} * gridDim.x + blockIdx.x, ctas = int64_t{gridDim.x} * gridDim.y;
    IssueL2Prefetch(p.then, threadIdx.x * ctas + cta, ctas * kDecodeThreads);
    V4Timeline<kPass>(p, kTlExit);
    V4Timeline<kPass>(p, kTlExitNs);
  } else {
    __shared__ int s_items[kV4MaxItems];
    const int n = V4ScoreItems(p, s_items);
    V4Timeline<kPass>(p, kTlItems);
    for (int k = 0; k < n; ++k) {
      V4Item<T, kD, kPass>(p, s_items[k] / p.kv_heads, s_items[k] % p.kv_heads, static_cast<int>(blockIdx.y), full0,
                           &uses);
    }
    V4Timeline<kPass>(p, kTlExit);
    V4Timeline<kPass>(p, kTlExitNs);
  }
#endif  // __CUDA_ARCH__ >= 900
}

#endif  // __CUDACC__

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V4_CUH_
