// Attaching CHAI to a test engine with a fixed schedule, as the CLI does.
#ifndef CHAI_TESTS_SUPPORT_CHAI_HELPERS_H_
#define CHAI_TESTS_SUPPORT_CHAI_HELPERS_H_

#include <memory>
#include <string>
#include <vector>

#include "runtime/chai/chai_policy.h"
#include "tests/support/engine_helpers.h"

namespace chai::testing {

// A policy for `model` where rank r forms local_clusters[l] clusters in layer l, installed on
// the engine. With one rank, local_clusters is the schedule itself.
std::unique_ptr<ChaiPolicy> AttachChai(TestModel& model, const std::vector<int>& local_clusters,
                                       ClusterPath path = ClusterPath::kAuto);

// Representative (original index) of each local head per layer, for a single-rank model.
std::vector<std::vector<int>> LocalRepresentatives(const Sequence& seq, const ModelWeights& weights);

// What a CHAI generation produced, per sequence, and the free KV blocks while they were alive.
struct ChaiRun {
  std::vector<std::vector<int32_t>> output_ids;
  std::vector<std::vector<std::vector<float>>> prompt_logits;  // [prompt position][vocab]
  std::vector<std::vector<std::vector<int>>> representatives;  // LocalRepresentatives
  std::vector<int64_t> k_bytes_per_token;
  int64_t free_blocks = 0;
};

// Greedy generation of `prompts` in one batch (prefill together, then decode) with a CHAI policy
// for `schedule` computing membership on `path`; the engine keeps no policy afterwards.
absl::StatusOr<ChaiRun> RunChai(TestModel& model, const std::vector<int>& schedule,
                                const std::vector<std::vector<int32_t>>& prompts, int new_tokens, ClusterPath path);

// Every case of the golden.json in `model_dir` (opt-tiny-docs' format: prompt_ids, chai_schedule,
// chai_representatives, chai_last_logits_top20_fp32) through `model` with CHAI membership on
// `path`, one prompt at a time and one new token: expects the golden representatives and the
// last prompt position's top-20 fp32 logits within 1e-3.
void ExpectChaiGoldens(TestModel& model, const std::string& model_dir, ClusterPath path);

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_CHAI_HELPERS_H_
