// TuningEnvironment: the CHAI_* settings `chai bench` records beside its results.
#include "runtime/cli/tuning_env.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>

#include "gtest/gtest.h"
#include "tests/support/test_paths.h"

namespace chai {
namespace {

// Clears every tuning variable for the test and restores the caller's after, so that the test
// sees only what it sets.
class TuningEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = TuningEnvironment();
    for (const auto& [name, value] : saved_) unsetenv(name.c_str());
  }
  void TearDown() override {
    for (const auto& [name, value] : TuningEnvironment()) unsetenv(name.c_str());
    for (const auto& [name, value] : saved_) setenv(name.c_str(), value.c_str(), 1);
  }
  std::vector<std::pair<std::string, std::string>> saved_;
};

TEST_F(TuningEnvTest, NoneSetIsEmpty) {
  EXPECT_TRUE(TuningEnvironment().empty());
  EXPECT_EQ(DescribeTuningEnvironment(TuningEnvironment()), "");
}

TEST_F(TuningEnvTest, ListsTheRuntimesSettingsSortedWithTheirValues) {
  setenv("CHAI_PDL", "1", 1);
  setenv("CHAI_L2_PREFETCH", "0,6,alt", 1);
  setenv("CHAI_DECODE_V4_PV_EARLY", "0", 1);
  setenv("CHAI_DECODE_FUSION", "", 1);
  setenv("NOT_CHAI_PDL", "1", 1);         // another prefix
  setenv("CHAI_PDLX", "1", 1);            // not a variable the runtime reads
  setenv("CHAI_DECODE_", "1", 1);         // a family prefix alone is no variable
  const auto vars = TuningEnvironment();
  unsetenv("NOT_CHAI_PDL");
  unsetenv("CHAI_PDLX");
  unsetenv("CHAI_DECODE_");
  ASSERT_EQ(vars.size(), 4u);
  EXPECT_EQ(vars[0], (std::pair<std::string, std::string>{"CHAI_DECODE_FUSION", ""}));
  EXPECT_EQ(vars[1], (std::pair<std::string, std::string>{"CHAI_DECODE_V4_PV_EARLY", "0"}));
  EXPECT_EQ(vars[2], (std::pair<std::string, std::string>{"CHAI_L2_PREFETCH", "0,6,alt"}));
  EXPECT_EQ(vars[3], (std::pair<std::string, std::string>{"CHAI_PDL", "1"}));
  EXPECT_EQ(DescribeTuningEnvironment(vars), "CHAI_DECODE_FUSION= CHAI_DECODE_V4_PV_EARLY=0 CHAI_L2_PREFETCH=0,6,alt CHAI_PDL=1");
}

TEST(TuningEnv, ScriptsAndLocationsAreNotSettings) {
  for (const char* name : {"CHAI_CMAKE_ARGS", "CHAI_BIN", "CHAI_ARGS", "CHAI_SHARED_DIR", "CHAI_LOG_RANKS",
                           "CHAI_SCHEDULE", "CHAI_BUILD_DIR"}) {
    EXPECT_FALSE(IsTuningVariable(name)) << name;
  }
}

// Every CHAI_* name the runtime's sources spell out (the variables it reads) is a setting, apart
// from the few that locate files or choose log output (names ending in '_' are prefixes: of a
// family in the list itself, or of a message): a new knob that is not recorded fails here.
TEST(TuningEnv, CoversEveryVariableTheSourcesRead) {
  namespace fs = std::filesystem;
  const std::set<std::string> not_settings = {"CHAI_SHARED_DIR", "CHAI_LOG_RANKS"};
  const std::regex literal("\"(CHAI_[A-Z0-9_]+)\"");
  std::set<std::string> seen;
  for (const char* dir : {"kernels", "parallel", "runtime"}) {
    for (const auto& entry : fs::recursive_directory_iterator(fs::path(testing::SourceDir()) / dir)) {
      const std::string ext = entry.path().extension().string();
      if (!entry.is_regular_file() || (ext != ".cc" && ext != ".h" && ext != ".cu" && ext != ".cuh")) continue;
      std::ifstream in(entry.path());
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      for (std::sregex_iterator m(text.begin(), text.end(), literal), end; m != end; ++m) seen.insert((*m)[1].str());
    }
  }
  EXPECT_GT(seen.size(), 10u) << "the scan found too few names: is SourceDir() right?";
  for (const std::string& name : seen) {
    if (not_settings.count(name) != 0 || name.back() == '_') continue;
    EXPECT_TRUE(IsTuningVariable(name)) << name << " is read by the runtime but not recorded by chai bench";
  }
}

}  // namespace
}  // namespace chai
