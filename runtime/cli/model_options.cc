#include "runtime/cli/model_options.h"

#include <sched.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "kernels/device_info.h"
#ifdef CHAI_WITH_CUDA
#include "kernels/cuda/cuda_ops.h"
#include "parallel/nccl_communicator.h"
#endif
#include "kernels/device_memory.h"
#include "runtime/tensor_source.h"
#include "runtime/placement_io.h"
#include "parallel/cluster_split.h"
#include "parallel/mpi_communicator.h"
#include "runtime/chai/clustering.h"
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#ifndef CHAI_CONFIG_DIR
#define CHAI_CONFIG_DIR "configs"
#endif

namespace chai {

void ModelOptions::Register(FlagParser* flags) {
  flags->String("model", &model, "checkpoint directory, or a config .json (with --random-weights)");
  flags->String("device", &device, "cpu or cuda (default cpu)");
  flags->String("dtype", &dtype, "fp32, fp16 or bf16 (default fp32)");
  flags->Bool("random-weights", &random_weights, "use deterministic random weights for the config");
  flags->Int64("seed", &seed, "seed for random weights and sampling (default 0)");
  flags->String("chai", &chai, "CHAI schedule: a configs/chai JSON file, a list like 32x18,4x14, or off (default)");
  flags->String("chai-cluster", &chai_cluster, "CHAI clustering: agglomerative (default, as published) or kmeans");
  flags->String("chai-rep", &chai_rep, "CHAI representative: lowest (default, as published) or medoid");
  flags->String("placement", &placement, "head placement JSON for tensor parallelism (default: contiguous)");
  flags->PositiveInt("max-seq-len", &max_seq_len, "longest sequence (LLaMA: may exceed max_position_embeddings)");
  flags->PositiveFloat("kv-cache-gb", &kv_cache_gb, "KV cache size in GiB (default: what the run needs on cpu, 90% of free GPU memory on cuda)");
  flags->Int("kv-block-size", &kv_block_size,
             "positions per KV cache block, 8 to 4096 (default 32)");
  flags->Int("threads", &threads, "CPU threads per rank (default: hardware threads / ranks on the host)");
}

std::string DefaultModelConfig() { return std::string(CHAI_CONFIG_DIR) + "/models/opt-125m.json"; }

namespace {

// A 0|1 switch of the decode step from the environment: nullopt when unset (the EngineOptions
// default stands), an error for anything but 0 or 1. The switches (CHAI_DECODE_QKV_APPEND,
// CHAI_ALLREDUCE_IN_GEMV) and their defaults: runtime/engine.h.
absl::StatusOr<std::optional<bool>> EnvSwitch(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::optional<bool>();
  const std::string v = value;
  if (v != "0" && v != "1") return absl::InvalidArgumentError(absl::StrCat(name, " must be 0 or 1, got '", v, "'"));
  return std::optional<bool>(v == "1");
}

// CHAI_L2_PREFETCH=<attention MB>,<norm MB>[,alt] (EngineOptions::l2_prefetch): MB of the next
// GEMV's weights fetched into L2 by decode attention and by the add + norm kernels.
absl::StatusOr<EngineOptions::L2PrefetchBudget> ParseL2Prefetch(const std::string& text) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("CHAI_L2_PREFETCH must be <attention MB>,<norm MB>[,alt] with MB from 0 to 1024, got '", text,
                     "'"));
  };
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  if (parts.size() != 2 && parts.size() != 3) return bad();
  if (parts.size() == 3 && parts[2] != "alt") return bad();
  double mb[2];
  for (int i = 0; i < 2; ++i) {
    if (!absl::SimpleAtod(parts[i], &mb[i]) || !(mb[i] >= 0 && mb[i] <= 1024)) return bad();
  }
  EngineOptions::L2PrefetchBudget budget;
  budget.attention = static_cast<int64_t>(mb[0] * (1 << 20));
  budget.norm = static_cast<int64_t>(mb[1] * (1 << 20));
  budget.alternate = parts.size() == 3;
  return budget;
}

// The CPUs this process may run on (its affinity mask: Slurm or --bind-to may narrow it),
// shared among the ranks of this host unless binding already gave each rank its own.
int DefaultThreads(int local_ranks) {
  cpu_set_t set;
  const int hardware = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return std::max(1, hardware / std::max(1, local_ranks));
  const int allowed = CPU_COUNT(&set);
  if (allowed < hardware) return std::max(1, allowed);  // already bound: all of its own CPUs
  return std::max(1, allowed / std::max(1, local_ranks));
}

// One GPU per rank (chosen from the node-local rank) and NCCL between GPUs; MPI between CPU ranks.
absl::Status MakeCommunicator(const ProcessGroup& group, Device device, std::unique_ptr<Communicator>* comm) {
  if (device == Device::kCuda) {
#ifdef CHAI_WITH_CUDA
    auto gpu = SelectCudaDevice(group);
    if (!gpu.ok()) return gpu.status();
    if (group.world_size > 1) {
      auto nccl = MakeNcclCommunicator(MPI_COMM_WORLD, cuda::CurrentStream());
      if (!nccl.ok()) return nccl.status();
      *comm = std::move(*nccl);
      return absl::OkStatus();
    }
#endif
  }
  *comm = group.world_size > 1 ? MakeMpiCommunicator() : MakeSingleCommunicator();
  return absl::OkStatus();
}

absl::Status SetUpChai(const ModelOptions& options, const ParallelLayout& layout, LoadedModel* m) {
  const ModelConfig& c = m->config;
  auto schedule = std::filesystem::exists(options.chai)
                      ? LoadChaiSchedule(options.chai, c.num_layers, c.num_heads)
                      : ScheduleFromList(options.chai, c.num_layers, c.num_heads);
  if (!schedule.ok()) {
    if (!std::filesystem::exists(options.chai) && options.chai.find_first_not_of("0123456789x, ") != std::string::npos) {
      return absl::NotFoundError(absl::StrCat("--chai: no such schedule file: ", options.chai));
    }
    return schedule.status();
  }
  m->chai_schedule = *schedule;
  auto split = SplitSchedule(schedule->layer_clusters, c.num_heads, layout.world);
  if (!split.ok()) return split.status();
  ChaiOptions chai;
  for (const auto& per_rank : *split) chai.local_clusters.push_back(per_rank[layout.rank]);
  auto method = ParseClusterMethod(options.chai_cluster);
  if (!method.ok()) return method.status();
  auto rep = ParseRepMethod(options.chai_rep);
  if (!rep.ok()) return rep.status();
  chai.method = *method;
  chai.rep = *rep;
  chai.seed = static_cast<uint64_t>(options.seed);
  std::vector<std::vector<int>> global_heads;
  for (const LayerWeights& layer : m->engine->weights().layers) global_heads.push_back(layer.heads);
  m->chai = std::make_unique<ChaiPolicy>(std::move(chai), std::move(global_heads),
                                         m->engine->weights().local_kv_heads, c.head_dim);
  m->engine->set_attention_policy(m->chai.get());
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPositions(const LoadedModel& model, int64_t needed, const std::string& what) {
  const int64_t limit = model.config.max_positions;
  if (needed <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " need ", needed, " positions; the model has ", limit,
                                                 " (max_position_embeddings, or --max-seq-len)"));
}

absl::StatusOr<LoadedModel> LoadModel(const ModelOptions& options, int64_t sequences, int64_t max_len) {
  namespace fs = std::filesystem;
  LoadedModel m;
  std::string model = options.model;
  bool random = options.random_weights;
  if (model.empty()) {
    model = DefaultModelConfig();
    random = true;
  }
  if (!fs::exists(model)) return absl::NotFoundError(absl::StrCat("--model: no such file or directory: ", model));
  // The CHAI options are checked whether or not a schedule is given: a misspelt value is an error,
  // not ignored until the day --chai is added.
  if (auto method = ParseClusterMethod(options.chai_cluster); !method.ok()) return method.status();
  if (auto rep = ParseRepMethod(options.chai_rep); !rep.ok()) return rep.status();
  const bool is_dir = fs::is_directory(model);
  if (!is_dir && !random) {
    return absl::InvalidArgumentError(
        absl::StrCat("--model ", model, " is a config file; add --random-weights, or give a checkpoint directory"));
  }
  auto config = LoadModelConfig(model);
  if (!config.ok()) return config.status();
  m.config = *config;
  m.model_dir = is_dir ? model : "";

  auto device = options.device == "cpu"    ? absl::StatusOr<Device>(Device::kCpu)
                : options.device == "cuda" ? absl::StatusOr<Device>(Device::kCuda)
                                           : absl::InvalidArgumentError(absl::StrCat(
                                                 "--device must be cpu or cuda (got '", options.device, "')"));
  if (!device.ok()) return device.status();
  auto dtype = ParseDType(options.dtype);
  if (!dtype.ok() || *dtype == DType::kI32 || *dtype == DType::kI64) {
    return absl::InvalidArgumentError(absl::StrCat("--dtype must be fp32, fp16 or bf16 (got '", options.dtype, "')"));
  }
  if (*device == Device::kCuda && !CudaAvailable()) {
#ifdef CHAI_WITH_CUDA
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    return absl::FailedPreconditionError(
        absl::StrCat("--device cuda: no GPU is visible to this process",
                     visible != nullptr ? absl::StrCat(" (CUDA_VISIBLE_DEVICES='", visible, "')") : std::string()));
#else
    return absl::FailedPreconditionError(
        "--device cuda: this build has no CUDA backend (configure with -DCHAI_CUDA=ON where nvcc is installed)");
#endif
  }
  if (*device == Device::kCpu && *dtype != DType::kF32) {
    return absl::InvalidArgumentError("--device cpu computes in fp32; use --dtype fp32");
  }

  std::unique_ptr<TensorSource> source;
  if (random) {
    source = MakeRandomSource(static_cast<uint64_t>(options.seed));
  } else {
    auto opened = OpenCheckpoint(model);
    if (!opened.ok()) return opened.status();
    source = std::move(*opened);
  }
  auto group = Bootstrap();
  if (!group.ok()) return group.status();
  m.group = *group;
  if (options.threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  // Ranks on one host share its cores; one thread pool per rank sized to its share.
  const int threads = options.threads > 0 ? options.threads : DefaultThreads(m.group.local_size);
  // --threads wins over CHAI_NUM_THREADS (read by the CPU thread pool); the variable alone must be
  // a thread count, not silently replaced by the hardware's.
  const char* env_threads = std::getenv("CHAI_NUM_THREADS");
  if (env_threads != nullptr && options.threads == 0) {
    int n = 0;
    if (!absl::SimpleAtoi(env_threads, &n) || n < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("CHAI_NUM_THREADS must be a positive integer, got '", env_threads, "'"));
    }
  } else {
    setenv("CHAI_NUM_THREADS", std::to_string(threads).c_str(), 1);
  }
  if (auto s = MakeCommunicator(m.group, *device, &m.comm); !s.ok()) return s;
  ParallelLayout layout;
  layout.rank = m.comm->rank();
  layout.world = m.comm->size();
  m.placement = HeadPlacement::Identity(m.config.num_layers, m.config.num_heads, layout.world);
  if (!options.placement.empty()) {
    auto placement = LoadPlacement(options.placement);
    if (!placement.ok()) return placement.status();
    if (auto s = placement->Validate(m.config.num_layers, m.config.num_heads, layout.world,
                                     m.config.kv_group_size());
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--placement ", options.placement, ": ", s.message()));
    }
    m.placement = *placement;
    layout.head_perm = m.placement.layer_perm;
  }
  if (auto s = CheckSplit(m.config, layout); !s.ok()) return s;
  if (*device == Device::kCuda) {
    // A model that cannot fit is refused now, not after a load that fails a minute in.
    const int64_t need = MinWeightBytesPerRank(m.config, layout.world, *dtype), free_bytes = FreeDeviceMemory();
    if (free_bytes > 0 && need > free_bytes) {
      const double gib = 1024.0 * 1024.0 * 1024.0;
      return absl::ResourceExhaustedError(
          absl::StrFormat("%s needs at least %.1f GiB of weights per GPU at %d rank(s) but this GPU has %.1f GiB "
                          "free: run more ranks, one per GPU (launch/mpirun.sh)",
                          model, need / gib, layout.world, free_bytes / gib));
    }
  }
  const auto load_start = std::chrono::steady_clock::now();
  // A long load says how far it got every 10 s (rank 0); quick loads stay silent.
  auto next_report = load_start + std::chrono::seconds(10);
  const LoadProgress progress = [&](int done, int total) {
    const auto now = std::chrono::steady_clock::now();
    if (layout.rank != 0 || done == total || now < next_report) return;
    next_report = now + std::chrono::seconds(10);
    std::fprintf(stderr, "loading weights: %d of %d layers, %.0f s\n", done, total,
                 std::chrono::duration<double>(now - load_start).count());
  };
  auto weights = LoadWeights(m.config, *source, layout, *dtype, *device, progress);
  if (!weights.ok()) return weights.status();
  // Loading a large model takes a while (random weights are drawn on the host): a slow load says
  // how long it took. Quick loads stay silent, so a bad input still prints its one error line.
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  if (layout.rank == 0 && load_seconds >= 2.0) {
    std::fprintf(stderr, "loaded %s (%s), %s on %s, %d rank%s, in %.1f s\n", model.c_str(),
                 random ? source->Describe().c_str() : "checkpoint", options.dtype.c_str(), options.device.c_str(),
                 layout.world, layout.world == 1 ? "" : "s", load_seconds);
  }
  if (options.max_seq_len < 0) return absl::InvalidArgumentError("--max-seq-len must be positive");
  if (options.max_seq_len > 0) {
    // Learned position tables (OPT) end where they end; rotary positions extend. Weights are
    // loaded (and checked) with the checkpoint's own value.
    if (m.config.arch == Arch::kOpt && options.max_seq_len > m.config.max_positions) {
      return absl::InvalidArgumentError(absl::StrCat("--max-seq-len ", options.max_seq_len,
                                                     " exceeds OPT's learned positions (", m.config.max_positions, ")"));
    }
    m.config.max_positions = options.max_seq_len;
  }
  EngineOptions kv;
  kv.max_sequences = static_cast<int>(std::max<int64_t>(64, sequences));
  kv.capture_decode = *device == Device::kCuda && std::getenv("CHAI_NO_GRAPHS") == nullptr;
  // none | activation (the default; `silu`, its name while only LLaMA had it, still accepted) | all
  if (const char* f = std::getenv("CHAI_DECODE_FUSION")) {
    const std::string mode = f;
    if (mode != "none" && mode != "activation" && mode != "silu" && mode != "all") {
      return absl::InvalidArgumentError(
          absl::StrCat("CHAI_DECODE_FUSION must be none, activation (or silu) or all, got '", mode, "'"));
    }
    kv.linear_fusion = mode == "none"  ? LinearFusion::kNone
                       : mode == "all" ? LinearFusion::kAll
                                       : LinearFusion::kActivation;
  }
  if (auto on = EnvSwitch("CHAI_DECODE_QKV_APPEND"); !on.ok()) {
    return on.status();
  } else if (on->has_value()) {
    kv.qkv_append_in_gemv = **on;
  }
  if (auto on = EnvSwitch("CHAI_ALLREDUCE_IN_GEMV"); !on.ok()) {
    return on.status();
  } else if (on->has_value()) {
    kv.allreduce_in_gemv = **on;
  }
  if (const char* l2 = std::getenv("CHAI_L2_PREFETCH")) {
    auto budget = ParseL2Prefetch(l2);
    if (!budget.ok()) return budget.status();
    kv.l2_prefetch = *budget;
  } else if (layout.world > 1) {
    // At TP > 1 the fused all-reduce + norm's blocks without a row carry the norms' hint: 8 MB,
    // from 4 x H200 (opt-66b-tp4-h200.md, twentieth session; settings in turn on one host):
    // OPT-66B batch 1 0.4-1.0% shorter than without (two rounds), LLaMA-7B at TP = 4 1.0% (one
    // round); 24 MB gave OPT-66B less (0.1-0.4%). Attention's hint stays off, as at TP = 1.
    kv.l2_prefetch = EngineOptions::L2PrefetchBudget{0, int64_t{8} << 20, false};
  }
  // At least 8: CHAI reads its first 5 positions from a sequence's first block (engine.cc).
  if (options.kv_block_size < 8 || options.kv_block_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-block-size must be between 8 and 4096, got ", options.kv_block_size));
  }
  kv.block_size = options.kv_block_size;
  const int64_t block_bytes = int64_t{kv.block_size} * m.config.head_dim * static_cast<int64_t>(DTypeSize(*dtype));
  if (options.kv_cache_gb < 0) return absl::InvalidArgumentError("--kv-cache-gb must be positive");
  if (options.kv_cache_gb > 0) {
    kv.num_blocks = static_cast<int64_t>(options.kv_cache_gb * (1LL << 30) / block_bytes);
  } else if (*device == Device::kCuda) {
    kv.num_blocks = static_cast<int64_t>(0.9 * FreeDeviceMemory() / block_bytes);
  } else {
    kv.num_blocks = sequences * BlocksForSequence(max_len > 0 ? max_len : m.config.max_positions, m.config.num_layers,
                                                  weights->local_kv_heads, kv.block_size);
  }
  if (kv.num_blocks < 1) return absl::ResourceExhaustedError("no memory left for the KV cache");
  m.engine = std::make_unique<Engine>(m.config, std::move(*weights), m.comm.get(), *dtype, *device, kv);
  if (options.chai != "off") {
    if (auto s = SetUpChai(options, layout, &m); !s.ok()) return s;
  }
  return m;
}

}  // namespace chai
