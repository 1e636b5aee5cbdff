// The harness of the IPC all-reduce tests under mpirun (ipc_allreduce_test: the plain all-reduce
// and the communicator; ipc_allreduce_fused_test: the all-reduce fused with add + norm and the
// GEMV that pushes into it), one rank per GPU (tests/gpu/mpi_gpu_test.sh runs each with 2 and 4
// ranks). Each variant of kVariants (the default set-up, which follows CHAI_IPC_ALLREDUCE_ALGO /
// _BLOCKS, then pull, push and lamport with fixed grids) is its own IpcAllReduce with its own
// buffers. Every rank makes the same collective calls whatever fails (EXPECT, not ASSERT, after
// set-up), so a failure is reported instead of hanging the others. Included by one file per binary.
#ifndef CHAI_TESTS_GPU_MPI_IPC_ALLREDUCE_HARNESS_H_
#define CHAI_TESTS_GPU_MPI_IPC_ALLREDUCE_HARNESS_H_

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/dtype.h"
#include "kernels/ops.h"
#include "kernels/step_graph.h"
#include "parallel/bootstrap.h"
#include "parallel/ipc_allreduce.h"
#include "parallel/nccl_communicator.h"

namespace chai::ipc_allreduce_test {

inline std::string g_skip;  // set by main when this machine cannot run the test (too few GPUs)

inline void Check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  std::fprintf(stderr, "fatal: %s: %s\n", what, cudaGetErrorString(err));
  MPI_Abort(MPI_COMM_WORLD, 2);  // a broken device: stop every rank rather than hang them
}

inline int Rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int Size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}
inline cudaStream_t Stream() { return cuda::CurrentStream(); }

// The variants every test runs on: name, algorithm (-1: the environment's) and grid (0: the
// environment's or the default). Set up in this order on every rank.
struct Variant {
  const char* name;
  int algo;
  int blocks;
};
inline constexpr Variant kVariants[] = {
    {"Default", -1, 0},
    {"Pull2", static_cast<int>(IpcAllReduceAlgo::kPull), 2},
    {"Push", static_cast<int>(IpcAllReduceAlgo::kPush), 0},
    {"Push1", static_cast<int>(IpcAllReduceAlgo::kPush), 1},  // one block: many groups per thread
    {"Push3", static_cast<int>(IpcAllReduceAlgo::kPush), 3},  // arrival counter modulo a non-power of two
    {"Lamport", static_cast<int>(IpcAllReduceAlgo::kLamport), 0},
    {"Lamport1", static_cast<int>(IpcAllReduceAlgo::kLamport), 1},  // one block: a thread sends all, then polls all
    {"Lamport3", static_cast<int>(IpcAllReduceAlgo::kLamport), 3},
};
inline constexpr int kNumVariants = static_cast<int>(sizeof(kVariants) / sizeof(kVariants[0]));

// Shared by all tests, made once (collectively) and destroyed before MPI_Finalize.
struct Shared {
  std::unique_ptr<IpcAllReduce> ipc[kNumVariants];
  std::string ipc_reason[kNumVariants];
  ncclComm_t nccl = nullptr;
};
inline Shared& Get() {
  static Shared* shared = [] {
    auto* s = new Shared;
    for (int v = 0; v < kNumVariants; ++v) {
      IpcAllReduce::Options options;
      options.algo = kVariants[v].algo;
      options.blocks = kVariants[v].blocks;
      absl::StatusOr<IpcAllReduce::Setup> setup =
          v == 0 ? IpcAllReduce::Create(MPI_COMM_WORLD) : IpcAllReduce::Create(MPI_COMM_WORLD, options);
      if (!setup.ok()) {
        std::fprintf(stderr, "IpcAllReduce::Create: %s\n", std::string(setup.status().message()).c_str());
        MPI_Abort(MPI_COMM_WORLD, 2);
      }
      s->ipc[v] = std::move(setup->ipc);
      s->ipc_reason[v] = setup->reason;
    }
    ncclUniqueId id;
    if (Rank() == 0 && ncclGetUniqueId(&id) != ncclSuccess) MPI_Abort(MPI_COMM_WORLD, 2);
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    if (ncclCommInitRank(&s->nccl, Size(), id, Rank()) != ncclSuccess) MPI_Abort(MPI_COMM_WORLD, 2);
    return s;
  }();
  return *shared;
}
inline void DestroyShared() {
  Shared& s = Get();
  cudaStreamSynchronize(Stream());
  for (std::unique_ptr<IpcAllReduce>& ipc : s.ipc) ipc.reset();
  ncclCommDestroy(s.nccl);
}

// Every test starts here. The skip decisions are the same on every rank (Create agrees on them).
class IpcAllReduceTestBase : public ::testing::Test {
 protected:
  void SetUpVariant(int variant) {
    if (!g_skip.empty()) GTEST_SKIP() << g_skip;
    ipc_ = Get().ipc[variant].get();
    if (ipc_ == nullptr) {
      const std::string why = Get().ipc_reason[variant];
      // Only a machine without peer access, or a run that turned the path off, may skip.
      if (why.find("as a peer") != std::string::npos || why.find("CHAI_IPC_ALLREDUCE=0") != std::string::npos) {
        GTEST_SKIP() << "IPC all-reduce unavailable: " << why;
      }
      FAIL() << "IPC all-reduce could not be set up on GPUs that should allow it: " << why;
    }
  }
  // At most the threshold (CHAI_IPC_ALLREDUCE_MAX_BYTES may set a small one).
  int64_t Fit(int64_t count, DType dtype) const {
    return std::max<int64_t>(1, std::min<int64_t>(count, ipc_->max_bytes() / DTypeSize(dtype)));
  }
  IpcAllReduce* ipc_ = nullptr;
};

// The checks below run once per variant.
class IpcAllReduceTest : public IpcAllReduceTestBase, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override { SetUpVariant(GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(Variants, IpcAllReduceTest, ::testing::Range(0, kNumVariants),
                         [](const ::testing::TestParamInfo<int>& info) { return kVariants[info.param].name; });

// The communicator: set up from the environment like the default variant.
class IpcAllReduceCommunicatorTest : public IpcAllReduceTestBase {
 protected:
  void SetUp() override { SetUpVariant(0); }
};

// ---- data and references -------------------------------------------------------------------

// Rank q's input for `seed`: uniform in [-2, 2), already rounded to the dtype. Every rank can
// regenerate every other rank's input.
inline std::vector<float> Values(uint64_t seed, int q, int64_t n, DType dtype) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(q));
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  std::vector<char> bytes(n * DTypeSize(dtype));
  ConvertFloats(v.data(), DType::kF32, bytes.data(), dtype, n);
  ConvertFloats(bytes.data(), dtype, v.data(), DType::kF32, n);
  return v;
}

inline std::vector<char> Encode(const std::vector<float>& v, DType dtype) {
  std::vector<char> bytes(v.size() * DTypeSize(dtype));
  ConvertFloats(v.data(), DType::kF32, bytes.data(), dtype, v.size());
  return bytes;
}

inline std::vector<float> Decode(const std::vector<char>& bytes, DType dtype) {
  std::vector<float> v(bytes.size() / DTypeSize(dtype));
  ConvertFloats(bytes.data(), dtype, v.data(), DType::kF32, v.size());
  return v;
}

// Unit roundoff of the dtype.
inline double Roundoff(DType dtype) {
  return dtype == DType::kF32   ? std::ldexp(1.0, -24)
         : dtype == DType::kF16 ? std::ldexp(1.0, -11)
                                : std::ldexp(1.0, -8);
}

struct Reference {
  std::vector<char> bytes;      // fp32 sum in rank order 0, 1, ..., rounded once: what the kernel computes
  std::vector<double> exact;    // the sum in double
  std::vector<double> abs_sum;  // sum of |x| over ranks: scales the rounding bounds
};

// The reference for every rank's input (inputs[q] is rank q's, already in the dtype's values).
inline Reference ReferenceOf(const std::vector<std::vector<float>>& inputs, DType dtype) {
  Reference r;
  std::vector<float> acc;
  const size_t n = inputs[0].size();
  r.exact.assign(n, 0.0);
  r.abs_sum.assign(n, 0.0);
  for (int q = 0; q < Size(); ++q) {
    const std::vector<float>& v = inputs[q];
    if (q == 0) {
      acc = v;
    } else {
      for (size_t i = 0; i < n; ++i) acc[i] += v[i];
    }
    for (size_t i = 0; i < n; ++i) {
      r.exact[i] += v[i];
      r.abs_sum[i] += std::fabs(v[i]);
    }
  }
  r.bytes = Encode(acc, dtype);
  return r;
}

inline Reference MakeReference(uint64_t seed, int64_t n, DType dtype) {
  std::vector<std::vector<float>> inputs;
  for (int q = 0; q < Size(); ++q) inputs.push_back(Values(seed, q, n, dtype));
  return ReferenceOf(inputs, dtype);
}

// The output is the reference bit for bit, and within rounding of the exact sum (and of
// `other`, NCCL's answer, when given). Returns the number of bad elements; prints the first.
inline int64_t Verify(const std::vector<char>& out, const Reference& ref, DType dtype, const std::string& what,
                      const std::vector<char>* other = nullptr) {
  const std::vector<float> got = Decode(out, dtype), want = Decode(ref.bytes, dtype);
  std::vector<float> nccl;
  if (other != nullptr) nccl = Decode(*other, dtype);
  const double u = Roundoff(dtype), u32 = std::ldexp(1.0, -24), subnormal = dtype == DType::kF16 ? 1e-7 : 0.0;
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool exact = std::memcmp(&out[i * DTypeSize(dtype)], &ref.bytes[i * DTypeSize(dtype)], DTypeSize(dtype)) == 0;
    const double tol = u * std::fabs(ref.exact[i]) + Size() * u32 * ref.abs_sum[i] + subnormal;
    const bool close = std::fabs(got[i] - ref.exact[i]) <= tol;
    const bool near_nccl =
        other == nullptr || std::fabs(got[i] - nccl[i]) <= (Size() + 1) * u * ref.abs_sum[i] + subnormal;
    if (exact && close && near_nccl) continue;
    if (bad++ == 0) {
      ADD_FAILURE() << what << ": element " << i << " of " << got.size() << " is " << got[i] << ", expected " << want[i]
                    << " (exact sum " << ref.exact[i] << (other ? ", nccl " : "")
                    << (other ? std::to_string(nccl[i]) : "") << "; bit-exact " << exact << ")";
    }
  }
  if (bad > 1) ADD_FAILURE() << what << ": " << bad << " bad elements in all";
  return bad;
}

// ---- device buffers ------------------------------------------------------------------------

// `count` elements at byte offset `offset_elems * dtype size` of a fresh allocation, so that an
// offset of 1 gives a pointer that is not 16-byte aligned (the kernel's element-wise path).
struct Buffer {
  Buffer(int64_t count, DType dtype, int64_t offset_elems = 0) : count(count), dtype(dtype) {
    const size_t bytes = (count + offset_elems) * DTypeSize(dtype) + 16;
    Check(cudaMalloc(&base, bytes), "cudaMalloc");
    Check(cudaMemset(base, 0xFF, bytes), "cudaMemset");  // NaN poison in every float dtype
    ptr = static_cast<char*>(base) + offset_elems * DTypeSize(dtype);
  }
  ~Buffer() { cudaFree(base); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  size_t nbytes() const { return count * DTypeSize(dtype); }
  void Upload(const std::vector<char>& bytes) {
    Check(cudaMemcpyAsync(ptr, bytes.data(), nbytes(), cudaMemcpyHostToDevice, Stream()), "cudaMemcpyAsync H2D");
    Check(cudaStreamSynchronize(Stream()), "cudaStreamSynchronize");
  }
  std::vector<char> Download() const {
    std::vector<char> bytes(nbytes());
    Check(cudaMemcpyAsync(bytes.data(), ptr, nbytes(), cudaMemcpyDeviceToHost, Stream()), "cudaMemcpyAsync D2H");
    Check(cudaStreamSynchronize(Stream()), "cudaStreamSynchronize");
    return bytes;
  }
  void Poison() { Check(cudaMemsetAsync(ptr, 0xFF, nbytes(), Stream()), "cudaMemsetAsync"); }

  void* base = nullptr;
  char* ptr = nullptr;
  int64_t count;
  DType dtype;
};

inline ncclDataType_t NcclType(DType dtype) {
  return dtype == DType::kF32 ? ncclFloat32 : dtype == DType::kF16 ? ncclFloat16 : ncclBfloat16;
}

inline constexpr DType kTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

// Element counts for a dtype: tiny and odd ones, 8 KB (a LLaMA-7B batch-1 fp16 message), 64 KB,
// and the threshold itself (and one element short of it).
inline std::vector<int64_t> Counts(DType dtype, size_t max_bytes) {
  const int64_t e = static_cast<int64_t>(DTypeSize(dtype)), max = static_cast<int64_t>(max_bytes) / e;
  std::vector<int64_t> counts = {1, 3, 7, 8, 9, 17, 1001, 8192 / e, 65536 / e, 65536 / e + 5, max - 1, max};
  std::vector<int64_t> fit;
  for (int64_t c : counts) {
    if (c >= 1 && c <= max) fit.push_back(c);
  }
  return fit;
}

// One all-reduce through the IPC path (out of place unless in == out) and through NCCL on a copy
// of the same input; both checked. Returns bad elements.
inline int64_t RunOnce(IpcAllReduce* ipc, int64_t count, DType dtype, int64_t offset, bool in_place, uint64_t seed) {
  const std::string what = std::string(DTypeName(dtype)) + " x" + std::to_string(count) + " offset " +
                           std::to_string(offset) + (in_place ? " in place" : "") + " seed " + std::to_string(seed);
  const std::vector<char> mine = Encode(Values(seed, Rank(), count, dtype), dtype);
  Buffer in(count, dtype, offset), out(count, dtype, offset), ref_in(count, dtype);
  in.Upload(mine);
  ref_in.Upload(mine);
  absl::Status s = ipc->AllReduceSum(in.ptr, in_place ? in.ptr : out.ptr, count, dtype, Stream());
  EXPECT_TRUE(s.ok()) << what << ": " << s;
  EXPECT_EQ(ncclAllReduce(ref_in.ptr, ref_in.ptr, count, NcclType(dtype), ncclSum, Get().nccl, Stream()), ncclSuccess);
  const std::vector<char> got = (in_place ? in : out).Download(), nccl = ref_in.Download();
  return Verify(got, MakeReference(seed, count, dtype), dtype, what, &nccl);
}

inline uint64_t Fnv(const std::vector<char>& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// Host floats as a [rows, cols] device tensor of the dtype, and a device tensor's bytes on the host.
inline Tensor DeviceTensor(const std::vector<float>& v, int64_t rows, int64_t cols, DType dtype) {
  return Tensor::FromFloats(v, {rows, cols}).Cast(dtype).To(Device::kCuda);
}
inline std::vector<char> HostBytes(const Tensor& t) {
  const Tensor h = t.To(Device::kCpu);
  return std::vector<char>(static_cast<const char*>(h.raw()), static_cast<const char*>(h.raw()) + h.nbytes());
}

// Ranks other than 0 print only their failures, with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.message());
  }

 private:
  int rank_;
};

// The body of both binaries' main(): MPI set-up, the skip verdict, the tests, MPI teardown.
inline int RunIpcAllReduceTests(int argc, char** argv) {
  // The communicator takes the IPC path by default only on 2 ranks; this test checks it on any.
  setenv("CHAI_IPC_ALLREDUCE", "1", 0);
  BootstrapOptions options;
  options.force_mpi = true;
  absl::StatusOr<ProcessGroup> group = Bootstrap(options);
  if (!group.ok()) {
    std::fprintf(stderr, "bootstrap failed: %s\n", std::string(group.status().message()).c_str());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (group->world_size < 2) {
    g_skip = "needs 2 or more ranks (run under mpirun, one rank per GPU)";
  } else if (absl::StatusOr<int> device = SelectCudaDevice(*group); !device.ok()) {
    g_skip = std::string(device.status().message());  // the same verdict on every rank of a host
  }
  if (group->world_rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(group->world_rank));
  }
  int rc = RUN_ALL_TESTS();
  if (g_skip.empty()) DestroyShared();
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  Finalize();
  return worst;
}

}  // namespace chai::ipc_allreduce_test

#endif  // CHAI_TESTS_GPU_MPI_IPC_ALLREDUCE_HARNESS_H_
