// PrefetchToL2 and JoinPrefetches (kernels/ops.h): a fire-and-forget L2 prefetch kernel on a side
// stream, forked from and joined back into CurrentStream() with events.
//
// Why a side stream: the prefetch is meant to run beside the latency-bound kernels between two
// weight-streaming GEMVs (split + append, attention, a norm), which leave DRAM idle. On the ops'
// own stream it would run before them, not beside them. The fork (an event recorded on the current
// stream, waited for by the side stream) and the join (the reverse) work eagerly and under stream
// capture alike: captured, they become a branch of the graph (kernels/step_graph.cc), which must
// rejoin the origin stream before the capture ends; the caller joins before the GEMV that reads
// what was prefetched, and in any case before its recorded function returns.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"

namespace chai::cuda {
namespace {

// One prefetch instruction covers a chunk: 32 KiB keeps the instruction count small (512 for
// 16 MiB, one per thread of the grid below) while still splitting a few MiB over many threads.
constexpr int64_t kChunkBytes = int64_t{32} << 10;
// One warp per CTA and at most 16 CTAs: the instructions do not wait for their bytes, so the
// kernel ends as soon as it has issued them; the CTAs only spread the issue over 16 SMs' copy
// engines while taking one warp slot each from the kernels that run beside it.
constexpr int kThreads = 32;
constexpr int64_t kMaxBlocks = 16;

// Issues L2 prefetches of [begin, begin + bytes), begin 16-byte aligned, bytes a multiple of 16.
__global__ void PrefetchL2Kernel(const char* begin, int64_t bytes) {
  const int64_t chunks = (bytes + kChunkBytes - 1) / kChunkBytes;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; c < chunks; c += stride) {
    const char* p = begin + c * kChunkBytes;
    const int64_t left = bytes - c * kChunkBytes;
    const int64_t n = left < kChunkBytes ? left : kChunkBytes;  // a multiple of 16
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // The copy engine fetches the whole range into L2 (PTX ISA 8.0, sm_90); nothing waits for it.
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(static_cast<uint32_t>(n)));
#elif defined(__CUDA_ARCH__)
    // Older GPUs: one prefetch per 128-byte line.
    for (int64_t off = 0; off < n; off += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
#endif
  }
}

// The side stream and the fork and join events, created at the first prefetch and never
// destroyed (as CurrentStream() is). Creating them is not stream work, so it is safe inside a
// capture; the capture mode is relaxed around it so that a first prefetch recorded in a graph may
// create them.
struct SideStream {
  cudaStream_t stream;
  cudaEvent_t fork, join;
};

// A prefetch was issued that the current stream has not joined yet. Apart from Side(), so that
// JoinPrefetches touches no CUDA state (it runs on every Linear, CPU engines included) until a
// prefetch has been issued. One process drives one stream from one thread, as the ops assume.
bool outstanding = false;

SideStream& Side() {
  static SideStream side = [] {
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    CHAI_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    SideStream s;
    // The highest priority: the prefetch CTAs take SMs ahead of CTAs still queued on the ops'
    // stream, so the prefetches start at the fork. Non-blocking: the side stream is ordered by
    // its events only, never by the legacy default stream.
    int least = 0, greatest = 0;
    CHAI_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CHAI_CUDA_CHECK(cudaStreamCreateWithPriority(&s.stream, cudaStreamNonBlocking, greatest));
    CHAI_CUDA_CHECK(cudaEventCreateWithFlags(&s.fork, cudaEventDisableTiming));
    CHAI_CUDA_CHECK(cudaEventCreateWithFlags(&s.join, cudaEventDisableTiming));
    CHAI_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    return s;
  }();
  return side;
}

}  // namespace

void PrefetchToL2(const Tensor& t, int64_t bytes) {
  // The instruction wants a 16-byte-aligned start and a multiple of 16 bytes: round the start up
  // and the end down (a view may start anywhere; the dropped ends are < 16 bytes each).
  const auto first = reinterpret_cast<uintptr_t>(t.raw());
  const uintptr_t begin = (first + 15) & ~uintptr_t{15};
  const uintptr_t end = (first + static_cast<uintptr_t>(bytes)) & ~uintptr_t{15};
  if (end <= begin) return;
  const auto n = static_cast<int64_t>(end - begin);
  const int64_t chunks = (n + kChunkBytes - 1) / kChunkBytes;
  const auto blocks = static_cast<unsigned>(std::min(kMaxBlocks, (chunks + kThreads - 1) / kThreads));
  SideStream& side = Side();
  CHAI_CUDA_CHECK(cudaEventRecord(side.fork, CurrentStream()));
  CHAI_CUDA_CHECK(cudaStreamWaitEvent(side.stream, side.fork, 0));
  PrefetchL2Kernel<<<blocks, kThreads, 0, side.stream>>>(reinterpret_cast<const char*>(begin), n);
  CHAI_CUDA_CHECK_LAUNCH();
  CHAI_CUDA_CHECK(cudaEventRecord(side.join, side.stream));
  outstanding = true;
}

void JoinPrefetches() {
  if (!outstanding) return;
  CHAI_CUDA_CHECK(cudaStreamWaitEvent(CurrentStream(), Side().join, 0));
  outstanding = false;
}

}  // namespace chai::cuda
