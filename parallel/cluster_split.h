// How many CHAI clusters each rank forms in a layer.
//
// Online clustering runs per rank over its local heads, so a layer's cluster count k is split
// across ranks. Heads per rank are equal under tensor parallelism, so the split is as even as
// possible; K-cache memory then shrinks evenly on every rank.
#ifndef CHAI_PARALLEL_CLUSTER_SPLIT_H_
#define CHAI_PARALLEL_CLUSTER_SPLIT_H_

#include <vector>

#include "absl/status/statusor.h"

namespace chai {

// Splits k clusters across ranks holding local_heads[r] heads each: in proportion to the
// head count, largest remainder first, ties to the lower rank; then every rank gets at least
// one cluster (taken from the rank with the most clusters, ties to the higher rank) and never
// more clusters than heads. The result sums to k exactly. Errors: k below the number of
// ranks (a rank cannot have zero clusters), k above the total head count, a rank with no heads.
absl::StatusOr<std::vector<int>> SplitClusterCount(int k, const std::vector<int>& local_heads);
// Equal heads per rank: heads / world_size each (heads must divide evenly).
absl::StatusOr<std::vector<int>> SplitClusterCount(int k, int heads, int world_size);

// Per layer: result[l][r] = clusters rank r forms in layer l. A dense layer (k == heads) is
// dense on every rank. Errors name the layer.
absl::StatusOr<std::vector<std::vector<int>>> SplitSchedule(const std::vector<int>& layer_clusters,
                                                            int heads, int world_size);

}  // namespace chai

#endif  // CHAI_PARALLEL_CLUSTER_SPLIT_H_
