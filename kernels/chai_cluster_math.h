// The steps of CHAI's online clustering, shared by the ChaiCluster op's CPU reference
// (kernels/cpu/chai_cluster.cc) and its CUDA kernel (kernels/cuda/chai_cluster.cu), so that both
// run the same operations in the same order and the CPU tests of the one cover the other.
//
// They restate runtime/chai/features.cc and runtime/chai/clustering.cc (average linkage,
// lowest-index representative) operation for operation; kernels/ may not depend on runtime/, so
// the runtime keeps its own copy, and tests check that the two agree exactly:
//  - features in double, each probability rounded once to float;
//  - cosine distances with scipy's two-accumulator dot product, in double;
//  - scipy's nearest-neighbour chain with its tie rules, Lance-Williams updates in double,
//    merges stably sorted by height, the first n - k applied.
// Every double operation is rounded on its own (Mul, Add, ...): nvcc would otherwise fuse
// a * b + c into one FMA, and a Lance-Williams update one bit off the host's can flip a tie.
// (The host build is ISO C++ without -mfma, where nothing is fused.) The one operation whose
// result may differ between host and device is exp in double (CUDA's is within 1 ulp, not
// always correctly rounded); that rarely survives the rounding of a probability to float.
#ifndef CHAI_KERNELS_CHAI_CLUSTER_MATH_H_
#define CHAI_KERNELS_CHAI_CLUSTER_MATH_H_

#include <cmath>

#ifdef __CUDACC__
#define CHAI_HD __host__ __device__ __forceinline__
#else
#define CHAI_HD inline
#endif

namespace chai::cluster_math {

inline constexpr int kTokens = 5;                    // runtime/chai/features.h kChaiFeatureTokens
inline constexpr int kFeatures = kTokens * kTokens;  // per head
inline constexpr int kMaxHeads = 128;                // local heads per problem (one CTA)

CHAI_HD double Mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
CHAI_HD double Add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
CHAI_HD double Sub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
CHAI_HD double Div(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
CHAI_HD double Sqrt(double a) {
#ifdef __CUDA_ARCH__
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
CHAI_HD double Exp(double a) {
#ifdef __CUDA_ARCH__
  return exp(a);
#else
  return std::exp(a);
#endif
}
CHAI_HD bool Finite(double a) {
#ifdef __CUDA_ARCH__
  return isfinite(a);
#else
  return std::isfinite(a);
#endif
}
CHAI_HD double Fmax(double a, double b) {
#ifdef __CUDA_ARCH__
  return fmax(a, b);
#else
  return std::fmax(a, b);
#endif
}
// A cosine rounded past +-1 becomes +-1 (scipy clips).
CHAI_HD double ClipUnit(double c) {
#ifdef __CUDA_ARCH__
  return fabs(c) > 1.0 ? copysign(1.0, c) : c;
#else
  return std::fabs(c) > 1.0 ? std::copysign(1.0, c) : c;
#endif
}

// 1 / sqrt(d), the score scale.
CHAI_HD double Scale(int head_dim) { return Div(1.0, Sqrt(static_cast<double>(head_dim))); }

// q_i . k_j in double, in index order (features.cc). T is float, or a half type that converts
// to float exactly; products of floats are exact in double.
template <typename T>
CHAI_HD double Dot(const T* a, const T* b, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) {
    s = Add(s, Mul(static_cast<double>(static_cast<float>(a[i])), static_cast<double>(static_cast<float>(b[i]))));
  }
  return s;
}

// One row of a head's features from the dots of query i with keys 0..4:
// out[j] = softmax_j(dots[j] * scale), computed in double and rounded once to float.
CHAI_HD void SoftmaxRow(const double* dots, double scale, float* out) {
  double s[kTokens];
  double m = -INFINITY;
  for (int j = 0; j < kTokens; ++j) {
    s[j] = Mul(dots[j], scale);
    m = Fmax(m, s[j]);
  }
  double sum = 0.0;
  for (int j = 0; j < kTokens; ++j) {
    s[j] = Exp(Sub(s[j], m));
    sum = Add(sum, s[j]);
  }
  for (int j = 0; j < kTokens; ++j) out[j] = static_cast<float>(Div(s[j], sum));
}

// scipy's cosine dot product (clustering.cc PairDot): even and odd terms in two accumulators.
CHAI_HD double PairDot(const float* u, const float* v, int f) {
  double a0 = 0.0, a1 = 0.0;
  int i = 0;
  for (; i + 2 <= f; i += 2) {
    a0 = Add(a0, Mul(static_cast<double>(u[i]), static_cast<double>(v[i])));
    a1 = Add(a1, Mul(static_cast<double>(u[i + 1]), static_cast<double>(v[i + 1])));
  }
  double s = Add(a0, a1);
  for (; i < f; ++i) s = Add(s, Mul(static_cast<double>(u[i]), static_cast<double>(v[i])));
  return s;
}

CHAI_HD double Norm(const float* u, int f) { return Sqrt(PairDot(u, u, f)); }
// Rows that are not finite or have zero norm are 2 away from everything (clustering.cc).
CHAI_HD bool Usable(double norm) { return Finite(norm) && norm > 0.0; }

// The cosine distance of rows u != v with norms nu, nv (CosineDistances).
CHAI_HD double CosineDistance(const float* u, const float* v, int f, double nu, double nv) {
  if (!Usable(nu) || !Usable(nv)) return 2.0;
  return Sub(1.0, ClipUnit(Div(PairDot(u, v, f), Mul(nu, nv))));
}

// Lance-Williams for average linkage: d(i, x + y) = (n_x d(i, x) + n_y d(i, y)) / (n_x + n_y).
CHAI_HD double AverageOf(int nx, double dix, int ny, double diy) {
  return Div(Add(Mul(static_cast<double>(nx), dix), Mul(static_cast<double>(ny), diy)), static_cast<double>(nx + ny));
}

struct Merge {
  double height;
  int x, y;  // slots, x < y; the union takes slot y
};

// Average-linkage merges of n items by scipy's nearest-neighbour chain (clustering.cc
// AverageLinkage). `m` owns the working distances (finite) and the live slots:
//   int LowestLive()                  the lowest live slot
//   double Dist(int a, int b)
//   int Nearest(int x, int prev, double* best)
//       among live i != x, the one with the smallest distance to x if that is strictly below
//       *best (the lowest index among equals; *best becomes its distance), else prev
//   int Chain(int i), void SetChain(int i, int value)   the chain, n + 1 entries
//   void Join(int step, int x, int y, double height)
//       records merge `step`, kills slot x and gives slot y the union's distances (AverageOf)
// Returns false only if the search breaks down (unreachable with finite distances).
template <typename M>
CHAI_HD bool NnChain(M& m, int n) {
  int chain_length = 0;
  for (int step = 0; step < n - 1; ++step) {
    if (chain_length == 0) {  // restart at the lowest live slot
      m.SetChain(0, m.LowestLive());
      chain_length = 1;
    }
    int x = 0, y = 0;
    double current_min = 0.0;
    while (true) {
      x = m.Chain(chain_length - 1);
      int prev = -1;
      current_min = INFINITY;
      if (chain_length > 1) {  // the previous element wins ties (no cycles)
        prev = m.Chain(chain_length - 2);
        current_min = m.Dist(x, prev);
      }
      y = m.Nearest(x, prev, &current_min);
      if (y < 0) return false;
      if (chain_length > 1 && y == prev) break;
      if (chain_length == n) return false;
      m.SetChain(chain_length++, y);
    }
    chain_length -= 2;
    if (x > y) {
      const int t = x;
      x = y;
      y = t;
    }
    m.Join(step, x, y, current_min);
  }
  return true;
}

// The position of merge `i` among `count` merges stably sorted by height (std::stable_sort).
CHAI_HD int MergeRank(const Merge* merges, int count, int i) {
  const double h = merges[i].height;
  int rank = 0;
  for (int j = 0; j < count; ++j) rank += merges[j].height < h || (j < i && merges[j].height == h);
  return rank;
}

CHAI_HD int FindRoot(int* parent, int x) {
  while (parent[x] != x) x = parent[x] = parent[parent[x]];
  return x;
}

// Applies the `cut` lowest merges (by_rank[r]: the merge of rank r) to n items; root[i] becomes
// the lowest item of i's cluster (the union of two roots keeps the lower one).
CHAI_HD void CutTree(const Merge* merges, const int* by_rank, int n, int cut, int* root) {
  for (int i = 0; i < n; ++i) root[i] = i;
  for (int r = 0; r < cut; ++r) {
    const int a = FindRoot(root, merges[by_rank[r]].x), b = FindRoot(root, merges[by_rank[r]].y);
    if (a != b) root[a > b ? a : b] = a < b ? a : b;
  }
  for (int i = 0; i < n; ++i) root[i] = FindRoot(root, i);
}

// The representative of head h: the member of its cluster with the lowest original index
// order[j] (the lowest local index among equals), as ChaiPolicy maps it.
CHAI_HD int LowestOrderMember(const int* root, const int* order, int n, int h) {
  int best = -1;
  for (int j = 0; j < n; ++j) {
    if (root[j] == root[h] && (best < 0 || order[j] < order[best])) best = j;
  }
  return best;
}

}  // namespace chai::cluster_math

#endif  // CHAI_KERNELS_CHAI_CLUSTER_MATH_H_
