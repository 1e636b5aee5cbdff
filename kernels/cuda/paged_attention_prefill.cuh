// PagedAttention prefill kernels (sequences with >= 2 new rows), FlashAttention-2 style.
//
// A CTA owns (sequence, a batch of up to kPrefillMembers members of one representative, 64 query
// rows): it walks the causal key tiles of the representative's K, computes the 64 x 64 score tile
// once with an online softmax, and applies the probabilities to each member's V tile (CHAI:
// scores once per representative tile; dense: batches of one).
// - PrefillKernel: fp32 on CUDA cores, any head_dim <= 256 and every dtype (the reference path).
// - PrefillMmaKernel (paged_attention_prefill_mma.cuh): fp16/bf16 tensor cores.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_CUH_

#include "kernels/cuda/paged_attention_common.cuh"

namespace chai::cuda::paged {

// Dynamic shared memory of the prefill kernel: Q tile, K/V tile (rows padded by one float so
// that the column walks of the 16x16 thread grid hit distinct banks) and the probability tile.
__host__ __device__ constexpr int PrefillSharedFloats(int d) {
  return (kPrefillRows + kPrefillKeys) * (d + 1) + kPrefillRows * (kPrefillKeys + 1);
}

// Loads keys/values kt .. kt + kPrefillKeys - 1 of one (sequence, side, head) into dst as fp32
// (zeros past the sequence's length or without a block).
template <typename T, int kD>
__device__ __forceinline__ void LoadTile(float* dst, const T* pool, const int32_t* table, int kt, int len, int bs,
                                         int shift, int d) {
  constexpr bool kWide = kD > 0;
  constexpr int kVec = kWide ? static_cast<int>(16 / sizeof(T)) : 1;
  const int vecs = kWide ? kD / kVec : d;
  const int ld = d + 1;
  for (int idx = threadIdx.x; idx < kPrefillKeys * vecs; idx += kPrefillThreads) {
    const int k = idx / vecs, v = idx - k * vecs, pos = kt + k;
    const T* rp = pos < len ? RowPtr(pool, table, pos, bs, shift, d) : nullptr;
    const Vec<T, kVec> x = rp != nullptr ? LoadVec<T, kVec>(rp + v * kVec) : ZeroVec<T, kVec>();
#pragma unroll
    for (int e = 0; e < kVec; ++e) dst[k * ld + v * kVec + e] = ToFloat(x.v[e]);
  }
}

// The members of representative r that the CTA of head h handles: h and r's next
// kPrefillMembers - 1 members when h starts a batch (members counted in head order), else none.
// Every thread of the CTA must call it (it synchronises).
__device__ __forceinline__ int PrefillBatch(const int32_t* sh, int heads, int h, int r, int* s_batch, int* s_nb) {
  if (threadIdx.x == 0) {
    int ordinal = 0;
    for (int x = 0; x < h; ++x) ordinal += sh[x] == r;
    int nb = 0;
    if (ordinal % kPrefillMembers == 0) {
      for (int x = h; x < heads && nb < kPrefillMembers; ++x) {
        if (sh[x] == r) s_batch[nb++] = x;
      }
    }
    *s_nb = nb;
  }
  __syncthreads();
  return *s_nb;
}

// A prefill CTA's work (kernels 0 and 1): blockIdx.x = sequence s * heads + head h, blockIdx.y =
// its tile of kPrefillRows query rows [i0, i1) of the n new rows at row0, h's score head r and its
// batch of nb members (PrefillBatch). False, for the whole CTA, when there is none: decode rows
// (DecodeKernel takes them), a tile past the prompt, a score head out of range, or a head that
// does not start a batch.
struct PrefillWork {
  int s, h, r, row0, n, i0, i1, nb, len, past, kend;  // kend: keys the tile's last row sees
  int64_t trow;                                       // the sequence's table / score-head row
};
__device__ __forceinline__ bool PrefillWorkOf(const Params& p, int* s_batch, int* s_nb, PrefillWork* w) {
  const int H = p.heads;
  w->s = blockIdx.x / H;
  w->h = blockIdx.x % H;
  w->trow = p.slots != nullptr ? p.slots[w->s] : w->s;
  w->row0 = p.q_start[w->s];
  w->n = p.q_start[w->s + 1] - w->row0;
  if (w->n < 2) return false;
  w->i0 = blockIdx.y * kPrefillRows;
  if (w->i0 >= w->n) return false;
  w->r = p.score_head[w->trow * H + w->h];
  if (w->r < 0 || w->r >= H) return false;
  w->nb = PrefillBatch(p.score_head + w->trow * H, H, w->h, w->r, s_batch, s_nb);
  if (w->nb == 0) return false;
  w->len = p.seq_lens[w->s];
  w->past = w->len - w->n;
  w->i1 = min(w->n, w->i0 + kPrefillRows);
  w->kend = w->past + w->i1;
  return true;
}

template <typename T, int kD>
__global__ void __launch_bounds__(kPrefillThreads) PrefillKernel(Params p) {
  constexpr int kDMax = kD > 0 ? kD : kMaxHeadDim;
  constexpr int kCols = (kDMax + 15) / 16;  // output columns per thread
  constexpr int kPs = kPrefillKeys + 1;     // probability tile row stride
  constexpr bool kFullCols = kD > 0 && kCols * 16 == kD;
  CHAI_PAGED_DYNAMIC_SHARED(float, smem);
  __shared__ int s_batch[kPrefillMembers];
  __shared__ int s_nb;

  const int d = kD > 0 ? kD : p.head_dim;
  const int ld = d + 1;
  float* qs = smem;
  float* kvs = qs + kPrefillRows * ld;
  float* ps = kvs + kPrefillKeys * ld;

  const int H = p.heads, G = p.group;
  PrefillWork w;
  if (!PrefillWorkOf(p, s_batch, &s_nb, &w)) return;
  const int r = w.r, row0 = w.row0, i0 = w.i0, i1 = w.i1, nb = w.nb, past = w.past, kend = w.kend;
  const int len = w.len;
  const int64_t trow = w.trow;
  const T* pool = static_cast<const T*>(p.pool);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  // Q tile of the representative, pre-scaled; rows past the end repeat the last row.
  {
    const T* q = static_cast<const T*>(p.q);
    for (int idx = threadIdx.x; idx < kPrefillRows * d; idx += kPrefillThreads) {
      const int rr = idx / d, c = idx - rr * d;
      const int i = min(i0 + rr, i1 - 1);
      qs[rr * ld + c] = ToFloat(q[int64_t{row0 + i} * H * d + int64_t{r} * d + c]) * p.scale_log2;
    }
  }
  int qpos[4];
  float m_i[4], l_i[4];
  float o[kPrefillMembers][4][kCols];
#pragma unroll
  for (int ri = 0; ri < 4; ++ri) {
    qpos[ri] = past + min(i0 + ty + 16 * ri, i1 - 1);
    m_i[ri] = -INFINITY;
    l_i[ri] = 0.f;
#pragma unroll
    for (int mb = 0; mb < kPrefillMembers; ++mb)
#pragma unroll
      for (int cj = 0; cj < kCols; ++cj) o[mb][ri][cj] = 0.f;
  }
  const int32_t* ktab = p.tables + (trow * 2 * p.kv_heads + r / G) * p.max_blocks;

  for (int kt = 0; kt < kend; kt += kPrefillKeys) {
    __syncthreads();  // the previous tile's readers of kvs / ps are done (and qs is written)
    LoadTile<T, kD>(kvs, pool, ktab, kt, len, p.block_size, p.block_shift, d);
    __syncthreads();

    float sc[4][4];
#pragma unroll
    for (int ri = 0; ri < 4; ++ri)
#pragma unroll
      for (int ci = 0; ci < 4; ++ci) sc[ri][ci] = 0.f;
    for (int c = 0; c < d; ++c) {
      float a[4], b[4];
#pragma unroll
      for (int ri = 0; ri < 4; ++ri) a[ri] = qs[(ty + 16 * ri) * ld + c];
#pragma unroll
      for (int ci = 0; ci < 4; ++ci) b[ci] = kvs[(tx + 16 * ci) * ld + c];
#pragma unroll
      for (int ri = 0; ri < 4; ++ri)
#pragma unroll
        for (int ci = 0; ci < 4; ++ci) sc[ri][ci] = fmaf(a[ri], b[ci], sc[ri][ci]);
    }

    // Causal mask and online softmax; a row's 64 scores live in the 16 lanes of its half-warp.
#pragma unroll
    for (int ri = 0; ri < 4; ++ri) {
      float mx = -INFINITY;
#pragma unroll
      for (int ci = 0; ci < 4; ++ci) {
        if (kt + tx + 16 * ci > qpos[ri]) sc[ri][ci] = -INFINITY;
        mx = fmaxf(mx, sc[ri][ci]);
      }
#pragma unroll
      for (int off = 8; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_new = fmaxf(m_i[ri], mx);  // finite: key 0 is in the first tile of every row
      const float alpha = exp2f(m_i[ri] - m_new);
      float rs = 0.f;
#pragma unroll
      for (int ci = 0; ci < 4; ++ci) {
        const float e = exp2f(sc[ri][ci] - m_new);
        ps[(ty + 16 * ri) * kPs + tx + 16 * ci] = e;
        rs += e;
      }
#pragma unroll
      for (int off = 8; off > 0; off /= 2) rs += __shfl_xor_sync(0xffffffffu, rs, off);
      l_i[ri] = l_i[ri] * alpha + rs;
      m_i[ri] = m_new;
#pragma unroll
      for (int mb = 0; mb < kPrefillMembers; ++mb)
#pragma unroll
        for (int cj = 0; cj < kCols; ++cj) o[mb][ri][cj] *= alpha;
    }

    const int keys = min(kPrefillKeys, kend - kt);
#pragma unroll
    for (int mb = 0; mb < kPrefillMembers; ++mb) {
      if (mb < nb) {      // uniform
        __syncthreads();  // ps is complete; nobody reads kvs any more
        const int32_t* vtab = p.tables + ((trow * 2 + 1) * p.kv_heads + s_batch[mb] / G) * p.max_blocks;
        LoadTile<T, kD>(kvs, pool, vtab, kt, len, p.block_size, p.block_shift, d);
        __syncthreads();
        for (int k = 0; k < keys; ++k) {
          float pk[4];
#pragma unroll
          for (int ri = 0; ri < 4; ++ri) pk[ri] = ps[(ty + 16 * ri) * kPs + k];
#pragma unroll
          for (int cj = 0; cj < kCols; ++cj) {
            const int col = tx + 16 * cj;
            if (kFullCols || col < d) {
              const float v = kvs[k * ld + col];
#pragma unroll
              for (int ri = 0; ri < 4; ++ri) o[mb][ri][cj] = fmaf(pk[ri], v, o[mb][ri][cj]);
            }
          }
        }
      }
    }
  }

  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int mb = 0; mb < kPrefillMembers; ++mb) {
    if (mb < nb) {
      const int hm = s_batch[mb];
#pragma unroll
      for (int ri = 0; ri < 4; ++ri) {
        const int i = i0 + ty + 16 * ri;
        if (i >= i1) continue;
        const float inv = 1.f / l_i[ri];
        T* orow = out + int64_t{row0 + i} * H * d + int64_t{hm} * d;
#pragma unroll
        for (int cj = 0; cj < kCols; ++cj) {
          const int col = tx + 16 * cj;
          if (col < d) orow[col] = FromFloat<T>(o[mb][ri][cj] * inv);
        }
      }
    }
  }
}

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_CUH_
