// Run under mpirun with 2 and 4 ranks: bootstrap, the MPI communicator on host tensors, and the
// Status an MPI error code becomes (MPI must be initialised to describe one).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/bootstrap.h"
#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_error.h"

namespace chai {
namespace {

int WorldRank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int WorldSize() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// A seed that rank 0 draws fresh and every rank shares, so that each rank can regenerate
// every other rank's data and compute the expected answer by itself.
uint32_t SharedSeed() {
  uint32_t seed = WorldRank() == 0 ? std::random_device()() : 0;
  MPI_Bcast(&seed, 1, MPI_UINT32_T, 0, MPI_COMM_WORLD);
  if (WorldRank() == 0) std::printf("seed %u\n", seed);
  return seed;
}

std::vector<float> RankValues(uint32_t seed, int rank, int64_t n) {
  std::mt19937 rng(seed * 7919u + rank);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

Tensor ToDType(const std::vector<float>& values, std::vector<int64_t> shape, DType dtype) {
  return Tensor::FromFloats(values, std::move(shape)).Cast(dtype);
}

TEST(Bootstrap, UnderMpirun) {
  absl::StatusOr<ProcessGroup> group = Bootstrap();  // again: must not re-initialise
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_TRUE(group->mpi);
  EXPECT_EQ(group->launcher, DetectLaunch(ProcessEnv()).launcher);
  if (WorldSize() > 1) {
    EXPECT_NE(group->launcher, Launcher::kNone);
  }
  EXPECT_EQ(group->world_rank, WorldRank());
  EXPECT_EQ(group->world_size, WorldSize());
  // mpirun of these tests runs every rank on this host.
  EXPECT_EQ(group->local_size, WorldSize());
  EXPECT_EQ(group->local_rank, WorldRank());
  EXPECT_EQ(group->device_peer_size, WorldSize());
  std::string line = DescribeRank(*group);
  EXPECT_EQ(line.rfind("rank " + std::to_string(WorldRank()) + "/" + std::to_string(WorldSize()), 0),
            0u)
      << line;
}

TEST(BroadcastBytesFromRoot, EveryRankGetsRootsBytes) {
  const int size = WorldSize();
  for (int root : {0, size - 1}) {
    std::string expected = "unique id of root " + std::to_string(root) + std::string(3, '\0') + "!";
    std::string mine = WorldRank() == root ? expected : std::string("ignored");
    absl::StatusOr<std::string> got = BroadcastBytesFromRoot(mine, MPI_COMM_WORLD, root);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, expected);
  }
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4099) big[i] = static_cast<char>(i);
  absl::StatusOr<std::string> got = BroadcastBytesFromRoot(WorldRank() == 0 ? big : "");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, big);
  EXPECT_FALSE(BroadcastBytesFromRoot("x", MPI_COMM_WORLD, size).ok());
}

TEST(MpiCommunicator, AllReduceSumFp32MatchesAnalyticSum) {
  std::unique_ptr<Communicator> comm = MakeMpiCommunicator(MPI_COMM_WORLD);
  const int size = comm->size(), rank = comm->rank();
  ASSERT_EQ(size, WorldSize());
  ASSERT_EQ(rank, WorldRank());
  const uint32_t seed = SharedSeed();
  for (std::vector<int64_t> shape : std::vector<std::vector<int64_t>>{{1}, {7, 33}, {3, 5, 64}, {1 << 20}}) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    Tensor t = Tensor::FromFloats(RankValues(seed, rank, n), shape);
    ASSERT_TRUE(comm->AllReduceSum(&t).ok());
    std::vector<double> sum(n, 0.0), magnitude(n, 0.0);
    for (int r = 0; r < size; ++r) {
      std::vector<float> v = RankValues(seed, r, n);
      for (int64_t i = 0; i < n; ++i) {
        sum[i] += v[i];
        magnitude[i] += std::abs(v[i]);
      }
    }
    const float* out = t.data<float>();
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (std::abs(out[i] - sum[i]) > 1e-5 * magnitude[i] && ++bad < 5) {
        ADD_FAILURE() << "element " << i << ": " << out[i] << " vs " << sum[i];
      }
    }
    EXPECT_EQ(bad, 0) << t.ShapeString();
  }
}

TEST(MpiCommunicator, AllReduceSumHalfAndIntegerTypes) {
  std::unique_ptr<Communicator> comm = MakeMpiCommunicator(MPI_COMM_WORLD);
  const int size = comm->size(), rank = comm->rank();
  const uint32_t seed = SharedSeed();
  const int64_t n = 1000;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    Tensor t = ToDType(RankValues(seed, rank, n), {10, 100}, dtype);
    ASSERT_TRUE(comm->AllReduceSum(&t).ok());
    std::vector<double> sum(n, 0.0), magnitude(n, 0.0);
    for (int r = 0; r < size; ++r) {
      std::vector<float> v = ToDType(RankValues(seed, r, n), {n}, dtype).ToFloats();
      for (int64_t i = 0; i < n; ++i) {
        sum[i] += v[i];
        magnitude[i] += std::abs(v[i]);
      }
    }
    std::vector<float> out = t.ToFloats();
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_LE(std::abs(out[i] - sum[i]), 1e-2 * magnitude[i])
          << DTypeName(dtype) << " element " << i;
    }
  }
  std::vector<int32_t> ints(n);
  for (int64_t i = 0; i < n; ++i) ints[i] = static_cast<int32_t>(i * (rank + 1) - 500);
  Tensor t = Tensor::FromInts(ints, {n});
  ASSERT_TRUE(comm->AllReduceSum(&t).ok());
  const int triangle = size * (size + 1) / 2;
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(t.data<int32_t>()[i], i * triangle - 500 * size);
}

TEST(MpiCommunicator, AllGatherColumnsLayout) {
  std::unique_ptr<Communicator> comm = MakeMpiCommunicator(MPI_COMM_WORLD);
  const int size = comm->size(), rank = comm->rank();
  const uint32_t seed = SharedSeed();
  for (std::vector<int64_t> shape : std::vector<std::vector<int64_t>>{{1, 50}, {5, 17}, {2, 3, 8}, {40}}) {
    const int64_t cols = shape.back();
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const int64_t rows = n / cols;
    Tensor local = Tensor::FromFloats(RankValues(seed, rank, n), shape);
    Tensor out;  // allocated by the communicator
    ASSERT_TRUE(comm->AllGatherColumns(local, &out).ok());
    std::vector<int64_t> out_shape = shape;
    out_shape.back() = cols * size;
    ASSERT_EQ(out.shape(), out_shape);
    const float* o = out.data<float>();
    for (int r = 0; r < size; ++r) {
      std::vector<float> v = RankValues(seed, r, n);
      for (int64_t row = 0; row < rows; ++row) {
        for (int64_t c = 0; c < cols; ++c) {
          ASSERT_EQ(o[row * cols * size + r * cols + c], v[row * cols + c])
              << "rank " << r << " row " << row << " col " << c;
        }
      }
    }
  }
  // bf16 into a preallocated, poisoned output.
  Tensor local = ToDType(RankValues(seed, rank, 4 * 6), {4, 6}, DType::kBF16);
  Tensor out = ToDType(std::vector<float>(4 * 6 * size, NAN), {4, 6 * size}, DType::kBF16);
  ASSERT_TRUE(comm->AllGatherColumns(local, &out).ok());
  std::vector<float> o = out.ToFloats();
  for (int r = 0; r < size; ++r) {
    std::vector<float> v = ToDType(RankValues(seed, r, 24), {24}, DType::kBF16).ToFloats();
    for (int row = 0; row < 4; ++row) {
      for (int c = 0; c < 6; ++c) ASSERT_EQ(o[row * 6 * size + r * 6 + c], v[row * 6 + c]);
    }
  }
  Tensor wrong = Tensor::Zeros({4, 6 * size + 1}, DType::kBF16);
  EXPECT_FALSE(comm->AllGatherColumns(local, &wrong).ok());
  Tensor wrong_type = Tensor::Zeros({4, 6 * size}, DType::kF32);
  EXPECT_FALSE(comm->AllGatherColumns(local, &wrong_type).ok());
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  std::unique_ptr<Communicator> comm = MakeMpiCommunicator(MPI_COMM_WORLD);
  const int size = comm->size(), rank = comm->rank();
  const uint32_t seed = SharedSeed();
  for (int root = 0; root < size; ++root) {
    std::vector<float> expected = RankValues(seed, root, 3 * 41);
    Tensor t = rank == root ? Tensor::FromFloats(expected, {3, 41})
                            : Tensor::FromFloats(std::vector<float>(3 * 41, NAN), {3, 41});
    ASSERT_TRUE(comm->Broadcast(&t, root).ok());
    EXPECT_EQ(t.ToFloats(), expected) << "root " << root;

    Tensor half = rank == root ? ToDType(expected, {3, 41}, DType::kF16)
                               : Tensor::Zeros({3, 41}, DType::kF16);
    ASSERT_TRUE(comm->Broadcast(&half, root).ok());
    EXPECT_EQ(half.ToFloats(), ToDType(expected, {3, 41}, DType::kF16).ToFloats());

    std::vector<int32_t> token = {rank == root ? 1234 + root : -1};
    Tensor tok = Tensor::FromInts(token, {1});
    ASSERT_TRUE(comm->Broadcast(&tok, root).ok());
    EXPECT_EQ(tok.data<int32_t>()[0], 1234 + root);
  }
  Tensor t = Tensor::Zeros({4}, DType::kF32);
  EXPECT_FALSE(comm->Broadcast(&t, size).ok());
  EXPECT_FALSE(comm->Broadcast(&t, -1).ok());
  EXPECT_TRUE(comm->Barrier().ok());
}

TEST(MpiCommunicator, SubCommunicators) {
  const int rank = WorldRank();
  MPI_Comm half;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half), MPI_SUCCESS);
  {
    std::unique_ptr<Communicator> comm = MakeMpiCommunicator(half);
    int expected_size = 0;
    for (int r = 0; r < WorldSize(); ++r) expected_size += (r % 2 == rank % 2);
    EXPECT_EQ(comm->size(), expected_size);
    EXPECT_EQ(comm->rank(), rank / 2);
    Tensor t = Tensor::FromFloats({static_cast<float>(rank)}, {1});
    ASSERT_TRUE(comm->AllReduceSum(&t).ok());
    float sum = 0;
    for (int r = rank % 2; r < WorldSize(); r += 2) sum += r;
    EXPECT_EQ(t.data<float>()[0], sum);
  }
  MPI_Comm_free(&half);

  std::unique_ptr<Communicator> self = MakeMpiCommunicator(MPI_COMM_SELF);
  EXPECT_EQ(self->size(), 1);
  Tensor t = Tensor::FromFloats({2.5f}, {1});
  ASSERT_TRUE(self->AllReduceSum(&t).ok());
  EXPECT_EQ(t.data<float>()[0], 2.5f);
}

// Checks fail before any message is sent, the same on every rank, so no rank is left waiting.
TEST(MpiError, NamesTheCallMpisMessageAndTheCode) {
  const absl::Status status = MpiError(MPI_ERR_COUNT, "MPI_Bcast(length)");
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  const std::string message(status.message());
  EXPECT_TRUE(absl::StartsWith(message, "MPI_Bcast(length) failed: ")) << message;
  EXPECT_TRUE(absl::EndsWith(message, absl::StrCat(" (MPI error ", MPI_ERR_COUNT, ")"))) << message;
  char expected[MPI_MAX_ERROR_STRING];
  int length = 0;
  ASSERT_EQ(MPI_Error_string(MPI_ERR_COUNT, expected, &length), MPI_SUCCESS);
  ASSERT_GT(length, 0);
  EXPECT_TRUE(absl::StrContains(message, std::string(expected, length))) << message;
}

TEST(MpiCommunicator, RejectsDeviceTensorsAndBadArguments) {
  std::unique_ptr<Communicator> comm = MakeMpiCommunicator(MPI_COMM_WORLD);
  static float storage[16];
  Tensor fake_device = Tensor::Wrap(storage, {4, 4}, DType::kF32, Device::kCuda, nullptr);
  absl::Status s = comm->AllReduceSum(&fake_device);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("host tensors"), std::string::npos) << s;
  EXPECT_FALSE(comm->Broadcast(&fake_device, 0).ok());
  Tensor out;
  EXPECT_FALSE(comm->AllGatherColumns(fake_device, &out).ok());
  Tensor undefined;
  EXPECT_FALSE(comm->AllReduceSum(&undefined).ok());
  EXPECT_FALSE(comm->AllReduceSum(nullptr).ok());
  EXPECT_TRUE(comm->Barrier().ok());
}

// Ranks other than 0 stay quiet except for their failures, which carry the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_,
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.message());
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace chai

int main(int argc, char** argv) {
  chai::BootstrapOptions options;
  options.force_mpi = true;  // also runs as an MPI singleton, without mpirun
  absl::StatusOr<chai::ProcessGroup> group = chai::Bootstrap(options);
  if (!group.ok()) {
    std::fprintf(stderr, "bootstrap failed: %s\n", std::string(group.status().message()).c_str());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (group->world_rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new chai::RankFailurePrinter(group->world_rank));
  }
  int rc = RUN_ALL_TESTS();
  // A failure on any rank fails the run, whichever rank's exit code mpirun reports.
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  chai::Finalize();
  return worst;
}
