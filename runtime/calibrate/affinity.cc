#include "runtime/calibrate/affinity.h"

#include "runtime/chai/features.h"

namespace chai {

HeadAffinity ComputeHeadAffinity(const LayerSampleFeatures& features, const std::vector<int>& layer_clusters, int heads,
                                 ClusterMethod method, uint64_t seed) {
  HeadAffinity affinity;
  for (size_t l = 0; l < features.size(); ++l) {
    std::vector<std::vector<double>> m(heads, std::vector<double>(heads, 0.0));
    const int k = layer_clusters[l];
    const auto& samples = features[l];
    for (const std::vector<float>& sample : samples) {
      std::vector<int> labels(heads);
      if (k >= heads) {
        for (int h = 0; h < heads; ++h) labels[h] = h;
      } else if (method == ClusterMethod::kKMeans) {
        labels = KMeansLabels(sample.data(), heads, kChaiFeatureSize, k, seed);
      } else {
        labels = AverageLinkage(CosineDistances(sample.data(), heads, kChaiFeatureSize), heads, k);
      }
      for (int i = 0; i < heads; ++i)
        for (int j = 0; j < heads; ++j) m[i][j] += labels[i] == labels[j];
    }
    for (auto& row : m)
      for (double& x : row) x /= samples.empty() ? 1.0 : static_cast<double>(samples.size());
    if (samples.empty())
      for (int h = 0; h < heads; ++h) m[h][h] = 1.0;
    affinity.push_back(std::move(m));
  }
  return affinity;
}

}  // namespace chai
