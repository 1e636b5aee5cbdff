// PagedAttention prefill, kernel 2 (CHAI_PREFILL_KERNEL=2): fp16/bf16 tensor cores, head_dim a multiple of 16 up
// to 128. Same FlashAttention-2 scheme and fragment layouts as PrefillMmaKernel (paged_attention_prefill_mma.cuh),
// with what that kernel lacked for speed:
// - K/V tiles stream global -> shared with 16-byte cp.async into two stages: tile j + 1 is in flight while tile j
//   computes (the old kernel loaded, waited at a barrier, then computed, so every tile paid the full latency);
// - kWarps = 4 or 8 warps of 16 query rows each (64 or 128 rows per CTA): with 128 rows every K/V tile copied into
//   shared memory feeds twice the rows (half the L2 -> shared traffic per FLOP);
// - kM = 1 (dense: shared memory for one V tile per stage, two CTAs per SM) or 2 members per CTA (CHAI: the
//   representative's probabilities are applied to two members' V, as PrefillMmaKernel does);
// - the causal mask is applied only on a warp's diagonal tiles, and a warp whose rows see none of a tile's keys
//   skips it (128-row CTAs, or tiles off the key grid when a chunk has past context);
// - CTAs of the last (most expensive, causal) query tiles are launched first, so the short ones fill the tail;
// - ldmatrix.x4 fetches two 8-column B fragments at a time (half the ldmatrix instructions).
// Semantics are PrefillMmaKernel's: representative r's scores (q_r . K_kv(r)) with an online base-2 softmax in fp32,
// applied to each member's V_kv(h); new row i of sequence s sits at position seq_lens[s] - n_s + i.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_V2_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_V2_CUH_

#include <type_traits>

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_prefill_mma.cuh"

namespace chai::cuda::paged {

constexpr int kV2Keys = 64;  // keys per tile (one pipeline stage)

// Host side: whether kernel 2 has an instance (16-bit storage, head_dim % 16 == 0 up to 128, 16-byte aligned rows).
inline bool PrefillV2Supported(int d, bool half_storage, bool exact) {
  return exact && half_storage && d > 0 && d % 16 == 0 && d <= 128;
}

// Dynamic shared memory: the Q tile, then two stages of [K tile, kM V tiles], rows of kD + 8 elements (16 bytes of
// padding: the eight 16-byte rows of an ldmatrix land in distinct banks).
template <int kD, int kWarps, int kM>
constexpr int PrefillV2SharedBytes() {
  return (16 * kWarps + 2 * kV2Keys * (1 + kM)) * (kD + 8) * 2;
}

// CTAs per SM the register allocation aims for. Two dense 128-row CTAs fit in shared memory, but at 128 registers a
// thread (the cap that two CTAs of 256 threads impose) ptxas 13.0 spilled for d = 80, 96 and 128 (8, 24, 156 bytes)
// while d <= 64 needs 125; so only d <= 64 asks for two. The others are bounded by shared memory anyway.
template <int kD, int kWarps, int kM>
constexpr int PrefillV2MinBlocks() {
  return kWarps == 8 && kM == 1 && kD <= 64 ? 2 : 1;
}

#ifndef CHAI_PAGED_HOST_EMULATION
// 16 bytes global -> shared, asynchronously; `valid` false writes zeros without reading src (src-size 0).
__device__ __forceinline__ void CpAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SharedAddress(dst)),
               "l"(__cvta_generic_to_global(src)), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still pending.
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
// Four 8x8 b16 matrices, transposed on the way (B fragments from a row-major [k][n] tile).
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(row)));
}
#endif  // CHAI_PAGED_HOST_EMULATION

template <typename T, int kD, int kWarps, int kM>
__global__ void __launch_bounds__(32 * kWarps, PrefillV2MinBlocks<kD, kWarps, kM>()) PrefillV2Kernel(Params p) {
  constexpr int kThreads = 32 * kWarps;
  constexpr int kRows = 16 * kWarps;          // query rows per CTA
  constexpr int kKeys = kV2Keys;
  constexpr int kLd = kD + 8;                 // shared row stride (elements)
  constexpr int kVecs = kD / 8;               // 16-byte pieces per row
  constexpr int kKSteps = kD / 16;            // k-steps of S = Q K^T
  constexpr int kSTiles = kKeys / 8;          // 8-key column tiles of S
  constexpr int kOTiles = kD / 8;             // 8-column tiles of O
  constexpr int kStage = kKeys * (1 + kM) * kLd;
  constexpr int kPieces = kKeys * kVecs;                            // 16-byte pieces per tile side
  constexpr int kLoadIters = (kPieces + kThreads - 1) / kThreads;  // per thread (the last maybe partial)
  static_assert(kD % 16 == 0 && kD <= 128, "head_dim must be a multiple of 16 up to 128");
  CHAI_PAGED_DYNAMIC_SHARED(uint4, smem_v2);  // uint4: the 16-byte alignment cp.async and ldmatrix need
  __shared__ int s_batch[kM];
  __shared__ int s_nb;
  T* q_s = reinterpret_cast<T*>(smem_v2);
  T* stage_s = q_s + kRows * kLd;  // stage st: K at stage_s + st * kStage, V of member m kKeys * kLd * (1 + m) on

  const int H = p.heads, G = p.group;
  const int s = blockIdx.x / H, h = blockIdx.x % H;
  const int64_t trow = p.slots != nullptr ? p.slots[s] : s;  // the sequence's table / score-head row
  const int row0 = p.q_start[s], n = p.q_start[s + 1] - row0;
  if (n < 2) return;  // decode rows go through the decode kernels
  // Later query tiles see more keys: blockIdx.y 0 takes the last tile so that the long CTAs start first.
  const int i0 = (static_cast<int>(gridDim.y) - 1 - static_cast<int>(blockIdx.y)) * kRows;
  if (i0 >= n) return;
  const int r = p.score_head[trow * H + h];
  if (r < 0 || r >= H) return;
  int nb = 1;
  if constexpr (kM > 1) {
    // h and r's next kM - 1 members when h starts a batch (members counted in head order), as PrefillBatch.
    if (threadIdx.x == 0) {
      const int32_t* sh = p.score_head + trow * H;
      int ordinal = 0;
      for (int x = 0; x < h; ++x) ordinal += sh[x] == r;
      int count = 0;
      if (ordinal % kM == 0) {
        for (int x = h; x < H && count < kM; ++x) {
          if (sh[x] == r) s_batch[count++] = x;
        }
      }
      s_nb = count;
    }
    __syncthreads();
    nb = s_nb;
    if (nb == 0) return;
  }

  const T* pool = static_cast<const T*>(p.pool);
  const int len = p.seq_lens[s], past = len - n;
  const int i1 = min(n, i0 + kRows);
  const int kend = past + i1;  // keys the CTA's last row sees (<= len)
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t4 = lane % 4;  // fragment row group and column pair
  const int bs = p.block_size, shift = p.block_shift;

  // The tables of K_kv(r) and of each member's V_kv(h). Members past nb are never loaded.
  const int32_t* ktab = p.tables + (trow * 2 * p.kv_heads + r / G) * p.max_blocks;
  const int32_t* vtab[kM];
  if constexpr (kM == 1) {
    vtab[0] = p.tables + ((trow * 2 + 1) * p.kv_heads + h / G) * p.max_blocks;
  } else {
#pragma unroll
    for (int mb = 0; mb < kM; ++mb) {
      vtab[mb] = p.tables + ((trow * 2 + 1) * p.kv_heads + s_batch[mb < nb ? mb : 0] / G) * p.max_blocks;
    }
  }

  // Copies keys kt .. kt + kKeys - 1 of K and of the members' V into stage st. A thread's pieces are at fixed
  // (row, column) offsets of the tile, so each resolves the block of its row once for all sides. Rows at or past
  // kend (masked for every row of the CTA), past max_blocks or without a block (-1) become zeros: a masked key's
  // probability is exactly 0, and 0 * zero stays 0 where a poisoned (NaN) slot would not.
  auto load_tile = [&](int kt, int st) {
    T* dst = stage_s + st * kStage;
#pragma unroll
    for (int it = 0; it < kLoadIters; ++it) {
      const int idx = threadIdx.x + it * kThreads;
      if (kPieces % kThreads != 0 && idx >= kPieces) break;
      const int i = idx / kVecs, v = idx - (idx / kVecs) * kVecs;
      const int pos = kt + i;
      const int b = shift >= 0 ? pos >> shift : pos / bs;
      const bool in_range = pos < kend && b < p.max_blocks;
      const int64_t within = pos - b * bs;
      T* d0 = dst + i * kLd + v * 8;
      {
        const int32_t block = in_range ? ktab[b] : -1;
        const T* src = block >= 0 ? pool + (int64_t{block} * bs + within) * kD + v * 8 : pool;
        CpAsync16(d0, src, block >= 0);
      }
#pragma unroll
      for (int mb = 0; mb < kM; ++mb) {
        if (mb < nb) {
          const int32_t block = in_range ? vtab[mb][b] : -1;
          const T* src = block >= 0 ? pool + (int64_t{block} * bs + within) * kD + v * 8 : pool;
          CpAsync16(d0 + (1 + mb) * kKeys * kLd, src, block >= 0);
        }
      }
    }
  };

  // Q tile of the representative (rows past the end repeat the last row), in the same commit group as tile 0.
  {
    const T* q = static_cast<const T*>(p.q);
    for (int idx = threadIdx.x; idx < kRows * kVecs; idx += kThreads) {
      const int i = idx / kVecs, v = idx - (idx / kVecs) * kVecs;
      CpAsync16(q_s + i * kLd + v * 8, q + int64_t{row0 + min(i0 + i, i1 - 1)} * H * kD + int64_t{r} * kD + v * 8,
                true);
    }
  }
  load_tile(0, 0);
  CpAsyncCommit();

  // Positions of the fragment rows g and g + 8, and the warp's first and last row positions.
  int qpos[2];
  float m_r[2], l_r[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    qpos[rr] = past + min(i0 + warp * 16 + g + 8 * rr, i1 - 1);
    m_r[rr] = -INFINITY;
    l_r[rr] = 0.f;
  }
  const int qpos_lo = past + min(i0 + warp * 16, i1 - 1), qpos_hi = past + min(i0 + warp * 16 + 15, i1 - 1);
  float o[kM][kOTiles][4];
#pragma unroll
  for (int mb = 0; mb < kM; ++mb)
#pragma unroll
    for (int nt = 0; nt < kOTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mb][nt][e] = 0.f;

  const int tiles = (kend + kKeys - 1) / kKeys;
  for (int j = 0; j < tiles; ++j) {
    const int kt = j * kKeys;
    // Start tile j + 1 into the other stage (its readers finished at the trailing barrier of iteration j - 1),
    // then wait for tile j (and, the first time, Q): all but the newest group complete. The group is committed
    // even when empty so that the count stays uniform.
    if (j + 1 < tiles) load_tile(kt + kKeys, (j + 1) & 1);
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();

    if (kt <= qpos_hi) {  // warp-uniform: some row of the warp sees some key of the tile
      const T* k_s = stage_s + (j & 1) * kStage;

      // S = Q K^T for the warp's 16 rows and the tile's 64 keys; one ldmatrix.x4 gives two 8-key B fragments.
      float sc[kSTiles][4];
#pragma unroll
      for (int nt = 0; nt < kSTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) sc[nt][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        uint32_t a[4];
        LdMatrixX4(a, q_s + (warp * 16 + lane % 16) * kLd + ks * 16 + (lane / 16) * 8);
#pragma unroll
        for (int nt = 0; nt < kSTiles; nt += 2) {
          // Lanes 8i..8i+7 address matrix i: keys (nt + i / 2) * 8 + 0..7, columns ks * 16 + (i % 2) * 8.
          uint32_t b[4];
          LdMatrixX4(b, k_s + (nt * 8 + (lane / 16) * 8 + lane % 8) * kLd + ks * 16 + ((lane / 8) % 2) * 8);
          const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
          Mma16816<T>(sc[nt], a, b0);
          Mma16816<T>(sc[nt + 1], a, b1);
        }
      }

      // Scale into the exp2 domain; the causal mask only where some key of the tile lies past the warp's first row.
      if (kt + kKeys - 1 > qpos_lo) {
#pragma unroll
        for (int nt = 0; nt < kSTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = kt + nt * 8 + 2 * t4 + (e & 1);
            sc[nt][e] = key > qpos[e / 2] ? -INFINITY : sc[nt][e] * p.scale_log2;
          }
      } else {
#pragma unroll
        for (int nt = 0; nt < kSTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) sc[nt][e] *= p.scale_log2;
      }

      // Online softmax over the rows g and g + 8 (a row lives in the 4 lanes of a quad).
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kSTiles; ++nt) mx = fmaxf(mx, fmaxf(sc[nt][2 * rr], sc[nt][2 * rr + 1]));
        PrefillSoftmaxStep(sc, rr, mx, m_r, l_r, o);
      }
      uint32_t pa[kSTiles / 2][4];
      PackP<T>(sc, pa);
      // O_m += P V_m for every member of the batch (the same probabilities). ldmatrix.x4.trans: lanes 8i..8i+7
      // address matrix i: keys kk * 16 + (i % 2) * 8 + 0..7, columns (nt + i / 2) * 8.
#pragma unroll
      for (int mb = 0; mb < kM; ++mb) {
        if (mb < nb) {
          const T* vm = k_s + (1 + mb) * kKeys * kLd;
#pragma unroll
          for (int kk = 0; kk < kKeys / 16; ++kk)
#pragma unroll
            for (int nt = 0; nt < kOTiles; nt += 2) {
              uint32_t b[4];
              LdMatrixX4Trans(b, vm + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + (nt + lane / 16) * 8);
              const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
              Mma16816<T>(o[mb][nt], pa[kk], b0);
              Mma16816<T>(o[mb][nt + 1], pa[kk], b1);
            }
        }
      }
    }
    __syncthreads();  // stage j & 1 is free for tile j + 2
  }

  WritePrefillRows<T, kD>(static_cast<T*>(p.out), H, o, l_r, nb, [&](int mb) { return kM == 1 ? h : s_batch[mb]; },
                          row0, i0, i1);
}

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_V2_CUH_
