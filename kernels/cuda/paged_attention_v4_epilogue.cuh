// Decode kernel 4's epilogue (paged_attention_decode_v4.cuh has the kernel and its design notes):
// the CTA's four warps merged into one (m, l, O) per head of the group, then the output rows or,
// for a sequence split over several chunks, kernel 2's partials and the last CTA's merge of them.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_EPILOGUE_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_EPILOGUE_CUH_

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_decode_v2.cuh"  // MergeWarpStates
#include "kernels/cuda/paged_attention_v4_shape.cuh"

namespace chai::cuda::paged {

#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// Lane (gi, c) of each warp holds its running (m, l) of head gi (l over this lane's positions
// only) and O^T as the tile code leaves it: acc[tau] holds dims gi * kLaneDims + tau (0, 1) and
// gi * kLaneDims + kMTiles + tau (2, 3) of heads 2c (0, 2) and 2c + 1 (1, 3). The warps' O^T goes
// to the idle ring, s_o, as [warp][head][kORow] floats of the group's heads only (a dense MHA
// layer uses one of the mma's 8 columns), (m, l) to s_ml. Lane (gi, c) holds dims
// gi * kLaneDims + j; dim slot j * 8 + gi and rows padded by 4 floats put a store's 32 lanes in
// 32 banks (the plain [head][dim] order put them in 2: at batch 1 this merge was a fifth of a
// CTA's samples), and the readers walk the slots in order. Writes head h0 + i's output to
// orow[(h0 + i) * kD ..] when the sequence has one chunk, else its partials for `split`.
template <typename T, int kD>
__device__ __forceinline__ void V4MergeWarps(const Params& p, int s, int h0, int G, int split, int nsplit, T* orow,
                                             float m_run, float l_run, const float (&acc)[kD / 16][4], float* s_o,
                                             float2 (*s_ml)[kV4MaxGroup]) {
  constexpr int kMTiles = kD / 16, kLaneDims = kD / 8, kORow = kD + 4;
  constexpr unsigned kAll = 0xffffffffu;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int gi = lane / 4, c = lane % 4;
  l_run += __shfl_xor_sync(kAll, l_run, 1);
  l_run += __shfl_xor_sync(kAll, l_run, 2);
  if (c == 0) s_ml[warp][gi] = make_float2(m_run, l_run);
  float* o0 = s_o + (warp * kV4MaxGroup + 2 * c) * kORow + gi;  // head 2c; head 2c + 1 one row on
#pragma unroll
  for (int tau = 0; tau < kMTiles; ++tau) {
    if (2 * c < G) {
      o0[tau * 8] = acc[tau][0];
      o0[(kMTiles + tau) * 8] = acc[tau][2];
    }
    if (2 * c + 1 < G) {
      o0[kORow + tau * 8] = acc[tau][1];
      o0[kORow + (kMTiles + tau) * 8] = acc[tau][3];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * kD; idx += kDecodeThreads) {
    const int i = idx / kD, q = idx % kD, cd = (q % 8) * kLaneDims + q / 8;  // slot q holds dim cd
    float mx, lsum;
    const float x = MergeWarpStates(s_ml, i, [&](int w) { return s_o[(w * kV4MaxGroup + i) * kORow + q]; }, &mx, &lsum);
    const int64_t head = int64_t{s} * p.heads + h0 + i;
    if (nsplit == 1) {
      orow[int64_t{h0 + i} * kD + cd] = FromFloat<T>(x / lsum);
    } else {
      p.part_acc[(head * p.max_splits + split) * kD + cd] = x;
      if (cd == 0) p.part_ml[head * p.max_splits + split] = make_float2(mx, lsum);
    }
  }
  if (nsplit == 1) return;

  // Fused combine, as kernels 1 and 2: the last CTA of this (sequence, KV head) over the chunks
  // merges the group's partials in a fixed order and resets the counter.
  if (!LastSplitCta(p.counters, nsplit)) return;
  MergeGroupSplits<T, kD>(p, int64_t{s} * p.heads + h0, G, nsplit, orow + int64_t{h0} * kD);
}
#endif  // __CUDACC__ && __CUDA_ARCH__ >= 900

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_EPILOGUE_CUH_
