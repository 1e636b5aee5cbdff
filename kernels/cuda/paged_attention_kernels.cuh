// Kernels of PagedAttention and their launch (see paged_attention.cu for the op, its launch plan
// and scratch): the decode kernels (paged_attention_decode*.cuh), the prefill kernels
// (paged_attention_prefill*.cuh) and the dispatch on head_dim, dtype and group tile.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_

#include <algorithm>
#include <atomic>
#include <mutex>
#include <type_traits>
#include <utility>

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_decode.cuh"
#include "kernels/cuda/paged_attention_decode_v2.cuh"
#include "kernels/cuda/paged_attention_decode_v3.cuh"
#include "kernels/cuda/paged_attention_decode_v4.cuh"
#include "kernels/cuda/paged_attention_prefill.cuh"
#include "kernels/cuda/paged_attention_prefill_mma.cuh"
#include "kernels/cuda/paged_attention_prefill_v2.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/per_device_once.h"

namespace chai::cuda::paged {

template <typename T>
void LaunchAttention(const Params& p, const LaunchPlan& plan, cudaStream_t stream);

// Resident CTAs per SM of the decode kernel 2 instance that `plan` selects (head_dim,
// group_tile, v2_members), for sizing its chunks.
template <typename T>
int DecodeV2CtasPerSm(const Params& p, const LaunchPlan& plan);

// Resident CTAs per SM of decode kernel 3's two phases for p.head_dim (64, 80, 96 or 128).
template <typename T>
void DecodeV3CtasPerSm(const Params& p, int* score, int* pv);

// Resident CTAs per SM of decode kernel 4's pass `pass` (V4Pass) for p.head_dim (64 or 128); 1
// where it has no instance (fp32). Also raises the kernel's dynamic shared-memory limit (once per
// device).
template <typename T>
int DecodeV4CtasPerSm(const Params& p, int pass);

#ifdef __CUDACC__
// ------------------------------------------------------------------------------------------
// Launch: dispatch on head_dim and the decode group tile.

template <typename T, int kD, int kG>
void LaunchDecode(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  const dim3 grid(plan.decode_slots, p.max_splits);
  const size_t shared = sizeof(float) * kG * p.chunk;
  LaunchPdl(DecodeKernel<T, kD, kG>, grid, kDecodeThreads, shared, stream, p);
}

template <typename T, int kD, int kG, int kM>
void LaunchDecodeV2(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  const dim3 grid(plan.decode_slots, p.max_splits);
  LaunchPdl(DecodeV2Kernel<T, kD, kG, kM>, grid, kDecodeThreads, 0, stream, p);
}

// Calls f(std::integral_constant<int, kG>, std::integral_constant<int, kM>) for kernel 2's
// instance of the plan: kG 1 with kM 1, 2 or 4; kG 4 with kM 4.
template <typename F>
void WithDecodeV2Tile(const LaunchPlan& plan, F&& f) {
  if (plan.group_tile > 1) return f(std::integral_constant<int, 4>{}, std::integral_constant<int, 4>{});
  switch (plan.v2_members) {
    case 1:
      return f(std::integral_constant<int, 1>{}, std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 1>{}, std::integral_constant<int, 2>{});
    default:
      return f(std::integral_constant<int, 1>{}, std::integral_constant<int, 4>{});
  }
}

template <typename T, int kD>
int DecodeV2CtasPerSmFor(const LaunchPlan& plan) {
  int ctas = 0;
  WithDecodeV2Tile(plan, [&](auto kg, auto km) {
    constexpr int kG = decltype(kg)::value, kM = decltype(km)::value;
    // Queried once per device and instance (a host-side call, fine during stream capture too).
    static std::atomic<int> cached[64];  // zero-initialised (static storage)
    int device = 0;
    CHAI_CUDA_CHECK(cudaGetDevice(&device));
    device = device >= 0 && device < 64 ? device : 63;
    ctas = cached[device].load(std::memory_order_relaxed);
    if (ctas == 0) {
      CHAI_CUDA_CHECK(
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, DecodeV2Kernel<T, kD, kG, kM>, kDecodeThreads, 0));
      ctas = std::max(ctas, 1);
      cached[device].store(ctas, std::memory_order_relaxed);
    }
  });
  return ctas;
}

template <typename T>
int DecodeV2CtasPerSm(const Params& p, const LaunchPlan& plan) {
  switch (p.head_dim) {
    case 64:
      return DecodeV2CtasPerSmFor<T, 64>(plan);
    case 80:
      return DecodeV2CtasPerSmFor<T, 80>(plan);
    case 96:
      return DecodeV2CtasPerSmFor<T, 96>(plan);
    default:
      return DecodeV2CtasPerSmFor<T, 128>(plan);
  }
}

// Occupancy of a decode kernel (128 threads, no dynamic shared memory), queried once per device
// and instance (a host-side call, fine during stream capture too).
template <auto kKernel>
int CachedOccupancy() {
  static std::atomic<int> cached[64];  // per kernel (the template argument) and device; zero-initialised
  int device = 0;
  CHAI_CUDA_CHECK(cudaGetDevice(&device));
  device = device >= 0 && device < 64 ? device : 63;
  int ctas = cached[device].load(std::memory_order_relaxed);
  if (ctas == 0) {
    CHAI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kKernel, kDecodeThreads, 0));
    ctas = std::max(ctas, 1);
    cached[device].store(ctas, std::memory_order_relaxed);
  }
  return ctas;
}

template <typename T, int kD>
void DecodeV3CtasPerSmFor(int* score, int* pv) {
  *score = CachedOccupancy<DecodeV3ScoreKernel<T, kD>>();
  *pv = CachedOccupancy<DecodeV3PvKernel<T, kD>>();
}

template <typename T>
void DecodeV3CtasPerSm(const Params& p, int* score, int* pv) {
  switch (p.head_dim) {
    case 64:
      return DecodeV3CtasPerSmFor<T, 64>(score, pv);
    case 80:
      return DecodeV3CtasPerSmFor<T, 80>(score, pv);
    case 96:
      return DecodeV3CtasPerSmFor<T, 96>(score, pv);
    default:
      return DecodeV3CtasPerSmFor<T, 128>(score, pv);
  }
}

// Kernel 3: phase 1 (representatives' logits), then phase 2 (P·V of every head), stream-ordered
// (phase 2's PdlWait waits for phase 1 to complete).
template <typename T, int kD>
void LaunchDecodeV3(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  LaunchPdl(DecodeV3ScoreKernel<T, kD>, dim3(plan.decode_slots, p.score_splits), kDecodeThreads, 0, stream, p);
  LaunchPdl(DecodeV3PvKernel<T, kD>, dim3(plan.decode_slots, p.max_splits), kDecodeThreads, 0, stream, p);
}

// Kernel 4 (fp16/bf16, head_dim 64 or 128): V4Stage::kSharedBytes of dynamic shared memory, above the
// default 48 KB limit, so the limit is raised once per device and pass before the first occupancy
// query or launch. Once per translation unit too (internal linkage): the planning unit
// (paged_attention.cu) and the launching one (paged_attention_<dtype>.cu) each hold the kernel, and
// a flag shared between them once left the launching unit's kernel at the default limit (its
// launches failed with "invalid argument"; attention-decode-h100.md, thirtieth session).
namespace {
template <typename T, int kD, int kPass>
void PrepareDecodeV4() {
  static PerDeviceOnce once;
  once.Run([] {
    CHAI_CUDA_CHECK(cudaFuncSetAttribute(DecodeV4Kernel<T, kD, kPass>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         V4Stage<kD, kPass>::kSharedBytes));
  });
}
}  // namespace

template <typename T, int kD, int kPass>
int DecodeV4CtasPerSmFor() {
  PrepareDecodeV4<T, kD, kPass>();
  static std::atomic<int> cached[64];  // per instance and device; zero-initialised
  int device = 0;
  CHAI_CUDA_CHECK(cudaGetDevice(&device));
  device = device >= 0 && device < 64 ? device : 63;
  int ctas = cached[device].load(std::memory_order_relaxed);
  if (ctas == 0) {
    CHAI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, DecodeV4Kernel<T, kD, kPass>, kDecodeThreads,
                                                                  V4Stage<kD, kPass>::kSharedBytes));
    ctas = std::max(ctas, 1);
    cached[device].store(ctas, std::memory_order_relaxed);
  }
  return ctas;
}

template <typename T>
int DecodeV4CtasPerSm(const Params& p, int pass) {
  if constexpr (std::is_same_v<T, float>) {
    return 1;
  } else {
    const auto for_dim = [&](auto d) {
      constexpr int kD = decltype(d)::value;
      return pass == kV4Scores ? DecodeV4CtasPerSmFor<T, kD, kV4Scores>()
                               : (pass == kV4Pv ? DecodeV4CtasPerSmFor<T, kD, kV4Pv>()
                                                : DecodeV4CtasPerSmFor<T, kD, kV4Dense>());
    };
    return p.head_dim == 64 ? for_dim(std::integral_constant<int, 64>{}) : for_dim(std::integral_constant<int, 128>{});
  }
}

// Kernel 4: one CTA per (sequence, KV head) and split, so decode_slots = num_seqs * kv_heads.
// Dense: one pass. CHAI (plan.v4_chai): the scores pass over p.score_splits, then the P·V pass
// over p.max_splits, stream-ordered (the second's PdlWait returns once the first completed). With
// p.pv_early the P·V pass always takes the PDL attribute (whatever CHAI_PDL says): the scores pass
// releases it early and it issues its first V stages before that wait.
template <typename T, int kD>
void LaunchDecodeV4(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  if (!plan.v4_chai) {
    PrepareDecodeV4<T, kD, kV4Dense>();
    LaunchPdl(DecodeV4Kernel<T, kD, kV4Dense>, dim3(plan.decode_slots, p.max_splits), kDecodeThreads,
              V4Stage<kD, kV4Dense>::kSharedBytes, stream, p);
    return;
  }
  PrepareDecodeV4<T, kD, kV4Scores>();
  PrepareDecodeV4<T, kD, kV4Pv>();
  LaunchPdl(DecodeV4Kernel<T, kD, kV4Scores>, dim3(plan.v4_score_ctas, p.score_splits), kDecodeThreads,
            V4Stage<kD, kV4Scores>::kSharedBytes, stream, p);
  LaunchMaybePdl(p.pv_early != 0 || PdlEnabled(), DecodeV4Kernel<T, kD, kV4Pv>, dim3(plan.decode_slots, p.max_splits),
                 kDecodeThreads, V4Stage<kD, kV4Pv>::kSharedBytes, stream, p);
}

// Prefill kernel 2 with kWarps warps (16 query rows each) and kM members per CTA.
template <typename T, int kD, int kWarps, int kM>
void LaunchPrefillV2(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  constexpr int kBytes = PrefillV2SharedBytes<kD, kWarps, kM>();
  static PerDeviceOnce once;  // one per instance: the shared-memory limit is a per-kernel attribute
  once.Run([] {
    CHAI_CUDA_CHECK(
        cudaFuncSetAttribute(PrefillV2Kernel<T, kD, kWarps, kM>, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
  });
  const dim3 grid(p.num_seqs * p.heads, plan.prefill_tiles);
  PrefillV2Kernel<T, kD, kWarps, kM><<<grid, 32 * kWarps, kBytes, stream>>>(p);
  CHAI_CUDA_CHECK_LAUNCH();
}

template <typename T, int kD>
void LaunchPrefill(const Params& p, const LaunchPlan& plan, cudaStream_t stream) {
  if constexpr (kMmaPrefill<T, kD>) {
    // The plan picks kernel 2 only where it has an instance, with prefill_tiles counted in its rows.
    if (plan.prefill_kernel == 2) {
      const bool wide = plan.prefill_rows > 64, dense = plan.prefill_members == 1;
      if (wide && dense) return LaunchPrefillV2<T, kD, 8, 1>(p, plan, stream);
      if (wide) return LaunchPrefillV2<T, kD, 8, 2>(p, plan, stream);
      if (dense) return LaunchPrefillV2<T, kD, 4, 1>(p, plan, stream);
      return LaunchPrefillV2<T, kD, 4, 2>(p, plan, stream);
    }
  }
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
  if constexpr (DecodeV4Dim(kD) && !std::is_same_v<T, float>) {
    if (plan.decode && plan.decode_kernel == 4) {
      LaunchDecodeV4<T, kD>(p, plan, stream);
      if (plan.prefill) LaunchPrefill<T, kD>(p, plan, stream);
      return;
    }
  }
  if constexpr (DecodeV3Dim(kD)) {
    if (plan.decode && plan.decode_kernel == 3) {
      LaunchDecodeV3<T, kD>(p, plan, stream);
      if (plan.prefill) LaunchPrefill<T, kD>(p, plan, stream);
      return;
    }
  }
  if constexpr (DecodeV2Dim(kD)) {
    if (plan.decode && plan.decode_kernel == 2) {
      WithDecodeV2Tile(plan, [&](auto kg, auto km) {
        LaunchDecodeV2<T, kD, decltype(kg)::value, decltype(km)::value>(p, plan, stream);
      });
      if (plan.prefill) LaunchPrefill<T, kD>(p, plan, stream);
      return;
    }
  }
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
extern template int DecodeV2CtasPerSm<float>(const Params&, const LaunchPlan&);
extern template int DecodeV2CtasPerSm<__half>(const Params&, const LaunchPlan&);
extern template int DecodeV2CtasPerSm<__nv_bfloat16>(const Params&, const LaunchPlan&);
extern template void DecodeV3CtasPerSm<float>(const Params&, int*, int*);
extern template void DecodeV3CtasPerSm<__half>(const Params&, int*, int*);
extern template void DecodeV3CtasPerSm<__nv_bfloat16>(const Params&, int*, int*);
extern template int DecodeV4CtasPerSm<float>(const Params&, int);
extern template int DecodeV4CtasPerSm<__half>(const Params&, int);
extern template int DecodeV4CtasPerSm<__nv_bfloat16>(const Params&, int);

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_KERNELS_CUH_
