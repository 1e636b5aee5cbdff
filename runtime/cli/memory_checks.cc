#include "runtime/cli/memory_checks.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_format.h"
#include "kernels/device_info.h"
#include "runtime/model_weights.h"

namespace chai {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

}  // namespace

absl::Status CheckWeightsFit(const std::string& model, const ModelConfig& config, int world, int local_ranks,
                             DType dtype, Device device) {
  const double need = static_cast<double>(MinWeightBytesPerRank(config, world, dtype));
  if (device == Device::kCuda) {
    const int64_t free_bytes = FreeDeviceMemory();
    if (free_bytes <= 0 || need <= free_bytes) return absl::OkStatus();
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s needs at least %.1f GiB of weights per GPU at %d rank(s) but this GPU has %.1f GiB "
                        "free: run more ranks, one per GPU (launch/mpirun.sh)",
                        model, need / kGiB, world, free_bytes / kGiB));
  }
  const int64_t available = AvailableHostMemory();
  const int ranks = std::max(local_ranks, 1);
  if (available <= 0 || need * ranks <= available) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrFormat("%s needs at least %.1f GiB of %s weights per rank (%d on this host) but the host has %.1f GiB "
                      "available: run it on GPUs (--device cuda) or over more hosts",
                      model, need / kGiB, DTypeName(dtype), ranks, available / kGiB));
}

absl::Status CheckKvCacheFits(double blocks, int64_t block_bytes, Device device, int local_ranks,
                              const std::string& what) {
  const double bytes = blocks * static_cast<double>(block_bytes);
  if (!(blocks <= std::numeric_limits<int32_t>::max())) {  // also inf and NaN
    return absl::ResourceExhaustedError(
        absl::StrFormat("the KV cache for %s would need more than %d blocks of %d bytes, the most a pool can number",
                        what, std::numeric_limits<int32_t>::max(), block_bytes));
  }
  if (device == Device::kCuda) {
    const int64_t free_bytes = FreeDeviceMemory();
    if (free_bytes <= 0 || bytes <= free_bytes) return absl::OkStatus();
    return absl::ResourceExhaustedError(
        absl::StrFormat("the KV cache for %s needs %.2f GiB but this GPU has %.2f GiB free after the weights: "
                        "lower --kv-cache-gb",
                        what, bytes / kGiB, free_bytes / kGiB));
  }
  const int64_t available = AvailableHostMemory();
  const int ranks = std::max(local_ranks, 1);
  if (available <= 0 || bytes * ranks <= available) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrFormat("the KV cache for %s needs %.2f GiB per rank (%d on this host) but the host has %.2f GiB "
                      "available: lower --batch or the lengths, or set --kv-cache-gb",
                      what, bytes / kGiB, ranks, available / kGiB));
}

}  // namespace chai
