// ChaiCluster on the CPU: the steps of kernels/chai_cluster_math.h run one after another, the
// reference for the CUDA kernel, which runs the same steps in parallel.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/chai_cluster_math.h"
#include "kernels/cpu/cpu_ops.h"

namespace chai::cpu {
namespace {

namespace cm = cluster_math;

// The nearest-neighbour chain's working state (cm::NnChain's `m`), serial.
class HostChain {
 public:
  HostChain(std::vector<double> dist, int n)
      : d_(std::move(dist)), n_(n), live_(n, 1), size_(n, 1), chain_(n + 1), merges_(n > 0 ? n - 1 : 0) {}

  int LowestLive() const {
    for (int i = 0; i < n_; ++i)
      if (live_[i]) return i;
    return -1;
  }
  double Dist(int a, int b) const { return d_[static_cast<size_t>(a) * n_ + b]; }
  int Nearest(int x, int prev, double* best) const {
    int best_i = prev;
    for (int i = 0; i < n_; ++i) {  // increasing index: the lowest index wins ties
      const double v = Dist(x, i);
      if (live_[i] && i != x && v < *best) {
        *best = v;
        best_i = i;
      }
    }
    return best_i;
  }
  int Chain(int i) const { return chain_[i]; }
  void SetChain(int i, int value) { chain_[i] = value; }
  void Join(int step, int x, int y, double height) {
    merges_[step] = {height, x, y};
    const int nx = size_[x], ny = size_[y];
    size_[x] = 0;
    size_[y] = nx + ny;
    live_[x] = 0;
    for (int i = 0; i < n_; ++i) {
      if (!live_[i] || i == y) continue;
      const double v = cm::AverageOf(nx, Dist(i, x), ny, Dist(i, y));
      d_[static_cast<size_t>(i) * n_ + y] = d_[static_cast<size_t>(y) * n_ + i] = v;
    }
  }
  const std::vector<cm::Merge>& merges() const { return merges_; }

 private:
  std::vector<double> d_;
  int n_;
  std::vector<char> live_;
  std::vector<int> size_, chain_;
  std::vector<cm::Merge> merges_;
};

// Features [heads][25] of one problem, queries and keys gathered as fp32 rows.
std::vector<float> Features(const ops::ChaiClusterProblem& p, const PagedKv& kv, int heads) {
  const int d = static_cast<int>(kv.pool.dim(2)), group = heads / kv.kv_heads;
  const int64_t width = int64_t{heads} * d;
  const int saved = p.saved_q.defined() ? static_cast<int>(p.saved_q.dim(0)) : 0;
  const int32_t* table = kv.tables.data<int32_t>() + int64_t{p.table_row} * 2 * kv.kv_heads * kv.max_blocks;
  const double scale = cm::Scale(d);
  std::vector<float> features(static_cast<size_t>(heads) * cm::kFeatures);
  for (int h = 0; h < heads; ++h) {
    const int32_t block = table[int64_t{h / group} * kv.max_blocks];  // K side, first block
    if (block < 0) {
      std::fprintf(stderr, "chai: internal error in op ChaiCluster: K head %d has no first block\n", h / group);
      std::abort();
    }
    const float* k = kv.pool.data<float>() + int64_t{block} * kv.block_size * d;
    for (int i = 0; i < cm::kTokens; ++i) {
      const float* q = (i < saved ? p.saved_q.data<float>() + i * width : p.new_q.data<float>() + (i - saved) * width) +
                       int64_t{h} * d;
      double dots[cm::kTokens];
      for (int j = 0; j < cm::kTokens; ++j) dots[j] = cm::Dot(q, k + int64_t{j} * d, d);
      cm::SoftmaxRow(dots, scale, features.data() + (static_cast<size_t>(h) * cm::kTokens + i) * cm::kTokens);
    }
  }
  return features;
}

// Representatives (local head indices) of one problem from its features.
std::vector<int> Representatives(const std::vector<float>& features, int n, int k, const int32_t* order) {
  std::vector<int> root(n);
  for (int i = 0; i < n; ++i) root[i] = i;
  if (k < n) {
    std::vector<double> norm(n), dist(static_cast<size_t>(n) * n, 0.0);
    for (int i = 0; i < n; ++i) norm[i] = cm::Norm(features.data() + i * cm::kFeatures, cm::kFeatures);
    for (int i = 0; i < n; ++i) {
      for (int j = i + 1; j < n; ++j) {
        dist[static_cast<size_t>(i) * n + j] = dist[static_cast<size_t>(j) * n + i] = cm::CosineDistance(
            features.data() + i * cm::kFeatures, features.data() + j * cm::kFeatures, cm::kFeatures, norm[i], norm[j]);
      }
    }
    root = AverageLinkageRoots(std::move(dist), n, k);
  }
  std::vector<int> rep(n);
  for (int h = 0; h < n; ++h) rep[h] = cm::LowestOrderMember(root.data(), order, n, h);
  return rep;
}

}  // namespace

std::vector<int> AverageLinkageRoots(std::vector<double> dist, int n, int k) {
  std::vector<int> root(n);
  HostChain chain(std::move(dist), n);
  if (!cm::NnChain(chain, n)) {
    std::fprintf(stderr, "chai: internal error in op ChaiCluster: nearest-neighbour chain failed\n");
    std::abort();
  }
  std::vector<int> by_rank(n > 0 ? n - 1 : 0);
  for (int m = 0; m < n - 1; ++m) by_rank[cm::MergeRank(chain.merges().data(), n - 1, m)] = m;
  cm::CutTree(chain.merges().data(), by_rank.data(), n, n - k, root.data());
  return root;
}

void ChaiCluster(absl::Span<const ops::ChaiClusterProblem> problems, const PagedKv& kv, const Tensor& order,
                 Tensor* score_head, Tensor* features) {
  const int heads = static_cast<int>(score_head->dim(1));
  for (size_t p = 0; p < problems.size(); ++p) {
    const ops::ChaiClusterProblem& problem = problems[p];
    const std::vector<float> f = Features(problem, kv, heads);
    if (features != nullptr) {
      std::copy(f.begin(), f.end(), features->data<float>() + p * f.size());
    }
    const std::vector<int> rep =
        Representatives(f, heads, problem.clusters, order.data<int32_t>() + int64_t{problem.order_row} * heads);
    int32_t* row = score_head->data<int32_t>() + int64_t{problem.map_row} * heads;
    for (int h = 0; h < heads; ++h) row[h] = rep[h];
  }
}

}  // namespace chai::cpu
