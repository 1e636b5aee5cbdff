// `chai calibrate` through the real binary: bad input ends in one line "chai: error: ..."
// naming the problem.
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

namespace fs = std::filesystem;

void ExpectError(const std::string& args, const std::string& needle) {
  const std::string err_file = fs::temp_directory_path() / "chai_calibrate_cli_stderr.txt";
  const int status = std::system(absl::StrCat(ChaiBinary(), " ", args, " >/dev/null 2>", err_file).c_str());
  std::ifstream in(err_file);
  const std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  EXPECT_NE(code, 0) << args;
  EXPECT_LT(code, 128) << "crashed: " << args;
  EXPECT_EQ(err.rfind("chai: error:", 0), 0u) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << err;
}

std::string TempFile(const std::string& name, const std::string& text) {
  const std::string path = fs::temp_directory_path() / ("chai_calibrate_cli_" + name);
  std::ofstream(path) << text;
  return path;
}

const std::string kFixture = FixtureDir("opt-preln");  // 64 positions, no tokenizer
const std::string kOut = (fs::temp_directory_path() / "chai_calibrate_cli_out.json").string();

TEST(CalibrateCli, MissingDataFile) {
  ExpectError("calibrate --model " + kFixture + " --data /nonexistent/cal.txt --out " + kOut,
              "--data: no such file: /nonexistent/cal.txt");
}

TEST(CalibrateCli, EmptyDataFile) {
  ExpectError("calibrate --model " + kFixture + " --data " + TempFile("empty.txt", "\n") + " --out " + kOut,
              "is empty");
}

TEST(CalibrateCli, NeedsOut) {
  ExpectError("calibrate --model " + kFixture + " --data " + TempFile("t.txt", "text\n"), "give --out");
}

TEST(CalibrateCli, WindowLargerThanModelPositions) {
  ExpectError("calibrate --model " + kFixture + " --data " + TempFile("t.txt", "text\n") + " --out " + kOut,
              "--window 512 exceeds the model's maximum of 64 positions");
}

TEST(CalibrateCli, RejectsChai) {
  ExpectError("calibrate --model " + kFixture + " --chai 4,4 --data " + TempFile("t.txt", "text\n") + " --out " + kOut,
              "drop --chai");
}

TEST(CalibrateCli, NegativeBudget) {
  ExpectError(
      "calibrate --model " + kFixture + " --ppl-budget -1 --data " + TempFile("t.txt", "text\n") + " --out " + kOut,
      "--ppl-budget must be >= 0");
}

// Options out of range fail before the tokenizer and the weights load (--batch 0 had reached the
// KV cache's sizing, which refused an empty cache); kFixture has no tokenizer, so these
// errors show the order too.
TEST(CalibrateCli, OptionsCheckedBeforeLoading) {
  const std::string args = "calibrate --model " + kFixture + " --window 32 --data " + TempFile("t.txt", "text\n") +
                           " --out " + kOut;
  ExpectError(args + " --batch 0", "--batch must be >= 1");
  ExpectError(args + " --samples 0", "--samples must be >= 1");
  ExpectError(args + " --heldout-windows -1", "--heldout-windows must be >= 0");
}

TEST(CalibrateCli, ModelWithoutTokenizer) {
  ExpectError("calibrate --model " + kFixture + " --window 32 --data " + TempFile("t.txt", "text\n") + " --out " + kOut,
              "no tokenizer");
}

TEST(CalibrateCli, TextTooShortForTheSplit) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  ExpectError("calibrate --model " + SharedDir() + "/models/opt-tiny-docs --data " +
                  TempFile("short.txt", "Only a few words of calibration text.\n") + " --window 16 --out " + kOut,
              "too few for");
}

TEST(CalibrateCli, FirstLayerOutOfRange) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  ExpectError("calibrate --model " + SharedDir() + "/models/opt-tiny-docs --data " + SharedDir() +
                  "/data/dev_eval.txt --window 16 --samples 2 --search-windows 1 --heldout-windows 1"
                  " --first-layer 8 --out " +
                  kOut,
              "--first-layer must be in [0, 7]");
}

TEST(CalibrateCli, OutputFolderMissing) {
  // Checked before the model loads, not after the calibration ran.
  ExpectError(
      "calibrate --model " + kFixture + " --data " + TempFile("t.txt", "text\n") + " --out /nonexistent/dir/s.json",
      "--out: no such directory: /nonexistent/dir");
  ExpectError("calibrate --model " + kFixture + " --data " + TempFile("t.txt", "text\n") + " --out " + kOut +
                  " --plot /nonexistent/dir/p.png",
              "--plot: no such directory: /nonexistent/dir");
}

}  // namespace
}  // namespace chai::testing
