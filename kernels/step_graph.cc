#include "kernels/step_graph.h"

#include "absl/strings/str_cat.h"

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#endif

namespace chai {

absl::StatusOr<std::unique_ptr<StepGraph>> StepGraph::Record(Device device, std::function<void()> fn) {
  auto g = std::unique_ptr<StepGraph>(new StepGraph());
  if (device == Device::kCpu) {
    g->fn_ = std::move(fn);
    return g;
  }
#ifdef CHAI_WITH_CUDA
  cudaStream_t stream = cuda::CurrentStream();
  cudaError_t err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) return absl::InternalError(absl::StrCat("CUDA graph capture: ", cudaGetErrorString(err)));
  fn();
  cudaGraph_t graph = nullptr;
  err = cudaStreamEndCapture(stream, &graph);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return absl::InternalError(absl::StrCat("CUDA graph capture failed: ", cudaGetErrorString(err)));
  }
  cudaGraphExec_t exec = nullptr;
  err = cudaGraphInstantiate(&exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch);
  if (err != cudaSuccess) {
    cudaGraphDestroy(graph);
    return absl::InternalError(absl::StrCat("CUDA graph instantiation: ", cudaGetErrorString(err)));
  }
  g->graph_ = graph;
  g->exec_ = exec;
  return g;
#else
  return absl::FailedPreconditionError("this build has no CUDA backend");
#endif
}

StepGraph::~StepGraph() {
#ifdef CHAI_WITH_CUDA
  if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_ != nullptr) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
#endif
}

void StepGraph::Replay() {
  if (fn_) {
    fn_();
    return;
  }
#ifdef CHAI_WITH_CUDA
  cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), cuda::CurrentStream());
#endif
}

}  // namespace chai
