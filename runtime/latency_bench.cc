#include "runtime/latency_bench.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "kernels/bandwidth.h"
#include "kernels/gemm_rate.h"
#include "parallel/collective_latency.h"
#include "runtime/generator.h"

namespace chai {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Bytes of weights a decode step streams: everything but the token/position tables, of which
// it reads a few rows (a tied LM head is the token table and is read in full).
int64_t WeightBytesReadPerStep(const ModelWeights& w) {
  int64_t bytes = static_cast<int64_t>(w.bytes);
  if (w.embed_positions.defined()) bytes -= static_cast<int64_t>(w.embed_positions.nbytes());
  if (w.lm_head.raw() != w.embed_tokens.raw()) bytes -= static_cast<int64_t>(w.embed_tokens.nbytes());
  return bytes;
}

// Matrix FLOPs of prefilling `batch` prompts of `len` tokens on this rank: 2 x parameters x
// tokens for the projections, 2 x (heads x head_dim) x len^2 per layer and sequence for the causal
// Q.K^T and P.V products (each len^2 / 2 dot products of head_dim), and the LM head on each
// sequence's last row.
double PrefillFlops(const ModelConfig& c, const ModelWeights& w, int batch, int len) {
  double params = 0;
  for (const LayerWeights& l : w.layers) {
    for (const Tensor* t : {&l.qkv_w, &l.o_w, &l.gate_up_w, &l.up_w, &l.down_w}) {
      if (t->defined()) params += static_cast<double>(t->numel());
    }
  }
  const double tokens = double{1} * batch * len;
  const double attention = 2.0 * c.num_layers * w.local_heads * c.head_dim * double{1} * len * len * batch;
  return 2.0 * params * tokens + attention + 2.0 * static_cast<double>(w.lm_head.numel()) * batch;
}

// One progress line on stderr: where a decode step's wall time goes on the host ("logits" is
// mostly waiting for the device), and how many steps were enqueued before the previous step's
// tokens reached the host (pipelined greedy decode, Engine::EnqueueGreedy; 0 with
// CHAI_DECODE_PIPELINE=0).
void PrintProgress(const LatencyBenchOptions& o, int i, const GenerateResult& result) {
  const bool measured = i >= o.warmup;
  const StepTimes& st = result.decode_times;
  const double per = 1e3 / std::max<int64_t>(1, result.decode_steps);
  const double step = result.decode_seconds / std::max<int64_t>(1, result.decode_steps);
  std::fprintf(stderr,
               "%s %d/%d: prefill %.2f ms, decode %.3f ms/step (host: prepare %.3f, launch %.3f, logits %.3f, "
               "finish %.3f, sampling %.3f; %lld of %lld steps enqueued ahead)\n",
               measured ? "iter" : "warmup", measured ? i - o.warmup + 1 : i + 1, measured ? o.iters : o.warmup,
               result.prefill_seconds * 1e3, step * 1e3, st.prepare * per, st.launch * per, st.logits * per,
               st.finish * per, result.decode_sampling_seconds * per, static_cast<long long>(st.fed),
               static_cast<long long>(result.decode_steps));
}

// o.warmup untimed and o.iters timed generations of the same random prompts: the medians of
// TTFT and TPOT, and the KV bytes per token the requests held.
absl::Status TimeGenerations(Engine& engine, const LatencyBenchOptions& o, LatencyBenchResult* r) {
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> token(3, engine.config().vocab_size - 1);
  std::vector<std::vector<int32_t>> prompts(o.batch, std::vector<int32_t>(o.input_len));
  for (auto& p : prompts)
    for (auto& t : p) t = token(rng);

  GenerateOptions gen;
  gen.max_new_tokens = o.output_len;
  gen.chai = o.chai;
  std::vector<double> ttft, tpot;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    auto result = Generate(engine, prompts, gen);
    if (!result.ok()) return result.status();
    if (i >= o.warmup) {
      ttft.push_back(result->prefill_seconds);
      tpot.push_back(result->decode_seconds / std::max<int64_t>(1, result->decode_steps));
      r->decode_steps += result->decode_steps;
      r->decode_steps_ahead += result->decode_times.fed;
      r->kv_bytes_per_token = result->sequences[0]->kv.KBytesPerToken() + result->sequences[0]->kv.VBytesPerToken();
    }
    if (o.progress && engine.comm()->rank() == 0) PrintProgress(o, i, *result);
  }
  r->ttft_s = Median(ttft);
  r->tpot_s = Median(tpot);
  r->tokens_per_s = o.batch / r->tpot_s;
  return absl::OkStatus();
}

// The floor: the bytes a decode step reads over the copy bandwidth measured now, plus under
// tensor parallelism the step's all-reduces at the latency measured now for their size.
absl::Status MeasureFloor(Engine& engine, const LatencyBenchOptions& o, LatencyBenchResult* r) {
  const ModelConfig& c = engine.config();
  const ModelWeights& w = engine.weights();
  r->weight_bytes = static_cast<int64_t>(w.bytes);
  r->kv_pool_bytes = engine.kv_pool().num_blocks() * engine.kv_pool().block_bytes();
  r->weight_bytes_read_per_step = WeightBytesReadPerStep(w);
  const int64_t elem = static_cast<int64_t>(DTypeSize(engine.kv_pool().storage().dtype()));
  r->dense_kv_bytes_per_token = 2LL * c.num_layers * w.local_kv_heads * c.head_dim * elem;
  // Decode step j (1..O-1) attends over I + j positions; use the mean context.
  const double mean_context = o.input_len + o.output_len / 2.0;
  r->kv_bytes_read_per_step = static_cast<double>(r->kv_bytes_per_token) * mean_context * o.batch;
  // 1 GiB copies on a GPU (steadier and closer to the rate a step's 3-30 GiB stream sees than
  // 256 MiB ones, bandwidth.h); 256 MiB on the host, where a copy takes tens of ms.
  const Device device = engine.kv_pool().storage().device();
  size_t copy_bytes = 0;
  r->copy_bandwidth =
      MeasureCopyBandwidth(device, device == Device::kCuda ? size_t{1} << 30 : size_t{1} << 28, &copy_bytes);
  r->copy_bytes = static_cast<int64_t>(copy_bytes);
  if (r->copy_bandwidth <= 0) {
    return absl::ResourceExhaustedError("cannot measure the copy bandwidth: no room for two 64 MiB buffers on the device");
  }
  r->memory_floor_s = FloorSeconds(r->weight_bytes_read_per_step + r->kv_bytes_read_per_step, r->copy_bandwidth);
  Communicator& comm = *engine.comm();
  if (comm.size() > 1) {
    // The embedding's all-reduce is [batch, embed_dim]; embed_dim == hidden except for OPT-350m's
    // projection, where counting it at the hidden size changes the sum by a fraction of one call.
    const int64_t count = int64_t{o.batch} * c.hidden_size;
    auto latency = MeasureAllReduceSeconds(comm, count, engine.dtype(), engine.device());
    if (!latency.ok()) return latency.status();
    r->allreduces_per_step = 2 * c.num_layers + 1;
    r->allreduce_bytes = count * static_cast<int64_t>(DTypeSize(engine.dtype()));
    r->allreduce_s = *latency;
    r->allreduce_floor_s = r->allreduces_per_step * r->allreduce_s;
  }
  r->floor_s = r->memory_floor_s + r->allreduce_floor_s;
  return absl::OkStatus();
}

// Prefill's FLOP rate beside a large GEMM's, measured once per process and dtype: every row of a
// `chai bench` run compares with the same GEMM rate (and the 224 MB of operands are not built
// again per row).
void MeasurePrefillRate(Engine& engine, const LatencyBenchOptions& o, LatencyBenchResult* r) {
  r->prefill_flops = PrefillFlops(engine.config(), engine.weights(), o.batch, o.input_len);
  r->prefill_flops_per_s = r->prefill_flops / r->ttft_s;
  static std::map<std::pair<Device, DType>, double> gemm_rate;
  const auto key = std::make_pair(engine.kv_pool().storage().device(), engine.dtype());
  if (gemm_rate.count(key) == 0) gemm_rate[key] = MeasureGemmFlops(key.first, key.second);
  r->gemm_flops_per_s = gemm_rate[key];
}

}  // namespace

absl::StatusOr<LatencyBenchResult> RunLatencyBench(Engine& engine, const LatencyBenchOptions& o) {
  if (o.batch < 1 || o.input_len < 1 || o.output_len < 2 || o.iters < 1 || o.warmup < 0) {
    return absl::InvalidArgumentError(
        "--batch and --input-len must be >= 1, --output-len >= 2, --iters >= 1, --warmup >= 0");
  }
  if (o.input_len + o.output_len > engine.config().max_positions) {
    return absl::InvalidArgumentError("--input-len + --output-len exceeds the model's maximum positions");
  }
  LatencyBenchResult r;
  if (auto s = TimeGenerations(engine, o, &r); !s.ok()) return s;
  if (auto s = MeasureFloor(engine, o, &r); !s.ok()) return s;
  MeasurePrefillRate(engine, o, &r);
  return r;
}

}  // namespace chai
