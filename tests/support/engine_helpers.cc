#include "tests/support/engine_helpers.h"

#include <cmath>

#include "runtime/generator.h"
#include "runtime/tensor_source.h"

namespace chai::testing {

namespace {

absl::StatusOr<TestModel> BuildTestModel(const std::string& dir, Communicator* comm, const ParallelLayout& layout,
                                         DType dtype, Device device, const EngineOptions& options) {
  TestModel m;
  auto config = LoadModelConfig(dir);
  if (!config.ok()) return config.status();
  m.config = *config;
  auto source = OpenCheckpoint(dir);
  if (!source.ok()) return source.status();
  if (comm == nullptr) {
    m.own_comm = MakeSingleCommunicator();
    comm = m.own_comm.get();
  }
  ParallelLayout l = layout;
  l.rank = comm->rank();
  l.world = comm->size();
  auto weights = LoadWeights(m.config, **source, l, dtype, device);
  if (!weights.ok()) return weights.status();
  m.engine = std::make_unique<Engine>(m.config, std::move(*weights), comm, dtype, device, options);
  return m;
}

}  // namespace

absl::StatusOr<TestModel> LoadTestModel(const std::string& dir, Communicator* comm, const ParallelLayout& layout,
                                        DType dtype, Device device, bool capture_decode, LinearFusion linear_fusion,
                                        bool fuse_every_step, bool qkv_append_in_gemv,
                                        EngineOptions::L2PrefetchBudget l2_prefetch) {
  EngineOptions options;
  options.capture_decode = capture_decode && device == Device::kCuda;  // exercise the recorded decode path
  options.linear_fusion = linear_fusion;
  options.fuse_every_step = fuse_every_step;
  options.qkv_append_in_gemv = qkv_append_in_gemv;
  options.l2_prefetch = l2_prefetch;
  return BuildTestModel(dir, comm, layout, dtype, device, options);
}

absl::StatusOr<TestModel> LoadTestModel(const std::string& dir, const EngineOptions& options, DType dtype,
                                        Device device) {
  return BuildTestModel(dir, nullptr, {}, dtype, device, options);
}

namespace {

class RoundedSource : public TensorSource {
 public:
  RoundedSource(std::unique_ptr<TensorSource> inner, DType dtype) : inner_(std::move(inner)), dtype_(dtype) {}
  bool Has(const std::string& name) const override { return inner_->Has(name); }
  std::string Describe() const override { return inner_->Describe() + " (rounded)"; }
  absl::StatusOr<Tensor> Get(const std::string& name, const std::vector<int64_t>& shape) const override {
    auto t = inner_->Get(name, shape);
    if (!t.ok()) return t;
    return t->Cast(dtype_).Cast(DType::kF32);
  }

 private:
  std::unique_ptr<TensorSource> inner_;
  DType dtype_;
};

}  // namespace

std::unique_ptr<TensorSource> MakeRoundedSource(std::unique_ptr<TensorSource> inner, DType dtype) {
  return std::make_unique<RoundedSource>(std::move(inner), dtype);
}

absl::StatusOr<TestModel> LoadRoundedCpuModel(const std::string& dir, DType dtype) {
  TestModel m;
  auto config = LoadModelConfig(dir);
  if (!config.ok()) return config.status();
  m.config = *config;
  auto source = OpenCheckpoint(dir);
  if (!source.ok()) return source.status();
  RoundedSource rounded(std::move(*source), dtype);
  m.own_comm = MakeSingleCommunicator();
  auto weights = LoadWeights(m.config, rounded, ParallelLayout{}, DType::kF32, Device::kCpu);
  if (!weights.ok()) return weights.status();
  m.engine = std::make_unique<Engine>(m.config, std::move(*weights), m.own_comm.get(), DType::kF32, Device::kCpu);
  return m;
}

std::vector<std::vector<float>> PromptLogits(Engine& engine, const std::vector<int32_t>& prompt) {
  auto seq = *engine.NewSequence();
  std::vector<StepInput> steps = {{seq.get(), prompt}};
  auto logits = engine.Forward(absl::MakeSpan(steps), true);
  std::vector<std::vector<float>> rows;
  if (!logits.ok()) return rows;
  const int64_t vocab = logits->dim(1);
  for (int64_t r = 0; r < logits->dim(0); ++r) {
    rows.emplace_back(logits->data<float>() + r * vocab, logits->data<float>() + (r + 1) * vocab);
  }
  return rows;
}

std::vector<int32_t> GreedyTokens(Engine& engine, const std::vector<int32_t>& prompt, int new_tokens) {
  GenerateOptions options;
  options.max_new_tokens = new_tokens;
  auto result = Generate(engine, {prompt}, options);
  return result.ok() ? result->output_ids[0] : std::vector<int32_t>{};
}

absl::StatusOr<GreedyRun> RunGreedy(Engine& engine, const std::vector<std::vector<int32_t>>& prompts, int new_tokens,
                                    int eos_token_id, bool pipeline) {
  GenerateOptions options;
  options.max_new_tokens = new_tokens;
  options.eos_token_id = eos_token_id;
  options.pipeline_decode = pipeline;
  auto result = Generate(engine, prompts, options);
  if (!result.ok()) return result.status();
  GreedyRun run;
  run.ids = result->output_ids;
  for (const auto& seq : result->sequences) run.lengths.push_back(seq->length());
  run.steps = result->decode_steps;
  run.times = result->decode_times;
  return run;
}

std::vector<std::vector<float>> SteppedLogits(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                              const std::vector<std::vector<int32_t>>& next, int decode_steps) {
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto seq = engine.NewSequence();
    if (!seq.ok()) return {};
    seqs.push_back(std::move(*seq));
  }
  std::vector<std::vector<float>> out;
  for (int s = -1; s < decode_steps; ++s) {
    std::vector<StepInput> steps;
    for (size_t i = 0; i < prompts.size(); ++i) {
      steps.push_back({seqs[i].get(), s < 0 ? prompts[i] : std::vector<int32_t>{next[i][s]}});
    }
    auto logits = engine.Forward(absl::MakeSpan(steps), false);
    if (!logits.ok()) return {};
    out.emplace_back(logits->data<float>(), logits->data<float>() + logits->numel());
  }
  return out;
}

std::vector<int32_t> JsonIds(const Json& array) {
  std::vector<int32_t> ids;
  for (const Json& v : array.as_array()) ids.push_back(static_cast<int32_t>(v.as_double()));
  return ids;
}

std::vector<std::vector<float>> JsonMatrix(const Json& array) {
  std::vector<std::vector<float>> m;
  for (const Json& row : array.as_array()) {
    m.emplace_back();
    for (const Json& v : row.as_array()) m.back().push_back(static_cast<float>(v.as_double()));
  }
  return m;
}

double MaxAbsDiff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size()) return INFINITY;
    for (size_t j = 0; j < a[i].size(); ++j) worst = std::max(worst, std::fabs(double(a[i][j]) - b[i][j]));
  }
  return worst;
}

}  // namespace chai::testing
