// The in-flight batching scheduler: outputs under batching, chunked prefill and preemption equal
// the single-request outputs of runtime/generator; mixed dense/CHAI requests; cancellation; stop
// tokens and max tokens.
#include "runtime/scheduler/scheduler.h"

#include <map>
#include <random>
#include <set>

#include "gtest/gtest.h"
#include "runtime/generator.h"
#include "runtime/tensor_source.h"
#include "runtime/throughput_bench.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

// A fixture model on the CPU with a KV pool of `num_blocks` blocks (0: the engine's default).
TestModel LoadWithPool(const std::string& name, int64_t num_blocks) {
  TestModel m;
  const std::string dir = FixtureDir(name);
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  m.config = *config;
  auto source = OpenCheckpoint(dir);
  EXPECT_TRUE(source.ok()) << source.status();
  m.own_comm = MakeSingleCommunicator();
  auto weights = LoadWeights(m.config, **source, ParallelLayout{}, DType::kF32, Device::kCpu);
  EXPECT_TRUE(weights.ok()) << weights.status();
  EngineOptions options;
  options.num_blocks = num_blocks;
  m.engine = std::make_unique<Engine>(m.config, std::move(*weights), m.own_comm.get(), DType::kF32, Device::kCpu,
                                      options);
  return m;
}

std::vector<int32_t> Solo(Engine& engine, const Request& r, const ChaiPolicy* chai = nullptr) {
  GenerateOptions o;
  o.max_new_tokens = r.max_new_tokens;
  o.sampling = r.sampling;
  o.chai = r.chai ? chai : nullptr;
  auto result = Generate(engine, {r.prompt}, o);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->output_ids[0] : std::vector<int32_t>{};
}

std::vector<Request> RandomRequests(int n, int vocab, int max_len, uint64_t seed, double spacing) {
  std::mt19937_64 rng(seed);
  std::vector<Request> out;
  for (int i = 0; i < n; ++i) {
    Request r;
    r.id = 100 + i;
    const int prompt_len = 1 + static_cast<int>(rng() % 40);
    r.max_new_tokens = 1 + static_cast<int>(rng() % std::min<int>(20, max_len - prompt_len));
    for (int t = 0; t < prompt_len; ++t) r.prompt.push_back(static_cast<int32_t>(3 + rng() % (vocab - 3)));
    r.arrival_time = spacing * i;
    out.push_back(r);
  }
  return out;
}

// Submits everything, steps with the fake clock advancing 1 s per step until done; returns
// the outputs by id.
std::map<int64_t, RequestOutput> RunAll(Scheduler& s, FakeClock& clock, const std::vector<Request>& requests) {
  for (const Request& r : requests) EXPECT_TRUE(s.Submit(r).ok());
  std::map<int64_t, RequestOutput> out;
  for (int guard = 0; s.HasWork() && guard < 10000; ++guard) {
    absl::Status st = s.Step();
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    clock.Advance(1.0);
    for (RequestOutput& o : s.TakeFinished()) {
      EXPECT_EQ(out.count(o.id), 0u) << "request " << o.id << " finished twice";
      out[o.id] = std::move(o);
    }
  }
  EXPECT_FALSE(s.HasWork());
  EXPECT_EQ(out.size(), requests.size());
  return out;
}

void ExpectSoloOutputs(Engine& ref, const std::vector<Request>& requests, const std::map<int64_t, RequestOutput>& out,
                       const ChaiPolicy* chai = nullptr) {
  for (const Request& r : requests) {
    auto it = out.find(r.id);
    ASSERT_NE(it, out.end()) << "request " << r.id << " lost";
    EXPECT_EQ(it->second.output_ids, Solo(ref, r, chai)) << "request " << r.id << (r.chai ? " (CHAI)" : "");
    EXPECT_EQ(it->second.prompt, r.prompt);
    EXPECT_GE(it->second.ttft(), 0);
    EXPECT_EQ(it->second.token_times.size(), it->second.output_ids.size());
  }
}

class SchedulerFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(SchedulerFixture, BatchedOutputsEqualSoloGreedy) {
  TestModel model = LoadWithPool(GetParam(), 0);
  TestModel ref = LoadWithPool(GetParam(), 0);
  auto requests = RandomRequests(12, model.config.vocab_size, model.config.max_positions, 7, 1.5);
  FakeClock clock;
  SchedulerOptions options;
  options.max_prefill_tokens_per_step = 16;
  Scheduler s(model.engine.get(), options, &clock);
  auto out = RunAll(s, clock, requests);
  ExpectSoloOutputs(*ref.engine, requests, out);
  EXPECT_EQ(model.engine->kv_pool().free_blocks(), model.engine->kv_pool().num_blocks());
}

TEST_P(SchedulerFixture, PreemptionUnderTinyPoolKeepsOutputs) {
  TestModel probe = LoadWithPool(GetParam(), 0);
  // Room for about 1.5 sequences of maximum length.
  const int64_t per_seq = BlocksForSequence(probe.config.max_positions, probe.config.num_layers,
                                            probe.config.num_kv_heads, probe.engine->kv_pool().block_size());
  TestModel model = LoadWithPool(GetParam(), per_seq * 3 / 2);
  auto requests = RandomRequests(8, model.config.vocab_size, model.config.max_positions, 11, 0.0);
  for (int i : {1, 4}) {  // sampled requests continue exactly too (their sampler survives)
    requests[i].sampling.greedy = false;
    requests[i].sampling.temperature = 0.8f;
    requests[i].sampling.top_k = 20;
    requests[i].sampling.seed = 5 + i;
  }
  FakeClock clock;
  SchedulerOptions options;
  options.max_prefill_tokens_per_step = 24;
  options.reserve_full_length = false;
  Scheduler s(model.engine.get(), options, &clock);
  auto out = RunAll(s, clock, requests);
  EXPECT_GT(s.stats().preemptions, 0);
  RecordProperty("preemptions", static_cast<int>(s.stats().preemptions));
  ExpectSoloOutputs(*probe.engine, requests, out);
  int64_t preempted = 0, recomputed = 0, sampled_preempted = 0;
  for (const auto& [id, o] : out) {
    preempted += o.preemptions;
    recomputed += o.recomputed_outputs;
    if (o.preemptions > 0 && (id == requests[1].id || id == requests[4].id)) ++sampled_preempted;
  }
  EXPECT_EQ(preempted, s.stats().preemptions);
  EXPECT_GT(recomputed, 0);  // preempted mid-generation: the output continued across the recompute
  EXPECT_GT(sampled_preempted, 0);
  EXPECT_EQ(model.engine->kv_pool().free_blocks(), model.engine->kv_pool().num_blocks());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SchedulerFixture, ::testing::Values("opt-preln", "llama-gqa"));

TEST(Scheduler, ChunkedPrefillEqualsOneShotAndDecodesKeepGoing) {
  TestModel model = LoadWithPool("llama-gqa", 0);
  std::vector<Request> requests(2);
  requests[0].id = 1;
  requests[0].prompt = {5, 9, 33};
  requests[0].max_new_tokens = 14;
  requests[1].id = 2;
  for (int i = 0; i < 50; ++i) requests[1].prompt.push_back(static_cast<int32_t>(7 + (i * 37) % 240));
  requests[1].max_new_tokens = 6;
  requests[1].arrival_time = 2;  // arrives while request 1 decodes
  std::map<int64_t, RequestOutput> chunked, one_shot;
  for (int budget : {7, 1000}) {
    TestModel m = LoadWithPool("llama-gqa", 0);
    FakeClock clock;
    SchedulerOptions options;
    options.max_prefill_tokens_per_step = budget;
    Scheduler s(m.engine.get(), options, &clock);
    (budget == 7 ? chunked : one_shot) = RunAll(s, clock, requests);
  }
  for (const Request& r : requests) EXPECT_EQ(chunked[r.id].output_ids, one_shot[r.id].output_ids);
  ExpectSoloOutputs(*model.engine, requests, chunked);
  // Request 1 got a token on every step (1 s apart) while request 2's 50 tokens went in 8 chunks.
  const auto& times = chunked[1].token_times;
  for (size_t i = 1; i < times.size(); ++i) EXPECT_DOUBLE_EQ(times[i] - times[i - 1], 1.0);
  EXPECT_DOUBLE_EQ(chunked[2].ttft(), 7.0);  // chunks at t = 2..9, first token after the 8th
  EXPECT_DOUBLE_EQ(one_shot[2].ttft(), 0.0);
}

TEST(Scheduler, MixedDenseAndChaiEqualSoloRuns) {
  TestModel probe = LoadWithPool("llama-gqa", 0);
  const int64_t per_seq = BlocksForSequence(probe.config.max_positions, probe.config.num_layers,
                                            probe.config.num_kv_heads, probe.engine->kv_pool().block_size());
  const std::vector<int> schedule = {8, 3, 2};
  auto ref_policy = AttachChai(probe, schedule);
  for (bool tiny : {false, true}) {
    SCOPED_TRACE(tiny ? "tiny pool" : "default pool");
    TestModel model = LoadWithPool("llama-gqa", tiny ? per_seq : 0);
    auto policy = AttachChai(model, schedule);
    auto requests = RandomRequests(10, model.config.vocab_size, model.config.max_positions, 23, tiny ? 0.0 : 0.5);
    requests[0].prompt = {4, 8};  // short prompts: dense until the 5th token
    requests[1].prompt = {9, 10, 11, 12};
    for (size_t i = 0; i < requests.size(); ++i) requests[i].chai = i % 3 != 2;
    FakeClock clock;
    SchedulerOptions options;
    options.max_prefill_tokens_per_step = 3;  // below 5: the CHAI first-chunk rule matters
    options.reserve_full_length = !tiny;
    options.chai = policy.get();
    options.chai_local_clusters = schedule;
    Scheduler s(model.engine.get(), options, &clock);
    auto out = RunAll(s, clock, requests);
    if (tiny) {
      EXPECT_GT(s.stats().preemptions, 0);
      RecordProperty("preemptions", static_cast<int>(s.stats().preemptions));
    }
    ExpectSoloOutputs(*probe.engine, requests, out, ref_policy.get());
  }
}

TEST(Scheduler, CancelQueuedAndRunning) {
  TestModel model = LoadWithPool("opt-preln", 0);
  FakeClock clock;
  SchedulerOptions options;
  options.max_running = 1;
  Scheduler s(model.engine.get(), options, &clock);
  Request a, b, c;
  a.id = 1, a.prompt = {5, 6, 7}, a.max_new_tokens = 10;
  b.id = 2, b.prompt = {8, 9}, b.max_new_tokens = 4;
  c.id = 3, c.prompt = {10, 11}, c.max_new_tokens = 3;
  for (const Request* r : {&a, &b, &c}) ASSERT_TRUE(s.Submit(*r).ok());
  EXPECT_FALSE(s.Submit(a).ok());  // duplicate id
  ASSERT_TRUE(s.Step().ok());
  ASSERT_TRUE(s.Step().ok());
  EXPECT_EQ(s.num_running(), 1u);
  EXPECT_TRUE(s.Cancel(2));  // queued
  EXPECT_TRUE(s.Cancel(1));  // running, with 2 tokens
  EXPECT_FALSE(s.Cancel(1));
  EXPECT_FALSE(s.Cancel(42));
  EXPECT_EQ(model.engine->kv_pool().free_blocks(), model.engine->kv_pool().num_blocks());
  std::map<int64_t, RequestOutput> out;
  for (auto& o : s.TakeFinished()) out[o.id] = o;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].reason, FinishReason::kCancelled);
  EXPECT_EQ(out[1].output_ids.size(), 2u);
  EXPECT_EQ(out[2].reason, FinishReason::kCancelled);
  EXPECT_TRUE(out[2].output_ids.empty());
  while (s.HasWork()) ASSERT_TRUE(s.Step().ok());
  auto rest = s.TakeFinished();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].id, 3);
  EXPECT_EQ(rest[0].output_ids, Solo(*model.engine, c));
}

TEST(Scheduler, StopTokensAndMaxTokens) {
  TestModel model = LoadWithPool("opt-preln", 0);
  Request r;
  r.id = 1;
  r.prompt = {2, 50, 60, 70};
  r.max_new_tokens = 12;
  const std::vector<int32_t> full = Solo(*model.engine, r);
  ASSERT_EQ(full.size(), 12u);
  Request stop = r, short_run = r, none = r, bad = r;
  stop.id = 2;
  stop.stop_token_ids = {full[4]};
  short_run.id = 3;
  short_run.max_new_tokens = 3;
  none.id = 4;
  none.max_new_tokens = 0;
  FakeClock clock;
  Scheduler s(model.engine.get(), {}, &clock);
  bad.prompt = {};
  EXPECT_FALSE(s.Submit(bad).ok());
  bad.prompt = {100000};
  EXPECT_FALSE(s.Submit(bad).ok());
  bad.prompt = std::vector<int32_t>(60, 3);  // 60 + 12 > 64 positions
  EXPECT_FALSE(s.Submit(bad).ok());
  bad = r;
  bad.chai = true;  // no policy
  EXPECT_FALSE(s.Submit(bad).ok());
  auto out = RunAll(s, clock, {r, stop, short_run, none});
  EXPECT_EQ(out[1].output_ids, full);
  EXPECT_EQ(out[1].reason, FinishReason::kLength);
  const auto first_stop = std::find(full.begin(), full.end(), full[4]);
  EXPECT_EQ(out[2].output_ids, std::vector<int32_t>(full.begin(), first_stop + 1));
  EXPECT_EQ(out[2].reason, FinishReason::kStop);
  EXPECT_EQ(out[3].output_ids, std::vector<int32_t>(full.begin(), full.begin() + 3));
  EXPECT_TRUE(out[4].output_ids.empty());
}

TEST(ThroughputBench, LengthDistributions) {
  auto fixed = ParseLengthDist("input-len-dist", "fixed:12");
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(fixed->lo, 12);
  EXPECT_EQ(fixed->hi, 12);
  auto uniform = ParseLengthDist("input-len-dist", "uniform:3:9");
  ASSERT_TRUE(uniform.ok()) << uniform.status();
  std::mt19937_64 rng(1);
  std::set<int> seen;
  for (int i = 0; i < 500; ++i) seen.insert(uniform->Sample(rng));
  EXPECT_EQ(seen, (std::set<int>{3, 4, 5, 6, 7, 8, 9}));
  for (const char* bad : {"fixed:0", "fixed:x", "uniform:5:2", "uniform:0:3", "normal:3:4", "fixed:1:2", ""}) {
    auto r = ParseLengthDist("output-len-dist", bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(std::string(r.status().message()).find("--output-len-dist"), std::string::npos);
    }
  }
  Percentiles p = ComputePercentiles({4, 1, 3, 2, 5});
  EXPECT_DOUBLE_EQ(p.p50, 3);
  EXPECT_DOUBLE_EQ(p.p90, 4.6);
  EXPECT_DOUBLE_EQ(p.mean, 3);
}

TEST(ThroughputBench, RunsEveryRequestOnACpuFixture) {
  TestModel model = LoadWithPool("opt-preln", 0);
  ThroughputBenchOptions o;
  o.num_requests = 12;
  o.input_len = {2, 30};
  o.output_len = {5, 5};
  o.request_rate = 2000;
  o.max_prefill_tokens_per_step = 16;
  o.progress = false;
  auto r = RunThroughputBench(*model.engine, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->completed, 12);
  EXPECT_EQ(r->failed, 0);
  EXPECT_EQ(r->output_tokens, 60);
  EXPECT_GT(r->requests_per_s, 0);
  EXPECT_GT(r->output_tokens_per_s, 0);
  EXPECT_LE(r->ttft_s.p50, r->ttft_s.p90);
  EXPECT_LE(r->ttft_s.p90, r->ttft_s.p99);
  EXPECT_LE(r->tpot_s.p50, r->tpot_s.p99);
  EXPECT_GT(r->kv_utilisation_peak, 0);
  EXPECT_LE(r->kv_utilisation_peak, 1);
  EXPECT_EQ(model.engine->kv_pool().free_blocks(), model.engine->kv_pool().num_blocks());
}

}  // namespace
}  // namespace chai::testing
