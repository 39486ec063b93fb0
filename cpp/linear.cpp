// Dense layer on the shared SGEMM. Small problems call the single-threaded sgemm: an OpenMP
// region costs more than a 128x10 product.
#include "linear.hpp"

#include <cstring>

#include "activation.hpp"
#include "common.hpp"
#include "gemm.hpp"

namespace fm {

namespace {
constexpr int64_t kParallelFlops = 1 << 17;  // multiply-adds below which the GEMM runs serially

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc) {
  auto f = double(M) * double(N) * double(K) >= double(kParallelFlops) ? sgemm_parallel : sgemm;  // no int64 overflow
  f(ta, tb, int(M), int(N), int(K), 1.f, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
}  // namespace

// x (N,in), w (out,in), b (out) -> y (N,out)
void linear_forward_reference(int64_t N, int64_t in, int64_t out, const float* x, const float* w,
                              const float* b, float* y) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < out; ++o) {
      double acc = b ? b[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += double(x[n * in + i]) * w[o * in + i];
      y[n * out + o] = float(acc);
    }
}

// x (N,in), w (out,in), b (out) -> y (N,out)
void linear_forward(int64_t N, int64_t in, int64_t out, const float* x, const float* w, const float* b,
                    float* y, bool relu) {
  if (N == 0 || out == 0) return;
  if (in == 0) {  // empty product: y = b
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < out; ++o) y[n * out + o] = b ? b[o] : 0.f;
    if (relu) bias_relu_rows(N, out, nullptr, y);
    return;
  }
  note_kernel(Op::linear, isa_name(isa()));  // the level's SGEMM + bias/ReLU pass
  // GEMM with beta = 0, then one pass adding the bias (and ReLU): measured faster than
  // pre-filling y with the bias and beta = 1.
  gemm(false, true, N, out, in, x, in, w, in, 0.f, y, out);
  bias_relu_rows(N, out, b, y, relu);
}

// gy (N,out), x (N,in), w (out,in) -> gx (N,in), gw (out,in), gb (out)
void linear_backward(int64_t N, int64_t in, int64_t out, const float* gy, const float* x, const float* w,
                     float* gx, float* gw, float* gb) {
  note_kernel(Op::linear, isa_name(isa()));
  if (gx) {  // gx (N,in) = gy (N,out) @ w (out,in)
    if (out == 0 || N == 0 || in == 0) std::memset(gx, 0, sizeof(float) * N * in);
    else gemm(false, false, N, in, out, gy, out, w, in, 0.f, gx, in);
  }
  if (gw) {  // gw (out,in) = gy^T (out,N) @ x (N,in)
    if (out == 0 || N == 0 || in == 0) std::memset(gw, 0, sizeof(float) * out * in);
    else gemm(true, false, out, in, N, gy, out, x, in, 0.f, gw, in);
  }
  if (gb) {  // gb (out) = sum over rows of gy, in row order
    for (int64_t o = 0; o < out; ++o) gb[o] = 0.f;
    for (int64_t n = 0; n < N; ++n) {
      const float* g = gy + n * out;
#pragma omp simd
      for (int64_t o = 0; o < out; ++o) gb[o] += g[o];
    }
  }
}

}  // namespace fm
