// Linear's own kernels, written once against the SIMD traits `S` and instantiated per ISA by
// simd/instantiate.hpp (linear.cpp holds the driver; the products themselves run on the SGEMM).

// y[n, o] = t[o, n] (+ b[o], then relu: max(., 0) with NaN kept) for o < rows, n < cols: a GEMM
// result computed transposed (t: rows x cols, row stride ldt) written into y (row stride ldy), W x W
// blocks transposed in registers. b is null or already offset to the first row of t.
static void store_transposed(int rows, int cols, const float* t, int ldt, const float* b, bool relu, float* y,
                             int ldy) {
  using V = typename S::V;
  for (int r0 = 0; r0 < rows; r0 += S::W) {
    const int rn = rows - r0 < S::W ? rows - r0 : S::W;
    const V vb = b ? S::load_n(b + r0, rn) : S::zero();
    for (int c0 = 0; c0 < cols; c0 += S::W) {
      const int cn = cols - c0 < S::W ? cols - c0 : S::W;
      V v[S::W];
#pragma GCC unroll 16
      for (int i = 0; i < S::W; ++i) v[i] = i < rn ? S::load_n(t + (size_t)(r0 + i) * ldt + c0, cn) : S::zero();
      S::transpose(v);
      for (int j = 0; j < cn; ++j) {
        V u = v[j];
        if (b) u = S::add(u, vb);  // no bias: the GEMM's values untouched (-0 stays -0)
        if (relu) u = S::select(S::lt(u, S::zero()), S::zero(), u);
        float* dst = y + (size_t)(c0 + j) * ldy + r0;
        if (rn == S::W) S::store(dst, u);
        else S::store_n(dst, u, rn);
      }
    }
  }
}

const LinearKernels kLinear{&store_transposed, FM_ISA_LEVEL == 3   ? "avx512 transposed (y^T = W x^T)"
                                               : FM_ISA_LEVEL == 2 ? "avx2 transposed (y^T = W x^T)"
                                               : FM_ISA_LEVEL == 1 ? "neon transposed (y^T = W x^T)"
                                                                   : "generic transposed (y^T = W x^T)"};
