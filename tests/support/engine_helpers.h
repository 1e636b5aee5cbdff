// Building engines from fixture checkpoints and comparing their outputs, for tests.
#ifndef CHAI_TESTS_SUPPORT_ENGINE_HELPERS_H_
#define CHAI_TESTS_SUPPORT_ENGINE_HELPERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "runtime/engine.h"
#include "runtime/json.h"
#include "runtime/tensor_source.h"

namespace chai::testing {

struct TestModel {
  ModelConfig config;
  std::unique_ptr<Communicator> own_comm;  // single-process communicator when none was given
  std::unique_ptr<Engine> engine;
};

// Loads a checkpoint directory on the CPU in fp32 for the given rank layout. On a GPU, decode
// steps are recorded and replayed as CUDA graphs unless capture_decode is false. linear_fusion,
// fuse_every_step, qkv_append_in_gemv, l2_prefetch: EngineOptions'.
absl::StatusOr<TestModel> LoadTestModel(const std::string& dir, Communicator* comm = nullptr,
                                        const ParallelLayout& layout = {}, DType dtype = DType::kF32,
                                        Device device = Device::kCpu, bool capture_decode = true,
                                        LinearFusion linear_fusion = LinearFusion::kActivation,
                                        bool fuse_every_step = false, bool qkv_append_in_gemv = true,
                                        EngineOptions::L2PrefetchBudget l2_prefetch = {});

// The same, single-process, with the engine's options given whole.
absl::StatusOr<TestModel> LoadTestModel(const std::string& dir, const EngineOptions& options, DType dtype,
                                        Device device);

// The checkpoint's weights rounded to `dtype` and back to fp32: the CPU reference for a run
// that stores weights in `dtype`, so that kernel error is measured apart from the rounding
// of the weights themselves.
absl::StatusOr<TestModel> LoadRoundedCpuModel(const std::string& dir, DType dtype);
// The weights of `inner` rounded to `dtype` and back to fp32 (LoadRoundedCpuModel's source).
std::unique_ptr<TensorSource> MakeRoundedSource(std::unique_ptr<TensorSource> inner, DType dtype);

// Prefill logits at every prompt position, [len, vocab] flattened, for one prompt.
std::vector<std::vector<float>> PromptLogits(Engine& engine, const std::vector<int32_t>& prompt);

// Greedy continuation (incremental decode with the KV cache), new tokens only.
std::vector<int32_t> GreedyTokens(Engine& engine, const std::vector<int32_t>& prompt, int new_tokens);

// A greedy generation's outcome (Generate), to compare decoding pipelined and in turn.
struct GreedyRun {
  std::vector<std::vector<int32_t>> ids;  // new tokens per sequence
  std::vector<int64_t> lengths;           // each sequence's cache length at the end
  int64_t steps = 0;                      // decode steps run
  StepTimes times;                        // the decode steps' engine counters (fed, queued)
};
absl::StatusOr<GreedyRun> RunGreedy(Engine& engine, const std::vector<std::vector<int32_t>>& prompts, int new_tokens,
                                    int eos_token_id, bool pipeline);

// Several sequences stepped together: one prefill step of all prompts, then decode_steps steps of
// one token per sequence, sequence i taking next[i][s] at step s (a fixed continuation, so that
// two engines see the same tokens whatever they would pick). The last-token logits of each step,
// [sequences][vocab] flattened per step; empty on an error.
std::vector<std::vector<float>> SteppedLogits(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                              const std::vector<std::vector<int32_t>>& next, int decode_steps);

std::vector<int32_t> JsonIds(const Json& array);
std::vector<std::vector<float>> JsonMatrix(const Json& array);
double MaxAbsDiff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b);

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_ENGINE_HELPERS_H_
