// Decode attention over the paged cache: dense vs CHAI, against the copy-bandwidth floor.
//
// 32 query heads x 128 (MHA, one KV head per query head), block size 32 (--block), batch B in {1, 8, 32},
// context {1k, 4k, 16k}, one new row per sequence. Dense reads K and V of all 32 heads; CHAI
// with 4 representatives (score_head maps heads 8c..8c+7 to 8c) keeps K for the 4
// representatives only and reads K of 4 + V of 32 heads. CHAI runs with the launch hint the
// engine would pass (kv.members_per_rep = 32 / 4, or --hint) and, for comparison, without it
// (hint 1: one CTA walks all 8 members of its representative). Each configuration is timed as
// CUDA graph replays of a run of calls that rotate over several copies of the cache (so that
// repeated calls do not find their K/V in L2), CUDA events around each replay, median per call.
// GB/s = the bytes each kernel must read / its time; the copy bandwidth (kernels/bandwidth.h,
// 1 GiB device-to-device, read + written) is measured in the same run, and bytes / copy
// bandwidth is the floor. Prints a markdown table.
//
//   attention_bench [--dtype fp16|bf16|fp32] [--batches 1,8,32] [--contexts 1024,4096,16384] [--replays N]
//                   [--hint M] [--members-per-cta N] [--ctas-per-sm N] [--kernel 1|2|3|4] [--block N]
//                   [--layout shuffled|runs] [--timeline FILE]
// --timeline (builds with -DCHAI_V4_TIMELINE=1 only): after timing each dense and CHAI configuration
// (not the hint-1 column), one more call records decode kernel 4's per-CTA timestamps of each pass
// (kernels/cuda/v4_timeline.h), appended to FILE as CSV rows (benchmarks/scripts/v4_timeline.py
// summarises them).
// --block sets the cache's block size (positions per block; default 32, the engine's since becf072;
// tables before 2026-11-28 ran the earlier default, 16): larger
// blocks make longer bulk copies in kernel 4. --layout runs gives each head's list consecutive
// blocks (contiguous memory, as a non-paged cache); the default shuffles them over the pool. --members-per-cta, --ctas-per-sm and --kernel set
// CHAI_DECODE_MEMBERS_PER_CTA, CHAI_DECODE_CTAS_PER_SM and CHAI_DECODE_KERNEL (the decode
// kernel's tuning knobs and which decode kernel runs, see kernels/cuda/paged_attention.cu) for
// this run; CHAI_DECODE_CHAI_KERNEL in the environment picks the CHAI columns' kernel (3 or 4)
// when --kernel is not given. Kernel 4 takes hint 1 as dense (its dense pass answers a CHAI map
// with NaN), so the "CHAI, hint 1" column (a CHAI map under hint 1) runs kernel 2 whenever
// kernel 4 would otherwise take it.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/bandwidth.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/v4_timeline.h"
#include "kernels/paged_kv.h"
#include "kernels/tensor.h"
#endif

#ifdef CHAI_WITH_CUDA
namespace chai {
namespace {

std::vector<int> ParseList(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

void Check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "attention_bench: %s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

constexpr int kHeads = 32, kHeadDim = 128, kReps = 4;

struct Result {
  double seconds = 0, bytes = 0;
};

// One more call of `call` with kernel 4's timeline on; its CTAs' words appended to `out` as CSV rows.
template <typename Call>
void RecordTimeline(int batch, int context, int block, bool shuffled, Call call, cudaStream_t stream, FILE* out) {
  constexpr int kMaxCtas = 3 << 16;  // three passes' regions
  constexpr const char* kPassNames[3] = {"dense", "scores", "pv"};
  unsigned long long* words = nullptr;
  const size_t bytes = size_t{kMaxCtas} * cuda::kV4TimelineWords * sizeof(unsigned long long);
  Check(cudaMalloc(&words, bytes), "timeline buffer");
  Check(cudaMemsetAsync(words, 0, bytes, stream), "timeline clear");
  cuda::SetV4Timeline(words, kMaxCtas);
  call(0);
  cuda::SetV4Timeline(nullptr, 0);
  std::vector<unsigned long long> host(size_t{kMaxCtas} * cuda::kV4TimelineWords);
  Check(cudaMemcpyAsync(host.data(), words, bytes, cudaMemcpyDeviceToHost, stream), "timeline copy");
  Check(cudaStreamSynchronize(stream), "timeline sync");
  cudaFree(words);
  for (int i = 0; i < kMaxCtas; ++i) {
    const unsigned long long* w = &host[size_t{i} * cuda::kV4TimelineWords];
    if (w[cuda::kTlExitNs] == 0) continue;  // no such CTA, or one with nothing to do
    std::fprintf(out, "%d,%d,%d,%s,%d,%s", batch, context, block, shuffled ? "shuffled" : "runs", i % (kMaxCtas / 3),
                 kPassNames[i / (kMaxCtas / 3)]);
    for (int k = 0; k < cuda::kV4TimelineWords; ++k) std::fprintf(out, ",%llu", w[k]);
    std::fprintf(out, "\n");
  }
  std::fflush(out);
}

// Times one configuration; `chai` keeps K for heads 0, 8, 16, 24 only; `hint` is passed as
// kv.members_per_rep.
Result TimeConfig(int batch, int context, int block, bool chai, int hint, DType dtype, int replays, size_t l2_bytes,
                  bool shuffled, cudaStream_t stream, FILE* timeline) {
  const size_t elt = DTypeSize(dtype);
  const int k_heads = chai ? kReps : kHeads;
  const double bytes = double(batch) * context * (k_heads + kHeads) * kHeadDim * elt;
  // Copies of the cache the calls rotate over: together at least 4x L2.
  const int copies = static_cast<int>(std::min<double>(16, std::max<double>(1, std::ceil(4.0 * l2_bytes / bytes))));
  const int blocks_per_list = (context + block - 1) / block;
  const int64_t blocks_per_copy = int64_t{batch} * (k_heads + kHeads) * blocks_per_list;
  const int64_t num_blocks = blocks_per_copy * copies;

  // Pool filled with a repeated random pattern (never zeros), block ids shuffled within a copy
  // (--layout runs: each (sequence, side, head) list takes consecutive ids, one contiguous run).
  Tensor pool = Tensor::Empty({num_blocks, block, kHeadDim}, dtype, Device::kCuda);
  {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.f, 1.f);
    std::vector<float> pattern(size_t{8} << 20);
    for (float& x : pattern) x = dist(rng);
    Tensor host = Tensor::FromFloats(pattern, {static_cast<int64_t>(pattern.size())}).Cast(dtype);
    Tensor dev = host.To(Device::kCuda);
    const size_t total = pool.nbytes(), chunk = dev.nbytes();
    for (size_t off = 0; off < total; off += chunk) {
      Check(cudaMemcpyAsync(static_cast<char*>(pool.raw()) + off, dev.raw(), std::min(chunk, total - off),
                            cudaMemcpyDeviceToDevice, stream),
            "fill pool");
    }
    Check(cudaStreamSynchronize(stream), "sync");
  }

  std::mt19937 rng(11);
  std::vector<Tensor> tables(copies);
  for (int c = 0; c < copies; ++c) {
    std::vector<int32_t> ids(blocks_per_copy);
    std::iota(ids.begin(), ids.end(), static_cast<int32_t>(c * blocks_per_copy));
    if (shuffled) std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<int32_t> t(static_cast<size_t>(batch) * 2 * kHeads * blocks_per_list, -1);
    size_t next = 0;
    for (int s = 0; s < batch; ++s)
      for (int side = 0; side < 2; ++side)
        for (int g = 0; g < kHeads; ++g) {
          if (side == 0 && chai && g % (kHeads / kReps) != 0) continue;  // dropped K
          for (int b = 0; b < blocks_per_list; ++b)
            t[((size_t(s) * 2 + side) * kHeads + g) * blocks_per_list + b] = ids[next++];
        }
    tables[c] = Tensor::FromInts(t, {batch, 2, kHeads, blocks_per_list}).To(Device::kCuda);
  }
  std::vector<int32_t> q_start(batch + 1), lens(batch, context), score(static_cast<size_t>(batch) * kHeads);
  std::iota(q_start.begin(), q_start.end(), 0);
  for (int s = 0; s < batch; ++s)
    for (int h = 0; h < kHeads; ++h) score[size_t(s) * kHeads + h] = chai ? h / (kHeads / kReps) * (kHeads / kReps) : h;
  BatchLayout layout;
  layout.q_start = Tensor::FromInts(q_start, {batch + 1}).To(Device::kCuda);
  layout.seq_lens = Tensor::FromInts(lens, {batch}).To(Device::kCuda);
  layout.num_seqs = batch;
  layout.max_new_tokens = 1;
  layout.max_seq_len = context;
  Tensor score_head = Tensor::FromInts(score, {batch, kHeads}).To(Device::kCuda);
  std::vector<float> qv(static_cast<size_t>(batch) * kHeads * kHeadDim);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (float& x : qv) x = dist(rng);
  Tensor q = Tensor::FromFloats(qv, {batch, kHeads * kHeadDim}).Cast(dtype).To(Device::kCuda);
  Tensor out = Tensor::Empty({batch, kHeads * kHeadDim}, dtype, Device::kCuda);

  // Kernel 4 takes hint 1 as dense: a CHAI map under hint 1 runs kernel 2 instead (see the
  // header), restored on return.
  struct KernelOverride {
    std::string saved;
    bool had = false, active = false;
    explicit KernelOverride(bool chai_hint1) {
      if (!chai_hint1) return;
      const char* env = std::getenv("CHAI_DECODE_KERNEL");
      had = env != nullptr;
      if (had) saved = env;
      if (!had || std::atoi(env) == 4) {
        active = true;
        setenv("CHAI_DECODE_KERNEL", "2", 1);
      }
    }
    ~KernelOverride() {
      if (!active) return;
      if (had) {
        setenv("CHAI_DECODE_KERNEL", saved.c_str(), 1);
      } else {
        unsetenv("CHAI_DECODE_KERNEL");
      }
    }
  } kernel_override(chai && hint == 1);

  auto call = [&](int c) {
    PagedKv kv;
    kv.pool = pool;
    kv.tables = tables[c];
    kv.block_size = block;
    kv.kv_heads = kHeads;
    kv.max_blocks = blocks_per_list;
    kv.members_per_rep = hint;
    cuda::PagedAttention(q, kv, layout, score_head, &out);
  };
  for (int i = 0; i < 2 * copies; ++i) call(i % copies);  // warm-up; sizes the split scratch
  Check(cudaStreamSynchronize(stream), "warm-up");

  // One graph: a run of calls over the copies.
  const int calls = std::max(copies, 8);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  Check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
  for (int i = 0; i < calls; ++i) call(i % copies);
  Check(cudaStreamEndCapture(stream, &graph), "end capture");
  Check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaEvent_t e0, e1;
  Check(cudaEventCreate(&e0), "event");
  Check(cudaEventCreate(&e1), "event");
  std::vector<double> times;
  for (int i = 0; i < replays + 3; ++i) {
    Check(cudaEventRecord(e0, stream), "record");
    Check(cudaGraphLaunch(exec, stream), "graph launch");
    Check(cudaEventRecord(e1, stream), "record");
    Check(cudaEventSynchronize(e1), "sync");
    float ms = 0;
    Check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    if (i >= 3) times.push_back(ms * 1e-3 / calls);
  }
  Check(cudaGetLastError(), "replays");
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  Check(cudaStreamSynchronize(stream), "sync");
  if (timeline != nullptr && (!chai || hint > 1)) RecordTimeline(batch, context, block, shuffled, call, stream, timeline);
  return Result{Median(times), bytes};
}

int Main(int argc, char** argv) {
  DType dtype = DType::kF16;
  std::vector<int> batches = {1, 8, 32}, contexts = {1024, 4096, 16384};
  int replays = 20, hint = kHeads / kReps, block = 32;
  bool shuffled = true;
  const char* timeline_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--dtype") {
      dtype = std::string(v) == "fp32" ? DType::kF32 : std::string(v) == "bf16" ? DType::kBF16 : DType::kF16;
      ++i;
    } else if (a == "--batches") {
      batches = ParseList(v);
      ++i;
    } else if (a == "--contexts") {
      contexts = ParseList(v);
      ++i;
    } else if (a == "--replays") {
      replays = std::max(1, std::atoi(v));
      ++i;
    } else if (a == "--hint") {
      hint = std::max(1, std::atoi(v));
      ++i;
    } else if (a == "--members-per-cta") {
      setenv("CHAI_DECODE_MEMBERS_PER_CTA", v, 1);
      ++i;
    } else if (a == "--ctas-per-sm") {
      setenv("CHAI_DECODE_CTAS_PER_SM", v, 1);
      ++i;
    } else if (a == "--block") {
      block = std::atoi(v);
      if (block < 1) {
        std::fprintf(stderr, "attention_bench: --block expects a positive block size, got '%s'\n", v);
        return 2;
      }
      ++i;
    } else if (a == "--layout") {
      if (std::string(v) != "shuffled" && std::string(v) != "runs") {
        std::fprintf(stderr, "attention_bench: --layout expects shuffled or runs, got '%s'\n", v);
        return 2;
      }
      shuffled = std::string(v) == "shuffled";
      ++i;
    } else if (a == "--kernel") {
      setenv("CHAI_DECODE_KERNEL", v, 1);
      ++i;
    } else if (a == "--timeline" && *v != '\0') {
      if (!cuda::V4TimelineBuilt()) {
        std::fprintf(stderr, "attention_bench: --timeline needs a build with -DCHAI_V4_TIMELINE=1 in CMAKE_CUDA_FLAGS\n");
        return 2;
      }
      timeline_path = v;
      ++i;
    } else {
      std::fprintf(stderr,
                   "usage: attention_bench [--dtype fp16|bf16|fp32] [--batches 1,8,32] "
                   "[--contexts 1024,4096,16384] [--replays N] [--hint M] [--members-per-cta N] "
                   "[--ctas-per-sm N] [--kernel 1|2|3|4] [--block N] [--layout shuffled|runs] [--timeline FILE]\n");
      return 2;
    }
  }
  FILE* timeline = nullptr;
  if (timeline_path != nullptr) {
    timeline = std::fopen(timeline_path, "w");
    if (timeline == nullptr) {
      std::fprintf(stderr, "attention_bench: cannot write --timeline file '%s'\n", timeline_path);
      return 1;
    }
    std::fprintf(timeline, "batch,context,block,layout,cta,pass,sm,entry_ns,exit_ns,entry_clk,init_clk,bounds_clk,"
                           "barrier_clk,issued_clk,first_clk,loop_end_clk,exit_clk,items_clk\n");
  }
  int device = 0;
  Check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop;
  Check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  cudaStream_t stream = cuda::CurrentStream();
  const double copy_bw = MeasureCopyBandwidth(Device::kCuda, size_t{1} << 30);
  if (!(copy_bw > 0)) {
    std::fprintf(stderr, "attention_bench: could not measure the copy bandwidth\n");
    return 1;
  }
  const char* per_cta = std::getenv("CHAI_DECODE_MEMBERS_PER_CTA");
  const char* per_sm = std::getenv("CHAI_DECODE_CTAS_PER_SM");
  const char* kernel = std::getenv("CHAI_DECODE_KERNEL");
  std::printf("device: %s, %d SMs, L2 %.0f MB; %s; copy bandwidth (1 GiB D2D, read+write) %.0f GB/s\n\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize / 1e6, DTypeName(dtype), copy_bw / 1e9);
  std::printf(
      "decode attention, %d heads x %d, block %d (%s); CHAI = %d representatives of %d heads each (K of %d + V of %d "
      "heads), decode kernel %s, launch hint members_per_rep = %d, CHAI_DECODE_MEMBERS_PER_CTA = %s, "
      "CHAI_DECODE_CTAS_PER_SM = %s; byte bound = dense bytes / CHAI bytes\n\n",
      kHeads, kHeadDim, block, shuffled ? "shuffled blocks" : "contiguous runs", kReps, kHeads / kReps, kReps, kHeads,
      kernel != nullptr ? kernel : "default (4 where it applies: sm_90, fp16/bf16, d 64/128)", hint,
      per_cta != nullptr ? per_cta : "default", per_sm != nullptr ? per_sm : "default");
  std::printf(
      "| B | context | dense (us) | dense GB/s | dense %% of copy | CHAI (us) | CHAI GB/s | CHAI %% of copy | CHAI "
      "speedup | byte bound | CHAI, hint 1 (us) | hint 1 %% of copy |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int b : batches) {
    for (int ctx : contexts) {
      const Result dense = TimeConfig(b, ctx, block, false, 1, dtype, replays, prop.l2CacheSize, shuffled, stream, timeline);
      const Result chai = TimeConfig(b, ctx, block, true, hint, dtype, replays, prop.l2CacheSize, shuffled, stream, timeline);
      const Result flat = TimeConfig(b, ctx, block, true, 1, dtype, replays, prop.l2CacheSize, shuffled, stream, timeline);
      const auto gbs = [](const Result& r) { return r.bytes / r.seconds; };
      std::printf("| %d | %d | %.1f | %.0f | %.1f%% | %.1f | %.0f | %.1f%% | %.2fx | %.2fx | %.1f | %.1f%% |\n", b, ctx,
                  dense.seconds * 1e6, gbs(dense) / 1e9, 100.0 * gbs(dense) / copy_bw, chai.seconds * 1e6,
                  gbs(chai) / 1e9, 100.0 * gbs(chai) / copy_bw, dense.seconds / chai.seconds, dense.bytes / chai.bytes,
                  flat.seconds * 1e6, 100.0 * gbs(flat) / copy_bw);
      std::fflush(stdout);
    }
  }
  if (timeline != nullptr) std::fclose(timeline);
  return 0;
}

}  // namespace
}  // namespace chai

int main(int argc, char** argv) { return chai::Main(argc, argv); }
#else
int main() {
  std::printf("attention_bench: this build has no CUDA backend\n");
  return 0;
}
#endif
