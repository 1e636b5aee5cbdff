// The fused all-reduce + residual add + norm of ipc_allreduce_norm.cu with each decode row spread
// over a thread block cluster (sm_90) instead of one block. Same exchange (the Lamport protocol,
// the same receive area and per-block epochs, the push spread over the grid), same results bit
// for bit; only who receives and normalises a row differs.
//
// Why: a row received by one block is the fused call's critical path. At OPT-66B's [1, 9216] on
// 4 x H200 one block polled 1152 vectors x 3 peers through its SM and finished receiving 4.8-6.3
// us into a 7.7 us call, against 3.9 us for the whole plain all-reduce, whose 32 blocks each
// receive a share (benchmarks/results/opt-66b-tp4-h200.md). Spreading the row over all blocks with
// a last-arrival rendezvous in global memory was slower (its rendezvous and second pass); a
// cluster's blocks meet at a hardware barrier and read each other's shared memory directly.
//
// How, for a row of `vecs` 16-byte vectors whose norm the norm kernel sums over NT threads
// (NormRowThreads; thread t: vectors t, t + NT, ...): the C blocks of a cluster take NT / C of
// those threads each (block c: threads c * NT / C ...), a whole number of warps. Block c receives
// the vectors of its threads (all its 512 threads, one vector each, every load in flight at once)
// into shared memory and x, copying their norm weights beside them meanwhile. Then its first NT / C
// threads run the norm kernel's sums for their threads, in its order; each warp's sum goes to the
// block's shared memory, and after a cluster barrier every warp reads all NT / 32 warp sums from
// the cluster's blocks into the lanes where the norm kernel's block reduction has them (BlockSum:
// warp w's sum in lane w) and adds them by the same butterfly: the same bits. Twice for LayerNorm
// (mean, then the squares about it), once for RMSNorm; then each block writes its vectors' output.
//
// A cluster takes one row; the launcher picks C (8, 4 or 2) so that every row of the call has a
// cluster within the fixed grid (ClusterSize). Without one (more than 16 rows, rows too wide to
// stage, a thread count C does not divide) the one-block kernel runs.
#include <cooperative_groups.h>

#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/l2_prefetch.cuh"
#include "kernels/cuda/norm_row.cuh"
#include "kernels/cuda/per_device_once.h"
#include "kernels/env_choice.h"
#include "parallel/ipc_allreduce_groups.cuh"
#include "parallel/ipc_allreduce_kernel.h"
#include "parallel/ipc_allreduce_norm_parts.cuh"
#include "parallel/ipc_lamport.cuh"

namespace chai::ipc {
namespace {

namespace cg = cooperative_groups;
using cuda::kVec16;
using cuda::LoadVec;
using cuda::StoreVec;

constexpr int kMaxClusterSize = 8;  // the portable limit

// Vector j of block `c`'s share of a row: the j-th of the vectors that threads c * per, ..., (c + 1) *
// per - 1 of the norm kernel's NT visit (per = NT / C), in increasing order.
__device__ __forceinline__ int64_t OwnVector(int64_t j, int c, int per, int nt) {
  return (j / per) * nt + int64_t{c} * per + j % per;
}

// The cluster's sum of the warp sums its blocks stored in `warp_sums` (block c's warps are warps
// c * wpc, ... of the norm kernel's block), as BlockSum adds them: warp w's sum in lane w, zeros in
// lanes from nt / 32 on, one butterfly. Begins with the cluster barrier that makes the sums
// visible; every thread of the cluster must call it.
__device__ __forceinline__ float ClusterWarpSum(const cg::cluster_group& cluster, float* warp_sums, int wpc, int nt) {
  cluster.sync();
  const int lane = threadIdx.x & 31;
  const float v = lane < nt / 32 ? *cluster.map_shared_rank(warp_sums + lane % wpc, lane / wpc) : 0.f;
  return cuda::WarpSum(v);
}

template <typename T, int W, bool kRms>
__global__ void __launch_bounds__(kThreads)
    LamportAllReduceNormCluster(Peers peers, char* self, int rank, size_t half, const T* partial, T* x,
                                const T* weight, const T* bias, float eps, int64_t rows, int64_t cols, int nt,
                                bool pushed, const L2Prefetch then, T* out) {
  constexpr int N = kVec16<T>;
  const cg::cluster_group cluster = cg::this_cluster();
  const int c = static_cast<int>(cluster.block_rank()), size = static_cast<int>(cluster.num_blocks());
  const int64_t row = blockIdx.x / size;  // a 1-D grid's clusters are consecutive blocks
  const int per = nt / size, wpc = per / 32;
  __shared__ float warp_sums[2][kThreads / 32];  // this block's warps' sums: the mean's, the squares'
  extern __shared__ uint4 staged_smem[];          // [row | weight | bias], StagedSharedBytes
  T* const buf = reinterpret_cast<T*>(staged_smem);
  T* const w_buf = buf + cols;
  T* const b_buf = w_buf + cols;

  uint64_t* const epochs = reinterpret_cast<uint64_t*>(self + kEpochsOffset);
  const uint64_t epoch = epochs[blockIdx.x] + 1;
  const size_t data = kDataOffset + (epoch & 1) * W * half;
  const int64_t vecs = cols / N;
  if (!pushed) {
    PushGroups<T, N, W>(peers, data, half, rank, partial, rows * vecs, int64_t{blockIdx.x} * blockDim.x + threadIdx.x,
                        int64_t{gridDim.x} * blockDim.x);
  }
  if (row >= rows) {
    // No row for this cluster: the hint's L2 prefetches, as the one-block kernel's idle blocks.
    const int64_t busy = rows * size, idle = gridDim.x - busy;
    cuda::IssueL2Prefetch(then, threadIdx.x * idle + (blockIdx.x - busy), idle * blockDim.x);
    __syncthreads();
    if (threadIdx.x == 0) epochs[blockIdx.x] = epoch;
    return;  // the whole cluster returns here: no barrier of it is pending
  }

  // This block's vectors: their weights copied to shared memory while they are received.
  T* const in = x + row * cols;
  for (int64_t j = threadIdx.x;; j += blockDim.x) {
    const int64_t i = OwnVector(j, c, per, nt);
    if (i >= vecs) break;
    CopyToShared16(w_buf + i * N, weight + i * N);
    if (bias != nullptr) CopyToShared16(b_buf + i * N, bias + i * N);
    ReceiveBatch<T, N, W>(self, data, half, rank, partial, in, row, vecs, i, /*stride=*/vecs, buf);
  }
  WaitCopiesToShared();
  __syncthreads();  // the block's vectors and their weights are in shared memory

  // The norm kernel's threads c * per + t (t < per) and their sums, in its order.
  const int64_t first = threadIdx.x < per ? int64_t{c} * per + threadIdx.x : vecs;
  const int warp = threadIdx.x / 32;
  float mean = 0.f;
  if constexpr (!kRms) {
    float sum = 0.f;
    for (int64_t i = first; i < vecs; i += nt) cuda::AddToSum<T, N>(LoadVec<T, N>(buf + i * N), sum);
    sum = cuda::WarpSum(sum);
    if (threadIdx.x < per && threadIdx.x % 32 == 0) warp_sums[0][warp] = sum;
    mean = ClusterWarpSum(cluster, warp_sums[0], wpc, nt) / static_cast<float>(cols);
  }
  float ss = 0.f;
  for (int64_t i = first; i < vecs; i += nt) cuda::AddSquaresAbout<T, N>(LoadVec<T, N>(buf + i * N), mean, ss);
  ss = cuda::WarpSum(ss);
  if (threadIdx.x < per && threadIdx.x % 32 == 0) warp_sums[1][warp] = ss;
  const float inv = rsqrtf(ClusterWarpSum(cluster, warp_sums[1], wpc, nt) / static_cast<float>(cols) + eps);

  for (int64_t j = threadIdx.x;; j += blockDim.x) {
    const int64_t i = OwnVector(j, c, per, nt);
    if (i >= vecs) break;
    const Vec<T, N> w = LoadVec<T, N>(w_buf + i * N);
    StoreVec<T, N>(out + row * cols + i * N,
                   cuda::Normalized<T, N>(LoadVec<T, N>(buf + i * N), w,
                                          bias != nullptr ? LoadVec<T, N>(b_buf + i * N) : w, bias != nullptr, mean,
                                          inv));
  }
  // No block leaves while another may still read its warp sums; this also orders every thread's
  // read of the epoch before thread 0 stores the next one.
  cluster.sync();
  if (threadIdx.x == 0) epochs[blockIdx.x] = epoch;
}

// CHAI_IPC_ALLREDUCE_NORM_CLUSTER=0 keeps every row on one block (the kernel of
// ipc_allreduce_norm.cu). Bit-identical either way. Read once.
bool ClusterRows() {
  static const bool on = EnvChoice("CHAI_IPC_ALLREDUCE_NORM_CLUSTER", {"1", "0"}) == 0;
  return on;
}

// How many clusters of `size` blocks (2, 4 or 8) of kKernel with the largest staged row's shared
// memory can be resident at once on this device, asked once per device.
template <auto kKernel>
int MaxActiveClusters(int size) {
  static cuda::PerDeviceOnce once;
  static int counts[64][kMaxClusterSize + 1] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return 0;
  once.Run([device] {
    for (int s = 2; s <= kMaxClusterSize; s *= 2) {
      cudaLaunchConfig_t config = {};
      config.gridDim = dim3(kMaxBlocks);
      config.blockDim = dim3(kThreads);
      config.dynamicSmemBytes = 3 * kRowBufBytes;
      cudaLaunchAttribute attribute = {};
      attribute.id = cudaLaunchAttributeClusterDimension;
      attribute.val.clusterDim.x = s;
      attribute.val.clusterDim.y = attribute.val.clusterDim.z = 1;
      config.attrs = &attribute;
      config.numAttrs = 1;
      int n = 0;
      counts[device][s] = cudaOccupancyMaxActiveClusters(&n, kKernel, &config) == cudaSuccess ? n : 0;
      (void)cudaGetLastError();  // a device without clusters: none, and no error left behind
    }
  });
  return counts[device][size];
}

}  // namespace

cudaError_t LaunchLamportAllReduceNormCluster(const Peers& peers, int rank, int size, int blocks, size_t half,
                                              const void* partial, void* x, const void* weight, const void* bias,
                                              float eps, bool rms, int64_t rows, int64_t cols, DType dtype, void* out,
                                              bool pushed, const L2Prefetch& then, cudaStream_t stream,
                                              bool* launched) {
  *launched = false;
  if (!ClusterRows() || blocks < 1 || blocks > kMaxBlocks || rank < 0 || rank >= size || rows < 1) {
    return cudaSuccess;
  }
  if (cols * static_cast<int64_t>(DTypeSize(dtype)) > kRowBufBytes) return cudaSuccess;
  if (!LamportNormSupported(size, cols, DTypeSize(dtype), {partial, x, weight, bias, out})) return cudaSuccess;
  return DispatchNormKernel(dtype, rms, size, [&](auto tag, auto rms_tag, auto ranks) -> cudaError_t {
    using T = decltype(tag);
    constexpr bool kRms = decltype(rms_tag)::value;
    constexpr int W = decltype(ranks)::value;
    constexpr auto kKernel = LamportAllReduceNormCluster<T, W, kRms>;
    const int nt = cuda::NormRowThreads(cols / kVec16<T>);
    int cluster = 0;  // the largest size that gives every row a cluster of whole warps
    for (int s = kMaxClusterSize; s >= 2 && cluster == 0; s /= 2) {
      if (blocks % s == 0 && rows * s <= blocks && nt % (32 * s) == 0) cluster = s;
    }
    if (cluster == 0) return cudaSuccess;
    AllowStagedRows<kKernel>();
    if (MaxActiveClusters<kKernel>(cluster) < blocks / cluster) return cudaSuccess;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(blocks);
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = StagedSharedBytes(true, cols, sizeof(T), bias != nullptr);
    config.stream = stream;
    cudaLaunchAttribute attribute = {};
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = cluster;
    attribute.val.clusterDim.y = attribute.val.clusterDim.z = 1;
    config.attrs = &attribute;
    config.numAttrs = 1;
    *launched = true;
    return cudaLaunchKernelEx(&config, kKernel, peers, peers.base[rank], rank, half, static_cast<const T*>(partial),
                              static_cast<T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias), eps,
                              rows, cols, nt, pushed, then, static_cast<T*>(out));
  });
}

}  // namespace chai::ipc
