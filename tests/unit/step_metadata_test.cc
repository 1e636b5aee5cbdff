// PrepareStep: the host description of a step (ids, positions, OPT's position rows, the batch
// layout and each token's block-table row, which the Q|K|V GEMV's cache append reads on GPUs)
// against values worked out by hand, and its all-or-nothing errors.
#include "runtime/step_metadata.h"

#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/block_tables.h"
#include "runtime/kv_cache.h"
#include "runtime/sequence.h"

namespace chai {
namespace {

constexpr int kLayers = 2, kKvHeads = 2, kHeads = 4, kBlock = 8;

std::vector<int32_t> Ints(const Tensor& t) {
  const int32_t* p = t.data<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

struct Fixture {
  explicit Fixture(int64_t blocks) : pool(blocks, kBlock, 16, DType::kF32, Device::kCpu) {
    config.vocab_size = 100;
    config.max_positions = 64;
    config.position_offset = 2;
  }
  // A sequence on a fresh table row.
  std::unique_ptr<Sequence> NewSequence() {
    auto row = tables.AcquireRow();
    EXPECT_TRUE(row.ok());
    return std::make_unique<Sequence>(&pool, &tables, *row, kLayers, kHeads, kKvHeads);
  }
  ModelConfig config;
  KvBlockPool pool;
  BlockTables tables{8, kLayers, kKvHeads, kHeads, 16, Device::kCpu};
};

TEST(PrepareStep, DescribesAMixedStep) {
  Fixture f(1024);
  auto unused = f.NewSequence();  // table row 0 stays with a sequence not in the step
  auto a = f.NewSequence(), b = f.NewSequence(), c = f.NewSequence();
  // b already holds 5 positions.
  ASSERT_TRUE(b->kv.Reserve(5).ok());
  b->kv.Advance(5);
  std::vector<StepInput> steps = {{a.get(), {1, 2, 3}}, {b.get(), {4}}, {c.get(), {5, 6}}};
  auto m = PrepareStep(absl::MakeSpan(steps), f.config, &f.pool);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->num_seqs, 3);
  EXPECT_EQ(m->max_new, 3);
  EXPECT_EQ(m->max_len, 6);
  EXPECT_EQ(Ints(m->ids), (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(Ints(m->positions), (std::vector<int32_t>{0, 1, 2, 5, 0, 1}));
  EXPECT_EQ(Ints(m->pos_rows), (std::vector<int32_t>{2, 3, 4, 7, 2, 3}));
  EXPECT_EQ(Ints(m->last_rows), (std::vector<int32_t>{2, 3, 5}));
  EXPECT_EQ(Ints(m->q_start), (std::vector<int32_t>{0, 3, 4, 6}));
  EXPECT_EQ(Ints(m->seq_lens), (std::vector<int32_t>{3, 6, 2}));
  const std::vector<int32_t> rows = {a->kv.row(), b->kv.row(), c->kv.row()};
  EXPECT_EQ(Ints(m->slots), rows);
  EXPECT_EQ(Ints(m->token_rows), (std::vector<int32_t>{rows[0], rows[0], rows[0], rows[1], rows[2], rows[2]}));
  EXPECT_EQ(m->past, (std::vector<int64_t>{0, 5, 0}));
}

TEST(PrepareStep, RejectsBadStepsAndTakesNoBlocks) {
  Fixture f(2 * 2 * kKvHeads * kLayers);  // room for two blocks per list of one sequence
  auto s = f.NewSequence();
  const int64_t free_before = f.pool.free_blocks();
  const auto prepare = [&](std::vector<int32_t> tokens) {
    std::vector<StepInput> steps = {{s.get(), std::move(tokens)}};
    return PrepareStep(absl::MakeSpan(steps), f.config, &f.pool);
  };
  EXPECT_FALSE(prepare({}).ok()) << "a sequence step without tokens";
  EXPECT_FALSE(prepare({100}).ok()) << "a token id past the vocabulary";
  EXPECT_FALSE(prepare({-1}).ok()) << "a negative token id";
  EXPECT_FALSE(prepare(std::vector<int32_t>(65, 1)).ok()) << "past the model's positions";
  EXPECT_FALSE(prepare(std::vector<int32_t>(3 * kBlock, 1)).ok()) << "more blocks than the pool has";
  EXPECT_EQ(f.pool.free_blocks(), free_before) << "a rejected step took blocks";
  std::vector<StepInput> none;
  EXPECT_FALSE(PrepareStep(absl::MakeSpan(none), f.config, &f.pool).ok()) << "no sequences";
  EXPECT_TRUE(prepare(std::vector<int32_t>(2 * kBlock, 1)).ok()) << "exactly the pool's room";
}

}  // namespace
}  // namespace chai
