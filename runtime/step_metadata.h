// The host-side description of one forward step: which tokens at which positions, which rows
// belong to which sequence, and every layer's block tables. Built once per step (and uploaded
// once), so the layers themselves never wait on the host.
#ifndef CHAI_RUNTIME_STEP_METADATA_H_
#define CHAI_RUNTIME_STEP_METADATA_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/tensor.h"
#include "runtime/kv_cache.h"
#include "runtime/model_config.h"
#include "runtime/sequence.h"

namespace chai {

struct StepInput {
  Sequence* seq;
  std::vector<int32_t> tokens;  // new tokens appended to the sequence in this step
};

struct StepMetadata {
  // int32 host tensors.
  Tensor ids, positions, pos_rows;  // [T]; pos_rows: OPT's learned-position table rows
  Tensor last_rows;                 // [num_seqs]: the row of each sequence's last new token
  Tensor q_start;                   // [num_seqs + 1]
  Tensor seq_lens;                  // [num_seqs], after this step
  Tensor slots;                     // [num_seqs]: each sequence's row in the block tables
  Tensor token_rows;                // [T]: each new token's sequence's row in the block tables
  std::vector<int64_t> past;        // positions before this step, per sequence
  int num_seqs = 0, max_new = 0, max_len = 0;
};

// Validates the step (token ids, lengths), reserves the KV blocks it needs (all or nothing;
// the block tables learn of new blocks as they are taken) and describes it. Errors leave every
// sequence untouched.
absl::StatusOr<StepMetadata> PrepareStep(absl::Span<StepInput> steps, const ModelConfig& config, KvBlockPool* pool);

}  // namespace chai

#endif  // CHAI_RUNTIME_STEP_METADATA_H_
