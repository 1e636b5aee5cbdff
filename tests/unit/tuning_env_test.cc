// TuningEnvironment: the CHAI_* settings `chai bench` records beside its results.
#include "runtime/cli/tuning_env.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace chai {
namespace {

// Clears every CHAI_* variable for the test and restores them after, so that the test sees
// only what it sets whatever the caller's environment holds.
class TuningEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = TuningEnvironment();
    for (const auto& [name, value] : saved_) unsetenv(name.c_str());
    for (const char* name : {"CHAI_SHARED_DIR", "CHAI_LOG_RANKS"}) {
      if (const char* v = std::getenv(name)) hidden_.emplace_back(name, v);
      unsetenv(name);
    }
  }
  void TearDown() override {
    for (const auto& [name, value] : TuningEnvironment()) unsetenv(name.c_str());
    for (const char* name : {"CHAI_SHARED_DIR", "CHAI_LOG_RANKS"}) unsetenv(name);
    for (const auto& [name, value] : saved_) setenv(name.c_str(), value.c_str(), 1);
    for (const auto& [name, value] : hidden_) setenv(name.c_str(), value.c_str(), 1);
  }
  std::vector<std::pair<std::string, std::string>> saved_, hidden_;
};

TEST_F(TuningEnvTest, NoneSetIsEmpty) {
  EXPECT_TRUE(TuningEnvironment().empty());
  EXPECT_EQ(DescribeTuningEnvironment(TuningEnvironment()), "");
}

TEST_F(TuningEnvTest, ListsChaiSettingsSortedWithTheirValues) {
  setenv("CHAI_PDL", "1", 1);
  setenv("CHAI_L2_PREFETCH", "0,6,alt", 1);
  setenv("CHAI_DECODE_V4_PV_EARLY", "0", 1);
  setenv("CHAI_EMPTY_VALUE", "", 1);
  setenv("NOT_CHAI_PDL", "1", 1);        // another prefix
  setenv("CHAI_SHARED_DIR", "/x", 1);    // locates files: not a setting
  setenv("CHAI_LOG_RANKS", "all", 1);    // chooses log output: not a setting
  const auto vars = TuningEnvironment();
  unsetenv("NOT_CHAI_PDL");
  ASSERT_EQ(vars.size(), 4u);
  EXPECT_EQ(vars[0], (std::pair<std::string, std::string>{"CHAI_DECODE_V4_PV_EARLY", "0"}));
  EXPECT_EQ(vars[1], (std::pair<std::string, std::string>{"CHAI_EMPTY_VALUE", ""}));
  EXPECT_EQ(vars[2], (std::pair<std::string, std::string>{"CHAI_L2_PREFETCH", "0,6,alt"}));
  EXPECT_EQ(vars[3], (std::pair<std::string, std::string>{"CHAI_PDL", "1"}));
  EXPECT_EQ(DescribeTuningEnvironment(vars), "CHAI_DECODE_V4_PV_EARLY=0 CHAI_EMPTY_VALUE= CHAI_L2_PREFETCH=0,6,alt CHAI_PDL=1");
}

}  // namespace
}  // namespace chai
