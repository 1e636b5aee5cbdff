#include "tests/support/chai_helpers.h"

namespace chai::testing {

std::unique_ptr<ChaiPolicy> AttachChai(TestModel& model, const std::vector<int>& local_clusters) {
  ChaiOptions options;
  options.local_clusters = local_clusters;
  std::vector<std::vector<int>> heads;
  for (const LayerWeights& layer : model.engine->weights().layers) heads.push_back(layer.heads);
  auto policy = std::make_unique<ChaiPolicy>(options, heads, model.engine->weights().local_kv_heads,
                                             model.config.head_dim);
  model.engine->set_attention_policy(policy.get());
  return policy;
}

std::vector<std::vector<int>> LocalRepresentatives(const Sequence& seq, const ModelWeights& weights) {
  std::vector<std::vector<int>> reps;
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    reps.emplace_back();
    for (int s : seq.score_head[l]) reps.back().push_back(weights.layers[l].heads[s]);
  }
  return reps;
}

}  // namespace chai::testing
