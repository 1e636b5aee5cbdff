// `chai bench --mode throughput`: a stream of requests through the scheduler; throughput, TTFT and
// TPOT percentiles, KV utilisation.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "kernels/device_info.h"
#include "runtime/cli/bench_common.h"
#include "runtime/cli/build_info.h"
#include "runtime/cli/model_options.h"
#include "runtime/cli/tuning_env.h"
#include "runtime/json.h"
#include "runtime/throughput_bench.h"

namespace chai {

namespace {

// The throughput mode's flags, parsed and checked.
struct ThroughputFlags {
  ModelOptions model;
  ThroughputBenchOptions o;
  std::string json_path, input_dist = "fixed:128", output_dist = "fixed:128", rate = "inf";
  bool help = false, no_progress = false;
};

absl::StatusOr<ThroughputFlags> ParseThroughputFlags(const std::vector<std::string>& args) {
  ThroughputFlags f;
  FlagParser parser;
  f.model.Register(&parser);
  std::string mode;
  ThroughputBenchOptions& o = f.o;
  parser.String("mode", &mode, "throughput");
  parser.Int("num-requests", &o.num_requests, "requests in the run (default 64)");
  parser.String("input-len-dist", &f.input_dist, "prompt lengths: fixed:N or uniform:A:B (inclusive; default fixed:128)");
  parser.String("output-len-dist", &f.output_dist, "output lengths: fixed:N or uniform:A:B (inclusive; default fixed:128)");
  parser.String("request-rate", &f.rate, "Poisson arrivals per second, or inf: all at the start (default inf)");
  parser.Int("max-prefill-tokens", &o.max_prefill_tokens_per_step, "prompt tokens per step, chunked prefill (default 512)");
  parser.String("json", &f.json_path, "also write the results to this JSON file");
  parser.Bool("no-progress", &f.no_progress, "no progress bar on stderr");
  parser.Bool("help", &f.help, "show this help");
  auto help = parser.ParseOrShowHelp(args, f.help, "chai bench --mode throughput [--model ...] [flags]");
  if (!help.ok()) return help.status();
  if (*help) return f;
  if (auto s = CheckOutputFolder(f.json_path, "--json"); !s.ok()) return s;
  auto in = ParseLengthDist("input-len-dist", f.input_dist);
  if (!in.ok()) return in.status();
  auto out_len = ParseLengthDist("output-len-dist", f.output_dist);
  if (!out_len.ok()) return out_len.status();
  o.input_len = *in;
  o.output_len = *out_len;
  if (f.rate == "inf") {
    o.request_rate = 0;
  } else if (!absl::SimpleAtod(f.rate, &o.request_rate) || !(o.request_rate > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--request-rate expects a positive number or inf, got '", f.rate, "'"));
  }
  if (o.num_requests < 1) return absl::InvalidArgumentError("--num-requests must be >= 1");
  if (o.max_prefill_tokens_per_step < 1) {  // the scheduler would take 1 a step, silently
    return absl::InvalidArgumentError(
        absl::StrCat("--max-prefill-tokens must be >= 1, got ", o.max_prefill_tokens_per_step));
  }
  return f;
}

void PrintThroughputTable(const ThroughputFlags& f, const std::string& name, const std::string& device, int tp,
                          const EnvVars& tuning, const ThroughputBenchResult& r) {
  std::printf("%s\n", BuildDescription().c_str());
  std::printf("model %s, %s, %s, TP=%d, CHAI %s; %d requests, input %s, output %s, rate %s\n", name.c_str(),
              device.c_str(), f.model.dtype.c_str(), tp, f.model.chai.c_str(), f.o.num_requests,
              f.input_dist.c_str(), f.output_dist.c_str(), f.rate.c_str());
  PrintTuningEnvironment(tuning);
  std::printf(
      "| requests/s | output tokens/s | TTFT p50/p90/p99 ms | TPOT p50/p90/p99 ms | KV util mean/peak | "
      "running max/mean | preemptions |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::printf("| %.2f | %.1f | %.1f / %.1f / %.1f | %.2f / %.2f / %.2f | %.2f / %.2f | %d / %.1f | %lld |\n",
              r.requests_per_s, r.output_tokens_per_s, r.ttft_s.p50 * 1e3, r.ttft_s.p90 * 1e3, r.ttft_s.p99 * 1e3,
              r.tpot_s.p50 * 1e3, r.tpot_s.p90 * 1e3, r.tpot_s.p99 * 1e3, r.kv_utilisation_mean,
              r.kv_utilisation_peak, r.max_running, r.mean_running, static_cast<long long>(r.preemptions));
  if (r.failed > 0) std::printf("%d requests could not run (larger than the KV pool)\n", r.failed);
}

Json PercentilesJson(const Percentiles& p) {
  Json j = Json::MakeObject();
  j.Set("p50_ms", Json(p.p50 * 1e3));
  j.Set("p90_ms", Json(p.p90 * 1e3));
  j.Set("p99_ms", Json(p.p99 * 1e3));
  j.Set("mean_ms", Json(p.mean * 1e3));
  return j;
}

Json ThroughputJson(const ThroughputFlags& f, const std::string& name, const std::string& device, int tp,
                    const EnvVars& tuning, const ThroughputBenchResult& r) {
  Json j = BenchJsonHeader("throughput", name, device, f.model.dtype, tp, f.model.chai, tuning);
  j.Set("num_requests", Json(f.o.num_requests));
  j.Set("input_len_dist", Json(f.input_dist));
  j.Set("output_len_dist", Json(f.output_dist));
  j.Set("request_rate", Json(f.rate));
  j.Set("seed", Json(f.model.seed));
  j.Set("max_prefill_tokens", Json(f.o.max_prefill_tokens_per_step));
  j.Set("completed", Json(r.completed));
  j.Set("failed", Json(r.failed));
  j.Set("duration_s", Json(r.duration_s));
  j.Set("input_tokens", Json(r.input_tokens));
  j.Set("output_tokens", Json(r.output_tokens));
  j.Set("requests_per_s", Json(r.requests_per_s));
  j.Set("output_tokens_per_s", Json(r.output_tokens_per_s));
  j.Set("ttft", PercentilesJson(r.ttft_s));
  j.Set("tpot", PercentilesJson(r.tpot_s));
  j.Set("kv_utilisation_mean", Json(r.kv_utilisation_mean));
  j.Set("kv_utilisation_peak", Json(r.kv_utilisation_peak));
  j.Set("kv_blocks", Json(r.kv_blocks));
  j.Set("preemptions", Json(r.preemptions));
  j.Set("max_running", Json(r.max_running));
  j.Set("mean_running", Json(r.mean_running));
  j.Set("steps", Json(r.steps));
  return j;
}

}  // namespace

// `--mode throughput`: its own flags (the latency flags do not apply), the scheduler-driven run,
// a table on stdout and the JSON file.
absl::Status RunThroughputMode(const std::vector<std::string>& args) {
  auto flags = ParseThroughputFlags(args);
  if (!flags.ok()) return flags.status();
  ThroughputFlags& f = *flags;
  if (f.help) return absl::OkStatus();  // the usage is printed
  ThroughputBenchOptions& o = f.o;
  // On the CPU the KV cache is sized for 16 sequences of the longest request (or all of them).
  const int64_t max_len = int64_t{o.input_len.hi} + o.output_len.hi;
  // The longest request against the model's positions up front, not after the weights load.
  if (auto s = CheckPositions(f.model, max_len,
                              absl::StrCat("--input-len-dist up to ", o.input_len.hi, " + --output-len-dist up to ",
                                           o.output_len.hi));
      !s.ok()) {
    return s;
  }
  const EnvVars tuning = TuningEnvironment();  // before LoadModel sets variables of its own
  auto m = LoadModel(f.model, std::min(o.num_requests, 16), max_len);
  if (!m.ok()) return m.status();
  o.seed = static_cast<uint64_t>(f.model.seed);
  o.chai = m->chai.get();
  if (m->chai != nullptr && m->comm->size() == 1) o.chai_local_clusters = m->chai_schedule.layer_clusters;
  const bool rank0 = m->comm->rank() == 0;
  o.progress = rank0 && !f.no_progress;
  auto r = RunThroughputBench(*m->engine, o);
  if (!r.ok()) return r.status();
  if (!rank0) return absl::OkStatus();
  const std::string device = f.model.device == "cuda" ? CurrentDeviceName() : "cpu";
  const std::string name = f.model.model.empty() ? DefaultModelConfig() : f.model.model;
  PrintThroughputTable(f, name, device, m->comm->size(), tuning, *r);
  if (f.json_path.empty()) return absl::OkStatus();
  const Json j = ThroughputJson(f, name, device, m->comm->size(), tuning, *r);
  if (auto s = WriteJsonFile(f.json_path, j); !s.ok()) return absl::Status(s.code(), absl::StrCat("--json: ", s.message()));
  return absl::OkStatus();
}

}  // namespace chai
