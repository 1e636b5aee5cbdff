// `chai calibrate` on the trained opt-tiny-docs checkpoint and ../shared/data/dev_eval.txt:
// the budgeted schedule keeps perplexity within budget on held-out windows the calibration
// never looked at, and the same run twice writes byte-identical files. Settings are small
// (64-token windows) to keep CI fast; benchmarks/results/opt-tiny-docs-accuracy.md has the
// full-size runs.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/head_placement.h"
#include "runtime/calibrate/calibration_io.h"
#include "runtime/calibrate/calibrator.h"
#include "runtime/chai/schedule.h"
#include "runtime/eval/text_data.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string ModelDir() { return SharedDir() + "/models/opt-tiny-docs"; }
std::string DataFile() { return SharedDir() + "/data/dev_eval.txt"; }

TEST(CalibrateOptTinyDocs, BudgetHoldsOnHeldOutText) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs calibration";
  auto model = LoadTestModel(ModelDir());
  ASSERT_TRUE(model.ok()) << model.status();
  auto tokenizer = LoadModelTokenizer(ModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto text = ReadTextFile(DataFile(), "--data");
  ASSERT_TRUE(text.ok()) << text.status();
  const std::vector<int32_t> ids = TokenizeText(**tokenizer, *text);

  CalibrateOptions options;
  options.window = 64;
  options.samples = 16;
  options.search_windows = 12;
  options.heldout_windows = 16;
  options.budget_percent = 20;
  options.batch = 4;
  options.first_layer = 7;  // one searched layer keeps the test short
  auto r = Calibrate(*model->engine, ids, options);
  ASSERT_TRUE(r.ok()) << r.status();

  // The held-out windows share no token with the samples or the search windows.
  std::set<int64_t> seen(r->sample_starts.begin(), r->sample_starts.end());
  seen.insert(r->search_starts.begin(), r->search_starts.end());
  for (int64_t h : r->heldout_starts) {
    for (int64_t s : seen) EXPECT_TRUE(h + options.window <= s || s + options.window <= h) << h << " vs " << s;
  }
  // They are the windows `chai eval --split heldout --max-windows 16 --window 64` scores.
  EXPECT_EQ(r->heldout_starts, SpreadEvenly(SplitPool(ids.size(), 64, WindowSplit::kHeldOut), 16));
  ASSERT_TRUE(r->search.has_value());
  EXPECT_LE(r->search->ratio_bound, 1.20);
  ASSERT_GE(r->heldout.size(), 2u);  // dense, the schedule (and the knees when they differ)
  const double dense = r->heldout[0].perplexity, chai = r->heldout[1].perplexity;
  EXPECT_LE(chai, dense * 1.20) << "held-out perplexity over budget";
  EXPECT_GT(chai, dense);  // the search did cluster something
  EXPECT_LT(r->schedule[7], 12);
  for (int l = 0; l < 7; ++l) EXPECT_EQ(r->schedule[l], 12) << "layer " << l << " is below --first-layer";
  // Every accepted trial is within the budget by the bound; the result is one of them.
  bool found = false;
  for (const SearchTrial& t : r->search->trials) {
    EXPECT_EQ(t.accepted, t.ratio_bound <= 1.20);
    found |= t.schedule == r->schedule && t.accepted;
  }
  EXPECT_TRUE(found);
  // Affinities have the planner's shape and pass its checks.
  ASSERT_EQ(r->affinity.size(), 8u);
  auto placement = PlanPlacement(r->affinity, 2);
  EXPECT_TRUE(placement.ok()) << placement.status();
}

TEST(CalibrateOptTinyDocs, SameOutputTwice) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs calibration";
  // Per process: concurrent test runs (several build trees) must not share the folder.
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("chai_calibrate_twice_", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<std::string> contents;
  for (const std::string run : {"a", "b"}) {
    const std::string out = (dir / (run + ".json")).string();
    const std::string cmd = absl::StrCat(ChaiBinary(), " calibrate --model ", ModelDir(), " --data ", DataFile(),
                                         " --samples 12 --window 32 --search-windows 4 --heldout-windows 2",
                                         " --ppl-budget 10 --first-layer 6 --batch 4 --quiet --out ", out, " > ",
                                         (dir / (run + ".txt")).string());
    const int status = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
    contents.push_back(Slurp(out) + Slurp((dir / (run + ".affinity.json")).string()) +
                       Slurp((dir / (run + ".elbow.csv")).string()));
  }
  EXPECT_FALSE(contents[0].empty());
  EXPECT_EQ(contents[0], contents[1]);
  EXPECT_EQ(Slurp((dir / "a.txt").string()).substr(0, 200), Slurp((dir / "b.txt").string()).substr(0, 200));

  // The schedule reads back with the runtime's loader; the affinity with its reader.
  auto schedule = LoadChaiSchedule((dir / "a.json").string(), 8, 12);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  EXPECT_TRUE(schedule->accuracy_calibrated);
  EXPECT_NE(schedule->note.find("chai calibrate on dev_eval.txt, budget 10%"), std::string::npos) << schedule->note;
  auto affinity = LoadHeadAffinity((dir / "a.affinity.json").string());
  ASSERT_TRUE(affinity.ok()) << affinity.status();
  ASSERT_EQ(affinity->size(), 8u);
  for (const auto& m : *affinity) {
    ASSERT_EQ(m.size(), 12u);
    for (int i = 0; i < 12; ++i) {
      EXPECT_DOUBLE_EQ(m[i][i], 1.0);
      for (int j = 0; j < 12; ++j) {
        EXPECT_GE(m[i][j], 0.0);
        EXPECT_LE(m[i][j], 1.0);
        EXPECT_DOUBLE_EQ(m[i][j], m[j][i]);
      }
    }
  }
  // The CSV has a row per layer and k.
  const std::string csv = Slurp((dir / "a.elbow.csv").string());
  EXPECT_EQ(csv.rfind("layer,k,error\n", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 8 * 12);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace chai::testing
