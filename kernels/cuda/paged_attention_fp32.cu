// PagedAttention kernels for fp32 storage (one file per type so that they compile in parallel).
#include "kernels/cuda/paged_attention_kernels.cuh"

namespace chai::cuda::paged {

template void LaunchAttention<float>(const Params&, const LaunchPlan&, cudaStream_t);
template int DecodeV2CtasPerSm<float>(const Params&, const LaunchPlan&);
template void DecodeV3CtasPerSm<float>(const Params&, int*, int*);
template int DecodeV4CtasPerSm<float>(const Params&, int);

}  // namespace chai::cuda::paged
