#include "runtime/cli/bench_common.h"

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/cli/build_info.h"
#include "runtime/cli/tuning_env.h"

namespace chai {

absl::StatusOr<std::vector<int>> ParseIntList(const std::string& flag, const std::string& text) {
  std::vector<int> values;
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {  // also an empty entry, as in 1,,8
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " expects positive integers like 1,8,32, got '", text, "'"));
    }
    values.push_back(v);
  }
  if (values.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return values;
}

namespace {

// The tuning variables as a JSON object (name -> value).
Json EnvironmentJson(const EnvVars& vars) {
  Json out = Json::MakeObject();
  for (const auto& [name, value] : vars) out.Set(name, Json(value));
  return out;
}

}  // namespace

Json BenchJsonHeader(const std::string& mode, const std::string& model, const std::string& device,
                     const std::string& dtype, int tp, const std::string& chai, const EnvVars& tuning) {
  Json j = Json::MakeObject();
  j.Set("mode", Json(mode));
  j.Set("model", Json(model));
  j.Set("device", Json(device));
  j.Set("dtype", Json(dtype));
  j.Set("tp", Json(tp));
  j.Set("chai", Json(chai));
  j.Set("environment", EnvironmentJson(tuning));
  j.Set("chai_revision", Json(BuildRevision()));  // the commit a results table names
  j.Set("chai_build", Json(BuildDescription()));   // and the backends and kernel knobs built
  return j;
}

void PrintTuningEnvironment(const EnvVars& vars) {
  if (!vars.empty()) std::printf("tuning environment: %s\n", DescribeTuningEnvironment(vars).c_str());
}

}  // namespace chai
