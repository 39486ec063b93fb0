// ROC curve: sort the scores and sweep the thresholds, with scikit-learn's conventions.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

namespace fm {

struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;  // thresholds[0] = +inf, then decreasing scores
};

// Error codes of roc_curve (the binding turns them into ValueErrors).
enum RocStatus { ROC_OK = 0, ROC_NONFINITE = 1, ROC_NO_POSITIVE = 2, ROC_NO_NEGATIVE = 3, ROC_CANCELLED = 4 };

// scores (n,), positive (n,) 0/1 -> curve, exactly as sklearn.metrics.roc_curve(positive, scores):
// one point per distinct score (ties form one point), counts taken at score >= threshold, a
// leading (0, 0) point at threshold +inf, and with drop_intermediate the points whose (fps, tps)
// second differences are both zero removed. -0.0 and +0.0 are one score.
// Sorting: LSD radix sort of order-preserving integer keys, positives and negatives sorted
// separately (by two threads when `parallel` and n is large) and merged by the sweep, so no labels
// travel with the keys. scores[i * stride] is sample i's score (stride = C for a column of (n, C)).
// cancel (may be null): polled between the passes; once set, returns ROC_CANCELLED early (Ctrl-C).
RocStatus roc_curve(const float* scores, int64_t stride, const uint8_t* positive, int64_t n,
                    bool drop_intermediate, RocCurve& out, bool parallel = true,
                    const std::atomic<bool>* cancel = nullptr);
RocStatus roc_curve(const double* scores, int64_t stride, const uint8_t* positive, int64_t n,
                    bool drop_intermediate, RocCurve& out, bool parallel = true,
                    const std::atomic<bool>* cancel = nullptr);

// Plain version (std::sort of (score, label) pairs, then the sweep), kept for tests.
RocStatus roc_curve_reference(const double* scores, const uint8_t* positive, int64_t n,
                              bool drop_intermediate, RocCurve& out);

}  // namespace fm
