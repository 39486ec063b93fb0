// Dense layer y = x W^T + b with PyTorch's weight layout (out, in), on fm::sgemm.
#pragma once
#include <cstdint>

namespace fm {

// x (N,in), w (out,in), b (out) or null -> y (N,out); relu applies max(., 0) after the bias. The
// same bits whichever way it is computed (direct, transposed) and for any thread count.
void linear_forward(int64_t N, int64_t in, int64_t out, const float* x, const float* w, const float* b,
                    float* y, bool relu = false);

// gy (N,out), x (N,in), w (out,in) -> gx (N,in), gw (out,in), gb (out); any output may be null
// (not computed). gx and gw are GEMMs run side by side, each split between threads by columns (no
// atomics, no partial sums: the same bits for any thread count); gb sums rows in a fixed order.
void linear_backward(int64_t N, int64_t in, int64_t out, const float* gy, const float* x, const float* w,
                     float* gx, float* gw, float* gb);

// Plain loops (double accumulation), for tests.
void linear_forward_reference(int64_t N, int64_t in, int64_t out, const float* x, const float* w,
                              const float* b, float* y);

}  // namespace fm
