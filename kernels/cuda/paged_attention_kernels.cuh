// Kernels of PagedAttention (see paged_attention.cu for the op and its launch plan).
//
// Decode (sequences with one new row): flash-decoding, CHAI-aware. A CTA owns one
// (sequence, KV head g, subset of g's representatives, chunk of positions): it reads K_g over
// the chunk ONCE and computes the chunk's scores for every representative r with kv(r) = g that
// the sequence's score_head names (dense: every head is its own representative), turns them into
// chunk-local softmax numerators (max m, sum l), and then walks the members of those
// representatives (heads h with score_head[h] = r) grouped by their V head: each needed V head is
// read once per CTA and accumulated with each member's representative's probabilities. Bytes
// read are thus K of the representatives' KV heads plus V of the members' KV heads: CHAI's K
// saving, and under dense GQA one read of K_g and V_g for the whole query group. The CTA derives
// its representatives and members from score_head itself (a warp ballot over <= 256 heads), so
// no planning kernel, no host round trip, and mixed dense/CHAI batches need nothing special;
// slots whose KV head has no representative in a sequence exit at once. With one chunk per
// sequence the CTA writes the output; otherwise it writes (m, l, unnormalised acc) partials to
// scratch, and the last of the sequence's CTAs of that slot to finish (an atomic counter per slot)
// merges them, so a decode step is a single launch.
//
// Prefill (sequences with >= 2 new rows): FlashAttention-2-style tiles in fp32 on CUDA cores.
// A CTA owns (sequence, a batch of up to kPrefillMembers members of one representative, 64 query
// rows): it walks the causal key tiles, computes the representative's 64x64 score tile once into
// shared memory with an online softmax, and applies it to each member's V tile.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <utility>

#include "kernels/cuda/cuda_utils.cuh"

// The kernels' dynamic shared memory (a hook so that a host-side emulation can supply it).
#ifndef CHAI_PAGED_DYNAMIC_SHARED
#define CHAI_PAGED_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace chai::cuda::paged {

constexpr int kMaxHeads = 256;      // query heads per call (per rank)
constexpr int kMaxHeadDim = 256;    // head_dim bound of every path
constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = kDecodeThreads / 32;
constexpr int kChunkAlign = 64;     // decode chunks are multiples of this many positions
constexpr int kScoreFloats = 4096;  // decode score buffer: group * chunk <= this (16 KB)
constexpr int kPrefillThreads = 256;
constexpr int kPrefillRows = 64;    // query rows per prefill CTA
constexpr int kPrefillKeys = 64;    // keys per prefill tile
constexpr int kPrefillMembers = 2;  // member heads sharing one score tile in a prefill CTA

// Everything the kernels read; pointers are device pointers.
struct Params {
  const void* q;       // [T, heads * head_dim]
  void* out;           // [T, heads * head_dim]
  const void* pool;    // [num_blocks, block_size, head_dim]
  const int32_t* tables;      // [num_seqs, 2, kv_heads, max_blocks]
  const int32_t* q_start;     // [num_seqs + 1]
  const int32_t* seq_lens;    // [num_seqs]
  const int32_t* score_head;  // [num_seqs, heads]
  float2* part_ml;            // decode partials: [num_seqs, heads, max_splits] (max, sum)
  float* part_acc;            // decode partials: [num_seqs, heads, max_splits, head_dim]
  int* counters;              // decode: finished chunks per slot; zero between calls
  int num_seqs, heads, kv_heads, group, head_dim, block_size, max_blocks;
  int block_shift;  // log2(block_size) when a power of two, else -1
  int chunk;       // decode: positions per CTA
  int max_splits;  // decode: chunks of the longest sequence
  int subsets;     // decode: CTAs per (sequence, KV head) = ceil(group / kG)
  float scale_log2;  // log2(e) / sqrt(head_dim): scores live in the exp2 domain
};

// Host-side: which kernels to launch and how big.
struct LaunchPlan {
  bool decode = false, prefill = false;
  bool combine = false;  // some sequence may span several decode chunks: partials and counters needed
  bool exact = true;  // head_dim has a specialised kernel and all pointers are 16-byte aligned
  int group_tile = 1;  // kG: representatives per decode CTA (1, 4 or 8)
  int decode_slots = 0;
  int prefill_tiles = 0;
};

template <typename T>
void LaunchAttention(const Params& p, const LaunchPlan& plan, cudaStream_t stream);

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

// ------------------------------------------------------------------------------------------
// Decode.

template <typename T, int kD, int kG>
struct DecodeTuning {
  using S = RowShape<T, kD>;
  // Rows each thread keeps in flight per loop trip: enough 16-byte loads to cover latency.
  static constexpr int kUnroll = S::kNv >= 4 ? 2 : (kG >= 8 ? 4 : 8);
};

template <typename T, int kD, int kG>
__global__ void __launch_bounds__(kDecodeThreads) DecodeKernel(Params p) {
  using S = RowShape<T, kD>;
  constexpr int kUnroll = DecodeTuning<T, kD, kG>::kUnroll;
  constexpr int kStep = kDecodeWarps * S::kRpw;  // rows per warp-step of the whole CTA

  CHAI_PAGED_DYNAMIC_SHARED(float, s_scores);  // [kG][chunk]
  __shared__ int s_sh[kMaxHeads];  // the sequence's score_head row
  __shared__ int s_reps[kG];
  __shared__ int s_nreps, s_nmem, s_last;
  __shared__ int s_mem[kMaxHeads];  // member heads, ascending
  __shared__ unsigned char s_memrep[kMaxHeads];  // their representative's index in s_reps
  __shared__ float s_m[kG], s_l[kG];
  __shared__ float s_red[kDecodeWarps][S::kDMax];

  const int per_seq = p.kv_heads * p.subsets;
  const int s = blockIdx.x / per_seq, g = (blockIdx.x % per_seq) / p.subsets, subset = blockIdx.x % p.subsets;
  const int split = blockIdx.y;
  const int H = p.heads, G = p.group;
  // All index loads in flight at once: the sequence's rows and length, its score_head row.
  const int row = p.q_start[s], row_end = p.q_start[s + 1], len = p.seq_lens[s];
  constexpr int kShPerThread = kMaxHeads / kDecodeThreads;
  int sh_v[kShPerThread];
#pragma unroll
  for (int k = 0; k < kShPerThread; ++k) {
    const int h = threadIdx.x + k * kDecodeThreads;
    sh_v[k] = h < H ? p.score_head[int64_t{s} * H + h] : -1;
  }
  if (row_end - row != 1) return;  // not a decode row (none, or a prefill sequence)
  const int c0 = split * p.chunk;
  if (c0 >= len) return;
  const int cl = min(len - c0, p.chunk);
  const int nsplit = (len + p.chunk - 1) / p.chunk;
  const int d = S::kExact ? kD : p.head_dim;
  const int vecs = S::kExact ? S::kVecs : d;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const unsigned lanes_below = (1u << lane) - 1u;
#pragma unroll
  for (int k = 0; k < kShPerThread; ++k) {
    const int h = threadIdx.x + k * kDecodeThreads;
    if (h < H) s_sh[h] = sh_v[k];
  }
  __syncthreads();
  const int* sh = s_sh;

  // Plan: this slot's representatives (heads of KV group g with score_head[h] == h, the
  // subset-th kG of them) and their members, in head order.
  if (warp == 0) {
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
    int nm = 0;
    for (int base = 0; base < H && nr > 0; base += 32) {
      const int h = base + lane;
      int idx = -1;
      if (h < H) {
        const int r = sh[h];
#pragma unroll
        for (int i = 0; i < kG; ++i) {
          if (i < nr && s_reps[i] == r) idx = i;
        }
      }
      const unsigned mask = __ballot_sync(0xffffffffu, idx >= 0);
      if (idx >= 0) {
        const int at = nm + __popc(mask & lanes_below);
        s_mem[at] = h;
        s_memrep[at] = static_cast<unsigned char>(idx);
      }
      nm += __popc(mask);
    }
    if (lane == 0) {
      s_nreps = nr;
      s_nmem = nm;
    }
  }
  __syncthreads();
  const int nr = s_nreps;
  if (nr == 0) return;

  const T* pool = static_cast<const T*>(p.pool);
  const int bs = p.block_size;
  const int in_row = lane % S::kLpr;                      // this lane's vector slot in a row
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
    const int32_t* ktab = p.tables + (int64_t{s} * 2 * p.kv_heads + g) * p.max_blocks;
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
  const int64_t v_tables = (int64_t{s} * 2 + 1) * p.kv_heads;
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

  // Fused combine: the slot's last CTA to finish (over this sequence's chunks) merges every
  // member's partials: out = sum_k 2^(m_k - M) acc_k / sum_k 2^(m_k - M) l_k. The counter is
  // reset for the next call.
  __threadfence();  // this thread's partials are visible device-wide before the count
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(p.counters + blockIdx.x, 1) == nsplit - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  if (threadIdx.x == 0) p.counters[blockIdx.x] = 0;
  T* orow = static_cast<T*>(p.out) + int64_t{row} * H * d;
  for (int i = warp; i < nm; i += kDecodeWarps) {
    const int h = s_mem[i];
    const int64_t head = int64_t{s} * H + h;
    const float2* ml = p.part_ml + head * p.max_splits;
    const float* acc = p.part_acc + head * p.max_splits * d;
    float m = -INFINITY;
    for (int k = lane; k < nsplit; k += 32) m = fmaxf(m, __ldcg(ml + k).x);
    m = WarpMax(m);
    float l = 0.f;
    for (int k = lane; k < nsplit; k += 32) {
      const float2 x = __ldcg(ml + k);
      l += exp2f(x.x - m) * x.y;
    }
    l = WarpSum(l);
    const float inv = 1.f / l;
    for (int c = lane; c < d; c += 32) {
      float x = 0.f;
      for (int k = 0; k < nsplit; ++k) x = fmaf(exp2f(__ldcg(ml + k).x - m), __ldcg(acc + int64_t{k} * d + c), x);
      orow[int64_t{h} * d + c] = FromFloat<T>(x * inv);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Prefill.

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
  const int s = blockIdx.x / H, h = blockIdx.x % H;
  const int row0 = p.q_start[s], n = p.q_start[s + 1] - row0;
  if (n < 2) return;  // decode rows go through DecodeKernel
  const int i0 = blockIdx.y * kPrefillRows;
  if (i0 >= n) return;
  const int32_t* sh = p.score_head + int64_t{s} * H;
  const int r = sh[h];
  if (r < 0 || r >= H) return;
  // This CTA runs when h starts a batch of r's members (members counted in head order).
  if (threadIdx.x == 0) {
    int ordinal = 0;
    for (int x = 0; x < h; ++x) ordinal += sh[x] == r;
    int nb = 0;
    if (ordinal % kPrefillMembers == 0) {
      for (int x = h; x < H && nb < kPrefillMembers; ++x) {
        if (sh[x] == r) s_batch[nb++] = x;
      }
    }
    s_nb = nb;
  }
  __syncthreads();
  const int nb = s_nb;
  if (nb == 0) return;

  const T* pool = static_cast<const T*>(p.pool);
  const int len = p.seq_lens[s], past = len - n;
  const int i1 = min(n, i0 + kPrefillRows);
  const int kend = past + i1;  // keys the tile's last row sees
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
  const int32_t* ktab = p.tables + (int64_t{s} * 2 * p.kv_heads + r / G) * p.max_blocks;

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
      if (mb < nb) {  // uniform
        __syncthreads();  // ps is complete; nobody reads kvs any more
        const int32_t* vtab = p.tables + ((int64_t{s} * 2 + 1) * p.kv_heads + s_batch[mb] / G) * p.max_blocks;
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

// Head sizes with a specialised kernel (others take the generic one).
inline bool SpecialisedHeadDim(int d) {
  return d == 8 || d == 16 || d == 32 || d == 64 || d == 80 || d == 96 || d == 128 || d == 256;
}

// Completes p (chunk, max_splits, subsets) and the plan from the host-side bounds; p must hold
// num_seqs, heads, kv_heads, group and head_dim. Decode: aim for ~32 CTAs per SM when every slot
// is busy; chunks are multiples of kChunkAlign in [kChunkAlign, kScoreFloats / kG].
inline void MakePlan(int max_seq_len, int max_new_tokens, int sm_count, bool exact, Params* p, LaunchPlan* plan) {
  const auto ceil_div = [](int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); };
  plan->exact = exact;
  plan->group_tile = p->group <= 1 ? 1 : (p->group <= 4 ? 4 : 8);
  p->subsets = ceil_div(p->group, plan->group_tile);
  plan->decode = true;  // any sequence may have a single new row; the others' CTAs exit at once
  plan->decode_slots = p->num_seqs * p->kv_heads * p->subsets;
  const int max_len = max_seq_len > 1 ? max_seq_len : 1;
  const int wanted = std::max(1, 32 * sm_count / plan->decode_slots);
  int chunk = ceil_div(ceil_div(max_len, wanted), kChunkAlign) * kChunkAlign;
  chunk = std::min(std::max(chunk, kChunkAlign), kScoreFloats / plan->group_tile);
  p->chunk = chunk;
  p->max_splits = ceil_div(max_len, chunk);
  plan->combine = p->max_splits > 1;
  plan->prefill = max_new_tokens > 1;
  plan->prefill_tiles = ceil_div(max_new_tokens > 1 ? max_new_tokens : 1, kPrefillRows);
}

#ifdef __CUDACC__
// ------------------------------------------------------------------------------------------
// Launch: dispatch on head_dim and the decode group tile.

template <typename T, int kD, int kG>
void LaunchDecode(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  const dim3 grid(plan.decode_slots, p.max_splits);
  const size_t shared = sizeof(float) * kG * p.chunk;
  DecodeKernel<T, kD, kG><<<grid, kDecodeThreads, shared, stream>>>(p);
  CHAI_CUDA_CHECK_LAUNCH();
}

// Runs a host function once per CUDA device (kernel attributes are per device, and ranks may
// be threads of one process on different devices).
class PerDeviceOnce {
 public:
  template <typename F>
  void Run(F&& f) {
    int device = 0;
    CHAI_CUDA_CHECK(cudaGetDevice(&device));
    if (device < 0 || device >= kDevices) device = kDevices - 1;
    std::call_once(flags_[device], std::forward<F>(f));
  }

 private:
  static constexpr int kDevices = 64;
  std::once_flag flags_[kDevices];
};

template <typename T, int kD>
void LaunchPrefill(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  constexpr int kDMax = kD > 0 ? kD : kMaxHeadDim;
  const int d = kD > 0 ? kD : p.head_dim;
  // Raise the dynamic shared-memory limit (to the instantiation's largest use) once per device.
  static PerDeviceOnce once;
  once.Run([] {
    CHAI_CUDA_CHECK(cudaFuncSetAttribute(PrefillKernel<T, kD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(sizeof(float) * PrefillSharedFloats(kDMax))));
  });
  const dim3 grid(p.num_seqs * p.heads, plan.prefill_tiles);
  PrefillKernel<T, kD><<<grid, kPrefillThreads, sizeof(float) * PrefillSharedFloats(d), stream>>>(p);
  CHAI_CUDA_CHECK_LAUNCH();
}

template <typename T, int kD>
void LaunchForHeadDim(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  if (plan.decode) {
    switch (plan.group_tile) {
      case 1: LaunchDecode<T, kD, 1>(p, plan, stream); break;
      case 4: LaunchDecode<T, kD, 4>(p, plan, stream); break;
      default: LaunchDecode<T, kD, 8>(p, plan, stream); break;
    }
  }
  if (plan.prefill) LaunchPrefill<T, kD>(p, plan, stream);
}

template <typename T>
void LaunchAttention(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  if (plan.exact) {
    switch (p.head_dim) {
      case 8: return LaunchForHeadDim<T, 8>(p, plan, stream);
      case 16: return LaunchForHeadDim<T, 16>(p, plan, stream);
      case 32: return LaunchForHeadDim<T, 32>(p, plan, stream);
      case 64: return LaunchForHeadDim<T, 64>(p, plan, stream);
      case 80: return LaunchForHeadDim<T, 80>(p, plan, stream);
      case 96: return LaunchForHeadDim<T, 96>(p, plan, stream);
      case 128: return LaunchForHeadDim<T, 128>(p, plan, stream);
      case 256: return LaunchForHeadDim<T, 256>(p, plan, stream);
      default: break;
    }
  }
  LaunchForHeadDim<T, 0>(p, plan, stream);
}

#endif  // __CUDACC__

// Instantiated once per storage type in paged_attention_{fp32,fp16,bf16}.cu (compiled in parallel).
extern template void LaunchAttention<float>(const Params&, const LaunchPlan&, cudaStream_t);
extern template void LaunchAttention<__half>(const Params&, const LaunchPlan&, cudaStream_t);
extern template void LaunchAttention<__nv_bfloat16>(const Params&, const LaunchPlan&, cudaStream_t);

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_
