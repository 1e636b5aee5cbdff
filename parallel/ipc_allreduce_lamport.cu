// The flag-free one-shot all-reduce (CHAI_IPC_ALLREDUCE_ALGO=lamport): the data is its own flag.
//
// Every receive slot holds a sentinel value that no message element can have (negative zero in
// fp16/bf16, the 32-bit pattern 0x80008000 in fp32) whenever no message is in it. Rank r's call
// with epoch e (per block, as in the pull kernel: the grid is fixed, so every block of every rank
// counts the same calls) uses half p = e & 1 of the receive area:
//  1. Every block writes its groups of `in` into slot r of half p on every peer (posted 16-byte
//     NVLink stores; an element equal to the sentinel is sent as the nearest other value, see
//     NotSentinel). Its own slot is not written: the sum reads this rank's part from `in`.
//  2. The same thread then polls its groups of slot q of half p in local memory (volatile loads,
//     so every poll reaches L2, where the peers' stores land) until no element of the group is
//     the sentinel, sums slots 0..W-1 in rank order (like the other kernels) and stores the
//     sentinel back into the groups it read.
// No flag, no fence, no barrier: one posted write from each peer, seen as soon as it lands.
// An element is stored whole (16-byte stores never tear below 2 bytes), so a group without a
// sentinel holds exactly what the peer sent, whichever of its bytes arrived first.
//
// Why a peer cannot overwrite a slot before this rank has read and reset it: rank q writes slot q
// of half p here in calls e and e + 2 only. Its call e + 2 starts after its call e + 1 ended,
// which needed this rank's data of call e + 1, written by this rank's call e + 1, which started
// after its call e (the reads and resets of half p) had completed. Kernel completion makes those
// resets visible before anything this rank does afterwards. So two halves suffice, and nothing
// depends on host state: graph replays keep every rank in step.
#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "parallel/ipc_allreduce_groups.cuh"
#include "parallel/ipc_allreduce_kernel.h"
#include "parallel/ipc_lamport.cuh"

namespace chai::ipc {
namespace {

using cuda::kVec16;

template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    LamportAllReduce(Peers peers, char* self, int rank, size_t half, const T* in, T* out, int64_t n) {
  constexpr int N = kVec16<T>;
  static_assert(sizeof(Vec<T, N>) == 16, "one group is one 16-byte access");
  __shared__ uint64_t block_epoch;
  if (threadIdx.x == 0) {
    uint64_t* const epochs = reinterpret_cast<uint64_t*>(self + kEpochsOffset);
    block_epoch = epochs[blockIdx.x] + 1;
    epochs[blockIdx.x] = block_epoch;  // read by no one else; the next call of this block is stream-ordered
  }
  __syncthreads();
  const size_t data = kDataOffset + (block_epoch & 1) * W * half;
  const int64_t groups = (n + N - 1) / N;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t start = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  const bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;

  char* dst[W];  // slot `rank` of half p on every rank (own entry unused)
#pragma unroll
  for (int q = 0; q < W; ++q) dst[q] = peers.base[q] + data + rank * half;
  for (int64_t g = start; g < groups; g += stride) {
    // Missing elements of a partial last group travel as zeros; the receiver ignores them.
    const uint4 v = NotSentinel<T>(AsBits<T, N>(LoadGroup<T, N>(in, g, n, in_aligned)));
#pragma unroll
    for (int q = 0; q < W; ++q) {
      if (q != rank) StoreVolatile(dst[q] + g * 16, v);
    }
  }

  for (int64_t g = start; g < groups; g += stride) {
    const int valid = static_cast<int>(n - g * N < N ? n - g * N : N);
    Vec<T, N> v[W];
#pragma unroll
    for (int q = 0; q < W; ++q) {
      if (q == rank) {
        v[q] = FromBits<T, N>(NotSentinel<T>(AsBits<T, N>(LoadGroup<T, N>(in, g, n, in_aligned))));
        continue;
      }
      v[q] = ReceiveGroup<T, N>(self + data + q * half + g * 16, valid);
    }
    StoreGroup<T, N>(out, g, n, out_aligned, RankOrderSum<T, N, W>(v));
  }
}

}  // namespace

cudaError_t LaunchLamportAllReduce(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                                   void* out, int64_t count, DType dtype, cudaStream_t stream) {
  if (blocks < 1 || blocks > kMaxBlocks || rank < 0 || rank >= size) return cudaErrorInvalidValue;
  auto launch = [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(in);
    T* dst = static_cast<T*>(out);
    switch (size) {
#define CHAI_LAMPORT_CASE(W)                                                                                   \
  case W:                                                                                                      \
    LamportAllReduce<T, W><<<blocks, kThreads, 0, stream>>>(peers, peers.base[rank], rank, half, src, dst, count); \
    break;
      CHAI_LAMPORT_CASE(2)
      CHAI_LAMPORT_CASE(3)
      CHAI_LAMPORT_CASE(4)
      CHAI_LAMPORT_CASE(5)
      CHAI_LAMPORT_CASE(6)
      CHAI_LAMPORT_CASE(7)
      CHAI_LAMPORT_CASE(8)
#undef CHAI_LAMPORT_CASE
      default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
  };
  switch (dtype) {
    case DType::kF32: return launch(float{});
    case DType::kF16: return launch(__half{});
    case DType::kBF16: return launch(__nv_bfloat16{});
    default: return cudaErrorInvalidValue;
  }
}

namespace {

__global__ void FillWords(uint32_t* p, size_t words, uint32_t value) {
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < words; i += size_t{gridDim.x} * blockDim.x) {
    p[i] = value;
  }
}

}  // namespace

cudaError_t FillLamportReceiveArea(void* allocation, size_t bytes, cudaStream_t stream) {
  if (bytes < kDataOffset || (bytes - kDataOffset) % 4 != 0) return cudaErrorInvalidValue;
  const size_t words = (bytes - kDataOffset) / 4;
  FillWords<<<256, 256, 0, stream>>>(reinterpret_cast<uint32_t*>(static_cast<char*>(allocation) + kDataOffset), words,
                                     kSentinelWord);
  return cudaGetLastError();
}

}  // namespace chai::ipc
