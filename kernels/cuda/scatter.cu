// dst[indices[i]] = values[i]: small updates of device-resident int32 tables (block tables,
// score-head maps) without re-uploading them.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

__global__ void ScatterInt32Kernel(const int32_t* __restrict__ indices, const int32_t* __restrict__ values,
                                   int32_t* __restrict__ dst, int64_t n) {
  PdlWait();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    dst[indices[i]] = values[i];
  }
}

}  // namespace

void ScatterInt32(const Tensor& indices, const Tensor& values, Tensor* dst) {
  const int64_t n = indices.numel();
  if (n == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 1024));
  LaunchPdl(ScatterInt32Kernel, blocks, threads, 0, CurrentStream(), indices.data<int32_t>(), values.data<int32_t>(),
            dst->data<int32_t>(), n);
}

}  // namespace chai::cuda
