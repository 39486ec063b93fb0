// Elementwise activations: memory-bound loops written so the compiler vectorises them, compiled
// for AVX-512 / AVX2 / baseline and chosen at load time; OpenMP only above a size where a
// parallel region pays for itself.
#include "activation.hpp"

namespace fm {

namespace {

constexpr int64_t kParallelMin = 1 << 17;  // elements below which a call runs on one thread

FM_CLONES void relu_range(int64_t n, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i];  // NaN < 0 is false: NaN passes
}

FM_CLONES void relu_backward_range(int64_t n, const float* __restrict gy, const float* __restrict x,
                                   float* __restrict gx) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gy[i];  // loaded unconditionally so the select vectorises (no branch)
    gx[i] = x[i] <= 0.f ? 0.f : g;
  }
}

// sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0, with e = exp(-|x|) (no overflow).
FM_CLONES void sigmoid_range(int64_t n, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float a = v < 0.f ? v : -v;  // -|v|
    const float e = exp_nonpos(a);  // NaN handled below
    const float s = 1.f / (1.f + e);
    const float r = v >= 0.f ? s : e * s;
    y[i] = v != v ? v : r;
  }
}

FM_CLONES void sigmoid_backward_range(int64_t n, const float* __restrict gy, const float* __restrict y,
                                      float* __restrict gx) {
  for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * (1.f - y[i]) * y[i];
}

FM_CLONES void bias_relu_range(int64_t r0, int64_t r1, int64_t cols, const float* __restrict b,
                               float* __restrict y, bool relu) {
  for (int64_t r = r0; r < r1; ++r) {
    float* yr = y + r * cols;
    if (!relu) {
      for (int64_t j = 0; j < cols; ++j) yr[j] += b[j];
    } else if (b)
      for (int64_t j = 0; j < cols; ++j) {
        float v = yr[j] + b[j];
        yr[j] = v < 0.f ? 0.f : v;
      }
    else
      for (int64_t j = 0; j < cols; ++j) yr[j] = yr[j] < 0.f ? 0.f : yr[j];
  }
}

}  // namespace

// x (n) -> y (n)
void relu_forward(int64_t n, const float* x, float* y) {
  for_ranges(n, kParallelMin, [&](int64_t b, int64_t e) { relu_range(e - b, x + b, y + b); });
}

// gy (n), x (n) -> gx (n)
void relu_backward(int64_t n, const float* gy, const float* x, float* gx) {
  for_ranges(n, kParallelMin, [&](int64_t b, int64_t e) { relu_backward_range(e - b, gy + b, x + b, gx + b); });
}

// x (n) -> y (n)
void sigmoid_forward(int64_t n, const float* x, float* y) {
  for_ranges(n, kParallelMin / 4, [&](int64_t b, int64_t e) { sigmoid_range(e - b, x + b, y + b); });
}

// gy (n), y (n) -> gx (n)
void sigmoid_backward(int64_t n, const float* gy, const float* y, float* gx) {
  for_ranges(n, kParallelMin, [&](int64_t b, int64_t e) { sigmoid_backward_range(e - b, gy + b, y + b, gx + b); });
}

// y (rows, cols) += b (cols), then relu if asked, in place
void bias_relu_rows(int64_t rows, int64_t cols, const float* b, float* y, bool relu) {
  if (!relu && !b) return;
  const int64_t min_rows = cols > 0 ? (kParallelMin + cols - 1) / cols : rows + 1;
  for_ranges(rows, min_rows, [&](int64_t r0, int64_t r1) { bias_relu_range(r0, r1, cols, b, y, relu); });
}

}  // namespace fm
