// The tile arithmetic of decode kernel 4 (paged_attention_decode_v4.cuh): one warp's scores and
// its online softmax and P·V for a 16-position tile of K and V rows in shared memory.
//
// Compute, per warp and 16-position tile, on the tensor cores (mma.sync m16n8k16, fp32
// accumulators), FlashAttention-2 style:
// - S = Q K^T: A = Q (rows = the group's heads, 8 of the 16 rows used), B = K^T. The dot product
//   does not care in which order the head dimension is walked, so each lane feeds its B fragments
//   from one 16-byte load of its K row (32 dims = two k-steps) and Q is loaded with the same
//   order. Rows are head_dim * 2 bytes apart (a multiple of 128), so the two rows of a
//   quarter-warp would hit the same banks: odd rows load the two halves of each 64-byte piece in
//   the other order and swap them back in registers (conflict-free).
// - Online softmax in fp32 (exp2 domain), one max per head and tile.
// - O^T += V^T P^T: A = V^T (16 head dims by 16 positions), B = P^T straight from the S
//   accumulators (FA2's register reuse), so the heads are the mma's N (8: a GQA group of 8 costs
//   what one head does). A fragment pairs two positions of one dim, while V is stored along the
//   dims: each lane loads its rows 2c, 2c+1, 2c+8, 2c+9 over its own kD/8 dims (the output dims
//   of a lane are a free permutation of the head dimension) and pairs them with byte permutes.
//   Rows past the chunk end hold stale shared memory (the tests poison unused slots with NaN), so
//   their V rows are zeroed before the mma (0 * NaN would leak) and their scores are -inf.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_TILE_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_TILE_CUH_

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_decode_v2.cuh"     // Rescale
#include "kernels/cuda/paged_attention_prefill_mma.cuh"  // Mma16816, Pack2

namespace chai::cuda::paged {

#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// S = Q K^T of one 16-position tile (rows ks, kD * 2 bytes apart) over positions 8u + gi (B
// column gi), u = 0, 1: sc[u] is the mma accumulator (rows = the group's heads, see the header).
template <typename T, int kD>
__device__ __forceinline__ void V4TileScores(const unsigned char* ks, const uint4 (&qv)[kD / 32], int gi, int c,
                                             float (&sc)[2][4]) {
  constexpr int kRowBytes = kD * 2, kPairs = kD / 32;
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    sc[u][0] = sc[u][1] = sc[u][2] = sc[u][3] = 0.f;
    const unsigned char* krow = ks + (8 * u + gi) * kRowBytes + 16 * c;
    const int odd = gi & 1;
    uint4 y[kPairs];
#pragma unroll
    for (int pi = 0; pi < kPairs; ++pi) y[pi] = *reinterpret_cast<const uint4*>(krow + 64 * (pi ^ odd));
#pragma unroll
    for (int pi = 0; pi < kPairs; ++pi) {
      const uint4 xv = odd ? y[pi ^ 1] : y[pi];
      const uint32_t a0[4] = {qv[pi].x, 0u, qv[pi].y, 0u}, b0[2] = {xv.x, xv.y};
      Mma16816<T>(sc[u], a0, b0);
      const uint32_t a1[4] = {qv[pi].z, 0u, qv[pi].w, 0u}, b1[2] = {xv.z, xv.w};
      Mma16816<T>(sc[u], a1, b1);
    }
  }
}

// One tile's online softmax (log2 domain) and O^T += V^T P^T for head gi's scaled logits x[u][e]
// at positions 8u + 2c + e (-inf past the chunk end; the tile's row 0 is valid), V rows at vs.
template <typename T, int kD>
__device__ __forceinline__ void V4TileSoftmaxPv(const float (&x)[2][2], const unsigned char* vs, int valid, int gi,
                                                int c, float* m_run, float* l_run, float (&acc)[kD / 16][4]) {
  constexpr int kRowBytes = kD * 2, kMTiles = kD / 16, kLaneDims = kD / 8, kLaneChunks = kLaneDims / 8;
  constexpr unsigned kAll = 0xffffffffu;
  // Online softmax (log2 domain) of head gi over positions 8u + 2c + e; rows past the chunk
  // end are -inf. The tile has a valid row 0, so the new max is finite.
  float tmax = -INFINITY;
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int e = 0; e < 2; ++e) tmax = fmaxf(tmax, x[u][e]);
  tmax = fmaxf(tmax, __shfl_xor_sync(kAll, tmax, 1));
  tmax = fmaxf(tmax, __shfl_xor_sync(kAll, tmax, 2));
  const float m_new = fmaxf(*m_run, tmax);
  const float alpha = Rescale(*m_run, m_new);
  float pr[2][2], psum = 0.f;
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      pr[u][e] = x[u][e] == -INFINITY ? 0.f : exp2f(x[u][e] - m_new);
      psum += pr[u][e];
    }
  *l_run = fmaf(*l_run, alpha, psum);
  *m_run = m_new;
  // P^T as the B fragment: column gi (head), rows 2c, 2c + 1 and 2c + 8, 2c + 9 (positions).
  const uint32_t pb[2] = {Pack2<T>(pr[0][0], pr[0][1]), Pack2<T>(pr[1][0], pr[1][1])};
  // acc's columns are heads 2c and 2c + 1, whose alphas live in row groups 2c and 2c + 1.
  const float al0 = __shfl_sync(kAll, alpha, 8 * c), al1 = __shfl_sync(kAll, alpha, 8 * c + 4);
#pragma unroll
  for (int i = 0; i < kMTiles; ++i) {
    acc[i][0] *= al0;
    acc[i][1] *= al1;
    acc[i][2] *= al0;
    acc[i][3] *= al1;
  }

  // V rows 2c, 2c + 1, 2c + 8, 2c + 9 over this lane's dims gi * kLaneDims ..; with two
  // 16-byte pieces per row, odd c loads them in the other order (2-way instead of 4-way bank
  // conflicts).
  uint32_t w[4][kLaneDims / 2];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int r = 2 * c + (k & 1) + 8 * (k >> 1);
    const unsigned char* vrow = vs + r * kRowBytes + gi * (16 * kLaneChunks);
    if constexpr (kLaneChunks == 1) {
      const uint4 v = *reinterpret_cast<const uint4*>(vrow);
      w[k][0] = v.x, w[k][1] = v.y, w[k][2] = v.z, w[k][3] = v.w;
    } else {
      const int flip = c & 1;
      const uint4 ya = *reinterpret_cast<const uint4*>(vrow + 16 * flip);
      const uint4 yb = *reinterpret_cast<const uint4*>(vrow + 16 * (flip ^ 1));
      const uint4 v0 = flip ? yb : ya, v1 = flip ? ya : yb;
      w[k][0] = v0.x, w[k][1] = v0.y, w[k][2] = v0.z, w[k][3] = v0.w;
      w[k][4] = v1.x, w[k][5] = v1.y, w[k][6] = v1.z, w[k][7] = v1.w;
    }
  }
  if (valid < 16) {  // rows past the chunk end: stale shared memory must not reach the mma
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const bool ok = 2 * c + (k & 1) + 8 * (k >> 1) < valid;
#pragma unroll
      for (int j = 0; j < kLaneDims / 2; ++j) w[k][j] = ok ? w[k][j] : 0u;
    }
  }
  // O^T += V^T P^T per 16-dim tile: A row gi is lane dim tau, row gi + 8 lane dim kMTiles +
  // tau; a register pairs positions (2c, 2c + 1) or (2c + 8, 2c + 9) of one dim.
#pragma unroll
  for (int tau = 0; tau < kMTiles; ++tau) {
    const int lo = tau / 2, hi = (kMTiles + tau) / 2;
    const uint32_t sel = (tau & 1) ? 0x7632u : 0x5410u;
    const uint32_t a[4] = {__byte_perm(w[0][lo], w[1][lo], sel), __byte_perm(w[0][hi], w[1][hi], sel),
                           __byte_perm(w[2][lo], w[3][lo], sel), __byte_perm(w[2][hi], w[3][hi], sel)};
    Mma16816<T>(acc[tau], a, pb);
  }
}
#endif  // sm_90 device code

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_TILE_CUH_
