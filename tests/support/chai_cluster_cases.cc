#include "tests/support/chai_cluster_cases.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "runtime/chai/clustering.h"
#include "runtime/chai/features.h"

namespace chai::testing {
namespace {

constexpr int kTokens = kChaiFeatureTokens;
constexpr int kBlockSize = 8;
constexpr int kMaxBlocks = 3;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Host fp32 values as `dtype` on `device`.
Tensor Place(const Tensor& host, DType dtype, Device device) {
  Tensor t = host.Cast(dtype);
  return device == Device::kCpu ? t.Clone() : t.To(device);
}

Tensor PlaceInts(const std::vector<int32_t>& values, std::vector<int64_t> shape, Device device) {
  Tensor t = Tensor::FromInts(values, std::move(shape));
  return device == Device::kCpu ? t : t.To(device);
}

}  // namespace

ClusterCase RandomCase(std::mt19937& rng, int heads, int kv_heads, int head_dim, int clusters, int saved,
                       int prototypes) {
  ClusterCase c;
  c.heads = heads;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.clusters = clusters;
  c.saved = saved;
  std::normal_distribution<float> normal(0.f, 1.f);
  const int64_t qw = int64_t{heads} * head_dim, kw = int64_t{kv_heads} * head_dim;
  c.q.resize(kTokens * qw);
  c.k.resize(kTokens * kw);
  for (float& x : c.k) x = normal(rng);
  if (prototypes <= 0) {
    for (float& x : c.q) x = normal(rng);
  } else {
    std::vector<float> proto(kTokens * int64_t{prototypes} * head_dim);
    for (float& x : proto) x = normal(rng);
    std::uniform_int_distribution<int> pick(0, prototypes - 1);
    for (int h = 0; h < heads; ++h) {
      const int p = pick(rng);
      for (int i = 0; i < kTokens; ++i)
        for (int x = 0; x < head_dim; ++x)
          c.q[i * qw + int64_t{h} * head_dim + x] =
              proto[(int64_t{i} * prototypes + p) * head_dim + x] + 0.2f * normal(rng);
    }
  }
  c.order.resize(heads);
  std::iota(c.order.begin(), c.order.end(), 0);
  std::shuffle(c.order.begin(), c.order.end(), rng);
  return c;
}

void CopyHead(ClusterCase* c, int from, int to) {
  const int64_t d = c->head_dim, qw = int64_t{c->heads} * d, kw = int64_t{c->kv_heads} * d;
  const int group = c->heads / c->kv_heads;
  for (int i = 0; i < kTokens; ++i) {
    std::copy_n(c->q.begin() + i * qw + from * d, d, c->q.begin() + i * qw + to * d);
    std::copy_n(c->k.begin() + i * kw + (from / group) * d, d, c->k.begin() + i * kw + (to / group) * d);
  }
}

void RoundTo(ClusterCase* c, DType dtype) {
  for (std::vector<float>* v : {&c->q, &c->k}) {
    Tensor t = Tensor::FromFloats(*v, {static_cast<int64_t>(v->size())}).Cast(dtype).Cast(DType::kF32);
    v->assign(t.data<float>(), t.data<float>() + t.numel());
  }
}

std::vector<float> ReferenceFeatures(const ClusterCase& c) {
  return AttentionFeatures(c.q.data(), c.k.data(), c.heads, c.kv_heads, c.head_dim, c.heads * c.head_dim,
                           c.kv_heads * c.head_dim);
}

std::vector<int> RepresentativesFromFeatures(const float* features, const ClusterCase& c) {
  std::vector<int> rep = ClusterHeads(features, c.heads, kChaiFeatureSize, c.clusters, ClusterMethod::kAgglomerative,
                                      RepMethod::kLowest, 0);
  // ChaiPolicy's mapping: the member with the lowest original index.
  std::vector<int> lowest(c.heads, -1);  // by the cluster's lowest local head
  for (int h = 0; h < c.heads; ++h) {
    int& l = lowest[rep[h]];
    if (l < 0 || c.order[h] < c.order[l]) l = h;
  }
  for (int h = 0; h < c.heads; ++h) rep[h] = lowest[rep[h]];
  return rep;
}

std::vector<int> ReferenceRepresentatives(const ClusterCase& c) {
  const std::vector<float> f = ReferenceFeatures(c);
  return RepresentativesFromFeatures(f.data(), c);
}

ClusterBatch MakeClusterBatch(const std::vector<ClusterCase>& cases, DType dtype, Device device, std::mt19937& rng) {
  const ClusterCase& first = cases.front();
  const int heads = first.heads, kv_heads = first.kv_heads, d = first.head_dim;
  const int64_t qw = int64_t{heads} * d, kw = int64_t{kv_heads} * d;
  const int n = static_cast<int>(cases.size()), rows = n + 3;
  ClusterBatch b;
  b.rows.resize(rows);
  std::iota(b.rows.begin(), b.rows.end(), 0);
  std::shuffle(b.rows.begin(), b.rows.end(), rng);
  b.rows.resize(n);

  // Each case's K blocks (one per KV head) at shuffled pool positions, V absent.
  const int blocks = n * kv_heads + 5;
  std::vector<int32_t> ids(blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  Tensor pool = Tensor::Empty({blocks, kBlockSize, d}, DType::kF32);
  std::fill_n(pool.data<float>(), pool.numel(), kNaN);
  std::vector<int32_t> tables(int64_t{rows} * 2 * kv_heads * kMaxBlocks, -1);
  std::vector<int32_t> order(int64_t{rows} * heads);
  std::iota(order.begin(), order.end(), 0);  // unused rows: anything
  for (int c = 0; c < n; ++c) {
    const int row = b.rows[c];
    for (int g = 0; g < kv_heads; ++g) {
      const int32_t block = ids[c * kv_heads + g];
      tables[(int64_t{row} * 2 * kv_heads + g) * kMaxBlocks] = block;
      for (int j = 0; j < kTokens; ++j) {
        std::copy_n(cases[c].k.begin() + j * kw + int64_t{g} * d, d,
                    pool.data<float>() + (int64_t{block} * kBlockSize + j) * d);
      }
    }
    std::copy(cases[c].order.begin(), cases[c].order.end(), order.begin() + int64_t{row} * heads);
  }
  b.kv.pool = Place(pool, dtype, device);
  b.kv.tables = PlaceInts(tables, {rows, 2, kv_heads, kMaxBlocks}, device);
  b.kv.block_size = kBlockSize;
  b.kv.kv_heads = kv_heads;
  b.kv.max_blocks = kMaxBlocks;
  b.order = PlaceInts(order, {rows, heads}, device);
  b.maps = PlaceInts(std::vector<int32_t>(int64_t{rows} * heads, -7), {rows, heads}, device);

  // Queries: one activation holding every case's new rows between NaN rows, and per case an
  // early buffer whose first `saved` rows hold the rest.
  std::vector<int64_t> offset(n);
  int64_t total = 1;
  for (int c = 0; c < n; ++c) {
    offset[c] = total;
    total += kTokens - cases[c].saved + 1;
  }
  Tensor activation = Tensor::Empty({total, qw}, DType::kF32);
  std::fill_n(activation.data<float>(), activation.numel(), kNaN);
  for (int c = 0; c < n; ++c) {
    const int s = cases[c].saved;
    std::copy(cases[c].q.begin() + s * qw, cases[c].q.end(), activation.data<float>() + offset[c] * qw);
  }
  const Tensor placed = Place(activation, dtype, device);
  for (int c = 0; c < n; ++c) {
    ops::ChaiClusterProblem p;
    const int s = cases[c].saved;
    if (s > 0) {
      Tensor early = Tensor::Empty({kTokens, qw}, DType::kF32);
      std::fill_n(early.data<float>(), early.numel(), kNaN);
      std::copy(cases[c].q.begin(), cases[c].q.begin() + s * qw, early.data<float>());
      p.saved_q = Place(early, dtype, device).Rows(0, s);
    }
    p.new_q = placed.Rows(offset[c], offset[c] + kTokens - s + 1);
    p.table_row = p.map_row = p.order_row = b.rows[c];
    p.clusters = cases[c].clusters;
    b.problems.push_back(std::move(p));
  }
  return b;
}

std::vector<int> IntRow(const Tensor& t, int row) {
  Tensor host = t.device() == Device::kCpu ? t : t.To(Device::kCpu);
  const int32_t* p = host.data<int32_t>() + int64_t{row} * host.dim(1);
  return std::vector<int>(p, p + host.dim(1));
}

}  // namespace chai::testing
