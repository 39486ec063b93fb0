// Row-wise softmax / log-softmax / cross-entropy / MSE loops, written once and compiled per ISA by
// simd/instantiate.hpp (the compiler vectorises each loop at the region's width).

// Largest element of a row; NaN wins (as torch.max), -inf for an all -inf row.
FM_INLINE float row_max(int64_t C, const float* x) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < C; ++j) m = (x[j] > m) | (x[j] != x[j]) ? x[j] : m;
  return m;
}

// e (C) = exp(x - m) (every x - m <= 0, or NaN); returns sum e.
FM_INLINE float exp_shift(int64_t C, const float* __restrict x, float m, float* __restrict e) {
  float s = 0.f;
  for (int64_t j = 0; j < C; ++j) {
    e[j] = exp_nonpos(x[j] - m);
    s += e[j];
  }
  return s;
}

static void softmax_rows(int64_t r0, int64_t r1, int64_t C, const float* x, float* y) {
  for (int64_t n = r0; n < r1; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    const float inv = 1.f / exp_shift(C, xr, row_max(C, xr), yr);
    for (int64_t j = 0; j < C; ++j) yr[j] *= inv;
  }
}

static void softmax_backward_rows(int64_t r0, int64_t r1, int64_t C, const float* gy, const float* y, float* gx) {
  for (int64_t n = r0; n < r1; ++n) {
    const float *g = gy + n * C, *yr = y + n * C;
    float dot = 0.f;
    for (int64_t j = 0; j < C; ++j) dot += g[j] * yr[j];
    for (int64_t j = 0; j < C; ++j) gx[n * C + j] = yr[j] * (g[j] - dot);
  }
}

static void log_softmax_rows(int64_t r0, int64_t r1, int64_t C, const float* x, float* y) {
  for (int64_t n = r0; n < r1; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    const float m = row_max(C, xr);
    const float lse = std::log(exp_shift(C, xr, m, yr));  // yr used as scratch
    for (int64_t j = 0; j < C; ++j) yr[j] = (xr[j] - m) - lse;
  }
}

static void log_softmax_backward_rows(int64_t r0, int64_t r1, int64_t C, const float* gy, const float* y,
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
static void cross_entropy_rows(int64_t r0, int64_t r1, int64_t C, const float* x, const int64_t* labels,
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

static double mse_block(int64_t i0, int64_t i1, const float* pred, const float* target, float scale, float* grad) {
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

const LossKernels kLoss{&softmax_rows, &softmax_backward_rows, &log_softmax_rows, &log_softmax_backward_rows,
                        &cross_entropy_rows, &mse_block, S::name};
