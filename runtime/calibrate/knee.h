// Knee of an elbow curve: the k after which more clusters stop paying.
//
// Method: Kneedle (Satopaa et al., "Finding a 'Kneedle' in a Haystack", 2011) for a decreasing
// convex curve, in its "maximum distance to the chord" form: x = k and y = error(k) are scaled
// to [0, 1] (x by (k - 1) / (H - 1), y by (e - min) / (max - min)), and the knee is the k whose
// point lies farthest below the chord from the first point to the last. Scaling makes the answer
// independent of the error's units and of H. Ties go to the smaller k.
// Degenerate curves: H == 1 gives 1; a curve that is zero everywhere (every head identical)
// gives 1; a curve with no point below the chord (straight or concave: clustering never pays
// more than linearly) gives H, i.e. keep the layer dense.
#ifndef CHAI_RUNTIME_CALIBRATE_KNEE_H_
#define CHAI_RUNTIME_CALIBRATE_KNEE_H_

#include <vector>

namespace chai {

// curve[k - 1] is the error at k clusters, k = 1..curve.size(). Returns the knee k.
int KneeOfCurve(const std::vector<double>& curve);

}  // namespace chai

#endif  // CHAI_RUNTIME_CALIBRATE_KNEE_H_
