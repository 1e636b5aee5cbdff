// A recorded step: the device work a function issues, captured once and replayed many times.
//
// Decode steps are hundreds of small kernels; launching them one by one costs more than they
// run at batch 1. On CUDA, Record captures the op stream into a CUDA graph (the function's host
// code runs once, during capture, and must not synchronise); Replay launches the graph, which
// reads whatever the buffers it was recorded with hold now. On the CPU there is nothing to
// record and Replay simply calls the function again, with the same effect.
#ifndef CHAI_KERNELS_STEP_GRAPH_H_
#define CHAI_KERNELS_STEP_GRAPH_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"

namespace chai {

class StepGraph {
 public:
  // Records fn's device work without executing it (CUDA); call Replay to run it.
  static absl::StatusOr<std::unique_ptr<StepGraph>> Record(Device device, std::function<void()> fn);
  ~StepGraph();
  void Replay();

 private:
  StepGraph() = default;
  std::function<void()> fn_;  // the CPU path
  void* graph_ = nullptr;     // cudaGraph_t
  void* exec_ = nullptr;      // cudaGraphExec_t
};

}  // namespace chai

#endif  // CHAI_KERNELS_STEP_GRAPH_H_
