// Engine's private types, shared by its two source files: engine.cc (the model's forward pass,
// layer by layer) and engine_step.cc (a step's upload, graph replay and outputs).
#ifndef CHAI_RUNTIME_ENGINE_INTERNAL_H_
#define CHAI_RUNTIME_ENGINE_INTERNAL_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/step_graph.h"
#include "runtime/engine.h"
#include "runtime/packed_upload.h"

namespace chai {

// Host wall time in seconds, and a lap of it: adds the time since *t to *total and restarts *t
// (the engine's StepTimes).
inline double StepClock() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline void Lap(double* t, double* total) {
  const double now = StepClock();
  *total += now - *t;
  *t = now;
}

// The step's metadata on the engine's device, uploaded once per step; the block tables and
// score-head maps themselves stay on the device (BlockTables).
struct Engine::DeviceStep {
  PackedUpload upload;  // ids .. last_rows and the batch layout's arrays are views of its buffer
  Tensor ids, positions, pos_rows, last_rows;
  BatchLayout batch;
  std::vector<int64_t> past;
  bool policy_active = false;
};

// What a sublayer reads. Unfused: h is its input itself (Norm(x) pre-LN, x post-LN). Fused
// (LinearFusion::kAll): h is the residual stream x and the input is RmsNorm(h, norm_w), which the
// sublayer's first Linear applies in its own kernel; its last Linear adds into x in its kernel too
// (ops::LinearFused). An undefined norm_w (a model without a final norm): the input is h.
struct Engine::SublayerInput {
  Tensor h;
  Tensor norm_w;
  bool fused = false;
  bool act_in_gemv = false;  // the MLP's first Linear applies SiLU(gate) * up or ReLU in its kernel
  // The kernel that produced h carried an L2 prefetch hint for the first weights of the Linear
  // reading it (NextWeights was not empty): ops::LinearFusion::first_bytes_in_l2 for that Linear.
  bool hinted = false;
};

struct Engine::GraphSlot {
  DeviceStep step;  // fixed device buffers the graph reads; refilled before every replay
  Tensor logits;    // [batch, vocab_shard * world], written by the graph
  std::unique_ptr<StepGraph> graph;
  bool warmed = false;
  // Pipelined greedy steps (Engine::EnqueueGreedy), by parity: the metadata's page-locked staging
  // and the ids the step's argmax writes (which the next step may read as its input tokens).
  HostUpload staging;
  Tensor greedy_ids[2];
};

}  // namespace chai

#endif  // CHAI_RUNTIME_ENGINE_INTERNAL_H_
