#include "runtime/cli/model_options.h"

#include <sched.h>

#include <cmath>
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
#include "runtime/cli/engine_environment.h"
#include "runtime/cli/memory_checks.h"
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

// The CHAI schedule and this rank's options, read and split before the weights load (a bad
// --chai fails at once); the policy itself needs the engine (InstallChai).
struct ChaiSetup {
  ChaiSchedule schedule;
  ChaiOptions options;
};

absl::StatusOr<ChaiSetup> PrepareChai(const ModelOptions& options, const ModelConfig& c, const ParallelLayout& layout) {
  auto schedule = std::filesystem::exists(options.chai)
                      ? LoadChaiSchedule(options.chai, c.num_layers, c.num_heads)
                      : ScheduleFromList(options.chai, c.num_layers, c.num_heads);
  if (!schedule.ok()) {
    if (!std::filesystem::exists(options.chai) && options.chai.find_first_not_of("0123456789x, ") != std::string::npos) {
      return absl::NotFoundError(absl::StrCat("--chai: no such schedule file: ", options.chai));
    }
    return schedule.status();
  }
  auto split = SplitSchedule(schedule->layer_clusters, c.num_heads, layout.world);
  if (!split.ok()) return split.status();
  ChaiSetup setup{*schedule, {}};
  for (const auto& per_rank : *split) setup.options.local_clusters.push_back(per_rank[layout.rank]);
  setup.options.method = *ParseClusterMethod(options.chai_cluster);  // checked by CheckNames
  setup.options.rep = *ParseRepMethod(options.chai_rep);
  setup.options.seed = static_cast<uint64_t>(options.seed);
  return setup;
}

void InstallChai(ChaiSetup setup, LoadedModel* m) {
  std::vector<std::vector<int>> global_heads;
  for (const LayerWeights& layer : m->engine->weights().layers) global_heads.push_back(layer.heads);
  m->chai_schedule = std::move(setup.schedule);
  m->chai = std::make_unique<ChaiPolicy>(std::move(setup.options), std::move(global_heads),
                                         m->engine->weights().local_kv_heads, m->config.head_dim);
  m->engine->set_attention_policy(m->chai.get());
}

// --device and --dtype: known values, a device this build and host can use, fp32 on the CPU.
absl::Status ParseTarget(const ModelOptions& options, Device* device, DType* dtype) {
  if (options.device != "cpu" && options.device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("--device must be cpu or cuda (got '", options.device, "')"));
  }
  *device = options.device == "cuda" ? Device::kCuda : Device::kCpu;
  auto parsed = ParseDType(options.dtype);
  if (!parsed.ok() || *parsed == DType::kI32 || *parsed == DType::kI64) {
    return absl::InvalidArgumentError(absl::StrCat("--dtype must be fp32, fp16 or bf16 (got '", options.dtype, "')"));
  }
  *dtype = *parsed;
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
  return absl::OkStatus();
}

// --max-seq-len and --kv-block-size against the model's config, before anything loads.
absl::Status CheckSequenceOptions(const ModelOptions& options, const ModelConfig& config) {
  if (options.max_seq_len < 0) return absl::InvalidArgumentError("--max-seq-len must be positive");
  // Learned position tables (OPT) end where they end; rotary positions extend.
  if (config.arch == Arch::kOpt && options.max_seq_len > config.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat("--max-seq-len ", options.max_seq_len,
                                                   " exceeds OPT's learned positions (", config.max_positions, ")"));
  }
  // At least 8: CHAI reads its first 5 positions from a sequence's first block (engine.cc).
  if (options.kv_block_size < 8 || options.kv_block_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-block-size must be between 8 and 4096, got ", options.kv_block_size));
  }
  if (options.kv_cache_gb < 0) return absl::InvalidArgumentError("--kv-cache-gb must be positive");
  return absl::OkStatus();
}

// The most CPU threads --threads or CHAI_NUM_THREADS may ask for: past any host's CPUs, where
// starting them would only fail (the process aborted on the first thread the system refused).
constexpr int kMaxCpuThreads = 4096;

// The CPU thread pool's size (CHAI_NUM_THREADS, read by kernels/cpu/parallel_for.cc): --threads wins
// over the variable; the variable alone must be a thread count, not silently replaced by the
// hardware's; neither: this rank's share of the host's CPUs.
absl::Status ConfigureThreads(const ModelOptions& options, int local_ranks) {
  if (options.threads < 0 || options.threads > kMaxCpuThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads must be between 1 and ", kMaxCpuThreads, " (0: the default), got ", options.threads));
  }
  const char* env_threads = std::getenv("CHAI_NUM_THREADS");
  if (env_threads != nullptr && options.threads == 0) {
    int n = 0;
    if (!absl::SimpleAtoi(env_threads, &n) || n < 1 || n > kMaxCpuThreads) {
      return absl::InvalidArgumentError(absl::StrCat("CHAI_NUM_THREADS must be an integer from 1 to ", kMaxCpuThreads,
                                                     ", got '", env_threads, "'"));
    }
    return absl::OkStatus();
  }
  const int threads = options.threads > 0 ? options.threads : DefaultThreads(local_ranks);
  setenv("CHAI_NUM_THREADS", std::to_string(threads).c_str(), 1);
  return absl::OkStatus();
}

// The head placement (--placement, else contiguous blocks) and the split it gives this rank.
absl::Status SetUpPlacement(const ModelOptions& options, LoadedModel* m, ParallelLayout* layout) {
  const ModelConfig& c = m->config;
  m->placement = HeadPlacement::Identity(c.num_layers, c.num_heads, layout->world);
  if (!options.placement.empty()) {
    auto placement = LoadPlacement(options.placement);
    if (!placement.ok()) return placement.status();
    if (auto s = placement->Validate(c.num_layers, c.num_heads, layout->world, c.kv_group_size()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--placement ", options.placement, ": ", s.message()));
    }
    m->placement = *placement;
    layout->head_perm = m->placement.layer_perm;
  }
  return CheckSplit(c, *layout);
}

// LoadWeights with a line every 10 s while it runs and its total time once done, when slow
// (rank 0; random weights are drawn on the host). Quick loads stay silent, so a bad input still
// prints its one error line.
absl::StatusOr<ModelWeights> LoadWeightsReporting(const ModelConfig& config, TensorSource& source,
                                                  const ParallelLayout& layout, DType dtype, Device device,
                                                  const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  auto next_report = start + std::chrono::seconds(10);
  const LoadProgress progress = [&](int done, int total) {
    const auto now = std::chrono::steady_clock::now();
    if (layout.rank != 0 || done == total || now < next_report) return;
    next_report = now + std::chrono::seconds(10);
    std::fprintf(stderr, "loading weights: %d of %d layers, %.0f s\n", done, total,
                 std::chrono::duration<double>(now - start).count());
  };
  auto weights = LoadWeights(config, source, layout, dtype, device, progress);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (weights.ok() && layout.rank == 0 && seconds >= 2.0) {
    std::fprintf(stderr, "loaded %s, %d rank%s, in %.1f s\n", what.c_str(), layout.world,
                 layout.world == 1 ? "" : "s", seconds);
  }
  return weights;
}

// The KV cache's blocks (a double: --kv-cache-gb or a batch may ask for more than an int64 holds,
// which CheckKvCacheFits refuses): --kv-cache-gb, else 90% of the GPU's free memory after the
// weights, else (CPU) what `sequences` sequences of max_len positions need. `what` says which.
double KvBlocks(const ModelOptions& options, const ModelConfig& config, Device device, int64_t block_bytes,
                int64_t sequences, int64_t max_len, int local_kv_heads, int block_size, std::string* what) {
  if (options.kv_cache_gb > 0) {
    *what = absl::StrCat("--kv-cache-gb ", options.kv_cache_gb);
    return std::floor(options.kv_cache_gb * (1LL << 30) / static_cast<double>(block_bytes));
  }
  if (device == Device::kCuda) {
    *what = "90% of the GPU's free memory";
    return std::floor(0.9 * static_cast<double>(FreeDeviceMemory()) / static_cast<double>(block_bytes));
  }
  const int64_t length = max_len > 0 ? max_len : config.max_positions;
  *what = absl::StrCat(sequences, " sequence", sequences == 1 ? "" : "s", " of ", length, " positions");
  return static_cast<double>(sequences) *
         static_cast<double>(BlocksForSequence(length, config.num_layers, local_kv_heads, block_size));
}

// The KV cache's shape in kv (block size, blocks, rows of the block tables) once the weights are
// on the device: an error when not one block fits or the blocks do not fit the memory.
absl::Status SizeKvCache(const ModelOptions& options, const ModelConfig& config, Device device, DType dtype,
                         int64_t sequences, int64_t max_len, int local_kv_heads, int local_ranks, EngineOptions* kv) {
  kv->block_size = options.kv_block_size;
  const int64_t block_bytes = int64_t{kv->block_size} * config.head_dim * static_cast<int64_t>(DTypeSize(dtype));
  std::string what;
  const double blocks =
      KvBlocks(options, config, device, block_bytes, sequences, max_len, local_kv_heads, kv->block_size, &what);
  if (blocks < 1) {
    return absl::ResourceExhaustedError(
        options.kv_cache_gb > 0
            ? absl::StrCat("--kv-cache-gb ", options.kv_cache_gb, " holds no KV block of ", block_bytes, " bytes")
            : absl::StrCat("no GPU memory is left after the weights for a KV block of ", block_bytes, " bytes"));
  }
  if (auto s = CheckKvCacheFits(blocks, block_bytes, device, local_ranks, what); !s.ok()) return s;
  kv->num_blocks = static_cast<int64_t>(blocks);
  // Rows of the block tables (sequences alive at once): at least 64, and never more than the cache
  // holds at one position each, so that an absurd --batch meets a full cache, not tables (on the
  // GPU and the host) of its size.
  const int64_t min_blocks = BlocksForSequence(1, config.num_layers, local_kv_heads, kv->block_size);
  const int64_t holds = std::max<int64_t>(1, kv->num_blocks / min_blocks);
  kv->max_sequences = static_cast<int>(std::min<int64_t>(std::max<int64_t>(64, sequences), holds));
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPositions(const ModelOptions& options, int64_t needed, const std::string& what) {
  auto config = LoadModelConfig(options.model.empty() ? DefaultModelConfig() : options.model);
  if (!config.ok()) return absl::OkStatus();  // LoadModel reports it, with the checks it makes first
  const int64_t limit = options.max_seq_len > 0 ? options.max_seq_len : config->max_positions;
  if (needed <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " need ", needed, " positions; the model has ", limit,
                                                 " (max_position_embeddings, or --max-seq-len)"));
}

absl::StatusOr<LoadedModel> LoadModel(const ModelOptions& options, int64_t sequences, int64_t max_len) {
  namespace fs = std::filesystem;
  // Everything that can be checked is checked before the weights load (a minute for a large model).
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
  Device device;
  DType dtype;
  if (auto s = ParseTarget(options, &device, &dtype); !s.ok()) return s;
  if (auto s = CheckSequenceOptions(options, m.config); !s.ok()) return s;
  auto kv = EngineOptionsFromEnvironment(device);
  if (!kv.ok()) return kv.status();

  auto group = Bootstrap();
  if (!group.ok()) return group.status();
  m.group = *group;
  if (auto s = ConfigureThreads(options, m.group.local_size); !s.ok()) return s;
  if (auto s = MakeCommunicator(m.group, device, &m.comm); !s.ok()) return s;
  ParallelLayout layout;
  layout.rank = m.comm->rank();
  layout.world = m.comm->size();
  if (auto s = SetUpPlacement(options, &m, &layout); !s.ok()) return s;
  ApplyTensorParallelDefaults(layout.world, &*kv);
  std::optional<ChaiSetup> chai;
  if (options.chai != "off") {
    auto prepared = PrepareChai(options, m.config, layout);
    if (!prepared.ok()) return prepared.status();
    chai = std::move(*prepared);
  }
  std::unique_ptr<TensorSource> source;
  if (random) {
    source = MakeRandomSource(static_cast<uint64_t>(options.seed));
  } else {
    auto opened = OpenCheckpoint(model);
    if (!opened.ok()) return opened.status();
    source = std::move(*opened);
  }
  if (auto s = CheckWeightsFit(model, m.config, layout.world, m.group.local_size, dtype, device); !s.ok()) return s;

  // Weights are loaded (and checked) with the checkpoint's own positions; --max-seq-len applies after.
  auto weights = LoadWeightsReporting(
      m.config, *source, layout, dtype, device,
      absl::StrCat(model, " (", random ? source->Describe() : "checkpoint", "), ", options.dtype, " on ", options.device));
  if (!weights.ok()) return weights.status();
  if (options.max_seq_len > 0) m.config.max_positions = options.max_seq_len;
  if (auto s = SizeKvCache(options, m.config, device, dtype, sequences, max_len, weights->local_kv_heads,
                           m.group.local_size, &*kv);
      !s.ok()) {
    return s;
  }
  m.engine = std::make_unique<Engine>(m.config, std::move(*weights), m.comm.get(), dtype, device, *kv);
  if (chai.has_value()) InstallChai(std::move(*chai), &m);
  return m;
}

}  // namespace chai
