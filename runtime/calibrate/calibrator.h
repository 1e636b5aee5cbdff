// `chai calibrate`'s work, on one rank: elbow curves of every layer from attention features of
// calibration samples, a knee per layer, optionally a perplexity-budgeted schedule search, and a
// verification on held-out text the search never saw; head affinities for the placement planner.
//
// Data split (runtime/eval/text_data.h, shared with `chai eval --split`): the text's tokens are
// cut into non-overlapping windows of `window` tokens, numbered 0, 1, 2, ...; even windows form
// the calibration pool, odd windows the held-out pool.
//   feature samples: N windows spread evenly over the calibration pool (their first 5 tokens);
//   search windows:  S windows spread evenly over the calibration pool;
//   held-out:        M windows spread evenly over the held-out pool.
// So the held-out text is disjoint from everything calibration looked at, yet drawn from the
// same mix of documents (a file's later part can be a different kind of text, and a budget
// verified on it would test distribution shift rather than the search).
#ifndef CHAI_RUNTIME_CALIBRATE_CALIBRATOR_H_
#define CHAI_RUNTIME_CALIBRATE_CALIBRATOR_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "parallel/head_placement.h"
#include "runtime/calibrate/elbow.h"
#include "runtime/calibrate/schedule_search.h"
#include "runtime/chai/clustering.h"
#include "runtime/engine.h"

namespace chai {

struct CalibrateOptions {
  int window = 512;
  int samples = 64;            // N: feature samples
  int search_windows = 16;     // S: perplexity windows of the search
  int heldout_windows = 16;    // M: verification windows (0: no verification)
  double budget_percent = -1;  // < 0: no search; the schedule is the knees
  double bound_q = -1;         // the search's bound factor (schedule_search.h); < 0: Student t, 95%
  int batch = 1;               // windows per forward pass
  int first_layer = 0;         // layers below stay dense (the authors' prune_layer)
  ClusterMethod method = ClusterMethod::kAgglomerative;  // how CHAI clusters (search and affinity)
  RepMethod rep = RepMethod::kLowest;
  uint64_t seed = 0;
  ElbowOptions elbow;
  std::function<void(const std::string&)> log;  // progress lines (may be empty)
};

// Perplexity of a schedule over some windows.
struct ScheduleScore {
  std::vector<int> schedule;
  double perplexity = 0;
};

struct CalibrationResult {
  int samples = 0;
  std::vector<std::vector<double>> elbow;  // [layer][k - 1]: summed k-means error
  std::vector<int> knee;                   // knee k per layer (of every layer's curve)
  std::vector<double> resistance;          // per layer (elbow.h); low = redundant
  std::vector<int> order;                  // layers, most redundant first
  std::vector<int> schedule;               // the result: the search's, or the knees
  std::optional<ScheduleSearchResult> search;
  int64_t search_tokens = 0;            // tokens scored per search evaluation
  std::vector<int64_t> sample_starts;   // first token of each feature sample
  std::vector<int64_t> search_starts;   // first token of each search window
  std::vector<int64_t> heldout_starts;  // first token of each held-out window
  HeadAffinity affinity;                // at `schedule`
  // Held-out verification (empty when heldout_windows == 0): dense first, then `schedule`,
  // then the knees (layers below first_layer dense) when they differ from `schedule`.
  std::vector<ScheduleScore> heldout;
  int64_t heldout_tokens = 0;
  int64_t total_tokens = 0;
};

// The options' ranges for a model of max_positions positions (Calibrate checks them again):
// `chai calibrate` asks before the weights load, so a bad flag fails at once.
absl::Status CheckCalibrateOptions(const CalibrateOptions& options, int max_positions);

// Errors: text too short for the split, options out of range, engine errors.
absl::StatusOr<CalibrationResult> Calibrate(Engine& engine, absl::Span<const int32_t> ids,
                                            const CalibrateOptions& options);

}  // namespace chai

#endif  // CHAI_RUNTIME_CALIBRATE_CALIBRATOR_H_
