#include "runtime/chai/clustering.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/chai/clustering_common.h"

namespace chai {
namespace clustering_internal {

[[noreturn]] void Fail(const char* what, int n, int k) {
  std::fprintf(stderr, "chai clustering: %s (n=%d k=%d)\n", what, n, k);
  std::abort();
}

// Products are separate statements so no compiler fuses them into FMAs.
double PairDot(const float* u, const float* v, int f) {
  double a0 = 0.0, a1 = 0.0;
  int i = 0;
  for (; i + 2 <= f; i += 2) {
    double p0 = static_cast<double>(u[i]) * v[i];
    double p1 = static_cast<double>(u[i + 1]) * v[i + 1];
    a0 += p0;
    a1 += p1;
  }
  double s = a0 + a1;
  for (; i < f; ++i) {
    double p = static_cast<double>(u[i]) * v[i];
    s += p;
  }
  return s;
}

std::vector<int> Canonical(const std::vector<int>& labels) {
  std::vector<int> out(labels.size());
  std::vector<std::pair<int, int>> seen;  // (old, new); few clusters, linear search is fine
  for (size_t i = 0; i < labels.size(); ++i) {
    int id = -1;
    for (const auto& [old_label, new_label] : seen) {
      if (old_label == labels[i]) id = new_label;
    }
    if (id < 0) {
      id = static_cast<int>(seen.size());
      seen.emplace_back(labels[i], id);
    }
    out[i] = id;
  }
  return out;
}

}  // namespace clustering_internal

namespace {

using clustering_internal::Canonical;
using clustering_internal::Fail;
using clustering_internal::PairDot;

int Find(std::vector<int>& parent, int x) {
  while (parent[x] != x) x = parent[x] = parent[parent[x]];
  return x;
}

}  // namespace

absl::StatusOr<ClusterMethod> ParseClusterMethod(absl::string_view name) {
  if (name == "agglomerative" || name == "average") return ClusterMethod::kAgglomerative;
  if (name == "kmeans") return ClusterMethod::kKMeans;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown CHAI clustering \"", name, "\" (expected agglomerative or kmeans)"));
}

absl::StatusOr<RepMethod> ParseRepMethod(absl::string_view name) {
  if (name == "lowest" || name == "first") return RepMethod::kLowest;
  if (name == "medoid") return RepMethod::kMedoid;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown CHAI representative \"", name, "\" (expected lowest or medoid)"));
}

const char* ClusterMethodName(ClusterMethod method) {
  return method == ClusterMethod::kKMeans ? "kmeans" : "agglomerative";
}

const char* RepMethodName(RepMethod rep) { return rep == RepMethod::kMedoid ? "medoid" : "lowest"; }

std::vector<double> CosineDistances(const float* features, int n, int f) {
  std::vector<double> norm(n);
  std::vector<bool> usable(n);
  for (int i = 0; i < n; ++i) {
    const float* u = features + static_cast<size_t>(i) * f;
    norm[i] = std::sqrt(PairDot(u, u, f));
    usable[i] = std::isfinite(norm[i]) && norm[i] > 0.0;
  }
  // Symmetric bit for bit (products commute), so compute i <= j and mirror.
  std::vector<double> dist(static_cast<size_t>(n) * n);
  for (int i = 0; i < n; ++i) {
    for (int j = i; j < n; ++j) {
      double d;
      if (!usable[i] || !usable[j]) {
        d = i == j ? 0.0 : 2.0;
      } else {
        double c = PairDot(features + static_cast<size_t>(i) * f,
                           features + static_cast<size_t>(j) * f, f) /
                   (norm[i] * norm[j]);
        if (std::fabs(c) > 1.0) c = std::copysign(1.0, c);  // rounding, as scipy clips
        d = 1.0 - c;
      }
      dist[static_cast<size_t>(i) * n + j] = dist[static_cast<size_t>(j) * n + i] = d;
    }
  }
  return dist;
}

namespace {

// A merge of the dendrogram: clusters in slots x < y at `height` (average linkage), kept in y.
struct Merge {
  int x, y;
  double height;
};

// The working matrix: dist's strict upper triangle, mirrored, with non-finite entries raised above
// every finite one so that the chain search stays well defined.
std::vector<double> SanitisedDistances(const std::vector<double>& dist, int n) {
  double largest = 0.0;
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      double v = dist[static_cast<size_t>(i) * n + j];
      if (std::isfinite(v)) largest = std::max(largest, std::fabs(v));
    }
  }
  const double huge = 2.0 * largest + 1.0;
  std::vector<double> d(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      double v = dist[static_cast<size_t>(i) * n + j];
      if (!std::isfinite(v)) v = huge;
      d[static_cast<size_t>(i) * n + j] = d[static_cast<size_t>(j) * n + i] = v;
    }
  }
  return d;
}

// The n - 1 merges of average linkage by the nearest-neighbour chain (scipy's order of
// search and tie-breaking), updating d in place (Lance-Williams).
std::vector<Merge> NearestNeighbourChainMerges(std::vector<double>& d, int n, int k) {
  auto at = [&](int a, int b) -> double& { return d[static_cast<size_t>(a) * n + b]; };
  std::vector<Merge> merges;
  merges.reserve(n > 0 ? n - 1 : 0);
  std::vector<int> size(n, 1);
  std::vector<int> live(n);  // live cluster slots, sorted
  std::iota(live.begin(), live.end(), 0);
  std::vector<int> chain(n + 1);
  int chain_length = 0;
  for (int step = 0; step < n - 1; ++step) {
    if (chain_length == 0) {  // restart at the lowest live slot
      chain[0] = live.front();
      chain_length = 1;
    }
    int x = 0, y = 0;
    double current_min = 0.0;
    while (true) {
      x = chain[chain_length - 1];
      if (chain_length > 1) {
        y = chain[chain_length - 2];  // the previous element wins ties (no cycles)
        current_min = at(x, y);
      } else {
        y = -1;
        current_min = std::numeric_limits<double>::infinity();
      }
      const double* dx = d.data() + static_cast<size_t>(x) * n;
      double best = current_min;  // a local, so it stays in a register
      int best_i = y;
      for (int i : live) {  // increasing index order: the lowest index wins ties
        const double v = dx[i];
        if (v < best && i != x) {
          best = v;
          best_i = i;
        }
      }
      current_min = best;
      y = best_i;
      if (y < 0) Fail("AverageLinkage: no live neighbour", n, k);  // unreachable: finite d
      if (chain_length > 1 && y == chain[chain_length - 2]) break;
      if (chain_length == n) Fail("AverageLinkage: chain overflow", n, k);  // unreachable
      chain[chain_length++] = y;
    }
    chain_length -= 2;
    if (x > y) std::swap(x, y);
    const int nx = size[x], ny = size[y];
    merges.push_back({x, y, current_min});
    size[x] = 0;
    size[y] = nx + ny;
    live.erase(std::lower_bound(live.begin(), live.end(), x));
    for (int i : live) {
      if (i == y) continue;
      double v = (nx * at(i, x) + ny * at(i, y)) / (nx + ny);
      at(i, y) = at(y, i) = v;
    }
  }
  return merges;
}

// Cuts the dendrogram at k clusters: the n - k lowest merges (a stable sort by height) joined;
// labels in canonical order.
std::vector<int> CutAt(std::vector<Merge> merges, int n, int k) {
  std::stable_sort(merges.begin(), merges.end(),
                   [](const Merge& a, const Merge& b) { return a.height < b.height; });
  std::vector<int> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  for (int m = 0; m < n - k; ++m) {
    int a = Find(parent, merges[m].x), b = Find(parent, merges[m].y);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
  std::vector<int> roots(n);
  for (int i = 0; i < n; ++i) roots[i] = Find(parent, i);
  return Canonical(roots);
}

}  // namespace

std::vector<int> AverageLinkage(const std::vector<double>& dist, int n, int k) {
  if (n < 1 || k < 1 || k > n || dist.size() < static_cast<size_t>(n) * n) {
    Fail("AverageLinkage: bad arguments", n, k);
  }
  std::vector<double> d = SanitisedDistances(dist, n);
  return CutAt(NearestNeighbourChainMerges(d, n, k), n, k);
}

std::vector<int> Representatives(const std::vector<int>& labels) {
  const int n = static_cast<int>(labels.size());
  std::vector<int> rep(n, -1);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j <= i; ++j) {
      if (labels[j] == labels[i]) {
        rep[i] = j;
        break;
      }
    }
  }
  return rep;
}

std::vector<int> RepresentativesMedoid(const std::vector<int>& labels,
                                       const std::vector<double>& dist) {
  const int n = static_cast<int>(labels.size());
  if (dist.size() < static_cast<size_t>(n) * n) Fail("RepresentativesMedoid: dist too small", n, 0);
  auto at = [&](int a, int b) {  // the upper triangle, as AverageLinkage reads it
    return a < b ? dist[static_cast<size_t>(a) * n + b] : dist[static_cast<size_t>(b) * n + a];
  };
  std::vector<double> cost(n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (j != i && labels[j] == labels[i]) cost[i] += at(i, j);
    }
  }
  std::vector<int> rep(n, -1);
  for (int i = 0; i < n; ++i) {
    int best = -1;
    for (int j = 0; j < n; ++j) {
      if (labels[j] == labels[i] && (best < 0 || cost[j] < cost[best])) best = j;
    }
    rep[i] = best;
  }
  return rep;
}

std::vector<int> ClusterHeads(const float* features, int n, int f, int k, ClusterMethod method,
                              RepMethod rep, uint64_t seed) {
  if (n < 1 || k < 1 || k > n) Fail("ClusterHeads: cluster count out of range", n, k);
  std::vector<int> identity(n);
  std::iota(identity.begin(), identity.end(), 0);
  if (k == n) return identity;
  std::vector<double> dist;
  if (method == ClusterMethod::kAgglomerative || rep == RepMethod::kMedoid) {
    dist = CosineDistances(features, n, f);
  }
  std::vector<int> labels = method == ClusterMethod::kKMeans ? KMeansLabels(features, n, f, k, seed)
                                                             : AverageLinkage(dist, n, k);
  return rep == RepMethod::kMedoid ? RepresentativesMedoid(labels, dist) : Representatives(labels);
}

std::vector<int> UniqueRepresentatives(const std::vector<int>& representative) {
  std::vector<int> out(representative);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace chai
