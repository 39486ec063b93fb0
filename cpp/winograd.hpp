// Winograd convolution F(m x m, r x r) for stride 1, dilation 1, square 3x3 and 5x5 kernels
// (written once, instantiated per vector ISA: AVX-512, AVX2, NEON; the callers fall back to the
// direct kernels elsewhere and on the generic level). NCHW float32, C-contiguous.
#pragma once
#include "conv2d.hpp"

namespace fm {

// True when the Winograd path can run this shape at the current level: stride 1, R == S in
// {3, 5}, a vector ISA (not FASTMNIST_ISA=generic).
bool winograd_available(const ConvShape& s);
// True when the Winograd path is also the faster one (enough channels to amortise the transforms;
// measured on the MNIST 16->32 layers). Implies winograd_available.
bool winograd_preferred(const ConvShape& s);

// tile: output tile size m (2: F(2x2,r x r), 4: F(4x4,3x3) -- 3x3 only), 0 = the default for the
// shape. Requires winograd_available(s).
// x (N,C,H,W), w (K,C,R,S), b (K,) or null -> y (N,K,P,Q); relu applies max(0, .) after the bias.
void winograd_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                      bool relu, int tile = 0);
// dy (N,K,P,Q), w (K,C,R,S) -> dx (N,C,H,W): the forward Winograd on dy with the flipped,
// channel-transposed weights and padding R-1-pad (needs pad <= R-1).
bool winograd_backward_input_available(const ConvShape& s);
bool winograd_backward_input_preferred(const ConvShape& s);
void winograd_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, int tile = 0);

// dy (N,K,P,Q), x (N,C,H,W) -> dw (K,C,R,S), db (K,) or null: the adjoint of the forward
// transforms, summed per fixed group of 16 images (independent of the thread count).
bool winograd_backward_weight_preferred(const ConvShape& s);
void winograd_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                              int tile = 0);

// Dispatch helpers for conv2d.cpp. ConvImpl::winograd / winograd_f2 / winograd_f4 force the
// Winograd path (default / 2x2 / 4x4 output tiles) where it is available; ConvImpl::fast takes it
// where it is preferred. Each returns true when it ran; otherwise a Winograd impl (and
// ConvImpl::direct, which never takes the Winograd path) is changed to ConvImpl::fast and the
// caller goes on with the direct kernels.
inline bool is_winograd(ConvImpl impl) {
  return impl == ConvImpl::winograd || impl == ConvImpl::winograd_f2 || impl == ConvImpl::winograd_f4;
}
bool winograd_try_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu,
                          ConvImpl& impl);
bool winograd_try_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, ConvImpl& impl);
bool winograd_try_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                                  ConvImpl& impl);

}  // namespace fm
