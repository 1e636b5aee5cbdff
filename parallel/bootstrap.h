// Process start-up: who am I among the ranks, on which host, with which GPU.
//
// One process per GPU, started by `mpirun` or `srun --mpi=pmix` (or run directly as a
// single process). Bootstrap() looks at the launcher's environment first: a process that no
// launcher started never calls MPI_Init, so `chai generate` works on a machine without a
// working MPI runtime. Under a launcher it initialises MPI, finds the world rank and size
// and the node-local rank (ranks sharing memory with this one), and cross-checks Slurm's view.
#ifndef CHAI_PARALLEL_BOOTSTRAP_H_
#define CHAI_PARALLEL_BOOTSTRAP_H_

// The C API only (the top-level CMakeLists defines OMPI_SKIP_MPICXX for every target).
#include <mpi.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace chai {

// What started this process, as told by environment variables.
enum class Launcher {
  kNone,     // plain process: world size 1, MPI untouched
  kOpenMpi,  // mpirun/mpiexec of Open MPI (OMPI_COMM_WORLD_SIZE)
  kPmix,     // a PMIx server: srun --mpi=pmix, prrte (PMIX_RANK)
  kPmi,      // PMI-1/2: MPICH/Hydra, srun --mpi=pmi2 (PMI_SIZE / PMI_RANK)
  kSlurm,    // an srun job step with no PMI variables (SLURM_STEP_ID with SLURM_PROCID)
};
const char* LauncherName(Launcher launcher);

// Slurm variables of this task; -1 / empty where unset.
struct SlurmInfo {
  std::string job_id;  // SLURM_JOB_ID
  int procid = -1;     // SLURM_PROCID: global task rank
  int localid = -1;    // SLURM_LOCALID: task rank on this node
  int ntasks = -1;     // SLURM_NTASKS (SLURM_NPROCS on old versions)
  bool present() const { return !job_id.empty() || procid >= 0 || ntasks >= 0; }
};

// Reads an environment variable: nullptr when unset. Tests pass a fake one.
using EnvLookup = std::function<const char*(const char*)>;
EnvLookup ProcessEnv();  // std::getenv

struct LaunchInfo {
  Launcher launcher = Launcher::kNone;
  int env_world_size = -1;  // size announced by the launcher, where it says so
  SlurmInfo slurm;
};
// Pure: decides from the environment only. Inside an sbatch script but outside srun,
// SLURM_PROCID is set for the batch shell too, so Slurm alone counts as a launcher only
// within a job step (SLURM_STEP_ID set and not the batch/extern step).
LaunchInfo DetectLaunch(const EnvLookup& env);

struct ProcessGroup {
  int world_rank = 0;
  int world_size = 1;
  int local_rank = 0;  // among the ranks on this host (MPI_COMM_TYPE_SHARED)
  int local_size = 1;
  // Among the ranks on this host that see the same CUDA_VISIBLE_DEVICES: the rank and count
  // to choose a device with. Equal to local_* unless the launcher binds GPUs per task.
  int device_peer_rank = 0;
  int device_peer_size = 1;
  std::string hostname;
  Launcher launcher = Launcher::kNone;
  bool mpi = false;  // MPI is initialised and MPI_COMM_WORLD is usable
  SlurmInfo slurm;
  std::vector<std::string> warnings;  // also printed to stderr by Bootstrap
};

struct BootstrapOptions {
  // Prints DescribeRank() of every rank to stderr.
  bool log_rank = false;
  // Initialises MPI even without launcher variables (an MPI singleton): for tests and for
  // launchers this code does not know.
  bool force_mpi = false;
  // Defaults to ProcessEnv(); tests inject a fake environment.
  EnvLookup env;
};

// Safe to call again: a second call (or one after someone else called MPI_Init) does not
// re-initialise MPI. Errors: MPI initialisation failed.
absl::StatusOr<ProcessGroup> Bootstrap(const BootstrapOptions& options = {});

// Calls MPI_Finalize when MPI is initialised and not yet finalised; otherwise nothing.
void Finalize();

// One line for logs: "rank 1/2 local 1/2 host h1 slurm job 123 procid 1 localid 1 ntasks 2
// via pmix" (the slurm part when Slurm variables are set, "via" when a launcher started us).
std::string DescribeRank(const ProcessGroup& group);

// The CUDA device (index among the visible ones) for a rank that is `peer_rank` of
// `peer_size` ranks sharing `visible_device_count` devices: peer_rank % count. Errors
// when no device is visible or when more ranks share the devices than there are devices
// (two ranks on one GPU would each hold a full shard and run out of memory or time).
// Pass ProcessGroup::device_peer_rank/_size, and cudaGetDeviceCount() as the count: it
// counts the devices CUDA_VISIBLE_DEVICES leaves visible.
absl::StatusOr<int> ChooseDevice(int peer_rank, int peer_size, int visible_device_count);

// Every rank of `comm` returns the bytes that `root` passed in (the others' argument is
// ignored). Without MPI initialised (single process) returns the argument. Used to share
// the ncclUniqueId that rank 0 makes.
absl::StatusOr<std::string> BroadcastBytesFromRoot(std::string bytes_on_root,
                                                   MPI_Comm comm = MPI_COMM_WORLD,
                                                   int root = 0);

}  // namespace chai

#endif  // CHAI_PARALLEL_BOOTSTRAP_H_
