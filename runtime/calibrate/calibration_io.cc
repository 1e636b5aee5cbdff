#include "runtime/calibrate/calibration_io.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace chai {
namespace {

Json Trials(const std::vector<SearchTrial>& trials) {
  Json a = Json::MakeArray();
  for (const SearchTrial& t : trials) {
    Json j = Json::MakeObject();
    j.Set("schedule", JsonArray(t.schedule));
    j.Set("perplexity", Json(t.perplexity));
    j.Set("ratio_bound", Json(t.ratio_bound));
    j.Set("accepted", Json(t.accepted));
    a.Push(std::move(j));
  }
  return a;
}

std::string Pretty(const Json& json) {
  if (!json.is_object()) return json.Dump();
  std::string out = "{\n";
  const auto& members = json.as_object();
  for (size_t i = 0; i < members.size(); ++i) {
    const auto& [key, value] = members[i];
    absl::StrAppend(&out, "  ", Json(key).Dump(), ": ");
    if (key == "affinity" && value.is_array()) {
      out += "[\n";
      for (size_t l = 0; l < value.as_array().size(); ++l) {
        absl::StrAppend(&out, "    ", value.as_array()[l].Dump(), l + 1 < value.as_array().size() ? ",\n" : "\n");
      }
      out += "  ]";
    } else {
      out += value.Dump();
    }
    out += i + 1 < members.size() ? ",\n" : "\n";
  }
  return out + "}\n";
}

}  // namespace

Json ScheduleJson(const CalibrationResult& result, const CalibrationSource& source) {
  const CalibrateOptions& o = source.options;
  const std::string data = std::filesystem::path(source.data).filename().string();
  Json out = Json::MakeObject();
  out.Set("layer_clusters", JsonArray(result.schedule));
  out.Set("calibrated", Json(true));
  out.Set("note", Json(o.budget_percent >= 0
                           ? absl::StrFormat("chai calibrate on %s, budget %g%%", data, o.budget_percent)
                           : absl::StrFormat("chai calibrate on %s, knee of the elbow curves (no budget)", data)));
  out.Set("knee_clusters", JsonArray(result.knee));
  Json cal = Json::MakeObject();
  cal.Set("data", Json(source.data));
  cal.Set("tokens", Json(result.total_tokens));
  cal.Set("window", Json(o.window));
  cal.Set("samples", Json(o.samples));
  cal.Set("cluster", Json(source.cluster_method));
  cal.Set("split", Json("windows 0, 2, 4, ... calibrate (samples, search); windows 1, 3, 5, ... are held out"));
  cal.Set("first_layer", Json(o.first_layer));
  cal.Set("redundancy_order", JsonArray(result.order));
  if (result.search) {
    Json s = Json::MakeObject();
    s.Set("budget_percent", Json(o.budget_percent));
    s.Set("windows", Json(o.search_windows));
    s.Set("tokens", Json(result.search_tokens));
    s.Set("dense_perplexity", Json(result.search->dense_perplexity));
    s.Set("perplexity", Json(result.search->perplexity));
    s.Set("ratio_bound", Json(result.search->ratio_bound));
    s.Set("bound", Json("exp(mean + q * sd * sqrt(1/S + 1/M)) of per-window nll differences (schedule_search.h)"));
    s.Set("q", Json(o.bound_q >= 0 ? o.bound_q : StudentT95(o.search_windows - 1)));
    s.Set("trials", Trials(result.search->trials));
    cal.Set("search", std::move(s));
  }
  if (!result.heldout.empty()) {
    Json h = Json::MakeObject();
    h.Set("windows", Json(o.heldout_windows));
    h.Set("tokens", Json(result.heldout_tokens));
    const double dense = result.heldout[0].perplexity;
    h.Set("dense_perplexity", Json(dense));
    h.Set("perplexity", Json(result.heldout[1].perplexity));
    h.Set("increase_percent", Json(100.0 * (result.heldout[1].perplexity / dense - 1.0)));
    if (o.budget_percent >= 0) {
      h.Set("within_budget", Json(result.heldout[1].perplexity <= dense * (1.0 + o.budget_percent / 100.0)));
    }
    if (result.heldout.size() > 2) h.Set("knee_perplexity", Json(result.heldout[2].perplexity));
    cal.Set("heldout", std::move(h));
  }
  out.Set("calibration", std::move(cal));
  return out;
}

Json AffinityJson(const CalibrationResult& result) {
  Json out = Json::MakeObject();
  out.Set("layers", Json(static_cast<int64_t>(result.affinity.size())));
  out.Set("heads", Json(static_cast<int64_t>(result.affinity.empty() ? 0 : result.affinity[0].size())));
  out.Set("samples", Json(result.samples));
  out.Set("layer_clusters", JsonArray(result.schedule));
  out.Set("affinity", JsonArray(result.affinity));
  return out;
}

std::string ElbowCsv(const CalibrationResult& result) {
  std::string out = "layer,k,error\n";
  for (size_t l = 0; l < result.elbow.size(); ++l)
    for (size_t k = 0; k < result.elbow[l].size(); ++k)
      absl::StrAppend(&out, l, ",", k + 1, ",", absl::StrFormat("%.9g", result.elbow[l][k]), "\n");
  return out;
}

absl::Status WriteTextFile(const std::string& text, const std::string& path, const std::string& flag) {
  std::ofstream file(path, std::ios::binary);
  if (!file) return absl::PermissionDeniedError(absl::StrCat(flag, ": cannot write ", path));
  file << text;
  if (!file) return absl::DataLossError(absl::StrCat(flag, ": failed writing ", path));
  return absl::OkStatus();
}

absl::Status WriteJsonFile(const Json& json, const std::string& path, const std::string& flag) {
  return WriteTextFile(Pretty(json), path, flag);
}

absl::StatusOr<HeadAffinity> LoadHeadAffinity(const std::string& path) {
  auto json = ReadJsonFile(path);
  if (!json.ok()) return json.status();
  const Json* layers = json->Find("affinity");
  auto bad = [&](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(path, ": ", what)); };
  if (layers == nullptr || !layers->is_array()) return bad("no \"affinity\" list");
  HeadAffinity affinity;
  for (const Json& m : layers->as_array()) {
    if (!m.is_array()) return bad("\"affinity\" must be [layers][heads][heads] numbers");
    affinity.emplace_back();
    for (const Json& row : m.as_array()) {
      if (!row.is_array() || row.as_array().size() != m.as_array().size()) {
        return bad("\"affinity\" must be [layers][heads][heads] numbers");
      }
      affinity.back().emplace_back();
      for (const Json& x : row.as_array()) {
        if (!x.is_number()) return bad("\"affinity\" must be [layers][heads][heads] numbers");
        affinity.back().back().push_back(x.as_double());
      }
    }
  }
  return affinity;
}

}  // namespace chai
