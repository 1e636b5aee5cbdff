// CHAI under tensor parallelism: when the head placement keeps every cluster of the
// single-process run on one rank (and each rank forms as many clusters as it holds),
// per-rank clustering reproduces the single-process membership and logits (fp32, 1e-4).
// With CHAI_TEST_CUDA=1 (chai_tp_gpu_test_np2/4, label gpu) the same comparison runs on GPUs:
// one GPU per rank, NCCL collectives, CHAI's GPU path; the reference is a one-GPU run.
#include <mpi.h>

#include <cstdlib>
#include <map>

#include "gtest/gtest.h"
#include "parallel/head_placement.h"
#include "parallel/mpi_communicator.h"
#include "runtime/chai/membership_report.h"
#include "runtime/generator.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/mpi_main.h"
#include "tests/support/test_paths.h"
#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "parallel/nccl_communicator.h"
#endif

namespace chai::testing {
namespace {

bool OnGpus() {
  const char* v = std::getenv("CHAI_TEST_CUDA");
  return v != nullptr && std::string(v) == "1";
}

// The ranks' communicator: MPI on the CPU; on GPUs, NCCL with one GPU per rank.
std::unique_ptr<Communicator> MakeTestCommunicator() {
#ifdef CHAI_WITH_CUDA
  if (OnGpus()) {
    int rank = 0, gpus = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < 1) return nullptr;
    cudaSetDevice(rank % gpus);
    auto nccl = MakeNcclCommunicator(MPI_COMM_WORLD, cuda::CurrentStream());
    return nccl.ok() ? std::move(*nccl) : nullptr;
  }
#endif
  return OnGpus() ? nullptr : MakeMpiCommunicator(MPI_COMM_WORLD);
}

Device TestDevice() { return OnGpus() ? Device::kCuda : Device::kCpu; }

// Packs clusters (lists of heads) into `world` ranks of equal size; false when impossible.
bool Pack(const std::vector<std::vector<int>>& clusters, size_t i, int per_rank, std::vector<std::vector<int>>* ranks,
          std::vector<std::vector<int>>* which) {
  if (i == clusters.size()) return true;
  for (size_t r = 0; r < ranks->size(); ++r) {
    if ((*ranks)[r].size() + clusters[i].size() > static_cast<size_t>(per_rank)) continue;
    (*ranks)[r].insert((*ranks)[r].end(), clusters[i].begin(), clusters[i].end());
    (*which)[r].push_back(static_cast<int>(i));
    if (Pack(clusters, i + 1, per_rank, ranks, which)) return true;
    (*ranks)[r].resize((*ranks)[r].size() - clusters[i].size());
    (*which)[r].pop_back();
  }
  return false;
}

int tested_cases = 0;

class ChaiTensorParallel : public ::testing::TestWithParam<std::string> {};

TEST_P(ChaiTensorParallel, LocalClustersMatchSingleProcess) {
  const std::string dir = FixtureDir(GetParam());
  auto comm = MakeTestCommunicator();
  ASSERT_NE(comm, nullptr) << "no communicator (CHAI_TEST_CUDA=1 needs a CUDA build and a GPU per rank)";
  const int world = comm->size();
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok());
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok());
  const int H = config->num_heads, L = config->num_layers;
  // Schedules with few merges, so that whole clusters can fit on ranks of H / world heads.
  std::vector<std::vector<int>> schedules = {std::vector<int>(L, H - 1), std::vector<int>(L, H)};
  schedules[1].back() = H - 1;
  for (const std::vector<int>& schedule : schedules) {
    for (const Json& c : golden->Find("cases")->as_array()) {
      const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
      if (prompt.size() < 5) continue;
      // Single-process run on every rank: the reference.
      auto single = LoadTestModel(dir, nullptr, {}, DType::kF32, TestDevice());
      ASSERT_TRUE(single.ok());
      if (single->config.num_heads % world != 0) GTEST_SKIP() << "heads not divisible by " << world;
      auto single_policy = AttachChai(*single, schedule);
      GenerateOptions options;
      options.max_new_tokens = 6;
      options.keep_prompt_logits = true;
      options.chai = single_policy.get();
      auto ref = Generate(*single->engine, {prompt}, options);
      ASSERT_TRUE(ref.ok());
      const auto reps = LocalRepresentatives(*ref->sequences[0], single->engine->weights());

      // A placement that keeps each cluster on one rank, and the per-rank cluster counts.
      const int heads = single->config.num_heads, per_rank = heads / world;
      ParallelLayout layout;
      std::vector<int> local_clusters;
      bool packable = true;
      for (size_t l = 0; l < reps.size() && packable; ++l) {
        std::map<int, std::vector<int>> by_rep;
        for (int h = 0; h < heads; ++h) by_rep[reps[l][h]].push_back(h);
        std::vector<std::vector<int>> clusters;
        for (auto& [rep, members] : by_rep) clusters.push_back(members);
        std::sort(clusters.begin(), clusters.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
        std::vector<std::vector<int>> ranks(world), which(world);
        packable = Pack(clusters, 0, per_rank, &ranks, &which);
        if (!packable) break;
        std::vector<int> perm;
        for (auto& r : ranks) {
          std::sort(r.begin(), r.end());
          perm.insert(perm.end(), r.begin(), r.end());
        }
        layout.head_perm.push_back(perm);
        local_clusters.push_back(static_cast<int>(which[comm->rank()].size()));
      }
      if (!packable) continue;  // this membership cannot be co-located: nothing to compare
      ++tested_cases;
      auto split = LoadTestModel(dir, comm.get(), layout, DType::kF32, TestDevice());
      ASSERT_TRUE(split.ok()) << split.status();
      auto split_policy = AttachChai(*split, local_clusters);
      options.chai = split_policy.get();
      auto out = Generate(*split->engine, {prompt}, options);
      ASSERT_TRUE(out.ok());
      HeadPlacement placement{world, layout.head_perm};
      EXPECT_EQ(GlobalRepresentatives(*out->sequences[0], split->engine->weights(), placement, comm.get()), reps);
      // The per-rank report adds up to the single-process representatives and K bytes.
      int total_reps = 0, expected_reps = 0;
      int64_t total_k = 0;
      for (const RankKv& r : PerRankKv(*out->sequences[0], comm.get())) {
        total_reps += r.representatives;
        total_k += r.k_bytes_per_token;
      }
      for (const auto& layer : reps)
        for (size_t h = 0; h < layer.size(); ++h) expected_reps += layer[h] == static_cast<int>(h) ? 1 : 0;
      EXPECT_EQ(total_reps, expected_reps);
      EXPECT_EQ(total_k, ref->sequences[0]->kv.KBytesPerToken());
      std::vector<std::vector<float>> a, b;
      for (const Tensor* t : {&out->prompt_logits[0], &ref->prompt_logits[0]}) {
        auto& dst = t == &out->prompt_logits[0] ? a : b;
        for (int64_t r = 0; r < t->dim(0); ++r)
          dst.emplace_back(t->data<float>() + r * t->dim(1), t->data<float>() + (r + 1) * t->dim(1));
      }
      EXPECT_LE(MaxAbsDiff(a, b), 1e-4);
      EXPECT_EQ(out->output_ids[0], ref->output_ids[0]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChaiTensorParallel, ::testing::Values("opt-preln", "opt-postln", "llama-mha"),
                         FixtureParamName());

}  // namespace
}  // namespace chai::testing

int main(int argc, char** argv) {
  // The suite must have compared something: a vacuous pass would hide a broken packing.
  return chai::testing::RunMpiTests(argc, argv, [](int rank) {
    if (chai::testing::tested_cases == 0) {
      std::fprintf(stderr, "rank %d: no case could be co-located; nothing was compared\n", rank);
      return 1;
    }
    if (rank == 0) std::printf("compared %d co-located cases\n", chai::testing::tested_cases);
    return 0;
  });
}
