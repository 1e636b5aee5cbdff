// ChaiCluster on the GPU: one CTA per problem (a sequence at a layer) runs the steps of
// kernels/chai_cluster_math.h, the same steps the CPU reference runs one after another:
//   dots q_i . k_j          a thread per (head, i, j), each a sequential double sum like the CPU's
//   feature rows (softmax)  a thread per (head, i)
//   norms, distances        a thread per head, per pair
//   nearest-neighbour chain warp 0: every lane runs the chain's control flow on warp-uniform
//                           values; the nearest-neighbour search and the Lance-Williams update
//                           are spread over the lanes
//   merge order, cut        a thread per merge; one thread for the union-find
//   representatives         a thread per head, written straight into the score-head map
// The problem list travels as a kernel parameter (no upload, no host synchronisation); the
// distance matrix lives in shared memory (130 KiB for 128 heads).
#include <algorithm>
#include <climits>

#include "absl/types/span.h"
#include "kernels/chai_cluster_math.h"
#include "kernels/cuda/cuda_utils.cuh"

namespace chai::cuda {
namespace {

namespace cm = cluster_math;

constexpr int kThreads = 256;
constexpr int kMaxProblems = 64;  // per launch: 64 x 40 bytes of kernel parameters
constexpr unsigned kFullMask = 0xffffffffu;

struct ProblemArgs {
  const void* saved_q;  // [saved, heads * d] or null
  const void* new_q;    // rows saved..4
  int saved, table_row, map_row, order_row, clusters;
};
struct Problems {
  ProblemArgs p[kMaxProblems];
};

// Shared memory: distances (the dots before them), norms, merges, features, then int arrays.
// An odd row stride keeps column accesses of the distance matrix off a single bank.
__host__ __device__ inline int DistStride(int n) { return n | 1; }
__host__ __device__ inline int DistDoubles(int n) {
  const int matrix = n * DistStride(n), dots = n * cm::kFeatures;
  return matrix > dots ? matrix : dots;
}
inline size_t SharedBytes(int n) {
  return sizeof(double) * (DistDoubles(n) + n) + sizeof(cm::Merge) * n + sizeof(float) * n * cm::kFeatures +
         sizeof(int) * (5 * n + 1);
}

// cm::NnChain's working state on warp 0 (see chai_cluster_math.h for the contract).
struct WarpChain {
  double* d;
  int stride, n;
  int* live;
  int* size;
  int* chain;
  cm::Merge* merges;
  int lane;

  __device__ int LowestLive() const {
    for (int base = 0; base < n; base += 32) {
      const int i = base + lane;
      const unsigned mask = __ballot_sync(kFullMask, i < n && live[i]);
      if (mask != 0) return base + __ffs(mask) - 1;
    }
    return -1;
  }
  __device__ double Dist(int a, int b) const { return d[a * stride + b]; }
  __device__ int Nearest(int x, int prev, double* best) const {
    double v = INFINITY;
    int at = INT_MAX;
    for (int i = lane; i < n; i += 32) {  // increasing index: the lane's lowest index wins ties
      if (i == x || !live[i]) continue;
      const double di = d[x * stride + i];
      if (di < v) {
        v = di;
        at = i;
      }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {  // (distance, index) minimum over the warp
      const double ov = __shfl_xor_sync(kFullMask, v, offset);
      const int oi = __shfl_xor_sync(kFullMask, at, offset);
      if (ov < v || (ov == v && oi < at)) {
        v = ov;
        at = oi;
      }
    }
    if (v < *best) {
      *best = v;
      return at;
    }
    return prev;
  }
  __device__ int Chain(int i) const { return chain[i]; }
  __device__ void SetChain(int i, int value) {
    __syncwarp();
    if (lane == 0) chain[i] = value;
    __syncwarp();
  }
  __device__ void Join(int step, int x, int y, double height) {
    const int nx = size[x], ny = size[y];
    __syncwarp();
    if (lane == 0) {
      merges[step] = cm::Merge{height, x, y};
      size[x] = 0;
      size[y] = nx + ny;
      live[x] = 0;
    }
    __syncwarp();
    for (int i = lane; i < n; i += 32) {  // distinct i per lane: rows i and column i of row y
      if (i == y || !live[i]) continue;
      const double v = cm::AverageOf(nx, d[i * stride + x], ny, d[i * stride + y]);
      d[i * stride + y] = v;
      d[y * stride + i] = v;
    }
    __syncwarp();
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ChaiClusterKernel(const __grid_constant__ Problems problems, const T* __restrict__ pool,
                      const int32_t* __restrict__ tables, const int32_t* __restrict__ order,
                      int32_t* __restrict__ score_head, float* __restrict__ features, int heads, int kv_heads,
                      int head_dim, int block_size, int max_blocks) {
  const ProblemArgs& p = problems.p[blockIdx.x];
  const int n = heads, stride = DistStride(n);
  extern __shared__ __align__(16) unsigned char smem[];
  double* dist = reinterpret_cast<double*>(smem);
  double* norm = dist + DistDoubles(n);
  cm::Merge* merges = reinterpret_cast<cm::Merge*>(norm + n);
  float* feat = reinterpret_cast<float*>(merges + n);
  int* live = reinterpret_cast<int*>(feat + n * cm::kFeatures);
  int* size = live + n;
  int* chain = size + n;  // n + 1
  int* by_rank = chain + n + 1;
  int* root = by_rank + n;

  // Dots q_i . k_j of every (head, i, j), in the distance matrix's space (free until then).
  double* dots = dist;
  const int group = heads / kv_heads;
  const int64_t width = int64_t{heads} * head_dim;
  const int32_t* table = tables + int64_t{p.table_row} * 2 * kv_heads * max_blocks;  // K side first
  for (int t = threadIdx.x; t < n * cm::kFeatures; t += blockDim.x) {
    const int h = t / cm::kFeatures, i = t / cm::kTokens % cm::kTokens, j = t % cm::kTokens;
    const T* q = (i < p.saved ? static_cast<const T*>(p.saved_q) + i * width
                              : static_cast<const T*>(p.new_q) + (i - p.saved) * width) +
                 int64_t{h} * head_dim;
    const int32_t block = table[int64_t{h / group} * max_blocks];
    if (block < 0) __trap();  // a dropped K head: the caller clusters before dropping any
    dots[t] = cm::Dot(q, pool + (int64_t{block} * block_size + j) * head_dim, head_dim);
  }
  __syncthreads();
  const double scale = cm::Scale(head_dim);
  for (int t = threadIdx.x; t < n * cm::kTokens; t += blockDim.x) {
    cm::SoftmaxRow(dots + t * cm::kTokens, scale, feat + t * cm::kTokens);
  }
  __syncthreads();
  if (features != nullptr) {
    for (int t = threadIdx.x; t < n * cm::kFeatures; t += blockDim.x) {
      features[int64_t{blockIdx.x} * n * cm::kFeatures + t] = feat[t];
    }
  }
  for (int h = threadIdx.x; h < n; h += blockDim.x) {
    norm[h] = cm::Norm(feat + h * cm::kFeatures, cm::kFeatures);
    live[h] = 1;
    size[h] = 1;
    root[h] = h;
  }
  __syncthreads();

  if (p.clusters < n) {
    for (int t = threadIdx.x; t < n * n; t += blockDim.x) {
      const int i = t / n, j = t % n;
      if (i < j) {
        const double v =
            cm::CosineDistance(feat + i * cm::kFeatures, feat + j * cm::kFeatures, cm::kFeatures, norm[i], norm[j]);
        dist[i * stride + j] = v;
        dist[j * stride + i] = v;
      } else if (i == j) {
        dist[i * stride + i] = 0.0;
      }
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      WarpChain state{dist, stride, n, live, size, chain, merges, static_cast<int>(threadIdx.x)};
      if (!cm::NnChain(state, n)) __trap();  // unreachable: distances are finite
    }
    __syncthreads();
    for (int m = threadIdx.x; m < n - 1; m += blockDim.x) by_rank[cm::MergeRank(merges, n - 1, m)] = m;
    __syncthreads();
    if (threadIdx.x == 0) cm::CutTree(merges, by_rank, n, n - p.clusters, root);
    __syncthreads();
  }
  const int32_t* order_row = order + int64_t{p.order_row} * n;
  for (int h = threadIdx.x; h < n; h += blockDim.x) {
    score_head[int64_t{p.map_row} * n + h] = cm::LowestOrderMember(root, order_row, n, h);
  }
}

template <typename T>
void Launch(absl::Span<const ops::ChaiClusterProblem> problems, const PagedKv& kv, const Tensor& order,
            Tensor* score_head, Tensor* features) {
  const int heads = static_cast<int>(score_head->dim(1));
  // Above 48 KiB of dynamic shared memory a kernel must opt in; once, for the largest size.
  static const bool configured = [] {
    CHAI_CUDA_CHECK(cudaFuncSetAttribute(ChaiClusterKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(SharedBytes(cm::kMaxHeads))));
    return true;
  }();
  (void)configured;
  for (size_t first = 0; first < problems.size(); first += kMaxProblems) {
    const int count = static_cast<int>(std::min<size_t>(kMaxProblems, problems.size() - first));
    Problems args{};
    for (int c = 0; c < count; ++c) {
      const ops::ChaiClusterProblem& p = problems[first + c];
      args.p[c] = ProblemArgs{p.saved_q.defined() ? p.saved_q.raw() : nullptr,
                              p.new_q.raw(),
                              p.saved_q.defined() ? static_cast<int>(p.saved_q.dim(0)) : 0,
                              p.table_row,
                              p.map_row,
                              p.order_row,
                              p.clusters};
    }
    float* feature_out =
        features != nullptr ? features->data<float>() + static_cast<int64_t>(first) * heads * cm::kFeatures : nullptr;
    ChaiClusterKernel<T><<<count, kThreads, SharedBytes(heads), CurrentStream()>>>(
        args, static_cast<const T*>(kv.pool.raw()), kv.tables.data<int32_t>(), order.data<int32_t>(),
        score_head->data<int32_t>(), feature_out, heads, kv.kv_heads, static_cast<int>(kv.pool.dim(2)), kv.block_size,
        kv.max_blocks);
    CHAI_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void ChaiCluster(absl::Span<const ops::ChaiClusterProblem> problems, const PagedKv& kv, const Tensor& order,
                 Tensor* score_head, Tensor* features) {
  DispatchFloat(kv.pool.dtype(), "ChaiCluster",
                [&](auto type) { Launch<decltype(type)>(problems, kv, order, score_head, features); });
}

}  // namespace chai::cuda
