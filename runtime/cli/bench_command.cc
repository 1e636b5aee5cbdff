// `chai bench`: latency mode (a fixed batch, TTFT/TPOT against the memory-bandwidth floor).
#include <cstdio>
#include <ctime>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include <algorithm>
#include "kernels/device_info.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/model_options.h"
#include "runtime/cli/tuning_env.h"
#include "runtime/json.h"
#include "runtime/latency_bench.h"
#include "runtime/throughput_bench.h"

namespace chai {

namespace {

absl::StatusOr<std::vector<int>> ParseIntList(const std::string& flag, const std::string& text) {
  std::vector<int> values;
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {  // also an empty entry, as in 1,,8
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " expects positive integers like 1,8,32, got '", text, "'"));
    }
    values.push_back(v);
  }
  if (values.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return values;
}

using EnvVars = std::vector<std::pair<std::string, std::string>>;

// The tuning variables as a JSON object (name -> value).
Json EnvironmentJson(const EnvVars& vars) {
  Json out = Json::MakeObject();
  for (const auto& [name, value] : vars) out.Set(name, Json(value));
  return out;
}

// The line under a table's title naming the tuning variables set, if any.
void PrintTuningEnvironment(const EnvVars& vars) {
  if (!vars.empty()) std::printf("tuning environment: %s\n", DescribeTuningEnvironment(vars).c_str());
}

Json ResultJson(const LatencyBenchOptions& o, const LatencyBenchResult& r) {
  Json out = Json::MakeObject();
  out.Set("batch", Json(o.batch));
  out.Set("input_len", Json(o.input_len));
  out.Set("output_len", Json(o.output_len));
  out.Set("ttft_ms", Json(r.ttft_s * 1e3));
  out.Set("tpot_ms", Json(r.tpot_s * 1e3));
  out.Set("tokens_per_s", Json(r.tokens_per_s));
  out.Set("weight_bytes", Json(r.weight_bytes));
  out.Set("kv_pool_bytes", Json(r.kv_pool_bytes));
  out.Set("weight_bytes_read_per_step", Json(r.weight_bytes_read_per_step));
  out.Set("kv_bytes_per_token", Json(r.kv_bytes_per_token));
  out.Set("dense_kv_bytes_per_token", Json(r.dense_kv_bytes_per_token));
  out.Set("kv_bytes_read_per_step", Json(r.kv_bytes_read_per_step));
  out.Set("copy_bandwidth_gbs", Json(r.copy_bandwidth / 1e9));
  out.Set("floor_ms", Json(r.floor_s * 1e3));
  out.Set("tpot_over_floor", Json(r.tpot_s / r.floor_s));
  out.Set("memory_floor_ms", Json(r.memory_floor_s * 1e3));
  out.Set("allreduces_per_step", Json(r.allreduces_per_step));
  out.Set("allreduce_bytes", Json(r.allreduce_bytes));
  out.Set("allreduce_us", Json(r.allreduce_s * 1e6));
  out.Set("allreduce_floor_ms", Json(r.allreduce_floor_s * 1e3));
  out.Set("prefill_tflops", Json(r.prefill_flops_per_s / 1e12));
  if (r.gemm_flops_per_s > 0) {
    out.Set("gemm_tflops", Json(r.gemm_flops_per_s / 1e12));
    out.Set("prefill_over_gemm", Json(r.prefill_flops_per_s / r.gemm_flops_per_s));
  }
  return out;
}


constexpr char kLatencyHelp[] =
    "Prefills a batch of random prompts and decodes it; prints TTFT, TPOT and the floor a decode step\n"
    "cannot beat, all measured in the same run, per rank:\n"
    "  memory floor = (weights + KV read per step) / device copy bandwidth\n"
    "  all-reduce floor = all-reduces per step (2 per layer + the embedding's) x the latency of one\n"
    "    [batch, hidden] all-reduce through the run's communicator (IPC one-shot or NCCL; timed as\n"
    "    back-to-back calls in a CUDA graph); 0 on one rank. The logits all-gather is not counted.\n"
    "  floor = memory floor + all-reduce floor; TPOT/floor compares against it.\n";

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
  Json j = Json::MakeObject();
  j.Set("mode", Json("throughput"));
  j.Set("model", Json(name));
  j.Set("device", Json(device));
  j.Set("dtype", Json(model.dtype));
  j.Set("tp", Json(m->comm->size()));
  j.Set("chai", Json(model.chai));
  j.Set("num_requests", Json(o.num_requests));
  j.Set("input_len_dist", Json(input_dist));
  j.Set("output_len_dist", Json(output_dist));
  j.Set("request_rate", Json(rate));
  j.Set("environment", EnvironmentJson(tuning));
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

// True when the arguments ask for --mode throughput (the flag sets differ, so it is seen first).
bool WantsThroughput(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--mode=throughput") return true;
    if (args[i] == "--mode" && i + 1 < args.size() && args[i + 1] == "throughput") return true;
  }
  return false;
}

}  // namespace

absl::Status RunBench(const std::vector<std::string>& args) {
  if (WantsThroughput(args)) return RunThroughputMode(args);
  FlagParser parser;
  ModelOptions model;
  model.Register(&parser);
  std::string mode = "latency", json_path, batches = "1", inputs = "128";
  LatencyBenchOptions o;
  bool help = false;
  parser.String("mode", &mode, "latency (a fixed batch) or throughput (a request stream; chai bench --mode throughput --help)");
  parser.String("batch", &batches, "sequences decoded together; a list runs each (default 1)");
  parser.String("input-len", &inputs, "prompt tokens per sequence; a list runs each (default 128)");
  parser.Int("output-len", &o.output_len, "generated tokens per sequence (default 32)");
  parser.Int("warmup", &o.warmup, "untimed iterations first (default 1)");
  parser.Int("iters", &o.iters, "timed iterations; medians are reported (default 3)");
  parser.String("json", &json_path, "also write the results to this JSON file");
  parser.Bool("help", &help, "show this help");
  if (auto s = parser.Parse(args); !s.ok()) return s;
  if (help) {
    std::printf("usage: chai bench --mode latency [--model ...] [flags]\n%s%s", kLatencyHelp, parser.Usage().c_str());
    return absl::OkStatus();
  }
  if (mode == "throughput") {
    return RunThroughputMode(args);
  }
  if (mode != "latency") return absl::InvalidArgumentError(absl::StrCat("--mode must be latency or throughput, got '", mode, "'"));
  if (auto s = CheckOutputFolder(json_path, "--json"); !s.ok()) return s;
  // Checked again by RunLatencyBench; here so that a bad flag fails before the model loads.
  if (o.output_len < 2 || o.iters < 1 || o.warmup < 0) {
    return absl::InvalidArgumentError("--output-len must be >= 2, --iters >= 1 and --warmup >= 0");
  }
  auto batch_list = ParseIntList("batch", batches);
  if (!batch_list.ok()) return batch_list.status();
  auto input_list = ParseIntList("input-len", inputs);
  if (!input_list.ok()) return input_list.status();
  const int max_batch = *std::max_element(batch_list->begin(), batch_list->end());
  const int max_input = *std::max_element(input_list->begin(), input_list->end());
  const EnvVars tuning = TuningEnvironment();  // before LoadModel sets variables of its own
  auto m = LoadModel(model, max_batch, int64_t{max_input} + std::max(0, o.output_len));
  if (!m.ok()) return m.status();
  o.seed = static_cast<uint64_t>(model.seed);
  o.chai = m->chai.get();
  const bool rank0 = m->comm->rank() == 0;
  const std::string device = model.device == "cuda" ? CurrentDeviceName() : "cpu";
  const std::string name = model.model.empty() ? DefaultModelConfig() : model.model;
  if (rank0) {
    std::printf("model %s, %s, %s, TP=%d (%s), CHAI %s\n", name.c_str(), device.c_str(), model.dtype.c_str(),
                m->comm->size(), m->comm->Describe().c_str(), model.chai.c_str());
    PrintTuningEnvironment(tuning);
    std::printf("| batch | input | output | TTFT ms | TPOT ms | tokens/s | floor ms | TPOT/floor | memory floor ms "
                "| all-reduce floor ms | all-reduce us (bytes) | KV B/token | weights GiB | KV pool GiB | prefill TFLOP/s "
                "| prefill / GEMM |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
  }
  Json runs = Json::MakeArray();
  for (int input : *input_list) {
    for (int batch : *batch_list) {
      o.batch = batch;
      o.input_len = input;
      auto r = RunLatencyBench(*m->engine, o);
      if (absl::IsResourceExhausted(r.status())) {
        // A shape that does not fit this card is a row of the table, not the end of the run.
        if (rank0) std::printf("| %d | %d | %d | does not fit: %s |\n", batch, input, o.output_len,
                               std::string(r.status().message()).c_str());
        continue;
      }
      if (!r.ok()) return r.status();
      if (!rank0) continue;
      const std::string allreduce =
          r->allreduces_per_step == 0
              ? std::string("- | -")
              : absl::StrFormat("%.3f (%d x) | %.2f (%lld)", r->allreduce_floor_s * 1e3, r->allreduces_per_step,
                                r->allreduce_s * 1e6, static_cast<long long>(r->allreduce_bytes));
      // Prefill against the GEMM rate of the same run (a percentage; "-" where it was not measured).
      const std::string prefill_share =
          r->gemm_flops_per_s > 0
              ? absl::StrFormat("%.0f%% of %.0f", 100 * r->prefill_flops_per_s / r->gemm_flops_per_s,
                                r->gemm_flops_per_s / 1e12)
              : std::string("-");
      std::printf("| %d | %d | %d | %.2f | %.3f | %.1f | %.3f | %.2f | %.3f | %s | %lld | %.2f | %.2f | %.1f | %s |\n",
                  batch, input, o.output_len, r->ttft_s * 1e3, r->tpot_s * 1e3, r->tokens_per_s, r->floor_s * 1e3,
                  r->tpot_s / r->floor_s, r->memory_floor_s * 1e3, allreduce.c_str(),
                  static_cast<long long>(r->kv_bytes_per_token), r->weight_bytes / double(1 << 30),
                  r->kv_pool_bytes / double(1 << 30), r->prefill_flops_per_s / 1e12, prefill_share.c_str());
      std::fflush(stdout);
      runs.Push(ResultJson(o, *r));
      if (batch == *batch_list->begin() && input == *input_list->begin()) {
        std::fprintf(stderr, "copy bandwidth %.1f GB/s; weights read per step %.3f GiB\n", r->copy_bandwidth / 1e9,
                     r->weight_bytes_read_per_step / double(1 << 30));
      }
    }
  }
  if (!rank0 || json_path.empty()) return absl::OkStatus();
  Json out = Json::MakeObject();
  out.Set("mode", Json("latency"));
  out.Set("model", Json(name));
  out.Set("device", Json(device));
  out.Set("dtype", Json(model.dtype));
  out.Set("tp", Json(m->comm->size()));
  out.Set("communicator", Json(m->comm->Describe()));
  out.Set("chai", Json(model.chai));
  out.Set("environment", EnvironmentJson(tuning));
  out.Set("runs", std::move(runs));
  if (auto s = WriteJsonFile(json_path, out); !s.ok()) return absl::Status(s.code(), absl::StrCat("--json: ", s.message()));
  return absl::OkStatus();
}

}  // namespace chai
