// Thread block clusters (sm_90): the cluster-wide barrier and reads of another CTA's shared memory
// (distributed shared memory). Used by decode kernel 4's split merge at small batches
// (paged_attention_v4_epilogue.cuh).
#ifndef CHAI_KERNELS_CUDA_CLUSTER_DSMEM_CUH_
#define CHAI_KERNELS_CUDA_CLUSTER_DSMEM_CUH_

#include <cstdint>

namespace chai::cuda {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// Every thread of every CTA of the cluster meets here: shared-memory writes before it (release)
// are visible to every CTA's reads after it (acquire). Called by whole warps, convergently.
__device__ __forceinline__ void ClusterSync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// The address in CTA `rank`'s shared memory of what `local` (a shared::cta address) is here.
__device__ __forceinline__ uint32_t ClusterAddress(uint32_t local, int rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
  return remote;
}
__device__ __forceinline__ float LoadClusterF32(uint32_t addr) {
  float v;
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ float2 LoadClusterF32x2(uint32_t addr) {
  float2 v;
  asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(addr) : "memory");
  return v;
}
#endif  // __CUDA_ARCH__ >= 900

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_CLUSTER_DSMEM_CUH_
