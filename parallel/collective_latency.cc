#include "parallel/collective_latency.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/status/status.h"
#include "kernels/step_graph.h"

namespace chai {

absl::StatusOr<double> MeasureAllReduceSeconds(Communicator& comm, int64_t count, DType dtype, Device device, int calls,
                                               int replays, int samples) {
  if (count < 1 || calls < 1 || replays < 1 || samples < 1) {
    return absl::InvalidArgumentError("MeasureAllReduceSeconds: count, calls, replays and samples must be >= 1");
  }
  // Zeros stay zeros however often they are summed in place.
  Tensor t = Tensor::Zeros({count}, dtype, device);
  absl::Status status;
  auto step = [&] {
    for (int i = 0; i < calls && status.ok(); ++i) status = comm.AllReduceSum(&t);
  };
  absl::StatusOr<std::unique_ptr<StepGraph>> graph = StepGraph::Record(device, step);
  if (!graph.ok()) return graph.status();
  if (!status.ok()) return status;  // an error while recording (CUDA) is every rank's error
  (*graph)->Replay();               // warm-up: first launches, NCCL's lazy set-up
  if (absl::Status s = comm.Barrier(); !s.ok()) return s;
  std::vector<double> per_call;
  for (int s = 0; s < samples; ++s) {
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < replays; ++r) (*graph)->Replay();
    if (absl::Status b = comm.Barrier(); !b.ok()) return b;
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    per_call.push_back(elapsed.count() / (static_cast<double>(calls) * replays));
  }
  if (!status.ok()) return status;  // on the CPU the calls run during the replays
  std::sort(per_call.begin(), per_call.end());
  return per_call[per_call.size() / 2];
}

}  // namespace chai
