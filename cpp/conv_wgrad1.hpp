// Weight gradient of a stride-1 convolution with few input channels (the first layer of an MNIST
// net), AVX-512: Winograd along the kernel rows. See conv_wgrad1.cpp.
#pragma once
#include "conv2d.hpp"

namespace fm {

// dy (N,K,P,Q), x (N,C,H,W) -> dw (K,C,R,S), db (K,) (db may be null). Returns false (and writes
// nothing) when the shape is not one it handles: stride 1, C <= 4, R == S in {3, 5}, an AVX-512
// CPU, images up to 64x64.
bool conv2d_backward_weight_rows_winograd(const ConvShape& s, const float* dy, const float* x, float* dw,
                                          float* db);

}  // namespace fm
