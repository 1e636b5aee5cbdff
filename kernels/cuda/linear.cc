// out[T, N] = x[T, K] * W[N, K]^T (+ bias[N]) through cuBLASLt, or for decode (T <= 8 tokens,
// fp16/bf16, 16-byte aligned x and W, K % 8 == 0) through the GEMV kernel of gemv.cu; and
// LinearFused (ops.h), one GEMV kernel at decode, else its composition.
//
// cuBLASLt is column-major, so we compute out^T = W * x^T: a row-major [T, N] matrix is a
// column-major [N, T] one. A = W viewed column-major as [K, N] and transposed, B = x viewed as
// [K, T], D = out viewed as [N, T]; the bias epilogue adds a vector over D's rows, i.e. bias[n].
//
// Accumulation is fp32 for every dtype (CUBLAS_COMPUTE_32F, which never uses TF32, so fp32
// GEMMs match the CPU reference to fp32 rounding). A plan (descriptors + the heuristic's best
// algorithm) is built once per shape, dtype and pointer alignment and reused: cuBLASLt picks
// kernels by alignment, and views of a tensor (Rows) need not be 256-byte aligned.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/internal.h"

namespace chai::cuda {
namespace {

cudaDataType_t CudaType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kF16:
      return CUDA_R_16F;
    case DType::kBF16:
      return CUDA_R_16BF;
    default:
      std::fprintf(stderr, "chai: internal error in CUDA op Linear: unsupported dtype %s\n", DTypeName(dtype));
      std::abort();
  }
}

// Largest power of two (up to 256) that divides the address.
uint32_t Alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

struct PlanKey {
  DType dtype;
  int64_t m, n, k;  // cuBLASLt's: m = N (features), n = T (tokens), k = K
  bool bias;        // with the bias epilogue
  uint32_t align_a, align_b, align_d, align_bias;
  auto Tie() const { return std::tie(dtype, m, n, k, bias, align_a, align_b, align_d, align_bias); }
  bool operator<(const PlanKey& o) const { return Tie() < o.Tie(); }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;  // false: the heuristic had nothing (only tried for bias epilogues)
};

// Builds the descriptors and asks the heuristic for its best algorithm. `bias` is the bias
// pointer (the heuristic reads its alignment) or null for no epilogue.
std::unique_ptr<Plan> MakePlan(const PlanKey& key, const void* bias) {
  auto plan = std::make_unique<Plan>();
  const cudaDataType_t type = CudaType(key.dtype);
  CHAI_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CHAI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)));
  CHAI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)));
  if (key.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = type;
    CHAI_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    CHAI_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    CHAI_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  CHAI_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, type, key.k, key.m, key.k));
  CHAI_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, type, key.k, key.n, key.k));
  CHAI_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->d, type, key.m, key.n, key.m));

  cublasLtMatmulPreference_t pref;
  CHAI_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = LtWorkspace().bytes;
  CHAI_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                         sizeof(workspace)));
  const uint32_t aligns[] = {key.align_a, key.align_b, key.align_d, key.align_d};
  const cublasLtMatmulPreferenceAttributes_t attrs[] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; ++i) {
    CHAI_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &aligns[i], sizeof(aligns[i])));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(LtHandle(), plan->desc, plan->a, plan->b, plan->d, plan->d,
                                                           pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan->algo = result.algo;
    plan->found = true;
  } else if (!key.bias) {
    std::fprintf(
        stderr, "chai: fatal: cuBLASLt has no algorithm for Linear %s m=%lld n=%lld k=%lld (alignments %u/%u/%u): %s\n",
        DTypeName(key.dtype), static_cast<long long>(key.m), static_cast<long long>(key.n),
        static_cast<long long>(key.k), key.align_a, key.align_b, key.align_d,
        cublasGetStatusString(st == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : st));
    std::abort();
  }
  return plan;
}

std::mutex plan_mutex;
std::map<PlanKey, std::unique_ptr<Plan>>& Plans() {
  static auto* plans = new std::map<PlanKey, std::unique_ptr<Plan>>;  // never destroyed (see stream.cc)
  return *plans;
}

const Plan& GetPlan(const PlanKey& key, const void* bias) {
  auto& plans = Plans();
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, MakePlan(key, bias)).first;
  return *it->second;
}

void Run(const Plan& plan, const void* bias, const Tensor& x, const Tensor& weight, Tensor* out) {
  if (bias != nullptr) {
    CHAI_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  const float alpha = 1.f, beta = 0.f;
  const Workspace ws = LtWorkspace();
  CHAI_CUBLAS_CHECK(cublasLtMatmul(LtHandle(), plan.desc, &alpha, weight.raw(), plan.a, x.raw(), plan.b, &beta,
                                   out->raw(), plan.d, out->raw(), plan.d, &plan.algo, ws.data, ws.bytes,
                                   CurrentStream()));
}

}  // namespace

void LinearCublasLt(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out) {
  const int64_t tokens = x.dim(0), in = x.dim(1), features = weight.dim(0);
  if (tokens == 0 || features == 0) return;
  PlanKey key{
      x.dtype(), features, tokens, in, false, Alignment(weight.raw()), Alignment(x.raw()), Alignment(out->raw()), 0};
  std::lock_guard<std::mutex> lock(plan_mutex);
  if (bias.defined()) {
    PlanKey with_bias = key;
    with_bias.bias = true;
    with_bias.align_bias = Alignment(bias.raw());
    const Plan& plan = GetPlan(with_bias, bias.raw());
    if (plan.found) {
      Run(plan, bias.raw(), x, weight, out);
      return;
    }
  }
  Run(GetPlan(key, nullptr), nullptr, x, weight, out);
  if (bias.defined()) AddBiasRows(bias, out);
}

// Decode (T <= 8, fp16/bf16, aligned): the GEMV kernel (gemv.cu) streams W at close to the copy
// bandwidth, where cuBLASLt's kernels for these shapes reach 63-77% of it on an H100.
void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out) {
  if (x.dim(0) == 0 || weight.dim(0) == 0) return;
  if (GemvApplies(x, weight) && (!bias.defined() || bias.dtype() == x.dtype())) {
    Gemv(x, weight, bias, out);
    return;
  }
  LinearCublasLt(x, weight, bias, out);
}

bool LinearFusedIsOneKernel(const Tensor& x) {
  const DType dtype = x.dtype();
  return (dtype == DType::kF16 || dtype == DType::kBF16) && x.rank() == 2 && x.dim(0) >= 1 &&
         x.dim(0) <= kGemvMaxTokens && x.dim(1) % 8 == 0 && reinterpret_cast<uintptr_t>(x.raw()) % 16 == 0;
}

bool LinearMirrorIsOneKernel(const Tensor& x, const Tensor& weight) {
  ops::LinearFusion fusion;
  const PeerMirror probe{.reader_blocks = 1};  // only its presence matters to the check
  fusion.mirror = &probe;
  return LinearFusedIsOneKernel(x) && GemvFusedApplies(x, weight, Tensor(), fusion);
}

// Decode: one GEMV kernel (gemv.cu). Elsewhere (more than 8 rows, fp32, unaligned operands) the
// composition that defines the op, with temporaries from the stream-ordered pool (capturable);
// never with a mirror (the composition would not write it: ops.cc refuses that case first).
void LinearFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion,
                 Tensor* out) {
  if (x.dim(0) == 0 || weight.dim(0) == 0) return;
  if (GemvFusedApplies(x, weight, bias, fusion)) {
    GemvFused(x, weight, bias, fusion, out);
    return;
  }
  if (fusion.mirror != nullptr) {
    std::fprintf(stderr, "chai: internal error in CUDA op LinearFused: a mirror where the GEMV does not apply\n");
    std::abort();
  }
  Tensor in = x;
  if (fusion.rms_norm_weight.defined()) {
    in = Tensor::Empty(x.shape(), x.dtype(), Device::kCuda);
    RmsNorm(x, fusion.rms_norm_weight, fusion.rms_norm_eps, &in);
  }
  if (fusion.output == ops::LinearOutput::kStore || fusion.output == ops::LinearOutput::kRelu) {
    Linear(in, weight, bias, out);
    if (fusion.output == ops::LinearOutput::kRelu) Relu(out);
    return;
  }
  Tensor p = Tensor::Empty({x.dim(0), weight.dim(0)}, x.dtype(), Device::kCuda);
  Linear(in, weight, bias, &p);
  if (fusion.output == ops::LinearOutput::kAddTo) {
    Add(*out, p, out);
  } else {
    SiluMulFused(p, out);
  }
}

}  // namespace chai::cuda
