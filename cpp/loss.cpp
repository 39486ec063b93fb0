// Row-wise softmax, log-softmax, softmax cross-entropy (fused forward + gradient) and MSE.
// Rows are short (C = 10 for MNIST): each kernel works on a range of rows in its own vectorised
// function (a vectorised exp), split across OpenMP threads only for large batches.
#include "loss.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "activation.hpp"  // for_ranges, exp_nonpos, FM_CLONES

namespace fm {

namespace {
constexpr int64_t kParallelMin = 1 << 16;  // elements below which a call runs on one thread

int64_t min_rows(int64_t C) { return C > 0 ? (kParallelMin + C - 1) / C : std::numeric_limits<int64_t>::max(); }

// Largest element of a row; NaN wins (as torch.max), -inf for an all -inf row.
inline float row_max(int64_t C, const float* x) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < C; ++j) m = (x[j] > m) | (x[j] != x[j]) ? x[j] : m;
  return m;
}

// e (C) = exp(x - m) (every x - m <= 0, or NaN); returns sum e.
inline float exp_shift(int64_t C, const float* __restrict x, float m, float* __restrict e) {
  float s = 0.f;
  for (int64_t j = 0; j < C; ++j) {
    e[j] = exp_nonpos(x[j] - m);
    s += e[j];
  }
  return s;
}

FM_CLONES void softmax_rows(int64_t r0, int64_t r1, int64_t C, const float* x, float* y) {
  for (int64_t n = r0; n < r1; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    const float inv = 1.f / exp_shift(C, xr, row_max(C, xr), yr);
    for (int64_t j = 0; j < C; ++j) yr[j] *= inv;
  }
}

FM_CLONES void softmax_backward_rows(int64_t r0, int64_t r1, int64_t C, const float* gy, const float* y, float* gx) {
  for (int64_t n = r0; n < r1; ++n) {
    const float *g = gy + n * C, *yr = y + n * C;
    float dot = 0.f;
    for (int64_t j = 0; j < C; ++j) dot += g[j] * yr[j];
    for (int64_t j = 0; j < C; ++j) gx[n * C + j] = yr[j] * (g[j] - dot);
  }
}

FM_CLONES void log_softmax_rows(int64_t r0, int64_t r1, int64_t C, const float* x, float* y) {
  for (int64_t n = r0; n < r1; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    const float m = row_max(C, xr);
    const float lse = std::log(exp_shift(C, xr, m, yr));  // yr used as scratch
    for (int64_t j = 0; j < C; ++j) yr[j] = (xr[j] - m) - lse;
  }
}

FM_CLONES void log_softmax_backward_rows(int64_t r0, int64_t r1, int64_t C, const float* gy, const float* y,
                                         float* gx) {
  for (int64_t n = r0; n < r1; ++n) {
    const float *g = gy + n * C, *yr = y + n * C;
    float s = 0.f;
    for (int64_t j = 0; j < C; ++j) s += g[j];
    for (int64_t j = 0; j < C; ++j) gx[n * C + j] = g[j] - std::exp(yr[j]) * s;
  }
}

// Rows [r0, r1): loss[n] = logsumexp(x_n) - x_n[label]; grad (or scratch e when grad is null)
// = (softmax(x_n) - onehot) * invN.
FM_CLONES void cross_entropy_rows(int64_t r0, int64_t r1, int64_t C, const float* x, const int64_t* labels,
                                  float invN, float* grad, float* e, double* loss) {
  for (int64_t n = r0; n < r1; ++n) {
    const float* xr = x + n * C;
    float* er = grad ? grad + n * C : e;
    const float m = row_max(C, xr);
    const float s = exp_shift(C, xr, m, er);
    const int64_t t = labels[n];
    loss[n] = double(m) + std::log(double(s)) - double(xr[t]);
    if (grad) {
      const float sc = invN / s;
      for (int64_t j = 0; j < C; ++j) er[j] *= sc;
      er[t] -= invN;
    }
  }
}

FM_CLONES double mse_block(int64_t i0, int64_t i1, const float* pred, const float* target, float scale, float* grad) {
  float acc[16] = {};  // 16 float lanes, added as doubles at the end
  int64_t i = i0;
  for (; i + 16 <= i1; i += 16)
    for (int k = 0; k < 16; ++k) {
      const float d = pred[i + k] - target[i + k];
      acc[k] += d * d;
      if (grad) grad[i + k] = scale * d;
    }
  double s = 0;
  for (int k = 0; k < 16; ++k) s += acc[k];
  for (; i < i1; ++i) {
    const float d = pred[i] - target[i];
    s += double(d) * d;
    if (grad) grad[i] = scale * d;
  }
  return s;
}
}  // namespace

// x (N,C) -> y (N,C)
void softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
  for_ranges(N, min_rows(C), [&](int64_t a, int64_t b) { softmax_rows(a, b, C, x, y); });
}

// gy (N,C), y (N,C) -> gx (N,C)
void softmax_backward(int64_t N, int64_t C, const float* gy, const float* y, float* gx) {
  for_ranges(N, min_rows(C), [&](int64_t a, int64_t b) { softmax_backward_rows(a, b, C, gy, y, gx); });
}

// x (N,C) -> y (N,C)
void log_softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
  for_ranges(N, min_rows(C), [&](int64_t a, int64_t b) { log_softmax_rows(a, b, C, x, y); });
}

// gy (N,C), y (N,C) -> gx (N,C)
void log_softmax_backward(int64_t N, int64_t C, const float* gy, const float* y, float* gx) {
  for_ranges(N, min_rows(C), [&](int64_t a, int64_t b) { log_softmax_backward_rows(a, b, C, gy, y, gx); });
}

// logits (N,C), labels (N) -> loss, grad (N,C)
double softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels, float* grad) {
  std::vector<double> row_loss(N);
  const float invN = 1.f / float(N);
  for_ranges(N, min_rows(C), [&](int64_t a, int64_t b) {
    std::vector<float> e(grad ? 0 : C);  // exp scratch when no gradient is wanted
    cross_entropy_rows(a, b, C, logits, labels, invN, grad, e.data(), row_loss.data());
  });
  double total = 0;  // rows added in order: independent of the thread count
  for (int64_t n = 0; n < N; ++n) total += row_loss[n];
  return total / double(N);
}

// pred (n), target (n) -> loss, grad (n)
double mse_loss(int64_t n, const float* pred, const float* target, float* grad) {
  constexpr int64_t kBlock = 4096;  // fixed blocks summed in order: independent of the thread count
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(nb);
  const float scale = n ? 2.f / float(n) : 0.f;
  for_ranges(nb, kParallelMin / kBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      part[b] = mse_block(b * kBlock, std::min(n, (b + 1) * kBlock), pred, target, scale, grad);
  });
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += part[b];
  return n ? total / double(n) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace fm
