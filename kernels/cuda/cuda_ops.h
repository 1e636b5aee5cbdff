// CUDA implementations of kernels/ops.h (fp32, fp16 and bf16 storage; fp32 accumulation).
// Called through the dispatcher in kernels/ops.cc, which has already checked shapes.
// All ops are asynchronous on the current stream (CurrentStream()) and never synchronise the
// host, so a decode step can be captured in a CUDA graph.
#ifndef CHAI_KERNELS_CUDA_CUDA_OPS_H_
#define CHAI_KERNELS_CUDA_CUDA_OPS_H_

#include "kernels/ops.h"

struct CUstream_st;

namespace chai::cuda {

// The stream every op runs on (one per process; the engine captures decode graphs on it).
CUstream_st* CurrentStream();

void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor* out);
void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* out);
void AddLayerNorm(Tensor* x, const Tensor& y, const Tensor& weight, const Tensor& bias, float eps, Tensor* out,
                  const L2Prefetch& then);
void AddRmsNorm(Tensor* x, const Tensor& y, const Tensor& weight, float eps, Tensor* out, const L2Prefetch& then);
void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out);
void LinearFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion,
                 Tensor* out);
bool LinearFusedIsOneKernel(const Tensor& x);
bool LinearMirrorIsOneKernel(const Tensor& x, const Tensor& weight);
// gemv_reads_first.cc: ops::LinearReadsFirst for the GEMV configuration that would be launched.
L2Prefetch GemvReadsFirst(const Tensor& x, const Tensor& weight, ops::LinearOutput output, int64_t budget,
                          L2HintForm one_wave);
void Relu(Tensor* x);
void SiluMul(const Tensor& gate, const Tensor& up, Tensor* out);
void SiluMulFused(const Tensor& gate_up, Tensor* out);
void Add(const Tensor& a, const Tensor& b, Tensor* out);
void Embedding(const Tensor& table, const Tensor& ids, int64_t row_begin, Tensor* out);
void Rotary(Tensor* x, const Tensor& positions, int num_heads, int head_dim, float theta);
void SplitQkvRotary(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim, float theta,
                    bool apply_rotary, Tensor* q, Tensor* k, Tensor* v);
void SoftmaxRows(Tensor* x);
void ScatterInt32(const Tensor& indices, const Tensor& values, Tensor* dst);
void ArgmaxRows(const Tensor& x, int64_t cols, Tensor* ids);
void PagedAppend(const Tensor& k, const Tensor& v, const PagedKv& kv, const BatchLayout& batch);
void SplitQkvRotaryAppend(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim,
                          float theta, bool apply_rotary, const PagedKv& kv, const BatchLayout& batch, Tensor* q,
                          Tensor* k, Tensor* v);
void PagedAttention(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                    Tensor* out);
// gemv.cu: ops::QkvLinearAppend in one GEMV kernel (with its RMSNorm folded in where
// rms_norm_weight is defined), where QkvLinearAppendIsOneKernel.
bool QkvLinearAppendIsOneKernel(const Tensor& x, const Tensor& weight, const Tensor& bias, int head_dim,
                                const Tensor& positions, const BatchLayout& batch, const Tensor& rms_norm_weight);
void QkvLinearAppend(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& positions, int heads,
                     int kv_heads, int head_dim, float theta, bool apply_rotary, const PagedKv& kv,
                     const BatchLayout& batch, Tensor* q, const Tensor& rms_norm_weight, float rms_norm_eps,
                     bool first_bytes_in_l2);

void ChaiCluster(absl::Span<const ops::ChaiClusterProblem> problems, const PagedKv& kv, const Tensor& order,
                 Tensor* score_head, Tensor* features);

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_CUDA_OPS_H_
