// Batch warps. OpenMP over samples: every sample's output depends only on its own matrix, so the
// result is the same whatever the thread count.
#include "augment.hpp"

#include <cmath>

#include "common.hpp"

namespace fm {

namespace {

// One bilinear sample of the (H,W) plane `img` at (sx, sy), zero outside (grid_sample semantics:
// each of the four neighbours contributes only when it lies inside the image).
inline float bilinear_zero(const float* img, int64_t H, int64_t W, float sx, float sy) {
  float fx0 = std::floor(sx), fy0 = std::floor(sy);
  int64_t x0 = int64_t(fx0), y0 = int64_t(fy0);
  float ax = sx - fx0, ay = sy - fy0;
  float w00 = (1 - ax) * (1 - ay), w01 = ax * (1 - ay), w10 = (1 - ax) * ay, w11 = ax * ay;
  bool xin0 = x0 >= 0 && x0 < W, xin1 = x0 + 1 >= 0 && x0 + 1 < W;
  bool yin0 = y0 >= 0 && y0 < H, yin1 = y0 + 1 >= 0 && y0 + 1 < H;
  float r = 0.0f;
  if (yin0) {
    const float* row = img + y0 * W;
    if (xin0) r += w00 * row[x0];
    if (xin1) r += w01 * row[x0 + 1];
  }
  if (yin1) {
    const float* row = img + (y0 + 1) * W;
    if (xin0) r += w10 * row[x0];
    if (xin1) r += w11 * row[x0 + 1];
  }
  return r;
}

}  // namespace

// x (N,C,H,W), mats (N,3,3) -> out (N,C,H,W)
void warp(const float* x, const double* mats, float* out, int64_t N, int64_t C, int64_t H, int64_t W,
          bool projective) {
  const int64_t plane = H * W;
  // Far-away source coordinates (huge scales, w -> 0) are clamped to a band just outside the image:
  // the sample is zero there either way, and the float -> int conversion stays defined.
  const float lo_x = -2.0f, hi_x = float(W) + 1.0f, lo_y = -2.0f, hi_y = float(H) + 1.0f;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const double* M = mats + 9 * n;
    for (int64_t i = 0; i < H; ++i) {
      float* orow = out + n * C * plane + i * W;
      for (int64_t j = 0; j < W; ++j) {
        double u = M[0] * j + M[1] * i + M[2];
        double v = M[3] * j + M[4] * i + M[5];
        if (projective) {
          double w = M[6] * j + M[7] * i + M[8];
          u /= w;
          v /= w;
        }
        float sx = float(u), sy = float(v);
        if (!(sx > lo_x)) sx = lo_x;  // also catches NaN
        if (!(sx < hi_x)) sx = hi_x;
        if (!(sy > lo_y)) sy = lo_y;
        if (!(sy < hi_y)) sy = hi_y;
        for (int64_t c = 0; c < C; ++c)
          orow[c * plane + j] = bilinear_zero(x + (n * C + c) * plane, H, W, sx, sy);
      }
    }
  }
}

void warp_reference(const float* x, const double* mats, float* out, int64_t N, int64_t C, int64_t H, int64_t W,
                    bool projective) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          const double* M = mats + 9 * n;
          double u = M[0] * j + M[1] * i + M[2], v = M[3] * j + M[4] * i + M[5];
          double w = projective ? M[6] * j + M[7] * i + M[8] : 1.0;
          double sx = u / w, sy = v / w, r = 0.0;
          double fx = std::floor(sx), fy = std::floor(sy);
          for (int dy = 0; dy < 2; ++dy)
            for (int dx = 0; dx < 2; ++dx) {
              double yy = fy + dy, xx = fx + dx;
              if (!(yy >= 0 && yy < H && xx >= 0 && xx < W)) continue;  // NaN-safe
              double wgt = (dx ? sx - fx : 1 - (sx - fx)) * (dy ? sy - fy : 1 - (sy - fy));
              r += wgt * x[((n * C + c) * H + int64_t(yy)) * W + int64_t(xx)];
            }
          out[((n * C + c) * H + i) * W + j] = float(r);
        }
}

// x (n), noise (n) -> out (n)
void add_noise_clip(const float* x, const float* noise, float* out, int64_t n, float std, float lo, float hi) {
  const bool clip = lo <= hi;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    float r = x[i] + std * noise[i];
    if (clip) r = r < lo ? lo : (r > hi ? hi : r);
    out[i] = r;
  }
}

}  // namespace fm
