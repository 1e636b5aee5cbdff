#include "runtime/cli/tuning_env.h"

#include <algorithm>
#include <cstring>

extern char** environ;  // POSIX: the process environment

namespace chai {

namespace {

// Set by tests and launch scripts to find files or to pick which ranks log: not settings.
constexpr const char* kNotSettings[] = {"CHAI_SHARED_DIR", "CHAI_LOG_RANKS"};

}  // namespace

std::vector<std::pair<std::string, std::string>> TuningEnvironment() {
  std::vector<std::pair<std::string, std::string>> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* entry = *e;
    if (std::strncmp(entry, "CHAI_", 5) != 0) continue;
    const char* eq = std::strchr(entry, '=');
    if (eq == nullptr) continue;
    std::string name(entry, eq);
    if (std::find(std::begin(kNotSettings), std::end(kNotSettings), name) != std::end(kNotSettings)) continue;
    vars.emplace_back(std::move(name), std::string(eq + 1));
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
