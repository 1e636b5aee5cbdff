#include "runtime/placement_io.h"

#include <fstream>

#include "absl/strings/str_cat.h"

namespace chai {

Json PlacementToJson(const HeadPlacement& placement) {
  Json out = Json::MakeObject();
  out.Set("world_size", Json(placement.world_size));
  out.Set("layer_perm", JsonArray(placement.layer_perm));
  return out;
}

absl::StatusOr<HeadPlacement> PlacementFromJson(const Json& json) {
  HeadPlacement p;
  auto world = GetInt(json, "world_size");
  if (!world.ok()) return world.status();
  p.world_size = static_cast<int>(*world);
  const Json* layers = json.Find("layer_perm");
  if (layers == nullptr || !layers->is_array()) return absl::InvalidArgumentError("missing \"layer_perm\" list");
  for (const Json& row : layers->as_array()) {
    if (!row.is_array()) return absl::InvalidArgumentError("\"layer_perm\" rows must be lists of head indices");
    p.layer_perm.emplace_back();
    for (const Json& v : row.as_array()) {
      auto h = v.AsInt();
      if (!h.ok()) return absl::InvalidArgumentError("\"layer_perm\" holds a non-integer head index");
      p.layer_perm.back().push_back(static_cast<int>(*h));
    }
  }
  return p;
}

absl::StatusOr<HeadPlacement> LoadPlacement(const std::string& path) {
  auto json = ReadJsonFile(path);
  if (!json.ok()) return json.status();
  auto p = PlacementFromJson(*json);
  if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", p.status().message()));
  return p;
}

absl::Status SavePlacement(const HeadPlacement& placement, const std::string& path) {
  return WriteJsonFile(path, PlacementToJson(placement));
}

}  // namespace chai
