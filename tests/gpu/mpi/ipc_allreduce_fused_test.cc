// Under mpirun, one rank per GPU: the IPC all-reduce fused with the residual add and the next norm
// (AllReduceAddNorm) against the unfused ops, and the decode GEMV that pushes its output into the
// peers' receive slots itself (ops::LinearFused with a PeerMirror) followed by the all-reduce that
// only receives, against Linear + the self-pushing kernel: bit for bit, for each variant
// (ipc_allreduce_harness.h; the non-lamport ones have neither and skip those checks).
#include "kernels/peer_mirror.h"
#include "tests/gpu/mpi/ipc_allreduce_harness.h"

namespace chai::ipc_allreduce_test {
namespace {

// The all-reduce fused with the residual add and norm (the flag-free kernel only): x and out
// equal, bit for bit, the unfused pair, AllReduceSum then ops::AddRmsNorm / AddLayerNorm, for
// one and several rows (rows are spread over blocks; OPT-66B's and LLaMA-7B's decode rows among
// them), both norms and every dtype; the fused call
// carries an L2 prefetch hint (4 MiB of another buffer, issued by the blocks without a row), which
// must change nothing.
TEST_P(IpcAllReduceTest, FusedAddNormEqualsAllReduceThenNorm) {
  uint64_t seed = 900;
  const Tensor prefetched = Tensor::Empty({1 << 20}, DType::kF32, Device::kCuda);
  const L2Prefetch hint{.base = prefetched.raw(), .outer = 64, .outer_stride = 64 << 10, .bytes = 64 << 10};
  for (DType dtype : kTypes) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 4096}, {1, 9216}, {3, 1000}, {5, 2048}, {8, 9216}, {37, 64}}) {
      for (bool rms : {true, false}) {
        const std::string what = std::string(DTypeName(dtype)) + " [" + std::to_string(rows) + ", " +
                                 std::to_string(cols) + "] " + (rms ? "rms" : "layernorm");
        ++seed;
        const Tensor partial = DeviceTensor(Values(seed, Rank(), rows * cols, dtype), rows, cols, dtype);
        const std::vector<float> x0 = Values(seed, 100, rows * cols, dtype);  // the same on every rank
        const Tensor weight = DeviceTensor(Values(seed, 101, cols, dtype), 1, cols, dtype).Reshape({cols});
        const Tensor bias = DeviceTensor(Values(seed, 102, cols, dtype), 1, cols, dtype).Reshape({cols});
        if (!ipc_->SupportsAddNorm(dtype, rows, cols, {partial.raw(), weight.raw(), bias.raw()})) {
          // Only another kernel, or a message over the threshold (fp32 [8, 9216]: 288 KiB), may refuse.
          const int64_t bytes = rows * cols * static_cast<int64_t>(DTypeSize(dtype));
          const bool over = bytes > static_cast<int64_t>(ipc_->max_bytes());
          EXPECT_TRUE(ipc_->algo() != IpcAllReduceAlgo::kLamport || over)
              << what << ": the flag-free kernel must take it";
          continue;
        }
        Tensor x_fused = DeviceTensor(x0, rows, cols, dtype), out_fused = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        const absl::Status s = ipc_->AllReduceAddNorm(partial.raw(), x_fused.raw(), weight.raw(),
                                                      rms ? nullptr : bias.raw(), 1e-5f, rms, rows, cols, dtype,
                                                      out_fused.raw(), Stream(), /*pushed=*/false, hint);
        ASSERT_TRUE(s.ok()) << what << ": " << s;
        const Tensor reduced = partial;  // the fused call only read it: now reduce it in place
        ASSERT_TRUE(ipc_->AllReduceSum(reduced.raw(), reduced.raw(), rows * cols, dtype, Stream()).ok());
        Tensor x_ref = DeviceTensor(x0, rows, cols, dtype), out_ref = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        if (rms) {
          ops::AddRmsNorm(&x_ref, reduced, weight, 1e-5f, &out_ref);
        } else {
          ops::AddLayerNorm(&x_ref, reduced, weight, bias, 1e-5f, &out_ref);
        }
        EXPECT_TRUE(HostBytes(x_fused) == HostBytes(x_ref)) << what << ": x += sum differs";
        EXPECT_TRUE(HostBytes(out_fused) == HostBytes(out_ref)) << what << ": the normed output differs";
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
        const Tensor a = DeviceTensor(Values(seed, Rank(), rows * k, dtype), rows, k, dtype);        // this rank's input
        const Tensor w = DeviceTensor(Values(seed, 50 + Rank(), cols * k, dtype), cols, k, dtype);   // and weight shard
        const std::vector<float> x0 = Values(seed, 100, rows * cols, dtype);                  // the same everywhere
        const Tensor norm_w = DeviceTensor(Values(seed, 101, cols, dtype), 1, cols, dtype).Reshape({cols});
        EXPECT_TRUE(ops::LinearMirrorIsOneKernel(a, w)) << what;
        Tensor partial_ref = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        ops::Linear(a, w, Tensor(), &partial_ref);
        Tensor x_ref = DeviceTensor(x0, rows, cols, dtype), out_ref = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        EXPECT_TRUE(ipc_->AllReduceAddNorm(partial_ref.raw(), x_ref.raw(), norm_w.raw(), nullptr, 1e-5f, true, rows,
                                           cols, dtype, out_ref.raw(), Stream())
                        .ok())
            << what;
        Tensor partial = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        ops::LinearFused(a, w, Tensor(), ops::LinearFusion{.mirror = &mirror}, &partial);
        Tensor x = DeviceTensor(x0, rows, cols, dtype), out = Tensor::Empty({rows, cols}, dtype, Device::kCuda);
        EXPECT_TRUE(ipc_->AllReduceAddNorm(partial.raw(), x.raw(), norm_w.raw(), nullptr, 1e-5f, true, rows, cols,
                                           dtype, out.raw(), Stream(), /*pushed=*/true)
                        .ok())
            << what;
        EXPECT_TRUE(HostBytes(partial) == HostBytes(partial_ref)) << what << ": the GEMV's own output differs";
        EXPECT_TRUE(HostBytes(x) == HostBytes(x_ref)) << what << ": x += sum differs";
        EXPECT_TRUE(HostBytes(out) == HostBytes(out_ref)) << what << ": the normed output differs";
      }
    }
  }
}

}  // namespace
}  // namespace chai::ipc_allreduce_test

int main(int argc, char** argv) { return chai::ipc_allreduce_test::RunIpcAllReduceTests(argc, argv); }
