// Attaching CHAI to a test engine with a fixed schedule, as the CLI does.
#ifndef CHAI_TESTS_SUPPORT_CHAI_HELPERS_H_
#define CHAI_TESTS_SUPPORT_CHAI_HELPERS_H_

#include <memory>
#include <vector>

#include "runtime/chai/chai_policy.h"
#include "tests/support/engine_helpers.h"

namespace chai::testing {

// A policy for `model` where rank r forms local_clusters[l] clusters in layer l, installed on
// the engine. With one rank, local_clusters is the schedule itself.
std::unique_ptr<ChaiPolicy> AttachChai(TestModel& model, const std::vector<int>& local_clusters);

// Representative (original index) of each local head per layer, for a single-rank model.
std::vector<std::vector<int>> LocalRepresentatives(const Sequence& seq, const ModelWeights& weights);

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_CHAI_HELPERS_H_
