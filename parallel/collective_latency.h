// Measured all-reduce latency: the communication term of a tensor-parallel decode step's floor.
#ifndef CHAI_PARALLEL_COLLECTIVE_LATENCY_H_
#define CHAI_PARALLEL_COLLECTIVE_LATENCY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace chai {

// Seconds per AllReduceSum of `count` elements of `dtype` on `device` through `comm`, issued as
// a decode step issues them: `calls` back-to-back all-reduces recorded once (a CUDA graph on the
// GPU, as the engine records decode steps) and replayed `replays` times per sample; the median of
// `samples` samples, each ended by comm.Barrier() (which waits for the device; its cost, spread
// over calls * replays all-reduces, is a small upward bias). Collective: every rank of `comm`
// must call it with the same arguments. Each rank returns its own measurement.
absl::StatusOr<double> MeasureAllReduceSeconds(Communicator& comm, int64_t count, DType dtype, Device device,
                                               int calls = 32, int replays = 8, int samples = 5);

}  // namespace chai

#endif  // CHAI_PARALLEL_COLLECTIVE_LATENCY_H_
