#include "runtime/step_metadata.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chai {

absl::StatusOr<StepMetadata> PrepareStep(absl::Span<StepInput> steps, const ModelConfig& config, int kv_heads,
                                         KvBlockPool* pool, int table_blocks) {
  if (steps.empty()) return absl::InvalidArgumentError("no sequences in the step");
  std::vector<int32_t> ids, positions, pos_rows, last_rows;
  int64_t blocks_needed = 0;
  for (const StepInput& step : steps) {
    if (step.tokens.empty()) return absl::InvalidArgumentError("a sequence step has no tokens");
    const int64_t past = step.seq->length();
    const int64_t end = past + static_cast<int64_t>(step.tokens.size());
    if (end > config.max_positions) {
      return absl::OutOfRangeError(absl::StrCat("sequence length ", end, " exceeds the model's maximum of ",
                                                config.max_positions, " positions"));
    }
    for (size_t i = 0; i < step.tokens.size(); ++i) {
      const int32_t id = step.tokens[i];
      if (id < 0 || id >= config.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " is out of range (vocabulary size ", config.vocab_size, ")"));
      }
      ids.push_back(id);
      positions.push_back(static_cast<int32_t>(past + i));
      pos_rows.push_back(static_cast<int32_t>(past + i + config.position_offset));
    }
    last_rows.push_back(static_cast<int32_t>(ids.size() - 1));
    blocks_needed += step.seq->kv.BlocksNeededFor(end);
  }
  // All or nothing: a step that cannot fit takes no blocks.
  if (blocks_needed > pool->free_blocks()) {
    std::vector<int32_t> none;
    return pool->Allocate(blocks_needed, &none);
  }
  for (const StepInput& step : steps) {
    if (auto s = step.seq->kv.Reserve(step.seq->length() + static_cast<int64_t>(step.tokens.size())); !s.ok()) {
      return s;
    }
  }

  StepMetadata m;
  m.num_seqs = static_cast<int>(steps.size());
  const int64_t T = static_cast<int64_t>(ids.size());
  m.ids = Tensor::FromInts(ids, {T});
  m.positions = Tensor::FromInts(positions, {T});
  m.pos_rows = Tensor::FromInts(pos_rows, {T});
  m.last_rows = Tensor::FromInts(last_rows, {m.num_seqs});
  m.q_start = Tensor::Empty({m.num_seqs + 1}, DType::kI32);
  m.seq_lens = Tensor::Empty({m.num_seqs}, DType::kI32);
  m.q_start.data<int32_t>()[0] = 0;
  for (int s = 0; s < m.num_seqs; ++s) {
    const int n = static_cast<int>(steps[s].tokens.size());
    m.past.push_back(steps[s].seq->length());
    m.q_start.data<int32_t>()[s + 1] = m.q_start.data<int32_t>()[s] + n;
    m.seq_lens.data<int32_t>()[s] = static_cast<int32_t>(steps[s].seq->length() + n);
    m.max_len = std::max(m.max_len, m.seq_lens.data<int32_t>()[s]);
    m.max_new = std::max(m.max_new, n);
  }
  const int bs = pool->block_size();
  m.max_blocks = std::max((m.max_len + bs - 1) / bs, table_blocks);
  const int64_t per_layer = int64_t{m.num_seqs} * 2 * kv_heads * m.max_blocks;
  m.tables = Tensor::Empty({config.num_layers, per_layer}, DType::kI32);
  int32_t* table = m.tables.data<int32_t>();
  std::fill(table, table + m.tables.numel(), -1);
  for (int l = 0; l < config.num_layers; ++l)
    for (int s = 0; s < m.num_seqs; ++s)
      for (int side = 0; side < 2; ++side)
        for (int g = 0; g < kv_heads; ++g) {
          const auto& blocks = steps[s].seq->kv.blocks(l, SequenceKvCache::Side(side), g);
          std::copy(blocks.begin(), blocks.end(),
                    table + l * per_layer + ((int64_t{s} * 2 + side) * kv_heads + g) * m.max_blocks);
        }
  return m;
}

Tensor ScoreHeadTable(absl::Span<StepInput> steps, int layers, int heads) {
  const int num_seqs = static_cast<int>(steps.size());
  Tensor t = Tensor::Empty({layers, num_seqs, heads}, DType::kI32);
  for (int l = 0; l < layers; ++l)
    for (int s = 0; s < num_seqs; ++s) {
      const auto& map = steps[s].seq->score_head[l];
      std::copy(map.begin(), map.end(), t.data<int32_t>() + (int64_t{l} * num_seqs + s) * heads);
    }
  return t;
}

}  // namespace chai
