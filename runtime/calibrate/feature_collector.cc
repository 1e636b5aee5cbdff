#include "runtime/calibrate/feature_collector.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "runtime/chai/features.h"

namespace chai {

FeatureCollector::FeatureCollector(int layers, int heads, int kv_heads, int head_dim)
    : layers_(layers), heads_(heads), kv_heads_(kv_heads), head_dim_(head_dim), features_(layers) {}

void FeatureCollector::Track(absl::Span<Sequence* const> seqs, int first_sample) {
  sample_of_.clear();
  for (size_t i = 0; i < seqs.size(); ++i) sample_of_[seqs[i]] = first_sample + static_cast<int>(i);
}

void FeatureCollector::BeforeAttention(Sequence* seq, int layer, const Tensor& q, const Tensor& k, int64_t past_len) {
  auto it = sample_of_.find(seq);
  if (it == sample_of_.end() || past_len != 0 || q.dim(0) < kChaiFeatureTokens) return;
  const std::vector<float> q5 = q.Rows(0, kChaiFeatureTokens).ToFloats();
  const std::vector<float> k5 = k.Rows(0, kChaiFeatureTokens).ToFloats();
  auto& per_sample = features_[layer];
  if (static_cast<int>(per_sample.size()) <= it->second) per_sample.resize(it->second + 1);
  per_sample[it->second] =
      AttentionFeatures(q5.data(), k5.data(), heads_, kv_heads_, head_dim_, heads_ * head_dim_, kv_heads_ * head_dim_);
}

absl::StatusOr<LayerSampleFeatures> CollectFeatures(Engine& engine, absl::Span<const int32_t> ids,
                                                    absl::Span<const int64_t> starts, int batch) {
  if (engine.comm()->size() > 1) {
    return absl::UnimplementedError("calibration runs on one rank; start it without mpirun");
  }
  for (int64_t s : starts) {
    if (s < 0 || s + kChaiFeatureTokens > static_cast<int64_t>(ids.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration sample at token ", s, " has fewer than ", kChaiFeatureTokens, " tokens"));
    }
  }
  const ModelConfig& c = engine.config();
  FeatureCollector collector(c.num_layers, c.num_heads, engine.weights().local_kv_heads, c.head_dim);
  engine.set_attention_policy(&collector);
  absl::Status status;
  const int total = static_cast<int>(starts.size());
  for (int first = 0; first < total && status.ok(); first += batch) {
    const int last = std::min(total, first + batch);
    std::vector<std::unique_ptr<Sequence>> owned;
    std::vector<Sequence*> seqs;
    std::vector<StepInput> steps;
    for (int i = first; i < last; ++i) {
      auto seq = engine.NewSequence();
      if (!seq.ok()) {
        status = seq.status();
        break;
      }
      owned.push_back(std::move(*seq));
      seqs.push_back(owned.back().get());
      steps.push_back(
          {seqs.back(), std::vector<int32_t>(ids.begin() + starts[i], ids.begin() + starts[i] + kChaiFeatureTokens)});
    }
    if (!status.ok()) break;
    collector.Track(seqs, first);
    status = engine.Forward(absl::MakeSpan(steps), /*all_positions=*/false).status();
  }
  engine.set_attention_policy(nullptr);
  if (!status.ok()) return status;
  return collector.TakeFeatures();
}

}  // namespace chai
