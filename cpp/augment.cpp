// Batch warps. OpenMP over samples: every sample's output depends only on its own matrix, so the
// result is the same whatever the thread count.
#include "augment.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "common.hpp"

namespace fm {

namespace {

// The largest float <= v (float(v) rounds to nearest, which can exceed v above 2^24).
inline float float_floor(int64_t v) {
  float f = float(v);
  return double(f) > double(v) ? std::nextafter(f, 0.0f) : f;
}

// Source coordinates of output row i (W pixels), shifted by +1 into scratch-plane coordinates and
// clamped to [0, W+1] x [0, H+1] (NaN from w == 0 goes to the zero border too).
__attribute__((always_inline)) inline void row_coords(const double* __restrict M, int64_t i, int64_t H, int64_t W,
                                                      bool projective, float* __restrict sxs,
                                                      float* __restrict sys) {
  const double u0 = M[1] * double(i) + M[2], v0 = M[4] * double(i) + M[5], w0 = M[7] * double(i) + M[8];
  // upper clamps W+1, H+1 rounded down to a float (rounding up would let a tap read past the plane)
  const float hx = float_floor(W + 1), hy = float_floor(H + 1);
  for (int64_t j = 0; j < W; ++j) {
    double u = M[0] * double(j) + u0, v = M[3] * double(j) + v0;
    if (projective) {
      double w = M[6] * double(j) + w0;
      u /= w;
      v /= w;
    }
    float sx = float(u) + 1.0f, sy = float(v) + 1.0f;
    sx = sx > 0.0f ? sx : 0.0f;
    sy = sy > 0.0f ? sy : 0.0f;
    sxs[j] = sx < hx ? sx : hx;
    sys[j] = sy < hy ? sy : hy;
  }
}

// Bilinear taps for pixels [j0, W) of a row from the zero-bordered scratch plane `pad` (row pitch PW).
__attribute__((always_inline)) inline void row_taps(const float* __restrict pad, int64_t PW, const float* sxs,
                                                    const float* sys, float* __restrict orow, int64_t j0,
                                                    int64_t W) {
  for (int64_t j = j0; j < W; ++j) {
    const float sx = sxs[j], sy = sys[j];
    const int64_t x0 = int64_t(sx), y0 = int64_t(sy);  // sx, sy >= 0: truncation is floor
    const float ax = sx - float(x0), ay = sy - float(y0);
    const float* r0 = pad + y0 * PW + x0;
    const float* r1 = r0 + PW;
    const float top = r0[0] + ax * (r0[1] - r0[0]);
    const float bot = r1[0] + ax * (r1[1] - r1[0]);
    orow[j] = top + ay * (bot - top);
  }
}

}  // namespace

struct AugmentKernels {
  void (*plane_rows)(const float* pad, int64_t PW, const double* M, float* o, int64_t H, int64_t W, bool projective,
                     float* sxs, float* sys);
  const char* name;
};

}  // namespace fm

#define FM_KERNELS_FILE "augment.inl"
#include "simd/instantiate.hpp"

namespace fm {

// x (N,C,H,W), mats (N,3,3) -> out (N,C,H,W)
// Fast path: each input plane is copied into a zero-bordered scratch plane (1 pixel left/top,
// 2 right/bottom) and source coordinates are clamped to [-1, W] x [-1, H]. Every bilinear tap then
// lands inside the scratch plane, out-of-image taps read the zero border, and the inner loop has no
// bounds branches; the result equals grid_sample's zero padding (a clamped coordinate's taps are
// all zero, exactly as the unclamped ones would be). The rows run in augment.inl, one copy per ISA.
void warp(const float* x, const double* mats, float* out, int64_t N, int64_t C, int64_t H, int64_t W,
          bool projective) {
  const int64_t plane = H * W, PW = W + 3, PH = H + 3;
  // 32-bit gather indices: fine for any image below ~2^31 scratch pixels (else the scalar rows)
  const AugmentKernels& k = FM_PICK_FOR(PH * PW < (int64_t(1) << 31) ? isa() : Isa::generic, kAugment);
  note_kernel(Op::augment, k.name);
  // Per-thread scratch, allocated before the parallel region (a failed allocation then raises
  // MemoryError in the binding instead of terminating inside OpenMP): the zero-bordered plane
  // (borders stay zero, the interior is rewritten) and the row coordinates.
  const bool par = N * C * plane > 8192;
  const size_t per = size_t(PH * PW) + 2 * size_t(W);
  std::vector<float> scratch(size_t(par ? max_threads() : 1) * per, 0.0f);
#pragma omp parallel if (par)
  {
    float* pad = scratch.data() + size_t(thread_id()) * per;
    float* sxs = pad + size_t(PH * PW);
    float* sys = sxs + W;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const double* M = mats + 9 * n;
      for (int64_t c = 0; c < C; ++c) {
        const float* img = x + (n * C + c) * plane;
        for (int64_t i = 0; i < H; ++i)
          std::memcpy(pad + size_t((i + 1) * PW + 1), img + i * W, size_t(W) * sizeof(float));
        float* o = out + (n * C + c) * plane;
        k.plane_rows(pad, PW, M, o, H, W, projective, sxs, sys);
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
