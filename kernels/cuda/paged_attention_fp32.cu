// PagedAttention kernels for fp32 storage (one file per type so that they compile in parallel).
#include "kernels/cuda/paged_attention_kernels.cuh"

namespace chai::cuda::paged {

template void LaunchAttention<float>(const Params&, const LaunchPlan&, cudaStream_t);

}  // namespace chai::cuda::paged
