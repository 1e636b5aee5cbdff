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
// Latency, not bandwidth, is this search's cost (it runs before a CTA's first K copy): every
// thread issues all its loads before it uses any (two dependent levels, slots then score heads;
// one without slots) and the CTA meets twice per round of kUnroll x kDecodeThreads slots. On an
// H200 this form made CHAI attention 1-4% faster at B = 8-32 than a loop of load-then-test per
// slot with two barriers per slot group, though the search itself still spans 3-7 us of a
// scores CTA (the per-CTA timeline; attention-decode-h200.md, thirty-third session).
__device__ __forceinline__ int V4ScoreItems(const Params& p, int* items) {
  constexpr unsigned kAll = 0xffffffffu;
  constexpr int kUnroll = 8;  // slots per thread whose loads are in flight together
  __shared__ int s_count[kUnroll][kDecodeWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int kvh = p.kv_heads, G = p.group, H = p.heads;
  const int slots = p.num_seqs * kvh, ctas = static_cast<int>(gridDim.x), me = static_cast<int>(blockIdx.x);
  int before = 0;  // busy slots in earlier rounds
  for (int base = 0; base < slots; base += kUnroll * kDecodeThreads) {
    // Level 1: each slot's sequence row and whether the sequence decodes (predicated loads: a
    // slot past the end loads nothing and is not busy).
    int64_t row[kUnroll];
    bool in[kUnroll], decode[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + u * kDecodeThreads + static_cast<int>(threadIdx.x);
      const int sj = j / kvh;
      in[u] = j < slots;
      row[u] = !in[u] ? 0 : p.slots != nullptr ? __ldg(p.slots + sj) : sj;
      decode[u] = in[u] && __ldg(p.q_start + sj + 1) - __ldg(p.q_start + sj) == 1;
    }
    // Level 2: whether the slot's KV group holds a representative (a head that scores itself).
    unsigned busy = 0;  // bit u: slot base + u * kDecodeThreads + threadIdx.x
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int gj = (base + u * kDecodeThreads + static_cast<int>(threadIdx.x)) % kvh;
      const int32_t* sh = p.score_head + row[u] * H + gj * G;
      bool rep = false;
#pragma unroll
      for (int i = 0; i < kV4MaxGroup; ++i) rep |= in[u] && i < G && __ldg(sh + i) == gj * G + i;
      busy |= (decode[u] && rep ? 1u : 0u) << u;
    }
    unsigned ballot[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      ballot[u] = __ballot_sync(kAll, (busy >> u) & 1u);
      if (lane == 0) s_count[u][warp] = __popc(ballot[u]);
    }
    __syncthreads();
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int rank = before + __popc(ballot[u] & ((1u << lane) - 1u)), total = 0;
#pragma unroll
      for (int w = 0; w < kDecodeWarps; ++w) {
        rank += w < warp ? s_count[u][w] : 0;
        total += s_count[u][w];
      }
      if (((busy >> u) & 1u) != 0 && rank % ctas == me && rank / ctas < kV4MaxItems) {
        items[rank / ctas] = base + u * kDecodeThreads + static_cast<int>(threadIdx.x);
      }
      before += total;
    }
    __syncthreads();  // s_count is rewritten next round; items[] is complete after the last
  }
  return before > me ? min((before - 1 - me) / ctas + 1, kV4MaxItems) : 0;
}
#endif  // sm_90 device code

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_ITEMS_CUH_
