// Head affinity for the placement planner (parallel/head_placement.h): per layer, the fraction
// of calibration samples in which two heads land in the same cluster when the layer is
// clustered into its scheduled k_l clusters the way CHAI clusters online (cosine distances of
// the 5x5 attention features, average linkage, or k-means when chosen).
// affinity[l][i][j] in [0, 1], symmetric, 1 on the diagonal; a dense layer (k_l == H) never
// shares, so its matrix is the identity.
#ifndef CHAI_RUNTIME_CALIBRATE_AFFINITY_H_
#define CHAI_RUNTIME_CALIBRATE_AFFINITY_H_

#include <vector>

#include "parallel/head_placement.h"  // HeadAffinity
#include "runtime/calibrate/feature_collector.h"
#include "runtime/chai/clustering.h"

namespace chai {

HeadAffinity ComputeHeadAffinity(const LayerSampleFeatures& features, const std::vector<int>& layer_clusters, int heads,
                                 ClusterMethod method = ClusterMethod::kAgglomerative, uint64_t seed = 0);

}  // namespace chai

#endif  // CHAI_RUNTIME_CALIBRATE_AFFINITY_H_
