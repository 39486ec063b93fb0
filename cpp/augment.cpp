// Batch warps. OpenMP over samples: every sample's output depends only on its own matrix, so the
// result is the same whatever the thread count.
#include "augment.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "common.hpp"

namespace fm {


// x (N,C,H,W), mats (N,3,3) -> out (N,C,H,W)
// Fast path: each input plane is copied into a zero-bordered scratch plane (1 pixel left/top,
// 2 right/bottom) and source coordinates are clamped to [-1, W] x [-1, H]. Every bilinear tap then
// lands inside the scratch plane, out-of-image taps read the zero border, and the inner loop has no
// bounds branches; the result equals grid_sample's zero padding (a clamped coordinate's taps are
// all zero, exactly as the unclamped ones would be).
void warp(const float* x, const double* mats, float* out, int64_t N, int64_t C, int64_t H, int64_t W,
          bool projective) {
  const int64_t plane = H * W, PW = W + 3, PH = H + 3;
#pragma omp parallel
  {
    std::vector<float> pad(size_t(PH * PW), 0.0f);  // borders stay zero; the interior is rewritten
    std::vector<float> sxs(static_cast<size_t>(W)), sys(static_cast<size_t>(W));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const double* M = mats + 9 * n;
      for (int64_t c = 0; c < C; ++c) {
        const float* img = x + (n * C + c) * plane;
        for (int64_t i = 0; i < H; ++i)
          std::memcpy(&pad[size_t((i + 1) * PW + 1)], img + i * W, size_t(W) * sizeof(float));
        float* o = out + (n * C + c) * plane;
        for (int64_t i = 0; i < H; ++i) {
          // source coordinates of this output row, shifted by +1 into scratch-plane coordinates
          const double u0 = M[1] * i + M[2], v0 = M[4] * i + M[5], w0 = M[7] * i + M[8];
          for (int64_t j = 0; j < W; ++j) {
            double u = M[0] * j + u0, v = M[3] * j + v0;
            if (projective) {
              double w = M[6] * j + w0;
              u /= w;
              v /= w;
            }
            float sx = float(u) + 1.0f, sy = float(v) + 1.0f;
            sx = sx > 0.0f ? sx : 0.0f;  // also maps NaN (w == 0) to the zero border
            sy = sy > 0.0f ? sy : 0.0f;
            sx = sx < float(W + 1) ? sx : float(W + 1);
            sy = sy < float(H + 1) ? sy : float(H + 1);
            sxs[size_t(j)] = sx;
            sys[size_t(j)] = sy;
          }
          float* orow = o + i * W;
          for (int64_t j = 0; j < W; ++j) {
            const float sx = sxs[size_t(j)], sy = sys[size_t(j)];
            const int64_t x0 = int64_t(sx), y0 = int64_t(sy);  // sx, sy >= 0: truncation is floor
            const float ax = sx - float(x0), ay = sy - float(y0);
            const float* r0 = &pad[size_t(y0 * PW + x0)];
            const float* r1 = r0 + PW;
            const float top = r0[0] + ax * (r0[1] - r0[0]);
            const float bot = r1[0] + ax * (r1[1] - r1[0]);
            orow[j] = top + ay * (bot - top);
          }
        }
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
