// Online head clustering for CHAI: host math on small float arrays, no engine dependency.
//
// Default pipeline (DESIGN.md "Exact semantics", equal to the authors' release, which calls
// scipy cdist(metric="cosine") and sklearn AgglomerativeClustering(metric="precomputed",
// linkage="average") and takes the first head of each cluster):
//   features [H][F] -> CosineDistances -> AverageLinkage(k) -> Representatives (lowest index).
// Options beyond the release: k-means clustering, medoid representatives.
#ifndef CHAI_RUNTIME_CHAI_CLUSTERING_H_
#define CHAI_RUNTIME_CHAI_CLUSTERING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chai {

enum class ClusterMethod { kAgglomerative, kKMeans };
enum class RepMethod { kLowest, kMedoid };

// "agglomerative" (also "average") | "kmeans"; "lowest" (also "first") | "medoid".
absl::StatusOr<ClusterMethod> ParseClusterMethod(absl::string_view name);
absl::StatusOr<RepMethod> ParseRepMethod(absl::string_view name);
const char* ClusterMethodName(ClusterMethod method);
const char* RepMethodName(RepMethod rep);

// Cosine distances between the rows of features [n][f]: n x n row-major, in double,
// d = 1 - u.v / (|u| |v|), clipped to [0, 2]. Bit-for-bit what scipy's
// cdist(metric="cosine") returns for these (fp32-valued) rows on x86-64: each dot product
// sums even and odd terms in two accumulators and adds the odd tail, norms are sqrt of the
// same dot, cos = dot / (|u| * |v|). Rows that are not finite or have zero norm (never the
// case for softmax rows) get distance 2 to everything else and 0 to themselves, so the
// clustering never sees NaN.
std::vector<double> CosineDistances(const float* features, int n, int f);
inline std::vector<double> CosineDistances(const std::vector<float>& features, int n, int f) {
  return CosineDistances(features.data(), n, f);
}

// Average-linkage agglomerative clustering of n items cut to k clusters (1 <= k <= n). Reads
// the strict upper triangle of the n x n matrix `dist` (as sklearn does for a precomputed
// matrix). Returns a label per item, 0..k-1, numbered by each cluster's lowest member.
//
// The partition equals scipy.cluster.hierarchy.linkage(method="average") cut to k clusters and
// sklearn AgglomerativeClustering(metric="precomputed", linkage="average", n_clusters=k),
// ties included, because it replays scipy's algorithm step for step:
//  - nearest-neighbour chain (scipy's nn_chain): a new chain starts at the lowest-index live
//    cluster; from the chain's tip x the next element is the live cluster y with the smallest
//    distance, where the element before x in the chain wins ties, and otherwise the lowest index
//    wins (strict <); x and y merge when they are each other's nearest neighbours;
//  - the merged cluster takes slot max(x, y), distances update by Lance-Williams,
//    d(i, xy) = (n_x d(i, x) + n_y d(i, y)) / (n_x + n_y), in double;
//  - merges are stably sorted by height (scipy's mergesort) and the first n - k are applied
//    (sklearn's cut undoes the last k - 1 merges).
// O(n^2) memory and time: about 50 us for n = 128. Non-finite entries are treated as larger
// than every finite one.
std::vector<int> AverageLinkage(const std::vector<double>& dist, int n, int k);

// For each item, the lowest index in its cluster (the authors' representative).
std::vector<int> Representatives(const std::vector<int>& labels);

// For each item, the member of its cluster with the smallest summed distance to the other
// members (sum in index order, in double); ties go to the lowest index.
std::vector<int> RepresentativesMedoid(const std::vector<int>& labels,
                                       const std::vector<double>& dist);

// Deterministic Euclidean k-means on L2-normalised rows (on unit vectors squared Euclidean
// distance is 2 * cosine distance, so it groups by the same geometry as the default).
// Initialisation: k-means++ driven by std::mt19937_64(seed) (the first centre is row floor(u * n),
// later ones are drawn with probability proportional to the squared distance to the nearest centre;
// u = (rng() >> 11) * 2^-53, so the draw is the same on every standard library). Then Lloyd
// iterations until assignments stop changing, at most 100; a point goes to its nearest centre, ties
// to the lowest centre index. An empty cluster takes the point farthest from its centre among
// clusters with more than one member (ties to the lowest index), so all k clusters are non-empty
// whenever k <= n. Labels are numbered by each cluster's lowest member.
std::vector<int> KMeansLabels(const float* features, int n, int f, int k, uint64_t seed);

// The whole pipeline for one layer: the representative head of each of the n heads (identity
// when k == n). k must be in [1, n] (a programmer error otherwise: schedules are validated).
std::vector<int> ClusterHeads(const float* features, int n, int f, int k, ClusterMethod method,
                              RepMethod rep, uint64_t seed);

// The distinct representatives in increasing order (the heads whose K is kept).
std::vector<int> UniqueRepresentatives(const std::vector<int>& representative);

}  // namespace chai

#endif  // CHAI_RUNTIME_CHAI_CLUSTERING_H_
