// Decode kernel 4's cluster pass (CHAI_DECODE_V4_CLUSTER=1, an experiment, off by default): a CHAI
// layer with one query head per KV head (MHA) in one launch, as issue 7 describes the kernel: one
// CTA per (sequence, representative, chunk of up to four members, split) streams the
// representative's K once and its members' V beside it, so the SMs read K of representatives and
// V of every head, CHAI's bytes, with no logits round trip.
//
// - Items: a representative r of sequence s with n members (heads m with score_head[m] == r,
//   r itself included) has ceil(n / 4) chunks: members 4z .. 4z + 3 in head order. The grid has
//   plan.v4_cluster_ctas CTAs per split; item number i (sequences, then heads, then chunks, in
//   order) goes to CTA i % gridDim.x, which finds its items on the device (V4ClusterItems: a
//   per-(sequence, head) member count and a block-wide scan, in the ring before its first use).
// - Stage: 16 positions: the representative's K rows and the members' V rows (20 KB at head_dim
//   128), filled by warp 0's bulk copies (lane 4 * side + j copies the rows of the stage's j-th
//   block on side `side`: 0 = K, 1 + w = member w's V). A ring of kStages such stages, mbarriers
//   and refills as kernel 4's other passes do.
// - Compute: every warp scores the stage's 16 positions with the representative's query (the same
//   mma as the dense pass, kept in each warp: the softmax state is then the same in every warp and
//   no merge across warps is needed), and warp w accumulates member w's P·V. Each warp writes its
//   member's output, or its partials when the sequence is split; the last CTA of an item over the
//   splits (a counter per item) merges each member's partials.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_CLUSTER_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_CLUSTER_CUH_

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_decode_v3.cuh"  // BestSplitsV3
#include "kernels/cuda/paged_attention_prefill_mma.cuh"  // SharedAddress
#include "kernels/cuda/paged_attention_v4_shape.cuh"
#include "kernels/cuda/paged_attention_v4_tile.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda::paged {

constexpr int kV4ClusterMembers = 4;  // member heads per CTA: one per warp
constexpr int kV4ClusterRows = 16;    // positions per stage: one score tile
constexpr int kV4ClusterMaxItems = 16;
static_assert(kV4ClusterMembers == kDecodeWarps, "one member per warp");

template <int kD>
struct V4ClusterStage {
  static constexpr int kRows = kV4ClusterRows;
  static constexpr int kSideBytes = kRows * kD * 2;
  static constexpr int kBytes = kSideBytes * (1 + kV4ClusterMembers);
  static constexpr int kStages = std::clamp(kV4SharedBytes / kBytes, kV4MinStages, kV4MaxStages);
  static constexpr int kSharedBytes = kStages * kBytes;  // also the item finder's count scratch
  static_assert(kSharedBytes <= 112 << 10, "two CTAs per SM");
};

// Host: whether the item finder's per-(sequence, head) counts fit the ring.
inline bool V4ClusterFits(int head_dim, int num_seqs, int heads) {
  const int64_t bytes = int64_t{num_seqs} * heads * 4;
  return head_dim == 64 ? bytes <= V4ClusterStage<64>::kSharedBytes : bytes <= V4ClusterStage<128>::kSharedBytes;
}

// Host: the cluster pass's plan, after MakePlan. The hint m (heads per representative) estimates
// the items, B x ceil(H / m) representatives x ceil(m / 4) chunks; a sequence has at most H
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
  p->max_splits = BestSplitsV3(max_len, items, resident);
  p->chunk = static_cast<int>(ceil_div(max_len, p->max_splits));  // informative only
  plan->combine = p->max_splits > 1;
}

#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// The block's exclusive prefix sum of v (every thread calls it); *total gets the sum.
__device__ __forceinline__ int V4BlockExclusiveScan(int v, int* total) {
  constexpr unsigned kAll = 0xffffffffu;
  __shared__ int s_warp[kDecodeWarps];
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
  for (int w = 0; w < kDecodeWarps; ++w) {
    before += w < warp ? s_warp[w] : 0;
    sum += s_warp[w];
  }
  __syncthreads();  // s_warp is rewritten by the next call
  *total = sum;
  return before + x - v;
}

// The items of this CTA (see the header): item k is number idx[k] overall, of sequence x head
// sh[k] / heads, sh[k] % heads, member chunk z[k]. `counts` is scratch for num_seqs x heads ints
// (the ring, unused yet). Returns the count; ends with a barrier.
__device__ __forceinline__ int V4ClusterItems(const Params& p, int* counts, int* idx, int* sh, int* z) {
  const int H = p.heads, n = p.num_seqs * H, T = kDecodeThreads;
  const auto row_of = [&](int s) -> int64_t { return p.slots != nullptr ? p.slots[s] : s; };
  const auto decode = [&](int s) { return p.q_start[s + 1] - p.q_start[s] == 1; };
  for (int i = threadIdx.x; i < n; i += T) counts[i] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += T) {
    const int s = i / H, r = __ldg(p.score_head + row_of(s) * H + i % H);
    if (decode(s) && r >= 0 && r < H) atomicAdd(counts + s * H + r, 1);
  }
  __syncthreads();
  // Chunks of (sequence, head) i: its members in groups of four if it represents itself.
  const auto chunks = [&](int i) {
    const int s = i / H, h = i % H;
    const bool rep = decode(s) && __ldg(p.score_head + row_of(s) * H + h) == h;
    return rep ? (counts[i] + kV4ClusterMembers - 1) / kV4ClusterMembers : 0;
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

// One item: representative r of sequence s, member chunk z, over split `split` of its positions.
template <typename T, int kD>
__device__ __forceinline__ void V4ClusterItem(const Params& p, int item, int s, int r, int z, int split,
                                              uint32_t full0, int* uses, uint4* smem) {
  using Stage = V4ClusterStage<kD>;
  constexpr int kRows = Stage::kRows, kStages = Stage::kStages, kRowBytes = kD * 2;
  constexpr int kPairs = kD / 32, kMTiles = kD / 16, kLaneDims = kD / 8;
  constexpr unsigned kAll = 0xffffffffu;
  __shared__ int s_mem[kV4ClusterMembers];
  __shared__ int s_count[kDecodeWarps];
  const int H = p.heads, lane = threadIdx.x % 32, warp = threadIdx.x / 32, gi = lane / 4, c = lane % 4;
  const int64_t trow = p.slots != nullptr ? p.slots[s] : s;
  const int row = p.q_start[s];
  const int len = p.seq_lens[s];
  const int chunk = SeqChunk(len, p.max_splits);
  const int c0 = split * chunk;
  if (c0 >= len) return;  // uniform over the CTA
  const int cl = min(len - c0, chunk), nsplit = min((len + chunk - 1) / chunk, p.max_splits);

  // The chunk's members: the heads m with score_head[m] == r ranked 4z .. 4z + 3 in head order.
  const int32_t* map = p.score_head + trow * H;
  __syncthreads();  // the previous item's merge has read s_mem
  if (threadIdx.x < kV4ClusterMembers) s_mem[threadIdx.x] = -1;
  int before = 0;
  for (int base = 0; base < H; base += kDecodeThreads) {
    const int m = base + static_cast<int>(threadIdx.x);
    const bool member = m < H && __ldg(map + m) == r;
    const unsigned ballot = __ballot_sync(kAll, member);
    if (lane == 0) s_count[warp] = __popc(ballot);
    __syncthreads();
    int rank = before + __popc(ballot & ((1u << lane) - 1u)), sum = 0;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      rank += w < warp ? s_count[w] : 0;
      sum += s_count[w];
    }
    if (member && rank / kV4ClusterMembers == z) s_mem[rank % kV4ClusterMembers] = m;
    before += sum;
    __syncthreads();
  }
  const int nm = min(kV4ClusterMembers, before - z * kV4ClusterMembers);
  if (nm <= 0) return;  // uniform: a stale item (the map changed under the finder cannot happen)
  const int my_member = warp < nm ? s_mem[warp] : -1;

  // The representative's query in the score mma's k order (row 0 of the mma: head r).
  uint4 qv[kPairs];
  {
    const T* qp = static_cast<const T*>(p.q) + int64_t{row} * H * kD + int64_t{r} * kD + 8 * c;
#pragma unroll
    for (int pi = 0; pi < kPairs; ++pi) {
      qv[pi] = gi == 0 ? *reinterpret_cast<const uint4*>(qp + 32 * pi) : make_uint4(0u, 0u, 0u, 0u);
    }
  }
  // Warp 0's lane 4 * side + j copies the stage's j-th block of side `side` (0: K of r; 1 + w:
  // V of member w).
  const T* pool = static_cast<const T*>(p.pool);
  const int bs = p.block_size, shift = p.block_shift;
  const auto block_of = [&](int pos) { return shift >= 0 ? pos >> shift : pos / bs; };
  const int side = lane / 4, j = lane % 4;
  const int side_head = side == 0 ? r : (side - 1 < nm ? s_mem[side - 1] : -1);
  const int32_t* tab =
      side_head < 0 ? nullptr : p.tables + (trow * 2 * H + (side == 0 ? 0 : H) + side_head) * p.max_blocks;
  const uint32_t ring = SharedAddress(smem);
  const int u0 = *uses, ntiles = (cl + kRows - 1) / kRows;
  const auto issue = [&](int t) {
    const int slot = (u0 + t) % kStages;
    const uint32_t bar = full0 + 8 * slot;
    const int pos0 = c0 + t * kRows, pos1 = c0 + min(cl, (t + 1) * kRows);
    const int b0 = block_of(pos0), b1 = block_of(pos1 - 1);
    const int b = b0 + j;
    const bool active = tab != nullptr && side <= nm && b <= b1;
    const int id = active ? __ldg(tab + b) : -1;
    const int lo = max(pos0, b * bs), hi = min(pos1, (b + 1) * bs);
    const uint32_t bytes = active ? static_cast<uint32_t>(hi - lo) * kRowBytes : 0u;
    const uint32_t dst = static_cast<uint32_t>(slot) * Stage::kBytes + static_cast<uint32_t>(side) * Stage::kSideBytes +
                         static_cast<uint32_t>(lo - pos0) * kRowBytes;
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
    for (int t = 0; t < min(kStages, ntiles); ++t) issue(t);
  }

  float m_run, l_run, acc[kMTiles][4];
  V4ResetState(&m_run, &l_run, acc);
  const float scale = p.scale_log2;
  for (int t = 0; t < ntiles; ++t) {
    const int slot = V4WaitStage<kStages>(full0, u0, t);
    const unsigned char* stage = reinterpret_cast<const unsigned char*>(smem) + slot * Stage::kBytes;
    const int valid = cl - t * kRows;
    if (my_member >= 0) {
      float sc[2][4], x[2][2];
      V4TileScores<T, kD>(stage, qv, gi, c, sc);
#pragma unroll
      for (int u = 0; u < 2; ++u)
#pragma unroll
        for (int e = 0; e < 2; ++e) x[u][e] = 8 * u + 2 * c + e < valid ? sc[u][e] * scale : -INFINITY;
      V4TileSoftmaxPv<T, kD>(x, stage + (1 + warp) * Stage::kSideBytes, valid, gi, c, &m_run, &l_run, acc);
    }
    __syncthreads();  // every warp is done with the slot
    if (warp == 0 && t + kStages < ntiles) issue(t + kStages);
  }
  *uses = u0 + ntiles;

  // Member my_member is mma column 0: (m, l) in row group 0 (lanes 0-3), its dims in the lanes
  // with c == 0: gi * kLaneDims + tau (acc[tau][0]) and gi * kLaneDims + kMTiles + tau (acc[tau][2]).
  l_run += __shfl_xor_sync(kAll, l_run, 1);
  l_run += __shfl_xor_sync(kAll, l_run, 2);
  const float l0 = __shfl_sync(kAll, l_run, 0), m0 = __shfl_sync(kAll, m_run, 0);
  T* out = static_cast<T*>(p.out) + int64_t{row} * H * kD;
  if (my_member >= 0 && c == 0) {
    const int64_t head = int64_t{s} * H + my_member;
#pragma unroll
    for (int tau = 0; tau < kMTiles; ++tau) {
      const int d0 = gi * kLaneDims + tau, d1 = gi * kLaneDims + kMTiles + tau;
      if (nsplit == 1) {
        out[int64_t{my_member} * kD + d0] = FromFloat<T>(acc[tau][0] / l0);
        out[int64_t{my_member} * kD + d1] = FromFloat<T>(acc[tau][2] / l0);
      } else {
        float* pa = p.part_acc + (head * p.max_splits + split) * kD;
        pa[d0] = acc[tau][0];
        pa[d1] = acc[tau][2];
      }
    }
    if (nsplit > 1 && gi == 0) p.part_ml[head * p.max_splits + split] = make_float2(m0, l0);
  }
  if (nsplit == 1) return;
  if (!V4LastOfSplits(p.counters + item, nsplit)) return;
  for (int w = 0; w < nm; ++w) {
    MergeGroupSplits<T, kD>(p, int64_t{s} * H + s_mem[w], 1, nsplit, out + int64_t{s_mem[w]} * kD);
  }
}

#endif  // __CUDACC__ && __CUDA_ARCH__ >= 900

#ifdef __CUDACC__
template <typename T, int kD>
__global__ void __launch_bounds__(kDecodeThreads, 2) DecodeV4ClusterKernel(Params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Stage = V4ClusterStage<kD>;
  __shared__ uint64_t s_full[kV4MaxStages];
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
