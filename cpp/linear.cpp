// Dense layer on the shared SGEMM. Small problems call the single-threaded sgemm: an OpenMP
// region costs more than a 128x10 product. The forward is one GEMM with the bias (and ReLU) added
// by each thread to its rows: dot products for a few outputs, y^T = W x^T transposed into y
// (linear.inl) for small batches and on several threads, else y = x W^T directly. The backward runs
// its two GEMMs side by side in one OpenMP region.
#include "linear.hpp"

#include <algorithm>
#include <cstring>

#include "activation.hpp"
#include "buffers.hpp"
#include "common.hpp"
#include "gemm.hpp"

namespace fm {

struct LinearKernels {
  void (*store_transposed)(int rows, int cols, const float* t, int ldt, const float* b, bool relu, float* y, int ldy);
  const char* transposed_name;  // the kernel report's name for the transposed forward
};

}  // namespace fm

#define FM_KERNELS_FILE "linear.inl"
#include "simd/instantiate.hpp"

namespace fm {

namespace {
constexpr int64_t kParallelFlops = 1 << 17;  // multiply-adds below which a GEMM runs serially
constexpr int64_t kDotMaxOut = 16;           // forward by dot products up to this many outputs

bool parallel_worth(int64_t M, int64_t N, int64_t K) {
  return max_threads() > 1 && double(M) * double(N) * double(K) >= double(kParallelFlops);  // no int64 overflow
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc) {
  (parallel_worth(M, N, K) ? sgemm_parallel : sgemm)(ta, tb, int(M), int(N), int(K), 1.f, A, int(lda), B,
                                                    int(ldb), 0.f, C, int(ldc));
}

// y (N,out) = x W^T + b computed as its transpose y^T = W x^T, then transposed into y with the
// bias (and ReLU): W is then op(A), read in place along `in`, and only x is transposed while packed
// (N x in floats instead of W's out x in). The threads split the batch (y^T's columns) in whole
// column panels; each runs its own GEMM into a buffer and writes its rows of y. Every element is the
// same sequence of operations as in the direct product (same K blocks, the same fma order), so
// both give the same bits.
void forward_transposed(int64_t N, int64_t in, int64_t out, const float* x, const float* w, const float* b,
                        float* y, bool relu, bool par) {
  const LinearKernels& k = FM_PICK(kLinear);
  note_kernel(Op::linear, k.transposed_name);
  const int64_t unit = sgemm_column_unit();
  auto rows = [&](int64_t n0, int64_t n1) {
    if (n0 >= n1) return;
    thread_local ScratchBuffer buf;
    float* t = buf.get(size_t(out) * size_t(n1 - n0));
    sgemm(false, true, int(out), int(n1 - n0), int(in), 1.f, w, int(in), x + n0 * in, int(in), 0.f, t, int(n1 - n0));
    k.store_transposed(int(out), int(n1 - n0), t, int(n1 - n0), b, relu, y + n0 * out, int(out));
  };
  const int64_t units = (N + unit - 1) / unit;
  if (!par || units < 2) return rows(0, N);
#pragma omp parallel num_threads(int(std::min<int64_t>(max_threads(), units)))
  {
    int64_t ub, ue;
    split_range(units, thread_id(), num_threads(), ub, ue);
    rows(std::min(N, ub * unit), std::min(N, ue * unit));
  }
}

// The transposed forward packs x and transposes y (N x (in + out) floats) instead of packing W
// transposed (out x in). On one thread it is taken when that is less; on several threads whenever
// each thread gets whole column panels: the direct product split by columns had every thread read
// all of x, and scaled 1.6x from 1 to 2 threads where this one scales 1.9x. Measured (same-process
// A/B, loaded machine): 1 thread batch 64 784->256 6-12 % faster on AVX2 and AVX-512, batch 256 4-10 %
// slower; 2 threads batch 64 unchanged-1.25x, batch 256 784->256 / 1568->128 3-9 %, 512 and 1024
// 3-11 %, 256->64 and 64->32 at batch 256 18-38 % faster.
bool forward_transposed_worth(int64_t N, int64_t in, int64_t out, bool par) {
  const int64_t unit = sgemm_column_unit(), units = (N + unit - 1) / unit;
  if (units < 2 || (units * unit - N) * 8 > N) return false;  // the batch fills whole column panels
  return par || double(N) * double(in + out) < double(in) * double(out);
}

// gb (out) = sum over the rows of gy (N,out), in row order
void bias_grad(int64_t N, int64_t out, const float* gy, float* gb) {
  for (int64_t o = 0; o < out; ++o) gb[o] = 0.f;
  for (int64_t n = 0; n < N; ++n) {
    const float* g = gy + n * out;
#pragma omp simd
    for (int64_t o = 0; o < out; ++o) gb[o] += g[o];
  }
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
  note_kernel(Op::linear, isa_name(isa()));  // the level's SGEMM with the bias/ReLU epilogue
  const bool par = parallel_worth(N, out, in);
  // A few outputs (a classifier's 10): dot products along `in`, nothing packed (the blocked GEMM
  // would fill its 16-32 column tiles with 10 and transpose x and w first; measured 2x slower)
  if (out <= kDotMaxOut && sgemm_abt_bias_relu(int(N), int(out), int(in), x, int(in), w, int(in), b, relu, y,
                                               int(out), par))
    return;
  if (forward_transposed_worth(N, in, out, par)) return forward_transposed(N, in, out, x, w, b, y, relu, par);
  // one GEMM; each thread adds the bias (and ReLU) to its own part of y as it finishes it
  sgemm_bias_relu(false, true, int(N), int(out), int(in), x, int(in), w, int(in), b, relu, y, int(out), par);
}

// gy (N,out), x (N,in), w (out,in) -> gx (N,in), gw (out,in), gb (out)
void linear_backward(int64_t N, int64_t in, int64_t out, const float* gy, const float* x, const float* w,
                     float* gx, float* gw, float* gb) {
  note_kernel(Op::linear, isa_name(isa()));
  const bool empty = out == 0 || N == 0 || in == 0;
  if (empty) {
    if (gx) std::memset(gx, 0, sizeof(float) * N * in);
    if (gw) std::memset(gw, 0, sizeof(float) * out * in);
  }
  // gx (N,in) = gy (N,out) @ w (out,in);  gw (out,in) = gy^T (out,N) @ x (N,in)
  if (!empty && gx && gw && max_threads() > 1 && parallel_worth(N, in, out)) {
    // The two GEMMs have the same size: half of the threads compute gx, the other half gw, each
    // half splitting its GEMM by columns. One OpenMP region, no barrier; the bias gradient goes
    // to the last thread of the gw half.
    const int unit = sgemm_column_unit();
#pragma omp parallel
    {
      const int t = thread_id(), nt = num_threads(), h = nt / 2;
      const bool first = t < h || nt == 1;
      const int tt = first ? t : t - h, nn = nt == 1 ? 1 : first ? h : nt - h;
      const int64_t units = (in + unit - 1) / unit;
      int64_t b, e;
      split_range(units, tt, nn, b, e);
      if (first || nt == 1)
        sgemm_columns(false, false, int(N), int(in), int(out), 1.f, gy, int(out), w, int(in), 0.f, gx, int(in),
                      int(b * unit), int(e * unit));
      if (!first || nt == 1) {
        sgemm_columns(true, false, int(out), int(in), int(N), 1.f, gy, int(out), x, int(in), 0.f, gw, int(in),
                      int(b * unit), int(e * unit));
        if (gb && tt == nn - 1) bias_grad(N, out, gy, gb);
      }
    }
    return;
  }
  if (!empty && gx) gemm(false, false, N, in, out, gy, out, w, in, gx, in);
  if (!empty && gw) gemm(true, false, out, in, N, gy, out, x, in, gw, in);
  if (gb) bias_grad(N, out, gy, gb);
}

}  // namespace fm
