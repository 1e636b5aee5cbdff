#include "runtime/throughput_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/scheduler/scheduler.h"

namespace chai {

int LengthDist::Sample(std::mt19937_64& rng) const {
  if (hi <= lo) return lo;
  return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

absl::StatusOr<LengthDist> ParseLengthDist(const std::string& flag, const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " expects fixed:N or uniform:A:B with 1 <= A <= B, got '", text, "'"));
  };
  LengthDist d;
  if (parts.size() == 2 && parts[0] == "fixed") {
    if (!absl::SimpleAtoi(parts[1], &d.lo) || d.lo < 1) return bad();
    d.hi = d.lo;
    return d;
  }
  if (parts.size() == 3 && parts[0] == "uniform") {
    if (!absl::SimpleAtoi(parts[1], &d.lo) || !absl::SimpleAtoi(parts[2], &d.hi) || d.lo < 1 || d.hi < d.lo) return bad();
    return d;
  }
  return bad();
}

Percentiles ComputePercentiles(std::vector<double> values) {
  Percentiles p;
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  // Linear interpolation between closest ranks (numpy's default).
  auto at = [&](double q) {
    const double pos = q * static_cast<double>(values.size() - 1);
    const size_t i = static_cast<size_t>(std::floor(pos));
    const size_t j = std::min(i + 1, values.size() - 1);
    return values[i] + (values[j] - values[i]) * (pos - static_cast<double>(i));
  };
  p.p50 = at(0.5);
  p.p90 = at(0.9);
  p.p99 = at(0.99);
  double sum = 0;
  for (double v : values) sum += v;
  p.mean = sum / static_cast<double>(values.size());
  return p;
}

namespace {

void ProgressBar(int done, int total, double elapsed) {
  const int width = 30;
  const int filled = total == 0 ? width : done * width / total;
  std::fprintf(stderr, "\r[%s%s] %d/%d requests, %.1f s", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), done, total, elapsed);
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

// The requests: random prompt ids (above the special ids), no stop tokens, so every request
// produces exactly its drawn output length; Poisson arrivals after `start`.
absl::Status SubmitRequests(const ModelConfig& config, const ThroughputBenchOptions& options, double start,
                            std::mt19937_64& rng, Scheduler& scheduler) {
  double arrival = start;
  std::exponential_distribution<double> gap(options.request_rate > 0 ? options.request_rate : 1.0);
  for (int i = 0; i < options.num_requests; ++i) {
    Request r;
    r.id = i;
    const int in = options.input_len.Sample(rng);
    r.max_new_tokens = options.output_len.Sample(rng);
    for (int t = 0; t < in; ++t) {
      r.prompt.push_back(static_cast<int32_t>(config.vocab_size > 8 ? 4 + rng() % (config.vocab_size - 4)
                                                                    : rng() % config.vocab_size));
    }
    r.chai = options.chai != nullptr;
    if (options.request_rate > 0 && i > 0) arrival += gap(rng);
    r.arrival_time = arrival;
    if (auto s = scheduler.Submit(std::move(r)); !s.ok()) {
      // The CLI checked the positions before loading; what is left is a request the whole KV cache
      // cannot hold.
      if (!absl::IsResourceExhausted(s)) return s;
      return absl::ResourceExhaustedError(
          absl::StrCat(s.message(), " (shorten --input-len-dist/--output-len-dist, or raise --kv-cache-gb)"));
    }
  }
  return absl::OkStatus();
}

// What the run tallies step by step, beside the result's counters.
struct RunTallies {
  std::vector<double> ttft, tpot;
  int done = 0;
  int64_t running_sum = 0, running_steps = 0;
};

// Counts the requests the last step finished into the result and the tallies.
void CountFinished(Scheduler& scheduler, ThroughputBenchResult* result, RunTallies* t) {
  for (const RequestOutput& o : scheduler.TakeFinished()) {
    ++t->done;
    if (o.reason == FinishReason::kError) {
      ++result->failed;
      continue;
    }
    ++result->completed;
    result->input_tokens += static_cast<int64_t>(o.prompt.size());
    result->output_tokens += static_cast<int64_t>(o.output_ids.size());
    if (o.ttft() >= 0) t->ttft.push_back(o.ttft());
    if (o.output_ids.size() >= 2) t->tpot.push_back(o.tpot());
  }
}

// With nothing running, sleeps until the next arrival rather than spin.
void WaitForArrival(const Scheduler& scheduler, const Clock& clock) {
  if (scheduler.num_running() != 0) return;
  const double next = scheduler.NextArrival();
  const double wait = next - clock.Now();
  if (next > 0 && wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
}

}  // namespace

absl::StatusOr<ThroughputBenchResult> RunThroughputBench(Engine& engine, const ThroughputBenchOptions& options) {
  if (options.num_requests < 1) return absl::InvalidArgumentError("--num-requests must be >= 1");
  std::mt19937_64 rng(options.seed);
  SteadyClock clock;
  SchedulerOptions so;
  so.max_prefill_tokens_per_step = options.max_prefill_tokens_per_step;
  so.chai = options.chai;
  so.chai_local_clusters = options.chai_local_clusters;
  Scheduler scheduler(&engine, so, &clock);
  const double start = clock.Now();
  if (auto s = SubmitRequests(engine.config(), options, start, rng, scheduler); !s.ok()) return s;

  ThroughputBenchResult result;
  RunTallies tallies;
  double last_progress = -1;
  while (scheduler.HasWork()) {
    WaitForArrival(scheduler, clock);
    if (auto s = scheduler.Step(); !s.ok()) return s;
    // Concurrency after the step's admissions and preemptions: what the KV pool holds at once.
    const int running = static_cast<int>(scheduler.num_running());
    result.max_running = std::max(result.max_running, running);
    tallies.running_sum += running;
    ++tallies.running_steps;
    CountFinished(scheduler, &result, &tallies);
    const double now = clock.Now();
    if (options.progress && (now - last_progress > 0.2 || tallies.done == options.num_requests)) {
      ProgressBar(tallies.done, options.num_requests, now - start);
      last_progress = now;
    }
  }
  result.duration_s = clock.Now() - start;
  result.requests_per_s = result.completed / result.duration_s;
  result.output_tokens_per_s = static_cast<double>(result.output_tokens) / result.duration_s;
  result.ttft_s = ComputePercentiles(tallies.ttft);
  result.tpot_s = ComputePercentiles(tallies.tpot);
  const SchedulerStats& stats = scheduler.stats();
  result.kv_utilisation_mean = stats.mean_kv_utilisation();
  result.kv_utilisation_peak = stats.kv_utilisation_peak;
  result.preemptions = stats.preemptions;
  result.steps = stats.steps;
  result.kv_blocks = engine.kv_pool().num_blocks();
  result.mean_running = tallies.running_steps == 0 ? 0 : static_cast<double>(tallies.running_sum) / tallies.running_steps;
  return result;
}

}  // namespace chai
