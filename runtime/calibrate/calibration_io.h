// Files `chai calibrate` writes:
//  - the schedule, in the form runtime/chai/schedule.h reads: {"layer_clusters", "calibrated",
//    "note"}, plus "knee_clusters" and "calibration" (data split, search trials, held-out
//    perplexities), which the loader ignores;
//  - head affinities: {"layers", "heads", "samples", "layer_clusters", "affinity": [L][H][H]},
//    the shape PlanPlacement (parallel/head_placement.h) takes;
//  - the elbow curves as CSV: layer,k,error (summed k-means error over the samples).
// No timestamps or timings: the same inputs give byte-identical files.
#ifndef CHAI_RUNTIME_CALIBRATE_CALIBRATION_IO_H_
#define CHAI_RUNTIME_CALIBRATE_CALIBRATION_IO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/calibrate/calibrator.h"
#include "runtime/json.h"

namespace chai {

// What the schedule's provenance records besides the result.
struct CalibrationSource {
  std::string data;  // --data path as given
  std::string cluster_method;
  CalibrateOptions options;
};

Json ScheduleJson(const CalibrationResult& result, const CalibrationSource& source);
Json AffinityJson(const CalibrationResult& result);
std::string ElbowCsv(const CalibrationResult& result);

// One member per line at the top level (and one layer per line for "affinity"), so that
// committed files diff well. `flag` names the output in errors.
absl::Status WriteJsonFile(const Json& json, const std::string& path, const std::string& flag);
absl::Status WriteTextFile(const std::string& text, const std::string& path, const std::string& flag);

// Reads an affinity file back (for the planner and tests). Errors name the path.
absl::StatusOr<HeadAffinity> LoadHeadAffinity(const std::string& path);

}  // namespace chai

#endif  // CHAI_RUNTIME_CALIBRATE_CALIBRATION_IO_H_
