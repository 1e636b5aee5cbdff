// Under mpirun, one rank per GPU (tests/gpu/mpi_gpu_test.sh runs it with 2 and 4 ranks): the
// one-shot IPC all-reduce against (a) the host's fp32 sum in rank order, bit for bit, (b) the
// exact sum within the dtype's rounding and (c) NCCL's all-reduce of the same data within
// rounding; with fresh data 100 times, back to back with ranks pushed out of step, and inside a
// CUDA graph replayed with new inputs. Every check runs for each variant of kVariants (the
// default set-up, which follows CHAI_IPC_ALLREDUCE_ALGO / _BLOCKS, then pull and push with
// fixed grids), each its own IpcAllReduce with its own buffers. Every rank makes the same collective calls whatever fails
// (EXPECT, not ASSERT, after set-up), so a failure is reported instead of hanging the others.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <unistd.h>

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
#include "kernels/peer_mirror.h"
#include "kernels/step_graph.h"
#include "parallel/bootstrap.h"
#include "parallel/ipc_allreduce.h"
#include "parallel/nccl_communicator.h"

namespace chai {
namespace {

std::string g_skip;  // set by main when this machine cannot run the test (too few GPUs)

void Check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  std::fprintf(stderr, "fatal: %s: %s\n", what, cudaGetErrorString(err));
  MPI_Abort(MPI_COMM_WORLD, 2);  // a broken device: stop every rank rather than hang them
}

int Rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int Size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}
cudaStream_t Stream() { return cuda::CurrentStream(); }

// The variants every test runs on: name, algorithm (-1: the environment's) and grid (0: the
// environment's or the default). Set up in this order on every rank.
struct Variant {
  const char* name;
  int algo;
  int blocks;
};
constexpr Variant kVariants[] = {
    {"Default", -1, 0},
    {"Pull2", static_cast<int>(IpcAllReduceAlgo::kPull), 2},
    {"Push", static_cast<int>(IpcAllReduceAlgo::kPush), 0},
    {"Push1", static_cast<int>(IpcAllReduceAlgo::kPush), 1},  // one block: many groups per thread
    {"Push3", static_cast<int>(IpcAllReduceAlgo::kPush), 3},  // arrival counter modulo a non-power of two
    {"Lamport", static_cast<int>(IpcAllReduceAlgo::kLamport), 0},
    {"Lamport1", static_cast<int>(IpcAllReduceAlgo::kLamport), 1},  // one block: a thread sends all, then polls all
    {"Lamport3", static_cast<int>(IpcAllReduceAlgo::kLamport), 3},
};
constexpr int kNumVariants = static_cast<int>(sizeof(kVariants) / sizeof(kVariants[0]));

// Shared by all tests, made once (collectively) and destroyed before MPI_Finalize.
struct Shared {
  std::unique_ptr<IpcAllReduce> ipc[kNumVariants];
  std::string ipc_reason[kNumVariants];
  ncclComm_t nccl = nullptr;
};
Shared& Get() {
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
void DestroyShared() {
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
std::vector<float> Values(uint64_t seed, int q, int64_t n, DType dtype) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(q));
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  std::vector<char> bytes(n * DTypeSize(dtype));
  ConvertFloats(v.data(), DType::kF32, bytes.data(), dtype, n);
  ConvertFloats(bytes.data(), dtype, v.data(), DType::kF32, n);
  return v;
}

std::vector<char> Encode(const std::vector<float>& v, DType dtype) {
  std::vector<char> bytes(v.size() * DTypeSize(dtype));
  ConvertFloats(v.data(), DType::kF32, bytes.data(), dtype, v.size());
  return bytes;
}

std::vector<float> Decode(const std::vector<char>& bytes, DType dtype) {
  std::vector<float> v(bytes.size() / DTypeSize(dtype));
  ConvertFloats(bytes.data(), dtype, v.data(), DType::kF32, v.size());
  return v;
}

// Unit roundoff of the dtype.
double Roundoff(DType dtype) {
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
Reference ReferenceOf(const std::vector<std::vector<float>>& inputs, DType dtype) {
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

Reference MakeReference(uint64_t seed, int64_t n, DType dtype) {
  std::vector<std::vector<float>> inputs;
  for (int q = 0; q < Size(); ++q) inputs.push_back(Values(seed, q, n, dtype));
  return ReferenceOf(inputs, dtype);
}

// The output is the reference bit for bit, and within rounding of the exact sum (and of
// `other`, NCCL's answer, when given). Returns the number of bad elements; prints the first.
int64_t Verify(const std::vector<char>& out, const Reference& ref, DType dtype, const std::string& what,
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

ncclDataType_t NcclType(DType dtype) {
  return dtype == DType::kF32 ? ncclFloat32 : dtype == DType::kF16 ? ncclFloat16 : ncclBfloat16;
}

const DType kTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

// Element counts for a dtype: tiny and odd ones, 8 KB (a LLaMA-7B batch-1 fp16 message), 64 KB,
// and the threshold itself (and one element short of it).
std::vector<int64_t> Counts(DType dtype, size_t max_bytes) {
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
int64_t RunOnce(IpcAllReduce* ipc, int64_t count, DType dtype, int64_t offset, bool in_place, uint64_t seed) {
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

uint64_t Fnv(const std::vector<char>& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// ---- tests ---------------------------------------------------------------------------------

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
// The all-reduce fused with the residual add and norm (the flag-free kernel only): x and out
// equal, bit for bit, the unfused pair, AllReduceSum then ops::AddRmsNorm / AddLayerNorm, for
// one and several rows (rows are spread over blocks), both norms and every dtype.
TEST_P(IpcAllReduceTest, FusedAddNormEqualsAllReduceThenNorm) {
  auto device = [](const std::vector<float>& v, int64_t rows, int64_t cols, DType dtype) {
    return Tensor::FromFloats(v, {rows, cols}).Cast(dtype).To(Device::kCuda);
  };
  auto host_bytes = [](const Tensor& t) {
    const Tensor h = t.To(Device::kCpu);
    return std::vector<char>(static_cast<const char*>(h.raw()), static_cast<const char*>(h.raw()) + h.nbytes());
  };
  uint64_t seed = 900;
  for (DType dtype : kTypes) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 4096}, {3, 1000}, {8, 9216}, {37, 64}}) {
      for (bool rms : {true, false}) {
        const std::string what = std::string(DTypeName(dtype)) + " [" + std::to_string(rows) + ", " +
                                 std::to_string(cols) + "] " + (rms ? "rms" : "layernorm");
        ++seed;
        const Tensor partial = device(Values(seed, Rank(), rows * cols, dtype), rows, cols, dtype);
        const std::vector<float> x0 = Values(seed, 100, rows * cols, dtype);  // the same on every rank
        const Tensor weight = device(Values(seed, 101, cols, dtype), 1, cols, dtype).Reshape({cols});
        const Tensor bias = device(Values(seed, 102, cols, dtype), 1, cols, dtype).Reshape({cols});
        if (!ipc_->SupportsAddNorm(dtype, rows, cols, {partial.raw(), weight.raw(), bias.raw()})) {
          // Only another kernel, or a message over the threshold (fp32 [8, 9216]: 288 KiB), may refuse.
          const int64_t bytes = rows * cols * static_cast<int64_t>(DTypeSize(dtype));
          const bool over = bytes > static_cast<int64_t>(ipc_->max_bytes());
          EXPECT_TRUE(ipc_->algo() != IpcAllReduceAlgo::kLamport || over)
              << what << ": the flag-free kernel must take it";
          continue;
        }
        Tensor x_fused = device(x0, rows, cols, dtype), out_fused = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        const absl::Status s = ipc_->AllReduceAddNorm(partial.raw(), x_fused.raw(), weight.raw(),
                                                      rms ? nullptr : bias.raw(), 1e-5f, rms, rows, cols, dtype,
                                                      out_fused.raw(), Stream());
        ASSERT_TRUE(s.ok()) << what << ": " << s;
        const Tensor reduced = partial;  // the fused call only read it: now reduce it in place
        ASSERT_TRUE(ipc_->AllReduceSum(reduced.raw(), reduced.raw(), rows * cols, dtype, Stream()).ok());
        Tensor x_ref = device(x0, rows, cols, dtype), out_ref = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        if (rms) {
          ops::AddRmsNorm(&x_ref, reduced, weight, 1e-5f, &out_ref);
        } else {
          ops::AddLayerNorm(&x_ref, reduced, weight, bias, 1e-5f, &out_ref);
        }
        EXPECT_TRUE(host_bytes(x_fused) == host_bytes(x_ref)) << what << ": x += sum differs";
        EXPECT_TRUE(host_bytes(out_fused) == host_bytes(out_ref)) << what << ": the normed output differs";
      }
    }
  }
}

// The decode GEMV writing its output into the peers' receive slots itself (ops::LinearFused with
// the IpcAllReduce's mirror) and the all-reduce + norm that then only receives (pushed): the same
// partial, x and out as Linear then the self-pushing AllReduceAddNorm, bit for bit, for 1, 3 and
// 8 rows, fp16 and bf16, several calls back to back (both parity halves, and the unfused pair in
// between moving the epochs on). Collective calls are made whatever fails (EXPECT), so a failure
// is reported instead of hanging the other ranks.
TEST_P(IpcAllReduceTest, MirroredGemvThenPushedAddNormEqualsUnfused) {
  auto device = [](const std::vector<float>& v, int64_t rows, int64_t cols, DType dtype) {
    return Tensor::FromFloats(v, {rows, cols}).Cast(dtype).To(Device::kCuda);
  };
  auto host_bytes = [](const Tensor& t) {
    const Tensor h = t.To(Device::kCpu);
    return std::vector<char>(static_cast<const char*>(h.raw()), static_cast<const char*>(h.raw()) + h.nbytes());
  };
  constexpr int64_t k = 1024, cols = 4096;  // a row-parallel shard's K, the hidden size
  uint64_t seed = 1900;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (int64_t rows : {1, 3, 8}) {
      for (int call = 0; call < 3; ++call) {
        const std::string what = std::string(DTypeName(dtype)) + " rows " + std::to_string(rows) + " call " +
                                 std::to_string(call);
        ++seed;
        PeerMirror mirror;
        if (!ipc_->Mirror(dtype, rows, cols, &mirror)) {  // the same answer on every rank
          EXPECT_NE(ipc_->algo(), IpcAllReduceAlgo::kLamport) << what << ": the flag-free kernel must offer a mirror";
          continue;
        }
        const Tensor a = device(Values(seed, Rank(), rows * k, dtype), rows, k, dtype);        // this rank's input
        const Tensor w = device(Values(seed, 50 + Rank(), cols * k, dtype), cols, k, dtype);   // and weight shard
        const std::vector<float> x0 = Values(seed, 100, rows * cols, dtype);                  // the same everywhere
        const Tensor norm_w = device(Values(seed, 101, cols, dtype), 1, cols, dtype).Reshape({cols});
        EXPECT_TRUE(ops::LinearMirrorIsOneKernel(a, w)) << what;
        Tensor partial_ref = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        ops::Linear(a, w, Tensor(), &partial_ref);
        Tensor x_ref = device(x0, rows, cols, dtype), out_ref = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        EXPECT_TRUE(ipc_->AllReduceAddNorm(partial_ref.raw(), x_ref.raw(), norm_w.raw(), nullptr, 1e-5f, true, rows,
                                           cols, dtype, out_ref.raw(), Stream())
                        .ok())
            << what;
        Tensor partial = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        ops::LinearFused(a, w, Tensor(), ops::LinearFusion{.mirror = &mirror}, &partial);
        Tensor x = device(x0, rows, cols, dtype), out = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        EXPECT_TRUE(ipc_->AllReduceAddNorm(partial.raw(), x.raw(), norm_w.raw(), nullptr, 1e-5f, true, rows, cols,
                                           dtype, out.raw(), Stream(), /*pushed=*/true)
                        .ok())
            << what;
        EXPECT_TRUE(host_bytes(partial) == host_bytes(partial_ref)) << what << ": the GEMV's own output differs";
        EXPECT_TRUE(host_bytes(x) == host_bytes(x_ref)) << what << ": x += sum differs";
        EXPECT_TRUE(host_bytes(out) == host_bytes(out_ref)) << what << ": the normed output differs";
      }
    }
  }
}

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

}  // namespace
}  // namespace chai

int main(int argc, char** argv) {
  // The communicator takes the IPC path by default only on 2 ranks; this test checks it on any.
  setenv("CHAI_IPC_ALLREDUCE", "1", 0);
  chai::BootstrapOptions options;
  options.force_mpi = true;
  absl::StatusOr<chai::ProcessGroup> group = chai::Bootstrap(options);
  if (!group.ok()) {
    std::fprintf(stderr, "bootstrap failed: %s\n", std::string(group.status().message()).c_str());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (group->world_size < 2) {
    chai::g_skip = "needs 2 or more ranks (run under mpirun, one rank per GPU)";
  } else if (absl::StatusOr<int> device = chai::SelectCudaDevice(*group); !device.ok()) {
    chai::g_skip = std::string(device.status().message());  // the same verdict on every rank of a host
  }
  if (group->world_rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new chai::RankFailurePrinter(group->world_rank));
  }
  int rc = RUN_ALL_TESTS();
  if (chai::g_skip.empty()) chai::DestroyShared();
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  chai::Finalize();
  return worst;
}
