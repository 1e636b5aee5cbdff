#include "runtime/cli/tuning_env.h"

#include <algorithm>
#include <cstring>

extern char** environ;  // POSIX: the process environment

namespace chai {

namespace {

// The settings the runtime reads: whole families by prefix, single variables by name.
constexpr const char* kTuningPrefixes[] = {"CHAI_DECODE_", "CHAI_PREFILL_", "CHAI_GEMV_", "CHAI_IPC_ALLREDUCE_"};
constexpr const char* kTuningNames[] = {"CHAI_ALLREDUCE_IN_GEMV", "CHAI_IPC_ALLREDUCE", "CHAI_L2_PREFETCH",
                                        "CHAI_NO_GRAPHS",         "CHAI_NUM_THREADS",   "CHAI_PDL"};

}  // namespace

bool IsTuningVariable(const std::string& name) {
  for (const char* prefix : kTuningPrefixes) {
    if (name.size() > std::strlen(prefix) && name.rfind(prefix, 0) == 0) return true;
  }
  return std::find(std::begin(kTuningNames), std::end(kTuningNames), name) != std::end(kTuningNames);
}

std::vector<std::pair<std::string, std::string>> TuningEnvironment() {
  std::vector<std::pair<std::string, std::string>> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* entry = *e;
    const char* eq = std::strchr(entry, '=');
    if (eq == nullptr) continue;
    std::string name(entry, eq);
    if (IsTuningVariable(name)) vars.emplace_back(std::move(name), std::string(eq + 1));
  }
  std::sort(vars.begin(), vars.end());
  return vars;
}

std::string DescribeTuningEnvironment(const std::vector<std::pair<std::string, std::string>>& vars) {
  std::string out;
  for (const auto& [name, value] : vars) {
    if (!out.empty()) out += ' ';
    out += name + '=' + value;
  }
  return out;
}

}  // namespace chai
