// Kernels of PagedAttention and their launch (see paged_attention.cu for the op, its launch plan
// and scratch): the decode kernel (paged_attention_decode.cuh), the prefill kernels
// (paged_attention_prefill*.cuh) and the dispatch on head_dim, dtype and group tile.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_

#include <mutex>
#include <utility>

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_decode.cuh"
#include "kernels/cuda/paged_attention_prefill.cuh"
#include "kernels/cuda/paged_attention_prefill_mma.cuh"

namespace chai::cuda::paged {

template <typename T>
void LaunchAttention(const Params& p, const LaunchPlan& plan, cudaStream_t stream);

#ifdef __CUDACC__
// ------------------------------------------------------------------------------------------
// Launch: dispatch on head_dim and the decode group tile.

template <typename T, int kD, int kG>
void LaunchDecode(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  const dim3 grid(plan.decode_slots, p.max_splits);
  const size_t shared = sizeof(float) * kG * p.chunk;
  DecodeKernel<T, kD, kG><<<grid, kDecodeThreads, shared, stream>>>(p);
  CHAI_CUDA_CHECK_LAUNCH();
}

// Runs a host function once per CUDA device (kernel attributes are per device, and ranks may
// be threads of one process on different devices).
class PerDeviceOnce {
 public:
  template <typename F>
  void Run(F&& f) {
    int device = 0;
    CHAI_CUDA_CHECK(cudaGetDevice(&device));
    if (device < 0 || device >= kDevices) device = kDevices - 1;
    std::call_once(flags_[device], std::forward<F>(f));
  }

 private:
  static constexpr int kDevices = 64;
  std::once_flag flags_[kDevices];
};

template <typename T, int kD>
void LaunchPrefill(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  const dim3 grid(p.num_seqs * p.heads, plan.prefill_tiles);
  // Dynamic shared memory above 48 KB needs the kernel's limit raised, once per device.
  static PerDeviceOnce once;
  if constexpr (kMmaPrefill<T, kD>) {
    constexpr int kBytes = MmaPrefillSharedBytes<kD>();
    once.Run([] {
      CHAI_CUDA_CHECK(
          cudaFuncSetAttribute(PrefillMmaKernel<T, kD>, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
    });
    PrefillMmaKernel<T, kD><<<grid, kMmaThreads, kBytes, stream>>>(p);
  } else {
    constexpr int kDMax = kD > 0 ? kD : kMaxHeadDim;
    const int d = kD > 0 ? kD : p.head_dim;
    once.Run([] {
      CHAI_CUDA_CHECK(cudaFuncSetAttribute(PrefillKernel<T, kD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(sizeof(float) * PrefillSharedFloats(kDMax))));
    });
    PrefillKernel<T, kD><<<grid, kPrefillThreads, sizeof(float) * PrefillSharedFloats(d), stream>>>(p);
  }
  CHAI_CUDA_CHECK_LAUNCH();
}

template <typename T, int kD>
void LaunchForHeadDim(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  if (plan.decode) {
    switch (plan.group_tile) {
      case 1:
        LaunchDecode<T, kD, 1>(p, plan, stream);
        break;
      case 4:
        LaunchDecode<T, kD, 4>(p, plan, stream);
        break;
      default:
        LaunchDecode<T, kD, 8>(p, plan, stream);
        break;
    }
  }
  if (plan.prefill) LaunchPrefill<T, kD>(p, plan, stream);
}

template <typename T>
void LaunchAttention(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  if (plan.exact) {
    switch (p.head_dim) {
      case 8:
        return LaunchForHeadDim<T, 8>(p, plan, stream);
      case 16:
        return LaunchForHeadDim<T, 16>(p, plan, stream);
      case 32:
        return LaunchForHeadDim<T, 32>(p, plan, stream);
      case 64:
        return LaunchForHeadDim<T, 64>(p, plan, stream);
      case 80:
        return LaunchForHeadDim<T, 80>(p, plan, stream);
      case 96:
        return LaunchForHeadDim<T, 96>(p, plan, stream);
      case 128:
        return LaunchForHeadDim<T, 128>(p, plan, stream);
      case 256:
        return LaunchForHeadDim<T, 256>(p, plan, stream);
      default:
        break;
    }
  }
  LaunchForHeadDim<T, 0>(p, plan, stream);
}

#endif  // __CUDACC__

// Instantiated once per storage type in paged_attention_{fp32,fp16,bf16}.cu (compiled in parallel).
extern template void LaunchAttention<float>(const Params&, const LaunchPlan&, cudaStream_t);
extern template void LaunchAttention<__half>(const Params&, const LaunchPlan&, cudaStream_t);
extern template void LaunchAttention<__nv_bfloat16>(const Params&, const LaunchPlan&, cudaStream_t);

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_
