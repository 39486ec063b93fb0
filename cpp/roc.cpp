// ROC sweep (see roc.hpp).
#include "roc.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#include "common.hpp"

namespace fm {

namespace {

// Order-preserving integer keys: key(a) < key(b) iff a < b for finite floats; -0.0 maps to +0.0.
template <class T> struct KeyOf;
template <> struct KeyOf<float> {
  using K = uint32_t;
  static constexpr K sign = 0x80000000u;
  static bool finite(K u) { return (u & 0x7f800000u) != 0x7f800000u; }
};
template <> struct KeyOf<double> {
  using K = uint64_t;
  static constexpr K sign = 0x8000000000000000ull;
  static bool finite(K u) { return (u & 0x7ff0000000000000ull) != 0x7ff0000000000000ull; }
};

template <class T>
inline typename KeyOf<T>::K to_key(T v, bool& ok) {
  using K = typename KeyOf<T>::K;
  K u;
  std::memcpy(&u, &v, sizeof u);
  ok = KeyOf<T>::finite(u);
  if (u == KeyOf<T>::sign) u = 0;  // -0.0 -> +0.0
  return (u & KeyOf<T>::sign) ? ~u : (u | KeyOf<T>::sign);
}

template <class T>
inline double from_key(typename KeyOf<T>::K k) {
  using K = typename KeyOf<T>::K;
  K u = (k & KeyOf<T>::sign) ? (k & ~KeyOf<T>::sign) : ~k;
  T v;
  std::memcpy(&v, &u, sizeof v);
  return (double)v;
}

// a (n,) unsigned keys -> sorted ascending; tmp (n,) workspace; hist (sizeof(K), 256): the counts
// of every 8-bit digit of the keys (order-independent, so they are gathered while the keys are
// built). Serial LSD radix sort: passes whose digit is the same for every key are skipped.
// Parallelism is coarse instead (positives and negatives, or the classes of one-vs-rest, sorted by
// different threads): no barrier inside a sort, which keeps it fast on a busy machine.
template <class K>
void radix_sort(K* a, K* tmp, int64_t n, const int64_t* hist, const std::atomic<bool>* cancel) {
  if (n < (1 << 12)) {
    std::sort(a, a + n);
    return;
  }
  K* src = a;
  K* dst = tmp;
  int64_t off[256];
  for (int p = 0; p < (int)sizeof(K); ++p) {
    const int shift = 8 * p;
    const int64_t* h = hist + 256 * p;
    if (h[(a[0] >> shift) & 0xff] == n) continue;  // one digit value only
    if (cancel && cancel->load(std::memory_order_relaxed)) return;  // the caller discards the keys
    int64_t sum = 0;
    for (int d = 0; d < 256; ++d) {
      off[d] = sum;
      sum += h[d];
    }
    for (int64_t i = 0; i < n; ++i) {
      const K k = src[i];
      dst[off[(k >> shift) & 0xff]++] = k;
    }
    std::swap(src, dst);
  }
  if (src != a) std::memcpy(a, src, sizeof(K) * (size_t)n);
}

// Builds the curve from the distinct thresholds, given in decreasing order with their
// cumulative counts, applying sklearn's drop_intermediate rule on the fly: an interior point is
// kept iff the second difference of fps or of tps at it is nonzero (original neighbours).
template <class T>
struct CurveBuilder {
  using K = typename KeyOf<T>::K;
  struct Pt { K k; int64_t tp, fp; };
  RocCurve& out;
  bool drop;
  int64_t seen = 0;
  Pt before{}, pend{};
  CurveBuilder(RocCurve& o, bool d, int64_t max_points) : out(o), drop(d) {
    // reserve() only maps memory; pages are touched as points are written
    out.fpr.reserve(max_points + 1);
    out.tpr.reserve(max_points + 1);
    out.thresholds.reserve(max_points + 1);
    emit_raw(std::numeric_limits<double>::infinity(), 0, 0);
  }
  void emit_raw(double thr, int64_t tp, int64_t fp) {
    out.thresholds.push_back(thr);
    out.tpr.push_back((double)tp);
    out.fpr.push_back((double)fp);
  }
  void emit(const Pt& p) { emit_raw(from_key<T>(p.k), p.tp, p.fp); }
  void add(K k, int64_t tp, int64_t fp) {
    const Pt cur{k, tp, fp};
    if (seen == 0) {
      emit(cur);  // the first point is always kept
    } else if (seen >= 2) {
      if (!drop || (before.fp - 2 * pend.fp + cur.fp != 0) || (before.tp - 2 * pend.tp + cur.tp != 0))
        emit(pend);
    }
    if (seen >= 1) before = pend;
    pend = cur;
    ++seen;
  }
  void finish() {
    if (seen >= 2) emit(pend);  // the last point is always kept
    const double P = out.tpr.back(), N = out.fpr.back();
    const size_t m = out.fpr.size();
    for (size_t i = 0; i < m; ++i) {
      out.fpr[i] /= N;
      out.tpr[i] /= P;
    }
  }
};

template <class T>
RocStatus roc_impl(const T* scores, int64_t stride, const uint8_t* positive, int64_t n,
                   bool drop_intermediate, RocCurve& out, bool parallel, const std::atomic<bool>* cancel) {
  auto cancelled = [cancel] { return cancel && cancel->load(std::memory_order_relaxed); };
  using K = typename KeyOf<T>::K;
  constexpr int P = sizeof(K);
  // 1. count the positives
  int64_t np = 0;
  for (int64_t i = 0; i < n; ++i) np += positive[i] != 0;
  const int64_t nn = n - np;
  // 2. keys of positives and negatives into separate arrays, with their digit histograms
  std::unique_ptr<K[]> kp_(new K[np > 0 ? np : 1]), kn_(new K[nn > 0 ? nn : 1]);
  K* kp = kp_.get();
  K* kn = kn_.get();
  std::vector<int64_t> hp(P * 256, 0), hn(P * 256, 0);
  {
    int bad = 0;
    K* op = kp;
    K* on = kn;
    for (int64_t i = 0; i < n; ++i) {
      bool ok;
      const K k = to_key<T>(scores[i * stride], ok);
      bad |= !ok;
      int64_t* h;
      if (positive[i]) {
        *op++ = k;
        h = hp.data();
      } else {
        *on++ = k;
        h = hn.data();
      }
      for (int p = 0; p < P; ++p) ++h[256 * p + ((k >> (8 * p)) & 0xff)];
    }
    if (bad) return ROC_NONFINITE;
  }
  if (np == 0) return ROC_NO_POSITIVE;
  if (nn == 0) return ROC_NO_NEGATIVE;
  if (cancelled()) return ROC_CANCELLED;
  // 3. sort both ascending (two threads when it pays)
  {
    std::unique_ptr<K[]> tp_(new K[np]), tn_(new K[nn]);
    const bool two = parallel && n >= (1 << 17) && max_threads() > 1;
#pragma omp parallel num_threads(2) if (two)
    {
      const int t = thread_id(), nt = num_threads();
      if (t == 0) radix_sort(kp, tp_.get(), np, hp.data(), cancel);
      if (t == nt - 1) radix_sort(kn, tn_.get(), nn, hn.data(), cancel);
    }
  }
  if (cancelled()) return ROC_CANCELLED;
  // 4. sweep from the top: one point per distinct score
  CurveBuilder<T> cb(out, drop_intermediate, n);
  int64_t i = np - 1, j = nn - 1, ctp = 0, cfp = 0;
  while (i >= 0 || j >= 0) {
    K k;
    if (i < 0)
      k = kn[j];
    else if (j < 0)
      k = kp[i];
    else
      k = std::max(kp[i], kn[j]);
    while (i >= 0 && kp[i] == k) ++ctp, --i;
    while (j >= 0 && kn[j] == k) ++cfp, --j;
    cb.add(k, ctp, cfp);
  }
  cb.finish();
  return ROC_OK;
}

}  // namespace

RocStatus roc_curve(const float* scores, int64_t stride, const uint8_t* positive, int64_t n,
                    bool drop_intermediate, RocCurve& out, bool parallel, const std::atomic<bool>* cancel) {
  return roc_impl<float>(scores, stride, positive, n, drop_intermediate, out, parallel, cancel);
}

RocStatus roc_curve(const double* scores, int64_t stride, const uint8_t* positive, int64_t n,
                    bool drop_intermediate, RocCurve& out, bool parallel, const std::atomic<bool>* cancel) {
  return roc_impl<double>(scores, stride, positive, n, drop_intermediate, out, parallel, cancel);
}

RocStatus roc_curve_reference(const double* scores, const uint8_t* positive, int64_t n,
                              bool drop_intermediate, RocCurve& out) {
  std::vector<std::pair<double, int>> v(n);
  int64_t np = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(scores[i])) return ROC_NONFINITE;
    v[i] = {scores[i] == 0.0 ? 0.0 : scores[i], positive[i] ? 1 : 0};
    np += v[i].second;
  }
  if (np == 0) return ROC_NO_POSITIVE;
  if (np == n) return ROC_NO_NEGATIVE;
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.first > b.first; });
  CurveBuilder<double> cb(out, drop_intermediate, n);
  int64_t ctp = 0, cfp = 0;
  for (int64_t i = 0; i < n; ++i) {
    ctp += v[i].second;
    cfp += 1 - v[i].second;
    if (i == n - 1 || v[i + 1].first != v[i].first) {
      bool ok;
      cb.add(to_key<double>(v[i].first, ok), ctp, cfp);
    }
  }
  cb.finish();
  return ROC_OK;
}

}  // namespace fm
