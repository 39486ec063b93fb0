// 2-D convolution (cross-correlation, as torch.nn.functional.conv2d): forward, backward_input,
// backward_weight (+ bias). NCHW float32, C-contiguous.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fm {

struct ConvShape {
  int N, C, H, W;  // input
  int K, R, S;     // weight (K, C, R, S)
  int sh, sw;      // stride
  int ph, pw;      // zero padding
  // Output size, computed in 64 bits; the bindings reject shapes whose sizes reach 2^31.
  int P() const { return int((int64_t(H) + 2 * int64_t(ph) - R) / sh + 1); }
  int Q() const { return int((int64_t(W) + 2 * int64_t(pw) - S) / sw + 1); }
};

// Which implementation runs: the fastest for this CPU, the im2col + SGEMM path (any ISA), or the
// plain reference loops; winograd / winograd_f2 / winograd_f4 force the Winograd kernels (default,
// 2x2 or 4x4 output tiles; cpp/winograd.hpp) where they apply (stride 1, 3x3 / 5x5, a vector ISA) and
// run `fast` elsewhere; direct is `fast` without the Winograd kernels.
enum class ConvImpl { fast = 0, gemm = 1, reference = 2, winograd = 3, winograd_f2 = 4, winograd_f4 = 5, direct = 6 };

// x (N,C,H,W), w (K,C,R,S), b (K,) or null -> y (N,K,P,Q); relu applies max(0, .) after the bias.
void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                    bool relu, ConvImpl impl = ConvImpl::fast);
// dy (N,K,P,Q), w (K,C,R,S) -> dx (N,C,H,W)
void conv2d_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx,
                           ConvImpl impl = ConvImpl::fast);
// dy (N,K,P,Q), x (N,C,H,W) -> dw (K,C,R,S), db (K,) (db may be null)
void conv2d_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                            ConvImpl impl = ConvImpl::fast);

// Plain loops (double accumulation), kept for tests.
void conv2d_forward_reference(const ConvShape& s, const float* x, const float* w, const float* b,
                              float* y, bool relu);
void conv2d_backward_input_reference(const ConvShape& s, const float* dy, const float* w, float* dx);
void conv2d_backward_weight_reference(const ConvShape& s, const float* dy, const float* x, float* dw,
                                      float* db);

// Internal (shared by conv2d.cpp and conv_wgrad1.cpp): x_n (C,H,W) -> the S-shifted planes
// xs[c*S+t][h][q] = xpad[c][h][q+t], planes pstride floats apart. Writes only the entries that
// come from x; the caller zeroes the rest once per geometry.
void build_planes(const ConvShape& s, int Q, size_t pstride, const float* x, float* xs);

}  // namespace fm
