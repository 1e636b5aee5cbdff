// Measured memory bandwidth, the denominator of every performance floor we report.
#ifndef CHAI_KERNELS_BANDWIDTH_H_
#define CHAI_KERNELS_BANDWIDTH_H_

#include <cstddef>

#include "kernels/tensor.h"

namespace chai {

// Copy bandwidth of `device` memory in bytes/s, counting bytes read plus bytes written (the
// memory traffic), from the fastest of several copies of a `bytes`-sized buffer after a few
// untimed ones (device-to-device on CUDA, memcpy on the host). On CUDA, where two buffers of
// `bytes` do not fit, the largest halving down to 64 MiB that does; 0 where none does.
// Larger copies measure higher and steadier on an H200 (benchmarks/results/stream-h200.md: 1 GiB
// 4200-4261 GB/s, 256 MiB 4054-4154 in the same process): a copy's fixed start is a smaller
// share of it. Floors of the decode step use 1 GiB on CUDA.
// `measured`, when given, receives the copy size used (bytes, or the halving that fit; 0 when none).
double MeasureCopyBandwidth(Device device, size_t bytes, size_t* measured = nullptr);

#ifdef CHAI_WITH_CUDA
// MeasureCopyBandwidth's timing on two device buffers of `bytes` that the caller owns (to tell
// where a buffer lands from when it is copied: benchmarks/copy_bandwidth_bench.cc).
double CudaCopyBandwidthOn(void* dst, const void* src, size_t bytes);
#endif

// The time to read `bytes` once at the measured copy rate. A copy moves each byte twice (read
// and write), so reading alone at the same memory throughput takes bytes / copy_bandwidth.
inline double FloorSeconds(double bytes, double copy_bandwidth) { return bytes / copy_bandwidth; }

}  // namespace chai

#endif  // CHAI_KERNELS_BANDWIDTH_H_
