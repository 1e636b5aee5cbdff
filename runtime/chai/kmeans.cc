// k-means over the heads' attention features: an option beyond the published algorithm
// (--chai-cluster kmeans; clustering.h). Cosine geometry by way of unit rows, k-means++ seeding
// from a fixed seed, Lloyd iterations, an empty cluster refilled with the farthest point of a
// cluster that can spare one.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "runtime/chai/clustering.h"
#include "runtime/chai/clustering_common.h"

namespace chai {
namespace {

using clustering_internal::Canonical;
using clustering_internal::Fail;
using clustering_internal::PairDot;

// n rows of f values in double, each scaled to unit length (a zero or non-finite row stays
// zero), and k centres of the same width.
struct Points {
  int n, f;
  std::vector<double> x;
  const double* row(int i) const { return x.data() + static_cast<size_t>(i) * f; }
};

struct Centers {
  int f;
  std::vector<double> c;
  double* at(int i) { return c.data() + static_cast<size_t>(i) * f; }
  const double* at(int i) const { return c.data() + static_cast<size_t>(i) * f; }
  void Set(int i, const double* from) { std::copy(from, from + f, at(i)); }
};

Points UnitRows(const float* features, int n, int f) {
  Points p{n, f, std::vector<double>(static_cast<size_t>(n) * f, 0.0)};
  for (int i = 0; i < n; ++i) {
    const float* u = features + static_cast<size_t>(i) * f;
    double norm = std::sqrt(PairDot(u, u, f));
    if (!std::isfinite(norm) || norm == 0.0) continue;
    for (int c = 0; c < f; ++c) p.x[static_cast<size_t>(i) * f + c] = u[c] / norm;
  }
  return p;
}

double SquaredDistance(const double* a, const double* b, int f) {
  double s = 0.0;
  for (int c = 0; c < f; ++c) {
    double t = a[c] - b[c];
    s += t * t;
  }
  return s;
}

// k-means++: the first centre uniformly, each next one with probability proportional to its
// squared distance from the nearest centre so far (the lowest unchosen point when every
// remaining point sits on a centre).
Centers SeedCenters(const Points& p, int k, uint64_t seed) {
  Centers centers{p.f, std::vector<double>(static_cast<size_t>(k) * p.f)};
  std::mt19937_64 rng(seed);
  auto uniform = [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  std::vector<bool> chosen(p.n, false);
  int first = std::min(p.n - 1, static_cast<int>(uniform() * p.n));
  chosen[first] = true;
  centers.Set(0, p.row(first));
  std::vector<double> nearest(p.n);
  for (int i = 0; i < p.n; ++i) nearest[i] = SquaredDistance(p.row(i), centers.at(0), p.f);
  for (int c = 1; c < k; ++c) {
    double total = 0.0;
    for (int i = 0; i < p.n; ++i) total += chosen[i] ? 0.0 : nearest[i];
    int pick = -1;
    if (total > 0.0) {
      double r = uniform() * total, acc = 0.0;
      for (int i = 0; i < p.n; ++i) {
        if (chosen[i] || nearest[i] <= 0.0) continue;
        acc += nearest[i];
        pick = i;
        if (acc > r) break;
      }
    }
    if (pick < 0) {
      for (int i = 0; i < p.n && pick < 0; ++i) {
        if (!chosen[i]) pick = i;
      }
    }
    chosen[pick] = true;
    centers.Set(c, p.row(pick));
    for (int i = 0; i < p.n; ++i) nearest[i] = std::min(nearest[i], SquaredDistance(p.row(i), centers.at(c), p.f));
  }
  return centers;
}

// A Lloyd iteration's state: each point's cluster and squared distance to its centre, and the
// clusters' sizes.
struct Assignment {
  std::vector<int> label, count;
  std::vector<double> to_center;
};

// Each point to its nearest centre (the lowest index wins ties); true when a label changed.
bool AssignNearest(const Points& p, const Centers& centers, int k, Assignment* a) {
  bool changed = false;
  std::fill(a->count.begin(), a->count.end(), 0);
  for (int i = 0; i < p.n; ++i) {
    int best = 0;
    double best_d = SquaredDistance(p.row(i), centers.at(0), p.f);
    for (int c = 1; c < k; ++c) {
      double dc = SquaredDistance(p.row(i), centers.at(c), p.f);
      if (dc < best_d) {
        best_d = dc;
        best = c;
      }
    }
    changed |= a->label[i] != best;
    a->label[i] = best;
    a->to_center[i] = best_d;
    ++a->count[best];
  }
  return changed;
}

// Moves points into empty clusters: the farthest point of a cluster with > 1 member becomes the
// empty one's only member and centre. True when it moved any.
bool FillEmptyClusters(const Points& p, int k, Assignment* a, Centers* centers) {
  bool moved = false;
  for (int c = 0; c < k; ++c) {
    if (a->count[c] > 0) continue;
    int far = -1;
    for (int i = 0; i < p.n; ++i) {
      if (a->count[a->label[i]] > 1 && (far < 0 || a->to_center[i] > a->to_center[far])) far = i;
    }
    --a->count[a->label[far]];
    a->label[far] = c;
    a->count[c] = 1;
    a->to_center[far] = 0.0;
    centers->Set(c, p.row(far));
    moved = true;
  }
  return moved;
}

// Each centre the mean of its members.
void RecomputeCenters(const Points& p, int k, const Assignment& a, Centers* centers) {
  std::fill(centers->c.begin(), centers->c.end(), 0.0);
  for (int i = 0; i < p.n; ++i) {
    double* ctr = centers->at(a.label[i]);
    for (int c = 0; c < p.f; ++c) ctr[c] += p.row(i)[c];
  }
  for (int c = 0; c < k; ++c) {
    for (int t = 0; t < p.f; ++t) centers->at(c)[t] /= a.count[c];
  }
}

}  // namespace

std::vector<int> KMeansLabels(const float* features, int n, int f, int k, uint64_t seed) {
  if (n < 1 || f < 1 || k < 1 || k > n) Fail("KMeansLabels: bad arguments", n, k);
  const Points p = UnitRows(features, n, f);
  Centers centers = SeedCenters(p, k, seed);
  Assignment a{std::vector<int>(n, -1), std::vector<int>(k), std::vector<double>(n)};
  for (int iter = 0; iter < 100; ++iter) {
    bool changed = AssignNearest(p, centers, k, &a);
    changed |= FillEmptyClusters(p, k, &a, &centers);
    if (!changed) break;
    RecomputeCenters(p, k, a, &centers);
  }
  return Canonical(a.label);
}

}  // namespace chai
