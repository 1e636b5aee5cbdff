// Inputs for the ChaiCluster op (kernels/ops.h) and runtime/chai's answer for them, shared by
// the op's CPU and GPU tests.
#ifndef CHAI_TESTS_SUPPORT_CHAI_CLUSTER_CASES_H_
#define CHAI_TESTS_SUPPORT_CHAI_CLUSTER_CASES_H_

#include <random>
#include <vector>

#include "kernels/ops.h"
#include "kernels/tensor.h"

namespace chai::testing {

// One problem: a sequence's first 5 queries and keys (host fp32) and the clustering asked for.
struct ClusterCase {
  int heads = 0, kv_heads = 0, head_dim = 0, clusters = 0;
  int saved = 0;           // queries of positions < saved come from a separate (early) buffer
  std::vector<float> q;    // [5][heads * head_dim]
  std::vector<float> k;    // [5][kv_heads * head_dim]
  std::vector<int> order;  // original index of each local head (a permutation)
};

// Random queries and keys in a random head order. With prototypes > 0 the queries are noisy
// copies of that many random heads (clusters exist); otherwise all heads are independent.
ClusterCase RandomCase(std::mt19937& rng, int heads, int kv_heads, int head_dim, int clusters, int saved,
                       int prototypes = 0);
// Head `to` takes head `from`'s queries, and its KV head takes from's keys (under GQA that
// changes `to`'s whole group), so the two heads' features are equal: exact ties.
void CopyHead(ClusterCase* c, int from, int to);
// Rounds q and k to `dtype` (the values a run in that dtype holds), as fp32.
void RoundTo(ClusterCase* c, DType dtype);

// runtime/chai's answer: AttentionFeatures [heads][25]; ClusterHeads (agglomerative, lowest)
// mapped, as ChaiPolicy maps it, to the member with the lowest original index.
std::vector<float> ReferenceFeatures(const ClusterCase& c);
std::vector<int> RepresentativesFromFeatures(const float* features, const ClusterCase& c);
std::vector<int> ReferenceRepresentatives(const ClusterCase& c);

// The op's arguments for cases that share heads, kv_heads and head_dim, on `device` in `dtype`:
// a paged cache (blocks of 8) with each case's keys at positions 0..4 of its row's first K blocks
// and NaN in every other pool position, the queries as views into a larger activation (NaN rows
// around them), order rows, and maps poisoned with -7. Rows are shuffled and some stay unused.
struct ClusterBatch {
  PagedKv kv;
  Tensor order;  // int32 [rows, heads]
  Tensor maps;   // int32 [rows, heads]
  std::vector<ops::ChaiClusterProblem> problems;
  std::vector<int> rows;  // each case's table and map row
};
ClusterBatch MakeClusterBatch(const std::vector<ClusterCase>& cases, DType dtype, Device device, std::mt19937& rng);

// One row of an int32 [rows, cols] tensor, read back to the host.
std::vector<int> IntRow(const Tensor& t, int row);

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_CHAI_CLUSTER_CASES_H_
