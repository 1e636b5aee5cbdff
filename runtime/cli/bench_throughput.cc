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

// `--mode throughput`: its own flags (the latency flags do not apply), the scheduler-driven run,
// a table on stdout and the JSON file.
absl::Status RunThroughputMode(const std::vector<std::string>& args) {
  FlagParser parser;
  ModelOptions model;
  model.Register(&parser);
  std::string mode, json_path, input_dist = "fixed:128", output_dist = "fixed:128", rate = "inf";
  ThroughputBenchOptions o;
  bool help = false, no_progress = false;
  parser.String("mode", &mode, "throughput");
  parser.Int("num-requests", &o.num_requests, "requests in the run (default 64)");
  parser.String("input-len-dist", &input_dist, "prompt lengths: fixed:N or uniform:A:B (inclusive; default fixed:128)");
  parser.String("output-len-dist", &output_dist, "output lengths: fixed:N or uniform:A:B (inclusive; default fixed:128)");
  parser.String("request-rate", &rate, "Poisson arrivals per second, or inf: all at the start (default inf)");
  parser.Int("max-prefill-tokens", &o.max_prefill_tokens_per_step, "prompt tokens per step, chunked prefill (default 512)");
  parser.String("json", &json_path, "also write the results to this JSON file");
  parser.Bool("no-progress", &no_progress, "no progress bar on stderr");
  parser.Bool("help", &help, "show this help");
  if (auto s = parser.Parse(args); !s.ok()) return s;
  if (help) {
    std::printf("usage: chai bench --mode throughput [--model ...] [flags]\n%s", parser.Usage().c_str());
    return absl::OkStatus();
  }
  if (auto s = CheckOutputFolder(json_path, "--json"); !s.ok()) return s;
  auto in = ParseLengthDist("input-len-dist", input_dist);
  if (!in.ok()) return in.status();
  auto out_len = ParseLengthDist("output-len-dist", output_dist);
  if (!out_len.ok()) return out_len.status();
  o.input_len = *in;
  o.output_len = *out_len;
  if (rate == "inf") {
    o.request_rate = 0;
  } else if (!absl::SimpleAtod(rate, &o.request_rate) || !(o.request_rate > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("--request-rate expects a positive number or inf, got '", rate, "'"));
  }
  if (o.num_requests < 1) return absl::InvalidArgumentError("--num-requests must be >= 1");
  if (o.max_prefill_tokens_per_step < 1) {  // the scheduler would take 1 a step, silently
    return absl::InvalidArgumentError(
        absl::StrCat("--max-prefill-tokens must be >= 1, got ", o.max_prefill_tokens_per_step));
  }
  // On the CPU the KV cache is sized for 16 sequences of the longest request (or all of them).
  const int64_t max_len = int64_t{o.input_len.hi} + o.output_len.hi;
  const EnvVars tuning = TuningEnvironment();  // before LoadModel sets variables of its own
  auto m = LoadModel(model, std::min(o.num_requests, 16), max_len);
  if (!m.ok()) return m.status();
  o.seed = static_cast<uint64_t>(model.seed);
  o.chai = m->chai.get();
  if (m->chai != nullptr && m->comm->size() == 1) o.chai_local_clusters = m->chai_schedule.layer_clusters;
  const bool rank0 = m->comm->rank() == 0;
  o.progress = rank0 && !no_progress;
  auto r = RunThroughputBench(*m->engine, o);
  if (!r.ok()) return r.status();
  if (!rank0) return absl::OkStatus();
  const std::string device = model.device == "cuda" ? CurrentDeviceName() : "cpu";
  const std::string name = model.model.empty() ? DefaultModelConfig() : model.model;
  std::printf("%s\n", BuildDescription().c_str());
  std::printf("model %s, %s, %s, TP=%d, CHAI %s; %d requests, input %s, output %s, rate %s\n", name.c_str(),
              device.c_str(), model.dtype.c_str(), m->comm->size(), model.chai.c_str(), o.num_requests,
              input_dist.c_str(), output_dist.c_str(), rate.c_str());
  PrintTuningEnvironment(tuning);
  std::printf(
      "| requests/s | output tokens/s | TTFT p50/p90/p99 ms | TPOT p50/p90/p99 ms | KV util mean/peak | "
      "running max/mean | preemptions |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::printf("| %.2f | %.1f | %.1f / %.1f / %.1f | %.2f / %.2f / %.2f | %.2f / %.2f | %d / %.1f | %lld |\n",
              r->requests_per_s,
              r->output_tokens_per_s, r->ttft_s.p50 * 1e3, r->ttft_s.p90 * 1e3, r->ttft_s.p99 * 1e3,
              r->tpot_s.p50 * 1e3, r->tpot_s.p90 * 1e3, r->tpot_s.p99 * 1e3, r->kv_utilisation_mean,
              r->kv_utilisation_peak, r->max_running, r->mean_running, static_cast<long long>(r->preemptions));
  if (r->failed > 0) std::printf("%d requests could not run (larger than the KV pool)\n", r->failed);
  if (json_path.empty()) return absl::OkStatus();
  auto pct = [](const Percentiles& p) {
    Json j = Json::MakeObject();
    j.Set("p50_ms", Json(p.p50 * 1e3));
    j.Set("p90_ms", Json(p.p90 * 1e3));
    j.Set("p99_ms", Json(p.p99 * 1e3));
    j.Set("mean_ms", Json(p.mean * 1e3));
    return j;
  };
  Json j = BenchJsonHeader("throughput", name, device, model.dtype, m->comm->size(), model.chai, tuning);
  j.Set("num_requests", Json(o.num_requests));
  j.Set("input_len_dist", Json(input_dist));
  j.Set("output_len_dist", Json(output_dist));
  j.Set("request_rate", Json(rate));
  j.Set("seed", Json(model.seed));
  j.Set("max_prefill_tokens", Json(o.max_prefill_tokens_per_step));
  j.Set("completed", Json(r->completed));
  j.Set("failed", Json(r->failed));
  j.Set("duration_s", Json(r->duration_s));
  j.Set("input_tokens", Json(r->input_tokens));
  j.Set("output_tokens", Json(r->output_tokens));
  j.Set("requests_per_s", Json(r->requests_per_s));
  j.Set("output_tokens_per_s", Json(r->output_tokens_per_s));
  j.Set("ttft", pct(r->ttft_s));
  j.Set("tpot", pct(r->tpot_s));
  j.Set("kv_utilisation_mean", Json(r->kv_utilisation_mean));
  j.Set("kv_utilisation_peak", Json(r->kv_utilisation_peak));
  j.Set("kv_blocks", Json(r->kv_blocks));
  j.Set("preemptions", Json(r->preemptions));
  j.Set("max_running", Json(r->max_running));
  j.Set("mean_running", Json(r->mean_running));
  j.Set("steps", Json(r->steps));
  if (auto s = WriteJsonFile(json_path, j); !s.ok()) return absl::Status(s.code(), absl::StrCat("--json: ", s.message()));
  return absl::OkStatus();
}

}  // namespace chai
