// Helpers shared by the clustering files (clustering.cc, kmeans.cc); not part of the interface.
#ifndef CHAI_RUNTIME_CHAI_CLUSTERING_COMMON_H_
#define CHAI_RUNTIME_CHAI_CLUSTERING_COMMON_H_

#include <vector>

namespace chai::clustering_internal {

// Aborts with what went wrong: the callers' arguments are checked by the engine, so a bad one
// here is a programmer error.
[[noreturn]] void Fail(const char* what, int n, int k);

// scipy's cosine dot product (see CosineDistances): even and odd terms in two accumulators.
double PairDot(const float* u, const float* v, int f);

// Renumbers labels 0..c-1 in order of first appearance (each cluster's lowest member).
std::vector<int> Canonical(const std::vector<int>& labels);

}  // namespace chai::clustering_internal

#endif  // CHAI_RUNTIME_CHAI_CLUSTERING_COMMON_H_
