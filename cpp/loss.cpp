// Row-wise softmax, log-softmax, softmax cross-entropy (fused forward + gradient) and MSE.
// Rows are short (C = 10 for MNIST): parallel over rows only for large batches.
#include "loss.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.hpp"

namespace fm {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements below which a call runs on one thread

inline float row_max(int64_t C, const float* x) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < C; ++j) m = (x[j] > m || std::isnan(x[j])) ? x[j] : m;
  return m;
}

// e (C) = exp(x - m); returns sum e in double.
inline double exp_shift(int64_t C, const float* x, float m, float* e) {
  double s = 0;
  for (int64_t j = 0; j < C; ++j) {
    e[j] = std::exp(x[j] - m);
    s += e[j];
  }
  return s;
}
}  // namespace

// x (N,C) -> y (N,C)
void softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    float inv = float(1.0 / exp_shift(C, xr, row_max(C, xr), yr));
    for (int64_t j = 0; j < C; ++j) yr[j] *= inv;
  }
}

// gy (N,C), y (N,C) -> gx (N,C)
void softmax_backward(int64_t N, int64_t C, const float* gy, const float* y, float* gx) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float *g = gy + n * C, *yr = y + n * C;
    double dot = 0;
    for (int64_t j = 0; j < C; ++j) dot += double(g[j]) * yr[j];
    for (int64_t j = 0; j < C; ++j) gx[n * C + j] = yr[j] * (g[j] - float(dot));
  }
}

// x (N,C) -> y (N,C)
void log_softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    float m = row_max(C, xr);
    float lse = float(std::log(exp_shift(C, xr, m, yr)));  // yr used as scratch
    for (int64_t j = 0; j < C; ++j) yr[j] = (xr[j] - m) - lse;
  }
}

// gy (N,C), y (N,C) -> gx (N,C)
void log_softmax_backward(int64_t N, int64_t C, const float* gy, const float* y, float* gx) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float *g = gy + n * C, *yr = y + n * C;
    double s = 0;
    for (int64_t j = 0; j < C; ++j) s += g[j];
    for (int64_t j = 0; j < C; ++j) gx[n * C + j] = g[j] - std::exp(yr[j]) * float(s);
  }
}

// logits (N,C), labels (N) -> loss, grad (N,C)
double softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels, float* grad) {
  std::vector<double> row_loss(N);
  const float invN = 1.f / float(N);
#pragma omp parallel if (N * C >= kParallelMin)
  {
    std::vector<float> e(grad ? 0 : C);  // exp buffer when grad is not wanted
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = logits + n * C;
      float* er = grad ? grad + n * C : e.data();
      float m = row_max(C, xr);
      double s = exp_shift(C, xr, m, er);
      int64_t t = labels[n];
      row_loss[n] = double(m) + std::log(s) - double(xr[t]);
      if (grad) {
        float sc = float(1.0 / s) * invN;
        for (int64_t j = 0; j < C; ++j) er[j] *= sc;
        er[t] -= invN;
      }
    }
  }
  double total = 0;
  for (int64_t n = 0; n < N; ++n) total += row_loss[n];
  return total / double(N);
}

// pred (n), target (n) -> loss, grad (n)
double mse_loss(int64_t n, const float* pred, const float* target, float* grad) {
  constexpr int64_t kBlock = 4096;
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(nb);
  const float scale = n ? 2.f / float(n) : 0.f;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < nb; ++b) {
    int64_t i0 = b * kBlock, i1 = std::min(n, i0 + kBlock);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 float lanes per block, then double
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8)
      for (int k = 0; k < 8; ++k) {
        float d = pred[i + k] - target[i + k];
        acc[k] += d * d;
        if (grad) grad[i + k] = scale * d;
      }
    double s = 0;
    for (int k = 0; k < 8; ++k) s += acc[k];
    for (; i < i1; ++i) {
      float d = pred[i] - target[i];
      s += double(d) * d;
      if (grad) grad[i] = scale * d;
    }
    part[b] = s;
  }
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += part[b];
  return n ? total / double(n) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace fm
