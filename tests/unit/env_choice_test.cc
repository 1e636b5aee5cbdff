// EnvChoice (kernels/env_choice.h): a tuning variable's value as an index into its choices; unset,
// empty or unknown values give the first (the default), unknown ones with a one-line warning.
#include "kernels/env_choice.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace chai {
namespace {

constexpr const char* kName = "CHAI_TEST_ENV_CHOICE";

class EnvChoiceTest : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv(kName); }
};

TEST_F(EnvChoiceTest, NamedValuesAndTheDefault) {
  unsetenv(kName);
  EXPECT_EQ(EnvChoice(kName, {"shape", "width"}), 0);
  setenv(kName, "", 1);
  EXPECT_EQ(EnvChoice(kName, {"shape", "width"}), 0);
  setenv(kName, "width", 1);
  EXPECT_EQ(EnvChoice(kName, {"shape", "width"}), 1);
  setenv(kName, "shape", 1);
  EXPECT_EQ(EnvChoice(kName, {"shape", "width"}), 0);
  setenv(kName, "0", 1);
  EXPECT_EQ(EnvChoice(kName, {"1", "0"}), 1);
}

TEST_F(EnvChoiceTest, UnknownValueWarnsAndGivesTheDefault) {
  setenv(kName, "Width", 1);  // the names are case-sensitive
  testing::internal::CaptureStderr();
  EXPECT_EQ(EnvChoice(kName, {"shape", "width"}), 0);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "chai: warning: CHAI_TEST_ENV_CHOICE=Width is not shape or width; using shape\n");
}

}  // namespace
}  // namespace chai
