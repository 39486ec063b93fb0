// Elementwise activations, any shape (n elements), forward and backward.
#pragma once
#include <cstdint>

namespace fm {

// x (n) -> y (n): y = max(x, 0); NaN propagates (as torch.relu).
void relu_forward(int64_t n, const float* x, float* y);
// gy (n), x (n) -> gx (n): gx = x <= 0 ? 0 : gy (torch's threshold_backward; NaN x passes gy).
void relu_backward(int64_t n, const float* gy, const float* x, float* gx);

// x (n) -> y (n): y = 1 / (1 + exp(-x)).
void sigmoid_forward(int64_t n, const float* x, float* y);
// gy (n), y (n) (the sigmoid output) -> gx (n): gx = gy * (1 - y) * y.
void sigmoid_backward(int64_t n, const float* gy, const float* y, float* gx);

// In-place y = max(y + b[j], 0) over rows of (rows, cols); b may be null.
void bias_relu_rows(int64_t rows, int64_t cols, const float* b, float* y);

}  // namespace fm
