// CHAI schedule files: both accepted forms, every bad input's one-line error, shipped configs.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/chai/schedule.h"
#include "tests/support/test_paths.h"

namespace chai {
namespace {

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/chai_schedule_test_" + name;
  std::ofstream(path) << text;
  return path;
}

std::string Config(const std::string& name) {
  return testing::SourceDir() + "/configs/chai/" + name;
}

std::vector<int> Repeat(std::initializer_list<std::pair<int, int>> runs) {
  std::vector<int> v;
  for (auto [k, n] : runs) v.insert(v.end(), n, k);
  return v;
}

// Error checks: not ok, one line, names the file, and says what is wrong.
void ExpectError(const absl::StatusOr<ChaiSchedule>& s, const std::string& path,
                 const std::string& what) {
  ASSERT_FALSE(s.ok()) << "expected an error mentioning " << what;
  const std::string msg(s.status().message());
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << msg;
}

TEST(ChaiScheduleTest, ReadsOurForm) {
  std::string path = WriteTemp("ours.json",
                               R"({"layer_clusters": [4, 4, 2, 1], "calibrated": false,
                                   "note": "hand made"})");
  auto s = LoadChaiSchedule(path, 4, 4);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->layer_clusters, (std::vector<int>{4, 4, 2, 1}));
  EXPECT_FALSE(s->accuracy_calibrated);
  EXPECT_EQ(s->note, "hand made");
  EXPECT_EQ(s->num_layers(), 4);
}

TEST(ChaiScheduleTest, ReadsAuthorsForms) {
  // facebookresearch/chai params7b.json style: flat list under "layer_params".
  auto flat = LoadChaiSchedule(WriteTemp("authors.json", R"({"layer_params": [8, 8, 3]})"), 3, 8);
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_EQ(flat->layer_clusters, (std::vector<int>{8, 8, 3}));
  EXPECT_TRUE(flat->accuracy_calibrated);  // default
  // Entries as [count, ...] lists and {"clusters": count} objects; other keys ignored.
  auto nested = LoadChaiSchedule(
      WriteTemp("nested.json",
                R"({"dim": 4096, "layer_params": [[8, 0.5], {"clusters": 2, "err": 1}, [1]]})"),
      3, 8);
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_EQ(nested->layer_clusters, (std::vector<int>{8, 2, 1}));
  // The llama.patch field name, and a bare list.
  auto patch = LoadChaiSchedule(WriteTemp("patch.json", R"({"chai_layers": [5, 6]})"), 2, 8);
  ASSERT_TRUE(patch.ok()) << patch.status();
  EXPECT_EQ(patch->layer_clusters, (std::vector<int>{5, 6}));
  auto bare = LoadChaiSchedule(WriteTemp("bare.json", "[2, 3]"), 2, 8);
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->layer_clusters, (std::vector<int>{2, 3}));
  // prune_layer: layers below it are dense, as in the authors' patch.
  auto pruned = LoadChaiSchedule(
      WriteTemp("prune.json", R"({"layer_params": [2, 2, 2], "prune_layer": 2})"), 3, 8);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->layer_clusters, (std::vector<int>{8, 8, 2}));
}

TEST(ChaiScheduleTest, BadFilesGiveOneLineErrors) {
  std::string missing = ::testing::TempDir() + "/chai_schedule_test_no_such_file.json";
  ExpectError(LoadChaiSchedule(missing, 2, 4), missing, "cannot open");

  struct Case {
    const char* name;
    const char* text;
    const char* what;
  };
  const Case cases[] = {
      {"notjson.json", "{layer_clusters: [1, 2]", "invalid JSON"},
      {"empty.json", "", "invalid JSON"},
      {"nokey.json", R"({"clusters": [1, 2]})", "no \"layer_clusters\""},
      {"notlist.json", R"({"layer_clusters": 4})", "is not a list"},
      {"both.json", R"({"layer_clusters": [1, 2], "layer_params": [1, 2]})", "keep one"},
      {"scalar.json", "4", "expected an object"},
      {"short.json", R"({"layer_clusters": [4]})", "1 layer count, but the model has 2 layers"},
      {"long.json", R"({"layer_clusters": [4, 4, 4]})", "3 layer counts, but the model has 2"},
      {"zero.json", R"({"layer_clusters": [4, 0]})", "layer 1 has 0 clusters"},
      {"negative.json", R"({"layer_clusters": [-3, 4]})", "layer 0 has -3 clusters"},
      {"toobig.json", R"({"layer_clusters": [4, 5]})",
       "layer 1 has 5 clusters; it must be between 1 and the 4 heads"},
      {"fraction.json", R"({"layer_clusters": [4, 2.5]})", "entry 1 is 2.5, not an integer"},
      {"string.json", R"({"layer_clusters": [4, "2"]})",
       "entry 1 is the string \"2\", not an integer"},
      {"null.json", R"({"layer_clusters": [null, 2]})", "entry 0 is null"},
      {"bool.json", R"({"layer_clusters": [true, 2]})", "entry 0 is true"},
      {"emptyentry.json", R"({"layer_clusters": [[], 2]})", "entry 0 is an empty list"},
      {"badobject.json", R"({"layer_clusters": [{"x": 1}, 2]})", "entry 0 is an object without"},
      {"badcalibrated.json", R"({"layer_clusters": [1, 2], "calibrated": "yes"})",
       "\"calibrated\" must be"},
      {"badnote.json", R"({"layer_clusters": [1, 2], "note": 3})", "\"note\" must be a string"},
      {"badprune.json", R"({"layer_clusters": [1, 2], "prune_layer": 3})",
       "\"prune_layer\" must be"},
      {"huge.json", R"({"layer_clusters": [1e20, 2]})", "layer 0 has 1000000000 clusters"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = WriteTemp(c.name, c.text);
    auto s = LoadChaiSchedule(path, 2, 4);
    ExpectError(s, path, c.what);
    if (!s.ok()) std::printf("  %s\n", std::string(s.status().message()).c_str());
  }
}

TEST(ChaiScheduleTest, ShippedConfigsLoad) {
  auto l7 = LoadChaiSchedule(Config("llama-7b.json"), 32, 32);
  ASSERT_TRUE(l7.ok()) << l7.status();
  EXPECT_EQ(l7->layer_clusters, Repeat({{32, 18}, {4, 14}}));
  EXPECT_TRUE(l7->accuracy_calibrated);
  EXPECT_FALSE(l7->note.empty());
  for (int l = 0; l < 32; ++l) EXPECT_EQ(IsDenseLayer(l7->layer_clusters[l], 32), l < 18);

  auto l33 = LoadChaiSchedule(Config("llama-33b.json"), 60, 52);
  ASSERT_TRUE(l33.ok()) << l33.status();
  EXPECT_EQ(l33->layer_clusters, Repeat({{48, 18}, {36, 8}, {24, 6}, {8, 2}, {6, 26}}));
  EXPECT_FALSE(l33->note.empty());

  auto tiny = LoadChaiSchedule(Config("opt-tiny-docs.json"), 8, 12);
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ(tiny->layer_clusters, (std::vector<int>{12, 12, 12, 12, 4, 4, 4, 4}));
  EXPECT_FALSE(tiny->accuracy_calibrated);

  // A shipped schedule against the wrong model is a user error, not a crash.
  ExpectError(LoadChaiSchedule(Config("llama-7b.json"), 40, 40), "llama-7b.json",
              "32 layer counts, but the model has 40 layers");
  ExpectError(LoadChaiSchedule(Config("llama-7b.json"), 32, 16), "llama-7b.json",
              "has 32 clusters");
}

TEST(ChaiScheduleTest, DenseScheduleAndIsDense) {
  ChaiSchedule d = DenseSchedule(3, 12);
  EXPECT_EQ(d.layer_clusters, (std::vector<int>{12, 12, 12}));
  EXPECT_TRUE(IsDenseLayer(12, 12));
  EXPECT_FALSE(IsDenseLayer(11, 12));
  EXPECT_TRUE(ValidateSchedule(d.layer_clusters, 3, 12, "dense").ok());
}

TEST(ChaiScheduleTest, ParsesCommandLineLists) {
  auto a = ParseScheduleList("12,12,4");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, (std::vector<int>{12, 12, 4}));
  auto b = ParseScheduleList(" 32x18 , 4x14 ");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, Repeat({{32, 18}, {4, 14}}));
  for (const char* bad : {"", " ", "12,,4", "12,a", "4x", "x4", "4x0", "4x2x2", "1.5", "12;4"}) {
    EXPECT_FALSE(ParseScheduleList(bad).ok()) << "\"" << bad << "\"";
  }
  auto s = ScheduleFromList("12x4,4x4", 8, 12);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->layer_clusters, (std::vector<int>{12, 12, 12, 12, 4, 4, 4, 4}));
  auto wrong = ScheduleFromList("12,12", 8, 12);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("\"12,12\": 2 layer counts"), absl::string_view::npos)
      << wrong.status();
  EXPECT_FALSE(ScheduleFromList("13,12", 2, 12).ok());
  EXPECT_FALSE(ScheduleFromList("0,12", 2, 12).ok());
}

}  // namespace
}  // namespace chai
