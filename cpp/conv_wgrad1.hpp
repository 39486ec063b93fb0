// Weight gradient of a stride-1 convolution with few input channels (the first layer of an MNIST
// net), every vector ISA (AVX-512, AVX2, NEON): a direct kernel on shifted planes (3x3) and
// Winograd along the kernel rows (5x5). See conv_wgrad1.cpp.
#pragma once
#include "conv2d.hpp"

namespace fm {

// dy (N,K,P,Q), x (N,C,H,W) -> dw (K,C,R,S), db (K,) (db may be null). Returns false (and writes
// nothing) when the shape is not one it handles: a vector ISA (not generic), N >= 1, stride 1,
// C <= 4, R = S in {3, 5}, small images (up to about 32 x 32 padded; 5x5 up to 64 columns). On
// success it records its kernel (note_kernel). The result does not depend on the number of threads.
bool conv2d_backward_weight_first_layer(const ConvShape& s, const float* dy, const float* x, float* dw, float* db);

}  // namespace fm
