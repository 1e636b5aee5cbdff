// Streaming reads on the GPU: which way of loading global memory keeps DRAM busiest?
//
// Why (issue 7): decode kernel 4's dense pass streams K/V through shared memory with every
// thread's 16-byte cp.async and keeps an H200's DRAM ~78% busy, where cuDNN's SDPA, on the same
// bytes and grid shape, keeps it ~96% busy; under Nsight Compute ours sends 1.5x the L2 tag
// requests and 3x the SM-to-L2 crossbar traffic per byte (benchmarks/results/attention-decode-h200.md).
// This driver isolates the load itself: each form below reads a buffer far larger than L2 once,
// into shared memory (or registers) and nothing else, so that the form that saturates DRAM can be
// found and then ported.
//
// Forms (one kernel each, so that ncu can pick them by name):
//   ldg         16-byte ld.global.nc.L1::no_allocate per thread into registers, a stage in flight;
//   cpasync     16-byte cp.async.cg (.L2::128B) per thread into a ring of stages, commit/wait groups;
//   cpasync_mbar the same arriving on each stage's mbarrier (kernel 4's dense pass);
//   bulk        warp 0's cp.async.bulk, one copy per page of a stage, into an mbarrier ring (kernel
//               4's CHAI passes);
//   tma         the same copies as tensor copies (cp.async.bulk.tensor over a 2-D map of 256-byte
//               rows) whose map asks L2 to promote its DRAM fetches to --tma-l2 bytes (0, 64, 128
//               or 256): does the fetch size, which plain bulk copies cannot set, move the rate?
// Patterns: `contig` (the buffer in order) or `shuffled` (4 KB pages in a random order, as a paged
// KV cache with blocks of 16 positions x 256 bytes stores one head's rows). Each CTA streams one
// contiguous logical span (one wave: CTAs per SM x SMs), as kernel 4's dense CTAs do.
//
// Usage: stream_bench [--gib 2] [--iters 5] [--page-kb 4] [--copy-kb 0] [--spin-ns 0] [--tma-l2 256]
//                     [--repeat 1] [--only FORM:PATTERN:CTAS_PER_SM]
// --repeat: the whole table that many times over the same buffer (forms compared in alternation:
// the same configuration moves by up to 15% between processes, with the buffer's placement).
// --copy-kb: the bulk form's copy size (1-32 KB, a divisor of the page; 0: one copy per page, or
// per stage when pages are larger), to see whether smaller copies keep DRAM busier.
// --spin-ns: each thread busy-waits that long on every stage before the slot is released, a
// stand-in for the attention math between refills (kernel 4 refills after a CTA-wide barrier).
// Prints a table: us per read of the buffer, GB/s and % of the copy bandwidth measured in the same
// run (read + write counted, as every floor here).
#include <cuda.h>  // CUtensorMap (encoded through the runtime's driver entry point: no -lcuda)
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/bandwidth.h"
#include "kernels/cuda/bulk_copy.cuh"

namespace {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // the primitives exist in sm_90 device code only
using chai::cuda::BulkCopyG2S;
using chai::cuda::CpAsyncMbarArrive;
using chai::cuda::MbarArriveExpectTx;
using chai::cuda::MbarInit;
using chai::cuda::MbarInitFence;
using chai::cuda::MbarWait;
#endif

constexpr int kThreads = 128;
constexpr int kMaxStages = 4;
constexpr int kMaxPieces = 16;  // 16-byte pieces per thread and stage: stages of up to 32 KB

enum Form : int { kLdg = 0, kCpAsync = 1, kCpAsyncMbar = 2, kBulk = 3, kTma = 4 };
constexpr int kForms = 5;
const char* const kFormNames[] = {"ldg", "cpasync", "cpasync_mbar", "bulk", "tma"};
constexpr int kRowBytes = 256;  // the tma form's map: rows of 128 16-bit elements (a head_dim-128 K/V row)

struct Args {
  const unsigned char* src;  // the buffer, pages of page_bytes
  const int32_t* perm;       // logical page -> physical page
  uint32_t* sink;            // one word per CTA (keeps the loads live)
  int64_t span;              // bytes per CTA (a multiple of stage_bytes)
  int stage_bytes;           // a multiple of page_bytes or a divisor of it, and of 16 * kThreads
  int page_bytes;
  int copy_bytes;            // the bulk form's copy size (0: min(stage, page))
  int stages;                // ring depth (shared-memory forms)
  int spin_ns;               // work per stage before its slot is released (a stand-in for attention's math)
};

// The global address of byte `off` of the logical stream.
__device__ __forceinline__ const unsigned char* Addr(const Args& a, int64_t off) {
  const int64_t page = off / a.page_bytes;
  return a.src + int64_t{__ldg(a.perm + page)} * a.page_bytes + off % a.page_bytes;
}

__device__ __forceinline__ uint32_t Smem(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Busy-waits about `ns` nanoseconds (the global nanosecond timer): the time a consumer
// spends on a stage before it lets the slot go.
__device__ __forceinline__ void Spin(int ns) {
  if (ns <= 0) return;
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < static_cast<uint64_t>(ns));
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ uint4 LdgStream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src))
               : "memory");
}
#endif

// Registers only: each thread loads its 16-byte pieces of a stage, all in flight together.
__global__ void __launch_bounds__(kThreads) StreamLdg(Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const int pieces = a.stage_bytes / (16 * kThreads);
  const int64_t base = int64_t{blockIdx.x} * a.span;
  uint32_t x = 0;
  for (int64_t s = 0; s < a.span; s += a.stage_bytes) {
    uint4 v[kMaxPieces];
#pragma unroll
    for (int k = 0; k < kMaxPieces; ++k) {
      if (k < pieces) v[k] = LdgStream(Addr(a, base + s + (int64_t{k} * kThreads + threadIdx.x) * 16));
    }
#pragma unroll
    for (int k = 0; k < kMaxPieces; ++k) {
      if (k < pieces) x ^= v[k].x ^ v[k].y ^ v[k].z ^ v[k].w;
    }
    Spin(a.spin_ns);
  }
  if (x == 0x9e3779b9u) a.sink[blockIdx.x] = x;
#endif
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// The ring's mbarriers, each completing a phase after `arrivals` arrivals (thread 0 sets them up;
// every thread meets at a barrier after).
__device__ __forceinline__ void InitRingBarriers(uint64_t* bars, int stages, uint32_t arrivals) {
  if (threadIdx.x == 0) {
    for (int i = 0; i < stages; ++i) MbarInit(Smem(&bars[i]), arrivals);
    MbarInitFence();
  }
  __syncthreads();
}

// This thread's pieces of stage t into ring slot t % stages, then its commit (or its arrival on
// the slot's mbarrier).
template <bool kMbar, int kPieces>
__device__ __forceinline__ void IssueCpAsync(Args a, int64_t base, int64_t t, unsigned char* ring,
                                             uint64_t* bars) {
  const int slot = static_cast<int>(t % a.stages);
  const uint32_t dst = Smem(ring + slot * a.stage_bytes);
#pragma unroll
  for (int k = 0; k < kPieces; ++k) {
    const int64_t off = (int64_t{k} * kThreads + threadIdx.x) * 16;
    CpAsync16(dst + static_cast<uint32_t>(off), Addr(a, base + t * a.stage_bytes + off));
  }
  if constexpr (kMbar) {
    CpAsyncMbarArrive(Smem(&bars[slot]));
  } else {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }
}
#endif

// cp.async into a ring: stage t goes to slot t % stages; the thread waits for its own groups and
// the CTA meets at a barrier before reading a slot and before reissuing it. kPieces: 16-byte
// pieces per thread and stage (stage_bytes / 2 KB).
template <bool kMbar, int kPieces>
__global__ void __launch_bounds__(kThreads) StreamCpAsync(Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char ring[];
  __shared__ uint64_t bars[kMaxStages];
  const int64_t base = int64_t{blockIdx.x} * a.span;
  const int64_t n = a.span / a.stage_bytes;
  if constexpr (kMbar) InitRingBarriers(bars, a.stages, kThreads);
  for (int64_t t = 0; t < min(n, int64_t{a.stages}); ++t) IssueCpAsync<kMbar, kPieces>(a, base, t, ring, bars);
  uint32_t x = 0;
  for (int64_t t = 0; t < n; ++t) {
    const int slot = static_cast<int>(t % a.stages);
    if constexpr (kMbar) {
      MbarWait(Smem(&bars[slot]), static_cast<uint32_t>((t / a.stages) & 1));
    } else {
      // Groups complete in order: at most (issued after t) groups may still be pending.
      const int64_t later = min(n, t + a.stages) - t - 1;
      if (later >= 2) {
        asm volatile("cp.async.wait_group 2;\n" ::: "memory");
      } else if (later == 1) {
        asm volatile("cp.async.wait_group 1;\n" ::: "memory");
      } else {
        asm volatile("cp.async.wait_group 0;\n" ::: "memory");
      }
      __syncthreads();
    }
    x ^= reinterpret_cast<const uint32_t*>(ring + slot * a.stage_bytes)[threadIdx.x];
    Spin(a.spin_ns);
    __syncthreads();  // every thread is done with the slot
    if (t + a.stages < n) IssueCpAsync<kMbar, kPieces>(a, base, t + a.stages, ring, bars);
  }
  if (x == 0x9e3779b9u) a.sink[blockIdx.x] = x;
#endif
}

// Warp 0 fills each stage with one bulk copy per page (or one per stage when pages are larger);
// lane 0 arms the stage's mbarrier with the stage's bytes. kTensor: the same copies as 2-D tensor
// copies through `map` (box: 128 elements x copy / 256 rows, at element 0 of the page's row), which
// carries its L2 promotion; plain copies ignore the map.
template <bool kTensor>
__global__ void __launch_bounds__(kThreads) StreamBulk(Args a, const __grid_constant__ CUtensorMap map) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char ring[];
  __shared__ uint64_t bars[kMaxStages];
  const int64_t base = int64_t{blockIdx.x} * a.span;
  const int64_t n = a.span / a.stage_bytes;
  const int copy = a.copy_bytes > 0 ? a.copy_bytes : min(a.stage_bytes, a.page_bytes);
  const int copies = a.stage_bytes / copy;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  InitRingBarriers(bars, a.stages, 1);
  const auto issue = [&](int64_t t) {
    const int slot = static_cast<int>(t % a.stages);
    const uint32_t bar = Smem(&bars[slot]);
    if (lane == 0) MbarArriveExpectTx(bar, static_cast<uint32_t>(a.stage_bytes));
    __syncwarp();
    for (int i = lane; i < copies; i += 32) {
      const int64_t off = int64_t{i} * copy;
      const unsigned char* src = Addr(a, base + t * a.stage_bytes + off);
      const uint32_t dst = Smem(ring + slot * a.stage_bytes) + static_cast<uint32_t>(off);
      if constexpr (kTensor) {
        const int row = static_cast<int>((src - a.src) / kRowBytes);
        asm volatile(
            "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
            "[%4];\n" ::"r"(dst),
            "l"(reinterpret_cast<uint64_t>(&map)), "r"(0), "r"(row), "r"(bar)
            : "memory");
      } else {
        BulkCopyG2S(dst, src, static_cast<uint32_t>(copy), bar);
      }
    }
  };
  if (warp == 0) {
    for (int64_t t = 0; t < min(n, int64_t{a.stages}); ++t) issue(t);
  }
  uint32_t x = 0;
  for (int64_t t = 0; t < n; ++t) {
    const int slot = static_cast<int>(t % a.stages);
    MbarWait(Smem(&bars[slot]), static_cast<uint32_t>((t / a.stages) & 1));
    x ^= reinterpret_cast<const uint32_t*>(ring + slot * a.stage_bytes)[threadIdx.x];
    Spin(a.spin_ns);
    __syncthreads();
    if (warp == 0 && t + a.stages < n) issue(t + a.stages);
  }
  if (x == 0x9e3779b9u) a.sink[blockIdx.x] = x;
#endif
}

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "stream_bench: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

struct Config {
  Form form;
  bool shuffled;
  int ctas_per_sm;
  int stage_bytes;
  int stages;
  int tma_l2 = 0;  // the tma form's L2 promotion, bytes (0: none)
};

// A 2-D map of `bytes` of 16-bit elements in rows of kRowBytes, boxes of `box_rows` whole rows,
// with the L2 promotion `l2` (0, 64, 128 or 256 bytes); exits with a message on failure.
CUtensorMap EncodeRowsMap(const void* base, int64_t bytes, int box_rows, int l2) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess || fn == nullptr) {
      std::fprintf(stderr, "stream_bench: the driver has no cuTensorMapEncodeTiled\n");
      std::exit(1);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  const CUtensorMapL2promotion promotion = l2 == 256  ? CU_TENSOR_MAP_L2_PROMOTION_L2_256B
                                           : l2 == 128 ? CU_TENSOR_MAP_L2_PROMOTION_L2_128B
                                           : l2 == 64  ? CU_TENSOR_MAP_L2_PROMOTION_L2_64B
                                                       : CU_TENSOR_MAP_L2_PROMOTION_NONE;
  CUtensorMap map{};
  const cuuint64_t dims[2] = {kRowBytes / 2, static_cast<cuuint64_t>(bytes / kRowBytes)};
  const cuuint64_t strides[1] = {kRowBytes};
  const cuuint32_t box[2] = {kRowBytes / 2, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 2, const_cast<void*>(base), dims, strides, box,
                            elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, promotion,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "stream_bench: cuTensorMapEncodeTiled failed (%d) for boxes of %d rows\n", static_cast<int>(r),
                 box_rows);
    std::exit(1);
  }
  return map;
}

// Microseconds for one read of the whole buffer (the median of `iters` launches after one).
double TimeConfig(const Config& c, const unsigned char* buf, int64_t bytes, int page_bytes, int copy_bytes,
                  const int32_t* perm_id, const int32_t* perm_shuf, uint32_t* sink, int sms, int iters, int spin_ns) {
  Args a{};
  a.src = buf;
  a.perm = c.shuffled ? perm_shuf : perm_id;
  a.sink = sink;
  a.page_bytes = page_bytes;
  a.copy_bytes = copy_bytes;
  a.stage_bytes = c.stage_bytes;
  a.stages = c.stages;
  a.spin_ns = spin_ns;
  const int ctas = c.ctas_per_sm * sms;
  a.span = bytes / ctas / c.stage_bytes * c.stage_bytes;
  const size_t smem = c.form == kLdg ? 0 : static_cast<size_t>(c.stages) * c.stage_bytes;
  const int copy = copy_bytes > 0 ? copy_bytes : std::min(c.stage_bytes, page_bytes);
  const CUtensorMap map = c.form == kTma ? EncodeRowsMap(buf, bytes, copy / kRowBytes, c.tma_l2) : CUtensorMap{};
  const auto launch = [&] {
    switch (c.form) {
      case kLdg: StreamLdg<<<ctas, kThreads, smem>>>(a); break;
      case kCpAsync:
        c.stage_bytes == (32 << 10) ? StreamCpAsync<false, 16><<<ctas, kThreads, smem>>>(a)
                                    : StreamCpAsync<false, 8><<<ctas, kThreads, smem>>>(a);
        break;
      case kCpAsyncMbar:
        c.stage_bytes == (32 << 10) ? StreamCpAsync<true, 16><<<ctas, kThreads, smem>>>(a)
                                    : StreamCpAsync<true, 8><<<ctas, kThreads, smem>>>(a);
        break;
      case kBulk: StreamBulk<false><<<ctas, kThreads, smem>>>(a, map); break;
      case kTma: StreamBulk<true><<<ctas, kThreads, smem>>>(a, map); break;
    }
    Check(cudaGetLastError(), "launch");
  };
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "event");
  Check(cudaEventCreate(&stop), "event");
  launch();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    Check(cudaEventRecord(start), "record");
    launch();
    Check(cudaEventRecord(stop), "record");
    Check(cudaEventSynchronize(stop), "sync");
    float t = 0.f;
    Check(cudaEventElapsedTime(&t, start, stop), "elapsed");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  const double read = static_cast<double>(a.span) * ctas;
  return ms[ms.size() / 2] * 1e3 * (static_cast<double>(bytes) / read);  // scaled to the whole buffer
}

// FORM:PATTERN:CTAS_PER_SM, e.g. cpasync:shuffled:2; false on a malformed spec.
bool ParseOnly(const std::string& spec, Form* form, bool* shuffled, int* per_sm) {
  const size_t a = spec.find(':'), b = a == std::string::npos ? a : spec.find(':', a + 1);
  if (b == std::string::npos) return false;
  const std::string f = spec.substr(0, a), p = spec.substr(a + 1, b - a - 1);
  int found = -1;
  for (int i = 0; i < kForms; ++i) {
    if (f == kFormNames[i]) found = i;
  }
  *per_sm = std::atoi(spec.c_str() + b + 1);
  if (found < 0 || (p != "contig" && p != "shuffled") || *per_sm < 1 || *per_sm > 4) return false;
  *form = static_cast<Form>(found);
  *shuffled = p == "shuffled";
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  double gib = 2.0;
  int iters = 5, page_kb = 4, copy_kb = 0, spin_ns = 0, tma_l2 = 256, repeat = 1;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--gib" && v != nullptr) {
      gib = std::atof(v), ++i;
    } else if (arg == "--iters" && v != nullptr) {
      iters = std::atoi(v), ++i;
    } else if (arg == "--page-kb" && v != nullptr) {
      page_kb = std::atoi(v), ++i;
    } else if (arg == "--tma-l2" && v != nullptr) {
      tma_l2 = std::atoi(v), ++i;
    } else if (arg == "--repeat" && v != nullptr) {
      repeat = std::atoi(v), ++i;
    } else if (arg == "--copy-kb" && v != nullptr) {
      copy_kb = std::atoi(v), ++i;
    } else if (arg == "--spin-ns" && v != nullptr) {
      spin_ns = std::atoi(v), ++i;
    } else if (arg == "--only" && v != nullptr) {
      only = v, ++i;
    } else {
      std::fprintf(stderr,
                   "usage: stream_bench [--gib 2] [--iters 5] [--page-kb 4] [--copy-kb 0] [--spin-ns 0] [--tma-l2 256] [--repeat 1] "
                   "[--only FORM:PATTERN:CTAS_PER_SM]\n");
      return 2;
    }
  }
  if (gib < 0.25 || gib > 64 || iters < 1 || iters > 1000 || spin_ns < 0 || spin_ns > 100000 ||
      (page_kb != 4 && page_kb != 8 && page_kb != 16 && page_kb != 32 && page_kb != 64) || copy_kb < 0 ||
      copy_kb > 32 || (copy_kb > 0 && (page_kb % copy_kb != 0 || (copy_kb & (copy_kb - 1)) != 0)) ||
      (tma_l2 != 0 && tma_l2 != 64 && tma_l2 != 128 && tma_l2 != 256) || repeat < 1 || repeat > 20) {
    std::fprintf(stderr, "stream_bench: --gib in [0.25, 64], --iters in [1, 1000], --spin-ns in [0, 100000], "
                         "--page-kb 4, 8, 16, 32 or 64, --copy-kb 0 or a power of two <= 32 dividing the page, "
                         "--tma-l2 0, 64, 128 or 256, --repeat in [1, 20]\n");
    return 2;
  }
  Form only_form = kLdg;
  bool only_shuffled = false;
  int only_per_sm = 0;
  if (!only.empty() && !ParseOnly(only, &only_form, &only_shuffled, &only_per_sm)) {
    std::fprintf(stderr, "stream_bench: --only wants FORM:PATTERN:CTAS_PER_SM (forms ldg, cpasync, cpasync_mbar, bulk, tma; "
                         "patterns contig, shuffled; 1-4 CTAs per SM)\n");
    return 2;
  }
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "stream_bench: no CUDA device is visible\n");
    return 1;
  }
  cudaDeviceProp prop{};
  Check(cudaGetDeviceProperties(&prop, 0), "properties");
  if (prop.major < 9) {
    std::fprintf(stderr, "stream_bench: needs sm_90 (cp.async.bulk, mbarrier transactions); this is sm_%d%d\n",
                 prop.major, prop.minor);
    return 1;
  }
  const int page_bytes = page_kb << 10;
  const int64_t bytes = static_cast<int64_t>(gib * (1 << 30)) / page_bytes * page_bytes;
  unsigned char* buf = nullptr;
  Check(cudaMalloc(&buf, static_cast<size_t>(bytes)), "allocating the buffer");
  Check(cudaMemset(buf, 1, static_cast<size_t>(bytes)), "memset");
  const int64_t pages = bytes / page_bytes;
  std::vector<int32_t> id(static_cast<size_t>(pages)), shuf(static_cast<size_t>(pages));
  std::iota(id.begin(), id.end(), 0);
  shuf = id;
  std::shuffle(shuf.begin(), shuf.end(), std::mt19937(7));
  int32_t *perm_id = nullptr, *perm_shuf = nullptr;
  uint32_t* sink = nullptr;
  Check(cudaMalloc(&perm_id, id.size() * 4), "allocating");
  Check(cudaMalloc(&perm_shuf, id.size() * 4), "allocating");
  Check(cudaMalloc(&sink, 4096 * 4), "allocating");
  Check(cudaMemcpy(perm_id, id.data(), id.size() * 4, cudaMemcpyHostToDevice), "copy");
  Check(cudaMemcpy(perm_shuf, shuf.data(), shuf.size() * 4, cudaMemcpyHostToDevice), "copy");
  for (const auto k : {StreamCpAsync<false, 16>, StreamCpAsync<true, 16>, StreamCpAsync<false, 8>,
                       StreamCpAsync<true, 8>}) {
    Check(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 << 10), "smem attribute");
  }
  for (const auto k : {StreamBulk<false>, StreamBulk<true>}) {
    Check(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 << 10), "smem attribute");
  }

  const double copy_bw = chai::MeasureCopyBandwidth(chai::Device::kCuda, size_t{1} << 30);
  std::printf("device: %s, %d SMs, L2 %d MB; buffer %.2f GiB in %d KB pages; bulk copies of %s; %d ns of work per stage; copy bandwidth "
              "(1 GiB D2D, read+write) %.0f GB/s\n\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, gib, page_kb,
              copy_kb > 0 ? (std::to_string(copy_kb) + " KB").c_str() : "a page (at most a stage)", spin_ns, copy_bw / 1e9);
  std::printf("| form | pattern | CTAs/SM | stage KB | stages | us | GB/s | %% of copy |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
  std::vector<Config> configs;
  for (int f = 0; f < kForms; ++f) {
    for (bool shuffled : {false, true}) {
      for (int per_sm : {1, 2, 4}) {
        // Stages of 32 KB in rings of 3 at 1-2 CTAs per SM (kernel 4's 96 KB), of 16 KB at 4; ldg
        // keeps one stage in registers. The tma form with each L2 promotion (--only: --tma-l2's).
        const int stage = per_sm == 4 ? 16 << 10 : 32 << 10;
        const std::vector<int> promotions = f != kTma ? std::vector<int>{0}
                                            : only.empty() ? std::vector<int>{0, 128, 256}
                                                           : std::vector<int>{tma_l2};
        for (int l2 : promotions) configs.push_back({static_cast<Form>(f), shuffled, per_sm, stage, f == kLdg ? 1 : 3, l2});
      }
    }
  }
  for (int round = 0; round < repeat; ++round) {
    for (const Config& c : configs) {
      if (!only.empty() && (c.form != only_form || c.shuffled != only_shuffled || c.ctas_per_sm != only_per_sm)) continue;
      if (c.stage_bytes % page_bytes != 0 && page_bytes % c.stage_bytes != 0) continue;
      if ((c.form == kBulk || c.form == kTma) && (copy_kb << 10) > c.stage_bytes) continue;
      const double us = TimeConfig(c, buf, bytes, page_bytes, copy_kb << 10, perm_id, perm_shuf, sink,
                                   prop.multiProcessorCount, iters, spin_ns);
      const double gbs = static_cast<double>(bytes) / (us * 1e-6) / 1e9;
      const std::string name =
          c.form == kTma ? "tma, L2 " + (c.tma_l2 > 0 ? std::to_string(c.tma_l2) + " B" : std::string("none"))
                         : kFormNames[c.form];
      std::printf("| %s | %s | %d | %d | %d | %.1f | %.0f | %.1f%% |\n", name.c_str(), c.shuffled ? "shuffled" : "contig",
                  c.ctas_per_sm, c.stage_bytes >> 10, c.stages, us, gbs, 100.0 * gbs * 1e9 / copy_bw);
    }
  }
  cudaFree(buf);
  cudaFree(perm_id);
  cudaFree(perm_shuf);
  cudaFree(sink);
  return 0;
}
