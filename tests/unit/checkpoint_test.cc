// Checkpoint formats: a sharded checkpoint (model.safetensors.index.json + shards) and a
// single file load the same weights; fp16 and bf16 checkpoints convert to the run dtype; head
// placements survive a JSON round trip.
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "runtime/placement_io.h"
#include "runtime/safetensors.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

namespace fs = std::filesystem;

class Scratch {
 public:
  explicit Scratch(const std::string& name) : dir_(fs::temp_directory_path() / ("chai_ckpt_" + name)) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~Scratch() { fs::remove_all(dir_); }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// Rewrites a fixture's tensors into `dir`: as `shards` files with an index, in `dtype`.
void Rewrite(const std::string& fixture, const std::string& dir, int shards, DType dtype) {
  fs::copy_file(FixtureDir(fixture) + "/config.json", dir + "/config.json");
  auto file = SafetensorsFile::Open(FixtureDir(fixture) + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  std::vector<std::vector<std::pair<std::string, Tensor>>> parts(shards);
  Json weight_map = Json::MakeObject();
  int i = 0;
  for (const std::string& name : (*file)->Names()) {
    const int shard = i++ % shards;
    parts[shard].emplace_back(name, (*(*file)->Get(name)).Cast(dtype));
    weight_map.Set(name, Json("model-" + std::to_string(shard + 1) + ".safetensors"));
  }
  if (shards == 1) {
    ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", parts[0]).ok());
    return;
  }
  for (int s = 0; s < shards; ++s) {
    ASSERT_TRUE(WriteSafetensors(dir + "/model-" + std::to_string(s + 1) + ".safetensors", parts[s]).ok());
  }
  Json index = Json::MakeObject();
  index.Set("weight_map", weight_map);
  std::ofstream(dir + "/model.safetensors.index.json") << index.Dump();
}

TEST(Checkpoint, ShardedEqualsSingleFile) {
  Scratch scratch("sharded");
  Rewrite("llama-gqa", scratch.dir(), 3, DType::kF32);
  auto single = LoadTestModel(FixtureDir("llama-gqa"));
  auto sharded = LoadTestModel(scratch.dir());
  ASSERT_TRUE(single.ok() && sharded.ok()) << sharded.status();
  const std::vector<int32_t> prompt = {5, 9, 17, 33, 2, 8, 100};
  EXPECT_EQ(MaxAbsDiff(PromptLogits(*single->engine, prompt), PromptLogits(*sharded->engine, prompt)), 0.0);
}

TEST(Checkpoint, HalfPrecisionCheckpointsConvert) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    Scratch scratch(DTypeName(dtype));
    Rewrite("opt-preln", scratch.dir(), 1, dtype);
    auto rounded = LoadRoundedCpuModel(FixtureDir("opt-preln"), dtype);  // the same rounding, done in memory
    auto half = LoadTestModel(scratch.dir());
    ASSERT_TRUE(rounded.ok() && half.ok()) << half.status();
    const std::vector<int32_t> prompt = {7, 3, 200, 45};
    EXPECT_EQ(MaxAbsDiff(PromptLogits(*rounded->engine, prompt), PromptLogits(*half->engine, prompt)), 0.0)
        << DTypeName(dtype);
  }
}

TEST(Checkpoint, ShardIndexErrors) {
  Scratch scratch("bad_index");
  fs::copy_file(FixtureDir("opt-preln") + "/config.json", scratch.dir() + "/config.json");
  std::ofstream(scratch.dir() + "/model.safetensors.index.json") << R"({"weight_map": {"a": "../escape.safetensors"}})";
  auto source = OpenCheckpoint(scratch.dir());
  ASSERT_FALSE(source.ok());
  EXPECT_NE(std::string(source.status().message()).find("bad shard name"), std::string::npos);
  std::ofstream(scratch.dir() + "/model.safetensors.index.json") << R"({"weight_map": {"a": "missing.safetensors"}})";
  source = OpenCheckpoint(scratch.dir());
  ASSERT_FALSE(source.ok());
  EXPECT_NE(std::string(source.status().message()).find("missing.safetensors"), std::string::npos);
}

TEST(Placement, JsonRoundTripAndErrors) {
  HeadPlacement p{2, {{1, 0, 3, 2}, {2, 3, 0, 1}}};
  auto back = PlacementFromJson(PlacementToJson(p));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->world_size, 2);
  EXPECT_EQ(back->layer_perm, p.layer_perm);
  auto bad = Json::Parse(R"({"world_size": 2, "layer_perm": [[0, 1.5]]})");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(PlacementFromJson(*bad).ok());
  auto missing = Json::Parse(R"({"layer_perm": []})");
  EXPECT_FALSE(PlacementFromJson(*missing).ok());
}

}  // namespace
}  // namespace chai::testing
