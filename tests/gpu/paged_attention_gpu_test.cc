// CUDA PagedAppend and PagedAttention against a naive double-precision reference written here
// (independent of the CPU op). Each case builds a random paged cache on the host: shuffled block
// ids, -1 tails, K blocks only for KV heads that hold a representative, every unused slot and
// every slot the step is about to fill poisoned with NaN bytes. The step's K/V rows go in
// through PagedAppend (the whole pool is then compared byte for byte with the expected one), and
// PagedAttention's output (NaN-poisoned first) is compared per (row, head) with the reference:
// ||out - ref|| / ||ref|| < 1e-5 in fp32, < 1e-2 in fp16/bf16. PagedAttention runs twice, the
// second time on a re-poisoned output, and must give the same bytes (split counters left at
// zero). Every case runs with every decode kernel that applies (CHAI_DECODE_KERNEL 1, 2, 3 and,
// for fp16/bf16 decode with head_dim 64 or 128, the bulk-copy kernel 4: its dense pass under hint
// 1, its two CHAI passes under a CHAI hint),
// on the same inputs and reference per dtype (built once: the host side is the test's cost).
// Cases with prefill rows run prefill kernel 2 (CHAI_PREFILL_KERNEL=2) too, in each of its shapes
// (64/128 query rows per CTA, 1/2 members per CTA) where it has an instance.
// Decode cases with a member-split hint (kv.members_per_rep) check that the hint, right or wrong,
// never changes the result.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/pdl.h"
#include "kernels/device_memory.h"
#include "tests/gpu/paged_attention_harness.h"

namespace chai {
namespace {

using namespace paged_attention_test;  // NOLINT: the harness is this test's own vocabulary

const std::vector<int> kOddLens = {1, 5, 17, 300, 1000, 4097};

class PagedAttentionGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) {
      std::printf("[  SKIPPED ] no CUDA device is visible (or this build has no CUDA backend)\n");
      GTEST_SKIP() << "no CUDA device is visible (or this build has no CUDA backend)";
    }
  }
};

// ---- decode: one new row per sequence ---------------------------------------------------------

TEST_F(PagedAttentionGpu, DecodeDense) {
  Case c{"decode dense MHA d64", 4, 4, 64, 16};
  c.lens = kOddLens;
  c.news.assign(c.lens.size(), 1);
  c.maps.assign(c.lens.size(), Dense(4));
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeChai) {
  Case c{"decode CHAI MHA d128", 8, 8, 128, 16};
  c.lens = {17, 300, 4097, 1000, 1, 5};
  c.news.assign(c.lens.size(), 1);
  c.maps = {MapFromLabels({0, 0, 0, 1, 1, 2, 2, 0}),
            RandomClusters(8, 3),
            RandomClusters(8, 2),
            Dense(8),
            RandomClusters(8, 1),
            RandomClusters(8, 4)};
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeGqaDense) {
  Case c{"decode GQA 8/2 dense d32 bs5", 8, 2, 32, 5};
  c.lens = kOddLens;
  c.news.assign(c.lens.size(), 1);
  c.maps.assign(c.lens.size(), Dense(8));
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeGqaChai) {
  // Clusters that cross KV groups (V heads shared by members of different representatives).
  Case c{"decode GQA 16/2 CHAI d80", 16, 2, 80, 16};
  c.lens = {300, 4097, 17, 1000, 5, 1};
  c.news.assign(c.lens.size(), 1);
  c.maps = {RandomClusters(16, 4), RandomClusters(16, 3), Dense(16),
            RandomClusters(16, 9), RandomClusters(16, 1), RandomClusters(16, 16)};
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeMqaSubsets) {
  // 12 query heads on one KV head: more representatives than one CTA takes (8).
  Case c{"decode MQA 12/1 d96", 12, 1, 96, 16};
  c.lens = {1000, 17, 4097, 300};
  c.news.assign(c.lens.size(), 1);
  c.maps = {Dense(12), RandomClusters(12, 10), RandomClusters(12, 3), RandomClusters(12, 9)};
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeOddBlocks) {
  // Block sizes that are not powers of two, with head sizes that kernels 2 and 3 take: rows of a
  // trip straddle blocks, and CHAI leaves some KV heads without K blocks.
  Case a{"decode GQA 8/2 CHAI d64 bs5", 8, 2, 64, 5};
  a.lens = kOddLens;
  a.news.assign(a.lens.size(), 1);
  a.maps = {Dense(8), RandomClusters(8, 2), RandomClusters(8, 3), RandomClusters(8, 1), Dense(8), RandomClusters(8, 5)};
  a.hint = 4;
  Check(a);
  Case b{"decode CHAI MHA d128 bs7, loose bound", 8, 8, 128, 7};
  b.lens = {4097, 1, 300, 17, 5, 1000};
  b.news.assign(b.lens.size(), 1);
  b.maps = {RandomClusters(8, 2), Dense(8), RandomClusters(8, 3), RandomClusters(8, 1), RandomClusters(8, 4), Dense(8)};
  b.extra_max_len = 2000;
  Check(b);
}

TEST_F(PagedAttentionGpu, DecodeLargeBatchLongChunks) {
  // Enough sequences that each CTA takes a long chunk (several unrolled trips), a loose bound.
  Case c{"decode B=40 CHAI 32 heads d64", 32, 32, 64, 16};
  std::uniform_int_distribution<int> len(1, 4097);
  for (int s = 0; s < 40; ++s) {
    c.lens.push_back(s == 0 ? 4097 : len(Rng()));
    c.news.push_back(1);
    c.maps.push_back(s % 3 == 0 ? Dense(32) : RandomClusters(32, 4));
  }
  c.extra_max_len = 3000;
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeHeadDims) {
  for (int d : {8, 16, 24, 32, 256}) {  // 24 takes the generic kernel
    Case c{"decode CHAI d" + std::to_string(d), 6, 6, d, 16};
    c.lens = {1, 17, 1000, 300};
    c.news.assign(c.lens.size(), 1);
    c.maps = {Dense(6), RandomClusters(6, 2), RandomClusters(6, 3), Dense(6)};
    Check(c);
  }
}

TEST_F(PagedAttentionGpu, DecodeDenseKernel4Shapes) {
  // Dense layers in the shapes decode kernel 4 takes (and kernels 1-3 too): head_dim 64 and 128,
  // groups of 1 to 8 query heads per KV head (odd ones: 3, 5), block sizes that are powers of two,
  // not (24, 40), smaller than a 16-row tile (8) and larger than a stage (256), ragged lengths
  // whose chunks end inside a block and inside a 16-row tile, one sequence split over dozens of
  // chunks, and a loose max_seq_len bound.
  struct Shape {
    int heads, kv_heads, d, block_size;
  };
  for (const Shape& sh : {Shape{4, 4, 128, 16}, Shape{8, 1, 128, 16}, Shape{12, 4, 64, 8}, Shape{10, 2, 128, 24},
                          Shape{16, 2, 64, 256}, Shape{6, 6, 64, 40}, Shape{32, 8, 128, 32}}) {
    Case c{"decode dense " + std::to_string(sh.heads) + "/" + std::to_string(sh.kv_heads) + " d" +
               std::to_string(sh.d) + " bs" + std::to_string(sh.block_size),
           sh.heads, sh.kv_heads, sh.d, sh.block_size};
    c.lens = {1, 5, 17, 64, 65, 300, 1000, 4097};
    c.news.assign(c.lens.size(), 1);
    c.maps.assign(c.lens.size(), Dense(sh.heads));
    Check(c);
    if (sh.block_size == 8 || sh.block_size == 24) {  // runs of blocks, whole ones and ones a stage cuts
      c.name += ", blocks in runs";
      c.block_runs = true;
      Check(c);
    }
  }
  Case one{"decode dense 32/8 d128, one long sequence", 32, 8, 128, 16};
  one.lens = {8191};
  one.news = {1};
  one.maps = {Dense(32)};
  Check(one);
  one.name += ", loose bound";
  one.extra_max_len = 9000;
  Check(one);
  // Many sequences: long chunks (many stages per CTA), a loose bound.
  Case big{"decode dense B=40 GQA 32/8 d128", 32, 8, 128, 16};
  std::uniform_int_distribution<int> len(1, 4097);
  for (int s = 0; s < 40; ++s) {
    big.lens.push_back(s == 0 ? 4097 : len(Rng()));
    big.news.push_back(1);
    big.maps.push_back(Dense(32));
  }
  big.extra_max_len = 3000;
  Check(big);
  // The same with block ids in runs of consecutive ids (copied whole by kernel 4 where it coalesces).
  big.name += ", blocks in runs";
  big.block_runs = true;
  Check(big);
  big.name += ", rows by slots";
  big.row_slots = true;
  Check(big);
  // Dense decode rows next to prefill and idle sequences (CHAI ones among those: kernel 4 reads
  // only the decode sequences' maps).
  Case m{"mixed decode/prefill/idle, dense decode, GQA 16/4 d64", 16, 4, 64, 16};
  m.lens = {4097, 90, 1, 300, 1000, 17, 64};
  m.news = {1, 90, 1, 0, 1, 9, 64};
  m.maps = {Dense(16), RandomClusters(16, 3), Dense(16), RandomClusters(16, 3), Dense(16), Dense(16),
            RandomClusters(16, 1)};
  Check(m);
}

// The current device's compute capability major version (kernel 4 needs 9); 0 if unreadable.
int DeviceMajor() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    return 0;
  }
  return major;
}

TEST_F(PagedAttentionGpu, DecodeKernel4DensePassMarksChaiGroups) {
  // Kernel 4's dense pass cannot compute CHAI's cross-head scores: a KV group whose map points
  // elsewhere gets NaN, never a silently wrong result (memcheck runs this test: the CTAs that
  // return early leave nothing behind). Other groups, and other sequences, are unaffected. Lengths
  // of one stage and of several, split and not.
  if (DeviceMajor() < 9) GTEST_SKIP() << "decode kernel 4 needs sm_90; other kernels compute CHAI maps under hint 1";
  Case c{"kernel 4 dense pass, CHAI map under hint 1", 8, 8, 128, 16};
  c.lens = {40, 300, 1000, 2100};
  c.news.assign(c.lens.size(), 1);
  const std::vector<int> chai = MapFromLabels({0, 1, 0, 3, 1, 5, 6, 3});  // heads 2, 4 and 7 are members
  c.maps = {chai, Dense(8), chai, chai};
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    const Inputs in = BuildInputs(c, dtype);
    setenv("CHAI_DECODE_KERNEL", "4", 1);
    std::vector<float> got;
    const Result r = RunKernel(c, in, dtype, &got);
    unsetenv("CHAI_DECODE_KERNEL");
    EXPECT_TRUE(r.pool_ok) << DTypeName(dtype) << ": pool after PagedAppend differs";
    EXPECT_TRUE(r.repeat_ok) << DTypeName(dtype) << ": a second call gave different bytes";
    for (size_t s = 0; s < c.lens.size(); ++s) {
      const int t = in.q_start[s];
      for (int h = 0; h < c.heads; ++h) {
        const float* o = &got[(size_t(t) * c.heads + h) * c.d];
        if (c.maps[s][h] != h) {
          for (int e = 0; e < c.d; ++e) ASSERT_TRUE(std::isnan(o[e])) << "seq " << s << " head " << h << " dim " << e;
          continue;
        }
        const double* ref = &in.ref[(size_t(t) * c.heads + h) * c.d];
        double num = 0, den = 0;
        for (int e = 0; e < c.d; ++e) {
          num += std::isfinite(o[e]) ? (o[e] - ref[e]) * (o[e] - ref[e]) : INFINITY;
          den += ref[e] * ref[e];
        }
        EXPECT_LT(std::sqrt(num / den), 1e-2) << DTypeName(dtype) << " seq " << s << " head " << h;
      }
    }
  }
}

TEST_F(PagedAttentionGpu, DecodeKernel4L2HintLeavesResultsUnchanged) {
  // Kernel 4's dense and P·V passes issue kv.then's L2 prefetches after their own streams: the
  // outputs must be the bytes of the same launch without the hint (memcheck runs this test). The
  // hint covers a separate 24 MB buffer as the engine's o-projection hint would, in 2 KB ranges.
  if (DeviceMajor() < 9) GTEST_SKIP() << "decode kernel 4 needs sm_90";
  const Tensor weights = Tensor::Zeros({int64_t{12} << 20}, DType::kF16, Device::kCuda);
  L2Prefetch hint;
  hint.base = weights.raw();
  hint.outer = 4096;
  hint.outer_stride = 6 << 10;
  hint.inner = 2;
  hint.inner_stride = 4 << 10;
  hint.bytes = 2 << 10;
  Case dense{"kernel 4 dense pass with an L2 hint", 32, 8, 128, 32};
  dense.lens = {1, 40, 512, 2100};
  dense.news.assign(dense.lens.size(), 1);
  dense.maps.assign(dense.lens.size(), Dense(32));
  Case chai{"kernel 4 CHAI passes with an L2 hint", 8, 8, 128, 16};
  chai.lens = {40, 300, 1000};
  chai.news.assign(chai.lens.size(), 1);
  chai.maps = {MapFromLabels({0, 1, 0, 3, 1, 5, 6, 3}), Dense(8), MapFromLabels({0, 0, 0, 0, 4, 4, 4, 4})};
  chai.hint = 2;
  for (Case* c : {&dense, &chai}) {
    for (DType dtype : {DType::kF16, DType::kBF16}) {
      SCOPED_TRACE(c->name + " " + DTypeName(dtype));
      const Inputs in = BuildInputs(*c, dtype);
      setenv("CHAI_DECODE_KERNEL", "4", 1);  // the dense pass under hint 1, the CHAI passes under hint 2
      std::vector<float> plain, hinted;
      c->then = L2Prefetch{};
      const Result a = RunKernel(*c, in, dtype, &plain);
      c->then = hint;
      const Result b = RunKernel(*c, in, dtype, &hinted);
      unsetenv("CHAI_DECODE_KERNEL");
      EXPECT_LT(a.max_err, 1e-2) << a.where;
      EXPECT_TRUE(b.pool_ok && b.repeat_ok);
      ASSERT_EQ(plain.size(), hinted.size());
      EXPECT_EQ(std::memcmp(plain.data(), hinted.data(), plain.size() * sizeof(float)), 0)
          << "the hint changed the output";
    }
  }
}

// Sets an environment variable for a scope and restores the caller's value after (unset if it
// had none), so that a test's knobs do not leak into the tests after it (gpu_check runs whole
// binaries under CHAI_PDL=1).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  void Set(const char* value) { setenv(name_, value, 1); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

TEST_F(PagedAttentionGpu, DecodeChaiKernel4EarlyPvPassMatchesInOrder) {
  // Kernel 4's P·V pass released early by its scores pass (CHAI_DECODE_V4_PV_EARLY, the default)
  // streams its first V stages before its PdlWait and the logits after it: the outputs must be the
  // bytes of the in-order launch, with PDL off and on for the rest of the launches, for dense and
  // idle rows in the launch (CTAs that return before any wait), many splits, and a scores pass
  // planned for one resident CTA per SM (the P·V pass's CTAs beside it). Before each early run the
  // logits scratch is left holding another input's logits (a run on other inputs), so that a P·V
  // pass reading logits before its scores pass wrote them gives a first call that differs from
  // the repeat (repeat_ok) and from the in-order bytes. Whether the two passes overlap on a given
  // run is up to the hardware: the test cannot force the race, only catch it.
  if (DeviceMajor() < 9) GTEST_SKIP() << "decode kernel 4 needs sm_90";
  Case mha{"kernel 4 CHAI 32/32 d128", 32, 32, 128, 16};
  mha.lens = {4097, 1, 300, 2048, 65, 1000};
  mha.news.assign(mha.lens.size(), 1);
  mha.maps = {RandomClusters(32, 4), RandomClusters(32, 4), Dense(32), RandomClusters(32, 1), RandomClusters(32, 7),
              RandomClusters(32, 4)};
  mha.hint = 8;
  Case mixed{"kernel 4 CHAI GQA 16/4 d64, prefill and idle rows", 16, 4, 64, 24};
  mixed.lens = {4097, 90, 1, 300, 1000, 17};
  mixed.news = {1, 90, 1, 0, 1, 9};
  mixed.maps = {RandomClusters(16, 3), RandomClusters(16, 3), Dense(16), RandomClusters(16, 3), RandomClusters(16, 2),
                Dense(16)};
  mixed.hint = 4;
  struct ReloadPdlAtExit {  // destroyed after `pdl` below restored CHAI_PDL: the cache follows it
    ~ReloadPdlAtExit() { cuda::ReloadPdlSetting(); }
  } reload_pdl_at_exit;
  ScopedEnv kernel("CHAI_DECODE_KERNEL", "4");
  ScopedEnv early_env("CHAI_DECODE_V4_PV_EARLY", "0");
  ScopedEnv score_ctas("CHAI_DECODE_V4_SCORE_CTAS_PER_SM", "");
  ScopedEnv pdl("CHAI_PDL", "0");
  for (const Case* c : {&mha, &mixed}) {
    for (DType dtype : {DType::kF16, DType::kBF16}) {
      const Inputs in = BuildInputs(*c, dtype);
      const Inputs other = BuildInputs(*c, dtype);  // fresh random Q, K, V: other logits
      early_env.Set("0");
      pdl.Set("0");
      cuda::ReloadPdlSetting();
      std::vector<float> in_order;
      const Result a = RunKernel(*c, in, dtype, &in_order);
      EXPECT_LT(a.max_err, 1e-2) << c->name << " in order: " << a.where;
      for (const char* pdl_value : {"0", "1"}) {
        for (const char* score_ctas_value : {"", "1"}) {
          SCOPED_TRACE(c->name + " " + DTypeName(dtype) + " CHAI_PDL=" + pdl_value + " score CTAs/SM " +
                       (*score_ctas_value ? score_ctas_value : "all"));
          pdl.Set(pdl_value);
          cuda::ReloadPdlSetting();
          score_ctas.Set(score_ctas_value);
          early_env.Set("1");
          RunKernel(*c, other, dtype);  // the scratch now holds the other inputs' logits
          std::vector<float> early;
          const Result b = RunKernel(*c, in, dtype, &early);
          EXPECT_LT(b.max_err, 1e-2) << b.where;
          EXPECT_TRUE(b.pool_ok && b.repeat_ok);
          ASSERT_EQ(in_order.size(), early.size());
          EXPECT_EQ(std::memcmp(in_order.data(), early.data(), early.size() * sizeof(float)), 0)
              << "the early P·V pass changed the output";
        }
      }
    }
  }
}

TEST_F(PagedAttentionGpu, DecodeChaiKernel4Shapes) {
  // CHAI layers (hint > 1) in the shapes decode kernel 4 takes, which it runs as two passes (K of
  // the representatives' KV groups, then V with the representatives' logits): MHA and GQA groups
  // up to 8 with clusters that cross KV groups, dense sequences in the same launch, block sizes
  // below a tile (8), not powers of two (24, 40) and above a stage (256), ragged lengths, and
  // hints that do not match the real clusters.
  struct Shape {
    int heads, kv_heads, d, block_size, hint;
  };
  for (const Shape& sh : {Shape{32, 32, 128, 16, 8}, Shape{8, 8, 64, 8, 2}, Shape{16, 2, 64, 24, 4},
                          Shape{12, 4, 128, 40, 3}, Shape{6, 6, 128, 256, 2}, Shape{8, 1, 128, 16, 4}}) {
    Case c{"decode CHAI " + std::to_string(sh.heads) + "/" + std::to_string(sh.kv_heads) + " d" +
               std::to_string(sh.d) + " bs" + std::to_string(sh.block_size) + " hint " + std::to_string(sh.hint),
           sh.heads, sh.kv_heads, sh.d, sh.block_size};
    c.lens = {1, 5, 17, 64, 65, 300, 1000, 4097};
    c.news.assign(c.lens.size(), 1);
    c.maps = {RandomClusters(sh.heads, 1),
              RandomClusters(sh.heads, 2),
              Dense(sh.heads),
              RandomClusters(sh.heads, std::max(1, sh.heads / 4)),
              RandomClusters(sh.heads, 3),
              RandomClusters(sh.heads, std::max(1, sh.heads / 8)),
              Dense(sh.heads),
              RandomClusters(sh.heads, 4)};
    c.hint = sh.hint;
    Check(c);
    if (sh.block_size == 8 || sh.block_size == 24) {
      c.name += ", blocks in runs";
      c.block_runs = true;
      Check(c);
    }
  }
  // The LLaMA-7B layer shape with many sequences (long chunks, many stages per CTA) and a loose bound.
  Case big{"decode CHAI B=40 32/32 d128 hint 8, loose bound", 32, 32, 128, 16};
  std::uniform_int_distribution<int> len(1, 4097);
  for (int s = 0; s < 40; ++s) {
    big.lens.push_back(s == 0 ? 4097 : len(Rng()));
    big.news.push_back(1);
    big.maps.push_back(s % 5 == 0 ? Dense(32) : RandomClusters(32, 4));
  }
  big.hint = 8;
  big.extra_max_len = 3000;
  Check(big);
  // The same with the tables and maps at the engine's persistent rows (batch.slots): the scores
  // pass's item search reads each sequence's map through them (1280 slots: two search rounds).
  big.name += ", rows by slots";
  big.row_slots = true;
  Check(big);
  // One long sequence split over many chunks in both passes.
  Case one{"decode CHAI 32/8 d128, one long sequence", 32, 8, 128, 16};
  one.lens = {8191};
  one.news = {1};
  one.maps = {RandomClusters(32, 5)};
  one.hint = 6;
  Check(one);
  // CHAI decode rows next to prefill and idle sequences.
  Case m{"mixed decode/prefill/idle, CHAI decode, GQA 16/4 d64", 16, 4, 64, 16};
  m.lens = {4097, 90, 1, 300, 1000, 17, 64};
  m.news = {1, 90, 1, 0, 1, 9, 64};
  m.maps = {RandomClusters(16, 3), RandomClusters(16, 3), Dense(16), RandomClusters(16, 3), RandomClusters(16, 2),
            Dense(16), RandomClusters(16, 1)};
  m.hint = 4;
  Check(m);
  m.name += ", rows by slots";
  m.row_slots = true;
  Check(m);
}

// ---- decode with a member-split hint (kv.members_per_rep): the members of a representative are
// shared out over several CTAs; a hint that does not match the real clusters costs speed only.

// One cluster of 29 heads with representative `rep` (any of them: the kernel does not assume the
// lowest, as a medoid representative would not be) and three singletons, over 32 heads.
std::vector<int> Unequal32(const std::vector<int>& singletons, int rep) {
  std::vector<int> map(32, rep);
  for (int h : singletons) map[h] = h;
  return map;
}

TEST_F(PagedAttentionGpu, DecodeHintUnequalClusters) {
  // Hints below (2), at (8 = 32 / 4) and above (29, 64) the true sizes 29, 1, 1, 1.
  for (int hint : {2, 8, 29, 64}) {
    Case c{"decode 29+1+1+1 MHA d128 hint " + std::to_string(hint), 32, 32, 128, 16};
    c.lens = {3000, 1, 17, 4097, 640, 2};
    c.news.assign(c.lens.size(), 1);
    c.maps = {Unequal32({5, 17, 30}, 0), Unequal32({0, 1, 2}, 3), Unequal32({29, 30, 31}, 13),
              Unequal32({0, 8, 16}, 31), RandomClusters(32, 4),   Unequal32({4, 9, 31}, 0)};
    c.hint = hint;
    Check(c);
  }
}

TEST_F(PagedAttentionGpu, DecodeHintManySplits) {
  // Few sequences, long contexts: small chunks, dozens of splits merged per (slot, share).
  for (int hint : {1, 4, 8, 32}) {
    Case c{"decode 3000 positions, small chunks, hint " + std::to_string(hint), 32, 32, 64, 16};
    c.lens = {3000, 2999};
    c.news = {1, 1};
    c.maps = {RandomClusters(32, 4), Unequal32({3, 11, 27}, 20)};
    c.hint = hint;
    Check(c);
    c.name += ", loose bound";
    c.extra_max_len = 5000;
    Check(c);
  }
}

TEST_F(PagedAttentionGpu, DecodeHintMixedDenseChai) {
  // Dense sequences (score_head[h] == h) next to CHAI ones under a CHAI hint, decode only and
  // with prefill and idle sequences in the same launch.
  for (int hint : {3, 8}) {
    Case c{"decode mixed dense/CHAI d96 hint " + std::to_string(hint), 24, 24, 96, 16};
    c.lens = {1000, 4097, 17, 300, 1, 2500};
    c.news.assign(c.lens.size(), 1);
    c.maps = {Dense(24),
              RandomClusters(24, 3),
              Dense(24),
              RandomClusters(24, 8),
              RandomClusters(24, 1),
              RandomClusters(24, 24)};
    c.hint = hint;
    Check(c);
    Case m{"mixed decode/prefill/idle d64 hint " + std::to_string(hint), 16, 16, 64, 16};
    m.lens = {4097, 90, 1, 300, 1000, 17, 64};
    m.news = {1, 90, 1, 0, 1, 9, 64};
    m.maps = {RandomClusters(16, 2), Dense(16), Dense(16), RandomClusters(16, 3), Dense(16), RandomClusters(16, 4),
              RandomClusters(16, 1)};
    m.hint = hint;
    Check(m);
  }
}

TEST_F(PagedAttentionGpu, DecodeHintGqaChai) {
  // Shares are whole V heads: members of one V head stay in one CTA, under kG = 4 and 8.
  for (int hint : {2, 4, 16}) {
    Case a{"decode GQA 32/8 CHAI d128 hint " + std::to_string(hint), 32, 8, 128, 16};
    a.lens = {3000, 17, 1000, 4097, 1};
    a.news.assign(a.lens.size(), 1);
    a.maps = {RandomClusters(32, 4), RandomClusters(32, 8), Dense(32), Unequal32({5, 17, 30}, 6),
              RandomClusters(32, 2)};
    a.hint = hint;
    Check(a);
    Case b{"decode GQA 16/2 CHAI d80 hint " + std::to_string(hint), 16, 2, 80, 16};
    b.lens = {300, 4097, 17, 1000, 5};
    b.news.assign(b.lens.size(), 1);
    b.maps = {RandomClusters(16, 4), RandomClusters(16, 3), Dense(16), RandomClusters(16, 9), RandomClusters(16, 1)};
    b.hint = hint;
    Check(b);
    Case q{"decode MQA 12/1 d96 hint " + std::to_string(hint), 12, 1, 96, 16};  // one V head: one share
    q.lens = {1000, 17, 4097};
    q.news.assign(q.lens.size(), 1);
    q.maps = {Dense(12), RandomClusters(12, 3), RandomClusters(12, 9)};
    q.hint = hint;
    Check(q);
  }
}

TEST_F(PagedAttentionGpu, DecodeHintHeadDims) {
  for (int d : {64, 80, 96, 128, 24, 32, 256}) {  // 24 takes the generic kernel
    Case c{"decode CHAI d" + std::to_string(d) + " hint 4", 16, 16, d, 16};
    c.lens = {1, 17, 1000, 3000};
    c.news.assign(c.lens.size(), 1);
    c.maps = {Dense(16), RandomClusters(16, 2), RandomClusters(16, 4), RandomClusters(16, 5)};
    c.hint = 4;
    Check(c);
  }
}

TEST_F(PagedAttentionGpu, DecodeMembersPerCta) {
  // CHAI_DECODE_MEMBERS_PER_CTA picks kernel 2's members per pass (1, 2, 4) and, below the real
  // share sizes, several passes per CTA; GQA 16/8 (2 heads per KV head) takes its group tile.
  for (const char* per_cta : {"1", "3", "8"}) {
    setenv("CHAI_DECODE_MEMBERS_PER_CTA", per_cta, 1);
    Case a{"decode CHAI 32 heads d128 hint 8, " + std::string(per_cta) + " per CTA", 32, 32, 128, 16};
    a.lens = {3000, 17, 4097, 1, 640};
    a.news.assign(a.lens.size(), 1);
    a.maps = {RandomClusters(32, 4), RandomClusters(32, 4), Unequal32({5, 17, 30}, 6), RandomClusters(32, 3), Dense(32)};
    a.hint = 8;
    Check(a);
    Case b{"decode GQA 16/8 d64 hint 4, " + std::string(per_cta) + " per CTA", 16, 8, 64, 16};
    b.lens = {2000, 4097, 33, 700};
    b.news.assign(b.lens.size(), 1);
    b.maps = {Dense(16), RandomClusters(16, 4), RandomClusters(16, 2), RandomClusters(16, 7)};
    b.hint = 4;
    Check(b);
  }
  unsetenv("CHAI_DECODE_MEMBERS_PER_CTA");
}

// ---- prefill: several new rows per sequence ---------------------------------------------------

TEST_F(PagedAttentionGpu, OptTinyDocsShape) {
  // opt-tiny-docs' attention (12 heads x 32, MHA, CHAI hint 3): chai_cluster_gpu_test's engine run on
  // that model aborted with an unspecified launch failure at 3a6a3ee; this is its attention alone,
  // prompts through prefill next to decode rows, then decode rows of CHAI and dense sequences.
  Case pre{"opt-tiny-docs shape: prefill + decode, CHAI hint 3", 12, 12, 32, 16};
  pre.lens = {37, 120, 5, 300};
  pre.news = {37, 1, 5, 1};
  pre.maps = {RandomClusters(12, 4), RandomClusters(12, 4), Dense(12), RandomClusters(12, 3)};
  pre.hint = 3;
  Check(pre);
  Case dec{"opt-tiny-docs shape: decode, CHAI hint 3", 12, 12, 32, 16};
  dec.lens = {6, 64, 65, 200, 511};
  dec.news.assign(dec.lens.size(), 1);
  dec.maps = {RandomClusters(12, 4), RandomClusters(12, 2), Dense(12), RandomClusters(12, 6), RandomClusters(12, 4)};
  dec.hint = 3;
  Check(dec);
}

TEST_F(PagedAttentionGpu, PrefillPrompts) {
  Case c{"prefill prompts dense d16", 2, 2, 16, 16};
  c.lens = {1, 5, 17, 300, 1000, 4097, 2};  // a 1-token prompt takes the decode kernel
  c.news = c.lens;
  c.maps.assign(c.lens.size(), Dense(2));
  Check(c);
}

TEST_F(PagedAttentionGpu, PrefillChaiChunked) {
  // Past context plus a chunk of new rows; a 5-member cluster (odd batches of 2 members).
  Case c{"prefill CHAI chunked d128", 8, 8, 128, 16};
  c.lens = {317, 1000, 40, 130};
  c.news = {17, 69, 40, 65};
  c.maps = {MapFromLabels({0, 0, 1, 0, 0, 2, 0, 1}), RandomClusters(8, 3), Dense(8), RandomClusters(8, 1)};
  Check(c);
}

TEST_F(PagedAttentionGpu, PrefillGqaChai) {
  Case c{"prefill GQA 8/2 CHAI d64 bs7", 8, 2, 64, 7};
  c.lens = {300, 77, 129};
  c.news = {300, 70, 64};
  c.maps = {RandomClusters(8, 3), Dense(8), RandomClusters(8, 5)};
  Check(c);
}

TEST_F(PagedAttentionGpu, PrefillLongPrompts) {
  // LLaMA-7B's heads (32 x 128) over GQA 32/8: whole prompts of 1000 and 2049 rows (many query
  // and key tiles, a partial last tile of one row past a multiple of 64 and 128), dense and CHAI.
  Case c{"prefill long prompts GQA 32/8 d128", 32, 8, 128, 16};
  c.lens = {1000, 2049};
  c.news = c.lens;
  c.maps = {Dense(32), RandomClusters(32, 6)};
  Check(c);
  Case m{"prefill long prompt CHAI MHA d64 bs7", 8, 8, 64, 7};
  m.lens = {2049};
  m.news = m.lens;
  m.maps = {MapFromLabels({0, 1, 0, 0, 1, 2, 0, 1})};
  m.hint = 3;
  Check(m);
}

TEST_F(PagedAttentionGpu, PrefillChunkedPast) {
  // Chunked prefill: past context plus new rows (row i at position len - n + i), chunks that start
  // and end off the tile grid, block sizes 16 and 7 (tile rows straddle blocks), with a decode row
  // and an idle sequence in the same batch.
  for (int bs : {16, 7}) {
    Case c{"prefill chunked past GQA 16/4 d128 bs" + std::to_string(bs), 16, 4, 128, bs};
    c.lens = {1500, 700, 130, 2100, 64, 300};
    c.news = {300, 129, 2, 1000, 1, 0};
    c.maps = {RandomClusters(16, 3), Dense(16), RandomClusters(16, 5), RandomClusters(16, 4), Dense(16), Dense(16)};
    Check(c);
  }
}

TEST_F(PagedAttentionGpu, PrefillHeadDims) {
  for (int d : {8, 24, 32, 80, 96, 256}) {
    Case c{"prefill CHAI d" + std::to_string(d), 4, 4, d, 16};
    c.lens = {100, 67};
    c.news = {100, 33};
    c.maps = {RandomClusters(4, 2), Dense(4)};
    Check(c);
  }
}

// ---- mixed: decode, prefill and idle sequences, dense and CHAI, in one batch ------------------

TEST_F(PagedAttentionGpu, MixedBatch) {
  Case c{"mixed decode/prefill/idle d64", 8, 8, 64, 16};
  c.lens = {4097, 90, 1, 300, 1000, 17, 64};
  c.news = {1, 90, 1, 0, 1, 9, 64};
  c.maps = {RandomClusters(8, 2), Dense(8), Dense(8), RandomClusters(8, 3), Dense(8), RandomClusters(8, 4),
            RandomClusters(8, 1)};
  Check(c);
  c.name += ", rows by slots";
  c.row_slots = true;
  Check(c);
}

}  // namespace
}  // namespace chai
