// Records ops into a CUDA graph and replays it, as the engine does with a decode step: the GPU
// tests check that ops survive capture (no allocation outside the pool, no synchronisation, no
// other stream) and that replays write what eager calls do.
#ifndef CHAI_TESTS_GPU_GRAPH_CAPTURE_H_
#define CHAI_TESTS_GPU_GRAPH_CAPTURE_H_

#include <cuda_runtime.h>

#include <functional>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"

namespace chai::gpu_test {

// Captures `step` on the ops' stream, launches the graph `launches` times and waits for them.
// Failures are fatal failures of the caller: call it under ASSERT_NO_FATAL_FAILURE.
inline void CaptureAndLaunch(const std::function<void()>& step, int launches,
                             cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal) {
  cudaStream_t stream = cuda::CurrentStream();
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, mode), cudaSuccess);
  step();
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess) << "an op, allocation or free broke stream capture";
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int i = 0; i < launches; ++i) ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

}  // namespace chai::gpu_test

#endif  // CHAI_TESTS_GPU_GRAPH_CAPTURE_H_
