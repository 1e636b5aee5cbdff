// fp16 Linear (through ops::Linear) at the LLaMA-7B projection shapes (Q|K|V and gate|up stacked
// as the engine runs them), next to the device's measured copy bandwidth, which is the floor for
// the memory-bound decode GEMMs; then, for the decode shapes at T = 1, 4, 8 in fp16 and bf16,
// cuBLASLt (cuda::LinearCublasLt) next to the GEMV kernel (cuda::Gemv, which ops::Linear uses for
// T <= 8), each called directly, and a sweep of the GEMV's launch configurations (fp16); last,
// ops::LinearFused against the plain GEMV at the fusions the engine uses.
//
//   gemm_bench [samples=20] [fused | shards]   (fused: only the LinearFused and QkvLinearAppend tables, the
//   last two; shards: only the configurations at the tensor-parallel shards, ShardsTable)
//
// Each sample is one CUDA-event-timed pass over several weight copies (together well past the
// L2 cache, so decode GEMMs stream their weights from DRAM as in a real decode step); the
// table reports the median time per call. Inputs are random (never zeros). Bytes count every
// operand read once and the output written once; copy bandwidth counts read + write.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "kernels/paged_kv.h"
#include "kernels/tensor.h"

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/internal.h"

namespace chai {
namespace {

void Check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "gemm_bench: %s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

// Median over `samples` of the event time of fn() in milliseconds, after `warmup` calls.
template <typename F>
double MedianMs(int samples, int warmup, F&& fn) {
  cudaStream_t stream = cuda::CurrentStream();
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "cudaEventCreate");
  Check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < samples; ++i) {
    Check(cudaEventRecord(start, stream), "cudaEventRecord");
    fn();
    Check(cudaEventRecord(stop, stream), "cudaEventRecord");
    Check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    Check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  Check(cudaGetLastError(), "kernel launch");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Microseconds per call of call(c), timed as one run over c = 0 .. copies - 1 (each copy its own
// weights, so that repeated calls do not find them in L2).
template <typename F>
double MicrosPerCopy(int samples, int copies, F&& call) {
  return MedianMs(samples, 3,
                  [&] {
                    for (int c = 0; c < copies; ++c) call(c);
                  }) /
         copies * 1e3;
}

// Device-to-device copy of 1 GiB; returns GB/s counting bytes read plus bytes written.
double CopyBandwidth(int samples) {
  const size_t bytes = size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  Check(cudaMalloc(&src, bytes), "cudaMalloc");
  Check(cudaMalloc(&dst, bytes), "cudaMalloc");
  Check(cudaMemsetAsync(src, 0x3C, bytes, cuda::CurrentStream()), "cudaMemsetAsync");
  const double ms = MedianMs(samples, 3, [&] {
    Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::CurrentStream()), "cudaMemcpyAsync");
  });
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

struct Shape {
  int64_t t, k, n;
};

// Host fp32 draws, uniform with standard deviation `scale` (a fast generator: the decode weights
// have up to 131M elements per copy), cast to `dtype` and copied to the device.
Tensor FastRandom(std::vector<int64_t> shape, DType dtype, float scale, uint64_t& state) {
  Tensor host = Tensor::Empty(shape, DType::kF32);
  float* v = host.data<float>();
  const float half_width = scale * 1.7320508f;
  for (int64_t i = 0; i < host.numel(); ++i) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    v[i] = (static_cast<float>(state >> 40) * (2.f / 16777216.f) - 1.f) * half_width;
  }
  return host.Cast(dtype).To(Device::kCuda);
}

double RelErr(const Tensor& out, const Tensor& ref) {
  const std::vector<float> o = out.ToFloats(), r = ref.ToFloats();
  double num = 0, den = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (!std::isfinite(o[i])) return INFINITY;
    num += (double(o[i]) - r[i]) * (double(o[i]) - r[i]);
    den += double(r[i]) * r[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct DecodeShape {
  const char* name;
  int64_t k, n;
};

struct DecodeRow {
  std::string label;
  double lt_us, lt_gbs, gemv_us, gemv_gbs, err;
  bool layer;  // fp16, T = 1, one of the four projections of a LLaMA-7B layer
  double bytes;
};

// cuBLASLt vs the GEMV at the LLaMA-7B decode shapes. Weights rotate over copies past 4x L2
// (as above); x and out are per copy too. The table ends the output.
void DecodeTables(int samples, double copy_gbs, int l2_bytes) {
  // The projections of a LLaMA-7B decode step as the engine runs them (Q|K|V and gate|up stacked
  // into one GEMM each: runtime/model_weights.h), then the unstacked gate/up shape for comparison
  // with earlier tables; the last has fewer row blocks than SMs: the GEMV's split-K path.
  // The first four are one layer's projections (summed in the last line of the output).
  const DecodeShape shapes[] = {
      {"qkv 4096->12288", 4096, 12288},   {"o 4096->4096", 4096, 4096},         {"gate|up 4096->22016", 4096, 22016},
      {"down 11008->4096", 11008, 4096},  {"lm_head 4096->32000", 4096, 32000}, {"gate/up 4096->11008", 4096, 11008},
      {"gqa k/v 4096->1024", 4096, 1024},
  };
  const int64_t token_counts[] = {1, 4, 8};
  const int variants = cuda::GemvNumVariants();
  uint64_t state = 0x2545F4914F6CDD1Dull;
  std::vector<DecodeRow> rows;
  std::vector<std::string> sweep;  // fp16 rows of the variant sweep

  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (const DecodeShape& s : shapes) {
      const double weight_bytes = 2.0 * s.n * s.k;
      const int copies = std::max(2, static_cast<int>(4.0 * l2_bytes / weight_bytes) + 1);
      std::vector<Tensor> weights;
      for (int c = 0; c < copies; ++c) weights.push_back(FastRandom({s.n, s.k}, dtype, 1.f / 64, state));
      for (int64_t t : token_counts) {
        std::vector<Tensor> xs, lt_outs, gemv_outs;
        for (int c = 0; c < copies; ++c) {
          xs.push_back(FastRandom({t, s.k}, dtype, 1.f, state));
          lt_outs.push_back(Tensor::Empty({t, s.n}, dtype, Device::kCuda));
          gemv_outs.push_back(Tensor::Empty({t, s.n}, dtype, Device::kCuda));
        }
        const double bytes = 2.0 * (t * s.k + s.n * s.k + t * s.n);
        auto time_us = [&](auto&& call) { return MicrosPerCopy(samples, copies, call); };
        const double lt_us = time_us([&](int c) { cuda::LinearCublasLt(xs[c], weights[c], Tensor(), &lt_outs[c]); });
        const double gemv_us = time_us([&](int c) { cuda::Gemv(xs[c], weights[c], Tensor(), &gemv_outs[c]); });
        Check(cudaStreamSynchronize(cuda::CurrentStream()), "cudaStreamSynchronize");
        char label[96];
        std::snprintf(label, sizeof(label), "%s %-20s T=%lld", DTypeName(dtype), s.name, static_cast<long long>(t));
        const bool layer = dtype == DType::kF16 && t == 1 && &s - shapes < 4;
        rows.push_back({label, lt_us, bytes / (lt_us * 1e-6) / 1e9, gemv_us, bytes / (gemv_us * 1e-6) / 1e9,
                        RelErr(gemv_outs[0], lt_outs[0]), layer, bytes});
        if (dtype == DType::kF16) {
          std::string line = label;
          line.resize(34, ' ');
          for (int v = 0; v < variants; ++v) {
            const double us = time_us([&](int c) { cuda::Gemv(xs[c], weights[c], Tensor(), &gemv_outs[c], v); });
            Check(cudaStreamSynchronize(cuda::CurrentStream()), "cudaStreamSynchronize");
            const double err = RelErr(gemv_outs[0], lt_outs[0]);
            char cell[48];
            std::snprintf(cell, sizeof(cell), " %9.1f/%3.0f%%%s", us, 100.0 * bytes / (us * 1e-6) / 1e9 / copy_gbs,
                          err < 1e-2 ? " " : "!");
            line += cell;
          }
          sweep.push_back(line);
        }
      }
    }
  }

  std::printf("\nGEMV launch configurations, fp16 (median us / %% of copy bandwidth; ! = differs from cuBLASLt)\n");
  std::string header = "shape";
  header.resize(34, ' ');
  for (int v = 0; v < variants; ++v) {
    char cell[48];
    std::snprintf(cell, sizeof(cell), " %15s", cuda::GemvVariantName(v));
    header += cell;
  }
  std::printf("%s\n", header.c_str());
  for (const std::string& line : sweep) std::printf("%s\n", line.c_str());

  std::printf("\ndecode Linear, cuBLASLt vs GEMV (default configuration), copy bandwidth %.0f GB/s\n", copy_gbs);
  std::printf("%-34s %8s %7s %6s %8s %7s %6s %7s %8s\n", "shape", "lt_us", "GB/s", "%copy", "gemv_us", "GB/s", "%copy",
              "speedup", "rel_err");
  for (const DecodeRow& r : rows) {
    std::printf("%-34s %8.1f %7.0f %5.1f%% %8.1f %7.0f %5.1f%% %6.2fx %8.1e\n", r.label.c_str(), r.lt_us, r.lt_gbs,
                100.0 * r.lt_gbs / copy_gbs, r.gemv_us, r.gemv_gbs, 100.0 * r.gemv_gbs / copy_gbs, r.lt_us / r.gemv_us,
                r.err);
  }
  double layer_us = 0, layer_bytes = 0;
  for (const DecodeRow& r : rows) {
    if (r.layer) layer_us += r.gemv_us, layer_bytes += r.bytes;
  }
  std::printf(
      "\nLLaMA-7B layer, fp16, T=1 (qkv + o + gate|up + down through the GEMV): %.1f us, %.1f%% of copy "
      "bandwidth (%.1f us at copy bandwidth)\n",
      layer_us, 100.0 * layer_bytes / (layer_us * 1e-6) / 1e9 / copy_gbs, layer_bytes / copy_gbs * 1e-3);
}

// LinearFused (the GEMV with RMSNorm before it, the residual add or SiLU after it) against the
// plain GEMV of the same weight, at the LLaMA-7B decode shapes with the fusions the engine uses;
// and the kernels each fusion takes out of the step (timed alone: the step also saves their
// launch gaps). Weights rotate over copies past 4x L2 as above.
void FusedTable(int samples, double copy_gbs, int l2_bytes) {
  using ops::LinearOutput;
  struct FusedShape {
    const char* name;
    int64_t k, n;
    bool norm;
    LinearOutput output;
  };
  const FusedShape shapes[] = {
      {"qkv 4096->12288 +norm", 4096, 12288, true, LinearOutput::kStore},
      {"o 4096->4096 +add", 4096, 4096, false, LinearOutput::kAddTo},
      {"gate|up 4096->22016 +norm+silu", 4096, 22016, true, LinearOutput::kSiluMul},
      {"gate|up 4096->22016 +silu", 4096, 22016, false, LinearOutput::kSiluMul},
      {"gate|up 4096->22016 +norm", 4096, 22016, true, LinearOutput::kStore},
      {"down 11008->4096 +add", 11008, 4096, false, LinearOutput::kAddTo},
      {"lm_head 4096->32000 +norm", 4096, 32000, true, LinearOutput::kStore},
  };
  uint64_t state = 0x9E3779B97F4A7C15ull;
  std::printf("\nLinearFused vs the plain GEMV, fp16 (median us per call; %% of copy bandwidth %.0f GB/s)\n", copy_gbs);
  std::printf("%-34s %4s %9s %6s %9s %6s %8s %12s\n", "shape", "T", "gemv_us", "%copy", "fused_us", "%copy", "delta",
              "replaced_us");
  for (const FusedShape& s : shapes) {
    const double weight_bytes = 2.0 * s.n * s.k;
    const int copies = std::max(2, static_cast<int>(4.0 * l2_bytes / weight_bytes) + 1);
    std::vector<Tensor> weights;
    for (int c = 0; c < copies; ++c) weights.push_back(FastRandom({s.n, s.k}, DType::kF16, 1.f / 64, state));
    const Tensor norm_w = FastRandom({s.k}, DType::kF16, 1.f, state);
    const int64_t cols = s.output == LinearOutput::kSiluMul ? s.n / 2 : s.n;
    for (int64_t t : {1, 8}) {
      std::vector<Tensor> xs, outs, plain_outs, normed;
      for (int c = 0; c < copies; ++c) {
        xs.push_back(FastRandom({t, s.k}, DType::kF16, 1.f, state));
        outs.push_back(FastRandom({t, cols}, DType::kF16, 1.f, state));
        plain_outs.push_back(Tensor::Empty({t, s.n}, DType::kF16, Device::kCuda));
        normed.push_back(Tensor::Empty({t, s.k}, DType::kF16, Device::kCuda));
      }
      auto time_us = [&](auto&& call) { return MicrosPerCopy(samples, copies, call); };
      const ops::LinearFusion fusion{s.norm ? norm_w : Tensor(), 1e-5f, s.output};
      const double gemv_us = time_us([&](int c) { ops::Linear(xs[c], weights[c], Tensor(), &plain_outs[c]); });
      const double fused_us = time_us([&](int c) { ops::LinearFused(xs[c], weights[c], Tensor(), fusion, &outs[c]); });
      // What the fusion replaces: the norm (the add + norm kernel it stands for costs about the
      // same), the residual add, SiLU.
      const double replaced_us = time_us([&](int c) {
        if (s.norm) ops::RmsNorm(xs[c], norm_w, 1e-5f, &normed[c]);
        if (s.output == LinearOutput::kAddTo) ops::Add(outs[c], plain_outs[c], &outs[c]);
        if (s.output == LinearOutput::kSiluMul) ops::SiluMulFused(plain_outs[c], &outs[c]);
      });
      Check(cudaStreamSynchronize(cuda::CurrentStream()), "cudaStreamSynchronize");
      const double bytes = 2.0 * (t * s.k + s.n * s.k + t * s.n);
      std::printf("%-34s %4lld %9.1f %5.1f%% %9.1f %5.1f%% %+7.1f %12.1f\n", s.name, static_cast<long long>(t), gemv_us,
                  100.0 * bytes / (gemv_us * 1e-6) / 1e9 / copy_gbs, fused_us,
                  100.0 * bytes / (fused_us * 1e-6) / 1e9 / copy_gbs, fused_us - gemv_us, replaced_us);
    }
  }
}

// QkvLinearAppend (the Q|K|V GEMV whose epilogue splits q, k and v, rotates q and k and appends k and
// v to the paged cache) against the plain GEMV of the same weight and against the split + rotary +
// append kernel it replaces, at LLaMA-7B's Q|K|V (32 heads of 128, K = 4096): the epilogue's cost
// alone (the warm-cache profile of a step puts this GEMV ~2 us above the plain one on an H200).
// Each decode row is its own sequence at position 511 (block size 32), tables and pool on the
// device as the engine's; weights rotate over copies past 4x L2.
void QkvAppendTable(int samples, double copy_gbs, int l2_bytes) {
  constexpr int kHeads = 32, kKvHeads = 32, kHeadDim = 128, kBlock = 32, kMaxBlocks = 16, kPos = 511;
  constexpr int64_t kK = 4096, kN = int64_t{kHeads + 2 * kKvHeads} * kHeadDim, kQ = int64_t{kHeads} * kHeadDim;
  uint64_t state = 0xC0FFEEull;
  const double weight_bytes = 2.0 * kN * kK;
  const int copies = std::max(2, static_cast<int>(4.0 * l2_bytes / weight_bytes) + 1);
  std::vector<Tensor> weights;
  for (int c = 0; c < copies; ++c) weights.push_back(FastRandom({kN, kK}, DType::kF16, 1.f / 64, state));
  std::printf("\nQkvLinearAppend vs the plain GEMV, fp16, LLaMA-7B Q|K|V (median us per call; %% of copy bandwidth "
              "%.0f GB/s); split_us: SplitQkvRotaryAppend, the kernel it replaces\n",
              copy_gbs);
  std::printf("%-34s %4s %9s %6s %9s %6s %8s %9s\n", "shape", "T", "gemv_us", "%copy", "qkv_us", "%copy", "delta",
              "split_us");
  for (int t : {1, 8}) {
    // Row r's table: block (r * 2 * kv + side * kv + g) * kMaxBlocks + b for its b-th positions.
    std::vector<int32_t> tables(static_cast<size_t>(t) * 2 * kKvHeads * kMaxBlocks), q_start(t + 1), lens(t, kPos + 1),
        positions(t, kPos), rows(t);
    for (size_t i = 0; i < tables.size(); ++i) tables[i] = static_cast<int32_t>(i);
    for (int r = 0; r <= t; ++r) q_start[r] = r;
    for (int r = 0; r < t; ++r) rows[r] = r;
    PagedKv kv;
    kv.pool = Tensor::Empty({static_cast<int64_t>(tables.size()), kBlock, kHeadDim}, DType::kF16, Device::kCuda);
    kv.tables = Tensor::FromInts(tables, {t, 2, kKvHeads, kMaxBlocks}).To(Device::kCuda);
    kv.block_size = kBlock;
    kv.kv_heads = kKvHeads;
    kv.max_blocks = kMaxBlocks;
    BatchLayout batch;
    batch.q_start = Tensor::FromInts(q_start, {t + 1}).To(Device::kCuda);
    batch.seq_lens = Tensor::FromInts(lens, {t}).To(Device::kCuda);
    batch.token_rows = Tensor::FromInts(rows, {t}).To(Device::kCuda);
    batch.num_seqs = t;
    batch.max_new_tokens = 1;
    batch.max_seq_len = kPos + 1;
    const Tensor pos = Tensor::FromInts(positions, {t}).To(Device::kCuda);
    std::vector<Tensor> xs, qkvs, qs;
    for (int c = 0; c < copies; ++c) {
      xs.push_back(FastRandom({t, kK}, DType::kF16, 1.f, state));
      qkvs.push_back(Tensor::Empty({t, kN}, DType::kF16, Device::kCuda));
      qs.push_back(Tensor::Empty({t, kQ}, DType::kF16, Device::kCuda));
    }
    auto time_us = [&](auto&& call) { return MicrosPerCopy(samples, copies, call); };
    const double gemv_us = time_us([&](int c) { ops::Linear(xs[c], weights[c], Tensor(), &qkvs[c]); });
    const double qkv_us = time_us([&](int c) {
      ops::QkvLinearAppend(xs[c], weights[c], Tensor(), pos, kHeads, kKvHeads, kHeadDim, 10000.f, true, kv, batch,
                           &qs[c]);
    });
    const double split_us = time_us([&](int c) {
      ops::SplitQkvRotaryAppend(qkvs[c], pos, kHeads, kKvHeads, kHeadDim, 10000.f, true, kv, batch, &qs[c], nullptr,
                                nullptr);
    });
    Check(cudaStreamSynchronize(cuda::CurrentStream()), "cudaStreamSynchronize");
    const double bytes = 2.0 * (t * kK + kN * kK + t * kN);
    std::printf("%-34s %4d %9.1f %5.1f%% %9.1f %5.1f%% %+7.1f %9.1f\n", "qkv 4096->12288 +split+rotary+append", t,
                gemv_us, 100.0 * bytes / (gemv_us * 1e-6) / 1e9 / copy_gbs, qkv_us,
                100.0 * bytes / (qkv_us * 1e-6) / 1e9 / copy_gbs, qkv_us - gemv_us, split_us);
  }
}

// The decode GEMV's launch configurations at the tensor-parallel shards the engine runs (LLaMA-7B
// at TP = 1, 2, 4; OPT-66B at TP = 4), fp16, T = 1: per shape the default's grid (row blocks, waves
// of resident CTAs, how evenly its warps share a CTA's K span), then every configuration.
// (Splitting K over more CTAs than the plan does was swept here too, on an H200: slower at every
// shape, 2-15 us, since each CTA's work shrinks to a round trip or two; gemm-h200.md.)
// One shard's operands for a table of GEMV timings: weight copies past 4x L2 (every call reads
// DRAM), x [t, k] and out [t, n] per copy; `ref` is the default GEMV's output of copy 0, against
// which each timed launch's output of copy 0 is checked.
struct ShardOperands {
  std::vector<Tensor> weights, xs, outs;
  Tensor ref;
  double bytes;  // W, x and out once
  int copies() const { return static_cast<int>(weights.size()); }
  // "  us/ pct%" plus "*" for the default and "!" where outs[0] is off the reference.
  void PrintCell(double us, double copy_gbs, bool is_default) const {
    Check(cudaStreamSynchronize(cuda::CurrentStream()), "cudaStreamSynchronize");
    std::printf("  %6.1f/%3.0f%%%s%s", us, 100.0 * bytes / (us * 1e-6) / 1e9 / copy_gbs, is_default ? "*" : " ",
                RelErr(outs[0], ref) < 1e-2 ? " " : "!");
  }
};

ShardOperands MakeShardOperands(const DecodeShape& s, int64_t t, int l2_bytes, uint64_t& state) {
  ShardOperands o;
  const double weight_bytes = 2.0 * s.n * s.k;
  const int copies = std::max(2, static_cast<int>(4.0 * l2_bytes / weight_bytes) + 1);
  for (int c = 0; c < copies; ++c) {
    o.weights.push_back(FastRandom({s.n, s.k}, DType::kF16, 1.f / 64, state));
    o.xs.push_back(FastRandom({t, s.k}, DType::kF16, 1.f, state));
    o.outs.push_back(Tensor::Empty({t, s.n}, DType::kF16, Device::kCuda));
  }
  cuda::Gemv(o.xs[0], o.weights[0], Tensor(), &o.outs[0]);
  o.ref = o.outs[0].To(Device::kCpu);
  o.bytes = 2.0 * (t * s.k + s.n * s.k + t * s.n);
  return o;
}

// The GEMV shapes of every tensor-parallel shard the engine runs (LLaMA-7B at TP = 1, 2, 4; OPT-66B
// at TP = 4).
std::vector<DecodeShape> ShardShapes() {
  return {
      {"llama tp1 qkv", 4096, 12288},   {"llama tp1 o", 4096, 4096},      {"llama tp1 gate|up", 4096, 22016},
      {"llama tp1 down", 11008, 4096},  {"llama tp2 qkv", 4096, 6144},    {"llama tp2 o", 2048, 4096},
      {"llama tp2 gate|up", 4096, 11008}, {"llama tp2 down", 5504, 4096}, {"llama tp4 qkv", 4096, 3072},
      {"llama tp4 o", 1024, 4096},      {"llama tp4 gate|up", 4096, 5504}, {"llama tp4 down", 2752, 4096},
      {"opt66b tp4 qkv", 9216, 6912},   {"opt66b tp4 o", 2304, 9216},     {"opt66b tp4 fc1", 9216, 9216},
      {"opt66b tp4 fc2", 9216, 9216},   {"opt66b tp4 lm_head", 9216, 12568},
  };
}

void ShardsTable(int samples, double copy_gbs, int l2_bytes, int sms) {
  const std::vector<DecodeShape> shapes = ShardShapes();
  const int variants = cuda::GemvNumVariants();
  uint64_t state = 0x5EED5EEDull;
  std::printf("\nGEMV configurations at the TP shards, fp16, T=1 (us / %% of copy bandwidth %.0f GB/s; * = the "
              "default; ! = differs from the default's output)\n",
              copy_gbs);
  std::printf("%-22s %6s %5s %7s", "shape", "blocks", "waves", "balance");
  for (int v = 0; v < variants; ++v) std::printf(" %15s", cuda::GemvVariantName(v));
  std::printf("\n");
  for (const DecodeShape& s : shapes) {
    const cuda::GemvShapePlan plan = cuda::GemvPlan(s.k, s.n);
    ShardOperands ops = MakeShardOperands(s, 1, l2_bytes, state);
    std::printf("%-22s %6lld %5.2f %7.2f", s.name, static_cast<long long>(plan.row_blocks),
                plan.row_blocks * plan.splits / (double(sms) * plan.ctas_per_sm), plan.warp_balance);
    for (int v = 0; v < variants; ++v) {
      const double us = MicrosPerCopy(samples, ops.copies(),
                                      [&](int c) { cuda::Gemv(ops.xs[c], ops.weights[c], Tensor(), &ops.outs[c], v); });
      const bool is_default = std::string(cuda::GemvVariantName(v)) == plan.variant;
      ops.PrintCell(us, copy_gbs, is_default);
    }
    std::printf("\n");
  }
}

int Run(int samples, const std::string& mode) {
  cudaDeviceProp prop;
  int device = 0;
  Check(cudaGetDevice(&device), "cudaGetDevice");
  Check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  std::printf("device: %s (%d SMs, L2 %d MiB, %.0f GiB)\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20,
              prop.totalGlobalMem / double(1 << 30));

  const double copy_gbs = CopyBandwidth(samples);
  std::printf("copy bandwidth (device-to-device, 1 GiB, read + write): %.0f GB/s\n\n", copy_gbs);
  if (mode == "fused") {
    FusedTable(samples, copy_gbs, prop.l2CacheSize);
    QkvAppendTable(samples, copy_gbs, prop.l2CacheSize);
    return 0;
  }
  if (mode == "shards") {
    ShardsTable(samples, copy_gbs, prop.l2CacheSize, prop.multiProcessorCount);
    return 0;
  }

  uint64_t state = 7;
  const std::vector<Shape> shapes = {{1, 4096, 4096},  {1, 4096, 11008},    {1, 4096, 12288},
                                     {1, 4096, 22016}, {2048, 4096, 12288}, {2048, 4096, 4096}};
  std::printf("%-26s %7s %11s %9s %9s %9s\n", "fp16 Linear [T,K]x[K->N]", "copies", "median_us", "TFLOP/s", "GB/s",
              "%copyBW");
  for (const Shape& s : shapes) {
    const double weight_bytes = 2.0 * s.n * s.k;
    // Enough weight copies to exceed L2 several times over, so every call reads DRAM.
    const int copies = std::max(2, static_cast<int>(4.0 * prop.l2CacheSize / weight_bytes) + 1);
    std::vector<Tensor> weights, xs, outs;
    for (int c = 0; c < copies; ++c) {
      weights.push_back(FastRandom({s.n, s.k}, DType::kF16, 1.f / 64, state));
      xs.push_back(FastRandom({s.t, s.k}, DType::kF16, 1.f, state));
      outs.push_back(Tensor::Empty({s.t, s.n}, DType::kF16, Device::kCuda));
    }
    const double ms = MedianMs(samples, 3,
                               [&] {
                                 for (int c = 0; c < copies; ++c) ops::Linear(xs[c], weights[c], Tensor(), &outs[c]);
                               }) /
                      copies;
    const double flops = 2.0 * s.t * s.k * s.n;
    const double bytes = 2.0 * (s.t * s.k + s.n * s.k + s.t * s.n);
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    char name[64];
    std::snprintf(name, sizeof(name), "[%lld,%lld]x[%lld->%lld]", static_cast<long long>(s.t),
                  static_cast<long long>(s.k), static_cast<long long>(s.k), static_cast<long long>(s.n));
    std::printf("%-26s %7d %11.1f %9.2f %9.0f %8.1f%%\n", name, copies, ms * 1e3, flops / (ms * 1e-3) / 1e12, gbs,
                100.0 * gbs / copy_gbs);
  }
  Check(cudaStreamSynchronize(cuda::CurrentStream()), "cudaStreamSynchronize");
  DecodeTables(samples, copy_gbs, prop.l2CacheSize);
  FusedTable(samples, copy_gbs, prop.l2CacheSize);
  QkvAppendTable(samples, copy_gbs, prop.l2CacheSize);
  return 0;
}

}  // namespace
}  // namespace chai
#endif  // CHAI_WITH_CUDA

int main(int argc, char** argv) {
#ifdef CHAI_WITH_CUDA
  if (!chai::CudaAvailable()) {
    std::printf("gemm_bench: no CUDA device is visible\n");
    return 0;
  }
  const int samples = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const std::string mode = argc > 2 ? argv[2] : "";
  if (!mode.empty() && mode != "fused" && mode != "shards") {
    std::fprintf(stderr, "gemm_bench: unknown mode '%s' (expected fused or shards)\n", mode.c_str());
    return 2;
  }
  return chai::Run(samples, mode);
#else
  (void)argc;
  (void)argv;
  std::printf("gemm_bench: no CUDA (this build has no CUDA backend)\n");
  return 0;
#endif
}
