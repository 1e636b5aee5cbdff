// Head placements on disk: {"world_size": W, "layer_perm": [[original head per slot] per layer]}.
// Made by the planner (parallel/head_placement) from calibration affinities; read by the CLI.
#ifndef CHAI_RUNTIME_PLACEMENT_IO_H_
#define CHAI_RUNTIME_PLACEMENT_IO_H_

#include <string>

#include "absl/status/statusor.h"
#include "parallel/head_placement.h"
#include "runtime/json.h"

namespace chai {

Json PlacementToJson(const HeadPlacement& placement);
absl::StatusOr<HeadPlacement> PlacementFromJson(const Json& json);
absl::StatusOr<HeadPlacement> LoadPlacement(const std::string& path);
absl::Status SavePlacement(const HeadPlacement& placement, const std::string& path);

}  // namespace chai

#endif  // CHAI_RUNTIME_PLACEMENT_IO_H_
