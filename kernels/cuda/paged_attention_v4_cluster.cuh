// Decode kernel 4's cluster pass (CHAI_DECODE_V4_CLUSTER=1, an experiment, off by default): a
// CHAI layer with one query head per KV head (MHA) in one launch, as issue 7 describes the kernel:
// one CTA per (sequence, representative, chunk of up to eight members, split) reads the
// representative's K once and then each member's V, so the SMs read K of representatives and V of
// every head, CHAI's bytes, with no logits round trip between kernels.
//
// Why: the two passes (paged_attention_decode_v4.cuh) lose 10-25% of copy bandwidth at batch 8-32
// and 2k-4k positions, mostly to the scores pass, a 12-30 us latency chain the P·V pass waits for
// (attention-decode-h200.md, "where the two passes' time goes"). An earlier cluster pass in
// lockstep (8d8d4c4) streamed at most 3.4 TB/s. Here one item is one stream of stages: first the
// representative's K over the chunk (scores into shared memory), then each member's V; the ring is
// issued ahead across the K -> V and member boundaries, so it does not drain inside an item.
// History (H200, attention-decode-h200.md): the first form (P·V on the CUDA cores, 4 warps) ran
// correctly at 2.2-2.6 TB/s, a latency chain per stage; with 8 warps and a transposed warp tree
// 2.3-2.9 TB/s (ncu: 36% issue, 39% of stalls at the stage barrier); with V on the tensor cores as
// in the dense pass (the third form) 2.0-2.5 TB/s. Whatever did the arithmetic, a CTA took 1.7 us a
// 16 KB stage where the P·V pass takes 1.07: the per-stage cost was warp 0's table read for each
// refill (an L2 round trip, issued a stage ahead, outlasting the stage under load). The fourth form
// (this one, not yet run) reads every block id of an item into shared memory at its start.
//
// - Items: a representative r of sequence s with n members (heads m with score_head[m] == r, r
//   itself included) has ceil(n / 8) chunks: members 8z .. 8z + 7 in head order. The grid has
//   plan.v4_cluster_ctas CTAs per split; item number i (sequences, then heads, then chunks, in
//   order) goes to CTA i % gridDim.x, which finds its items on the device (V4ClusterItems: a
//   per-(sequence, head) member count and a block-wide scan, in the ring before its first use).
// - Stages: kRows positions of one head's K or V (16 KB: 64 positions at head_dim 128, 128 at 64),
//   filled by warp 0's bulk copies (lane j copies the rows of the stage's j-th block), in a ring of
//   kStages with an mbarrier each. Item stage t < nk is K tile t; stage nk + j * nk + u is member
//   j's V tile u.
// - K stages (a ninth of the stages at eight members) on the CUDA cores: each warp's rows loaded
//   at once, dot products with the representative's query (lane: kD / 32 dims, pre-scaled into the
//   exp2 domain), summed over the warp by a transposed tree (V4WarpSumRows), kept in shared memory
//   (s_p, the chunk's logits).
// - V stages on the tensor cores with the dense pass's tile code (V4TileSoftmaxPv): each warp's
//   16-position tiles, the online softmax of s_p's logits (the mma's column 0) and O^T += V^T P^T.
//   After a member's last stage the warps' states are merged (MergeWarpStates) into its output or
//   its partials (kernel 2's format: m, l, unnormalised O); the last CTA of an item over the
//   splits (a counter per item) merges every member's partials at once.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_CLUSTER_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_CLUSTER_CUH_

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_decode_v2.cuh"  // MergeWarpStates
#include "kernels/cuda/paged_attention_decode_v3.cuh"  // BestSplitsV3
#include "kernels/cuda/paged_attention_prefill_mma.cuh"  // SharedAddress
#include "kernels/cuda/paged_attention_v4_shape.cuh"
#include "kernels/cuda/paged_attention_v4_tile.cuh"  // V4TileSoftmaxPv
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda::paged {

constexpr int kV4ClusterMembers = 8;      // member heads per item at most
constexpr int kV4ClusterMaxItems = 16;    // items per CTA and split
constexpr int kV4ClusterMaxChunk = 1024;  // positions per split at most (the logits' floats, the block ids)
// Block ids of one head over a chunk at most (kernel 4 takes block_size >= 8; +1: an unaligned start).
constexpr int kV4ClusterMaxIds = kV4ClusterMaxChunk / 8 + 1;
// Warps per CTA: the decode kernels' four, whose lane layout the tensor-core tile code
// (paged_attention_v4_tile.cuh) and MergeWarpStates assume.
constexpr int kV4ClusterWarps = kDecodeWarps;
constexpr int kV4ClusterThreads = 32 * kV4ClusterWarps;

// Bytes of one head's K or V per stage (a compile-time knob for A/Bs: 16 by default; 32 halves the
// barriers and refills per byte, with 3 stages in the same ring). Stages hold at most 128
// positions, so that a stage spans at most 17 blocks of 8 (one lane each).
#ifndef CHAI_V4_CLUSTER_STAGE_KB
#define CHAI_V4_CLUSTER_STAGE_KB 16
#endif

template <int kD>
struct V4ClusterStage {
  static constexpr int kRows = std::min((CHAI_V4_CLUSTER_STAGE_KB << 10) / (2 * kD), 128);  // positions per stage
  static constexpr int kBytes = kRows * kD * 2;
  static constexpr int kStages = kV4MaxStages * (16 << 10) / kBytes;  // a 96 KB ring
  static constexpr int kRingBytes = kStages * kBytes;  // also the item finder's count scratch
  static constexpr int kSharedBytes = kRingBytes + kV4ClusterMaxChunk * 4;  // ring, then s_p
  static_assert(kRows % kV4ClusterWarps == 0 && kRows / 8 + 1 <= 32, "stage shape");
  static_assert(kSharedBytes <= 106 << 10, "two CTAs per SM with the static shared memory");
};

// Host: whether the item finder's scratch (per (sequence, head): the map and a member count) fits
// the ring.
inline bool V4ClusterFits(int head_dim, int num_seqs, int heads) {
  const int64_t bytes = int64_t{num_seqs} * heads * 8;
  return head_dim == 64 ? bytes <= V4ClusterStage<64>::kRingBytes : bytes <= V4ClusterStage<128>::kRingBytes;
}

// Host: the cluster pass's plan, after MakePlan. The hint m (heads per representative) estimates
// the items, B x ceil(H / m) representatives x ceil(m / 8) chunks; a sequence has at most H
// items (every chunk holds a member), which sizes the counters (decode_slots). `resident`:
// resident CTAs on the device.
inline void MakePlanV4Cluster(int max_seq_len, int members_per_rep, int resident, Params* p, LaunchPlan* plan) {
  const auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  const int64_t max_len = std::max(max_seq_len, 1);
  const int64_t m = std::clamp(members_per_rep, 1, p->heads);
  const int64_t items = std::max<int64_t>(1, p->num_seqs * ceil_div(p->heads, m) * ceil_div(m, kV4ClusterMembers));
  const int64_t max_items = int64_t{p->num_seqs} * p->heads;
  plan->decode_kernel = 4;
  plan->v4_cluster = true;
  plan->decode_slots = static_cast<int>(max_items);
  plan->v4_cluster_ctas = static_cast<int>(std::max(items, ceil_div(max_items, kV4ClusterMaxItems)));
  // At least enough splits that a chunk's probabilities fit the CTA's kV4ClusterMaxChunk floats.
  p->max_splits = static_cast<int>(
      std::max<int64_t>(BestSplitsV3(max_len, items, resident), ceil_div(max_len, kV4ClusterMaxChunk)));
  p->chunk = static_cast<int>(ceil_div(max_len, p->max_splits));  // informative only
  plan->combine = p->max_splits > 1;
}

#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// The block's exclusive prefix sum of v (every thread calls it); *total gets the sum.
__device__ __forceinline__ int V4BlockExclusiveScan(int v, int* total) {
  constexpr unsigned kAll = 0xffffffffu;
  __shared__ int s_warp[kV4ClusterWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int x = v;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const int y = __shfl_up_sync(kAll, x, off);
    if (lane >= off) x += y;
  }
  if (lane == 31) s_warp[warp] = x;
  __syncthreads();
  int before = 0, sum = 0;
#pragma unroll
  for (int w = 0; w < kV4ClusterWarps; ++w) {
    before += w < warp ? s_warp[w] : 0;
    sum += s_warp[w];
  }
  __syncthreads();  // s_warp is rewritten by the next call
  *total = sum;
  return before + x - v;
}

// The items of this CTA (see the header): item k is number idx[k] overall, of sequence x head
// sh[k] / heads, sh[k] % heads, member chunk z[k]. `scratch` holds 2 x num_seqs x heads ints (the
// ring, unused yet): the map first, each (sequence, head)'s representative or -1 for a sequence
// that does not decode, read with kUnroll loads in flight per thread (one L2 round trip after the
// slot ids, where a load per step made the finder a chain of round trips: about 16 at batch 32),
// then the member counts, from shared memory only. Returns the count; ends with a barrier.
__device__ __forceinline__ int V4ClusterItems(const Params& p, int* scratch, int* idx, int* sh, int* z) {
  constexpr int kUnroll = 8;
  const int H = p.heads, n = p.num_seqs * H, T = kV4ClusterThreads;
  int* map = scratch;
  int* counts = scratch + n;
  for (int base = 0; base < n; base += kUnroll * T) {
    int v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * T + static_cast<int>(threadIdx.x);
      v[u] = -1;
      if (i < n) {
        const int s = i / H;
        const int64_t tr = p.slots != nullptr ? p.slots[s] : s;
        if (p.q_start[s + 1] - p.q_start[s] == 1) v[u] = __ldg(p.score_head + tr * H + i % H);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * T + static_cast<int>(threadIdx.x);
      if (i < n) {
        map[i] = v[u];
        counts[i] = 0;
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += T) {
    const int r = map[i];
    if (r >= 0 && r < H) atomicAdd(counts + (i / H) * H + r, 1);
  }
  __syncthreads();
  // Chunks of (sequence, head) i: its members in groups of kV4ClusterMembers if it represents itself.
  const auto chunks = [&](int i) {
    return map[i] == i % H ? (counts[i] + kV4ClusterMembers - 1) / kV4ClusterMembers : 0;
  };
  const int per = (n + T - 1) / T, i0 = min(n, static_cast<int>(threadIdx.x) * per), i1 = min(n, i0 + per);
  int mine = 0;
  for (int i = i0; i < i1; ++i) mine += chunks(i);
  int total = 0;
  int next = V4BlockExclusiveScan(mine, &total);
  const int ctas = static_cast<int>(gridDim.x), me = static_cast<int>(blockIdx.x);
  for (int i = i0; i < i1; ++i) {
    const int c = chunks(i);
    for (int k = 0; k < c; ++k, ++next) {
      if (next % ctas == me && next / ctas < kV4ClusterMaxItems) {
        idx[next / ctas] = next;
        sh[next / ctas] = i;
        z[next / ctas] = k;
      }
    }
  }
  __syncthreads();
  return total > me ? min((total - 1 - me) / ctas + 1, kV4ClusterMaxItems) : 0;
}

// The flash-decoding rendezvous of LastSplitCta on an explicit counter (one per item here).
__device__ __forceinline__ bool V4LastOfSplits(int* counter, int nsplit) {
  __shared__ int s_last;
  __syncthreads();
  if (threadIdx.x == 0) {
    int before;
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(before) : "l"(counter) : "memory");
    s_last = before == nsplit - 1;
  }
  __syncthreads();
  if (!s_last) return false;
  if (threadIdx.x == 0) *counter = 0;
  return true;
}

// One step of V4WarpSumRows: lanes with bit kOff set keep rows [kHalf, 2 kHalf) of v, the others
// rows [0, kHalf), each adding its partner's (lane ^ kOff) copies; then the next step. A template
// recursion, so that every index is a constant (a loop here left v in local memory at 16 rows).
template <int kHalf, int kOff, int R>
__device__ __forceinline__ void V4WarpSumStep(float (&v)[R], int lane, int* row) {
  if constexpr (kHalf >= 1) {
    const bool upper = (lane & kOff) != 0;
#pragma unroll
    for (int j = 0; j < kHalf; ++j) {
      const float send = upper ? v[j] : v[j + kHalf], keep = upper ? v[j + kHalf] : v[j];
      v[j] = keep + __shfl_xor_sync(0xffffffffu, send, kOff);
    }
    *row += upper ? kHalf : 0;
    V4WarpSumStep<kHalf / 2, kOff / 2>(v, lane, row);
  } else {
#pragma unroll
    for (int off = kOff; off > 0; off /= 2) v[0] += __shfl_xor_sync(0xffffffffu, v[0], off);
  }
}

// The sums over the warp of R per-lane values v[0..R) (R a power of two up to 32), by a transposed
// tree: at each of the first log2(R) steps a lane keeps half its rows and adds its partner's
// copies of them, so R rows take R - 1 + log2(32 / R) shuffles rather than 5 R. Returns the sum of
// row *row, which every lane of a group of 32 / R lanes holds (v is consumed).
template <int R>
__device__ __forceinline__ float V4WarpSumRows(float (&v)[R], int lane, int* row) {
  static_assert(R >= 1 && R <= 32 && (R & (R - 1)) == 0, "a power of two up to 32");
  *row = 0;
  V4WarpSumStep<R / 2, 16>(v, lane, row);
  return v[0];
}

// A lane's kD / 32 consecutive elements of a shared-memory row as floats, in one load (8 bytes at
// head_dim 128, 4 at 64).
template <typename T, int kN>
__device__ __forceinline__ void V4ClusterLaneLoad(const T* src, float (&f)[kN]) {
  static_assert(kN == 2 || kN == 4, "head_dim 64 or 128");
  struct alignas(sizeof(T) * kN) Lane {  // one vector load; its elements stay in registers
    T h[kN];
  };
  const Lane raw = *reinterpret_cast<const Lane*>(src);
#pragma unroll
  for (int e = 0; e < kN; ++e) f[e] = ToFloat(raw.h[e]);
}

// One item: representative r of sequence s, member chunk z, over split `split` of its positions.
// `smem` is the ring (kStages x kBytes) followed by s_p (kV4ClusterMaxChunk floats).
template <typename T, int kD>
__device__ __forceinline__ void V4ClusterItem(const Params& p, int item, int s, int r, int z, int split,
                                              uint32_t full0, int* uses, uint4* smem) {
  using Stage = V4ClusterStage<kD>;
  constexpr int kRows = Stage::kRows, kStages = Stage::kStages, kRowBytes = kD * 2;
  constexpr int kLaneDims = kD / 32;                  // K: dims per lane, 4 at head_dim 128, 2 at 64
  constexpr int kWarpRows = kRows / kV4ClusterWarps;  // rows of a stage per warp (K and V)
  constexpr int kSub = kWarpRows / 16;                // V: 16-position mma tiles per warp and stage
  constexpr int kScoreRows = kWarpRows < 16 ? kWarpRows : 16;  // K: rows per transposed tree
  constexpr int kMTiles = kD / 16, kTileLaneDims = kD / 8;  // V: the tile code's O^T layout
  constexpr unsigned kAll = 0xffffffffu;
  static_assert(kWarpRows % 16 == 0, "whole mma tiles per warp");
  __shared__ int s_mem[kV4ClusterMembers];
  __shared__ int s_count[kV4ClusterWarps];
  __shared__ float s_o[kV4ClusterWarps][kD];  // a member's O per warp, for the warps' merge
  __shared__ float2 s_ml[kV4ClusterWarps][1];  // and its (m, l) per warp
  const int H = p.heads, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t trow = p.slots != nullptr ? p.slots[s] : s;
  const int row = p.q_start[s];
  const int len = min(p.seq_lens[s], p.max_splits * kV4ClusterMaxChunk);  // the plan's bound (caller error past it)
  const int chunk = SeqChunk(len, p.max_splits);
  const int c0 = split * chunk;
  if (c0 >= len) return;  // uniform over the CTA
  const int cl = min(len - c0, chunk), nsplit = min((len + chunk - 1) / chunk, p.max_splits);
  float* s_p = reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(smem) + Stage::kRingBytes);

  // The chunk's members: the heads m with score_head[m] == r ranked 8z .. 8z + 7 in head order.
  const int32_t* map = p.score_head + trow * H;
  __syncthreads();  // the previous item's merge has read s_mem
  if (threadIdx.x < kV4ClusterMembers) s_mem[threadIdx.x] = -1;
  int before = 0;
  for (int base = 0; base < H; base += kV4ClusterThreads) {
    const int m = base + static_cast<int>(threadIdx.x);
    const bool member = m < H && __ldg(map + m) == r;
    const unsigned ballot = __ballot_sync(kAll, member);
    if (lane == 0) s_count[warp] = __popc(ballot);
    __syncthreads();
    int rank = before + __popc(ballot & ((1u << lane) - 1u)), sum = 0;
#pragma unroll
    for (int w = 0; w < kV4ClusterWarps; ++w) {
      rank += w < warp ? s_count[w] : 0;
      sum += s_count[w];
    }
    if (member && rank / kV4ClusterMembers == z) s_mem[rank % kV4ClusterMembers] = m;
    before += sum;
    __syncthreads();
  }
  const int nm = min(kV4ClusterMembers, before - z * kV4ClusterMembers);
  if (nm <= 0) return;  // uniform (the finder counted the same map)

  // The representative's query, lane's dims, scaled into the exp2 domain.
  float q[kLaneDims];
  {
    const T* qp = static_cast<const T*>(p.q) + int64_t{row} * H * kD + int64_t{r} * kD + lane * kLaneDims;
#pragma unroll
    for (int i = 0; i < kLaneDims; ++i) q[i] = ToFloat(qp[i]) * p.scale_log2;
  }

  // Warp 0 fills stage t: lane j copies the rows of the stage's j-th block.
  const T* pool = static_cast<const T*>(p.pool);
  const int bs = p.block_size, shift = p.block_shift;
  const auto block_of = [&](int pos) { return shift >= 0 ? pos >> shift : pos / bs; };
  const uint32_t ring = SharedAddress(smem);
  const int u0 = *uses, nk = (cl + kRows - 1) / kRows, ntot = nk * (1 + nm);
  // Stage t's rows: the head's table, positions [*pos0, *pos1), and lane's block index.
  // Every block id the item streams, into shared memory at once (one L2 round trip per item): a
  // refill read its id from the tables a stage ahead, and under the stream's load that L2 round
  // trip outlasted a stage, so warp 0's refill and with it every stage waited for it (the second
  // and third forms' 1.7 us a 16 KB stage at B = 32, 4096 positions, against the P·V pass's 1.07,
  // whose ids are a window held in registers). Row 0: the representative's K; row 1 + j: member
  // j's V.
  __shared__ int s_ids[(kV4ClusterMembers + 1) * kV4ClusterMaxIds];
  const int b_first = block_of(c0), nb = block_of(c0 + cl - 1) - b_first + 1;
  const int nids = (nm + 1) * nb;
  for (int base = 0; base < nids; base += 4 * kV4ClusterThreads) {  // 4 loads in flight per thread
    int id[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int i = base + u * kV4ClusterThreads + static_cast<int>(threadIdx.x);
      const int hh = min(i / nb, nm), head = hh == 0 ? r : s_mem[hh - 1];  // clamped past the end (not loaded)
      const int32_t* tab = p.tables + (trow * 2 * H + (hh == 0 ? 0 : H) + head) * p.max_blocks;
      id[u] = i < nids ? __ldg(tab + b_first + i % nb) : -1;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int i = base + u * kV4ClusterThreads + static_cast<int>(threadIdx.x);
      if (i < nids) s_ids[(i / nb) * kV4ClusterMaxIds + i % nb] = id[u];
    }
  }
  __syncthreads();
  // Stage t's rows: positions [*pos0, *pos1) of s_ids row (returned) hh.
  const auto geometry = [&](int t, int* pos0, int* pos1) {
    const bool k_side = t < nk;
    const int tile = k_side ? t : (t - nk) % nk;
    *pos0 = c0 + tile * kRows;
    *pos1 = c0 + min(cl, (tile + 1) * kRows);
    return k_side ? 0 : 1 + (t - nk) / nk;
  };
  // Lane's block id of stage t (-1: past the stage's blocks).
  const auto block_id = [&](int t) {
    int pos0, pos1;
    const int hh = geometry(t, &pos0, &pos1);
    const int b = block_of(pos0) + lane;
    return b <= block_of(pos1 - 1) ? s_ids[hh * kV4ClusterMaxIds + b - b_first] : -1;
  };
  const auto issue = [&](int t, int id) {
    const int slot = (u0 + t) % kStages;
    const uint32_t bar = full0 + 8 * slot;
    int pos0, pos1;
    geometry(t, &pos0, &pos1);
    const int b = block_of(pos0) + lane;
    const bool active = b <= block_of(pos1 - 1);
    const int lo = max(pos0, b * bs), hi = min(pos1, (b + 1) * bs);
    const uint32_t bytes = active ? static_cast<uint32_t>(hi - lo) * kRowBytes : 0u;
    const uint32_t dst = static_cast<uint32_t>(slot) * Stage::kBytes + static_cast<uint32_t>(lo - pos0) * kRowBytes;
    if (active && id < 0) {  // a missing block reads as zeros (fenced for the copy engine)
      uint4* d = smem + dst / 16;
      for (uint32_t k = 0; k < bytes / 16; ++k) d[k] = make_uint4(0u, 0u, 0u, 0u);
      FenceProxyAsyncShared();
    }
    uint32_t total = active && id >= 0 ? bytes : 0u;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) total += __shfl_xor_sync(kAll, total, off);
    __syncwarp();
    if (lane == 0) MbarArriveExpectTx(bar, total);
    if (active && id >= 0) BulkCopyG2S(ring + dst, pool + (int64_t{id} * bs + (lo - b * bs)) * kD, bytes, bar);
  };
  if (warp == 0) {
    for (int t = 0; t < min(kStages, ntot); ++t) issue(t, block_id(t));
  }

  T* out = static_cast<T*>(p.out) + int64_t{row} * H * kD;
  const int gi = lane / 4, c = lane % 4;  // the tile code's lane roles (row group, column pair)
  float m_run = -INFINITY, l_run = 0.f, acc[kMTiles][4];
  for (int t = 0; t < ntot; ++t) {
    const bool refill = warp == 0 && t + kStages < ntot;
    const int next_id = refill ? block_id(t + kStages) : -1;  // in flight while stage t is waited for and used
    const int slot = (u0 + t) % kStages;
    MbarWait(full0 + 8 * slot, static_cast<uint32_t>((u0 + t) / kStages) & 1u);
    const unsigned char* stage = reinterpret_cast<const unsigned char*>(smem) + slot * Stage::kBytes;
    const int tile = t < nk ? t : (t - nk) % nk, valid = min(kRows, cl - tile * kRows);
    if (t < nk) {
      // Scores on the CUDA cores (a ninth of the stages at 8 members): this warp's rows loaded
      // first (rows past the chunk end hold stale shared memory: loaded, never used), each row's
      // lane dims, then the rows' sums over the warp in one transposed tree.
#pragma unroll
      for (int g = 0; g < kWarpRows / kScoreRows; ++g) {  // groups of rows, to bound the registers
        const int g0 = warp * kWarpRows + g * kScoreRows;
        float rows[kScoreRows][kLaneDims];
#pragma unroll
        for (int i = 0; i < kScoreRows; ++i) {
          V4ClusterLaneLoad<T>(reinterpret_cast<const T*>(stage + (g0 + i) * kRowBytes) + lane * kLaneDims, rows[i]);
        }
        float d[kScoreRows];
#pragma unroll
        for (int i = 0; i < kScoreRows; ++i) {
          d[i] = 0.f;
#pragma unroll
          for (int e = 0; e < kLaneDims; ++e) d[i] = fmaf(q[e], rows[i][e], d[i]);
        }
        int i_row = 0;
        const float sum = V4WarpSumRows(d, lane, &i_row);
        const int rr = g0 + i_row;
        if (lane % (32 / kScoreRows) == 0 && rr < valid) s_p[tile * kRows + rr] = sum;
      }
    } else {
      // Member (t - nk) / nk's V on the tensor cores, as the dense pass: online softmax of the
      // representative's logits (s_p, column 0 of the mma; the other columns read zeros, as the
      // P·V pass's unused heads do) and O^T += V^T P^T per 16-position tile.
      if (tile == 0) {
        m_run = -INFINITY, l_run = 0.f;
#pragma unroll
        for (int i = 0; i < kMTiles; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
      }
#pragma unroll
      for (int sub = 0; sub < kSub; ++sub) {
        const int r0 = warp * kWarpRows + sub * 16, tv = valid - r0;  // the tile's rows inside the chunk
        if (tv <= 0) continue;                                          // warp-uniform
        const float* lr = s_p + tile * kRows + r0;
        float x[2][2];
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          const int j = 8 * u + 2 * c;  // even: the pair is 8-byte aligned
          const float2 v = gi == 0 ? *reinterpret_cast<const float2*>(lr + j) : make_float2(0.f, 0.f);
          x[u][0] = j < tv ? v.x : -INFINITY;
          x[u][1] = j + 1 < tv ? v.y : -INFINITY;
        }
        V4TileSoftmaxPv<T, kD>(x, stage + r0 * kRowBytes, tv, gi, c, &m_run, &l_run, acc);
      }
    }
    __syncthreads();  // every warp is done with the slot (and s_p holds the scores of every K stage so far)
    if (refill) issue(t + kStages, next_id);

    if (t >= nk && (t - nk) % nk == nk - 1) {
      // Member j's last stage: the warps' states merged (column 0: (m, l) in lane 0, O^T in the
      // lanes with c == 0, dims gi * kD / 8 + tau and + kD / 16), then its output or partials.
      const int m = s_mem[(t - nk) / nk];
      l_run += __shfl_xor_sync(kAll, l_run, 1);
      l_run += __shfl_xor_sync(kAll, l_run, 2);
      if (lane == 0) s_ml[warp][0] = make_float2(m_run, l_run);
      if (c == 0) {
#pragma unroll
        for (int tau = 0; tau < kMTiles; ++tau) {
          s_o[warp][gi * kTileLaneDims + tau] = acc[tau][0];
          s_o[warp][gi * kTileLaneDims + kMTiles + tau] = acc[tau][2];
        }
      }
      __syncthreads();
      for (int dcol = threadIdx.x; dcol < kD; dcol += kV4ClusterThreads) {
        float mx, lsum;
        const float x = MergeWarpStates(s_ml, 0, [&](int w) { return s_o[w][dcol]; }, &mx, &lsum);
        const int64_t head = int64_t{s} * H + m;
        if (nsplit == 1) {
          out[int64_t{m} * kD + dcol] = FromFloat<T>(x / lsum);
        } else {
          p.part_acc[(head * p.max_splits + split) * kD + dcol] = x;
          if (dcol == 0) p.part_ml[head * p.max_splits + split] = make_float2(mx, lsum);
        }
      }
      __syncthreads();  // s_o and s_ml are rewritten by the next member
    }
  }
  *uses = u0 + ntot;
  if (nsplit == 1) return;
  if (!V4LastOfSplits(p.counters + item, nsplit)) return;
  MergeGroupSplits<T, kD>(p, int64_t{s} * H, nm, nsplit, out, s_mem);  // every member at once
}

#endif  // __CUDACC__ && __CUDA_ARCH__ >= 900

#ifdef __CUDACC__
template <typename T, int kD>
__global__ void __launch_bounds__(kV4ClusterThreads, 2) DecodeV4ClusterKernel(Params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Stage = V4ClusterStage<kD>;
  __shared__ uint64_t s_full[Stage::kStages];
  __shared__ int s_idx[kV4ClusterMaxItems], s_sh[kV4ClusterMaxItems], s_z[kV4ClusterMaxItems];
  CHAI_PAGED_DYNAMIC_SHARED(uint4, v4c_smem);
  const uint32_t full0 = SharedAddress(s_full);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < Stage::kStages; ++i) MbarInit(full0 + 8 * i, 1);
    MbarInitFence();
  }
  PdlWait();
  const int n = V4ClusterItems(p, reinterpret_cast<int*>(v4c_smem), s_idx, s_sh, s_z);
  // The finder's counts were ordinary stores into the ring, which the copy engine overwrites next.
  FenceProxyAsyncShared();
  __syncthreads();
  int uses = 0;
  for (int k = 0; k < n; ++k) {
    V4ClusterItem<T, kD>(p, s_idx[k], s_sh[k] / p.heads, s_sh[k] % p.heads, s_z[k], static_cast<int>(blockIdx.y),
                         full0, &uses, v4c_smem);
  }
#endif  // __CUDA_ARCH__ >= 900
}
#endif  // __CUDACC__

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_CLUSTER_CUH_
