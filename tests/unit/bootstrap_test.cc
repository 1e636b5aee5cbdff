#include "parallel/bootstrap.h"

#include <cstdlib>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "parallel/communicator.h"

namespace chai {
namespace {

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

bool MpiInitialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

TEST(DetectLaunch, RecognisesLaunchers) {
  EXPECT_EQ(DetectLaunch(FakeEnv({})).launcher, Launcher::kNone);

  LaunchInfo ompi = DetectLaunch(FakeEnv({{"OMPI_COMM_WORLD_SIZE", "4"},
                                          {"OMPI_COMM_WORLD_RANK", "1"},
                                          {"PMIX_RANK", "1"}}));
  EXPECT_EQ(ompi.launcher, Launcher::kOpenMpi);
  EXPECT_EQ(ompi.env_world_size, 4);

  LaunchInfo pmix = DetectLaunch(FakeEnv({{"PMIX_RANK", "0"}, {"SLURM_STEP_ID", "0"},
                                          {"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "8"}}));
  EXPECT_EQ(pmix.launcher, Launcher::kPmix);
  EXPECT_EQ(pmix.env_world_size, 8);

  LaunchInfo pmi = DetectLaunch(FakeEnv({{"PMI_SIZE", "2"}, {"PMI_RANK", "1"}}));
  EXPECT_EQ(pmi.launcher, Launcher::kPmi);
  EXPECT_EQ(pmi.env_world_size, 2);

  LaunchInfo srun = DetectLaunch(FakeEnv({{"SLURM_JOB_ID", "123"}, {"SLURM_STEP_ID", "2"},
                                          {"SLURM_PROCID", "1"}, {"SLURM_LOCALID", "1"},
                                          {"SLURM_NTASKS", "2"}}));
  EXPECT_EQ(srun.launcher, Launcher::kSlurm);
  EXPECT_EQ(srun.env_world_size, 2);
  EXPECT_EQ(srun.slurm.job_id, "123");
  EXPECT_EQ(srun.slurm.procid, 1);
  EXPECT_EQ(srun.slurm.localid, 1);
  EXPECT_EQ(srun.slurm.ntasks, 2);
}

// The batch shell of an sbatch job has SLURM_PROCID=0 but was not started by srun.
TEST(DetectLaunch, SbatchShellIsNotALauncher) {
  std::map<std::string, std::string> batch = {
      {"SLURM_JOB_ID", "77"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}};
  EXPECT_EQ(DetectLaunch(FakeEnv(batch)).launcher, Launcher::kNone);
  batch["SLURM_STEP_ID"] = "4294967291";  // SLURM_BATCH_SCRIPT
  EXPECT_EQ(DetectLaunch(FakeEnv(batch)).launcher, Launcher::kNone);
  batch["SLURM_STEP_ID"] = "4294967294";  // the batch step id of older Slurm versions
  EXPECT_EQ(DetectLaunch(FakeEnv(batch)).launcher, Launcher::kNone);
}

TEST(Bootstrap, SingleProcessWithoutLauncherNeverInitialisesMpi) {
  ASSERT_FALSE(MpiInitialized());
  BootstrapOptions options;
  options.env = FakeEnv({});
  absl::StatusOr<ProcessGroup> group = Bootstrap(options);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ(group->world_rank, 0);
  EXPECT_EQ(group->world_size, 1);
  EXPECT_EQ(group->local_rank, 0);
  EXPECT_EQ(group->local_size, 1);
  EXPECT_EQ(group->device_peer_size, 1);
  EXPECT_FALSE(group->mpi);
  EXPECT_EQ(group->launcher, Launcher::kNone);
  EXPECT_FALSE(group->hostname.empty());
  EXPECT_TRUE(group->warnings.empty());
  EXPECT_FALSE(MpiInitialized());

  // Also with the real environment, minus anything a launcher could have left there.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK",
                           "SLURM_STEP_ID", "SLURM_STEPID"}) {
    unsetenv(name);
  }
  absl::StatusOr<ProcessGroup> real = Bootstrap();
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_EQ(real->world_size, 1);
  EXPECT_FALSE(MpiInitialized());

  Finalize();  // nothing to finalise
  EXPECT_FALSE(MpiInitialized());
}

TEST(Bootstrap, WarnsWhenSlurmExpectsMoreTasks) {
  BootstrapOptions options;
  options.env = FakeEnv({{"SLURM_JOB_ID", "77"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}});
  absl::StatusOr<ProcessGroup> group = Bootstrap(options);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ(group->world_size, 1);
  EXPECT_FALSE(MpiInitialized());
  ASSERT_EQ(group->warnings.size(), 1u);
  EXPECT_NE(group->warnings[0].find("4 tasks"), std::string::npos) << group->warnings[0];
  EXPECT_EQ(group->slurm.job_id, "77");
}

TEST(DescribeRank, OneLineWithSlurmFields) {
  ProcessGroup group;
  group.world_rank = 1;
  group.world_size = 2;
  group.local_rank = 1;
  group.local_size = 2;
  group.device_peer_rank = 1;
  group.device_peer_size = 2;
  group.hostname = "h";
  group.launcher = Launcher::kSlurm;
  EXPECT_EQ(DescribeRank(group), "rank 1/2 local 1/2 host h via slurm");
  group.slurm.job_id = "123";
  group.slurm.procid = 1;
  group.slurm.localid = 1;
  group.slurm.ntasks = 2;
  EXPECT_EQ(DescribeRank(group),
            "rank 1/2 local 1/2 host h slurm job 123 procid 1 localid 1 ntasks 2 via slurm");
  group.launcher = Launcher::kNone;
  group.slurm = SlurmInfo();
  group.world_size = group.local_size = group.device_peer_size = 1;
  group.world_rank = group.local_rank = group.device_peer_rank = 0;
  EXPECT_EQ(DescribeRank(group), "rank 0/1 local 0/1 host h");
}

TEST(ChooseDevice, OneRankPerVisibleDevice) {
  EXPECT_EQ(*ChooseDevice(0, 1, 1), 0);
  EXPECT_EQ(*ChooseDevice(3, 4, 4), 3);
  EXPECT_EQ(*ChooseDevice(3, 4, 8), 3);
  EXPECT_EQ(*ChooseDevice(1, 2, 8), 1);
  // srun --gpus-per-task=1: each task is alone with its one visible device.
  EXPECT_EQ(*ChooseDevice(0, 1, 1), 0);
}

TEST(ChooseDevice, Errors) {
  absl::StatusOr<int> none = ChooseDevice(0, 1, 0);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no CUDA device"), std::string::npos) << none.status();

  absl::StatusOr<int> crowded = ChooseDevice(2, 4, 2);
  ASSERT_FALSE(crowded.ok());
  EXPECT_NE(crowded.status().message().find("4 ranks"), std::string::npos) << crowded.status();
  EXPECT_NE(crowded.status().message().find("2 visible"), std::string::npos) << crowded.status();

  EXPECT_FALSE(ChooseDevice(-1, 2, 2).ok());
  EXPECT_FALSE(ChooseDevice(2, 2, 2).ok());
  EXPECT_FALSE(ChooseDevice(0, 0, 2).ok());
}

TEST(BroadcastBytesFromRoot, WithoutMpiReturnsTheInput) {
  ASSERT_FALSE(MpiInitialized());
  absl::StatusOr<std::string> bytes = BroadcastBytesFromRoot(std::string("id\0bytes", 8));
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, std::string("id\0bytes", 8));
  EXPECT_FALSE(BroadcastBytesFromRoot("x", MPI_COMM_WORLD, 1).ok());
  EXPECT_FALSE(MpiInitialized());
}

TEST(SingleCommunicator, CollectivesAreIdentities) {
  std::unique_ptr<Communicator> comm = MakeSingleCommunicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);

  Tensor t = Tensor::FromFloats({1.5f, -2.0f, 3.25f, 7.0f}, {2, 2});
  ASSERT_TRUE(comm->AllReduceSum(&t).ok());
  EXPECT_EQ(t.ToFloats(), (std::vector<float>{1.5f, -2.0f, 3.25f, 7.0f}));
  ASSERT_TRUE(comm->Broadcast(&t, 0).ok());
  EXPECT_FALSE(comm->Broadcast(&t, 1).ok());
  Tensor undefined;
  EXPECT_FALSE(comm->AllReduceSum(&undefined).ok());

  Tensor gathered;
  ASSERT_TRUE(comm->AllGatherColumns(t, &gathered).ok());
  EXPECT_EQ(gathered.shape(), t.shape());
  EXPECT_NE(gathered.raw(), t.raw());
  EXPECT_EQ(gathered.ToFloats(), t.ToFloats());

  Tensor preallocated = Tensor::FromFloats({-9, -9, -9, -9}, {2, 2});
  ASSERT_TRUE(comm->AllGatherColumns(t, &preallocated).ok());
  EXPECT_EQ(preallocated.ToFloats(), t.ToFloats());
  Tensor wrong = Tensor::Zeros({2, 4}, DType::kF32);
  EXPECT_FALSE(comm->AllGatherColumns(t, &wrong).ok());
  EXPECT_TRUE(comm->Barrier().ok());
}

}  // namespace
}  // namespace chai
