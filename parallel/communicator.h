// Collective operations among the ranks of one tensor-parallel group.
//
// The engine calls these after row-parallel layers (all-reduce), for vocabulary-parallel
// logits (all-gather) and to agree on sampled tokens (broadcast). Implementations: single
// process (no-ops), MPI over host tensors (CPU backend) and NCCL over device tensors.
#ifndef CHAI_PARALLEL_COMMUNICATOR_H_
#define CHAI_PARALLEL_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/l2_prefetch.h"
#include "kernels/peer_mirror.h"
#include "kernels/tensor.h"

namespace chai {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: every rank ends with the element-wise sum over ranks. fp32 (and fp16/bf16 on NCCL).
  virtual absl::Status AllReduceSum(Tensor* tensor) = 0;
  // `local` is [rows, cols] on every rank; `out` is [rows, cols * size], rank r's block in
  // columns [r*cols, (r+1)*cols) (how vocabulary-parallel logits are put back together).
  virtual absl::Status AllGatherColumns(const Tensor& local, Tensor* out) = 0;
  // The all-reduce of a row-parallel layer's partial output with the residual add and norm that
  // follow it: partial is all-reduced (in place, or not at all when fused), x += partial, then
  // out = RMSNorm(x) * weight (`rms`) or LayerNorm(x) * weight + bias; out may alias x. This
  // default composes AllReduceSum with ops::AddRmsNorm / AddLayerNorm; a backend may fuse them.
  // `then`: the next GEMV's first weight bytes to fetch into L2 meanwhile (a speed hint, like
  // the norm ops'; empty: none).
  virtual absl::Status AllReduceAddNorm(Tensor* partial, Tensor* x, const Tensor& weight, const Tensor& bias,
                                        float eps, bool rms, Tensor* out, const L2Prefetch& then);
  // A row-parallel layer's producer may push its [rows, cols] partial into the peers itself
  // (ops::LinearFused with a mirror) where this backend's AllReduceAddNorm of that shape is the
  // flag-free IPC kernel: then true, with the destination in `mirror` (the same answer on every
  // rank), and the call after the producer must be AllReducePushedAddNorm, which only receives.
  // False by default (no backend but the GPU one pushes).
  virtual bool AddNormMirror(int64_t rows, int64_t cols, DType dtype, PeerMirror* mirror) const;
  virtual absl::Status AllReducePushedAddNorm(Tensor* partial, Tensor* x, const Tensor& weight, const Tensor& bias,
                                              float eps, bool rms, Tensor* out, const L2Prefetch& then);
  // In place: every rank receives root's bytes.
  virtual absl::Status Broadcast(Tensor* tensor, int root) = 0;
  virtual absl::Status Barrier() = 0;
  // The backend and how it all-reduces, for logs and benchmark headers ("nccl, ipc one-shot
  // <= 524288 bytes").
  virtual std::string Describe() const = 0;
  // Where the collectives' tensors must live: the host for MPI and the single process, the GPU
  // for NCCL. Callers with host data (reports, not the engine) move it there and back.
  virtual Device tensor_device() const { return Device::kCpu; }
};

// AllGatherColumns' operand checks, the same in every backend: `local` passes `check_place` (the
// backend's device) and has rank >= 1; an undefined `out` is allocated on `device`, a defined one
// must pass `check_place`, have local's dtype and shape [.., cols * world] and not alias local.
// Returns local's rows (elements / cols; 0 when cols is 0).
absl::StatusOr<int64_t> PrepareGatherColumns(const Tensor& local, int world, Device device,
                                             absl::FunctionRef<absl::Status(const Tensor&)> check_place, Tensor* out);

// World size 1: every collective is the identity.
std::unique_ptr<Communicator> MakeSingleCommunicator();

}  // namespace chai

#endif  // CHAI_PARALLEL_COMMUNICATOR_H_
