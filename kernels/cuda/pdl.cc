// The cached PDL switch (pdl.h).
#include "kernels/cuda/pdl.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_check.h"

namespace chai::cuda {
namespace {

// -1: not read yet; 0: off; 1: on.
std::atomic<int> pdl_state{-1};

int ReadPdlSetting() {
  const char* env = std::getenv("CHAI_PDL");
  if (env == nullptr || std::strcmp(env, "1") != 0) return 0;
  int device = 0, major = 0;
  CHAI_CUDA_CHECK(cudaGetDevice(&device));
  CHAI_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 9 ? 1 : 0;
}

}  // namespace

bool PdlEnabled() {
  int state = pdl_state.load(std::memory_order_relaxed);
  if (state < 0) {
    state = ReadPdlSetting();
    pdl_state.store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

void ReloadPdlSetting() { pdl_state.store(-1, std::memory_order_relaxed); }

}  // namespace chai::cuda
