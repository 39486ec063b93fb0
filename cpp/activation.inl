// Elementwise activation loops, written once and compiled per ISA by simd/instantiate.hpp: plain
// loops that the compiler vectorises at each region's width (memory-bound: explicit vectors buy
// nothing here). NaN handling is spelled out in each loop.

static void relu_range(int64_t n, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i];  // NaN < 0 is false: NaN passes
}

static void relu_backward_range(int64_t n, const float* __restrict gy, const float* __restrict x,
                                   float* __restrict gx) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gy[i];  // loaded unconditionally so the select vectorises (no branch)
    gx[i] = x[i] <= 0.f ? 0.f : g;
  }
}

// sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0, with e = exp(-|x|) (no overflow).
static void sigmoid_range(int64_t n, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float a = v < 0.f ? v : -v;  // -|v|
    const float e = exp_nonpos(a);  // NaN handled below
    const float s = 1.f / (1.f + e);
    const float r = v >= 0.f ? s : e * s;
    y[i] = v != v ? v : r;
  }
}

static void sigmoid_backward_range(int64_t n, const float* __restrict gy, const float* __restrict y,
                                      float* __restrict gx) {
  for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * (1.f - y[i]) * y[i];
}

static void bias_relu_range(int64_t r0, int64_t r1, int64_t cols, const float* __restrict b,
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

const ActKernels kAct{&relu_range, &relu_backward_range, &sigmoid_range, &sigmoid_backward_range, &bias_relu_range,
                      S::name};
