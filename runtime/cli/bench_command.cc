// `chai bench`: latency mode (a fixed batch, TTFT/TPOT against the memory-bandwidth floor).
#include <cstdio>
#include <ctime>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "kernels/device_info.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/model_options.h"
#include "runtime/json.h"
#include "runtime/latency_bench.h"

namespace chai {

absl::Status RunBench(const std::vector<std::string>& args) {
  FlagParser parser;
  ModelOptions model;
  model.Register(&parser);
  std::string mode = "latency", json_path;
  LatencyBenchOptions o;
  bool help = false;
  parser.String("mode", &mode, "latency (throughput arrives with continuous batching)");
  parser.Int("batch", &o.batch, "sequences decoded together (default 1)");
  parser.Int("input-len", &o.input_len, "prompt tokens per sequence (default 128)");
  parser.Int("output-len", &o.output_len, "generated tokens per sequence (default 32)");
  parser.Int("warmup", &o.warmup, "untimed iterations first (default 1)");
  parser.Int("iters", &o.iters, "timed iterations; medians are reported (default 3)");
  parser.String("json", &json_path, "also write the results to this JSON file");
  parser.Bool("help", &help, "show this help");
  if (auto s = parser.Parse(args); !s.ok()) return s;
  if (help) {
    std::printf("usage: chai bench --mode latency [--model ...] [flags]\n%s", parser.Usage().c_str());
    return absl::OkStatus();
  }
  if (mode == "throughput") {
    return absl::UnimplementedError("--mode throughput is not implemented yet (it arrives with continuous batching)");
  }
  if (mode != "latency") return absl::InvalidArgumentError(absl::StrCat("--mode must be latency or throughput, got '", mode, "'"));
  auto m = LoadModel(model, o.batch, int64_t{o.input_len} + o.output_len);
  if (!m.ok()) return m.status();
  o.seed = static_cast<uint64_t>(model.seed);
  o.chai = m->chai.get();
  auto r = RunLatencyBench(*m->engine, o);
  if (!r.ok()) return r.status();
  if (m->comm->rank() != 0) return absl::OkStatus();

  const std::string device = model.device == "cuda" ? CurrentDeviceName() : "cpu";
  const double gib = 1024.0 * 1024 * 1024;
  std::printf("| model | device | dtype | TP | CHAI | batch | input | output | TTFT ms | TPOT ms | tokens/s | floor ms | TPOT/floor |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::printf("| %s | %s | %s | %d | %s | %d | %d | %d | %.2f | %.3f | %.1f | %.3f | %.2f |\n",
              model.model.empty() ? DefaultModelConfig().c_str() : model.model.c_str(), device.c_str(),
              model.dtype.c_str(), m->comm->size(), model.chai.c_str(), o.batch, o.input_len, o.output_len,
              r->ttft_s * 1e3, r->tpot_s * 1e3, r->tokens_per_s, r->floor_s * 1e3, r->tpot_s / r->floor_s);
  std::printf("weights %.3f GiB per rank (%.3f GiB read per step); KV %lld bytes/token per sequence (dense %lld); "
              "copy bandwidth %.1f GB/s\n",
              r->weight_bytes / gib, r->weight_bytes_read_per_step / gib, static_cast<long long>(r->kv_bytes_per_token),
              static_cast<long long>(r->dense_kv_bytes_per_token), r->copy_bandwidth / 1e9);
  if (json_path.empty()) return absl::OkStatus();
  Json out = Json::MakeObject();
  out.Set("mode", Json("latency"));
  out.Set("model", Json(model.model.empty() ? DefaultModelConfig() : model.model));
  out.Set("device", Json(device));
  out.Set("dtype", Json(model.dtype));
  out.Set("tp", Json(m->comm->size()));
  out.Set("chai", Json(model.chai));
  out.Set("batch", Json(o.batch));
  out.Set("input_len", Json(o.input_len));
  out.Set("output_len", Json(o.output_len));
  out.Set("ttft_ms", Json(r->ttft_s * 1e3));
  out.Set("tpot_ms", Json(r->tpot_s * 1e3));
  out.Set("tokens_per_s", Json(r->tokens_per_s));
  out.Set("weight_bytes", Json(r->weight_bytes));
  out.Set("weight_bytes_read_per_step", Json(r->weight_bytes_read_per_step));
  out.Set("kv_bytes_per_token", Json(r->kv_bytes_per_token));
  out.Set("dense_kv_bytes_per_token", Json(r->dense_kv_bytes_per_token));
  out.Set("kv_bytes_read_per_step", Json(r->kv_bytes_read_per_step));
  out.Set("copy_bandwidth_gbs", Json(r->copy_bandwidth / 1e9));
  out.Set("floor_ms", Json(r->floor_s * 1e3));
  out.Set("tpot_over_floor", Json(r->tpot_s / r->floor_s));
  std::ofstream file(json_path);
  if (!file) return absl::PermissionDeniedError(absl::StrCat("--json: cannot write ", json_path));
  file << out.Dump() << "\n";
  return absl::OkStatus();
}

}  // namespace chai
