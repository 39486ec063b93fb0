// Elementwise activations. Memory-bound loops the compiler vectorises; OpenMP only above a size
// where a parallel region pays for itself.
#include "activation.hpp"

#include <cmath>

#include "common.hpp"

namespace fm {

namespace {
constexpr int64_t kParallelMin = 1 << 16;  // elements below which a call runs on one thread
}

// x (n) -> y (n)
void relu_forward(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i];  // NaN < 0 is false: NaN passes
}

// gy (n), x (n) -> gx (n)
void relu_backward(int64_t n, const float* gy, const float* x, float* gx) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float g = gy[i];  // loaded unconditionally so the select vectorises (no branch)
    gx[i] = x[i] <= 0.f ? 0.f : g;
  }
}

// x (n) -> y (n)
void sigmoid_forward(int64_t n, const float* x, float* y) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin / 4)
  for (int64_t i = 0; i < n; ++i) y[i] = 1.f / (1.f + std::exp(-x[i]));
}

// gy (n), y (n) -> gx (n)
void sigmoid_backward(int64_t n, const float* gy, const float* y, float* gx) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * (1.f - y[i]) * y[i];
}

// y (rows, cols) += b (cols), then relu, in place
void bias_relu_rows(int64_t rows, int64_t cols, const float* b, float* y) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * cols;
    if (b) {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        float v = yr[j] + b[j];
        yr[j] = v < 0.f ? 0.f : v;
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) yr[j] = yr[j] < 0.f ? 0.f : yr[j];
    }
  }
}

}  // namespace fm
