// Element-wise ops (ReLU, SiLU * up, on separate or stacked gate | up, residual add) and the row
// softmax.
//
// The element-wise kernels are one grid-stride loop of 16-byte vectors plus a scalar tail;
// every output element depends only on the inputs at its own index, so outputs may alias
// inputs. SiLU uses expf (not __expf) to stay within the fp32 tolerance of the CPU reference.
#include <algorithm>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

struct ReluOp {
  __device__ float operator()(float x, float) const { return x > 0.f ? x : 0.f; }
};
struct SiluMulOp {
  __device__ float operator()(float g, float u) const { return g / (1.f + expf(-g)) * u; }
};
struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// out[i] = op(a[i], b[i]) (b may be null for unary ops). Vectors [0, n / N), then the tail.
template <typename T, int N, typename Op>
__global__ void MapKernel(const T* a, const T* b, int64_t n, T* out, Op op) {
  PdlWait();
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t vecs = n / N;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < vecs; i += stride) {
    const Vec<T, N> va = LoadVec<T, N>(a + i * N);
    Vec<T, N> vb;
    if (b != nullptr) vb = LoadVec<T, N>(b + i * N);
    Vec<T, N> r;
#pragma unroll
    for (int j = 0; j < N; ++j) r.v[j] = FromFloat<T>(op(ToFloat(va.v[j]), b != nullptr ? ToFloat(vb.v[j]) : 0.f));
    StoreVec<T, N>(out + i * N, r);
  }
  for (int64_t i = vecs * N + blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += stride) {
    out[i] = FromFloat<T>(op(ToFloat(a[i]), b != nullptr ? ToFloat(b[i]) : 0.f));
  }
}

template <typename Op>
void LaunchMap(const char* name, const Tensor& a, const Tensor* b, Tensor* out, Op op) {
  const int64_t n = a.numel();
  if (n == 0) return;
  DispatchFloat(a.dtype(), name, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kN = kVec16<T>;
    const T* bp = b != nullptr ? b->data<T>() : nullptr;
    const bool wide = Aligned(16, {a.raw(), bp, out->raw()});
    constexpr int kThreads = 256;
    const int64_t work = wide ? n / kN + (n % kN) : n;
    // Enough blocks to fill the GPU a few times over; the loop covers the rest.
    const int blocks =
        static_cast<int>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, int64_t{SmCount()} * 8));
    if (wide) {
      LaunchPdl(MapKernel<T, kN, Op>, blocks, kThreads, 0, CurrentStream(), a.data<T>(), bp, n, out->data<T>(), op);
    } else {
      LaunchPdl(MapKernel<T, 1, Op>, blocks, kThreads, 0, CurrentStream(), a.data<T>(), bp, n, out->data<T>(), op);
    }
  });
}

// SiLU(gate) * up over the stacked gate | up rows: gate_up [rows, 2F] -> out [rows, F]. Vector i of
// out is row i / (F / N), columns from (i % (F / N)) * N; gate at the same columns of the row, up
// F columns further on.
template <typename T, int N>
__global__ void SiluMulFusedKernel(const T* gate_up, int64_t rows, int64_t f, T* out) {
  PdlWait();
  const int64_t per_row = f / N, n = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / per_row, c = (i % per_row) * N;
    const T* g = gate_up + r * 2 * f + c;
    const Vec<T, N> vg = LoadVec<T, N>(g), vu = LoadVec<T, N>(g + f);
    Vec<T, N> o;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = FromFloat<T>(SiluMulOp{}(ToFloat(vg.v[j]), ToFloat(vu.v[j])));
    StoreVec<T, N>(out + r * f + c, o);
  }
}

// In-place softmax of each row, one block per row: max, sum of exponentials, scale. The row
// is re-read from cache for each pass.
template <typename T>
__global__ void SoftmaxKernel(T* x, int64_t cols) {
  PdlWait();
  __shared__ float scratch[32];
  T* row = x + blockIdx.x * cols;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) mx = fmaxf(mx, ToFloat(row[i]));
  mx = BlockMax(mx, scratch);
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += expf(ToFloat(row[i]) - mx);
  const float inv = 1.f / BlockSum(sum, scratch);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) row[i] = FromFloat<T>(expf(ToFloat(row[i]) - mx) * inv);
}

// out[t, n] += bias[n]; one thread per element of out (grid-stride).
template <typename T>
__global__ void AddBiasRowsKernel(const T* bias, int64_t rows, int64_t cols, T* out) {
  PdlWait();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = FromFloat<T>(ToFloat(out[i]) + ToFloat(bias[i % cols]));
  }
}

}  // namespace

void AddBiasRows(const Tensor& bias, Tensor* out) {
  const int64_t rows = out->dim(0), cols = out->dim(1);
  if (rows == 0 || cols == 0) return;
  DispatchFloat(out->dtype(), "Linear (bias)", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kThreads = 256;
    const int blocks =
        static_cast<int>(std::clamp<int64_t>((rows * cols + kThreads - 1) / kThreads, 1, int64_t{SmCount()} * 8));
    LaunchPdl(AddBiasRowsKernel<T>, blocks, kThreads, 0, CurrentStream(), bias.data<T>(), rows, cols, out->data<T>());
  });
}

void Relu(Tensor* x) { LaunchMap("Relu", *x, nullptr, x, ReluOp{}); }

void SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) { LaunchMap("SiluMul", gate, &up, out, SiluMulOp{}); }

void SiluMulFused(const Tensor& gate_up, Tensor* out) {
  const int64_t rows = out->dim(0), f = out->dim(1);
  if (rows == 0 || f == 0) return;
  DispatchFloat(out->dtype(), "SiluMulFused", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kN = kVec16<T>;
    const bool wide = f % kN == 0 && Aligned(16, {gate_up.raw(), out->raw()});
    constexpr int kThreads = 256;
    const int64_t work = rows * (wide ? f / kN : f);
    const int blocks =
        static_cast<int>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, int64_t{SmCount()} * 8));
    if (wide) {
      LaunchPdl(SiluMulFusedKernel<T, kN>, blocks, kThreads, 0, CurrentStream(), gate_up.data<T>(), rows, f,
                out->data<T>());
    } else {
      LaunchPdl(SiluMulFusedKernel<T, 1>, blocks, kThreads, 0, CurrentStream(), gate_up.data<T>(), rows, f,
                out->data<T>());
    }
  });
}

void Add(const Tensor& a, const Tensor& b, Tensor* out) { LaunchMap("Add", a, &b, out, AddOp{}); }

void SoftmaxRows(Tensor* x) {
  const int64_t cols = x->dim(-1);
  if (cols == 0 || x->numel() == 0) return;
  const int64_t rows = x->numel() / cols;
  DispatchFloat(x->dtype(), "SoftmaxRows", [&](auto tag) {
    using T = decltype(tag);
    LaunchPdl(SoftmaxKernel<T>, rows, dim3(RowThreads(cols, 1024)), 0, CurrentStream(), x->data<T>(), cols);
  });
}

}  // namespace chai::cuda
