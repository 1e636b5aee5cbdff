// The authors' elbow analysis: for each layer, how much clustering error k clusters of its
// heads leave, for k = 1..H, summed over calibration samples.
//
// Error of one sample at k: the features of the H heads are L2-normalised (on unit vectors the
// squared Euclidean distance is twice the cosine distance CHAI clusters by online), grouped by
// KMeansLabels (clustering.h, k-means++ seeded, Lloyd), and the squared distances of the rows
// to their cluster means are summed. The best of `restarts` seeds is kept (as sklearn's n_init),
// since one k-means++ start can land in a poor local minimum and make the curve jagged.
// Error at k = H is 0; error at k = 1 is the spread of the layer's heads.
#ifndef CHAI_RUNTIME_CALIBRATE_ELBOW_H_
#define CHAI_RUNTIME_CALIBRATE_ELBOW_H_

#include <cstdint>
#include <vector>

namespace chai {

struct ElbowOptions {
  int restarts = 4;
  uint64_t seed = 0;
};

// L2-normalised copies of the n rows of length f (a zero row stays zero).
std::vector<double> UnitRows(const float* rows, int n, int f);

// Sum over rows of the squared distance to the mean of the rows sharing its label.
double WithinClusterError(const std::vector<double>& rows, int n, int f, const std::vector<int>& labels);

// The smallest within-cluster error of `restarts` k-means runs on one sample's heads.
double SampleClusterError(const float* features, int heads, int f, int k, const ElbowOptions& options);

// error[k - 1] for k = 1..heads, summed over samples (each heads x f floats).
std::vector<double> ElbowCurve(const std::vector<std::vector<float>>& samples, int heads, int f,
                               const ElbowOptions& options);

// How much a layer resists clustering: the mean over k of error(k) per sample and head. Unit
// features make it comparable across layers; the smallest is the most redundant layer (its
// heads' patterns agree, so few clusters lose little).
double ClusteringResistance(const std::vector<double>& curve, int samples, int heads);

}  // namespace chai

#endif  // CHAI_RUNTIME_CALIBRATE_ELBOW_H_
