// PagedAttention on the GPU: operand checks, the launch plan and the split scratch. The kernels
// and their work decomposition are described in paged_attention_kernels.cuh and
// paged_attention_decode.cuh.
//
// Launch plan (all from host-side bounds and hints, so nothing is read back and the call can be
// captured):
// - decode (sequences with one new row): grid (sequence x KV head x representative subset x
//   member share, chunk). A decode step is memory-bound, so what matters is that enough CTAs
//   stream at once: the chunk is chosen for about 32 busy CTAs per SM (CHAI_DECODE_CTAS_PER_SM). Dense, every slot is
//   busy. A CHAI layer has only ~heads / m representatives (m = kv.members_per_rep, the
//   engine's hint from the schedule), so most slots exit at once; to keep the GPU streaming,
//   each busy slot's ~m members are shared out over ceil(m / members-per-CTA) sibling CTAs
//   (K re-read from L2, V of each member still read once), and the chunk is sized for the CTAs
//   expected to be busy, not the ones launched. Members per CTA: CHAI_DECODE_MEMBERS_PER_CTA
//   (default 4, measured best on an H100: one member per CTA re-reads K from L2 as often as
//   dense reads it; more members per CTA cut that L2 traffic at the cost of fewer CTAs). Hint 1 launches the dense grid
//   unchanged. Chunks are multiples of 64 positions, at least 64 and at most 4096 / kG (the
//   score buffer is 16 KB). With more than one chunk per sequence each CTA writes partials and
//   the last CTA of its (slot, share) to finish (an atomic counter each) merges them: one
//   launch per decode step.
// - prefill (sequences with >= 2 new rows): grid (sequence x head, 64-row query tiles).
// A batch with max_new_tokens > 1 launches both: its single-row sequences still take the
// split decode path.
//
// Decode kernel 3 (paged_attention_decode_v3.cuh) runs two launches instead: the representatives'
// logits into a third scratch buffer (num_seqs * heads * max_seq_len floats), then P·V per head.
//
// Decode kernel 4 (paged_attention_decode_v4.cuh, the default on sm_90 where it has an instance)
// keeps this grid with one subset and one share per KV head for dense layers, sizing its chunks with
// MakePlanV2, and runs CHAI layers as two launches as kernel 3 does (MakePlanV4Chai; see below).
//
// Split scratch: two device buffers per (device, stream), grown lazily with cudaMalloc to the
// largest need seen and never shrunk or freed (a CUDA graph captured earlier may still point into
// an old one): the partials (num_seqs * heads * max_splits * (head_dim + 2) floats, a few MB) and
// the counters (one per decode grid column, zeroed when allocated and left at zero by every
// call); kernel 3's logits are a third, grown the same way. Growing is impossible inside a
// stream capture, so run one eager step with the largest bounds (num_seqs, max_seq_len) and the
// same hints before capturing decode graphs; a capture that would need more aborts with a
// message saying so.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "kernels/cuda/internal.h"
#include "kernels/cuda/v4_timeline.h"
#include "kernels/cuda/paged_attention_kernels.cuh"

namespace chai::cuda {

bool V4TimelineBuilt() { return paged::kV4Timeline; }

namespace {
// SetV4Timeline's buffer (diagnostics; the host thread that launches sets it around its launches).
unsigned long long* g_timeline = nullptr;
int g_timeline_ctas = 0;
}  // namespace

void SetV4Timeline(unsigned long long* device_words, int max_ctas) {
  g_timeline = device_words;
  g_timeline_ctas = device_words != nullptr ? max_ctas : 0;
}

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "chai: internal error in CUDA op PagedAttention: %s\n", what.c_str());
  std::abort();
}

// A lazily grown device buffer per (device, stream, kind); `zeroed` buffers are cleared when
// (re)allocated.
void* Scratch(size_t bytes, cudaStream_t stream, int kind, bool zeroed) {
  struct Buffer {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  static std::mutex mu;
  static auto* buffers = new std::map<std::tuple<int, cudaStream_t, int>, Buffer>();  // never destroyed
  int device = 0;
  CHAI_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  Buffer& b = (*buffers)[{device, stream, kind}];
  if (b.bytes < bytes) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    CHAI_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
    if (status != cudaStreamCaptureStatusNone) {
      std::fprintf(stderr,
                   "chai: fatal: PagedAttention needs %zu bytes of scratch during a CUDA graph capture but only "
                   "%zu were reserved; run one eager step with the largest num_seqs and max_seq_len first\n",
                   bytes, b.bytes);
      std::abort();
    }
    const size_t grown = (std::max(bytes, 2 * b.bytes) + (size_t{1} << 16) - 1) & ~((size_t{1} << 16) - 1);
    void* ptr = nullptr;
    CHAI_CUDA_CHECK(cudaMalloc(&ptr, grown));
    if (zeroed) CHAI_CUDA_CHECK(cudaMemsetAsync(ptr, 0, grown, stream));
    b = {ptr, grown};  // the old buffer stays allocated: graphs captured earlier may use it
  }
  return b.ptr;
}

// Tuning knobs, read at every call (a few getenv per layer is nothing beside a decode step, and
// benchmarks can sweep them in one process):
// - CHAI_DECODE_MEMBERS_PER_CTA: member V heads a CHAI decode CTA aims to accumulate (default 4);
// - CHAI_DECODE_CTAS_PER_SM: busy CTAs per SM kernel 1's chunk size aims for (default 32);
// - CHAI_DECODE_KERNEL: which decode kernel runs for every layer, where it has an instance (else
//   the default below). 1: paged_attention_decode.cuh (any head size). 2: the warp-streaming kernel
//   of paged_attention_decode_v2.cuh (head_dim 64, 80, 96, 128 with 16-byte rows, at most 4 query
//   heads per KV head), chunks sized by MakePlanV2. 3: the two-phase kernel of
//   paged_attention_decode_v3.cuh (representatives' logits, then P·V per head; head_dim 64, 80, 96,
//   128 with 16-byte rows, any group), splits by MakePlanV3. 4: the bulk-copy kernel of
//   paged_attention_decode_v4.cuh (sm_90+, fp16/bf16, head_dim 64 or 128, up to 8 query heads per
//   KV head, block_size >= 8, 16-byte aligned operands): K and V stream through the copy engine
//   into a shared-memory ring, scores and P·V on the tensor cores; one pass for dense layers (hint
//   1), for CHAI layers kernel 3's two passes (MakePlanV4Chai).
//   Defaults, from benchmarks/results/attention-decode-h100.md (H100): kernel 4 where it has an
//   instance, else kernel 2 for dense layers and kernel 3 for CHAI layers. Kernel 4 streams dense
//   K/V at 91-97% of copy bandwidth at B >= 8 and 4k-16k positions (kernel 2: 79-88%) and CHAI's
//   bytes at 72-94% at B >= 8 and 2k-16k (kernel 3: 63-86%).
// - CHAI_DECODE_V4_PV_EARLY (default 1; 0 turns it off): kernel 4's CHAI scores pass releases
//   its P·V pass early (PDL), which streams its first V stages in while the scores pass finishes.
//   CHAI_DECODE_V4_SCORE_CTAS_PER_SM (tuning) plans the scores pass for fewer resident CTAs;
//   CHAI_DECODE_V4_SCORE_SPLITS and CHAI_DECODE_V4_PV_SPLITS (tuning) set the two passes' split
//   counts over the cost model's (BestSplitsV3).
// - CHAI_DECODE_CHAI_KERNEL, CHAI_DECODE_DENSE_KERNEL: the kernel for CHAI layers only (hint > 1),
//   or for dense layers only, when CHAI_DECODE_KERNEL is not set (e.g. CHAI_DECODE_CHAI_KERNEL=3
//   for the previous CHAI default, 1 for the earlier fused kernel).
// - CHAI_PREFILL_KERNEL: 2 (default) the pipelined tensor-core kernel of paged_attention_prefill_v2.cuh where it
//   has an instance (fp16/bf16, head_dim a multiple of 16 up to 128, 16-byte aligned rows); 1, and everywhere
//   kernel 2 has no instance, the kernels of paged_attention_prefill{,_mma}.cuh. On an H100 (LLaMA-7B, batch 1)
//   kernel 2 runs a 2048-token prefill in 52.2 ms against kernel 1's 63.5 (70% against 57% of a large GEMM's rate).
//   Kernel 2's shape: CHAI_PREFILL_ROWS (64 or 128 query rows per CTA; default 128 when that still gives about
//   three waves of CTAs, else 64) and CHAI_PREFILL_MEMBERS (member heads per CTA, 1 or 2; default 2 for CHAI
//   layers, hint > 1, with 128 rows, else 1: such CTAs hold a single V tile per stage).
int EnvKnob(const char* name, int fallback) {
  const char* env = std::getenv(name);
  const int v = env != nullptr ? std::atoi(env) : 0;
  return v >= 1 ? v : fallback;
}

// A tuning switch: "0" turns it off, "1" on, anything else (or unset) leaves `fallback`.
bool EnvFlag(const char* name, bool fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr) return fallback;
  const std::string v = env;
  return v == "0" ? false : (v == "1" ? true : fallback);
}


// The operands' checks (one clear failure each); the number of query heads.
int CheckOperands(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                  const Tensor& out, int d) {
  if (d <= 0 || d > paged::kMaxHeadDim || q.dim(1) % d != 0) Fail("head_dim " + std::to_string(d) + " unsupported");
  const int heads = static_cast<int>(q.dim(1) / d);
  if (kv.kv_heads <= 0 || heads % kv.kv_heads != 0 || heads > paged::kMaxHeads) {
    Fail(std::to_string(heads) + " query heads over " + std::to_string(kv.kv_heads) + " KV heads");
  }
  if (q.dtype() != kv.pool.dtype() || out.dtype() != q.dtype() || out.dim(0) != q.dim(0) || out.dim(1) != q.dim(1)) {
    Fail("q " + q.ShapeString() + ", out " + out.ShapeString() + ", pool " + kv.pool.ShapeString());
  }
  if (kv.tables.dtype() != DType::kI32 || batch.q_start.dtype() != DType::kI32 ||
      batch.seq_lens.dtype() != DType::kI32 || score_head.dtype() != DType::kI32 ||
      score_head.numel() % heads != 0 ||
      (batch.slots.defined() ? batch.slots.dtype() != DType::kI32 || batch.slots.device() != Device::kCuda
                             : score_head.numel() < int64_t{batch.num_seqs} * heads)) {
    Fail("index tensors must be int32 (score_head [rows, heads], slots on the GPU)");
  }
  if (q.device() != Device::kCuda || out.device() != Device::kCuda || kv.pool.device() != Device::kCuda ||
      kv.tables.device() != Device::kCuda || batch.q_start.device() != Device::kCuda ||
      batch.seq_lens.device() != Device::kCuda || score_head.device() != Device::kCuda) {
    Fail("all operands must be on the GPU");
  }
  return heads;
}

// The kernels' parameters that do not depend on the plan.
paged::Params MakeParams(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                         Tensor* out, int heads, int d) {
  paged::Params p{};
  p.q = q.raw();
  p.out = out->raw();
  p.pool = kv.pool.raw();
  p.tables = kv.tables.data<int32_t>();
  p.q_start = batch.q_start.data<int32_t>();
  p.seq_lens = batch.seq_lens.data<int32_t>();
  p.score_head = score_head.data<int32_t>();
  p.slots = batch.slots.defined() ? batch.slots.data<int32_t>() : nullptr;
  p.num_seqs = batch.num_seqs;
  p.heads = heads;
  p.kv_heads = kv.kv_heads;
  p.group = heads / kv.kv_heads;
  p.head_dim = d;
  p.block_size = kv.block_size;
  p.block_shift = -1;
  for (int shift = 0; shift < 31; ++shift) {
    if ((1 << shift) == kv.block_size) p.block_shift = shift;
  }
  p.max_blocks = kv.max_blocks;
  p.scale_log2 = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(d)));
  p.then = kv.then;
  p.timeline = g_timeline;
  p.timeline_ctas = g_timeline_ctas;
  return p;
}

// The decode kernel (CHAI_DECODE_*KERNEL and the defaults above) and its grid, over what MakePlan
// planned for kernel 1.
void PlanDecode(DType dtype, const PagedKv& kv, const BatchLayout& batch, bool exact, paged::Params* p,
                paged::LaunchPlan* plan) {
  const int d = p->head_dim;
  const bool chai_layer = kv.members_per_rep > 1;
  const bool v4_ok =
      paged::DecodeV4Supported(d, p->group, kv.block_size, dtype == DType::kF16 || dtype == DType::kBF16, exact) &&
      CopyEngineDevice();
  const int default_kernel = EnvKnob(chai_layer ? "CHAI_DECODE_CHAI_KERNEL" : "CHAI_DECODE_DENSE_KERNEL",
                                     v4_ok ? 4 : (chai_layer ? 3 : 2));
  int kernel = EnvKnob("CHAI_DECODE_KERNEL", default_kernel);
  if (kernel == 4 && !v4_ok) kernel = chai_layer ? 3 : 2;
  if (kernel == 4 && !chai_layer) {
    // The dense pass: one CTA per (sequence, KV head) and split.
    plan->decode_kernel = 4;
    plan->decode_slots = p->num_seqs * p->kv_heads;
    int per_sm = 1;
    DispatchFloat(dtype, "PagedAttention",
                  [&](auto tag) { per_sm = paged::DecodeV4CtasPerSm<decltype(tag)>(*p, paged::kV4Dense); });
    // CHAI_DECODE_V4_MAX_SPLITS (tuning): at most that many splits per sequence.
    paged::MakePlanV2(batch.max_seq_len, 1, per_sm * SmCount(), p, plan, EnvKnob("CHAI_DECODE_V4_MAX_SPLITS", 0));
  } else if (kernel == 4) {
    // CHAI: the scores pass, then the P·V pass.
    int scores_per_sm = 1, pv_per_sm = 1;
    DispatchFloat(dtype, "PagedAttention", [&](auto tag) {
      scores_per_sm = paged::DecodeV4CtasPerSm<decltype(tag)>(*p, paged::kV4Scores);
      pv_per_sm = paged::DecodeV4CtasPerSm<decltype(tag)>(*p, paged::kV4Pv);
    });
    // The scores pass's splits are planned as if fewer CTAs were resident than fit (a smaller
    // grid, which leaves SM places to the P·V pass's first CTAs; it does not cap residency):
    // kV4ScoreCtasPerSmPlan, or CHAI_DECODE_V4_SCORE_CTAS_PER_SM (tuning).
    scores_per_sm = std::min(scores_per_sm, EnvKnob("CHAI_DECODE_V4_SCORE_CTAS_PER_SM",
                                                    std::min(scores_per_sm, paged::kV4ScoreCtasPerSmPlan)));
    paged::MakePlanV4Chai(batch.max_seq_len, kv.members_per_rep, scores_per_sm * SmCount(), pv_per_sm * SmCount(), p,
                          plan);
    // CHAI_DECODE_V4_SCORE_SPLITS, CHAI_DECODE_V4_PV_SPLITS (tuning): the passes' split counts instead
    // of the cost model's, at most one split per kChunkAlign positions of the bound.
    const int most = (std::max(batch.max_seq_len, 1) + paged::kChunkAlign - 1) / paged::kChunkAlign;
    p->score_splits = std::min(EnvKnob("CHAI_DECODE_V4_SCORE_SPLITS", p->score_splits), most);
    p->max_splits = std::min(EnvKnob("CHAI_DECODE_V4_PV_SPLITS", p->max_splits), most);
    p->chunk = (std::max(batch.max_seq_len, 1) + p->max_splits - 1) / p->max_splits;  // informative only
    plan->combine = p->max_splits > 1;
    p->pv_early = EnvFlag("CHAI_DECODE_V4_PV_EARLY", true) ? 1 : 0;
  } else if (kernel == 2 && paged::DecodeV2Supported(d, plan->group_tile, exact)) {
    plan->decode_kernel = 2;
    plan->v2_members = paged::DecodeV2Members(*p, *plan, kv.members_per_rep);
    int per_sm = 1;
    DispatchFloat(dtype, "PagedAttention",
                  [&](auto tag) { per_sm = paged::DecodeV2CtasPerSm<decltype(tag)>(*p, *plan); });
    paged::MakePlanV2(batch.max_seq_len, kv.members_per_rep, per_sm * SmCount(), p, plan);
  } else if (kernel == 3 && paged::DecodeV3Supported(d, exact)) {
    int score_per_sm = 1, pv_per_sm = 1;
    DispatchFloat(dtype, "PagedAttention", [&](auto tag) {
      paged::DecodeV3CtasPerSm<decltype(tag)>(*p, &score_per_sm, &pv_per_sm);
    });
    paged::MakePlanV3(batch.max_seq_len, kv.members_per_rep, score_per_sm * SmCount(), pv_per_sm * SmCount(), p,
                      plan);
  }
}

// Prefill kernel 2 (CHAI_PREFILL_KERNEL=2, see the knobs above) where it has an instance, and its shape.
void PlanPrefill(DType dtype, const PagedKv& kv, const BatchLayout& batch, int heads, bool exact,
                 paged::LaunchPlan* plan) {
  if (!plan->prefill || EnvKnob("CHAI_PREFILL_KERNEL", 2) != 2 ||
      !paged::PrefillV2Supported(static_cast<int>(kv.pool.dim(2)), dtype == DType::kF16 || dtype == DType::kBF16,
                                 exact)) {
    return;
  }
  const auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  plan->prefill_kernel = 2;
  const int members = kv.members_per_rep > 1 ? 2 : 1;
  // 128-row CTAs halve the K/V copies per query row but are half as many and each runs twice as long: take
  // them only when they still make about three waves of CTAs (the busy ones: a CHAI CTA takes 2 members).
  const int64_t ctas128 = int64_t{batch.num_seqs} * ceil_div(heads, members) * ceil_div(batch.max_new_tokens, 128);
  const int rows = EnvKnob("CHAI_PREFILL_ROWS", ctas128 >= 3 * int64_t{SmCount()} ? 128 : 64);
  plan->prefill_rows = rows >= 128 ? 128 : 64;
  // At d = 128 the 64-row, 2-member instance fits only one CTA (4 warps) per SM (122 KB of shared memory, 242
  // registers) where the 1-member one fits two: 64-row CTAs batch members only when asked to.
  const int members_default = plan->prefill_rows == 128 ? members : 1;
  plan->prefill_members = EnvKnob("CHAI_PREFILL_MEMBERS", members_default) >= 2 ? 2 : 1;
  plan->prefill_tiles = static_cast<int>(ceil_div(batch.max_new_tokens, plan->prefill_rows));
}

// The plan's scratch: the splits' partials and arrival counters, the CHAI passes' logits.
void BindScratch(const BatchLayout& batch, int heads, const paged::LaunchPlan& plan, cudaStream_t stream,
                 paged::Params* p) {
  if (plan.combine) {
    const size_t partials = size_t(batch.num_seqs) * heads * p->max_splits;
    const size_t ml_bytes = (partials * sizeof(float2) + 255) / 256 * 256;
    char* base = static_cast<char*>(Scratch(ml_bytes + partials * p->head_dim * sizeof(float), stream, 0, false));
    p->part_ml = reinterpret_cast<float2*>(base);
    p->part_acc = reinterpret_cast<float*>(base + ml_bytes);
    p->counters = static_cast<int*>(Scratch(sizeof(int) * plan.decode_slots, stream, 1, true));
  }
  if (plan.decode_kernel == 3 || plan.v4_chai) {
    const size_t floats = size_t(batch.num_seqs) * heads * p->logit_stride;
    p->logits = static_cast<float*>(Scratch(floats * sizeof(float), stream, 2, false));
  }
}

}  // namespace

void PagedAttention(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                    Tensor* out) {
  if (q.dim(0) == 0 || batch.num_seqs == 0) return;
  const int d = static_cast<int>(kv.pool.dim(2));
  const int heads = CheckOperands(q, kv, batch, score_head, *out, d);
  paged::Params p = MakeParams(q, kv, batch, score_head, out, heads, d);

  paged::LaunchPlan plan;
  const int64_t row_bytes = int64_t{d} * static_cast<int64_t>(DTypeSize(q.dtype()));
  const bool exact =
      paged::SpecialisedHeadDim(d) && row_bytes % 16 == 0 && Aligned(16, {q.raw(), out->raw(), kv.pool.raw()});
  paged::MakePlan(batch.max_seq_len, batch.max_new_tokens, kv.members_per_rep, EnvKnob("CHAI_DECODE_MEMBERS_PER_CTA", 4),
                  EnvKnob("CHAI_DECODE_CTAS_PER_SM", 32), SmCount(), exact, &p, &plan);
  PlanDecode(q.dtype(), kv, batch, exact, &p, &plan);
  PlanPrefill(q.dtype(), kv, batch, heads, exact, &plan);
  if (p.max_splits > 65535 || p.score_splits > 65535) {
    Fail("max_seq_len " + std::to_string(batch.max_seq_len) + " too long");
  }
  if (plan.prefill_tiles > 65535) Fail("max_new_tokens " + std::to_string(batch.max_new_tokens) + " too large");

  cudaStream_t stream = CurrentStream();
  BindScratch(batch, heads, plan, stream, &p);
  DispatchFloat(q.dtype(), "PagedAttention", [&](auto tag) {
    using T = decltype(tag);
    paged::LaunchAttention<T>(p, plan, stream);
  });
}

}  // namespace chai::cuda
