// Decode kernel 4's scores pass: which (sequence, KV head) items each CTA takes
// (paged_attention_decode_v4.cuh launches about one CTA per busy item and split; this finds them
// on the device).
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_ITEMS_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_ITEMS_CUH_

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_v4_shape.cuh"

namespace chai::cuda::paged {

#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// The scores pass's items: of the (sequence, KV head) slots in order, those of decode sequences
// whose group holds a representative are busy; busy slot number r goes to CTA r % gridDim.x as its
// (r / gridDim.x)-th item. Every CTA finds the busy slots itself (the map is on the device, and
// this costs a few loads per thread) so that the pass launches gridDim.x CTAs per split, about
// as many as there are busy slots, instead of one per slot: the dense grid's idle CTAs (7 of 8
// at 4 representatives of 32 heads) held the SMs' two CTA places for a global load each and
// took as long as the busy ones. Writes the items' slot ids to items[]; returns their count.
// The host launches at least ceil(slots / kV4MaxItems) CTAs, so no CTA gets more.
__device__ __forceinline__ int V4ScoreItems(const Params& p, int* items) {
  constexpr unsigned kAll = 0xffffffffu;
  constexpr int kUnroll = 8;  // slots per thread whose loads are in flight together
  __shared__ int s_count[kDecodeWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int kvh = p.kv_heads, G = p.group, H = p.heads;
  const int slots = p.num_seqs * kvh, ctas = static_cast<int>(gridDim.x), me = static_cast<int>(blockIdx.x);
  int before = 0;  // busy slots in earlier rounds
  for (int base = 0; base < slots; base += kUnroll * kDecodeThreads) {
    bool busy[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + u * kDecodeThreads + static_cast<int>(threadIdx.x);
      busy[u] = false;
      if (j < slots) {
        const int sj = j / kvh, gj = j % kvh;
        const int64_t tr = p.slots != nullptr ? p.slots[sj] : sj;
        const int32_t* sh = p.score_head + tr * H + gj * G;
        bool rep = false;
        for (int i = 0; i < G; ++i) rep |= __ldg(sh + i) == gj * G + i;
        busy[u] = rep && p.q_start[sj + 1] - p.q_start[sj] == 1;
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned ballot = __ballot_sync(kAll, busy[u]);
      if (lane == 0) s_count[warp] = __popc(ballot);
      __syncthreads();
      int rank = before + __popc(ballot & ((1u << lane) - 1u)), total = 0;
#pragma unroll
      for (int w = 0; w < kDecodeWarps; ++w) {
        rank += w < warp ? s_count[w] : 0;
        total += s_count[w];
      }
      if (busy[u] && rank % ctas == me && rank / ctas < kV4MaxItems) {
        items[rank / ctas] = base + u * kDecodeThreads + static_cast<int>(threadIdx.x);
      }
      before += total;
      __syncthreads();  // s_count is rewritten next round; items[] is complete after the last
    }
  }
  return before > me ? min((before - 1 - me) / ctas + 1, kV4MaxItems) : 0;
}
#endif  // sm_90 device code

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_ITEMS_CUH_
