#include "runtime/cli/memory_checks.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_format.h"
#include "kernels/device_info.h"
#include "runtime/model_weights.h"

namespace chai {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Whether `bytes` per rank fit where they go: the GPU's free memory, or the host's available
// memory shared by its `local_ranks` ranks. Sets *have (GiB there) when they do not; an amount
// that is not known passes.
bool Fits(double bytes, Device device, int local_ranks, double* have) {
  const int ranks = device == Device::kCuda ? 1 : std::max(local_ranks, 1);
  const int64_t there = device == Device::kCuda ? FreeDeviceMemory() : AvailableHostMemory();
  *have = static_cast<double>(there) / kGiB;
  return there <= 0 || bytes * ranks <= static_cast<double>(there);
}

}  // namespace

absl::Status CheckWeightsFit(const std::string& model, const ModelConfig& config, int world, int local_ranks,
                             DType dtype, Device device) {
  const double need = static_cast<double>(MinWeightBytesPerRank(config, world, dtype));
  double have = 0;
  if (Fits(need, device, local_ranks, &have)) return absl::OkStatus();
  if (device == Device::kCuda) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s needs at least %.1f GiB of weights per GPU at %d rank(s) but this GPU has %.1f GiB "
                        "free: run more ranks, one per GPU (launch/mpirun.sh)",
                        model, need / kGiB, world, have));
  }
  return absl::ResourceExhaustedError(
      absl::StrFormat("%s needs at least %.1f GiB of %s weights per rank (%d on this host) but the host has %.1f GiB "
                      "available: run it on GPUs (--device cuda) or over more hosts",
                      model, need / kGiB, DTypeName(dtype), std::max(local_ranks, 1), have));
}

absl::Status CheckKvCacheFits(double blocks, int64_t block_bytes, Device device, int local_ranks,
                              const std::string& what) {
  if (!(blocks <= std::numeric_limits<int32_t>::max())) {  // also inf and NaN
    return absl::ResourceExhaustedError(
        absl::StrFormat("the KV cache for %s would need more than %d blocks of %d bytes, the most a pool can number",
                        what, std::numeric_limits<int32_t>::max(), block_bytes));
  }
  const double bytes = blocks * static_cast<double>(block_bytes);
  double have = 0;
  if (Fits(bytes, device, local_ranks, &have)) return absl::OkStatus();
  if (device == Device::kCuda) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("the KV cache for %s needs %.2f GiB but this GPU has %.2f GiB free after the weights: "
                        "lower --kv-cache-gb",
                        what, bytes / kGiB, have));
  }
  return absl::ResourceExhaustedError(
      absl::StrFormat("the KV cache for %s needs %.2f GiB per rank (%d on this host) but the host has %.2f GiB "
                      "available: lower --batch or the lengths, or set --kv-cache-gb",
                      what, bytes / kGiB, std::max(local_ranks, 1), have));
}

}  // namespace chai
