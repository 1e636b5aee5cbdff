#include "runtime/calibrate/elbow.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/chai/clustering.h"

namespace chai {

std::vector<double> UnitRows(const float* rows, int n, int f) {
  std::vector<double> out(static_cast<size_t>(n) * f);
  for (int i = 0; i < n; ++i) {
    double norm = 0;
    for (int j = 0; j < f; ++j) norm += static_cast<double>(rows[i * f + j]) * rows[i * f + j];
    norm = std::sqrt(norm);
    for (int j = 0; j < f; ++j) out[i * f + j] = norm > 0 ? rows[i * f + j] / norm : 0.0;
  }
  return out;
}

double WithinClusterError(const std::vector<double>& rows, int n, int f, const std::vector<int>& labels) {
  const int k = labels.empty() ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
  std::vector<double> mean(static_cast<size_t>(k) * f, 0.0);
  std::vector<int> count(k, 0);
  for (int i = 0; i < n; ++i) {
    ++count[labels[i]];
    for (int j = 0; j < f; ++j) mean[labels[i] * f + j] += rows[i * f + j];
  }
  for (int c = 0; c < k; ++c)
    for (int j = 0; j < f; ++j) mean[c * f + j] /= std::max(1, count[c]);
  double error = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < f; ++j) {
      const double d = rows[i * f + j] - mean[labels[i] * f + j];
      error += d * d;
    }
  return error;
}

double SampleClusterError(const float* features, int heads, int f, int k, const ElbowOptions& options) {
  if (k >= heads) return 0.0;
  const std::vector<double> unit = UnitRows(features, heads, f);
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < std::max(1, options.restarts); ++r) {
    const std::vector<int> labels = KMeansLabels(features, heads, f, k, options.seed + r);
    best = std::min(best, WithinClusterError(unit, heads, f, labels));
  }
  return best;
}

std::vector<double> ElbowCurve(const std::vector<std::vector<float>>& samples, int heads, int f,
                               const ElbowOptions& options) {
  std::vector<double> curve(heads, 0.0);
  for (const std::vector<float>& sample : samples)
    for (int k = 1; k <= heads; ++k) curve[k - 1] += SampleClusterError(sample.data(), heads, f, k, options);
  return curve;
}

double ClusteringResistance(const std::vector<double>& curve, int samples, int heads) {
  double sum = 0;
  for (double e : curve) sum += e;
  return sum / (static_cast<double>(curve.size()) * std::max(1, samples) * std::max(1, heads));
}

}  // namespace chai
