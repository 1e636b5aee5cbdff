// Measured dense matrix-product rate, the denominator of the prefill efficiency we report: a
// prefill is compute-bound, so its FLOP rate is compared with what the GEMM library reaches on a
// large product of the run's dtype on the same device in the same run.
#ifndef CHAI_KERNELS_GEMM_RATE_H_
#define CHAI_KERNELS_GEMM_RATE_H_

#include "kernels/tensor.h"

namespace chai {

// FLOP/s of ops::Linear on [4096, 4096] x [4096 -> 12288] (LLaMA-7B's stacked Q|K|V projection
// over a 4096-token prefill), median of 10 timed calls after warm-up, random inputs. CUDA only
// (fp16/bf16/fp32); 0 on the CPU, where it is not measured.
double MeasureGemmFlops(Device device, DType dtype);

}  // namespace chai

#endif  // CHAI_KERNELS_GEMM_RATE_H_
