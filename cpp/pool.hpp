// 2-D max pooling (NCHW), forward with PyTorch-style argmax indices and backward.
#pragma once
#include <cstdint>

namespace fm {

// Geometry of one max_pool2d call. Output size as PyTorch (ceil_mode=False, dilation=1):
// OH = (H + 2*PH - KH) / SH + 1, OW likewise. Padding counts as -inf.
struct Pool2dShape {
  int64_t N, C, H, W;  // input
  int KH, KW, SH, SW, PH, PW;
  int64_t OH, OW;      // output
};

// x (N,C,H,W) -> y (N,C,OH,OW), idx (N,C,OH,OW) int64 flat index ih*W+iw into each input plane
// (idx may be null: values only). First maximum in row-major window order wins; a NaN in the
// window propagates (the index is that of the last NaN), exactly as PyTorch's CPU kernel.
// With code non-null, also (or instead) writes the compact argmax: code (N,C,OH,OW) uint8 = the
// offset dh*KW + dw of the maximum inside its unclipped window (needs KH*KW <= 256).
void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y, int64_t* idx, uint8_t* code = nullptr);
void max_pool2d_forward_reference(const Pool2dShape& s, const float* x, float* y, int64_t* idx);

// grad_y (N,C,OH,OW), idx (N,C,OH,OW) -> grad_x (N,C,H,W): grad_x[plane][idx] += grad_y.
// Only N, C, H, W, OH, OW of `s` are used. Returns false (grad_x unspecified) if an index lies
// outside [0, H*W).
bool max_pool2d_backward(const Pool2dShape& s, const float* gy, const int64_t* idx, float* gx);
bool max_pool2d_backward_reference(const Pool2dShape& s, const float* gy, const int64_t* idx, float* gx);

// grad_y (N,C,OH,OW), code (N,C,OH,OW) compact argmax -> grad_x (N,C,H,W); uses the full
// geometry of `s`. Returns false (grad_x unspecified) on a code outside its window or pointing
// into the padding. With relu_y (N,C,OH,OW) non-null, grad_y counts as 0 where relu_y <= 0: the
// backward of a ReLU before (or after) the pool, fused (relu_backward(grad_y, relu_y) first).
bool max_pool2d_backward_compact(const Pool2dShape& s, const float* gy, const uint8_t* code, float* gx,
                                 const float* relu_y = nullptr);

// Use the AVX-512 paths where the CPU has them (default true). Tests turn them off to check the
// portable paths on the same machine.
void pool_set_simd(bool enabled);
// Number of 2x2 backward calls whose flat-stream kernel met an argmax outside its window and
// fell back to the plane kernels (tests check that valid argmax never does).
int64_t pool_stream_fallbacks();

}  // namespace fm
