// Kernel boundaries at batch 1: what a decode step loses between its weight-streaming GEMVs.
//
// Why (issue 6): LLaMA-7B at batch 1 runs 1.21x its bandwidth floor on an H200 (1.10x wanted), and
// the per-kernel profile puts the excess in each kernel's fixed cost (start-up, tail, launch), not
// in its bytes (benchmarks/results/llama-7b-tp1-h200.md). Every way of hiding a boundary between
// separate kernels tried so far (PDL, L2 prefetch of the next weights, weights loaded before the
// PDL wait) gained nothing. The remaining design is a persistent kernel: every CTA resident for
// the whole chain, a grid barrier where a GEMV needs the previous one's output, and the next
// GEMV's first weights requested before that barrier (they do not depend on it). This driver
// measures that design's gain on the GEMVs alone, before any of it is built into the engine.
//
// The chain: `--layers` repetitions of LLaMA-7B's four decode GEMVs (Q|K|V 4096 -> 12288, o 4096
// -> 4096, gate|up 4096 -> 22016, down 11008 -> 4096; fp16 weights, fp32 sums); GEMV i+1 reads
// x[k] = y_i[k mod N_i], so each depends on the whole previous output. Forms, all with the same
// GEMV code (a warp per kRows rows, 16-byte loads, kUnroll in flight per row, x in shared memory)
// and the same grid (every CTA resident), so that they differ only in their boundaries:
//   launches    one kernel per GEMV, the chain captured in a CUDA graph (what the engine does);
//   persistent  one kernel for the chain, a grid barrier between GEMVs;
//   preload     persistent, and each warp loads its first weights of GEMV i+1 into registers
//               before the barrier;
//   L2 prefetch persistent, those bytes prefetched into L2 (cp.async.bulk.prefetch) instead.
// The forms' final outputs must agree bit for bit, and the first GEMV must match a CPU reference
// (exit 1 otherwise). Prints us per chain, GB/s on the weight bytes, % of the copy bandwidth
// measured in the same run (read + write counted, as every floor here), and us per GEMV beyond
// the floor. Then three references: the same GEMVs without their dependency (each reads x0, no
// barrier: the streaming bound of this GEMV code), and the boundaries alone (empty launches;
// grid barriers with nothing between them), in us per boundary.
//
// Usage: boundary_bench [--layers 32] [--iters 10]
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/bandwidth.h"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 2;    // rows per warp at a time
constexpr int kUnroll = 4;  // 16-byte chunks per row and lane in flight
constexpr int kMaxK = 11008;
constexpr int kBarrierStride = 32;  // words: count and gen in separate 128-byte lines

// What the persistent kernel does between (or instead of) its grid barriers.
enum class Phase : int {
  kChain,        // the dependent chain: barrier, x from the previous output, the GEMV
  kPreload,      // the same, each warp's first weights of the next GEMV loaded into registers before the barrier
  kPrefetch,     // the same, those bytes prefetched into L2 instead
  kBarriers,     // the barriers alone (nothing between them)
  kIndependent,  // no barrier, every GEMV reads x0: the streaming bound of the GEMV code
};

struct Gemv {
  const __half* w;  // [n, k] row-major
  __half* y;        // [n]
  int k, n;
};

// The weight loads of one step of a warp: kRows rows x kUnroll chunks of 16 bytes.
struct Batch {
  uint4 w[kRows][kUnroll];
};

__device__ __forceinline__ uint4 LoadStream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Step `step` of the row group starting at row0: chunk c = step * 32 * kUnroll + u * 32 + lane.
__device__ __forceinline__ void LoadBatch(const Gemv& g, int row0, int step, int lane, Batch* b) {
  const int chunks = g.k / 8;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = step * 32 * kUnroll + u * 32 + lane;
      const int row = row0 + r;
      b->w[r][u] = row < g.n && c < chunks ? LoadStream(g.w + int64_t{row} * g.k + int64_t{c} * 8) : make_uint4(0, 0, 0, 0);
    }
  }
}

__device__ __forceinline__ float Dot8(uint4 w, uint4 x) {
  const __half2* a = reinterpret_cast<const __half2*>(&w);
  const __half2* b = reinterpret_cast<const __half2*>(&x);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 fa = __half22float2(a[i]), fb = __half22float2(b[i]);
    s = fmaf(fa.x, fb.x, s);
    s = fmaf(fa.y, fb.y, s);
  }
  return s;
}

// One warp's rows of y = W x (x in shared memory). kFirstLoaded: `first` holds the warp's first
// step, loaded before (the preload form; a template argument so that it stays in registers).
template <bool kFirstLoaded>
__device__ __forceinline__ void GemvWarp(const Gemv& g, const __half* xs, int warp, int warps, int lane,
                                         const Batch& first) {
  const int chunks = g.k / 8;
  const int steps = (chunks + 32 * kUnroll - 1) / (32 * kUnroll);
  const uint4* x4 = reinterpret_cast<const uint4*>(xs);
  for (int row0 = warp * kRows; row0 < g.n; row0 += warps * kRows) {
    float acc[kRows] = {};
    for (int step = 0; step < steps; ++step) {
      Batch b;
      if (kFirstLoaded && row0 == warp * kRows && step == 0) {
        b = first;
      } else {
        LoadBatch(g, row0, step, lane, &b);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = step * 32 * kUnroll + u * 32 + lane;
        if (c >= chunks) continue;
        const uint4 xv = x4[c];
#pragma unroll
        for (int r = 0; r < kRows; ++r) acc[r] += Dot8(b.w[r][u], xv);
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float s = acc[r];
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (lane == 0 && row0 + r < g.n) g.y[row0 + r] = __float2half(s);
    }
  }
}

// x[k] = prev[k mod n_prev] into shared memory (the chain's dependency).
__device__ __forceinline__ void LoadX(const __half* prev, int n_prev, int k, __half* xs) {
  for (int i = threadIdx.x; i < k; i += blockDim.x) xs[i] = __ldcg(prev + i % n_prev);  // L2: written by other CTAs
  __syncthreads();
}

// The bytes of a warp's first step of GEMV g into L2 (the copy engine; no registers held): the
// first 32 * kUnroll chunks of each of its kRows rows.
__device__ __forceinline__ void PrefetchFirstStep(const Gemv& g, int row0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const int bytes = min(g.k, 32 * kUnroll * 8) * 2;
  for (int r = 0; r < kRows && row0 + r < g.n; ++r) {
    const __half* p = g.w + int64_t{row0 + r} * g.k;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
  }
#endif
}

__device__ __forceinline__ unsigned LoadAcquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Every CTA of the grid (all resident) meets here; the writes before it are visible after it.
// count returns to 0 and gen only grows, so graph replays reuse both. They sit in different
// 128-byte lines (kBarrierStride), so that the CTAs polling gen do not queue behind the arrivals'
// atomics on count at the same L2 line; pollers back off briefly between loads.
__device__ void GridSync(unsigned* count, unsigned* gen) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned g = LoadAcquire(gen);
    __threadfence();
    if (atomicAdd(count, 1u) == gridDim.x - 1) {
      atomicExch(count, 0u);
      __threadfence();
      atomicAdd(gen, 1u);
    } else {
      while (LoadAcquire(gen) == g) __nanosleep(32);
    }
    __threadfence();
  }
  __syncthreads();
}

// work = false: the boundary alone (an empty kernel; an empty phase between barriers below).
__global__ void __launch_bounds__(kThreads) GemvLaunch(Gemv g, const __half* prev, int n_prev, bool work) {
  __shared__ __align__(16) __half xs[kMaxK];
  if (!work) return;
  LoadX(prev, n_prev, g.k, xs);
  const int warp = blockIdx.x * kWarps + threadIdx.x / 32;
  const Batch none{};
  GemvWarp<false>(g, xs, warp, gridDim.x * kWarps, threadIdx.x % 32, none);
}

__global__ void __launch_bounds__(kThreads, 2)
    ChainPersistent(const Gemv* chain, int count, const __half* x0, unsigned* bar, Phase phase) {
  __shared__ __align__(16) __half xs[kMaxK];
  const int warp = blockIdx.x * kWarps + threadIdx.x / 32, warps = gridDim.x * kWarps, lane = threadIdx.x % 32;
  const bool preload = phase == Phase::kPreload, prefetch = phase == Phase::kPrefetch;
  Batch next{};
  for (int i = 0; i < count; ++i) {
    const Gemv g = chain[i];
    if (phase == Phase::kIndependent) {  // a bound, not the chain
      LoadX(x0, g.k, g.k, xs);
      GemvWarp<false>(g, xs, warp, warps, lane, next);
      __syncthreads();
      continue;
    }
    if (i > 0) GridSync(bar, bar + kBarrierStride);
    if (phase == Phase::kBarriers) continue;
    LoadX(i == 0 ? x0 : chain[i - 1].y, i == 0 ? g.k : chain[i - 1].n, g.k, xs);
    if (preload && i > 0) {
      GemvWarp<true>(g, xs, warp, warps, lane, next);
    } else {
      GemvWarp<false>(g, xs, warp, warps, lane, next);
    }
    // The next GEMV's first weights do not depend on this one's output: request them now.
    if (preload && i + 1 < count) LoadBatch(chain[i + 1], warp * kRows, 0, lane, &next);
    if (prefetch && i + 1 < count && lane == 0) PrefetchFirstStep(chain[i + 1], warp * kRows);
    __syncthreads();  // xs is rewritten after the barrier
  }
}

__global__ void FillRandom(__half* p, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed ^ static_cast<uint32_t>(i >> 32) * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = __float2half(scale * (static_cast<float>(h & 0xffffff) / 8388608.f - 1.f));
  }
}

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "boundary_bench: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// A row of the table: separate launches (work = false: empty kernels) or the persistent kernel.
struct Form {
  std::string name;
  bool launches = false;
  bool work = true;
  Phase phase = Phase::kChain;
  int grid = 0;
  bool boundaries_only() const { return !work || phase == Phase::kBarriers; }
};

struct Setup {
  std::vector<Gemv> chain;
  Gemv* chain_dev = nullptr;
  __half* x0 = nullptr;
  unsigned* bar = nullptr;
  int grid = 0;
  double weight_bytes = 0;
};

// One form's chain as a graph; returns the median us per replay and leaves the last output in y.
double TimeForm(const Setup& s, const Form& form, int iters) {
  cudaStream_t stream;
  Check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  cudaGraph_t graph;
  Check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
  if (form.launches) {
    for (size_t i = 0; i < s.chain.size(); ++i) {
      const Gemv& g = s.chain[i];
      const __half* prev = i == 0 ? s.x0 : s.chain[i - 1].y;
      GemvLaunch<<<form.grid, kThreads, 0, stream>>>(g, prev, i == 0 ? g.k : s.chain[i - 1].n, form.work);
    }
  } else {
    ChainPersistent<<<form.grid, kThreads, 0, stream>>>(s.chain_dev, static_cast<int>(s.chain.size()), s.x0, s.bar,
                                                          form.phase);
  }
  Check(cudaStreamEndCapture(stream, &graph), "end capture");
  cudaGraphExec_t exec;
  Check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaEvent_t a, b;
  Check(cudaEventCreate(&a), "event");
  Check(cudaEventCreate(&b), "event");
  for (int i = 0; i < 2; ++i) Check(cudaGraphLaunch(exec, stream), "warm-up");
  std::vector<double> us;
  for (int i = 0; i < iters; ++i) {
    Check(cudaEventRecord(a, stream), "record");
    Check(cudaGraphLaunch(exec, stream), "replay");
    Check(cudaEventRecord(b, stream), "record");
    Check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    Check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    us.push_back(ms * 1e3);
  }
  std::sort(us.begin(), us.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  return us[us.size() / 2];
}

std::vector<uint16_t> Download(const __half* p, int64_t n) {
  std::vector<uint16_t> h(static_cast<size_t>(n));
  Check(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost), "download");
  return h;
}

float HalfToFloat(uint16_t h) {
  __half x;
  std::memcpy(&x, &h, 2);
  return __half2float(x);
}

// The first GEMV's rows against a double-precision dot product of the same fp16 operands.
bool FirstGemvMatches(const Setup& s) {
  const Gemv& g = s.chain[0];
  const int rows = 64;
  const std::vector<uint16_t> w = Download(g.w, int64_t{rows} * g.k), x = Download(s.x0, g.k), y = Download(g.y, rows);
  for (int r = 0; r < rows; ++r) {
    double ref = 0, mag = 0;
    for (int k = 0; k < g.k; ++k) {
      const double p = double{HalfToFloat(w[size_t(r) * g.k + k])} * HalfToFloat(x[k]);
      ref += p;
      mag += std::fabs(p);
    }
    if (std::fabs(HalfToFloat(y[r]) - ref) > 1e-3 * mag + 2e-3 * std::fabs(ref)) {
      std::fprintf(stderr, "boundary_bench: first GEMV row %d: %g, reference %g\n", r, HalfToFloat(y[r]), ref);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int layers = 32, iters = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--layers" && v != nullptr) {
      layers = std::atoi(v), ++i;
    } else if (arg == "--iters" && v != nullptr) {
      iters = std::atoi(v), ++i;
    } else {
      std::fprintf(stderr, "usage: boundary_bench [--layers 32] [--iters 10]\n");
      return 2;
    }
  }
  if (layers < 1 || layers > 64 || iters < 1 || iters > 1000) {
    std::fprintf(stderr, "boundary_bench: --layers in [1, 64], --iters in [1, 1000]\n");
    return 2;
  }
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "boundary_bench: no CUDA device is visible\n");
    return 1;
  }
  cudaDeviceProp prop{};
  Check(cudaGetDeviceProperties(&prop, 0), "properties");
  int per_sm = 0;
  Check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ChainPersistent, kThreads, 0), "occupancy");
  int per_sm_launch = 0;
  Check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm_launch, GemvLaunch, kThreads, 0), "occupancy");
  Setup s;
  s.grid = std::min(per_sm, per_sm_launch) * prop.multiProcessorCount;  // every CTA resident in both forms
  if (s.grid < 1) {
    std::fprintf(stderr, "boundary_bench: the kernels do not fit an SM\n");
    return 1;
  }
  const int shapes[4][2] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}};  // (k, n) per GEMV
  for (int l = 0; l < layers; ++l) {
    for (const auto& kn : shapes) {
      Gemv g;
      g.k = kn[0];
      g.n = kn[1];
      __half* w = nullptr;
      Check(cudaMalloc(&w, int64_t{g.k} * g.n * 2), "allocating weights");
      Check(cudaMalloc(&g.y, int64_t{g.n} * 2), "allocating outputs");
      FillRandom<<<1024, 256>>>(w, int64_t{g.k} * g.n, static_cast<uint32_t>(s.chain.size()) * 7919u + 1,
                                std::sqrt(3.f / g.k));  // unit variance of y for unit-variance x
      g.w = w;
      s.weight_bytes += static_cast<double>(g.k) * g.n * 2;
      s.chain.push_back(g);
    }
  }
  Check(cudaMalloc(&s.x0, kMaxK * 2), "allocating x");
  FillRandom<<<16, 256>>>(s.x0, kMaxK, 12345u, 1.7f);
  Check(cudaMalloc(&s.chain_dev, s.chain.size() * sizeof(Gemv)), "allocating the chain");
  Check(cudaMemcpy(s.chain_dev, s.chain.data(), s.chain.size() * sizeof(Gemv), cudaMemcpyHostToDevice), "upload");
  Check(cudaMalloc(&s.bar, 2 * kBarrierStride * sizeof(unsigned)), "allocating the barrier");
  Check(cudaMemset(s.bar, 0, 2 * kBarrierStride * sizeof(unsigned)), "memset");
  Check(cudaDeviceSynchronize(), "set-up");

  const double copy_bw = chai::MeasureCopyBandwidth(chai::Device::kCuda, size_t{1} << 30);
  const double floor_us = chai::FloorSeconds(s.weight_bytes, copy_bw) * 1e6;
  std::printf("device: %s, %d SMs, L2 %d MB; %d layers x 4 GEMVs (LLaMA-7B, fp16), %.2f GB of weights; grid %d CTAs "
              "of %d threads (all resident); copy bandwidth (1 GiB D2D, read+write) %.0f GB/s; floor %.1f us\n\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, layers, s.weight_bytes / 1e9, s.grid,
              kThreads, copy_bw / 1e9, floor_us);
  std::printf("| form | GEMVs | us per chain | GB/s | %% of copy | us per GEMV beyond the floor |\n"
              "|---|---:|---:|---:|---:|---:|\n");
  // The launches at the persistent grid, then at their own occupancy (more CTAs when they fit).
  std::vector<Form> forms = {{"launches (graph)", true, true, Phase::kChain, s.grid}};
  const int launch_grid = per_sm_launch * prop.multiProcessorCount;
  if (launch_grid != s.grid) {
    forms.push_back({"launches (graph), " + std::to_string(launch_grid) + " CTAs", true, true, Phase::kChain, launch_grid});
  }
  forms.push_back({"persistent", false, true, Phase::kChain, s.grid});
  forms.push_back({"persistent + preload", false, true, Phase::kPreload, s.grid});
  forms.push_back({"persistent + L2 prefetch", false, true, Phase::kPrefetch, s.grid});
  forms.push_back({"no dependency (each GEMV reads x0; a bound), persistent, no barrier", false, true,
                   Phase::kIndependent, s.grid});
  forms.push_back({"boundaries alone: empty launches", true, false, Phase::kChain, s.grid});
  forms.push_back({"boundaries alone: grid barriers", false, true, Phase::kBarriers, s.grid});
  std::vector<uint16_t> reference;
  bool ok = true;
  for (size_t f = 0; f < forms.size(); ++f) {
    Check(cudaMemset(s.chain.back().y, 0xff, s.chain.back().n * 2), "poison");
    const double us = TimeForm(s, forms[f], iters);
    if (forms[f].boundaries_only()) {
      std::printf("| %s | %zu | %.1f | | | %.2f per boundary |\n", forms[f].name.c_str(), s.chain.size(), us,
                  us / s.chain.size());
      continue;
    }
    const std::vector<uint16_t> out = Download(s.chain.back().y, s.chain.back().n);
    if (f == 0) {
      reference = out;
      ok = ok && FirstGemvMatches(s);
    } else if (forms[f].phase != Phase::kIndependent && out != reference) {
      std::fprintf(stderr, "boundary_bench: %s: the output differs from the launches'\n", forms[f].name.c_str());
      ok = false;
    }
    const double gbs = s.weight_bytes / (us * 1e-6) / 1e9;
    std::printf("| %s | %zu | %.1f | %.0f | %.1f%% | %.2f |\n", forms[f].name.c_str(), s.chain.size(), us, gbs,
                100.0 * gbs * 1e9 / copy_bw, (us - floor_us) / s.chain.size());
  }
  for (const Gemv& g : s.chain) {
    cudaFree(const_cast<__half*>(g.w));
    cudaFree(g.y);
  }
  cudaFree(s.x0);
  cudaFree(s.chain_dev);
  cudaFree(s.bar);
  if (!ok) return 1;
  return 0;
}
