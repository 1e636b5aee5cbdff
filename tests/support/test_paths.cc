#include "tests/support/test_paths.h"

#include <cstdlib>
#include <filesystem>

namespace chai::testing {

std::string SourceDir() { return CHAI_SOURCE_DIR; }

std::string FixtureDir(const std::string& name) { return SourceDir() + "/tests/fixtures/" + name; }

std::string SharedDir() {
  if (const char* env = std::getenv("CHAI_SHARED_DIR")) return env;
  return SourceDir() + "/../shared";
}

bool SharedAvailable() { return std::filesystem::exists(SharedDir() + "/DESIGN.md"); }

std::string ChaiBinary() { return std::string(CHAI_BINARY_DIR) + "/chai"; }

}  // namespace chai::testing
