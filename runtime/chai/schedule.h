// CHAI cluster schedules: how many head clusters k_l each layer keeps.
//
// A schedule is chosen offline, once per model (the authors take the elbow of the k-means
// error curve per layer), and read at start-up. A layer with k_l == num_heads is dense.
//
// Accepted files (JSON):
//   {"layer_clusters": [k_0, ..., k_{L-1}], "calibrated": true, "note": "..."}   (ours)
//   {"layer_params": [k_0, ..., k_{L-1}]}   (the authors' release: facebookresearch/chai
//                                            params7b.json / params33b.json, a flat list)
//   {"chai_layers": [...]}                  (the field name in the authors' llama.patch)
//   [k_0, ..., k_{L-1}]                     (a bare list)
// Each entry is an integer, or a list whose first element is the integer count (the rest
// is ignored), or an object with an integer member "clusters", "k" or "count".
// Optional members: "calibrated" (bool, default true: the counts were measured for this
// model), "note" (string), "prune_layer" (int P, as in the authors' patch: layers below P
// are dense whatever their listed count). Other members are ignored, so the counts may
// live inside a larger params.json. Exactly one of the list keys may be present.
#ifndef CHAI_RUNTIME_CHAI_SCHEDULE_H_
#define CHAI_RUNTIME_CHAI_SCHEDULE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chai {

struct ChaiSchedule {
  std::vector<int> layer_clusters;  // k_l for every layer, 1 <= k_l <= num_heads
  bool accuracy_calibrated = true;  // false: counts not measured for this model (demo/test)
  std::string note;                 // provenance, shown by --stats and in bench JSON

  int num_layers() const { return static_cast<int>(layer_clusters.size()); }
};

// Reads and validates a schedule file for a model with num_layers layers of num_heads heads.
// Errors are one line and name the file: missing or unreadable file, invalid JSON, no or
// ambiguous list key, wrong length, a non-integer entry, k < 1 or k > num_heads.
absl::StatusOr<ChaiSchedule> LoadChaiSchedule(const std::string& path, int num_layers,
                                              int num_heads);

// Every layer keeps all heads (CHAI off, or a model without a calibrated schedule).
ChaiSchedule DenseSchedule(int num_layers, int num_heads);

// Command-line form: comma-separated counts, "12,12,4"; "32x18" repeats 32 eighteen times,
// so the LLaMA-7B schedule is "32x18,4x14". Spaces are allowed around items. Only syntax is
// checked here.
absl::StatusOr<std::vector<int>> ParseScheduleList(absl::string_view text);

// ParseScheduleList plus ValidateSchedule; the note records the source text.
absl::StatusOr<ChaiSchedule> ScheduleFromList(absl::string_view text, int num_layers,
                                              int num_heads);

// Length and range checks shared by every loader; `source` names the file or flag in errors.
absl::Status ValidateSchedule(const std::vector<int>& layer_clusters, int num_layers, int num_heads,
                              absl::string_view source);

// A layer that keeps every head runs ordinary attention (no clustering, full K cache).
inline bool IsDenseLayer(int clusters, int num_heads) { return clusters >= num_heads; }

}  // namespace chai

#endif  // CHAI_RUNTIME_CHAI_SCHEDULE_H_
