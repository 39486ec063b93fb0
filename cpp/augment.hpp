// Batch image warps for data augmentation: one transform per sample, bilinear, zero fill.
// Plain C++ on raw pointers. Coordinates are pixel indices (column x, row y; pixel centres at
// integers); a matrix maps an OUTPUT pixel to the INPUT location it samples from.
#pragma once
#include <cstdint>

namespace fm {

// x (N,C,H,W), mats (N,3,3) row-major -> out (N,C,H,W). For output pixel (j, i):
//   [u, v, w] = M [j, i, 1];  src = (u/w, v/w) (w == 1 when projective == false: affine, M's last row
// ignored). Samples outside the image count as 0 (torch grid_sample padding_mode="zeros").
void warp(const float* x, const double* mats, float* out, int64_t N, int64_t C, int64_t H, int64_t W,
          bool projective);
void warp_reference(const float* x, const double* mats, float* out, int64_t N, int64_t C, int64_t H, int64_t W,
                    bool projective);

// x (n) -> out (n): out = clamp(x + std*noise, lo, hi) (no clamp when lo > hi). noise (n) standard normal.
void add_noise_clip(const float* x, const float* noise, float* out, int64_t n, float std, float lo, float hi);

}  // namespace fm
