// Where a producer kernel writes its output a second time so that a flag-free (Lamport) IPC
// all-reduce of that output need not push it itself: the receive slots of this rank on every
// peer (parallel/ipc_allreduce_norm.cu's protocol). parallel/ fills it (IpcAllReduce::Mirror);
// kernels read it (the decode GEMV's kStore epilogue, ops::LinearFused with `mirror`). Plain
// data: no CUDA headers.
//
// Group g (16 bytes, elements g * 8 .. g * 8 + 7 of the row-major output, 2-byte types) of row t
// goes to base[q] + offset + ((epochs[t % reader_blocks] + 1) & 1) * parity_stride + g * 16 for
// every rank q != rank, with negative zero sent as positive zero (the slots' sentinel): the half
// that the all-reduce's next call, whose block t % reader_blocks increments that epoch, reads.
#ifndef CHAI_KERNELS_PEER_MIRROR_H_
#define CHAI_KERNELS_PEER_MIRROR_H_

#include <cstddef>

namespace chai {

struct PeerMirror {
  static constexpr int kMaxRanks = 8;
  void* base[kMaxRanks] = {};     // every rank's receive allocation, mapped into this process
  const void* epochs = nullptr;   // this rank's per-block call counters (uint64_t [reader_blocks])
  size_t offset = 0;              // this rank's slot in the first parity half, from base
  size_t parity_stride = 0;       // bytes from the first parity half to the second
  int world = 0, rank = 0, reader_blocks = 0;
};

}  // namespace chai

#endif  // CHAI_KERNELS_PEER_MIRROR_H_
