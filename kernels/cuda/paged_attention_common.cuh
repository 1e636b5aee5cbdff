// Shared pieces of the PagedAttention kernels: launch parameters and plan, the shape of a head's
// row as the decode kernel reads it, and small device helpers. See paged_attention_kernels.cuh.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_COMMON_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_COMMON_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/decode_splits.h"
#include "kernels/l2_prefetch.h"

// The kernels' dynamic shared memory (a hook so that a host-side emulation can supply it),
// aligned to 128 bytes. The dynamic region starts after the kernel's static __shared__ arrays,
// rounded up only to the declared alignment: with the element type's 16 bytes, decode kernel 4's
// ring began off a 128-byte boundary, and the SM then sent two L2 requests for every 128-byte line
// that a warp's cp.async copied (50.4M tag requests against 33.6M aligned, for the same sectors),
// and its bulk copies ran slower too: CHAI's passes were 2-8% faster aligned at B >= 8 on an H200
// (attention-decode-h200.md). CHAI_PAGED_SMEM_ALIGN at compile time is for that A/B only.
#ifndef CHAI_PAGED_SMEM_ALIGN
#define CHAI_PAGED_SMEM_ALIGN 128
#endif
#ifndef CHAI_PAGED_DYNAMIC_SHARED
#define CHAI_PAGED_DYNAMIC_SHARED(type, name) extern __shared__ __align__(CHAI_PAGED_SMEM_ALIGN) type name[]
#endif

namespace chai::cuda::paged {

constexpr int kMaxHeads = 256;    // query heads per call (per rank)
constexpr int kMaxHeadDim = 256;  // head_dim bound of every path
constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = kDecodeThreads / 32;
constexpr int kChunkAlign = decode_splits::kChunkAlign;  // decode chunks: multiples of this many positions
constexpr int kScoreFloats = 4096;  // decode score buffer: group * chunk <= this (16 KB)
constexpr int kPrefillThreads = 256;
constexpr int kPrefillRows = 64;    // query rows per prefill CTA
constexpr int kPrefillKeys = 64;    // keys per prefill tile
constexpr int kPrefillMembers = 2;  // member heads sharing one score tile in a prefill CTA

// Everything the kernels read; pointers are device pointers.
struct Params {
  const void* q;              // [T, heads * head_dim]
  void* out;                  // [T, heads * head_dim]
  const void* pool;           // [num_blocks, block_size, head_dim]
  const int32_t* tables;      // [rows, 2, kv_heads, max_blocks]
  const int32_t* q_start;     // [num_seqs + 1]
  const int32_t* seq_lens;    // [num_seqs]
  const int32_t* score_head;  // [rows, heads]
  const int32_t* slots;       // [num_seqs]: the tables/score_head row of each sequence; null: row s
  float2* part_ml;            // decode partials: [num_seqs, heads, max_splits] (max, sum)
  float* part_acc;            // decode partials: [num_seqs, heads, max_splits, head_dim]
  int* counters;              // decode: finished chunks per slot; zero between calls
  float* logits;              // decode kernels 3, 4 (CHAI): [num_seqs, heads, logit_stride] representatives' scaled logits
  int num_seqs, heads, kv_heads, group, head_dim, block_size, max_blocks;
  int block_shift;    // log2(block_size) when a power of two, else -1
  int chunk;          // decode: positions per CTA
  int max_splits;     // decode: chunks of the longest sequence
  int subsets;        // decode: representative subsets per (sequence, KV head) = ceil(group / kG)
  int member_splits;  // decode: CTAs sharing out the members of one (sequence, KV head, subset)
  int logit_stride;   // decode kernels 3, 4 (CHAI): positions per logits row (>= the max_seq_len bound)
  int score_splits;   // decode kernels 3, 4 (CHAI): splits of the scores pass (max_splits: the P·V pass's)
  float scale_log2;   // log2(e) / sqrt(head_dim): scores live in the exp2 domain
  int pv_early;       // decode kernel 4 (CHAI): the scores pass releases the P·V pass early, which
                      // issues its first V stages before its PdlWait (paged_attention_decode_v4.cuh)
  L2Prefetch then;    // decode kernel 4 (dense and P·V passes): PagedKv::then
  unsigned long long* timeline;  // decode kernel 4, CHAI_V4_TIMELINE builds: per-CTA marks (v4_timeline.h); null: off
  int timeline_ctas;             // CTAs the timeline has room for (three passes' regions)
};

// Host-side: which kernels to launch and how big.
struct LaunchPlan {
  bool decode = false, prefill = false;
  bool combine = false;  // some sequence may span several decode chunks: partials and counters needed
  bool exact = true;     // head_dim has a specialised kernel and all pointers are 16-byte aligned
  int group_tile = 1;    // kG: representatives per decode CTA (1, 4 or 8)
  int decode_kernel = 1;  // 1: paged_attention_decode.cuh; 2: _decode_v2.cuh; 3: _decode_v3.cuh; 4: _decode_v4.cuh
  int v2_members = 1;     // kernel 2: members accumulated per pass (1, 2 or 4)
  bool v4_chai = false;   // kernel 4: the two CHAI passes (scores, then P·V) instead of the dense one
  int v4_score_ctas = 0;  // kernel 4, CHAI: CTAs per split of the scores pass
  int decode_slots = 0;  // decode grid columns: (sequence, KV head, subset, member share)
  int prefill_tiles = 0;
  int prefill_kernel = 1;   // 1: paged_attention_prefill{,_mma}.cuh; 2: _prefill_v2.cuh (fp16/bf16, d % 16 == 0)
  int prefill_rows = 64;    // kernel 2: query rows per CTA (64 or 128)
  int prefill_members = 2;  // kernel 2: member heads per CTA (1 or 2)
};

// ------------------------------------------------------------------------------------------
// Shapes of a head's row as the decode kernel reads it: kLpr lanes share a row, each loading
// kNv vectors of kVec elements (vector index t * kLpr + lane_in_row); kRpw rows per warp-step.
// kD == 0 is the generic fallback: any head_dim <= 256, scalar loads.

constexpr int Pow2Ceil(int x) {
  int p = 1;
  while (p < x) p *= 2;
  return p;
}

template <typename T, int kD>
struct RowShape {
  static constexpr bool kExact = kD > 0;
  static constexpr int kDMax = kExact ? kD : kMaxHeadDim;
  static constexpr int kVec = kExact ? static_cast<int>(16 / sizeof(T)) : 1;
  static constexpr int kVecs = kDMax / kVec;
  static constexpr int kLpr = kVecs >= 32 ? 32 : Pow2Ceil(kVecs);
  static constexpr int kNv = (kVecs + kLpr - 1) / kLpr;
  static constexpr int kRpw = 32 / kLpr;
  static_assert(!kExact || kD % kVec == 0, "head_dim must be a multiple of the 16-byte vector");
};

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> ZeroVec() {
  Vec<T, N> z;
#pragma unroll
  for (int e = 0; e < N; ++e) z.v[e] = FromFloat<T>(0.f);
  return z;
}

// Pointer to position `pos` of a (sequence, side, head) block list, or nullptr without a block.
template <typename T>
__device__ __forceinline__ const T* RowPtr(const T* pool, const int32_t* table, int pos, int block_size, int shift,
                                           int d) {
  const int b = shift >= 0 ? pos >> shift : pos / block_size;
  const int32_t block = table[b];
  if (block < 0) return nullptr;
  return pool + (int64_t{block} * block_size + (pos - b * block_size)) * d;
}

// Head sizes with a specialised kernel (others take the generic one).
inline bool SpecialisedHeadDim(int d) {
  return d == 8 || d == 16 || d == 32 || d == 64 || d == 80 || d == 96 || d == 128 || d == 256;
}

#ifdef __CUDACC__
// Positions per split of a sequence of `len` when the host planned `splits` for the bound: the
// host only knows an upper bound of the lengths (a recorded graph's bucket), so each CTA scales
// the chunk to its own sequence and a shorter sequence still spreads over all the splits.
__device__ __forceinline__ int SeqChunk(int len, int splits) {
  const int c = (len + splits - 1) / splits;
  return max(kChunkAlign, (c + kChunkAlign - 1) / kChunkAlign * kChunkAlign);
}

// Warp 0's plan of a decode CTA of kernels 1 and 2: this slot's representatives (heads r of KV
// group g with sh[r] == r, the subset-th kG of them), then their members in head order, keeping
// only this CTA's share: the members' distinct V heads are ranked in order and share msub takes
// ranks msub, msub + msplit, ... (whole V heads, so each V head is still read by one CTA of the
// slot); each member's representative index goes to s_memrep. Finally the representatives are
// narrowed to those the share's members use and the indices renumbered into them.
template <int kG>
__device__ void PlanShare(const int* sh, int H, int G, int g, int subset, int msplit, int msub, int* s_reps,
                            int* s_mem, unsigned char* s_memrep, int* s_nreps, int* s_nmem) {
  const int lane = threadIdx.x % 32;
  const unsigned lanes_below = (1u << lane) - 1u;
  int count = 0;
  for (int base = 0; base < G; base += 32) {
    const int h = g * G + base + lane;
    const bool is_rep = base + lane < G && sh[h] == h;
    const unsigned mask = __ballot_sync(0xffffffffu, is_rep);
    const int k = count + __popc(mask & lanes_below) - subset * kG;
    if (is_rep && k >= 0 && k < kG) s_reps[k] = h;
    count += __popc(mask);
  }
  const int nr = min(max(count - subset * kG, 0), kG);
  __syncwarp();
  int nm = 0, nv = 0, last_vg = -1;
  unsigned used = 0;  // bit i: s_reps[i] has a member in this share (this lane's view)
  for (int base = 0; base < H && nr > 0; base += 32) {
    const int h = base + lane, vg = h / G;
    int idx = -1;
    if (h < H) {
      const int r = sh[h];
#pragma unroll
      for (int i = 0; i < kG; ++i) {
        if (i < nr && s_reps[i] == r) idx = i;
      }
    }
    const unsigned mmask = __ballot_sync(0xffffffffu, idx >= 0);
    // Rank of this member's V head among the slot's member V heads (heads ascend, so the
    // members of one V head are consecutive): a new V head unless the previous member's.
    const unsigned before = mmask & lanes_below;
    const int prev_vg_lane = __shfl_sync(0xffffffffu, vg, before != 0u ? 31 - __clz(before) : lane);
    const bool new_v = idx >= 0 && vg != (before != 0u ? prev_vg_lane : last_vg);
    const unsigned vmask = __ballot_sync(0xffffffffu, new_v);
    const int vrank = nv + __popc(vmask & (lanes_below | (1u << lane))) - 1;
    const bool mine = idx >= 0 && vrank % msplit == msub;
    const unsigned kmask = __ballot_sync(0xffffffffu, mine);
    if (mine) {
      const int at = nm + __popc(kmask & lanes_below);
      s_mem[at] = h;
      s_memrep[at] = static_cast<unsigned char>(idx);
      used |= 1u << idx;
    }
    nm += __popc(kmask);
    nv += __popc(vmask);
    if (mmask != 0u) last_vg = __shfl_sync(0xffffffffu, vg, 31 - __clz(mmask));
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) used |= __shfl_xor_sync(0xffffffffu, used, off);
  // Compact s_reps to the used ones and renumber the members' indices into it.
  const int rep = lane < nr ? s_reps[lane] : 0;
  __syncwarp();
  if (lane < kG && ((used >> lane) & 1u)) s_reps[__popc(used & lanes_below)] = rep;
  for (int i = lane; i < nm; i += 32) {
    s_memrep[i] = static_cast<unsigned char>(__popc(used & ((1u << s_memrep[i]) - 1u)));
  }
  if (lane == 0) {
    *s_nreps = __popc(used);
    *s_nmem = nm;
  }
}

// The flash-decoding combine's rendezvous: true in every thread of the CTA that is the last of
// the `nsplit` CTAs counting on counters[blockIdx.x] to finish, which then owns the merge
// (LastArrival, cuda_utils.cuh, has the ordering argument).
__device__ __forceinline__ bool LastSplitCta(int* counters, int nsplit) {
  return LastArrival(counters + blockIdx.x, nsplit);
}

// Merges query head `head`'s (= s * heads + h) `nsplit` decode partials (part_ml, part_acc) into
// its output row `out_row`: the flash-decoding rescale by each split's max, out = sum_k 2^(m_k - M)
// acc_k / sum_k 2^(m_k - M) l_k, in split order (so two calls give the same bytes). Called by
// whole warps: each calling warp reduces (M, sum) itself (every warp gets the same values), and
// the kThreads threads threadIdx.x % kThreads share out the head_dim columns: 32 for a warp per
// head (kernels 1, 2), kDecodeThreads for a whole CTA on one head (kernel 3). Kernel 4 merges with
// MergeGroupSplits below. kD == 0 takes
// head_dim from p (kernel 1's generic instance). Partials are read with __ldcg: other CTAs wrote
// them during this launch.
template <typename T, int kD, int kThreads = 32>
__device__ __forceinline__ void MergeSplitsWarp(const Params& p, int64_t head, int nsplit, T* out_row) {
  static_assert(kThreads % 32 == 0, "whole warps merge");
  const int d = kD > 0 ? kD : p.head_dim;
  const int lane = threadIdx.x % 32;
  const float2* ml = p.part_ml + head * p.max_splits;
  const float* pacc = p.part_acc + head * p.max_splits * d;
  float mx = -INFINITY;
  for (int k = lane; k < nsplit; k += 32) mx = fmaxf(mx, __ldcg(ml + k).x);
  mx = WarpMax(mx);
  float lsum = 0.f;
  for (int k = lane; k < nsplit; k += 32) {
    const float2 y = __ldcg(ml + k);
    lsum += exp2f(y.x - mx) * y.y;
  }
  lsum = WarpSum(lsum);
  const float inv = 1.f / lsum;
  // Splits in groups of 8 whose loads are issued before their fmas (which still run in split
  // order): one L2 read in flight per thread made this loop a chain of nsplit x d / kThreads L2
  // latencies, several microseconds of a batch-1 decode step.
  constexpr int kGroup = 8;
  for (int c = threadIdx.x % kThreads; c < d; c += kThreads) {
    float x = 0.f;
    for (int k0 = 0; k0 < nsplit; k0 += kGroup) {
      float a[kGroup], m[kGroup];
#pragma unroll
      for (int u = 0; u < kGroup; ++u) {
        const int k = min(k0 + u, nsplit - 1);
        a[u] = __ldcg(pacc + int64_t{k} * d + c);
        m[u] = __ldcg(ml + k).x;
      }
#pragma unroll
      for (int u = 0; u < kGroup; ++u) {
        if (k0 + u < nsplit) x = fmaf(exp2f(m[u] - mx), a[u], x);
      }
    }
    out_row[c] = FromFloat<T>(x * inv);
  }
}

// Kernel 4's merge: the G query heads head0 .. head0 + G - 1 of one KV head, their `nsplit`
// partials into out_rows (head i at out_rows + i * kD), by the whole CTA: thread idx takes head
// idx / kD, column idx % kD. Each thread loads its column's partials and the splits' (m, l)
// together and reduces them in registers, so a merge of up to kGroup splits is one L2 round trip
// where MergeSplitsWarp takes three or more (max, then sum, then columns, by one warp per head).
// At batch 1 the merge ends the kernel's critical path: on an H100 this cut dense decode attention
// at batch 1 from 12.2 to 9.2 us at 512 positions and from 33.5 to 30.6 us at 4096
// (attention-decode-h100.md). Same formula and split order as MergeSplitsWarp; the (m, l) sum runs
// in split order here, a shuffle tree there.
template <typename T, int kD>
__device__ __forceinline__ void MergeGroupSplits(const Params& p, int64_t head0, int G, int nsplit, T* out_rows) {
  constexpr int kGroup = 8;
  for (int idx = threadIdx.x; idx < G * kD; idx += blockDim.x) {
    const int i = idx / kD, c = idx % kD;
    const float2* ml = p.part_ml + (head0 + i) * p.max_splits;
    const float* pacc = p.part_acc + (head0 + i) * p.max_splits * kD + c;
    float mx = -INFINITY, lsum = 0.f, x = 0.f;
    if (nsplit <= kGroup) {
      float2 y[kGroup];
      float a[kGroup];
#pragma unroll
      for (int u = 0; u < kGroup; ++u) {  // past nsplit: the last split again (no effect on the max)
        const int k = min(u, nsplit - 1);
        y[u] = __ldcg(ml + k);
        a[u] = __ldcg(pacc + int64_t{k} * kD);
      }
#pragma unroll
      for (int u = 0; u < kGroup; ++u) mx = fmaxf(mx, y[u].x);
#pragma unroll
      for (int u = 0; u < kGroup; ++u) {
        if (u < nsplit) {
          const float w = exp2f(y[u].x - mx);
          lsum = fmaf(w, y[u].y, lsum);
          x = fmaf(w, a[u], x);
        }
      }
    } else {
      for (int k = 0; k < nsplit; ++k) mx = fmaxf(mx, __ldcg(ml + k).x);
      for (int k0 = 0; k0 < nsplit; k0 += kGroup) {
        float2 y[kGroup];
        float a[kGroup];
#pragma unroll
        for (int u = 0; u < kGroup; ++u) {
          const int k = min(k0 + u, nsplit - 1);
          y[u] = __ldcg(ml + k);
          a[u] = __ldcg(pacc + int64_t{k} * kD);
        }
#pragma unroll
        for (int u = 0; u < kGroup; ++u) {
          if (k0 + u < nsplit) {
            const float w = exp2f(y[u].x - mx);
            lsum = fmaf(w, y[u].y, lsum);
            x = fmaf(w, a[u], x);
          }
        }
      }
    }
    out_rows[int64_t{i} * kD + c] = FromFloat<T>(x * (1.f / lsum));
  }
}
#endif

// Completes p (chunk, max_splits, subsets, member_splits) and the plan from the host-side
// bounds; p must hold num_seqs, heads, kv_heads, group and head_dim. `members_per_rep` is the
// caller's hint of heads per CHAI representative (1: dense), `members_per_cta` how many member
// V heads a CHAI decode CTA should accumulate.
//
// Decode aims for ~32 busy CTAs per SM, with chunks that are multiples of kChunkAlign in
// [kChunkAlign, kScoreFloats / kG]. Dense, every (sequence, KV head, subset) slot is busy. Under
// CHAI only about heads / m of the slots hold a representative, each with ~m members: without
// help those few CTAs would each stream m V heads serially while the rest of the GPU idles. So
// the members of a slot are shared out over member_splits CTAs (a share is a set of whole V
// heads, hence at most kv_heads shares), and the chunk is sized for the CTAs expected to be
// busy rather than for all launched ones; the idle ones exit at once. Hint 1 gives exactly the
// dense plan.
inline void MakePlan(int max_seq_len, int max_new_tokens, int members_per_rep, int members_per_cta, int ctas_per_sm,
                     int sm_count,
                     bool exact, Params* p, LaunchPlan* plan) {
  const auto ceil_div = [](int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); };
  plan->exact = exact;
  plan->group_tile = p->group <= 1 ? 1 : (p->group <= 4 ? 4 : 8);
  p->subsets = ceil_div(p->group, plan->group_tile);
  const int m = std::clamp(members_per_rep, 1, p->heads);
  p->member_splits = m == 1 ? 1 : std::clamp(ceil_div(m, std::max(members_per_cta, 1)), 1, p->kv_heads);
  plan->decode = true;  // any sequence may have a single new row; the others' CTAs exit at once
  const int slots = p->kv_heads * p->subsets;
  plan->decode_slots = p->num_seqs * slots * p->member_splits;
  const int64_t busy = int64_t{p->num_seqs} * std::min(slots, ceil_div(p->heads, m)) * p->member_splits;
  const int max_len = max_seq_len > 1 ? max_seq_len : 1;
  const int wanted = static_cast<int>(std::max<int64_t>(1, int64_t{ctas_per_sm} * sm_count / busy));
  int chunk = ceil_div(ceil_div(max_len, wanted), kChunkAlign) * kChunkAlign;
  chunk = std::min(std::max(chunk, kChunkAlign), kScoreFloats / plan->group_tile);
  p->chunk = chunk;
  p->max_splits = ceil_div(max_len, chunk);
  plan->combine = p->max_splits > 1;
  plan->prefill = max_new_tokens > 1;
  plan->prefill_tiles = ceil_div(max_new_tokens > 1 ? max_new_tokens : 1, kPrefillRows);
}

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_COMMON_CUH_
