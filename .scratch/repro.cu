#include <cstdio>
#include <cstdint>
__global__ void __launch_bounds__(128, 2) K(int flag, float* out) {
  extern __shared__ float sm[];
  sm[threadIdx.x] = threadIdx.x + blockIdx.y;
  __syncthreads();
  if (flag) {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
    uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(sm + threadIdx.x)), r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(0));
    float v;
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(r) : "memory");
    out[(blockIdx.x * gridDim.y + blockIdx.y) * 128 + threadIdx.x] = v;
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
  }
}
int main() {
  float* out; cudaMalloc(&out, 32 * 8 * 128 * 4);
  printf("setattr %d\n", (int)cudaFuncSetAttribute(K, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 << 10));
  cudaFuncAttributes fa; cudaFuncGetAttributes(&fa, K);
  printf("regs %d shared %zu maxdyn %d clusterDimMustBeSet %d requiredClusterWidth %d nonportable %d\n", fa.numRegs,
         fa.sharedSizeBytes, fa.maxDynamicSharedSizeBytes, fa.clusterDimMustBeSet, fa.requiredClusterWidth,
         fa.nonPortableClusterSizeAllowed);
  K<<<dim3(32, 5), 128, 96 << 10>>>(0, out);
  printf("plain launch: %s\n", cudaGetErrorString(cudaGetLastError()));
  printf("sync: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
  cudaLaunchAttribute attr[1]; attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 1; attr[0].val.clusterDim.y = 5; attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t c = {}; c.gridDim = dim3(32, 5); c.blockDim = dim3(128); c.dynamicSmemBytes = 96 << 10;
  c.attrs = attr; c.numAttrs = 1;
  int n = -1; printf("maxActiveClusters: %s %d\n", cudaGetErrorString(cudaOccupancyMaxActiveClusters(&n, K, &c)), n);
  printf("cluster launch: %s\n", cudaGetErrorString(cudaLaunchKernelEx(&c, K, 1, out)));
  printf("sync: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
  return 0;
}
