// Elementwise activations, any shape (n elements), forward and backward.
#pragma once
#include <cstdint>
#include <cstring>

#include "common.hpp"

namespace fm {

FM_INLINE float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

// exp(t) for t <= 0 (0 below -87.3, where the result leaves the normal range; NaN stays NaN),
// Cephes' expf polynomial on t = n ln2 + r, |r| <= ln2/2: ~1 ulp. Only arithmetic and selects,
// so loops calling it vectorise.
FM_INLINE float exp_nonpos(float t) {
  const bool nan = t != t;
  const bool under = !(t > -87.33654f);  // also true for NaN
  const float c = under ? -87.33654f : t;
  const float n = (c * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round to nearest
  const float r = (c - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.f;
  const float e = p * bits_to_float((int32_t(n) + 127) << 23);
  return nan ? t : (under ? 0.f : e);
}

// x (n) -> y (n): y = max(x, 0); NaN propagates (as torch.relu).
void relu_forward(int64_t n, const float* x, float* y);
// gy (n), x (n) -> gx (n): gx = x <= 0 ? 0 : gy (torch's threshold_backward; NaN x passes gy).
void relu_backward(int64_t n, const float* gy, const float* x, float* gx);

// x (n) -> y (n): y = 1 / (1 + exp(-x)) (a vectorised exp, within a few ulp of torch's).
void sigmoid_forward(int64_t n, const float* x, float* y);
// gy (n), y (n) (the sigmoid output) -> gx (n): gx = gy * (1 - y) * y.
void sigmoid_backward(int64_t n, const float* gy, const float* y, float* gx);

// In-place y = max(y + b[j], 0) (relu) or y + b[j] over rows of (rows, cols); b may be null.
void bias_relu_rows(int64_t rows, int64_t cols, const float* b, float* y, bool relu = true);

// Run f(begin, end) over [0, n): on the calling thread when n < min_parallel (an OpenMP region
// costs more than small work), else one contiguous range per OpenMP thread. The loops live in f's
// own function, not in an outlined OpenMP body: GCC vectorises `omp parallel for simd` bodies
// far worse (measured 6x slower serially).
template <class F>
inline void for_ranges(int64_t n, int64_t min_parallel, F&& f) {
  if (n < min_parallel || max_threads() == 1) {
    if (n > 0) f(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    int64_t b, e;
    split_range(n, thread_id(), num_threads(), b, e);
    if (b < e) f(b, e);
  }
}

}  // namespace fm
