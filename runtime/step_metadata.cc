#include "runtime/step_metadata.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chai {

absl::StatusOr<StepMetadata> PrepareStep(absl::Span<StepInput> steps, const ModelConfig& config, KvBlockPool* pool) {
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
  m.slots = Tensor::Empty({m.num_seqs}, DType::kI32);
  m.token_rows = Tensor::Empty({T}, DType::kI32);
  m.q_start.data<int32_t>()[0] = 0;
  for (int s = 0; s < m.num_seqs; ++s) {
    const int n = static_cast<int>(steps[s].tokens.size());
    m.past.push_back(steps[s].seq->length());
    m.q_start.data<int32_t>()[s + 1] = m.q_start.data<int32_t>()[s] + n;
    m.seq_lens.data<int32_t>()[s] = static_cast<int32_t>(steps[s].seq->length() + n);
    m.slots.data<int32_t>()[s] = steps[s].seq->kv.row();
    for (int i = 0; i < n; ++i) m.token_rows.data<int32_t>()[m.q_start.data<int32_t>()[s] + i] = steps[s].seq->kv.row();
    m.max_len = std::max(m.max_len, m.seq_lens.data<int32_t>()[s]);
    m.max_new = std::max(m.max_new, n);
  }
  return m;
}

}  // namespace chai
