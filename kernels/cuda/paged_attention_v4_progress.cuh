// Decode kernel 4's CHAI passes, watched stage by stage (p.pv_watch; paged_attention_decode_v4.cuh
// has the kernel and its design notes): the scores pass publishes how far each of its items has
// got, and the early P·V pass copies a stage's logits as soon as the stages of the scores pass
// that wrote them are done, instead of after the whole scores grid (its PdlWait).
//
// Why: the scores pass is a latency chain (a few 16 KB stages per CTA, 12 us for 4 us of bytes at
// B = 8 / 2k on an H200) during which DRAM is far from busy, while the early P·V CTAs beside it
// sit on full rings of V waiting for the logits. For the P·V pass to start early, the logits it
// needs first must be written first: with watching on, scores split k of S takes the sequence's
// scores stages k, k + S, k + 2S, ... (positions [q R, q R + R) for stage q, R = the scores
// stage's rows) instead of one contiguous chunk, so that after every scores CTA's first j stages
// the positions [0, j S R) are scored, and the P·V pass, which walks its chunk in order, finds its
// first stages ready long before the scores pass ends. The order changes nothing in the logits.
//
// The protocol. progress[(s * kv_heads + g) * S + k] counts the stages scores item (sequence s,
// KV group g, split k) has finished in this launch. Its owner (the scores CTA that found the item)
// zeroes it after its PdlWait and before it releases the P·V grid (its stores then a GPU-scope
// fence, then the CTA's griddepcontrol.launch_dependents), so no P·V CTA, which starts only after
// every scores CTA has released it, can see the previous launch's count. After each stage the
// owner's CTA meets at the barrier it has anyway and one thread writes the new count behind a
// GPU-scope fence (cumulative over the barrier: every warp's logits stores of the stage come
// first). The P·V pass's warp 0 reads the counts of its heads' representatives' groups (relaxed
// loads, lane k for split k), and once they cover a stage's positions, fences (acquire, then the
// async proxy, since the logits travel by bulk copy) and copies them. Deadlock-free: a P·V CTA
// waits only on scores CTAs, and every scores CTA is running or done by the time any P·V CTA
// exists (the dependent launch waits for all of their releases); a scores CTA waits on nothing
// of the P·V pass's. A P·V CTA that waited 10 s traps rather than hang (a broken map).
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_PROGRESS_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_PROGRESS_CUH_

#include <climits>
#include <cstdint>

#include "kernels/cuda/paged_attention_common.cuh"

namespace chai::cuda::paged {

// Splits of the scores pass a P·V CTA can watch (one per lane of warp 0); more and the P·V pass
// waits for the whole scores pass as before.
constexpr int kV4WatchMaxSplits = 32;

// Whether this launch's CHAI passes use the protocol above (host and device agree on it).
__host__ __device__ inline bool V4Watched(const Params& p) {
  return p.pv_early != 0 && p.pv_watch != 0 && p.score_progress != nullptr && p.score_splits <= kV4WatchMaxSplits;
}

#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ int LoadRelaxed(const int* p) {
  int v;
  asm volatile("ld.relaxed.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void StoreRelaxed(int* p, int v) {
  asm volatile("st.relaxed.gpu.global.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
// After reading counts that cover a stage: order those reads before this thread's later reads,
// including the copy engine's (the logits' bulk copies read through the async proxy).
__device__ __forceinline__ void FenceAcquireForBulkReads() {
  asm volatile("fence.acq_rel.gpu;\nfence.proxy.async.global;" ::: "memory");
}
__device__ __forceinline__ uint64_t GlobalNanoseconds() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Scores side: publishes that the item's first `stages` stages are done. Called by one thread
// after the CTA-wide barrier that follows the stage.
__device__ __forceinline__ void V4PublishScoresStages(int* word, int stages) {
  __threadfence();
  StoreRelaxed(word, stages);
}

// P·V side, warp 0 of one item (sequence s): which stages of the scores pass have landed for the
// representatives of the item's G heads. Lane k < S caches the fewest stages any of those
// representatives' groups has finished in split k.
struct V4ScoresWatch {
  const int* words;  // lane k: progress of (s, group 0, split k); group g at + g * S
  int S, R, nst;     // scores splits, rows per scores stage, scores stages of the sequence
  int G;
  unsigned valid;     // heads of the item whose representative is one (score_head[r] == r)
  const int* s_rep;   // the item's heads' representatives (shared memory)
  int lane;
  int done_k = 0;     // lane k: stages of split k seen finished
  int need_k = 0;     // lane k: stages split k owns
  bool all_done = false;

  __device__ __forceinline__ void init(const Params& p, int s, int64_t trow, int len, int rows_per_stage,
                                       const int* reps, int lane_id) {
    S = p.score_splits;
    R = rows_per_stage;
    nst = (len + R - 1) / R;
    G = p.group;
    s_rep = reps;
    lane = lane_id;
    words = p.score_progress + int64_t{s} * p.kv_heads * S + lane;
    // A head whose representative does not score itself has no scores item to wait for (a broken
    // map: its output is whatever the stale logits give, as without watching).
    bool ok = false;
    if (lane < G) {
      const int r = reps[lane];
      ok = r >= 0 && r < p.heads && __ldg(p.score_head + trow * p.heads + r) == r;
    }
    valid = __ballot_sync(0xffffffffu, ok);
    need_k = lane < S && lane < nst ? (nst - lane + S - 1) / S : 0;
  }

  // One round of relaxed loads (G per lane, in flight together), then the acquire.
  __device__ __forceinline__ void poll() {
    int v = INT_MAX;
    if (lane < S) {
      for (int i = 0; i < G; ++i) {
        if ((valid >> i) & 1u) v = min(v, LoadRelaxed(words + (s_rep[i] / G) * S));
      }
    }
    done_k = lane < S ? v : INT_MAX;
    all_done = __all_sync(0xffffffffu, done_k >= need_k);
    FenceAcquireForBulkReads();
  }

  // Whether the scores stages holding positions [pos0, pos1) are done, from what was seen.
  __device__ __forceinline__ bool covers(int pos0, int pos1) const {
    if (all_done) return true;
    bool ok = true;
    for (int q = pos0 / R; q <= (pos1 - 1) / R; ++q) ok &= __shfl_sync(0xffffffffu, done_k, q % S) > q / S;
    return ok;
  }

  // Waits (polling) until [pos0, pos1) is covered.
  __device__ __forceinline__ void wait(int pos0, int pos1) {
    uint64_t started = 0;
    while (!covers(pos0, pos1)) {
      poll();
      if (covers(pos0, pos1)) return;
      const uint64_t now = GlobalNanoseconds();
      if (started == 0) started = now;
      if (now - started > 10'000'000'000ull) __trap();
      __nanosleep(256);
    }
  }
};
#endif  // sm_90 device code

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_PROGRESS_CUH_
