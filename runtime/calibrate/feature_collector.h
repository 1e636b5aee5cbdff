// Calibration features: every head's attention pattern over the first 5 tokens of each sample
// (runtime/chai/features.h, the same features CHAI clusters online), from a dense forward pass.
//
// Only the first 5 tokens of a sample are run: in a causal model the q and k of positions 0-4
// do not depend on later tokens, so this equals what a full prefill of the sample would see,
// at a hundredth of the cost.
#ifndef CHAI_RUNTIME_CALIBRATE_FEATURE_COLLECTOR_H_
#define CHAI_RUNTIME_CALIBRATE_FEATURE_COLLECTOR_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/engine.h"

namespace chai {

// features[layer][sample]: heads x kChaiFeatureSize floats, head-major.
using LayerSampleFeatures = std::vector<std::vector<std::vector<float>>>;

// An attention policy that records the features of each sequence's first prefill and changes
// nothing (the pass stays dense). Single rank: it sees the heads this rank holds.
class FeatureCollector : public AttentionPolicy {
 public:
  FeatureCollector(int layers, int heads, int kv_heads, int head_dim);

  // The next sequences run are samples `first_sample`, `first_sample + 1`, ... in the order of
  // `seqs`.
  void Track(absl::Span<Sequence* const> seqs, int first_sample);

  void BeforeAttention(Sequence* seq, int layer, const Tensor& q, const Tensor& k, int64_t past_len) override;
  bool Active(const Sequence& seq) const override { return seq.length() == 0; }

  LayerSampleFeatures TakeFeatures() { return std::move(features_); }

 private:
  int layers_, heads_, kv_heads_, head_dim_;
  std::map<const Sequence*, int> sample_of_;
  LayerSampleFeatures features_;
};

// Features of the samples starting at `starts` (each needs 5 tokens of `ids`), computed in
// batches of `batch` sequences. The engine is left without an attention policy. Errors:
// more than one rank, a sample too close to the end of `ids`, engine errors.
absl::StatusOr<LayerSampleFeatures> CollectFeatures(Engine& engine, absl::Span<const int32_t> ids,
                                                    absl::Span<const int64_t> starts, int batch = 16);

}  // namespace chai

#endif  // CHAI_RUNTIME_CALIBRATE_FEATURE_COLLECTOR_H_
