// SGEMM kernels, written once against the SIMD traits `S` and instantiated per ISA by
// simd/instantiate.hpp (see gemm.cpp for the driver). Register tile MR x NR with NR = NV * S::W:
// AVX-512 12 x 32, AVX2 6 x 16, NEON 8 x 8, generic 4 x 16 (auto-vectorised scalar lanes). A last
// panel of fewer rows runs a shorter copy of the same kernel (rows_for), so a 64-row problem on
// AVX-512 costs 5 x 12 + 4 rows, not 6 x 12.

constexpr int MR = FM_ISA_LEVEL == 3 ? 12 : FM_ISA_LEVEL == 2 ? 6 : FM_ISA_LEVEL == 1 ? 8 : 4;
constexpr int NV = FM_ISA_LEVEL == 0 ? 16 : 2;
constexpr int NR = NV * S::W;
// depth of a packed panel: the KC x NR B micro-panel and the KC x MR A micro-panel share L1
constexpr int KC = FM_ISA_LEVEL == 3 ? 192 : 256;
// with both operands packed (gemm.cpp): AVX-512 K blocks of 256 and A blocks of 48 rows
constexpr int KC_PACKED = 256, MC_PACKED = FM_ISA_LEVEL == 3 ? 48 : 96;

// Rows of the kernel that computes a panel of m <= MR rows: 4, 8 or MR.
static inline int rows_for(int m) { return m <= 4 && MR > 4 ? 4 : m <= 8 && MR > 8 ? 8 : MR; }

// C tile (m <= R rows, n <= NR cols, row stride ldc) = [C +] Apanel * Bpanel.
// Apanel: kc x R (k-major, R contiguous), Bpanel: kc rows of NR floats, ldb apart (NR when packed,
// B's own row stride when read in place). Every element
// is the same sequence of fma over k whatever R, so the result does not depend on the tiling.
// A_ROWS: A is read in place instead, a full panel of R rows of a row-major A (row stride as, K
// contiguous); otherwise A(i, k) = A[k * as + i] (as = R when packed, the row stride of an A^T
// stored K x M when read in place). The values and their order are the same either way.
template <int R, bool A_ROWS = false>
static void gemm_ukr(int kc, const float* A, int as, const float* B, int ldb, float* C, int ldc, int m, int n,
                     bool acc) {
  using V = typename S::V;
  // the C tile is read (acc) and written once at the end: start its lines on their way now
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
    if (i < m) {
      __builtin_prefetch(C + (size_t)i * ldc, 1, 3);
      __builtin_prefetch(C + (size_t)i * ldc + (n - 1), 1, 3);
    }
  V c[R][NV];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < NV; ++j) c[i][j] = S::zero();
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    V b[NV];
#pragma GCC unroll 16
    for (int j = 0; j < NV; ++j) b[j] = S::load(B + j * S::W);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const V a = S::set1(A_ROWS ? A[(size_t)i * as] : A[i]);
#pragma GCC unroll 16
      for (int j = 0; j < NV; ++j) c[i][j] = S::fma(a, b[j], c[i][j]);
    }
    A += A_ROWS ? 1 : as;
    B += ldb;
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    if (i >= m) break;
    float* row = C + (size_t)i * ldc;
#pragma GCC unroll 16
    for (int j = 0; j < NV; ++j) {
      const int cols = n - j * S::W;
      if (cols >= S::W) {
        S::store(row + j * S::W, acc ? S::add(c[i][j], S::load(row + j * S::W)) : c[i][j]);
      } else if (cols > 0) {
        S::store_n(row + j * S::W, acc ? S::add(c[i][j], S::load_n(row + j * S::W, cols)) : c[i][j], cols);
      }
    }
  }
}

// One panel of m <= MR rows, through the kernel of rows_for(m) rows.
static void gemm_panel(int kc, const float* A, const float* B, int ldb, float* C, int ldc, int m, int n, bool acc) {
  if (MR > 4 && m <= 4) gemm_ukr<(MR > 4 ? 4 : MR)>(kc, A, rows_for(m), B, ldb, C, ldc, m, n, acc);
  else if (MR > 8 && m <= 8) gemm_ukr<(MR > 8 ? 8 : MR)>(kc, A, rows_for(m), B, ldb, C, ldc, m, n, acc);
  else gemm_ukr<MR>(kc, A, MR, B, ldb, C, ldc, m, n, acc);
}

// A full panel of MR rows with op(A) read in place (nothing packed; alpha 1): A points at
// op(A)[i, k0], i.e. A + i * lda + k0, or, transposed, A + k0 * lda + i.
static void gemm_panel_direct_a(int kc, bool ta, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                                int n, bool acc) {
  if (ta) gemm_ukr<MR>(kc, A, lda, B, ldb, C, ldc, MR, n, acc);
  else gemm_ukr<MR, true>(kc, A, lda, B, ldb, C, ldc, MR, n, acc);
}

// op(A)[i0:i0+m, k0:k0+kc] * alpha -> panels of MR rows, k-major; the last panel, of mr < MR rows,
// holds rows_for(mr) rows (zero-padded). Panel p starts at dst + p * MR * kc.
static void gemm_pack_a(bool ta, const float* A, int lda, int i0, int m, int k0, int kc, float alpha, float* dst) {
  if (ta) {  // A^T stored K x M: row by row, in its own order
    for (int k = 0; k < kc; ++k) {
      const float* src = A + (size_t)(k0 + k) * lda + i0;
      for (int ip = 0; ip < m; ip += MR) {
        const int mr = m - ip < MR ? m - ip : MR, R = rows_for(mr);
        float* d = dst + (size_t)ip * kc + (size_t)k * R;
        for (int i = 0; i < mr; ++i) d[i] = alpha * src[ip + i];
        for (int i = mr; i < R; ++i) d[i] = 0.f;
      }
    }
    return;
  }
  for (int ip = 0; ip < m; ip += MR) {
    const int mr = m - ip < MR ? m - ip : MR;
    const int R = rows_for(mr);
    if (S::W > 1) {
      // rows of A -> k-major panel: W x W blocks transposed in registers (rows >= mr are zero)
      using V = typename S::V;
      const V va = S::set1(alpha);
      for (int kb = 0; kb < kc; kb += S::W) {
        const int kn = kc - kb < S::W ? kc - kb : S::W;
        for (int rb = 0; rb < R; rb += S::W) {  // MR > W (NEON 8 rows of 4 lanes): W rows at a time
          const int rn = R - rb < S::W ? R - rb : S::W;
          V r[S::W];
#pragma GCC unroll 16
          for (int i = 0; i < S::W; ++i)
            r[i] = rb + i < mr ? S::mul(va, S::load_n(A + (size_t)(i0 + ip + rb + i) * lda + k0 + kb, kn)) : S::zero();
          S::transpose(r);
          for (int k = 0; k < kn; ++k) {
            if (rn == S::W) S::store(dst + (size_t)(kb + k) * R + rb, r[k]);
            else S::store_n(dst + (size_t)(kb + k) * R + rb, r[k], rn);
          }
        }
      }
    } else {
      for (int i = 0; i < R; ++i) {
        if (i < mr) {
          const float* src = A + (size_t)(i0 + ip + i) * lda + k0;
          for (int k = 0; k < kc; ++k) dst[(size_t)k * R + i] = alpha * src[k];
        } else {
          for (int k = 0; k < kc; ++k) dst[(size_t)k * R + i] = 0.f;
        }
      }
    }
    dst += (size_t)MR * kc;
  }
}

// op(B)[k0:k0+kc, j0:j0+n] -> NR-column panels (zero-padded to a multiple of NR columns).
static void gemm_pack_b(bool tb, const float* B, int ldb, int k0, int kc, int j0, int n, float* dst) {
  if (!tb) {
    // Row by row over groups of 256 columns: B is read in runs of 1 KB and written to a few panels
    // at a time (a whole panel at a time would walk a page per row, a whole row to every panel).
    using V = typename S::V;
    constexpr int G = NR >= 256 ? 1 : 256 / NR;  // panels per group
    const size_t panel = (size_t)NR * kc;
    for (int g0 = 0; g0 < n; g0 += G * NR) {
      const int g1 = n - g0 < G * NR ? n : g0 + G * NR;
      float* dg = dst + (size_t)(g0 / NR) * panel;
      for (int k = 0; k < kc; ++k) {
        const float* src = B + (size_t)(k0 + k) * ldb + j0;
        float* d = dg + (size_t)k * NR;
        int jp = g0;
        for (; jp + NR <= g1; jp += NR, d += panel)
#pragma GCC unroll 16
          for (int h = 0; h < NV; ++h) S::store(d + h * S::W, S::load(src + jp + h * S::W));
        if (jp < g1)
#pragma GCC unroll 16
          for (int h = 0; h < NV; ++h) {
            const int cols = g1 - jp - h * S::W;
            const V v = cols >= S::W ? S::load(src + jp + h * S::W) : cols > 0 ? S::load_n(src + jp + h * S::W, cols) : S::zero();
            S::store(d + h * S::W, v);
          }
      }
    }
    return;
  }
  for (int jp = 0; jp < n; jp += NR) {
    const int nr = n - jp < NR ? n - jp : NR;
    if (S::W > 1) {
      // B^T: NR rows of B (each kc long) -> k-major panel, W x W blocks transposed in registers
      using V = typename S::V;
      for (int kb = 0; kb < kc; kb += S::W) {
        const int kn = kc - kb < S::W ? kc - kb : S::W;
#pragma GCC unroll 4
        for (int h = 0; h < NV; ++h) {
          V r[S::W];
#pragma GCC unroll 16
          for (int i = 0; i < S::W; ++i)
            r[i] = h * S::W + i < nr ? S::load_n(B + (size_t)(j0 + jp + h * S::W + i) * ldb + k0 + kb, kn)
                                     : S::zero();
          S::transpose(r);
          for (int k = 0; k < kn; ++k) S::store(dst + (size_t)(kb + k) * NR + h * S::W, r[k]);
        }
      }
    } else {
      for (int j = 0; j < NR; ++j) {
        if (j < nr) {
          const float* src = B + (size_t)(j0 + jp + j) * ldb + k0;
          for (int k = 0; k < kc; ++k) dst[(size_t)k * NR + j] = src[k];
        } else {
          for (int k = 0; k < kc; ++k) dst[(size_t)k * NR + j] = 0.f;
        }
      }
    }
    dst += (size_t)NR * kc;
  }
}

// ---- C = A B^T as dot products along K (both operands K-contiguous, nothing packed) ----------
// A tile of DM rows of A x DN rows of B: DM x DN vector accumulators, each row of A and B loaded
// once per W values of K; each accumulator summed across its lanes at the end (reduce_add, a fixed
// order), so every element is the same sequence of operations whatever the tile that holds it.
// AVX-512 and NEON 4 x 6 (24 of 32 registers), AVX2 3 x 4 (12 of 16).
constexpr int DM = FM_ISA_LEVEL == 2 ? 3 : 4;
constexpr int DN = FM_ISA_LEVEL == 2 ? 4 : 6;

// C[i0:i1, j0:j1] = A[i0:i1, :K] . B[j0:j1, :K] (+ bias[j], then relu). Rows past the end of a tile
// repeat the last row (computed, not stored).
static void gemm_dot(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, int i0, int i1,
                     int j0, int j1, const float* bias, bool relu) {
  using V = typename S::V;
  for (int jt = j0; jt < j1; jt += DN) {
    const float* b[DN];
#pragma GCC unroll 8
    for (int j = 0; j < DN; ++j) b[j] = B + (size_t)(jt + j < j1 ? jt + j : j1 - 1) * ldb;
    for (int it = i0; it < i1; it += DM) {
      const float* a[DM];
#pragma GCC unroll 8
      for (int i = 0; i < DM; ++i) a[i] = A + (size_t)(it + i < i1 ? it + i : i1 - 1) * lda;
      V c[DM][DN];
#pragma GCC unroll 8
      for (int i = 0; i < DM; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < DN; ++j) c[i][j] = S::zero();
      int k = 0;
      for (; k + S::W <= K; k += S::W) {
        V va[DM];
#pragma GCC unroll 8
        for (int i = 0; i < DM; ++i) va[i] = S::load(a[i] + k);
#pragma GCC unroll 8
        for (int j = 0; j < DN; ++j) {
          const V vb = S::load(b[j] + k);
#pragma GCC unroll 8
          for (int i = 0; i < DM; ++i) c[i][j] = S::fma(va[i], vb, c[i][j]);
        }
      }
      if (k < K) {  // zero-filled tail lanes add 0 * 0
        V va[DM];
#pragma GCC unroll 8
        for (int i = 0; i < DM; ++i) va[i] = S::load_n(a[i] + k, K - k);
#pragma GCC unroll 8
        for (int j = 0; j < DN; ++j) {
          const V vb = S::load_n(b[j] + k, K - k);
#pragma GCC unroll 8
          for (int i = 0; i < DM; ++i) c[i][j] = S::fma(va[i], vb, c[i][j]);
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < DM; ++i) {
        if (it + i >= i1) break;
        float* row = C + (size_t)(it + i) * ldc;
#pragma GCC unroll 8
        for (int j = 0; j < DN; ++j) {
          if (jt + j >= j1) break;
          float v = S::reduce_add(c[i][j]);
          if (bias) v += bias[jt + j];
          row[jt + j] = relu && v < 0.f ? 0.f : v;  // NaN stays NaN
        }
      }
    }
  }
}

const GemmKernels kGemm{MR, NR, KC, KC_PACKED, MC_PACKED, NR >= 32 ? 256 : 128, &gemm_panel, &gemm_panel_direct_a, &gemm_pack_a, &gemm_pack_b, DM, DN, &gemm_dot,
                        FM_ISA_LEVEL == 3 ? "avx512 12x32" : FM_ISA_LEVEL == 2 ? "avx2 6x16"
                                          : FM_ISA_LEVEL == 1 ? "neon 8x8" : "generic 4x16",
                        FM_ISA_LEVEL == 3 ? "avx512 dot 4x6" : FM_ISA_LEVEL == 2 ? "avx2 dot 3x4"
                                          : FM_ISA_LEVEL == 1 ? "neon dot 4x6" : "generic dot 4x6"};
