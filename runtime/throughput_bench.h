// `chai bench --mode throughput`: a stream of random requests through the in-flight batching
// scheduler. Prompt and output lengths are drawn from distributions, arrivals are a Poisson
// process of the given rate (or all at once with rate inf), and the run reports requests/s,
// output tokens/s, TTFT and TPOT percentiles, KV-pool utilisation and preemptions.
//
// Length distributions: "fixed:N" (always N) or "uniform:A:B" (integers A..B inclusive, uniform).
#ifndef CHAI_RUNTIME_THROUGHPUT_BENCH_H_
#define CHAI_RUNTIME_THROUGHPUT_BENCH_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/chai/chai_policy.h"
#include "runtime/engine.h"

namespace chai {

struct LengthDist {
  int lo = 1, hi = 1;  // inclusive
  int Sample(std::mt19937_64& rng) const;
};

// Parses "fixed:N" or "uniform:A:B" (1 <= A <= B); `flag` names the flag in errors.
absl::StatusOr<LengthDist> ParseLengthDist(const std::string& flag, const std::string& text);

struct ThroughputBenchOptions {
  int num_requests = 64;
  LengthDist input_len{128, 128};
  LengthDist output_len{128, 128};
  double request_rate = 0;  // requests/s; <= 0: all arrive at the start
  uint64_t seed = 0;
  int max_prefill_tokens_per_step = 512;
  const ChaiPolicy* chai = nullptr;      // set: every request is CHAI
  std::vector<int> chai_local_clusters;  // for the scheduler's KV estimate
  bool progress = true;                  // a progress bar on stderr
};

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, mean = 0;
};

struct ThroughputBenchResult {
  int completed = 0;
  int failed = 0;  // requests that could not run (e.g. larger than the KV pool)
  double duration_s = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  double requests_per_s = 0;
  double output_tokens_per_s = 0;
  Percentiles ttft_s, tpot_s;
  double kv_utilisation_mean = 0, kv_utilisation_peak = 0;
  int64_t preemptions = 0;
  int64_t steps = 0;
  int64_t kv_blocks = 0;
  int max_running = 0;      // most sequences running at once (after a step's admissions)
  double mean_running = 0;  // averaged over steps
};

absl::StatusOr<ThroughputBenchResult> RunThroughputBench(Engine& engine, const ThroughputBenchOptions& options);

Percentiles ComputePercentiles(std::vector<double> values);

}  // namespace chai

#endif  // CHAI_RUNTIME_THROUGHPUT_BENCH_H_
