// PagedAttention kernels for fp16 storage (one file per type so that they compile in parallel).
#include "kernels/cuda/paged_attention_kernels.cuh"

namespace chai::cuda::paged {

template void LaunchAttention<__half>(const Params&, const LaunchPlan&, cudaStream_t);
template int DecodeV2CtasPerSm<__half>(const Params&, const LaunchPlan&);
template void DecodeV3CtasPerSm<__half>(const Params&, int*, int*);
template int DecodeV4CtasPerSm<__half>(const Params&, int);

}  // namespace chai::cuda::paged
