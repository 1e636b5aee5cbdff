#include "runtime/chai/schedule.h"

#include <cmath>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/json.h"

namespace chai {
namespace {

// Keys that may hold the per-layer list, in the order we report them.
constexpr const char* kListKeys[] = {"layer_clusters", "layer_params", "chai_layers"};
// Members of an object entry that may hold its count.
constexpr const char* kEntryCountKeys[] = {"clusters", "k", "count"};

std::string Describe(const Json& v) {
  if (v.is_number()) return Json(v.as_double()).Dump();
  if (v.is_string()) return absl::StrCat("the string \"", v.as_string(), "\"");
  if (v.is_bool()) return v.as_bool() ? "true" : "false";
  if (v.is_null()) return "null";
  return v.is_array() ? "a list" : "an object";
}

// One schedule entry: an integer, [count, ...] or {"clusters": count, ...}.
absl::StatusOr<int64_t> EntryCount(const Json& entry, const std::string& where) {
  const Json* value = &entry;
  if (entry.is_array()) {
    if (entry.as_array().empty()) return absl::InvalidArgumentError(where + " is an empty list");
    value = &entry.as_array().front();
  } else if (entry.is_object()) {
    value = nullptr;
    for (const char* key : kEntryCountKeys) {
      if ((value = entry.Find(key)) != nullptr) break;
    }
    if (value == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " is an object without \"clusters\", \"k\" or \"count\""));
    }
  }
  if (!value->is_number() || !std::isfinite(value->as_double()) ||
      std::floor(value->as_double()) != value->as_double()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " is ", Describe(*value), ", not an integer cluster count"));
  }
  // Huge values stay out of range (and out of int overflow) for ValidateSchedule to report.
  return static_cast<int64_t>(std::fmax(-1e9, std::fmin(1e9, value->as_double())));
}

}  // namespace

absl::Status ValidateSchedule(const std::vector<int>& layer_clusters, int num_layers, int num_heads,
                              absl::string_view source) {
  if (static_cast<int>(layer_clusters.size()) != num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("CHAI schedule ", source, ": ", layer_clusters.size(),
                     layer_clusters.size() == 1 ? " layer count" : " layer counts",
                     ", but the model has ", num_layers, " layers"));
  }
  for (int l = 0; l < num_layers; ++l) {
    int k = layer_clusters[l];
    if (k < 1 || k > num_heads) {
      return absl::InvalidArgumentError(
          absl::StrCat("CHAI schedule ", source, ": layer ", l, " has ", k,
                       " clusters; it must be between 1 and the ", num_heads, " heads"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ChaiSchedule> LoadChaiSchedule(const std::string& path, int num_layers,
                                              int num_heads) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("CHAI schedule ", path, ": ", what));
  };
  auto json = ReadJsonFile(path);
  if (!json.ok()) {
    // ReadJsonFile's message already names the path.
    return absl::Status(json.status().code(),
                        absl::StrCat("CHAI schedule: ", json.status().message()));
  }

  ChaiSchedule schedule;
  const Json* list = nullptr;
  int64_t prune_layer = 0;
  if (json->is_array()) {
    list = &*json;
  } else if (json->is_object()) {
    const char* found = nullptr;
    for (const char* key : kListKeys) {
      const Json* v = json->Find(key);
      if (v == nullptr) continue;
      if (list != nullptr) {
        return error(absl::StrCat("has both \"", found, "\" and \"", key, "\"; keep one"));
      }
      list = v;
      found = key;
    }
    if (list == nullptr) return error("no \"layer_clusters\" (or \"layer_params\") list");
    if (!list->is_array()) return error(absl::StrCat("\"", found, "\" is not a list"));
    if (const Json* c = json->Find("calibrated"); c != nullptr) {
      if (!c->is_bool()) return error("\"calibrated\" must be true or false");
      schedule.accuracy_calibrated = c->as_bool();
    }
    if (const Json* n = json->Find("note"); n != nullptr) {
      if (!n->is_string()) return error("\"note\" must be a string");
      schedule.note = n->as_string();
    }
    if (const Json* p = json->Find("prune_layer"); p != nullptr) {
      auto v = p->AsInt();
      if (!v.ok() || *v < 0 || *v > num_layers) {
        return error(absl::StrCat("\"prune_layer\" must be an integer in [0, ", num_layers, "]"));
      }
      prune_layer = *v;
    }
  } else {
    return error("expected an object with \"layer_clusters\", or a list");
  }

  const Json::Array& entries = list->as_array();
  schedule.layer_clusters.reserve(entries.size());
  for (size_t l = 0; l < entries.size(); ++l) {
    auto k = EntryCount(entries[l], absl::StrCat("entry ", l));
    if (!k.ok()) return error(k.status().message());
    schedule.layer_clusters.push_back(static_cast<int>(*k));
  }
  if (auto s = ValidateSchedule(schedule.layer_clusters, num_layers, num_heads, path); !s.ok()) {
    return s;
  }
  for (int l = 0; l < prune_layer; ++l) schedule.layer_clusters[l] = num_heads;
  return schedule;
}

ChaiSchedule DenseSchedule(int num_layers, int num_heads) {
  ChaiSchedule schedule;
  schedule.layer_clusters.assign(num_layers, num_heads);
  schedule.note = "dense (CHAI off)";
  return schedule;
}

absl::StatusOr<std::vector<int>> ParseScheduleList(absl::string_view text) {
  std::vector<int> counts;
  auto bad = [&](absl::string_view item, absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("CHAI schedule list \"", text, "\": item \"", item, "\" ", why));
  };
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError("CHAI schedule list is empty");
  }
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    absl::string_view item = absl::StripAsciiWhitespace(raw);
    std::vector<absl::string_view> parts = absl::StrSplit(item, 'x');
    int count = 0;
    int repeat = 1;
    if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &count) ||
        (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &repeat))) {
      return bad(item, "is not an integer or KxN");
    }
    if (repeat < 1 || repeat > 100000) return bad(item, "has a bad repeat count");
    counts.insert(counts.end(), repeat, count);
  }
  return counts;
}

absl::StatusOr<ChaiSchedule> ScheduleFromList(absl::string_view text, int num_layers,
                                              int num_heads) {
  auto counts = ParseScheduleList(text);
  if (!counts.ok()) return counts.status();
  std::string source = absl::StrCat("\"", text, "\"");
  if (auto s = ValidateSchedule(*counts, num_layers, num_heads, source); !s.ok()) return s;
  ChaiSchedule schedule;
  schedule.layer_clusters = *std::move(counts);
  schedule.note = absl::StrCat("command line ", source);
  return schedule;
}

}  // namespace chai
