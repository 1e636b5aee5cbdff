// Measured memory bandwidth, the denominator of every performance floor we report.
#ifndef CHAI_KERNELS_BANDWIDTH_H_
#define CHAI_KERNELS_BANDWIDTH_H_

#include <cstddef>

#include "kernels/tensor.h"

namespace chai {

// Copy bandwidth of `device` memory in bytes/s, counting bytes read plus bytes written (the
// memory traffic), from the fastest of several copies of a `bytes`-sized buffer after a few
// untimed ones (device-to-device on CUDA, memcpy on the host).
double MeasureCopyBandwidth(Device device, size_t bytes);

// The time to read `bytes` once at the measured copy rate. A copy moves each byte twice (read
// and write), so reading alone at the same memory throughput takes bytes / copy_bandwidth.
inline double FloorSeconds(double bytes, double copy_bandwidth) { return bytes / copy_bandwidth; }

}  // namespace chai

#endif  // CHAI_KERNELS_BANDWIDTH_H_
