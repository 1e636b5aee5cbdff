// `chai bench`: latency mode (a fixed batch, TTFT/TPOT against the memory-bandwidth floor; with
// --compare, dense and CHAI side by side); --mode throughput is bench_throughput.cc.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/device_info.h"
#include "runtime/cli/bench_common.h"
#include "runtime/cli/build_info.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/model_options.h"
#include "runtime/cli/tuning_env.h"
#include "runtime/json.h"
#include "runtime/latency_bench.h"

namespace chai {

namespace {

Json ResultJson(const LatencyBenchOptions& o, const LatencyBenchResult& r) {
  Json out = Json::MakeObject();
  out.Set("batch", Json(o.batch));
  out.Set("input_len", Json(o.input_len));
  out.Set("output_len", Json(o.output_len));
  out.Set("ttft_ms", Json(r.ttft_s * 1e3));
  out.Set("tpot_ms", Json(r.tpot_s * 1e3));
  out.Set("decode_steps", Json(r.decode_steps));
  out.Set("decode_steps_ahead", Json(r.decode_steps_ahead));
  out.Set("tokens_per_s", Json(r.tokens_per_s));
  out.Set("weight_bytes", Json(r.weight_bytes));
  out.Set("kv_pool_bytes", Json(r.kv_pool_bytes));
  out.Set("weight_bytes_read_per_step", Json(r.weight_bytes_read_per_step));
  out.Set("kv_bytes_per_token", Json(r.kv_bytes_per_token));
  out.Set("dense_kv_bytes_per_token", Json(r.dense_kv_bytes_per_token));
  out.Set("kv_bytes_read_per_step", Json(r.kv_bytes_read_per_step));
  out.Set("copy_bandwidth_gbs", Json(r.copy_bandwidth / 1e9));
  out.Set("copy_bytes", Json(r.copy_bytes));
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

// One row of the latency table (`prefix`: the mode column under --compare, else empty).
void PrintRow(const std::string& prefix, const LatencyBenchOptions& o, const LatencyBenchResult& r) {
  const std::string allreduce =
      r.allreduces_per_step == 0
          ? std::string("- | -")
          : absl::StrFormat("%.3f (%d x) | %.2f (%lld)", r.allreduce_floor_s * 1e3, r.allreduces_per_step,
                            r.allreduce_s * 1e6, static_cast<long long>(r.allreduce_bytes));
  // Prefill against the GEMM rate of the same run (a percentage; "-" where it was not measured).
  const std::string prefill_share =
      r.gemm_flops_per_s > 0
          ? absl::StrFormat("%.0f%% of %.0f", 100 * r.prefill_flops_per_s / r.gemm_flops_per_s, r.gemm_flops_per_s / 1e12)
          : std::string("-");
  // TPOT/floor with three decimals: the issues' targets (1.10x, 1.2x) are met or missed in the third.
  std::printf("| %s%d | %d | %d | %.2f | %.3f | %.1f | %.3f | %.3f | %.3f | %s | %lld | %.2f | %.2f | %.1f | %s |\n",
              prefix.c_str(), o.batch, o.input_len, o.output_len, r.ttft_s * 1e3, r.tpot_s * 1e3, r.tokens_per_s,
              r.floor_s * 1e3, r.tpot_s / r.floor_s, r.memory_floor_s * 1e3, allreduce.c_str(),
              static_cast<long long>(r.kv_bytes_per_token), r.weight_bytes / double(1 << 30),
              r.kv_pool_bytes / double(1 << 30), r.prefill_flops_per_s / 1e12, prefill_share.c_str());
  std::fflush(stdout);
}

// One shape run dense and with CHAI (--compare).
struct ComparedShape {
  int batch, input;
  LatencyBenchResult dense, chai;
};

// Bytes a decode step must read: the weights and the KV of every sequence (the floor's numerator).
double StepBytes(const LatencyBenchResult& r) {
  return static_cast<double>(r.weight_bytes_read_per_step) + r.kv_bytes_read_per_step;
}

// CHAI's speedup over dense and the most it could be if both ran at the same bytes per second:
// the byte bound (dense bytes / CHAI bytes per step).
double Speedup(const ComparedShape& c) { return c.dense.tpot_s / c.chai.tpot_s; }
double ByteBound(const ComparedShape& c) { return StepBytes(c.dense) / StepBytes(c.chai); }

void PrintComparison(const std::string& schedule, const std::vector<ComparedShape>& shapes) {
  std::printf("\ndense vs CHAI (%s): speedup = dense TPOT / CHAI TPOT; byte bound = dense bytes / CHAI bytes read "
              "per decode step (weights + KV)\n",
              schedule.c_str());
  std::printf("| batch | input | dense TPOT ms | CHAI TPOT ms | speedup | byte bound | speedup / bound | KV B/token dense "
              "| KV B/token CHAI |\n|---|---|---|---|---|---|---|---|---|\n");
  for (const ComparedShape& c : shapes) {
    std::printf("| %d | %d | %.3f | %.3f | %.3fx | %.3fx | %.2f | %lld | %lld |\n", c.batch, c.input,
                c.dense.tpot_s * 1e3, c.chai.tpot_s * 1e3, Speedup(c), ByteBound(c), Speedup(c) / ByteBound(c),
                static_cast<long long>(c.dense.kv_bytes_per_token), static_cast<long long>(c.chai.kv_bytes_per_token));
  }
  std::fflush(stdout);
}

Json ComparisonJson(const std::vector<ComparedShape>& shapes) {
  Json out = Json::MakeArray();
  for (const ComparedShape& c : shapes) {
    Json j = Json::MakeObject();
    j.Set("batch", Json(c.batch));
    j.Set("input_len", Json(c.input));
    j.Set("dense_tpot_ms", Json(c.dense.tpot_s * 1e3));
    j.Set("chai_tpot_ms", Json(c.chai.tpot_s * 1e3));
    j.Set("speedup", Json(Speedup(c)));
    j.Set("dense_bytes_per_step", Json(StepBytes(c.dense)));
    j.Set("chai_bytes_per_step", Json(StepBytes(c.chai)));
    j.Set("byte_bound", Json(ByteBound(c)));
    j.Set("speedup_over_bound", Json(Speedup(c) / ByteBound(c)));
    out.Push(std::move(j));
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
    "  floor = memory floor + all-reduce floor; TPOT/floor compares against it.\n"
    "With --chai SCHEDULE --compare every shape runs dense and with CHAI in turn, and a last table gives\n"
    "CHAI's speedup beside the byte bound (dense bytes / CHAI bytes read per decode step).\n";

// True when the arguments ask for --mode throughput (the flag sets differ, so it is seen first).
bool WantsThroughput(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--mode=throughput") return true;
    if (args[i] == "--mode" && i + 1 < args.size() && args[i + 1] == "throughput") return true;
  }
  return false;
}

// The results table's header (stdout): a mode column first with --compare.
void PrintTableHeader(bool compare) {
  std::printf("| %sbatch | input | output | TTFT ms | TPOT ms | tokens/s | floor ms | TPOT/floor | memory floor ms "
              "| all-reduce floor ms | all-reduce us (bytes) | KV B/token | weights GiB | KV pool GiB | prefill TFLOP/s "
              "| prefill / GEMM |\n",
              compare ? "mode | " : "");
  std::printf("|%s---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n", compare ? "---|" : "");
  std::fflush(stdout);
}

// One shape (o.batch, o.input_len) in the modes asked for: the configured one, or dense then CHAI
// (--compare). Rank 0 prints a row per mode and adds its JSON to `runs`; with --compare a shape
// that ran in both modes goes to `compared`. `first`: the run's first shape, whose copy bandwidth
// and weight bytes go to stderr. `fitted` counts the modes that ran (every rank alike: the KV
// pools have one shape).
absl::Status RunShape(LoadedModel& m, LatencyBenchOptions o, bool compare, bool rank0, bool first, Json* runs,
                      std::vector<ComparedShape>* compared, int* fitted) {
  struct Mode {
    const char* name;
    const ChaiPolicy* chai;
  };
  std::vector<Mode> modes;
  if (compare) modes.push_back({"dense", nullptr});
  modes.push_back({m.chai != nullptr ? "CHAI" : "dense", m.chai.get()});
  std::vector<LatencyBenchResult> shape_results;
  for (const Mode& mode : modes) {
    // The engine's policy too: it gives CHAI layers their kernels' launch hints, which a dense
    // run must not take (they would run the CHAI passes over dense maps).
    m.engine->set_attention_policy(mode.chai != nullptr ? m.chai.get() : nullptr);
    o.chai = mode.chai;
    const std::string prefix = compare ? absl::StrCat(mode.name, " | ") : std::string();
    auto r = RunLatencyBench(*m.engine, o);
    if (absl::IsResourceExhausted(r.status())) {
      // A shape that does not fit this card is a row of the table, not the end of the run.
      if (rank0) {
        std::printf("| %s%d | %d | %d | does not fit: %s |\n", prefix.c_str(), o.batch, o.input_len, o.output_len,
                    std::string(r.status().message()).c_str());
      }
      continue;
    }
    if (!r.ok()) return r.status();
    ++*fitted;
    shape_results.push_back(*r);
    if (!rank0) continue;
    PrintRow(prefix, o, *r);
    Json run = ResultJson(o, *r);
    if (compare) run.Set("mode", Json(mode.chai != nullptr ? "chai" : "dense"));
    runs->Push(std::move(run));
    if (first && &mode == &modes.front()) {
      std::fprintf(stderr, "copy bandwidth %.1f GB/s (copies of %lld MiB); weights read per step %.3f GiB\n",
                   r->copy_bandwidth / 1e9, static_cast<long long>(r->copy_bytes >> 20),
                   r->weight_bytes_read_per_step / double(1 << 30));
    }
  }
  if (compare && shape_results.size() == 2) {
    compared->push_back({o.batch, o.input_len, shape_results[0], shape_results[1]});
  }
  return absl::OkStatus();
}

// The latency mode's flags, parsed and checked (before the model loads).
struct LatencyFlags {
  ModelOptions model;
  LatencyBenchOptions o;
  std::string mode = "latency", json_path;
  std::vector<int> batches, inputs;
  bool help = false, compare = false, throughput = false;  // throughput: --mode throughput after all
};

absl::StatusOr<LatencyFlags> ParseLatencyFlags(const std::vector<std::string>& args) {
  LatencyFlags f;
  FlagParser parser;
  f.model.Register(&parser);
  std::string batches = "1", inputs = "128";
  parser.String("mode", &f.mode,
                "latency (a fixed batch) or throughput (a request stream; chai bench --mode throughput --help)");
  parser.String("batch", &batches, "sequences decoded together; a list runs each (default 1)");
  parser.String("input-len", &inputs, "prompt tokens per sequence; a list runs each (default 128)");
  parser.Int("output-len", &f.o.output_len, "generated tokens per sequence (default 32)");
  parser.Int("warmup", &f.o.warmup, "untimed iterations first (default 1)");
  parser.Int("iters", &f.o.iters, "timed iterations; medians are reported (default 3)");
  parser.String("json", &f.json_path, "also write the results to this JSON file");
  parser.Bool("compare", &f.compare,
              "run every shape dense and with the CHAI schedule (needs --chai), alternating, and print the speedup "
              "beside the byte bound (dense bytes / CHAI bytes read per decode step)");
  parser.Bool("help", &f.help, "show this help");
  // kLatencyHelp without its last newline: ParseOrShowHelp ends the usage text itself.
  auto help = parser.ParseOrShowHelp(args, f.help,
                                     absl::StrCat("chai bench --mode latency [--model ...] [flags]\n",
                                                  absl::string_view(kLatencyHelp, sizeof(kLatencyHelp) - 2)));
  if (!help.ok()) return help.status();
  if (*help) return f;
  if (f.mode == "throughput") {
    f.throughput = true;
    return f;
  }
  if (f.mode != "latency") {
    return absl::InvalidArgumentError(absl::StrCat("--mode must be latency or throughput, got '", f.mode, "'"));
  }
  if (auto s = CheckOutputFolder(f.json_path, "--json"); !s.ok()) return s;
  if (f.compare && f.model.chai == "off") {
    return absl::InvalidArgumentError("--compare needs a CHAI schedule: add --chai FILE|LIST");
  }
  // Checked again by RunLatencyBench; here so that a bad flag fails before the model loads.
  if (f.o.output_len < 2 || f.o.iters < 1 || f.o.warmup < 0) {
    return absl::InvalidArgumentError("--output-len must be >= 2, --iters >= 1 and --warmup >= 0");
  }
  auto batch_list = ParseIntList("batch", batches);
  if (!batch_list.ok()) return batch_list.status();
  auto input_list = ParseIntList("input-len", inputs);
  if (!input_list.ok()) return input_list.status();
  f.batches = std::move(*batch_list);
  f.inputs = std::move(*input_list);
  // Every shape must fit the model's positions: checked before the model loads.
  const int max_input = *std::max_element(f.inputs.begin(), f.inputs.end());
  if (auto s = CheckPositions(f.model, int64_t{max_input} + f.o.output_len,
                              absl::StrCat("--input-len ", max_input, " + --output-len ", f.o.output_len));
      !s.ok()) {
    return s;
  }
  return f;
}

}  // namespace

absl::Status RunBench(const std::vector<std::string>& args) {
  if (WantsThroughput(args)) return RunThroughputMode(args);
  const EnvVars tuning = TuningEnvironment();  // before LoadModel sets variables of its own
  auto flags = ParseLatencyFlags(args);
  if (!flags.ok()) return flags.status();
  LatencyFlags& f = *flags;
  if (f.help) return absl::OkStatus();  // the usage is printed
  if (f.throughput) return RunThroughputMode(args);
  const ModelOptions& model = f.model;
  LatencyBenchOptions& o = f.o;
  const int max_batch = *std::max_element(f.batches.begin(), f.batches.end());
  const int max_input = *std::max_element(f.inputs.begin(), f.inputs.end());
  auto m = LoadModel(model, max_batch, int64_t{max_input} + std::max(0, o.output_len));
  if (!m.ok()) return m.status();
  o.seed = static_cast<uint64_t>(model.seed);
  const bool rank0 = m->comm->rank() == 0;
  const std::string device = model.device == "cuda" ? CurrentDeviceName() : "cpu";
  const std::string name = model.model.empty() ? DefaultModelConfig() : model.model;
  const std::string communicator =
      m->comm->Describe() + (m->engine->GemvPushesAllReduce() ? "; the o and down GEMVs push into it" : "");
  if (rank0) {
    std::printf("%s\n", BuildDescription().c_str());
    std::printf("model %s, %s, %s, TP=%d (%s), CHAI %s\n", name.c_str(), device.c_str(), model.dtype.c_str(),
                m->comm->size(), communicator.c_str(), model.chai.c_str());
    PrintTuningEnvironment(tuning);
    PrintTableHeader(f.compare);
  }
  Json runs = Json::MakeArray();
  std::vector<ComparedShape> compared;
  int fitted = 0;
  for (int input : f.inputs) {
    for (int batch : f.batches) {
      o.batch = batch;
      o.input_len = input;
      const bool first = batch == f.batches.front() && input == f.inputs.front();
      if (auto s = RunShape(*m, o, f.compare, rank0, first, &runs, &compared, &fitted); !s.ok()) return s;
    }
  }
  // A sweep reports the shapes that do not fit as rows; a run where none fit measured nothing.
  if (fitted == 0) {
    return absl::ResourceExhaustedError(
        "no shape fits the KV cache (each row above says why): raise --kv-cache-gb, or lower --batch or --input-len");
  }
  if (rank0 && f.compare) PrintComparison(model.chai, compared);
  if (!rank0 || f.json_path.empty()) return absl::OkStatus();
  Json out = BenchJsonHeader("latency", name, device, model.dtype, m->comm->size(), model.chai, tuning);
  out.Set("communicator", Json(communicator));
  out.Set("runs", std::move(runs));
  if (f.compare) out.Set("comparison", ComparisonJson(compared));
  if (auto s = WriteJsonFile(f.json_path, out); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("--json: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace chai
