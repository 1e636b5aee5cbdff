// The decode GEMV's host side: the split-K scratch, the launch configurations (variants), their
// choice and grid (the arithmetic in kernels/gemv_grid.h), and the entry points (Linear's decode path, LinearFused,
// QkvLinearAppend). The kernel and its design notes are in gemv_kernel.cuh; which bytes a launch
// streams first (the L2 hint) in gemv_reads_first.cc.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv_kernel.cuh"
#include "kernels/cuda/gemv_plan.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/env_choice.h"

namespace chai::cuda {
namespace {

// Split-K scratch: fp32 partials and per-row-block arrival counters (zero between launches).
// Allocated once, like the cuBLASLt workspace, and used only in stream order on CurrentStream().
struct SplitScratch {
  float* partials = nullptr;
  int64_t partial_floats = 0;
  float* squares = nullptr;  // the folded RMSNorm's sums of squares: 8 floats per CTA
  int64_t max_ctas = 0;
  unsigned* counters = nullptr;
  int64_t counter_count = 0;
};

// Split-K CTAs never exceed SmCount() * kMaxMinBlocks in all, over fewer than SmCount() row blocks.
constexpr int kMaxMinBlocks = 8;
constexpr int kMaxRows = 32;

const SplitScratch& Scratch() {
  static SplitScratch scratch = [] {
    SplitScratch sc;
    sc.partial_floats = int64_t{SmCount()} * kMaxMinBlocks * kMaxRows * 8;
    sc.counter_count = SmCount();
    CHAI_CUDA_CHECK(cudaMalloc(&sc.partials, sc.partial_floats * sizeof(float)));
    sc.max_ctas = int64_t{SmCount()} * kMaxMinBlocks;
    CHAI_CUDA_CHECK(cudaMalloc(&sc.squares, sc.max_ctas * kGemvMaxTokens * sizeof(float)));
    CHAI_CUDA_CHECK(cudaMalloc(&sc.counters, sc.counter_count * sizeof(unsigned)));
    CHAI_CUDA_CHECK(cudaMemsetAsync(sc.counters, 0, sc.counter_count * sizeof(unsigned), CurrentStream()));
    return sc;
  }();
  return scratch;
}

// args holds the operands and shape; the launch fills in the split, the grid and the prefetch flag.
template <typename T, int kWarps, int kR, int kU, int kMinBlocks, gemv::Input kIn, gemv::Output kOut>
void LaunchGemv(GemvArgs args, const gemv::QkvAppend& qkv) {
  static_assert(kMinBlocks <= kMaxMinBlocks && 16 * kR <= kMaxRows, "split-K scratch too small");
  // A row block is 16 * kR rows of W, or with the SiLU epilogue 8 * kR output columns (as many
  // gate | up rows: the same blocks as the plain GEMV over the stacked weight).
  constexpr bool kPaired = kOut == gemv::Output::kSiluMul || kOut == gemv::Output::kQkvAppend;
  const GemvGrid g = PlanGrid(args.n, args.k, kPaired, kR, kU, kWarps, kMinBlocks);
  const int64_t row_blocks = g.row_blocks, splits = g.splits;
  args.split_chunks = g.split_chunks;
  args.partials = nullptr;
  args.counters = nullptr;
  if (splits > 1) {
    const SplitScratch& sc = Scratch();
    if (row_blocks * splits * 16 * kR * 8 > sc.partial_floats || row_blocks * splits > sc.max_ctas ||
        row_blocks > sc.counter_count) {
      std::fprintf(stderr, "chai: internal error in CUDA op Linear: GEMV split-K scratch too small\n");
      std::abort();
    }
    args.partials = sc.partials;
    args.squares = sc.squares;
    args.counters = sc.counters;
  }
  args.l2_prefetch = PdlEnabled();
  auto* kernel = GemvKernel<T, kWarps, kR, kU, kMinBlocks, kIn, kOut>;
  const dim3 grid(static_cast<unsigned>(row_blocks), static_cast<unsigned>(splits));
  LaunchPdl(kernel, grid, dim3(kWarps * 32), 0, CurrentStream(), args, qkv);
}

using gemv::Input;
using gemv::Output;
using LaunchFn = void (*)(DType dtype, Input in, Output out, const GemvArgs& args, const gemv::QkvAppend& qkv);

// One configuration's launch for the dtype and fusions; configurations without kFusions have the
// plain kernel only (the fused ones are built for the default configurations, see FusedVariant).
template <typename T, int kWarps, int kR, int kU, int kMinBlocks, bool kFusions>
void LaunchTyped(Input in, Output out, const GemvArgs& args, const gemv::QkvAppend& qkv) {
  if (in == Input::kPlain && out == Output::kStore) {
    LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kStore>(args, qkv);
    return;
  }
  if constexpr (kFusions) {
    if (in == Input::kPlain && out == Output::kAddTo) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kAddTo>(args, qkv);
    } else if (in == Input::kPlain && out == Output::kRelu) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kRelu>(args, qkv);
    } else if (in == Input::kPlain && out == Output::kQkvAppend) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kQkvAppend>(args, qkv);
    } else if (in == Input::kPlain && out == Output::kStoreMirror) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kStoreMirror>(args, qkv);
    } else if (in == Input::kPlain) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kSiluMul>(args, qkv);
    } else if (out == Output::kStore) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kRmsNorm, Output::kStore>(args, qkv);
    } else if (out == Output::kAddTo) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kRmsNorm, Output::kAddTo>(args, qkv);
    } else if (out == Output::kQkvAppend) {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kRmsNorm, Output::kQkvAppend>(args, qkv);
    } else {
      LaunchGemv<T, kWarps, kR, kU, kMinBlocks, Input::kRmsNorm, Output::kSiluMul>(args, qkv);
    }
    return;
  }
  std::fprintf(stderr, "chai: internal error in CUDA op LinearFused: GEMV configuration without fusions\n");
  std::abort();
}

template <int kWarps, int kR, int kU, int kMinBlocks, bool kFusions>
void Launch(DType dtype, Input in, Output out, const GemvArgs& args, const gemv::QkvAppend& qkv) {
  if (dtype == DType::kF16) {
    LaunchTyped<__half, kWarps, kR, kU, kMinBlocks, kFusions>(in, out, args, qkv);
  } else {
    LaunchTyped<__nv_bfloat16, kWarps, kR, kU, kMinBlocks, kFusions>(in, out, args, qkv);
  }
}

// CTAs of the plain fp16 kernel resident per SM (its registers and shared memory decide, not kMinBlocks).
// Asked once per configuration (the default's choice reads it on every eager launch).
template <int kWarps, int kR, int kU, int kMinBlocks>
int CtasPerSm() {
  static const int blocks = [] {
    int b = 0;
    CHAI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &b, GemvKernel<__half, kWarps, kR, kU, kMinBlocks, Input::kPlain, Output::kStore>, kWarps * 32, 0));
    return std::max(b, 1);
  }();
  return blocks;
}

struct Variant {
  const char* name;
  LaunchFn launch;
  int (*ctas_per_sm)();
  bool fusions;  // has the kernels of ops::LinearFused
  int warps, r, u, min_blocks;  // the template's shape, for PlanGrid outside a launch
};

template <int kWarps, int kR, int kU, int kMinBlocks, bool kFusions = false>
constexpr Variant MakeVariant(const char* name) {
  return Variant{name,   &Launch<kWarps, kR, kU, kMinBlocks, kFusions>, &CtasPerSm<kWarps, kR, kU, kMinBlocks>,
                 kFusions, kWarps, kR, kU, kMinBlocks};
}

// name: warps per CTA (w), rows per CTA (r), steps per warp iteration (u; 16-byte W loads in
// flight per thread = 2 * r / 16 * u), CTAs per SM the registers allow (b). The three defaults
// (DefaultVariant) also have the fused kernels.
const Variant kVariants[] = {
    MakeVariant<8, 1, 4, 3, true>("w8.r16.u4.b3"),  //
    MakeVariant<8, 1, 2, 4>("w8.r16.u2.b4"),        //
    MakeVariant<8, 1, 8, 2, true>("w8.r16.u8.b2"),  //
    MakeVariant<4, 1, 4, 6, true>("w4.r16.u4.b6"),  //
    MakeVariant<8, 2, 2, 3>("w8.r32.u2.b3"),        //
    MakeVariant<16, 1, 2, 2>("w16.r16.u2.b2"),      //
    MakeVariant<4, 2, 4, 4>("w4.r32.u4.b4"),        //
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);

// CHAI_GEMV_VARIANT=<name> forces one configuration for every GEMV (to time variants end to end
// without rebuilding); -1 when unset or unknown (with a warning).
int ForcedVariant() {
  static const int forced = [] {
    const char* env = std::getenv("CHAI_GEMV_VARIANT");
    if (env == nullptr || *env == '\0') return -1;
    for (int v = 0; v < kNumVariants; ++v) {
      if (std::strcmp(env, kVariants[v].name) == 0) return v;
    }
    std::fprintf(stderr, "chai: warning: CHAI_GEMV_VARIANT=%s is not a GEMV configuration; using the default\n", env);
    return -1;
  }();
  return forced;
}

// The configuration as gemv_grid.h describes it (occupancy asked once per configuration).
gemv_grid::Config ConfigOf(const Variant& v) { return {v.warps, v.r, v.u, v.min_blocks, v.ctas_per_sm()}; }

// CHAI_GEMV_DEFAULT=width: choose the default configuration by N alone, as before the shape rules
// below (to compare the two end to end). Read once.
bool DefaultByWidthOnly() {
  static const bool width_only = EnvChoice("CHAI_GEMV_DEFAULT", {"shape", "width"}) == 1;
  return width_only;
}

// The default is one of two configurations with the fused kernels (a third, four warps a CTA, has
// them too: ChooseVariant may take it). By width, from the
// H100 sweep in benchmarks/results/gemm-h100.md (commit 1782d80): u8.b2 (16 loads in flight per
// thread, 2 CTAs per SM) was the fastest at every T for the wide weights (N = 11008 and 32000: 89% /
// 99% of copy bandwidth against 87% / 98% for u4.b3), u4.b3 at N = 4096 (o: 77% against 76%; down,
// K = 11008: tied at T = 1, 4, ahead at T = 8). The stacked Q|K|V (N = 12288) and gate|up
// (N = 22016) weights are wide: 91.6% / 95.4% (commit 456f513). Stream-K variants (one wave of
// equal contiguous work per CTA) were tried there and lost at every shape (77-87% against 91-98%),
// so they were removed; so did splitting K over more CTAs than PlanGrid does (H200, gemm-h200.md).
// Two exceptions by shape, from the H200 sweep of the tensor-parallel shards (`gemm_bench 10
// shards`, gemm-h200.md); neither moves a LLaMA-7B shape at TP = 1, 2 or 4:
// - a wide weight whose rows are so short that u8.b2 leaves a CTA's warps at less than 2/3 of the
//   busiest one's work takes u4.b3 when that shares better (OPT-66B's o at TP = 4, K = 2304: one
//   warp of eight streams two iterations, the others one; 14.7-14.9 against 16.3-16.4 us);
// - a narrower weight whose u4.b3 grid spills a last wave of at most a tenth of the resident CTAs
//   takes u8.b2 when its last wave is fuller (OPT-66B's Q|K|V at TP = 4: 432 row blocks over 396
//   resident; 37.4-38.0 against 39.7-40.1 us).
// (gemv_grid::ChooseWide; tests/unit/gemv_grid_test.cc checks it at those shapes.)
constexpr int kNarrowDefault = 0, kWideDefault = 2, kFourWarps = 3;

// CHAI_GEMV_FOUR_WARPS=unhinted (the default) | off | all: a wide weight whose grid spills past one
// wave of the wide configuration's CTAs but fits one wave of w4.r16.u4.b6's (gemv_grid::
// WideTakesFourWarps) takes four warps where no kernel before it prefetched its first bytes into L2
// (ops::LinearFusion::first_bytes_in_l2); `all` everywhere (the default of bb17882), `off` nowhere.
// Per GEMV four warps were 0.6-1.6 us faster on an H200 at those shapes (gemm-h200.md) and level on
// an H100 (gemm-h100.md). End to end, `all` made LLaMA-7B's batch-1 step 3% slower on an H100
// (5.22-5.26 against 5.07-5.11 ms, llama-7b-tp1-h100.md): its Q|K|V GEMV, moved into one wave, loses
// what the norm's prefetch of its first wave's rows gave it (the prefetch becomes 12288 heads of
// 512 B: 0.5% instead of 3%). `unhinted` leaves every hinted GEMV wide, so no LLaMA-7B shape moves
// at TP = 1, 2 or 4, and takes four warps for OPT-66B's fc2 and LM head at TP = 4: 10.070 against
// 10.263 ms (`all` 10.042) on one 4 x H200 host, 10.012 / 10.058 against 10.165 / 10.187 ms on
// another (opt-66b-tp4-h200.md, twenty-sixth session).
// The choice: gemv_grid::ChooseDefault.
gemv_grid::FourWarpsRule FourWarpsSetting() {
  static const gemv_grid::FourWarpsRule rule = [] {
    constexpr gemv_grid::FourWarpsRule kByIndex[] = {gemv_grid::FourWarpsRule::kUnhinted,
                                                     gemv_grid::FourWarpsRule::kOff, gemv_grid::FourWarpsRule::kAll};
    return kByIndex[EnvChoice("CHAI_GEMV_FOUR_WARPS", {"unhinted", "off", "all"})];
  }();
  return rule;
}

int DefaultVariant(int64_t k, int64_t n) {
  const int sms = SmCount();
  if (!gemv_grid::ChooseWide(k, n, ConfigOf(kVariants[kNarrowDefault]), ConfigOf(kVariants[kWideDefault]), sms,
                             DefaultByWidthOnly())) {
    return kNarrowDefault;
  }
  return kWideDefault;
}

// Any launch may also take the four-warp configuration where the default's warps share a CTA's
// span unevenly (gemv_grid::FourWarpsShareBetter). At OPT-66B's o shard of TP = 4 (K = 2304)
// u4.b3's eight warps make 18 iterations (balance 0.75) where four make them at 0.9: 14.0 against
// 15.0 us on an H200 (`gemm_bench 10 shards`, gemm-h200.md); at every LLaMA-7B shard the default's
// balance is 0.9 or more and it stays (at TP = 2's down, 0.90, w4 is slower).
// first_bytes_in_l2: as ops::LinearFusion's (CHAI_GEMV_FOUR_WARPS=unhinted reads it).
int ChooseVariant(int64_t /*tokens*/, int64_t k, int64_t n, bool first_bytes_in_l2 = false) {
  if (ForcedVariant() >= 0) return ForcedVariant();
  const gemv_grid::Rules rules{DefaultByWidthOnly(), FourWarpsSetting(), first_bytes_in_l2};
  switch (gemv_grid::ChooseDefault(k, n, ConfigOf(kVariants[kNarrowDefault]), ConfigOf(kVariants[kWideDefault]),
                                   ConfigOf(kVariants[kFourWarps]), SmCount(), rules)) {
    case gemv_grid::Pick::kFour:
      return kFourWarps;
    case gemv_grid::Pick::kWide:
      return kWideDefault;
    case gemv_grid::Pick::kNarrow:
      break;
  }
  return kNarrowDefault;
}

// LinearFused: the chosen (or forced) configuration where it has the fused kernels, else the default for the
// weight's shape (the stacked gate | up weight with the SiLU epilogue streams as the plain GEMV does).
int FusedVariant(int64_t tokens, int64_t k, int64_t n, bool first_bytes_in_l2) {
  const int v = ChooseVariant(tokens, k, n, first_bytes_in_l2);
  return kVariants[v].fusions ? v : DefaultVariant(k, n);
}

GemvArgs MakeArgs(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out) {
  GemvArgs args{};
  args.x = x.raw();
  args.w = weight.raw();
  args.bias = bias.defined() ? bias.raw() : nullptr;
  args.out = out->raw();
  args.tokens = static_cast<int>(x.dim(0));
  args.k = x.dim(1);
  args.n = weight.dim(0);
  return args;
}

// Whether the folded RMSNorm takes these norm weights for rows like x's (undefined: no norm).
bool NormFolds(const Tensor& x, const Tensor& norm_w) {
  if (!norm_w.defined()) return true;
  return norm_w.dtype() == x.dtype() && norm_w.numel() == x.dim(1) && Aligned(16, {norm_w.raw()});
}

}  // namespace

GemvGrid PlanGrid(int64_t n, int64_t k, bool paired, int r, int u, int warps, int min_blocks) {
  return gemv_grid::Plan(n, k, paired, gemv_grid::Config{warps, r, u, min_blocks, min_blocks}, SmCount());
}

GemvShape GemvLaunchShape(int64_t tokens, int64_t k, int64_t n, bool fused, bool first_bytes_in_l2) {
  const Variant& v =
      kVariants[fused ? FusedVariant(tokens, k, n, first_bytes_in_l2) : ChooseVariant(tokens, k, n, first_bytes_in_l2)];
  return GemvShape{v.warps, v.r, v.u, v.min_blocks};
}

bool GemvApplies(const Tensor& x, const Tensor& weight) {
  const DType dtype = x.dtype();
  if (dtype != DType::kF16 && dtype != DType::kBF16) return false;
  if (weight.dtype() != dtype) return false;
  const int64_t tokens = x.dim(0), k = x.dim(1);
  if (tokens < 1 || tokens > kGemvMaxTokens || k % 8 != 0) return false;
  return Aligned(16, {x.raw(), weight.raw()});
}

int GemvNumVariants() { return kNumVariants; }

const char* GemvVariantName(int variant) {
  return variant >= 0 && variant < kNumVariants ? kVariants[variant].name : "auto";
}

GemvShapePlan GemvPlan(int64_t k, int64_t n, int variant) {
  if (variant < 0 || variant >= kNumVariants) variant = ChooseVariant(1, k, n);
  const Variant& v = kVariants[variant];
  const GemvGrid g = PlanGrid(n, k, false, v.r, v.u, v.warps, v.min_blocks);
  return GemvShapePlan{v.name, g.row_blocks, g.splits, v.ctas_per_sm(), gemv_grid::WarpBalance(ConfigOf(v), g)};
}

void Gemv(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out, int variant) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (tokens == 0 || n == 0) return;
  if (!GemvApplies(x, weight)) {
    std::fprintf(stderr, "chai: internal error in CUDA op Linear: GEMV called on %s x %s (unaligned or unsupported)\n",
                 x.ShapeString().c_str(), weight.ShapeString().c_str());
    std::abort();
  }
  Scratch();  // allocated at the first call, which the engine and the tests make eagerly
  if (variant < 0 || variant >= kNumVariants) variant = ChooseVariant(tokens, k, n);
  kVariants[variant].launch(x.dtype(), Input::kPlain, Output::kStore, MakeArgs(x, weight, bias, out), {});
}

bool GemvFusedApplies(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion) {
  if (!GemvApplies(x, weight)) return false;
  if (bias.defined() && bias.dtype() != x.dtype()) return false;
  if (fusion.output == ops::LinearOutput::kSiluMul && weight.dim(0) % 2 != 0) return false;
  const Tensor& norm_w = fusion.rms_norm_weight;
  if (norm_w.defined() && fusion.output == ops::LinearOutput::kRelu) return false;  // OPT's fc1 reads a LayerNorm
  // The mirror writes whole 16-byte groups of a plain store (gemv::WriteMirrored).
  if (fusion.mirror != nullptr && (fusion.output != ops::LinearOutput::kStore || norm_w.defined() ||
                                   weight.dim(0) % 8 != 0 || fusion.mirror->reader_blocks < 1)) {
    return false;
  }
  return NormFolds(x, norm_w);
}

void GemvFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion,
               Tensor* out) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (tokens == 0 || n == 0) return;
  if (!GemvFusedApplies(x, weight, bias, fusion)) {
    std::fprintf(stderr,
                 "chai: internal error in CUDA op LinearFused: GEMV called on %s x %s (unaligned or unsupported)\n",
                 x.ShapeString().c_str(), weight.ShapeString().c_str());
    std::abort();
  }
  Scratch();
  GemvArgs args = MakeArgs(x, weight, bias, out);
  const bool norm = fusion.rms_norm_weight.defined();
  if (norm) {
    args.norm_w = fusion.rms_norm_weight.raw();
    args.eps = fusion.rms_norm_eps;
  }
  const Output o = fusion.mirror != nullptr                       ? Output::kStoreMirror
                   : fusion.output == ops::LinearOutput::kAddTo     ? Output::kAddTo
                   : fusion.output == ops::LinearOutput::kSiluMul ? Output::kSiluMul
                   : fusion.output == ops::LinearOutput::kRelu    ? Output::kRelu
                                                                  : Output::kStore;
  if (fusion.mirror != nullptr) {
    if (!Aligned(16, {out->raw()})) {
      std::fprintf(stderr, "chai: internal error in CUDA op LinearFused: mirrored output not 16-byte aligned\n");
      std::abort();
    }
    args.mirror = *fusion.mirror;
  }
  kVariants[FusedVariant(tokens, k, n, fusion.first_bytes_in_l2)].launch(
      x.dtype(), norm ? Input::kRmsNorm : Input::kPlain, o, args, {});
}

bool QkvLinearAppendIsOneKernel(const Tensor& x, const Tensor& weight, const Tensor& bias, int head_dim,
                                const Tensor& positions, const BatchLayout& batch, const Tensor& rms_norm_weight) {
  if (!GemvApplies(x, weight) || head_dim % 2 != 0 || weight.dim(0) % head_dim != 0) return false;
  if ((bias.defined() && bias.dtype() != x.dtype()) || !NormFolds(x, rms_norm_weight)) return false;
  const auto on_device_ints = [&](const Tensor& t) {
    return t.defined() && t.dtype() == DType::kI32 && t.device() == Device::kCuda && t.numel() == x.dim(0);
  };
  return on_device_ints(positions) && on_device_ints(batch.token_rows);
}

void QkvLinearAppend(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& positions, int heads,
                     int kv_heads, int head_dim, float theta, bool apply_rotary, const PagedKv& kv,
                     const BatchLayout& batch, Tensor* q, const Tensor& rms_norm_weight, float rms_norm_eps,
                     bool first_bytes_in_l2) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (tokens == 0 || n == 0) return;
  if (!QkvLinearAppendIsOneKernel(x, weight, bias, head_dim, positions, batch, rms_norm_weight)) {
    std::fprintf(stderr, "chai: internal error in CUDA op QkvLinearAppend: GEMV called on %s x %s (unsupported)\n",
                 x.ShapeString().c_str(), weight.ShapeString().c_str());
    std::abort();
  }
  Scratch();
  GemvArgs args = MakeArgs(x, weight, bias, q);
  const bool norm = rms_norm_weight.defined();
  if (norm) {
    args.norm_w = rms_norm_weight.raw();
    args.eps = rms_norm_eps;
  }
  gemv::QkvAppend a;
  a.positions = positions.data<int32_t>();
  a.token_rows = batch.token_rows.data<int32_t>();
  a.tables = kv.tables.data<int32_t>();
  a.pool = kv.pool.raw();
  a.block_size = kv.block_size;
  a.max_blocks = kv.max_blocks;
  a.heads = heads;
  a.kv_heads = kv_heads;
  a.half = head_dim / 2;
  a.theta = theta;
  a.rotary = apply_rotary;
  kVariants[FusedVariant(tokens, k, n, first_bytes_in_l2)].launch(
      x.dtype(), norm ? Input::kRmsNorm : Input::kPlain, Output::kQkvAppend, args, a);
}

}  // namespace chai::cuda
