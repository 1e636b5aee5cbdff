// `chai bench --mode latency`: a fixed batch of random prompts, prefilled together and decoded
// together; time to first token, time per output token, and the floor a decode step cannot
// beat: the bytes it must read over the memory bandwidth measured in the same run, plus, with
// tensor parallelism, its all-reduces at the latency measured in the same run.
#ifndef CHAI_RUNTIME_LATENCY_BENCH_H_
#define CHAI_RUNTIME_LATENCY_BENCH_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "runtime/chai/chai_policy.h"
#include "runtime/engine.h"

namespace chai {

struct LatencyBenchOptions {
  int batch = 1;
  int input_len = 128;
  int output_len = 32;
  int warmup = 1;
  int iters = 3;
  uint64_t seed = 0;
  const ChaiPolicy* chai = nullptr;
  bool progress = true;  // a line on stderr per iteration
};

struct LatencyBenchResult {
  double ttft_s = 0;          // median prefill time (all prompts) to the first tokens
  double tpot_s = 0;          // median decode step time
  // Decode steps over the timed iterations, and of them those enqueued before the previous step's
  // tokens reached the host (pipelined greedy decode: graph-replayed steps on a GPU; none on the CPU).
  int64_t decode_steps = 0, decode_steps_ahead = 0;
  double tokens_per_s = 0;    // batch / tpot
  int64_t weight_bytes = 0;   // held by this rank
  int64_t kv_pool_bytes = 0;  // this rank's KV block pool (weights + pool: the bulk of its device memory)
  int64_t weight_bytes_read_per_step = 0;
  int64_t kv_bytes_per_token = 0;        // per sequence, as stored at the end (CHAI: K of reps only)
  int64_t dense_kv_bytes_per_token = 0;  // per sequence without CHAI
  double kv_bytes_read_per_step = 0;     // all sequences, mean context over the decode
  double copy_bandwidth = 0;             // bytes/s, read + write
  int64_t copy_bytes = 0;                // the size of the copies it was measured with
  double memory_floor_s = 0;             // (weights + KV) read per step / copy bandwidth
  // Tensor parallelism (0 on one rank): a decode step all-reduces [batch, hidden] after the
  // embedding and twice per layer. One such all-reduce, timed through the engine's communicator
  // (so through the IPC path where it is on) in a recorded graph of back-to-back calls.
  int allreduces_per_step = 0;
  int64_t allreduce_bytes = 0;
  double allreduce_s = 0;
  double allreduce_floor_s = 0;          // allreduces_per_step * allreduce_s
  double floor_s = 0;                    // memory_floor_s + allreduce_floor_s
  // Prefill (compute-bound): this rank's matrix FLOPs for the batch's prompts (projections, the
  // causal attention products, the LM head on the last rows), their rate over TTFT, and the rate
  // of a large GEMM of the run's dtype measured in the same run (0 on the CPU: not measured).
  double prefill_flops = 0;
  double prefill_flops_per_s = 0;
  double gemm_flops_per_s = 0;
};

absl::StatusOr<LatencyBenchResult> RunLatencyBench(Engine& engine, const LatencyBenchOptions& options);

}  // namespace chai

#endif  // CHAI_RUNTIME_LATENCY_BENCH_H_
