#include "parallel/bootstrap.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "parallel/mpi_error.h"

namespace chai {
namespace {

bool IsSet(const EnvLookup& env, const char* name) {
  const char* value = env(name);
  return value != nullptr && value[0] != '\0';
}

// -1 when unset or not a non-negative integer.
int64_t EnvInt(const EnvLookup& env, const char* name) {
  const char* value = env(name);
  int64_t parsed;
  if (value == nullptr || !absl::SimpleAtoi(value, &parsed) || parsed < 0) return -1;
  return parsed;
}

// Slurm numbers its special steps (batch script, extern container, interactive shell,
// pending) from the top of the 32-bit range; processes in those steps were not started by srun.
bool IsSrunStep(const EnvLookup& env) {
  int64_t step = EnvInt(env, "SLURM_STEP_ID");
  if (step < 0) step = EnvInt(env, "SLURM_STEPID");
  return step >= 0 && step < 0xFFFFFFF0LL && EnvInt(env, "SLURM_PROCID") >= 0;
}

bool MpiUsable() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

std::string Hostname() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

// Node-local rank and the rank among the local ranks that see the same GPUs.
absl::Status FindLocalRanks(const EnvLookup& env, ProcessGroup* group) {
  MPI_Comm node;
  int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, group->world_rank,
                               MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  MPI_Comm_rank(node, &group->local_rank);
  MPI_Comm_size(node, &group->local_size);

  // srun --gpus-per-task / --gpu-bind give each task its own CUDA_VISIBLE_DEVICES; then
  // every task counts from device 0 of its own view.
  const char* visible = env("CUDA_VISIBLE_DEVICES");
  size_t hash = std::hash<std::string>()(visible == nullptr ? std::string("\x01unset")
                                                            : std::string(visible));
  int color = static_cast<int>(hash & 0x7FFFFFFF);
  MPI_Comm peers;
  rc = MPI_Comm_split(node, color, group->local_rank, &peers);
  if (rc != MPI_SUCCESS) {
    MPI_Comm_free(&node);
    return MpiError(rc, "MPI_Comm_split(CUDA_VISIBLE_DEVICES)");
  }
  MPI_Comm_rank(peers, &group->device_peer_rank);
  MPI_Comm_size(peers, &group->device_peer_size);
  MPI_Comm_free(&peers);
  MPI_Comm_free(&node);
  return absl::OkStatus();
}

}  // namespace

const char* LauncherName(Launcher launcher) {
  switch (launcher) {
    case Launcher::kNone: return "none";
    case Launcher::kOpenMpi: return "openmpi";
    case Launcher::kPmix: return "pmix";
    case Launcher::kPmi: return "pmi";
    case Launcher::kSlurm: return "slurm";
  }
  return "unknown";
}

EnvLookup ProcessEnv() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

LaunchInfo DetectLaunch(const EnvLookup& env) {
  LaunchInfo info;
  const char* job = env("SLURM_JOB_ID");
  if (job == nullptr) job = env("SLURM_JOBID");
  if (job != nullptr) info.slurm.job_id = job;
  info.slurm.procid = static_cast<int>(EnvInt(env, "SLURM_PROCID"));
  info.slurm.localid = static_cast<int>(EnvInt(env, "SLURM_LOCALID"));
  info.slurm.ntasks = static_cast<int>(EnvInt(env, "SLURM_NTASKS"));
  if (info.slurm.ntasks < 0) info.slurm.ntasks = static_cast<int>(EnvInt(env, "SLURM_NPROCS"));

  int64_t step_tasks = EnvInt(env, "SLURM_STEP_NUM_TASKS");
  if (IsSet(env, "OMPI_COMM_WORLD_SIZE")) {
    info.launcher = Launcher::kOpenMpi;
    info.env_world_size = static_cast<int>(EnvInt(env, "OMPI_COMM_WORLD_SIZE"));
  } else if (IsSet(env, "PMIX_RANK")) {
    info.launcher = Launcher::kPmix;
    info.env_world_size = static_cast<int>(step_tasks);
  } else if (IsSet(env, "PMI_SIZE") || IsSet(env, "PMI_RANK")) {
    info.launcher = Launcher::kPmi;
    info.env_world_size = static_cast<int>(EnvInt(env, "PMI_SIZE"));
  } else if (IsSrunStep(env)) {
    info.launcher = Launcher::kSlurm;
    info.env_world_size = static_cast<int>(step_tasks >= 0 ? step_tasks : info.slurm.ntasks);
  }
  return info;
}

absl::StatusOr<ProcessGroup> Bootstrap(const BootstrapOptions& options) {
  const EnvLookup env = options.env ? options.env : ProcessEnv();
  LaunchInfo launch = DetectLaunch(env);

  ProcessGroup group;
  group.hostname = Hostname();
  group.launcher = launch.launcher;
  group.slurm = launch.slurm;

  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  bool want_mpi = launch.launcher != Launcher::kNone || options.force_mpi || initialized;
  if (want_mpi) {
    if (finalized) {
      return absl::FailedPreconditionError("Bootstrap: MPI was already finalised in this process");
    }
    if (!initialized) {
      // FUNNELED: only the main thread calls MPI; CPU op worker threads never do.
      int provided = 0;
      int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      if (rc != MPI_SUCCESS) {
        return absl::InternalError(absl::StrCat(
            "MPI_Init_thread failed (MPI error ", rc, ") under launcher ",
            LauncherName(launch.launcher), "; is the MPI library the one the launcher belongs to?"));
      }
      if (provided < MPI_THREAD_FUNNELED) {
        group.warnings.push_back(absl::StrCat("MPI provides thread level ", provided,
                                              " < MPI_THREAD_FUNNELED"));
      }
    }
    group.mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &group.world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &group.world_size);
    absl::Status local = FindLocalRanks(env, &group);
    if (!local.ok()) return local;
  }

  if (group.slurm.ntasks > 0 && group.slurm.ntasks != group.world_size) {
    group.warnings.push_back(absl::StrCat(
        "Slurm says ", group.slurm.ntasks, " tasks (SLURM_NTASKS) but the MPI world has ",
        group.world_size, " rank(s) (launcher ", LauncherName(launch.launcher),
        "); start the ranks with `srun --mpi=pmix` or `mpirun` inside the allocation"));
  }
  if (group.warnings.empty() && launch.env_world_size > 0 && group.mpi &&
      launch.env_world_size != group.world_size) {
    group.warnings.push_back(absl::StrCat(
        "the launcher announced ", launch.env_world_size, " ranks but MPI_Init gave a world of ",
        group.world_size, "; each process may be running alone (check srun --mpi=pmix)"));
  }
  // Every rank sees the same warnings except in the broken case where each process is
  // its own world of one (and so rank 0): print once per world.
  if (group.world_rank == 0) {
    for (const std::string& warning : group.warnings) {
      std::fprintf(stderr, "chai: warning: %s\n", warning.c_str());
    }
  }
  if (options.log_rank) std::fprintf(stderr, "chai: %s\n", DescribeRank(group).c_str());
  return group;
}

void Finalize() {
  if (MpiUsable()) MPI_Finalize();
}

std::string DescribeRank(const ProcessGroup& group) {
  std::string line = absl::StrCat("rank ", group.world_rank, "/", group.world_size, " local ",
                                  group.local_rank, "/", group.local_size, " host ", group.hostname);
  if (group.device_peer_size != group.local_size) {
    absl::StrAppend(&line, " device-peers ", group.device_peer_rank, "/", group.device_peer_size);
  }
  const SlurmInfo& slurm = group.slurm;
  if (slurm.present()) {
    absl::StrAppend(&line, " slurm");
    if (!slurm.job_id.empty()) absl::StrAppend(&line, " job ", slurm.job_id);
    if (slurm.procid >= 0) absl::StrAppend(&line, " procid ", slurm.procid);
    if (slurm.localid >= 0) absl::StrAppend(&line, " localid ", slurm.localid);
    if (slurm.ntasks >= 0) absl::StrAppend(&line, " ntasks ", slurm.ntasks);
  }
  if (group.launcher != Launcher::kNone) {
    absl::StrAppend(&line, " via ", LauncherName(group.launcher));
  }
  return line;
}

absl::StatusOr<int> ChooseDevice(int peer_rank, int peer_size, int visible_device_count) {
  if (peer_size < 1 || peer_rank < 0 || peer_rank >= peer_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("ChooseDevice: local rank ", peer_rank, " is not in [0, ", peer_size, ")"));
  }
  if (visible_device_count <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA device is visible to local rank ", peer_rank,
        " (check CUDA_VISIBLE_DEVICES and the job's GPU request), or use --device cpu"));
  }
  if (peer_size > visible_device_count) {
    return absl::FailedPreconditionError(absl::StrCat(
        peer_size, " ranks on this host share ", visible_device_count,
        " visible CUDA device(s); start at most one rank per GPU (e.g. mpirun -np ",
        visible_device_count, " per host, or srun --ntasks-per-node=", visible_device_count,
        " --gpus-per-task=1)"));
  }
  return peer_rank % visible_device_count;
}

absl::StatusOr<std::string> BroadcastBytesFromRoot(std::string bytes_on_root, MPI_Comm comm,
                                                   int root) {
  if (!MpiUsable()) {
    if (root != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("BroadcastBytesFromRoot: root ", root, " without MPI (one rank)"));
    }
    return bytes_on_root;
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (root < 0 || root >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("BroadcastBytesFromRoot: root ", root, " not in [0, ", size, ")"));
  }
  uint64_t length = rank == root ? bytes_on_root.size() : 0;
  int rc = MPI_Bcast(&length, 1, MPI_UINT64_T, root, comm);
  if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Bcast(length)");
  std::string bytes = rank == root ? std::move(bytes_on_root) : std::string(length, '\0');
  for (uint64_t offset = 0; offset < length;) {
    int chunk = static_cast<int>(std::min<uint64_t>(length - offset, INT_MAX));
    rc = MPI_Bcast(bytes.data() + offset, chunk, MPI_BYTE, root, comm);
    if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Bcast(bytes)");
    offset += chunk;
  }
  return bytes;
}

}  // namespace chai
