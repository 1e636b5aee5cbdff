// Under mpirun, one rank per GPU: the one-shot IPC all-reduce against (a) the host's fp32 sum in
// rank order, bit for bit, (b) the exact sum within the dtype's rounding and (c) NCCL's all-reduce
// of the same data within rounding; with fresh data 100 times, back to back with ranks pushed out
// of step, and inside a CUDA graph replayed with new inputs; then the communicator the engine uses.
// Every check runs for each variant (ipc_allreduce_harness.h).
#include <unistd.h>

#include "tests/gpu/mpi/ipc_allreduce_harness.h"

namespace chai::ipc_allreduce_test {
namespace {

TEST_P(IpcAllReduceTest, SizesDtypesAlignmentAgainstReferenceAndNccl) {
  if (Rank() == 0) {
    std::printf("IPC all-reduce (%s) on %d ranks, threshold %zu bytes\n", ipc_->Describe().c_str(), Size(),
                ipc_->max_bytes());
  }
  uint64_t seed = 1;
  for (DType dtype : kTypes) {
    for (int64_t count : Counts(dtype, ipc_->max_bytes())) {
      for (auto [offset, in_place] : {std::pair<int64_t, bool>{0, true}, {0, false}, {1, true}, {3, false}}) {
        RunOnce(ipc_, count, dtype, offset, in_place, seed++);
      }
    }
    // Above the threshold the IPC path refuses (the communicator then takes NCCL), and launches nothing.
    const int64_t over = static_cast<int64_t>(ipc_->max_bytes() / DTypeSize(dtype)) + 1;
    EXPECT_FALSE(ipc_->Supports(dtype, over * DTypeSize(dtype)));
    EXPECT_FALSE(ipc_->AllReduceSum(nullptr, nullptr, over, dtype, Stream()).ok());
  }
  EXPECT_FALSE(ipc_->Supports(DType::kI32, 64));
  EXPECT_FALSE(ipc_->Supports(DType::kF16, 0));
}

TEST_P(IpcAllReduceTest, EveryRankGetsTheSameBits) {
  for (DType dtype : kTypes) {
    const int64_t count = Fit(4099, dtype);
    Buffer buf(count, dtype);
    buf.Upload(Encode(Values(777, Rank(), count, dtype), dtype));
    EXPECT_TRUE(ipc_->AllReduceSum(buf.ptr, buf.ptr, count, dtype, Stream()).ok());
    uint64_t h = Fnv(buf.Download());
    std::vector<uint64_t> all(Size());
    MPI_Allgather(&h, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int q = 1; q < Size(); ++q) EXPECT_EQ(all[q], all[0]) << DTypeName(dtype) << ": rank " << q << " differs";
  }
}

// Inputs holding the Lamport variant's sentinel bits (fp16/bf16 negative zero, the fp32 pattern
// 0x80008000, a subnormal) on every rank at staggered positions: every variant must sum them like
// any value (the Lamport kernel sends them as the nearest other value) and must not wait on them.
TEST_P(IpcAllReduceTest, SentinelBitsInTheMessage) {
  for (DType dtype : kTypes) {
    const int64_t count = Fit(5003, dtype);
    uint32_t bits = 0x80008000u;
    float fp32_sentinel = 0.f;
    std::memcpy(&fp32_sentinel, &bits, sizeof(bits));
    std::vector<std::vector<float>> inputs;
    for (int q = 0; q < Size(); ++q) {
      inputs.push_back(Values(4242, q, count, dtype));
      for (int64_t i = q % 3; i < count; i += 3) inputs[q][i] = dtype == DType::kF32 ? fp32_sentinel : -0.0f;
    }
    Buffer buf(count, dtype);
    buf.Upload(Encode(inputs[Rank()], dtype));
    EXPECT_TRUE(ipc_->AllReduceSum(buf.ptr, buf.ptr, count, dtype, Stream()).ok());
    Verify(buf.Download(), ReferenceOf(inputs, dtype), dtype, std::string(DTypeName(dtype)) + " with sentinel bits");
  }
}

// 100 calls with new data each time: a stale flag or the wrong buffer half shows up as last
// call's numbers.
TEST_P(IpcAllReduceTest, RepeatedWithChangingData) {
  const int64_t counts[] = {1, 4096, 4097, 32768, static_cast<int64_t>(ipc_->max_bytes() / 4)};
  int64_t bad = 0;
  for (int it = 0; it < 100; ++it) {
    const DType dtype = kTypes[it % 3];
    const int64_t count = Fit(counts[it % 5], dtype);
    bad += RunOnce(ipc_, count, dtype, 0, it % 2 == 0, 1000 + it);
  }
  EXPECT_EQ(bad, 0);
}

void SleepOnStream(void* micros) { usleep(static_cast<useconds_t>(reinterpret_cast<uintptr_t>(micros))); }

// Many calls enqueued without waiting in between, while one rank at a time is held back on its
// stream: fast ranks run ahead into the next call (the other buffer half) and must neither
// overwrite data a slow peer still reads nor read a half before the peer filled it.
TEST_P(IpcAllReduceTest, BackToBackWithRanksOutOfStep) {
  constexpr int kCalls = 64;
  std::vector<std::unique_ptr<Buffer>> in, out;
  std::vector<int64_t> counts;
  std::vector<DType> dtypes;
  for (int j = 0; j < kCalls; ++j) {
    const DType dtype = kTypes[j % 3];
    const int64_t count = Fit(j % 4 == 0 ? 1 + j : j % 4 == 1 ? 4096 : j % 4 == 2 ? 12345 : INT64_MAX, dtype);
    in.push_back(std::make_unique<Buffer>(count, dtype));
    out.push_back(std::make_unique<Buffer>(count, dtype));
    in.back()->Upload(Encode(Values(5000 + j, Rank(), count, dtype), dtype));
    counts.push_back(count);
    dtypes.push_back(dtype);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  for (int j = 0; j < kCalls; ++j) {
    if (j % Size() == Rank() && j % 3 != 2) {
      Check(cudaLaunchHostFunc(Stream(), SleepOnStream, reinterpret_cast<void*>(uintptr_t{200})), "cudaLaunchHostFunc");
    }
    EXPECT_TRUE(ipc_->AllReduceSum(in[j]->ptr, out[j]->ptr, counts[j], dtypes[j], Stream()).ok());
  }
  int64_t bad = 0;
  for (int j = 0; j < kCalls; ++j) {
    bad += Verify(out[j]->Download(), MakeReference(5000 + j, counts[j], dtypes[j]), dtypes[j],
                  "back-to-back call " + std::to_string(j));
  }
  EXPECT_EQ(bad, 0);
}

// Captured once (as the engine captures a decode step), replayed with new inputs each time,
// sometimes several times back to back and with eager calls in between: the epochs live on the
// device, so replays with the captured arguments stay in step across ranks.
TEST_P(IpcAllReduceTest, CudaGraphReplays) {
  struct Slot {
    std::unique_ptr<Buffer> in, out;
    int64_t count;
    DType dtype;
  };
  std::vector<Slot> slots;
  for (int j = 0; j < 12; ++j) {
    const DType dtype = kTypes[j % 3];
    const int64_t count = Fit(j < 3 ? 4096 : j < 6 ? 1 + 37 * j : j < 9 ? 32768 / DTypeSize(dtype) : 7, dtype);
    slots.push_back({std::make_unique<Buffer>(count, dtype), std::make_unique<Buffer>(count, dtype), count, dtype});
  }
  Buffer eager_in(Fit(999, DType::kF16), DType::kF16), eager_out(Fit(999, DType::kF16), DType::kF16);
  absl::StatusOr<std::unique_ptr<StepGraph>> graph = StepGraph::Record(Device::kCuda, [&] {
    for (Slot& s : slots) EXPECT_TRUE(ipc_->AllReduceSum(s.in->ptr, s.out->ptr, s.count, s.dtype, Stream()).ok());
  });
  ASSERT_TRUE(graph.ok()) << graph.status();  // capture involves no peer: the same outcome on every rank
  int64_t bad = 0;
  for (int it = 0; it < 60; ++it) {
    const uint64_t seed = 20000 + 100 * it;
    for (size_t j = 0; j < slots.size(); ++j) {
      slots[j].in->Upload(Encode(Values(seed + j, Rank(), slots[j].count, slots[j].dtype), slots[j].dtype));
      slots[j].out->Poison();
    }
    const int replays = 1 + it % 3;
    for (int r = 0; r < replays; ++r) {
      (*graph)->Replay();
      if (it % 2 == 1) {  // an eager call between replays moves the epochs on
        eager_in.Upload(Encode(Values(seed + 99, Rank(), eager_in.count, DType::kF16), DType::kF16));
        EXPECT_TRUE(ipc_->AllReduceSum(eager_in.ptr, eager_out.ptr, eager_in.count, DType::kF16, Stream()).ok());
        bad += Verify(eager_out.Download(), MakeReference(seed + 99, eager_in.count, DType::kF16), DType::kF16,
                      "eager call between replays, iteration " + std::to_string(it));
      }
    }
    for (size_t j = 0; j < slots.size(); ++j) {
      bad += Verify(slots[j].out->Download(), MakeReference(seed + j, slots[j].count, slots[j].dtype), slots[j].dtype,
                    "graph slot " + std::to_string(j) + " iteration " + std::to_string(it));
    }
  }
  EXPECT_EQ(bad, 0);
}

// The communicator the engine uses: IPC up to the threshold, NCCL above it and for integers.
TEST_F(IpcAllReduceCommunicatorTest, NcclCommunicatorPicksThePath) {
  absl::StatusOr<std::unique_ptr<Communicator>> comm = MakeNcclCommunicator(MPI_COMM_WORLD, Stream());
  ASSERT_TRUE(comm.ok()) << comm.status();
  // Set up under the same conditions as ipc_ (agreed by all ranks), so the same on every rank.
  ASSERT_NE((*comm)->Describe().find("ipc"), std::string::npos) << (*comm)->Describe();
  const size_t max = ipc_->max_bytes();
  uint64_t seed = 40000;
  for (DType dtype : kTypes) {
    const int64_t e = static_cast<int64_t>(DTypeSize(dtype)), limit = static_cast<int64_t>(max) / e;
    for (int64_t count : {int64_t{5}, 4096 / e * 2, limit, limit + 1, 4 * limit + 3}) {
      const std::vector<float> values = Values(++seed, Rank(), count, dtype);
      Tensor t = Tensor::FromFloats(values, {count}).Cast(dtype).To(Device::kCuda);
      EXPECT_TRUE((*comm)->AllReduceSum(&t).ok());
      std::vector<char> got(t.nbytes());
      Tensor host = t.To(Device::kCpu);
      std::memcpy(got.data(), host.raw(), got.size());
      const Reference ref = MakeReference(seed, count, dtype);
      if (count <= limit) {
        Verify(got, ref, dtype, "communicator (ipc) " + std::string(DTypeName(dtype)) + " x" + std::to_string(count));
      } else {  // NCCL: within rounding of the exact sum
        const std::vector<float> v = Decode(got, dtype);
        int64_t bad = 0;
        for (int64_t i = 0; i < count; ++i) {
          bad += !(std::fabs(v[i] - ref.exact[i]) <= (Size() + 1) * Roundoff(dtype) * ref.abs_sum[i] + 1e-7);
        }
        EXPECT_EQ(bad, 0) << "communicator (nccl) " << DTypeName(dtype) << " x" << count;
      }
    }
  }
  std::vector<int32_t> ints(1000, Rank() + 1);
  Tensor t = Tensor::FromInts(ints, {1000}).To(Device::kCuda);
  EXPECT_TRUE((*comm)->AllReduceSum(&t).ok());
  Tensor host = t.To(Device::kCpu);
  EXPECT_EQ(host.data<int32_t>()[999], Size() * (Size() + 1) / 2);
  EXPECT_TRUE((*comm)->Barrier().ok());
}

}  // namespace
}  // namespace chai::ipc_allreduce_test

int main(int argc, char** argv) { return chai::ipc_allreduce_test::RunIpcAllReduceTests(argc, argv); }
