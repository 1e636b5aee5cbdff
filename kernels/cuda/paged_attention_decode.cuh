// PagedAttention decode kernel.
//
// Sequences with one new row: flash-decoding, CHAI-aware. A CTA owns one
// (sequence, KV head g, subset of g's representatives, member share, chunk of positions): it
// reads K_g over the chunk and computes the chunk's scores for the representatives r with
// kv(r) = g that the sequence's score_head names (dense: every head is its own representative),
// turns them into chunk-local softmax numerators (max m, sum l), and then walks its share of
// those representatives' members (heads h with score_head[h] = r) grouped by their V head: each
// needed V head is read once per CTA and accumulated with each member's representative's
// probabilities. Under dense GQA that is one read of K_g and V_g for the whole query group.
//
// Why member shares: CHAI leaves few representatives (4 of 32 heads in LLaMA-7B's late layers),
// so few slots have work, and each would stream ~8 members' V serially while most of the GPU
// waits. The host's per-layer hint (heads per representative) therefore splits a slot's
// members over `member_splits` sibling CTAs. Siblings re-read K_g, but they are adjacent in the
// grid and run together, so the repeats come from L2 and DRAM still sees K once and V once;
// a share is a set of whole V heads, so a V head is still read by one CTA. With hint 1 (dense)
// each slot is one share and the grid is the unsplit one. A wrong hint only changes speed.
//
// The CTA derives its representatives and members from score_head itself (warp ballots over
// <= 256 heads), so there is no planning kernel and no host round trip, and mixed dense/CHAI
// batches need nothing special; CTAs whose slot has no representative, or whose share has no
// member, exit before reading K. With one chunk per sequence the CTA writes the output;
// otherwise it writes (m, l, unnormalised acc) partials of its share's members to scratch (each
// (member, chunk) by exactly one CTA), and the last of the CTAs of its (slot, share) to finish
// (an atomic counter per slot and share) merges those members' partials, so a decode step is a
// single launch.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_CUH_

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda::paged {

template <typename T, int kD, int kG>
struct DecodeTuning {
  using S = RowShape<T, kD>;
  // Rows each thread keeps in flight per loop trip: enough 16-byte loads to cover latency.
  static constexpr int kUnroll = S::kNv >= 4 ? 2 : (kG >= 8 ? 4 : 8);
};

template <typename T, int kD, int kG>
__global__ void __launch_bounds__(kDecodeThreads) DecodeKernel(Params p) {
  PdlWait();
  using S = RowShape<T, kD>;
  constexpr int kUnroll = DecodeTuning<T, kD, kG>::kUnroll;
  constexpr int kStep = kDecodeWarps * S::kRpw;  // rows per warp-step of the whole CTA

  CHAI_PAGED_DYNAMIC_SHARED(float, s_scores);  // [kG][chunk]
  __shared__ int s_sh[kMaxHeads];              // the sequence's score_head row
  __shared__ int s_reps[kG];
  __shared__ int s_nreps, s_nmem;
  __shared__ int s_mem[kMaxHeads];               // member heads, ascending
  __shared__ unsigned char s_memrep[kMaxHeads];  // their representative's index in s_reps
  __shared__ float s_m[kG], s_l[kG];
  __shared__ float s_red[kDecodeWarps][S::kDMax];

  // blockIdx.x = ((s * kv_heads + g) * subsets + subset) * member_splits + msub: the member
  // shares of one slot are neighbours, so they run together and their repeated K reads hit L2.
  // (Unsigned arithmetic keeps these in uniform registers.)
  const unsigned msplit = p.member_splits, slot = blockIdx.x / msplit, per_seq = p.kv_heads * p.subsets;
  const int msub = static_cast<int>(blockIdx.x % msplit);
  const int s = static_cast<int>(slot / per_seq), g = static_cast<int>((slot % per_seq) / p.subsets),
            subset = static_cast<int>(slot % p.subsets);
  const int64_t trow = p.slots != nullptr ? p.slots[s] : s;  // the sequence's table / score-head row
  const int split = blockIdx.y;
  const int H = p.heads, G = p.group;
  // All index loads in flight at once: the sequence's rows and length, its score_head row.
  const int row = p.q_start[s], row_end = p.q_start[s + 1], len = p.seq_lens[s];
  constexpr int kShPerThread = kMaxHeads / kDecodeThreads;
  int sh_v[kShPerThread];
#pragma unroll
  for (int k = 0; k < kShPerThread; ++k) {
    const int h = threadIdx.x + k * kDecodeThreads;
    sh_v[k] = h < H ? p.score_head[trow * H + h] : -1;
  }
  if (row_end - row != 1) return;  // not a decode row (none, or a prefill sequence)
  // The chunk scaled to this sequence (at most the planned one, which sizes the score buffer).
  const int chunk = min(p.chunk, SeqChunk(len, p.max_splits));
  const int c0 = split * chunk;
  if (c0 >= len) return;
  const int cl = min(len - c0, chunk);
  // Clamped so that a length above the host's max_seq_len bound (a caller error) cannot leave a
  // slot counter short of its target for later calls.
  const int nsplit = min((len + chunk - 1) / chunk, p.max_splits);
  const int d = S::kExact ? kD : p.head_dim;
  const int vecs = S::kExact ? S::kVecs : d;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < kShPerThread; ++k) {
    const int h = threadIdx.x + k * kDecodeThreads;
    if (h < H) s_sh[h] = sh_v[k];
  }
  __syncthreads();
  const int* sh = s_sh;

  // Plan (warp 0): this slot's representatives and this CTA's share of their members.
  if (warp == 0) {
    PlanShare<kG>(sh, H, G, g, subset, static_cast<int>(msplit), msub, s_reps, s_mem, s_memrep, &s_nreps, &s_nmem);
  }
  __syncthreads();
  const int nr = s_nreps;
  if (nr == 0) return;  // no representative here, or no member in this share: K is not read

  const T* pool = static_cast<const T*>(p.pool);
  const int bs = p.block_size;
  const int in_row = lane % S::kLpr;                     // this lane's vector slot in a row
  const int row_slot = warp * S::kRpw + lane / S::kLpr;  // this lane group's row in a step

  // Scores of the chunk for every representative (log2 domain), K read once.
  {
    float qf[kG][S::kNv][S::kVec];
#pragma unroll
    for (int i = 0; i < kG; ++i) {
      const int r = s_reps[i < nr ? i : 0];
      const T* qp = static_cast<const T*>(p.q) + int64_t{row} * H * d + int64_t{r} * d;
#pragma unroll
      for (int t = 0; t < S::kNv; ++t) {
        const int v = t * S::kLpr + in_row;
        const Vec<T, S::kVec> x = v < vecs ? LoadVec<T, S::kVec>(qp + v * S::kVec) : ZeroVec<T, S::kVec>();
#pragma unroll
        for (int e = 0; e < S::kVec; ++e) qf[i][t][e] = ToFloat(x.v[e]) * p.scale_log2;
      }
    }
    const int32_t* ktab = p.tables + (trow * 2 * p.kv_heads + g) * p.max_blocks;
    for (int base = 0; base < cl; base += kStep * kUnroll) {
      Vec<T, S::kVec> kv[kUnroll][S::kNv];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kStep + row_slot;
        const T* rp = j < cl ? RowPtr(pool, ktab, c0 + j, bs, p.block_shift, d) : nullptr;
#pragma unroll
        for (int t = 0; t < S::kNv; ++t) {
          const int v = t * S::kLpr + in_row;
          kv[u][t] = rp != nullptr && v < vecs ? LoadVec<T, S::kVec>(rp + v * S::kVec) : ZeroVec<T, S::kVec>();
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kStep + row_slot;
#pragma unroll
        for (int i = 0; i < kG; ++i) {
          if (i < nr) {  // uniform across the CTA
            float acc = 0.f;
#pragma unroll
            for (int t = 0; t < S::kNv; ++t) {
#pragma unroll
              for (int e = 0; e < S::kVec; ++e) acc = fmaf(qf[i][t][e], ToFloat(kv[u][t].v[e]), acc);
            }
#pragma unroll
            for (int off = S::kLpr / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
            if (in_row == 0 && j < cl) s_scores[i * p.chunk + j] = acc;
          }
        }
      }
    }
  }
  __syncthreads();

  // Chunk-local softmax numerators: m = max, p = exp2(score - m) in place, l = sum p.
  for (int i = warp; i < nr; i += kDecodeWarps) {
    float* sc = s_scores + i * p.chunk;
    float m = -INFINITY;
    for (int j = lane; j < cl; j += 32) m = fmaxf(m, sc[j]);
    m = WarpMax(m);
    float l = 0.f;
    for (int j = lane; j < cl; j += 32) {
      const float e = exp2f(sc[j] - m);
      sc[j] = e;
      l += e;
    }
    l = WarpSum(l);
    if (lane == 0) {
      s_m[i] = m;
      s_l[i] = l;
    }
  }
  __syncthreads();

  // Members, grouped by V head: each V head read once, accumulated for up to kG members.
  const int nm = s_nmem;
  const int64_t v_tables = (trow * 2 + 1) * p.kv_heads;
  for (int b0 = 0; b0 < nm;) {
    const int vg = s_mem[b0] / G;
    int b1 = b0 + 1;
    while (b1 < nm && b1 - b0 < kG && s_mem[b1] / G == vg) ++b1;
    const int nb = b1 - b0;
    int mrep[kG];
#pragma unroll
    for (int i = 0; i < kG; ++i) mrep[i] = i < nb ? s_memrep[b0 + i] : 0;

    float acc[kG][S::kNv][S::kVec];
#pragma unroll
    for (int i = 0; i < kG; ++i)
#pragma unroll
      for (int t = 0; t < S::kNv; ++t)
#pragma unroll
        for (int e = 0; e < S::kVec; ++e) acc[i][t][e] = 0.f;

    const int32_t* vtab = p.tables + (v_tables + vg) * p.max_blocks;
    for (int base = 0; base < cl; base += kStep * kUnroll) {
      Vec<T, S::kVec> vv[kUnroll][S::kNv];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kStep + row_slot;
        const T* rp = j < cl ? RowPtr(pool, vtab, c0 + j, bs, p.block_shift, d) : nullptr;
#pragma unroll
        for (int t = 0; t < S::kNv; ++t) {
          const int v = t * S::kLpr + in_row;
          vv[u][t] = rp != nullptr && v < vecs ? LoadVec<T, S::kVec>(rp + v * S::kVec) : ZeroVec<T, S::kVec>();
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kStep + row_slot;
        if (j < cl) {
#pragma unroll
          for (int i = 0; i < kG; ++i) {
            if (i < nb) {
              const float w = s_scores[mrep[i] * p.chunk + j];
#pragma unroll
              for (int t = 0; t < S::kNv; ++t)
#pragma unroll
                for (int e = 0; e < S::kVec; ++e) acc[i][t][e] = fmaf(w, ToFloat(vv[u][t].v[e]), acc[i][t][e]);
            }
          }
        }
      }
    }

    // Sum each member's accumulators over the row slots (lanes, then warps) and write it.
#pragma unroll
    for (int i = 0; i < kG; ++i) {
      if (i < nb) {  // uniform
#pragma unroll
        for (int t = 0; t < S::kNv; ++t)
#pragma unroll
          for (int e = 0; e < S::kVec; ++e) {
            float x = acc[i][t][e];
#pragma unroll
            for (int off = S::kLpr; off < 32; off *= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
            acc[i][t][e] = x;
          }
        if (lane < S::kLpr) {
#pragma unroll
          for (int t = 0; t < S::kNv; ++t) {
            const int v = t * S::kLpr + lane;
            if (v < vecs) {
#pragma unroll
              for (int e = 0; e < S::kVec; ++e) s_red[warp][v * S::kVec + e] = acc[i][t][e];
            }
          }
        }
        __syncthreads();
        const int h = s_mem[b0 + i], ri = mrep[i];
        const int64_t head = (int64_t{s} * H + h);
        if (nsplit == 1) {
          const float inv = 1.f / s_l[ri];
          T* o = static_cast<T*>(p.out) + int64_t{row} * H * d + int64_t{h} * d;
          for (int c = threadIdx.x; c < d; c += kDecodeThreads) {
            float x = 0.f;
#pragma unroll
            for (int w = 0; w < kDecodeWarps; ++w) x += s_red[w][c];
            o[c] = FromFloat<T>(x * inv);
          }
        } else {
          float* o = p.part_acc + (head * p.max_splits + split) * d;
          for (int c = threadIdx.x; c < d; c += kDecodeThreads) {
            float x = 0.f;
#pragma unroll
            for (int w = 0; w < kDecodeWarps; ++w) x += s_red[w][c];
            o[c] = x;
          }
          if (threadIdx.x == 0) p.part_ml[head * p.max_splits + split] = make_float2(s_m[ri], s_l[ri]);
        }
        __syncthreads();
      }
    }
    b0 = b1;
  }
  if (nsplit == 1) return;

  // Fused combine: the last CTA of this (slot, share) to finish, over the sequence's chunks,
  // merges the share's members' partials: out = sum_k 2^(m_k - M) acc_k / sum_k 2^(m_k - M) l_k.
  // Every chunk's CTA of a (slot, share) has the same members (the plan above does not depend
  // on the chunk), so the nsplit CTAs that count are exactly the writers of those partials, and
  // CTAs of other shares count on their own counters. The counter is reset for the next call.
  if (!LastSplitCta(p.counters, nsplit)) return;
  T* orow = static_cast<T*>(p.out) + int64_t{row} * H * d;
  for (int i = warp; i < nm; i += kDecodeWarps) {
    const int h = s_mem[i];
    MergeSplitsWarp<T, kD>(p, int64_t{s} * H + h, nsplit, orow + int64_t{h} * d);
  }
}

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_DECODE_CUH_
