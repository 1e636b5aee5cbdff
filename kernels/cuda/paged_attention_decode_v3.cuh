// PagedAttention decode kernel 3 (CHAI_DECODE_KERNEL=3): two phases, the way plain PyTorch CHAI
// streams (one batched GEMM for the representatives' logits, then P·V for every head), fused and
// paged.
//
// Why: kernels 1 and 2 give a CTA a representative's K plus several members' V, so a CHAI layer's
// work is as unbalanced as its clusters (29+1+1+1 heads leaves one CTA with 29 V heads) and
// reaches 44-72% of copy bandwidth. Here every CTA streams exactly one head's rows over one chunk:
// - phase 1 (DecodeV3ScoreKernel), grid (sequence x query head, split): CTAs of representatives
//   (score_head[h] == h) read K of h's KV head over their chunk and write the scaled logits (fp32,
//   already in the exp2 domain) to logits[seq][h][pos]; every other CTA exits at once. Dense
//   sequences are all representatives, so they need nothing special.
// - phase 2 (DecodeV3PvKernel), grid (sequence x query head, split): every head reads its
//   representative's logits (a few KB, from L2) and streams V of its own KV head, as dense
//   flash-decoding does with q·K. Several splits write (m, l, acc) partials that the last CTA of
//   the (sequence, head) to finish merges in split order (kernel 1's scheme: counter left at zero,
//   fixed order, so two calls give the same bytes).
// Phase 2 is a separate, stream-ordered launch: its PdlWait returns only once phase 1 completed.
//
// Chunks: the host knows only the bound max_seq_len, so it picks split counts (whole waves of
// busy CTAs, as MakePlanV2) and each CTA derives its sequence's chunk from the real length:
// chunk = max(64, round_up(ceil(len / splits), 64)). A short sequence then still spreads over
// several CTAs, splits past its end exit, and the merge counts only its real splits. The two
// phases may use different split counts: they share the logits by position only.
//
// Inside a CTA each warp owns a contiguous range of the chunk and streams it alone, kU rows per
// lane group per trip with all 16-byte loads issued before any use (kernel 2's layout: kLpr lanes
// per row, block ids from a 32-entry table window read by shuffle). Phase 2 takes each warp's
// logit maximum first (a pass over a few hundred floats in L2), so its loop needs no rescaling.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V3_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V3_CUH_

#include <type_traits>

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_decode_v2.cuh"  // LoadStream, Rescale
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda::paged {

// Kernel 3 covers the common head sizes with 16-byte rows, any group size; else kernel 1.
inline bool DecodeV3Supported(int head_dim, bool exact) {
  return exact && (head_dim == 64 || head_dim == 80 || head_dim == 96 || head_dim == 128);
}
constexpr bool DecodeV3Dim(int d) { return d == 64 || d == 80 || d == 96 || d == 128; }

// Split count for `busy` equal CTAs over max_len positions with `resident` CTAs per wave
// (decode_splits::Best, as MakePlanV2).
inline int BestSplitsV3(int64_t max_len, int64_t busy, int64_t resident) {
  return decode_splits::Best(max_len, busy, resident).splits;
}

// Completes p and plan for kernel 3 after MakePlan: phase 1 is busy for ~heads / m
// representatives per sequence (m = members_per_rep, the engine's hint), phase 2 for every head.
// `resident_score` and `resident_pv`: occupancy x SMs of the two kernels.
inline void MakePlanV3(int max_seq_len, int members_per_rep, int resident_score, int resident_pv, Params* p,
                       LaunchPlan* plan) {
  const int64_t max_len = std::max(max_seq_len, 1);
  const int m = std::clamp(members_per_rep, 1, p->heads);
  const int64_t reps = (p->heads + m - 1) / m;
  plan->decode_kernel = 3;
  plan->decode_slots = p->num_seqs * p->heads;  // grid columns of both phases; counters of phase 2
  p->logit_stride = static_cast<int>(max_len);
  p->score_splits = BestSplitsV3(max_len, int64_t{p->num_seqs} * reps, resident_score);
  p->max_splits = BestSplitsV3(max_len, int64_t{p->num_seqs} * p->heads, resident_pv);
  p->chunk = static_cast<int>((max_len + p->max_splits - 1) / p->max_splits);  // informative only
  plan->combine = p->max_splits > 1;
}

#ifdef __CUDACC__

// Rows per lane group per trip: 8 16-byte loads in flight per thread (kRows = 8 * kRpw <= 32
// rows per warp, so a trip spans at most 32 blocks and fits the table window).
constexpr int kV3Unroll = 8;
// Minimum CTAs per SM for __launch_bounds__: 6 (ptxas, sm_90: 72-80 registers, no spills).
constexpr int kV3MinCtas = 6;

// A 16-byte row piece in fp32. bf16 by shifts on 32-bit words: with cvt.f32.bf16 on 16-bit
// registers ptxas needed ~96 registers and spilled under the 6-CTA bound.
template <typename T, int N>
__device__ __forceinline__ void V3ToFloats(const Vec<T, N>& x, float (&f)[N]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const uint32_t* w = reinterpret_cast<const uint32_t*>(&x);
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  } else {
#pragma unroll
    for (int e = 0; e < N; ++e) f[e] = ToFloat(x.v[e]);
  }
}

// Where a phase CTA works: sequence, head, rows, length and chunk; false when it has nothing to
// do (not a decode sequence, or its split is past the sequence's end).
struct V3Work {
  int s, h, rep, row, len, c0, cl, nsplit;  // rep: score_head of (s, h)
  int64_t trow;
};

__device__ __forceinline__ bool V3Locate(const Params& p, int splits, V3Work* w) {
  const int H = p.heads;
  w->s = static_cast<int>(blockIdx.x / static_cast<unsigned>(H));
  w->h = static_cast<int>(blockIdx.x % static_cast<unsigned>(H));
  w->trow = p.slots != nullptr ? p.slots[w->s] : w->s;
  w->rep = p.score_head[w->trow * H + w->h];  // loaded alongside the rows, before any exit
  w->row = p.q_start[w->s];
  const int row_end = p.q_start[w->s + 1];
  // Clamped to the logits' stride: a length above the host's bound (a caller error) must not
  // write past the scratch.
  w->len = min(p.seq_lens[w->s], p.logit_stride);
  if (row_end - w->row != 1) return false;  // not a decode row (none, or a prefill sequence)
  const int chunk = SeqChunk(w->len, splits);
  w->c0 = static_cast<int>(blockIdx.y) * chunk;
  if (w->c0 >= w->len) return false;
  w->cl = min(w->len - w->c0, chunk);
  w->nsplit = (w->len + chunk - 1) / chunk;  // <= splits, as chunk >= len / splits
  return true;
}

// One warp's contiguous share of a chunk of cl positions, a multiple of kRows long.
template <int kRows>
__device__ __forceinline__ void V3WarpRange(int cl, int warp, int* w0, int* w1) {
  const int per_warp = (cl + kDecodeWarps * kRows - 1) / (kDecodeWarps * kRows) * kRows;
  *w0 = warp * per_warp;
  *w1 = min(cl, *w0 + per_warp);
}

// Phase 1: the logits of a representative over its chunk.
template <typename T, int kD>
__global__ void __launch_bounds__(kDecodeThreads, kV3MinCtas) DecodeV3ScoreKernel(Params p) {
  PdlWait();
  using S = RowShape<T, kD>;
  static_assert(S::kExact && S::kNv == 1, "kernel 3 takes rows of at most one 16-byte vector per lane");
  constexpr int kU = kV3Unroll, kVec = S::kVec, kRows = kU * S::kRpw;
  static_assert(kRows <= 32, "a trip must fit the 32-block table window");
  constexpr unsigned kAll = 0xffffffffu;

  V3Work w;
  const bool busy = V3Locate(p, p.score_splits, &w);
  if (!busy || w.rep != w.h) return;  // not a representative: it has no K to read

  const T* pool = static_cast<const T*>(p.pool);
  const int bs = p.block_size, shift = p.block_shift;
  const auto block_of = [&](int pos) { return shift >= 0 ? pos >> shift : pos / bs; };
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int in_row = lane % S::kLpr, rs = lane / S::kLpr;
  const bool vec_ok = in_row < S::kVecs;  // d = 80, 96: some lanes of a row group hold nothing

  float qf[kVec];
  {
    const T* qp = static_cast<const T*>(p.q) + (int64_t{w.row} * p.heads + w.h) * kD;
    const Vec<T, kVec> x = vec_ok ? LoadVec<T, kVec>(qp + in_row * kVec) : ZeroVec<T, kVec>();
#pragma unroll
    for (int e = 0; e < kVec; ++e) qf[e] = ToFloat(x.v[e]) * p.scale_log2;
  }
  const int32_t* ktab = p.tables + (w.trow * 2 * p.kv_heads + w.h / p.group) * p.max_blocks;
  float* lg = p.logits + (int64_t{w.s} * p.heads + w.h) * p.logit_stride + w.c0;
  int w0, w1;
  V3WarpRange<kRows>(w.cl, warp, &w0, &w1);

  int win_base = -(1 << 30), kwin = -1;  // block ids [win_base, win_base + 32), one per lane
  for (int base = w0; base < w1; base += kRows) {  // warp-uniform
    const int b_hi = block_of(w.c0 + min(base + kRows, w1) - 1);
    if (b_hi >= win_base + 32) {
      win_base = block_of(w.c0 + base);
      const int b = win_base + lane;
      kwin = b < p.max_blocks ? __ldg(ktab + b) : -1;
    }
    Vec<T, kVec> kr[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int j = base + u * S::kRpw + rs, pos = w.c0 + j, b = block_of(pos);
      const int kb = __shfl_sync(kAll, kwin, (b - win_base) & 31);
      kr[u] = j < w1 && vec_ok && kb >= 0
                  ? LoadStream<T, kVec>(pool + (int64_t{kb} * bs + (pos - b * bs)) * kD + in_row * kVec)
                  : ZeroVec<T, kVec>();
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      float kf[kVec], x = 0.f;
      V3ToFloats(kr[u], kf);
#pragma unroll
      for (int e = 0; e < kVec; ++e) x = fmaf(qf[e], kf[e], x);
#pragma unroll
      for (int off = S::kLpr / 2; off > 0; off /= 2) x += __shfl_xor_sync(kAll, x, off);
      const int j = base + u * S::kRpw + rs;
      if (in_row == 0 && j < w1) lg[j] = x;
    }
  }
}

// Phase 2: out[h] = softmax(logits of score_head[h]) · V of h's KV head, over the chunk.
template <typename T, int kD>
__global__ void __launch_bounds__(kDecodeThreads, kV3MinCtas) DecodeV3PvKernel(Params p) {
  PdlWait();
  using S = RowShape<T, kD>;
  static_assert(S::kExact && S::kNv == 1, "kernel 3 takes rows of at most one 16-byte vector per lane");
  constexpr int kU = kV3Unroll, kVec = S::kVec, kRows = kU * S::kRpw;
  static_assert(kRows <= 32, "a trip must fit the 32-block table window");
  constexpr unsigned kAll = 0xffffffffu;

  __shared__ float2 s_ml[kDecodeWarps];
  __shared__ float s_acc[kDecodeWarps][kD];

  V3Work w;
  if (!V3Locate(p, p.max_splits, &w)) return;
  const int H = p.heads;
  const int r = w.rep;
  if (r < 0 || r >= H) return;  // a corrupt map: no logits to read

  const T* pool = static_cast<const T*>(p.pool);
  const int bs = p.block_size, shift = p.block_shift;
  const auto block_of = [&](int pos) { return shift >= 0 ? pos >> shift : pos / bs; };
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int in_row = lane % S::kLpr, rs = lane / S::kLpr;
  const bool vec_ok = in_row < S::kVecs;
  const int32_t* vtab = p.tables + ((w.trow * 2 + 1) * p.kv_heads + w.h / p.group) * p.max_blocks;
  // Written by phase 1 (the previous grid): read through L2 (__ldcg), never a stale L1 line.
  const float* lg = p.logits + (int64_t{w.s} * H + r) * p.logit_stride + w.c0;
  int w0, w1;
  V3WarpRange<kRows>(w.cl, warp, &w0, &w1);

  // The warp's logit maximum first, so that the streaming loop needs no rescaling.
  float mx = -INFINITY;
  for (int j = w0 + lane; j < w1; j += 32) mx = fmaxf(mx, __ldcg(lg + j));
  mx = WarpMax(mx);

  float l = 0.f, acc[kVec];
#pragma unroll
  for (int e = 0; e < kVec; ++e) acc[e] = 0.f;
  int win_base = -(1 << 30), vwin = -1;
  for (int base = w0; base < w1; base += kRows) {  // warp-uniform
    const int b_hi = block_of(w.c0 + min(base + kRows, w1) - 1);
    if (b_hi >= win_base + 32) {
      win_base = block_of(w.c0 + base);
      const int b = win_base + lane;
      vwin = b < p.max_blocks ? __ldg(vtab + b) : -1;
    }
    Vec<T, kVec> vr[kU];
    float x[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int j = base + u * S::kRpw + rs, pos = w.c0 + j, b = block_of(pos);
      const bool valid = j < w1;
      const int vb = __shfl_sync(kAll, vwin, (b - win_base) & 31);
      vr[u] = valid && vec_ok && vb >= 0
                  ? LoadStream<T, kVec>(pool + (int64_t{vb} * bs + (pos - b * bs)) * kD + in_row * kVec)
                  : ZeroVec<T, kVec>();
      x[u] = valid ? __ldcg(lg + j) : -INFINITY;
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const float pr = x[u] == -INFINITY ? 0.f : exp2f(x[u] - mx);
      l += pr;
      float vf[kVec];
      V3ToFloats(vr[u], vf);
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[e] = fmaf(pr, vf[e], acc[e]);
    }
  }

  // Merge the warp's lane groups (same max: plain sums), then the warps in shared memory.
#pragma unroll
  for (int off = S::kLpr; off < 32; off *= 2) l += __shfl_xor_sync(kAll, l, off);
#pragma unroll
  for (int e = 0; e < kVec; ++e) {
#pragma unroll
    for (int off = S::kLpr; off < 32; off *= 2) acc[e] += __shfl_xor_sync(kAll, acc[e], off);
  }
  if (lane == 0) s_ml[warp] = make_float2(mx, l);
  if (rs == 0 && vec_ok) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) s_acc[warp][in_row * kVec + e] = acc[e];
  }
  __syncthreads();
  float m_cta = -INFINITY;
#pragma unroll
  for (int k = 0; k < kDecodeWarps; ++k) m_cta = fmaxf(m_cta, s_ml[k].x);
  float l_cta = 0.f, a[kDecodeWarps];
#pragma unroll
  for (int k = 0; k < kDecodeWarps; ++k) {
    a[k] = Rescale(s_ml[k].x, m_cta);  // 0 for a warp without rows
    l_cta = fmaf(a[k], s_ml[k].y, l_cta);
  }
  const int64_t head = int64_t{w.s} * H + w.h;
  T* orow = static_cast<T*>(p.out) + (int64_t{w.row} * H + w.h) * kD;
  if (w.nsplit == 1) {
    const float inv = 1.f / l_cta;
    for (int c = threadIdx.x; c < kD; c += kDecodeThreads) {
      float y = 0.f;
#pragma unroll
      for (int k = 0; k < kDecodeWarps; ++k) y = fmaf(a[k], s_acc[k][c], y);
      orow[c] = FromFloat<T>(y * inv);
    }
    return;
  }
  const int split = static_cast<int>(blockIdx.y);
  for (int c = threadIdx.x; c < kD; c += kDecodeThreads) {
    float y = 0.f;
#pragma unroll
    for (int k = 0; k < kDecodeWarps; ++k) y = fmaf(a[k], s_acc[k][c], y);
    p.part_acc[(head * p.max_splits + split) * kD + c] = y;
  }
  if (threadIdx.x == 0) p.part_ml[head * p.max_splits + split] = make_float2(m_cta, l_cta);

  // The last CTA of this (sequence, head) over its nsplit splits merges the partials in split
  // order, all its threads on the one head, and resets the counter for the next call.
  if (!LastSplitCta(p.counters, w.nsplit)) return;
  MergeSplitsWarp<T, kD, kDecodeThreads>(p, head, w.nsplit, orow);
}

#endif  // __CUDACC__

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_V3_CUH_
