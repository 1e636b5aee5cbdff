// PagedAttention decode kernel 2 (CHAI_DECODE_KERNEL=2; kernel 1 in paged_attention_decode.cuh
// stays the default). Same Params, grid columns, member shares, partials and last-CTA merge as
// kernel 1, and the same CHAI semantics; what changes is how a CTA streams its chunk.
//
// Kernel 1 is CTA-phased: all K rows -> barrier -> softmax -> barrier -> V rows per member with a
// block reduction each, so the memory pipe idles between phases. Here every warp owns a
// contiguous quarter of the chunk and streams it alone with an online softmax: per trip it
// issues the K row and each member's V row of kU rows per lane group (all 16-byte loads before
// any use), turns the K rows into representative scores, rescales its running (m, l, acc) once
// per trip and accumulates the members' V rows with their representative's probabilities.
// No barrier inside the loop; lane groups (rows of one warp-step) keep independent states that
// are merged by shuffles, then the warps' states are merged in shared memory at the end.
// Per-member accumulators live in registers, so a pass takes at most kM members; a share with
// more (a hint below the real cluster size) takes several passes, each re-reading K.
// Block ids come from a 32-entry window of the block tables held one per lane and read by
// shuffle, so a row's address does not wait on a table load.
//
// The host sizes chunks for whole waves of resident CTAs (MakePlanV2) instead of kernel 1's
// fixed CTAs-per-SM goal.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V2_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V2_CUH_

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda::paged {

// Kernel 2 covers the common head sizes with 16-byte rows and groups of up to 4 query heads per
// KV head; everything else runs kernel 1.
inline bool DecodeV2Supported(int head_dim, int group_tile, bool exact) {
  return exact && group_tile <= 4 && (head_dim == 64 || head_dim == 80 || head_dim == 96 || head_dim == 128);
}
constexpr bool DecodeV2Dim(int d) { return d == 64 || d == 80 || d == 96 || d == 128; }

// Members accumulated per pass (kM: 1, 2 or 4): GQA tiles always 4 (dense GQA: the group's
// heads share one V row); MHA the expected share size.
inline int DecodeV2Members(const Params& p, const LaunchPlan& plan, int members_per_rep) {
  if (plan.group_tile > 1) return 4;
  const int m = std::clamp(members_per_rep, 1, p.heads);
  const int share = (m + p.member_splits - 1) / p.member_splits;
  return share <= 1 ? 1 : (share <= 2 ? 2 : 4);
}

// Chunk sizing for kernels 2 and 4 (dense): whole waves of `busy` CTAs per chunk index over
// `resident` = occupancy x SMs (decode_splits::Best has the cost model; the CPU tests check it).
// `split_cap` (> 0): at most that many splits per sequence, a tuning knob for kernel 4 (within
// one wave the model always prefers more splits; the merge of their partials is not in it).
inline void MakePlanV2(int max_seq_len, int members_per_rep, int resident, Params* p, LaunchPlan* plan,
                       int split_cap = 0) {
  const int m = std::clamp(members_per_rep, 1, p->heads);
  const int slots = p->kv_heads * p->subsets;
  const int64_t busy = int64_t{p->num_seqs} * std::min<int64_t>(slots, (p->heads + m - 1) / m) * p->member_splits;
  const decode_splits::Split split = decode_splits::Best(max_seq_len, busy, resident, split_cap);
  p->chunk = split.chunk;
  p->max_splits = split.splits;
  plan->combine = p->max_splits > 1;
}

#ifdef __CUDACC__

template <int kM>
constexpr int kV2Unroll = kM >= 2 ? 2 : 4;  // rows per lane group per trip: (1 + kM) * kU loads in flight
// (kU = 4 for kM = 2 needed ~170 registers, kU = 2 122: more CTAs for the same bytes in flight)

// Minimum CTAs per SM for __launch_bounds__ (ptxas, fp16 d128): kM = 1 uses 72 registers (cap
// 96, 5+ CTAs), kM = 2 ~122 (cap 128, 4 CTAs). kM = 4 and the GQA tile need ~180-220 (ptxas
// keeps the trip's rows converted to fp32) and spill under a 128 cap, so they run 2 CTAs per SM;
// with (1 + kM) * kU 16-byte loads in flight per thread that still carries ~40 KB per SM, about
// twice H100's bandwidth x latency.
template <int kM>
constexpr int kV2MinCtas = kM == 1 ? 5 : (kM == 2 ? 4 : 1);

// A streamed 16-byte row piece: read once per launch, so keep it out of L1.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> LoadStream(const T* ptr) {
  static_assert(sizeof(Vec<T, N>) == 16, "16-byte vectors only");
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(ptr));
  Vec<T, N> v;
  *reinterpret_cast<uint4*>(&v) = r;
  return v;
}

// exp2(m_old - m_new) for rescaling a state whose max was m_old; 0 for an empty state (whose
// l and acc are 0), which also avoids -inf - -inf.
__device__ __forceinline__ float Rescale(float m_old, float m_new) {
  return m_old == -INFINITY ? 0.f : exp2f(m_old - m_new);
}

// The CTA's warps' states of one head merged: ml[w][i] is warp w's (max, sum) for head slot i and
// acc_of(w) its accumulator element. Returns the accumulators rescaled to the common max and
// summed; *mx gets that max and *lsum the rescaled sums' total.
template <int kSlots, typename AccOf>
__device__ __forceinline__ float MergeWarpStates(const float2 (*ml)[kSlots], int i, AccOf acc_of, float* mx,
                                                 float* lsum) {
  float m = -INFINITY;
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) m = fmaxf(m, ml[w][i].x);
  float l = 0.f, x = 0.f;
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) {
    const float a = Rescale(ml[w][i].x, m);
    l = fmaf(a, ml[w][i].y, l);
    x = fmaf(a, acc_of(w), x);
  }
  *mx = m;
  *lsum = l;
  return x;
}

template <typename T, int kD, int kG, int kM>
__global__ void __launch_bounds__(kDecodeThreads, kV2MinCtas<kM>) DecodeV2Kernel(Params p) {
  PdlWait();
  using S = RowShape<T, kD>;
  static_assert(S::kExact && S::kNv == 1, "kernel 2 takes rows of at most one 16-byte vector per lane");
  constexpr int kU = kV2Unroll<kM>;
  constexpr int kRows = kU * S::kRpw;  // rows per warp per trip (<= 16, so a trip spans < 32 blocks)
  constexpr int kVec = S::kVec;
  constexpr unsigned kAll = 0xffffffffu;

  __shared__ int s_sh[kMaxHeads];
  __shared__ int s_reps[kG];
  __shared__ int s_nreps, s_nmem;
  __shared__ int s_mem[kMaxHeads];
  __shared__ unsigned char s_memrep[kMaxHeads];
  __shared__ float2 s_ml[kDecodeWarps][kG];
  __shared__ float s_acc[kDecodeWarps][kM][kD];

  // The grid is kernel 1's: blockIdx.x = ((s * kv_heads + g) * subsets + subset) * member_splits + msub.
  const unsigned msplit = p.member_splits, slot = blockIdx.x / msplit, per_seq = p.kv_heads * p.subsets;
  const int msub = static_cast<int>(blockIdx.x % msplit);
  const int s = static_cast<int>(slot / per_seq), g = static_cast<int>((slot % per_seq) / p.subsets),
            subset = static_cast<int>(slot % p.subsets);
  const int64_t trow = p.slots != nullptr ? p.slots[s] : s;
  const int split = blockIdx.y;
  const int H = p.heads, G = p.group;
  const int row = p.q_start[s], row_end = p.q_start[s + 1], len = p.seq_lens[s];
  constexpr int kShPerThread = kMaxHeads / kDecodeThreads;
  int sh_v[kShPerThread];
#pragma unroll
  for (int k = 0; k < kShPerThread; ++k) {
    const int h = threadIdx.x + k * kDecodeThreads;
    sh_v[k] = h < H ? p.score_head[trow * H + h] : -1;
  }
  if (row_end - row != 1) return;
  // The chunk scaled to this sequence (at most the planned one, which sizes the score buffer).
  const int chunk = min(p.chunk, SeqChunk(len, p.max_splits));
  const int c0 = split * chunk;
  if (c0 >= len) return;
  const int cl = min(len - c0, chunk);
  const int nsplit = min((len + chunk - 1) / chunk, p.max_splits);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < kShPerThread; ++k) {
    const int h = threadIdx.x + k * kDecodeThreads;
    if (h < H) s_sh[h] = sh_v[k];
  }
  __syncthreads();
  if (warp == 0) {
    PlanShare<kG>(s_sh, H, G, g, subset, static_cast<int>(msplit), msub, s_reps, s_mem, s_memrep, &s_nreps,
                    &s_nmem);
  }
  __syncthreads();
  const int nr = s_nreps, nm = s_nmem;
  if (nr == 0) return;  // no representative here, or no member in this share: K is not read

  const T* pool = static_cast<const T*>(p.pool);
  const int bs = p.block_size, shift = p.block_shift;
  const auto block_of = [&](int pos) { return shift >= 0 ? pos >> shift : pos / bs; };
  const int in_row = lane % S::kLpr, rs = lane / S::kLpr;
  const bool vec_ok = in_row < S::kVecs;  // d = 80, 96: some lanes of a row group hold nothing

  float qf[kG][kVec];
#pragma unroll
  for (int i = 0; i < kG; ++i) {
    const int r = s_reps[i < nr ? i : 0];
    const T* qp = static_cast<const T*>(p.q) + int64_t{row} * H * kD + int64_t{r} * kD;
    const Vec<T, kVec> x = vec_ok ? LoadVec<T, kVec>(qp + in_row * kVec) : ZeroVec<T, kVec>();
#pragma unroll
    for (int e = 0; e < kVec; ++e) qf[i][e] = ToFloat(x.v[e]) * p.scale_log2;
  }
  const int32_t* ktab = p.tables + (trow * 2 * p.kv_heads + g) * p.max_blocks;
  const int64_t v_tables = (trow * 2 + 1) * p.kv_heads;
  // This warp's rows of the chunk: a contiguous range, a multiple of kRows long.
  const int per_warp = (cl + kDecodeWarps * kRows - 1) / (kDecodeWarps * kRows) * kRows;
  const int w0 = warp * per_warp, w1 = min(cl, w0 + per_warp);

  for (int p0 = 0; p0 < nm; p0 += kM) {
    const int np = min(nm - p0, kM);
    // Pass members: their representative's index, their V table, and whether they share the
    // previous member's V head (GQA: then that row is reused, not loaded again). Members past
    // np count as shared, so they load nothing.
    int mrep[kM];
    bool same[kM];
    const int32_t* vtab[kM];
#pragma unroll
    for (int i = 0; i < kM; ++i) {
      const int h = s_mem[p0 + min(i, np - 1)];
      mrep[i] = s_memrep[p0 + min(i, np - 1)];
      vtab[i] = p.tables + (v_tables + h / G) * p.max_blocks;
      same[i] = i > 0 && (i >= np || h / G == s_mem[p0 + i - 1] / G);
    }

    float m[kG], l[kG], acc[kM][kVec];
#pragma unroll
    for (int i = 0; i < kG; ++i) {
      m[i] = -INFINITY;
      l[i] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < kM; ++i)
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[i][e] = 0.f;

    int win_base = -(1 << 30);  // first block index of the table window
    int kwin = -1, vwin[kM];
#pragma unroll
    for (int i = 0; i < kM; ++i) vwin[i] = -1;

    for (int base = w0; base < w1; base += kRows) {  // warp-uniform
      const int b_hi = block_of(c0 + min(base + kRows, w1) - 1);
      if (b_hi >= win_base + 32) {
        win_base = block_of(c0 + base);
        const int b = win_base + lane;
        const bool ok = b < p.max_blocks;
        kwin = ok ? __ldg(ktab + b) : -1;
#pragma unroll
        for (int i = 0; i < kM; ++i) vwin[i] = ok && !same[i] ? __ldg(vtab[i] + b) : -1;
      }
      // All of the trip's loads first.
      Vec<T, kVec> kr[kU], vr[kM][kU];
      bool valid[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int j = base + u * S::kRpw + rs, pos = c0 + j, b = block_of(pos);
        valid[u] = j < w1;
        const int64_t in_block = pos - b * bs;
        const int kb = __shfl_sync(kAll, kwin, (b - win_base) & 31);
        kr[u] = valid[u] && vec_ok && kb >= 0 ? LoadStream<T, kVec>(pool + (int64_t{kb} * bs + in_block) * kD + in_row * kVec)
                                              : ZeroVec<T, kVec>();
#pragma unroll
        for (int i = 0; i < kM; ++i) {
          const int vb = __shfl_sync(kAll, vwin[i], (b - win_base) & 31);
          vr[i][u] = !same[i] && valid[u] && vec_ok && vb >= 0
                         ? LoadStream<T, kVec>(pool + (int64_t{vb} * bs + in_block) * kD + in_row * kVec)
                         : ZeroVec<T, kVec>();
        }
      }
      // Scores (log2 domain), reduced over the lane group; invalid rows -inf.
      float sc[kG][kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        float kf[kVec];
#pragma unroll
        for (int e = 0; e < kVec; ++e) kf[e] = ToFloat(kr[u].v[e]);
#pragma unroll
        for (int i = 0; i < kG; ++i) {
          float x = 0.f;
          if (i < nr) {
#pragma unroll
            for (int e = 0; e < kVec; ++e) x = fmaf(qf[i][e], kf[e], x);
          }
#pragma unroll
          for (int off = S::kLpr / 2; off > 0; off /= 2) x += __shfl_xor_sync(kAll, x, off);
          sc[i][u] = valid[u] ? x : -INFINITY;
        }
      }
      // Online softmax, one rescale per trip: sc becomes the probabilities' numerators.
      float alpha[kG];
#pragma unroll
      for (int i = 0; i < kG; ++i) {
        float mx = m[i];
#pragma unroll
        for (int u = 0; u < kU; ++u) mx = fmaxf(mx, sc[i][u]);
        alpha[i] = Rescale(m[i], mx);
        float sum = 0.f;
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          sc[i][u] = sc[i][u] == -INFINITY ? 0.f : exp2f(sc[i][u] - mx);
          sum += sc[i][u];
        }
        l[i] = fmaf(l[i], alpha[i], sum);
        m[i] = mx;
      }
      // Members: acc = acc * alpha + sum_u p_u V_u; a member sharing the previous one's V head
      // (GQA) takes that row.
      Vec<T, kVec> cur[kU];
#pragma unroll
      for (int i = 0; i < kM; ++i) {
        if (i < np) {  // uniform
          float a = alpha[0];
#pragma unroll
          for (int r = 1; r < kG; ++r) a = mrep[i] == r ? alpha[r] : a;
#pragma unroll
          for (int e = 0; e < kVec; ++e) acc[i][e] *= a;
#pragma unroll
          for (int u = 0; u < kU; ++u) {
            if (!same[i]) cur[u] = vr[i][u];
            float w = sc[0][u];
#pragma unroll
            for (int r = 1; r < kG; ++r) w = mrep[i] == r ? sc[r][u] : w;
#pragma unroll
            for (int e = 0; e < kVec; ++e) acc[i][e] = fmaf(w, ToFloat(cur[u].v[e]), acc[i][e]);
          }
        }
      }
    }

    // Merge the lane groups of the warp (shuffles), then the warps (shared memory).
#pragma unroll
    for (int i = 0; i < kG; ++i) {
      float mx = m[i];
#pragma unroll
      for (int off = S::kLpr; off < 32; off *= 2) mx = fmaxf(mx, __shfl_xor_sync(kAll, mx, off));
      float x = l[i] * Rescale(m[i], mx);
#pragma unroll
      for (int off = S::kLpr; off < 32; off *= 2) x += __shfl_xor_sync(kAll, x, off);
      const float a = Rescale(m[i], mx);
      if (lane == 0) s_ml[warp][i] = make_float2(mx, x);
#pragma unroll
      for (int j = 0; j < kM; ++j) {
        if (j < np && mrep[j] == i) {
#pragma unroll
          for (int e = 0; e < kVec; ++e) acc[j][e] *= a;
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kM; ++i) {
      if (i < np) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          float x = acc[i][e];
#pragma unroll
          for (int off = S::kLpr; off < 32; off *= 2) x += __shfl_xor_sync(kAll, x, off);
          acc[i][e] = x;
        }
        if (rs == 0 && vec_ok) {
#pragma unroll
          for (int e = 0; e < kVec; ++e) s_acc[warp][i][in_row * kVec + e] = acc[i][e];
        }
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < np * kD; idx += kDecodeThreads) {
      const int i = idx / kD, c = idx % kD, ri = s_memrep[p0 + i], h = s_mem[p0 + i];
      float mx, lsum;
      const float x = MergeWarpStates(s_ml, ri, [&](int w) { return s_acc[w][i][c]; }, &mx, &lsum);
      const int64_t head = int64_t{s} * H + h;
      if (nsplit == 1) {
        static_cast<T*>(p.out)[int64_t{row} * H * kD + int64_t{h} * kD + c] = FromFloat<T>(x / lsum);
      } else {
        p.part_acc[(head * p.max_splits + split) * kD + c] = x;
        if (c == 0) p.part_ml[head * p.max_splits + split] = make_float2(mx, lsum);
      }
    }
    __syncthreads();  // s_acc and s_ml are rewritten by the next pass
  }
  if (nsplit == 1) return;

  // Fused combine, as kernel 1: the last CTA of this (slot, share) over the sequence's chunks
  // merges the share's members' partials and resets the counter.
  if (!LastSplitCta(p.counters, nsplit)) return;
  T* orow = static_cast<T*>(p.out) + int64_t{row} * H * kD;
  for (int i = warp; i < nm; i += kDecodeWarps) {
    const int h = s_mem[i];
    MergeSplitsWarp<T, kD>(p, int64_t{s} * H + h, nsplit, orow + int64_t{h} * kD);
  }
}

#endif  // __CUDACC__

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V2_CUH_
