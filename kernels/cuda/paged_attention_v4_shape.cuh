// Decode kernel 4's shape (paged_attention_decode_v4.cuh has the kernel and its design notes): the
// passes, the shared-memory stages and their ring, how each pass loads its stages, which layers the
// kernel takes, and the host's plan for a CHAI layer's two passes.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_SHAPE_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_SHAPE_CUH_

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_decode_v3.cuh"  // BestSplitsV3

namespace chai::cuda::paged {

constexpr int kV4StageBytes = 32 << 10;    // K + V rows of one dense stage
// Ring size the stage counts aim for (V4Stage::kSharedBytes) and the fewest stages a ring holds;
// CHAI_V4_RING_KB / CHAI_V4_MIN_STAGES at compile time are for tuning experiments only.
#ifndef CHAI_V4_RING_KB
#define CHAI_V4_RING_KB 96
#endif
#ifndef CHAI_V4_MIN_STAGES
#define CHAI_V4_MIN_STAGES 3
#endif
// The CHAI scores pass has a ring of its own (CHAI_V4_SCORES_RING_KB, 48 KB: 3 K-only stages of
// 16 KB) and the host plans it for kV4ScoreCtasPerSmPlan resident CTAs per SM, so that two scores
// CTAs leave room for one P·V CTA (about 108 KB) on every SM from the start and the early P·V
// pass streams V while the representatives' K streams, instead of after. On an H200 (GPU-07721f8b,
// 2026-11-27, attention-decode-h200.md) against the 96 KB ring planned the same way: CHAI 1-3%
// faster at B = 8-32 and 2k-4k positions, 4-9% at B = 1, equal at 16k; the dense pass unchanged.
#ifndef CHAI_V4_SCORES_RING_KB
#define CHAI_V4_SCORES_RING_KB 48
#endif
constexpr int kV4ScoreCtasPerSmPlan = 2;
// The CHAI P·V pass's stage (CHAI_V4_PV_ROWS positions of V) and ring (CHAI_V4_PV_RING_KB), compile-time
// knobs for tuning experiments: by default 128 positions in the dense ring's size.
#ifndef CHAI_V4_PV_ROWS
#define CHAI_V4_PV_ROWS 128
#endif
#ifndef CHAI_V4_PV_RING_KB
#define CHAI_V4_PV_RING_KB CHAI_V4_RING_KB
#endif
constexpr int kV4SharedBytes = CHAI_V4_RING_KB << 10;
constexpr int kV4MinStages = CHAI_V4_MIN_STAGES;
constexpr int kV4MaxStages = 6;            // ring depth bound (the K-only pass: 6 stages of 16 KB)
constexpr int kV4MaxGroup = 8;             // query heads per KV head: the mma's N
constexpr int kV4MinBlock = 8;             // a stage spans at most kV4Rows / 8 + 1 <= 32 blocks
constexpr int kV4MaxItems = 16;            // scores pass: (sequence, KV head) items per CTA and split

enum V4Pass : int { kV4Dense = 0, kV4Scores = 1, kV4Pv = 2 };

// How the dense pass fills its stages (CHAI_V4_CPASYNC at compile time): 0 (the default), warp
// 0's bulk copies (the copy engine) as the other passes do; 1, every thread's 16-byte cp.async
// for K and V, each thread arriving on the stage's mbarrier once its copies land; 2, K by bulk
// copies and V by cp.async. History, on H200s (attention-decode-h200.md): while the ring sat off
// a 128-byte boundary (before b89cbba) 1 was 5-6% faster than 0 at B >= 8; with the ring aligned,
// 0 is 10-13% faster than 1 at B >= 8 and 2k-16k positions (96-104% of the copy bandwidth, within
// 1-5% of cuDNN's SDPA) and 5-10% at B = 1, its decode tests passing (GPU-865d60e8, 2026-11-27).
#ifndef CHAI_V4_CPASYNC
#define CHAI_V4_CPASYNC 0
#endif
// CHAI_V4_TIMELINE=1: every pass records per-CTA timestamps into Params::timeline (diagnostics,
// kernels/cuda/v4_timeline.h).
#ifndef CHAI_V4_TIMELINE
#define CHAI_V4_TIMELINE 0
#endif
constexpr bool kV4Timeline = CHAI_V4_TIMELINE != 0;
// The CHAI passes stay on bulk copies: loading their K (scores) and V (P·V) by every thread's
// cp.async instead ran 35-40% slower on an H200 (B = 8 and 32, 4k and 16k positions, 4
// representatives; attention-decode-h200.md), its decode tests passing.
template <int kPass>
constexpr int kV4Load = kPass == kV4Dense ? CHAI_V4_CPASYNC : 0;
// Whether a stage takes any bulk copy (warp 0's, armed by lane 0): all but the all-cp.async
// loads, and the P·V pass's logits rows always.
template <int kPass>
constexpr bool kV4BulkAny = kV4Load<kPass> != 1 || kPass == kV4Pv;
// Arrivals that complete a stage's mbarrier phase: lane 0's expect_tx (bulk copies) and/or every
// thread's cp.async arrival.
template <int kPass>
constexpr int kV4StageArrivals = (kV4Load<kPass> != 0 ? kDecodeThreads : 0) + (kV4BulkAny<kPass> ? 1 : 0);

// Host side: whether kernel 4 has an instance for the layer (dense or CHAI: the launch hint picks
// the pass shape, see the header comment).
inline bool DecodeV4Supported(int head_dim, int group, int block_size, bool half_storage, bool exact) {
  return exact && half_storage && (head_dim == 64 || head_dim == 128) && group <= kV4MaxGroup &&
         block_size >= kV4MinBlock;
}
constexpr bool DecodeV4Dim(int d) { return d == 64 || d == 128; }

// Positions per stage, all passes: a dense stage's K and V rows fill kV4StageBytes (64 at
// head_dim 128, 128 at 64).
template <int kD>
constexpr int kV4Rows = kV4StageBytes / (4 * kD);

// A stage of pass kPass: [K rows][V rows][logits rows], each part only where the pass reads it.
// Dense and scores stages hold kV4Rows positions; P·V stages 128 (32 KB of V at head_dim 128: on
// an H100 the P·V pass with 16 KB stages streamed at 74-79% of peak DRAM throughput where the
// dense pass's 32 KB stages reach 80-84%). The ring holds as many stages as fit kRingBytes
// (kV4SharedBytes; the scores pass's CHAI_V4_SCORES_RING_KB), at least 3 (3 dense of 32 KB, 6 K-only of 16 KB; P·V at head_dim 128 takes 3 x 36 KB, still two
// CTAs per SM). A logits row (one per head of the group) is padded by 8 floats so that the eight
// heads' float2 reads of a tile spread over the banks.
// (Scores stages of 128 positions, 32 KB of K at head_dim 128 in a ring of 3, were measured on an
// H200 against these 16 KB ones: 1-2% slower at B = 1-32 and 2k-4k positions.)
template <int kD, int kPass>
struct V4Stage {
  static constexpr int kRows = kPass == kV4Pv ? CHAI_V4_PV_ROWS : kV4Rows<kD>;
  static constexpr int kSideBytes = kRows * kD * 2;
  static constexpr bool kHasK = kPass != kV4Pv, kHasV = kPass != kV4Scores;
  static constexpr int kVOff = kHasK ? kSideBytes : 0;
  static constexpr int kLogitOff = kVOff + (kHasV ? kSideBytes : 0);
  static constexpr int kLogitRow = kRows + 8;  // floats
  static constexpr int kBytes = kLogitOff + (kPass == kV4Pv ? kV4MaxGroup * kLogitRow * 4 : 0);
  static constexpr int kRingBytes = kPass == kV4Scores ? CHAI_V4_SCORES_RING_KB << 10
                                    : kPass == kV4Pv    ? CHAI_V4_PV_RING_KB << 10
                                                        : kV4SharedBytes;
  static constexpr int kStages = std::clamp(kRingBytes / kBytes, kV4MinStages, kV4MaxStages);
  static constexpr int kSharedBytes = kStages * kBytes;  // dynamic shared memory per CTA
  static_assert(kBytes % 128 == 0 && kRows % (16 * 4) == 0 && kRows / kV4MinBlock + 1 <= 32, "stage shape");
  static_assert(kSharedBytes <= 112 << 10, "two CTAs per SM");
};

// Completes p and plan for a CHAI layer on kernel 4 (two passes) after MakePlan, as MakePlanV3
// does for kernel 3 but per (sequence, KV head): the scores pass is busy for the KV groups that
// hold a representative (about min(kv_heads, heads / m) per sequence), the P·V pass for all.
// `resident_scores` and `resident_pv`: occupancy x SMs of the two passes. Logits rows are padded
// to a multiple of 4 positions: the P·V pass copies them in 16-byte units.
inline void MakePlanV4Chai(int max_seq_len, int members_per_rep, int resident_scores, int resident_pv, Params* p,
                           LaunchPlan* plan) {
  const int64_t max_len = std::max(max_seq_len, 1);
  const int m = std::clamp(members_per_rep, 1, p->heads);
  const int64_t groups = std::min<int64_t>(p->kv_heads, (p->heads + m - 1) / m);
  plan->decode_kernel = 4;
  plan->v4_chai = true;
  plan->decode_slots = p->num_seqs * p->kv_heads;  // grid columns of the P·V pass, and its counters
  // The scores pass launches about as many CTAs per split as slots it expects busy (see
  // V4ScoreItems), and at least enough that none takes more than kV4MaxItems.
  const int64_t slots = plan->decode_slots;
  plan->v4_score_ctas = static_cast<int>(
      std::max(std::min(slots, int64_t{p->num_seqs} * groups), (slots + kV4MaxItems - 1) / kV4MaxItems));
  p->logit_stride = static_cast<int>((max_len + 3) / 4 * 4);
  p->score_splits = BestSplitsV3(max_len, int64_t{p->num_seqs} * groups, resident_scores);
  p->max_splits = BestSplitsV3(max_len, int64_t{p->num_seqs} * p->kv_heads, resident_pv);
  p->chunk = static_cast<int>((max_len + p->max_splits - 1) / p->max_splits);  // informative only
  plan->combine = p->max_splits > 1;
}

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_V4_SHAPE_CUH_
