// Winograd convolution F(m x m, r x r), stride 1: forward, input gradient, weight gradient.
//
//   y_tile = AT [ (G g G^T) (.) (BT d BT^T) ] AT^T        (d: A x A input tile, A = m + r - 1)
//
// Variants (points 0, 1, -1, 1/2, -2, inf for the 6 x 6 tiles; chosen for float32 accuracy):
//   F(2x2,3x3)  4x4 tiles, 16 products for 36 MACs (2.25x fewer)
//   F(4x4,3x3)  6x6 tiles, 36 products for 144 MACs (4x fewer; default for 3x3 where partial
//               tiles do not eat the saving, see pick_tile)
//   F(2x2,5x5)  6x6 tiles, 36 products for 100 MACs (2.78x fewer)
// Error against float64 on MNIST activations: F(2x2) ~3e-7, F(4x4,3x3) / F(2x2,5x5) ~1.5-2.6e-6
// of max|y| (direct float32: ~7e-7); the tests allow 2e-5.
//
// Forward, per image and thread (AVX-512, 16 channels per zmm; all in L2 for the MNIST layers):
//   xT [Hb][Wb][Cp]   zero-padded image, channels innermost (Cp = C rounded up to 16)
//   V  [A*A][T][Cp]   input transform of every tile (T = tiles per image)
//   U  [A*A][C][Kp]   weight transform (once per call, in double, rounded to float)
//   Mo [A*A][T][Kp]   per transform position xi: Mo[xi] = V[xi] (T x C) * U[xi] (C x Kp)
//   yT [Pt][Wy][Kp]   output transform (+ bias, ReLU), channels innermost; transposed into NCHW.
// The per-position products run in a register-blocked micro-kernel: TB tiles x 32 (or 16) output
// channels in zmm accumulators, one weight row load and TB broadcasts per input channel. The
// [A*A][T][.] buffers keep an odd number of cache lines between positions (position_stride).
// Input gradient: the forward on dy with flipped, transposed weights and padding R-1-pad, or (when
// that needs fewer tiles, i.e. padding below R/2) the adjoint of the forward: Dy = AT^T dy AT per
// output tile, dV = Dy * U', overlapping input windows += BT^T dV BT.
// Weight gradient: the adjoint in the weights: dU[xi] = V[xi]^T Dy[xi] summed over tiles and images
// (partials per fixed group of 16 images, reduced in order in double), dw = G^T dU G.
// OpenMP runs over the images (dynamic schedule), each thread allocates its buffers once.
// Unlike direct convolution, a NaN / Inf input spreads to every output of the tiles whose window
// holds it (the transforms mix all pixels of a window).
#include "winograd.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "common.hpp"
#include "gemm.hpp"

namespace fm {

namespace {

// ---------------------------------------------------------------------------------------------
// transform matrices (derived by Cook-Toom with exact rationals; see the header comment)
// ---------------------------------------------------------------------------------------------
struct F23 {
  static constexpr int M = 2, R = 3, A = 4;
  static constexpr float BT[A][A] = {{-1, 0, 1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, -1, 0, 1}};
  static constexpr float AT[M][A] = {{1, 1, 1, 0}, {0, 1, -1, 1}};
  static constexpr double G[A][R] = {{-1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
};

// BT of the 6-point (0, 1, -1, 1/2, -2, inf) transforms, shared by F(4,3) and F(2,5).
#define FM_WG_BT6                                                                                   \
  {{1, -1.5f, -2, 1.5f, 1, 0}, {0, -1, 0.5f, 2.5f, 1, 0}, {0, 1, -2.5f, 0.5f, 1, 0},              \
   {0, -2, -1, 2, 1, 0},       {0, 0.5f, -1, -0.5f, 1, 0}, {0, 1, -1.5f, -2, 1.5f, 1}}

struct F43 {
  static constexpr int M = 4, R = 3, A = 6;
  static constexpr float BT[A][A] = FM_WG_BT6;
  static constexpr float AT[M][A] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 0.5f, -2, 0}, {0, 1, 1, 0.25f, 4, 0}, {0, 1, -1, 0.125f, -8, 1}};
  static constexpr double G[A][R] = {{1, 0, 0},
                                     {1. / 3, 1. / 3, 1. / 3},
                                     {-1. / 3, 1. / 3, -1. / 3},
                                     {-16. / 15, -8. / 15, -4. / 15},
                                     {1. / 15, -2. / 15, 4. / 15},
                                     {0, 0, 1}};
};

struct F25 {
  static constexpr int M = 2, R = 5, A = 6;
  static constexpr float BT[A][A] = FM_WG_BT6;
  static constexpr float AT[M][A] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 0.5f, -2, 1}};
  static constexpr double G[A][R] = {{1, 0, 0, 0, 0},
                                     {1. / 3, 1. / 3, 1. / 3, 1. / 3, 1. / 3},
                                     {-1. / 3, 1. / 3, -1. / 3, 1. / 3, -1. / 3},
                                     {-16. / 15, -8. / 15, -4. / 15, -2. / 15, -1. / 15},
                                     {1. / 15, -2. / 15, 4. / 15, -8. / 15, 16. / 15},
                                     {0, 0, 0, 0, 1}};
};
#undef FM_WG_BT6

// Two-sided product with a constant matrix, vectorised over n: out[p][q][:] = sum_{i,j} L[p][i]
// in[i][j][:] L[q][j] with L = G (P = A, Q = R: the weight transform G g G^T) or L = G^T (P = R,
// Q = A: its adjoint G^T dU G). in Q*Q*n, t P*Q*n scratch, out P*P*n, all in double.
template <class W>
void g_sandwich(bool adjoint, const double* in, int n, double* t, double* out) {
  const int P = adjoint ? W::R : W::A, Q = adjoint ? W::A : W::R;
  auto L = [&](int p, int i) { return adjoint ? W::G[i][p] : W::G[p][i]; };
  for (int p = 0; p < P; ++p)  // t[p][j] = sum_i L[p][i] in[i][j]
    for (int j = 0; j < Q; ++j) {
      double* tr = t + (size_t)(p * Q + j) * n;
      std::fill(tr, tr + n, 0.0);
      for (int i = 0; i < Q; ++i) {
        const double l = L(p, i);
        if (l == 0.0) continue;
        const double* ir = in + (size_t)(i * Q + j) * n;
        for (int k = 0; k < n; ++k) tr[k] += l * ir[k];
      }
    }
  for (int p = 0; p < P; ++p)  // out[p][q] = sum_j t[p][j] L[q][j]
    for (int q = 0; q < P; ++q) {
      double* o = out + (size_t)(p * P + q) * n;
      std::fill(o, o + n, 0.0);
      for (int j = 0; j < Q; ++j) {
        const double l = L(q, j);
        if (l == 0.0) continue;
        const double* tr = t + (size_t)(p * Q + j) * n;
        for (int k = 0; k < n; ++k) o[k] += tr[k] * l;
      }
    }
}

// Weight transform -> U [A*A][C][Kp] (zero for k >= K) of
//   mode 0: w (K,C,R,R) itself;
//   mode 1: the input-gradient weights w'[k][c][i][j] = w[c][k][R-1-i][R-1-j] read from w (C,K,R,R);
//   mode 2: the transposed weights w'[k][c][i][j] = w[c][k][i][j] read from w (C,K,R,R) (adjoint).
template <class W>
#if FM_X86
__attribute__((target("avx512f")))  // only called when the AVX-512 kernels run
#endif
void weight_transform(const float* w, int K, int C, int Kp, int mode, float* U) {
  constexpr int A = W::A, R = W::R;
  // one input channel at a time, all K output channels in the innermost (vectorised) loops
#pragma omp parallel
  {
    std::vector<double> g((size_t)R * R * Kp), t((size_t)A * R * Kp), u((size_t)A * A * Kp);
#pragma omp for schedule(static)
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < R; ++j) {
          double* gr = g.data() + (size_t)(i * R + j) * Kp;
          for (int k = 0; k < Kp; ++k)
            gr[k] = k >= K      ? 0.0
                    : mode == 1 ? w[(((size_t)c * K + k) * R + (R - 1 - i)) * R + (R - 1 - j)]
                    : mode == 2 ? w[(((size_t)c * K + k) * R + i) * R + j]
                                : w[(((size_t)k * C + c) * R + i) * R + j];
        }
      g_sandwich<W>(false, g.data(), Kp, t.data(), u.data());  // U = G g G^T
      for (int ab = 0; ab < A * A; ++ab) {
        float* dst = U + ((size_t)ab * C + c) * Kp;
        for (int k = 0; k < Kp; ++k) dst[k] = (float)u[(size_t)ab * Kp + k];
      }
    }
  }
}

#if FM_X86
// out[o] = sum_i coef(o, i) * in[i] for a constant matrix: after full unrolling the compiler sees
// every coefficient, so zero terms vanish and +-1 become adds / subtracts.
template <int NO, int NI, class Coef>
__attribute__((target("avx512f"), always_inline)) inline void const_apply(Coef coef, const __m512* in,
                                                                          __m512* out) {
#pragma GCC unroll 8
  for (int o = 0; o < NO; ++o) {
    // start from a +1 term where the row has one (saves the first multiply / negation)
    int one = -1;
#pragma GCC unroll 8
    for (int i = NI - 1; i >= 0; --i)
      if (coef(o, i) == 1.f) one = i;
    __m512 acc = one >= 0 ? in[one] : _mm512_setzero_ps();
    bool first = one < 0;
#pragma GCC unroll 8
    for (int i = 0; i < NI; ++i) {
      const float c = coef(o, i);
      if (c == 0.f || i == one) continue;
      if (first) {
        acc = c == 1.f ? in[i] : c == -1.f ? _mm512_sub_ps(_mm512_setzero_ps(), in[i])
                                           : _mm512_mul_ps(_mm512_set1_ps(c), in[i]);
        first = false;
      } else if (c == 1.f) {
        acc = _mm512_add_ps(acc, in[i]);
      } else if (c == -1.f) {
        acc = _mm512_sub_ps(acc, in[i]);
      } else {
        acc = _mm512_fmadd_ps(_mm512_set1_ps(c), in[i], acc);
      }
    }
    out[o] = acc;
  }
}

// out = Mx in
template <int NO, int NI>
__attribute__((target("avx512f"), always_inline)) inline void mat_apply(const float (&Mx)[NO][NI],
                                                                        const __m512* in, __m512* out) {
  const_apply<NO, NI>([&](int o, int i) { return Mx[o][i]; }, in, out);
}

// BT of the 6-point transforms (FM_WG_BT6) applied to 6 vectors, common terms shared
// (16 operations instead of 24).
__attribute__((target("avx512f"), always_inline)) inline void bt6_apply(const __m512* d, __m512* r) {
  const __m512 a = _mm512_sub_ps(d[4], d[2]), b = _mm512_sub_ps(d[3], d[1]);
  r[3] = _mm512_fmadd_ps(_mm512_set1_ps(2.f), b, a);
  r[4] = _mm512_fmadd_ps(_mm512_set1_ps(-0.5f), b, a);
  r[0] = _mm512_fmadd_ps(_mm512_set1_ps(1.5f), b,
                         _mm512_fmadd_ps(_mm512_set1_ps(-2.f), d[2], _mm512_add_ps(d[0], d[4])));
  r[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.5f), d[3],
                         _mm512_fmadd_ps(_mm512_set1_ps(0.5f), d[2], _mm512_sub_ps(d[4], d[1])));
  r[2] = _mm512_fmadd_ps(_mm512_set1_ps(0.5f), d[3],
                         _mm512_fmadd_ps(_mm512_set1_ps(-2.5f), d[2], _mm512_add_ps(d[4], d[1])));
  r[5] = _mm512_fmadd_ps(_mm512_set1_ps(1.5f), a,
                         _mm512_fmadd_ps(_mm512_set1_ps(-2.f), d[3], _mm512_add_ps(d[5], d[1])));
}

template <class W>
__attribute__((target("avx512f"), always_inline)) inline void bt_apply(const __m512* in, __m512* out) {
  if constexpr (W::A == 6)
    bt6_apply(in, out);
  else
    mat_apply(W::BT, in, out);
}

// x_n (C,H,W) -> xT [Hb][Wb][Cp] at row ph, column pw (the zero border is left untouched).
__attribute__((target("avx512f"))) void to_channels_last(const float* x, int C, int H, int W, int Cp, int Wb,
                                                         int ph, int pw, float* xT) {
  for (int cb = 0; cb < Cp; cb += 16)
    for (int h = 0; h < H; ++h)
      for (int q0 = 0; q0 < W; q0 += 16) {
        const int nq = std::min(16, W - q0);
        const __mmask16 mq = (__mmask16)((1u << nq) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i)
          r[i] = cb + i < C ? _mm512_maskz_loadu_ps(mq, x + ((size_t)(cb + i) * H + h) * W + q0)
                            : _mm512_setzero_ps();
        detail::transpose16_avx512(r);
        float* dst = xT + ((size_t)(h + ph) * Wb + q0 + pw) * Cp + cb;
        for (int j = 0; j < nq; ++j) _mm512_storeu_ps(dst + (size_t)j * Cp, r[j]);
      }
}

// yT [P..][Wy][Kp] -> y_n (K,P,Q)
__attribute__((target("avx512f"))) void from_channels_last(const float* yT, int K, int P, int Q, int Kp, int Wy,
                                                           float* y) {
  for (int kb = 0; kb < K; kb += 16)
    for (int p = 0; p < P; ++p)
      for (int q0 = 0; q0 < Q; q0 += 16) {
        const int nq = std::min(16, Q - q0);
        const __mmask16 mq = (__mmask16)((1u << nq) - 1);
        __m512 r[16];
        const float* src = yT + ((size_t)p * Wy + q0) * Kp + kb;
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(src + (size_t)j * Kp);
        detail::transpose16_avx512(r);
        const int nk = std::min(16, K - kb);
        for (int i = 0; i < nk; ++i) _mm512_mask_storeu_ps(y + ((size_t)(kb + i) * P + p) * Q + q0, mq, r[i]);
      }
}

// Bias gradient of one image: pb[k] += sum of row k of dy_n (K, PQ) (float lanes, double total).
__attribute__((target("avx512f"))) void add_row_sums(const float* dyn, int K, int PQ, double* pb) {
  const __mmask16 last = (__mmask16)((1u << (PQ % 16)) - 1);
  for (int k = 0; k < K; ++k) {
    const float* r = dyn + (size_t)k * PQ;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= PQ; i += 32) {
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(r + i));
      a1 = _mm512_add_ps(a1, _mm512_loadu_ps(r + i + 16));
    }
    if (i + 16 <= PQ) {
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(r + i));
      i += 16;
    }
    if (i < PQ) a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(last, r + i));
    pb[k] += (double)_mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

// One tile, 16 channels: src = xT at the tile's top-left (row stride rs, pixel stride Cp)
// -> dst = V[0][t][cb], position xi at dst + xi * xs.
template <class W>
__attribute__((target("avx512f"))) inline void input_tile(const float* src, size_t rs, size_t cs, float* dst,
                                                          size_t xs) {
  constexpr int A = W::A;
  __m512 tmp[A][A];  // tmp[a][j] = sum_i BT[a][i] d[i][j]
#pragma GCC unroll 8
  for (int j = 0; j < A; ++j) {
    __m512 col[A], o[A];
#pragma GCC unroll 8
    for (int i = 0; i < A; ++i) col[i] = _mm512_loadu_ps(src + i * rs + j * cs);
    bt_apply<W>(col, o);
#pragma GCC unroll 8
    for (int a = 0; a < A; ++a) tmp[a][j] = o[a];
  }
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a) {
    __m512 o[A];
    bt_apply<W>(tmp[a], o);
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) _mm512_storeu_ps(dst + (size_t)(a * A + b) * xs, o[b]);
  }
}

// One tile, 16 output channels: src = Mo[0][t][kb] (position xi at src + xi * xs) -> m x m
// outputs (+ bias, ReLU) at dst = yT at the tile's top-left (row stride rs, pixel stride Kp).
template <class W>
__attribute__((target("avx512f"))) inline void output_tile(const float* src, size_t xs, const float* bias16, bool relu,
                                                           float* dst, size_t rs, size_t cs) {
  constexpr int A = W::A, M = W::M;
  const __m512 bias = _mm512_loadu_ps(bias16);
  __m512 z[M][A];  // z[j][a] = sum_b M[a][b] AT[j][b]
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a) {
    __m512 row[A], o[M];
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) row[b] = _mm512_loadu_ps(src + (size_t)(a * A + b) * xs);
    mat_apply(W::AT, row, o);
#pragma GCC unroll 4
    for (int j = 0; j < M; ++j) z[j][a] = o[j];
  }
#pragma GCC unroll 4
  for (int j = 0; j < M; ++j) {
    __m512 o[M];
    mat_apply(W::AT, z[j], o);
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      __m512 v = _mm512_add_ps(o[i], bias);
      if (relu) v = _mm512_max_ps(_mm512_setzero_ps(), v);  // max(0, NaN) = NaN (second operand)
      _mm512_storeu_ps(dst + i * rs + j * cs, v);
    }
  }
}

// Mo (TB tiles x 16*KV channels) = V (TB tiles, row stride Cp) * U (C x 16*KV, row stride Kp).
template <int KV, int TB>
__attribute__((target("avx512f"))) void wg_gemm(const float* V, int Cp, const float* U, int Kp, int C,
                                                float* Mo) {
  __m512 acc[TB][KV];
#pragma GCC unroll 16
  for (int i = 0; i < TB; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int c = 0; c < C; ++c) {
    __m512 u[KV];
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) u[v] = _mm512_loadu_ps(U + (size_t)c * Kp + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < TB; ++i) {
      const __m512 a = _mm512_set1_ps(V[(size_t)i * Cp + c]);
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) acc[i][v] = _mm512_fmadd_ps(a, u[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < TB; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) _mm512_storeu_ps(Mo + (size_t)i * Kp + 16 * v, acc[i][v]);
}

// out = Mx^T in
template <int NI, int NO>
__attribute__((target("avx512f"), always_inline)) inline void mat_apply_t(const float (&Mx)[NI][NO],
                                                                          const __m512* in, __m512* out) {
  const_apply<NO, NI>([&](int o, int i) { return Mx[i][o]; }, in, out);
}

// Weight gradient, one output-gradient tile, 16 channels: Dy = AT^T dy AT (the adjoint of the
// output transform). src = dyT at the tile's top-left (row stride rs, pixel stride cs) -> dst =
// Dy[0][t][kb], position xi at dst + xi * xs.
template <class W>
__attribute__((target("avx512f"))) inline void dy_tile(const float* src, size_t rs, size_t cs, float* dst,
                                                       size_t xs) {
  constexpr int A = W::A, M = W::M;
  __m512 z[A][M];  // z[a][j] = sum_i AT[i][a] dy[i][j]
#pragma GCC unroll 4
  for (int j = 0; j < M; ++j) {
    __m512 col[M], o[A];
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) col[i] = _mm512_loadu_ps(src + i * rs + j * cs);
    mat_apply_t(W::AT, col, o);
#pragma GCC unroll 8
    for (int a = 0; a < A; ++a) z[a][j] = o[a];
  }
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a) {
    __m512 o[A];
    mat_apply_t(W::AT, z[a], o);
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) _mm512_storeu_ps(dst + (size_t)(a * A + b) * xs, o[b]);
  }
}

// Input gradient by the adjoint, one tile, 16 channels: dd = BT^T dV BT added into dst = dxT at
// the tile's top-left (row stride rs, pixel stride cs); src = dV[0][t][cb], position xi at
// src + xi * xs.
template <class W>
__attribute__((target("avx512f"))) inline void input_tile_adjoint(const float* src, size_t xs, float* dst,
                                                                  size_t rs, size_t cs) {
  constexpr int A = W::A;
  __m512 z[A][A];  // z[j][a] = sum_b dV[a][b] BT[b][j]
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a) {
    __m512 row[A], o[A];
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) row[b] = _mm512_loadu_ps(src + (size_t)(a * A + b) * xs);
    mat_apply_t(W::BT, row, o);
#pragma GCC unroll 8
    for (int j = 0; j < A; ++j) z[j][a] = o[j];
  }
#pragma GCC unroll 8
  for (int j = 0; j < A; ++j) {
    __m512 o[A];
    mat_apply_t(W::BT, z[j], o);
#pragma GCC unroll 8
    for (int i = 0; i < A; ++i) {
      float* d = dst + i * rs + j * cs;
      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), o[i]));
    }
  }
}

// dU (CB input channels x 16*KV output channels, row stride Kp) += V^T (CB x T) * Dy (T x 16*KV):
// V rows of Cp floats (this block's channels first), Dy rows of Kp floats.
template <int KV, int CB>
__attribute__((target("avx512f"))) void wg_gemm_bw(const float* V, int Cp, const float* Dy, int Kp, int T,
                                                   float* dU) {
  __m512 acc[CB][KV];
#pragma GCC unroll 16
  for (int i = 0; i < CB; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) acc[i][v] = _mm512_loadu_ps(dU + (size_t)i * Kp + 16 * v);
  for (int t = 0; t < T; ++t) {
    __m512 u[KV];
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) u[v] = _mm512_loadu_ps(Dy + (size_t)t * Kp + 16 * v);
    const float* vt = V + (size_t)t * Cp;
#pragma GCC unroll 16
    for (int i = 0; i < CB; ++i) {
      const __m512 a = _mm512_set1_ps(vt[i]);
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) acc[i][v] = _mm512_fmadd_ps(a, u[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < CB; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) _mm512_storeu_ps(dU + (size_t)i * Kp + 16 * v, acc[i][v]);
}

using gemm_fn = void (*)(const float*, int, const float*, int, int, float*);
constexpr int TB2 = 12, TB1 = 14;  // most tiles per block for 32 / 16 output channels
template <int KV, int... I>
constexpr std::array<gemm_fn, sizeof...(I)> gemm_table(std::integer_sequence<int, I...>) {
  return {{&wg_gemm<KV, I + 1>...}};
}
const auto kGemm2 = gemm_table<2>(std::make_integer_sequence<int, TB2>{});
const auto kGemm1 = gemm_table<1>(std::make_integer_sequence<int, TB1>{});
template <int KV, int... I>
constexpr std::array<gemm_fn, sizeof...(I)> gemm_bw_table(std::integer_sequence<int, I...>) {
  return {{&wg_gemm_bw<KV, I + 1>...}};
}
const auto kGemmBw2 = gemm_bw_table<2>(std::make_integer_sequence<int, TB2>{});
const auto kGemmBw1 = gemm_bw_table<1>(std::make_integer_sequence<int, TB1>{});

// Stride between the transform positions of a [A*A][T][16*j] buffer: an odd number of cache lines,
// so that the A*A loads / stores of one tile do not all fall into a few L1 sets (T * Kp floats is
// a multiple of 2 KiB for T = 16 tiles).
size_t position_stride(size_t n) { return (n / 16) % 2 == 0 ? n + 16 : n; }

// Prefetches part i of `parts` of the bytes [p, p + bytes) into L2 (the next image's input and
// this image's output, spread over the compute-bound products).
inline void prefetch_part(const void* p, size_t bytes, int i, int parts, bool write) {
  const char* c = static_cast<const char*>(p);
  const size_t lines = (bytes + 63) / 64, b = lines * i / parts, e = lines * (i + 1) / parts;
  for (size_t l = b; l < e; ++l) {
    if (write)
      __builtin_prefetch(c + l * 64, 1, 2);
    else
      __builtin_prefetch(c + l * 64, 0, 2);
  }
}

// Per-thread scratch buffers kept across calls (grow-only; freed when the thread ends), so that the
// workspaces of a few hundred KiB do not come back from the OS with page faults on every call.
// slot picks the buffer; the contents are undefined unless `zero`.
struct Scratch {
  float* p;
  size_t n;
  float* data() const { return p; }
  float* begin() const { return p; }
  float* end() const { return p + n; }
};
Scratch scratch(int slot, size_t n, bool zero = false) {
  thread_local std::vector<float> bufs[6];
  std::vector<float>& v = bufs[slot];
  if (v.size() < n) {
    v.clear();
    v.shrink_to_fit();
    v.resize(n);
  }
  if (zero) std::fill(v.data(), v.data() + n, 0.f);
  return {v.data(), n};
}

// Splits n into the fewest blocks of at most `most`, balanced in size: (first, count) pairs.
std::vector<std::pair<int, int>> balanced_blocks(int n, int most) {
  std::vector<std::pair<int, int>> bl;
  const int nb = (n + most - 1) / most;
  for (int i = 0, t0 = 0; i < nb; ++i) {
    const int cnt = n / nb + (i < n % nb ? 1 : 0);
    bl.emplace_back(t0, cnt);
    t0 += cnt;
  }
  return bl;
}

// The per-position products of one image: for every transform position xi,
//   Out[xi] (T x Np) = In[xi] (T x Kr) * Uw[xi] (Kr x Np)
// (In rows ldi apart, positions istride apart; Uw positions Kr * Np apart; Out rows Np apart,
// positions ostride apart), over tile blocks balanced in size, 32 (or 16) output columns at a
// time. Meanwhile the next image's input (pre_in) is prefetched for reading and this image's
// output (pre_out) for writing, one part per position.
struct Blocks {
  std::vector<std::pair<int, int>> two, one;  // (first tile, count) for 32 / 16 output columns
  explicit Blocks(int T) : two(balanced_blocks(T, TB2)), one(balanced_blocks(T, TB1)) {}
};
inline void position_products(int AA, const Blocks& bl, const float* In, size_t istride, int ldi,
                              const float* Uw, int Kr, int Np, float* Out, size_t ostride,
                              const float* pre_in, size_t in_floats, const float* pre_out, size_t out_floats) {
  for (int xi = 0; xi < AA; ++xi) {
    if (pre_in) prefetch_part(pre_in, sizeof(float) * in_floats, xi, AA, false);
    prefetch_part(pre_out, sizeof(float) * out_floats, xi, AA, true);
    const float* Ix = In + (size_t)xi * istride;
    const float* Ux = Uw + (size_t)xi * Kr * Np;
    float* Ox = Out + (size_t)xi * ostride;
    for (int j0 = 0; j0 < Np; j0 += 32) {
      const bool two = Np - j0 >= 32;
      for (const auto& b : two ? bl.two : bl.one) {
        auto fn = two ? kGemm2[b.second - 1] : kGemm1[b.second - 1];
        fn(Ix + (size_t)b.first * ldi, ldi, Ux + j0, Np, Kr, Ox + (size_t)b.first * Np + j0);
      }
    }
  }
}

// Forward (and, with `flip`, the input gradient as a transposed convolution; see the header):
// x (N,C,H,W), w (K,C,R,R) (flip: (C,K,R,R)), b (K,) or null -> y (N,K,P,Q), ReLU after the bias.
template <class W>
void forward_impl(const ConvShape& s, const float* x, const float* w, bool flip, const float* b, float* y,
                  bool relu) {
  constexpr int A = W::A, M = W::M, AA = A * A;
  const int P = s.P(), Q = s.Q();
  const int TH = (P + M - 1) / M, TW = (Q + M - 1) / M, T = TH * TW;
  const int Cp = (s.C + 15) / 16 * 16, Kp = (s.K + 15) / 16 * 16;
  const size_t xsC = position_stride((size_t)T * Cp), xsK = position_stride((size_t)T * Kp);
  const int Hb = TH * M + W::R - 1, Wb = TW * M + W::R - 1;
  const int Wy = TW * M + 16;
  const size_t xsz = (size_t)s.C * s.H * s.W, ysz = (size_t)s.K * P * Q;  // floats per image
  const Scratch U = scratch(4, (size_t)AA * s.C * Kp);
  weight_transform<W>(w, s.K, s.C, Kp, flip ? 1 : 0, U.data());
  std::vector<float> bias(Kp, 0.f);
  if (b) std::copy(b, b + s.K, bias.begin());
  // tile blocks of the per-position products, balanced in size: (first tile, count)
  const Blocks blocks(T);
#pragma omp parallel
  {
    const Scratch xT = scratch(0, (size_t)Hb * Wb * Cp, true), V = scratch(1, (size_t)AA * xsC),
                  Mo = scratch(2, (size_t)AA * xsK), yT = scratch(3, (size_t)TH * M * Wy * Kp, true);
    // images are independent: a stalled thread's share is taken over; runs of 4 images per thread
    // let the products prefetch the next image
#pragma omp for schedule(dynamic, 4)
    for (int n = 0; n < s.N; ++n) {
      to_channels_last(x + (size_t)n * s.C * s.H * s.W, s.C, s.H, s.W, Cp, Wb, s.ph, s.pw, xT.data());
      // input transform
      for (int th = 0; th < TH; ++th)
        for (int tw = 0; tw < TW; ++tw) {
          const int t = th * TW + tw;
          for (int cb = 0; cb < Cp; cb += 16)
            input_tile<W>(xT.data() + ((size_t)th * M * Wb + tw * M) * Cp + cb, (size_t)Wb * Cp, Cp,
                          V.data() + (size_t)t * Cp + cb, xsC);
        }
      // per-position products
      position_products(AA, blocks, V.data(), xsC, Cp, U.data(), s.C, Kp, Mo.data(), xsK,
                        n + 1 < s.N ? x + (n + 1) * xsz : nullptr, xsz, y + n * ysz, ysz);
      // output transform (+ bias, ReLU)
      for (int th = 0; th < TH; ++th)
        for (int tw = 0; tw < TW; ++tw) {
          const int t = th * TW + tw;
          for (int kb = 0; kb < Kp; kb += 16)
            output_tile<W>(Mo.data() + (size_t)t * Kp + kb, xsK, bias.data() + kb,
                           relu, yT.data() + ((size_t)th * M * Wy + tw * M) * Kp + kb, (size_t)Wy * Kp, Kp);
        }
      from_channels_last(yT.data(), s.K, P, Q, Kp, Wy, y + (size_t)n * s.K * P * Q);
    }
  }
}

// Input gradient as the adjoint of the forward (tiles over the output, not the input: fewer tiles
// than the transposed convolution when the padding is below R/2):
//   dV[xi] (T x C) = Dy[xi] (T x K) * U'[xi] (K x C),  dx window of tile t += BT^T dV_t BT.
// dy (N,K,P,Q), w (K,C,R,R) -> dx (N,C,H,W)
template <class W>
void backward_input_adjoint(const ConvShape& s, const float* dy, const float* w, float* dx) {
  constexpr int A = W::A, M = W::M, AA = A * A, R = W::R;
  const int P = s.P(), Q = s.Q();
  const int TH = (P + M - 1) / M, TW = (Q + M - 1) / M, T = TH * TW;
  const int Cp = (s.C + 15) / 16 * 16, Kp = (s.K + 15) / 16 * 16;
  const size_t xsC = position_stride((size_t)T * Cp), xsK = position_stride((size_t)T * Kp);
  const int Hb = TH * M + R - 1, Wd = TW * M + R - 1 + 16, Wq = TW * M;
  const size_t dysz = (size_t)s.K * P * Q, dxsz = (size_t)s.C * s.H * s.W;  // floats per image
  const Scratch Ut = scratch(4, (size_t)AA * s.K * Cp);  // [xi][k][Cp]
  weight_transform<W>(w, s.C, s.K, Cp, 2, Ut.data());
  const Blocks blocks(T);
#pragma omp parallel
  {
    const Scratch dyT = scratch(0, (size_t)TH * M * Wq * Kp, true), Dy = scratch(1, (size_t)AA * xsK),
                  dV = scratch(2, (size_t)AA * xsC), dxT = scratch(3, (size_t)Hb * Wd * Cp);
#pragma omp for schedule(dynamic, 4)  // as in forward_impl
    for (int n = 0; n < s.N; ++n) {
      to_channels_last(dy + (size_t)n * s.K * P * Q, s.K, P, Q, Kp, Wq, 0, 0, dyT.data());
      for (int th = 0; th < TH; ++th)
        for (int tw = 0; tw < TW; ++tw) {
          const int t = th * TW + tw;
          for (int kb = 0; kb < Kp; kb += 16)
            dy_tile<W>(dyT.data() + ((size_t)th * M * Wq + tw * M) * Kp + kb, (size_t)Wq * Kp, Kp,
                       Dy.data() + (size_t)t * Kp + kb, xsK);
        }
      position_products(AA, blocks, Dy.data(), xsK, Kp, Ut.data(), s.K, Cp, dV.data(), xsC,
                        n + 1 < s.N ? dy + (n + 1) * dysz : nullptr, dysz, dx + n * dxsz, dxsz);
      std::fill(dxT.begin(), dxT.end(), 0.f);
      for (int th = 0; th < TH; ++th)
        for (int tw = 0; tw < TW; ++tw) {
          const int t = th * TW + tw;
          for (int cb = 0; cb < Cp; cb += 16)
            input_tile_adjoint<W>(dV.data() + (size_t)t * Cp + cb, xsC,
                                  dxT.data() + ((size_t)th * M * Wd + tw * M) * Cp + cb, (size_t)Wd * Cp, Cp);
        }
      from_channels_last(dxT.data() + ((size_t)s.ph * Wd + s.pw) * Cp, s.C, s.H, s.W, Cp, Wd,
                         dx + (size_t)n * s.C * s.H * s.W);
    }
  }
}

// Weight gradient, last step: part [ngroups][A*A][C][Kp] partial dU sums -> dw (K,C,R,R):
// the groups summed in order, then dw = G^T dU G, all in double; split over input channels, all
// K output channels in the innermost (vectorised) loops.
template <class W>
__attribute__((target("avx512f"))) void finish_weight_gradient(const float* part, int ngroups, int C, int K,
                                                               int Kp, float* dw) {
  constexpr int A = W::A, AA = A * A, R = W::R;
  const size_t usz = (size_t)AA * C * Kp;
#pragma omp parallel
  {
    std::vector<double> sum((size_t)AA * K), t((size_t)R * A * K), u((size_t)R * R * K);
#pragma omp for schedule(static)
    for (int c = 0; c < C; ++c) {
      std::fill(sum.begin(), sum.end(), 0.0);  // sum[xi][k] of this channel
      for (int g = 0; g < ngroups; ++g)
        for (int xi = 0; xi < AA; ++xi) {
          const float* pg = part + (size_t)g * usz + ((size_t)xi * C + c) * Kp;
          double* sx = sum.data() + (size_t)xi * K;
          for (int k = 0; k < K; ++k) sx[k] += pg[k];
        }
      g_sandwich<W>(true, sum.data(), K, t.data(), u.data());  // dw = G^T dU G
      for (int ij = 0; ij < R * R; ++ij)
        for (int k = 0; k < K; ++k) dw[((size_t)k * C + c) * R * R + ij] = (float)u[(size_t)ij * K + k];
    }
  }
}

// Weight gradient (adjoint of the forward): dU[xi] (C x K) = sum over tiles and images of
// V[xi]^T Dy[xi], then dw = G^T dU G. dy (N,K,P,Q), x (N,C,H,W) -> dw (K,C,R,R), db (K,) or null.
// Partial dU sums per fixed group of GI images (one thread runs a group, images in order), reduced
// in group order in double: the result does not depend on the thread count.
template <class W>
void backward_weight_impl(const ConvShape& s, const float* dy, const float* x, float* dw, float* db) {
  constexpr int A = W::A, M = W::M, AA = A * A, R = W::R, GI = 16;
  const int P = s.P(), Q = s.Q(), PQ = P * Q;
  const int TH = (P + M - 1) / M, TW = (Q + M - 1) / M, T = TH * TW;
  const int Cp = (s.C + 15) / 16 * 16, Kp = (s.K + 15) / 16 * 16;
  const size_t xsC = position_stride((size_t)T * Cp), xsK = position_stride((size_t)T * Kp);
  const int Hb = TH * M + R - 1, Wb = TW * M + R - 1, Wq = TW * M;
  const int ngroups = (s.N + GI - 1) / GI;
  const size_t xsz = (size_t)s.C * s.H * s.W, dysz = (size_t)s.K * PQ;  // floats per image
  const size_t usz = (size_t)AA * s.C * Kp;
  const Scratch part = scratch(5, (size_t)ngroups * usz);
  std::vector<double> pbias((size_t)ngroups * s.K);
  const auto cblocks2 = balanced_blocks(s.C, TB2), cblocks1 = balanced_blocks(s.C, TB1);
#pragma omp parallel
  {
    const Scratch xT = scratch(0, (size_t)Hb * Wb * Cp, true), V = scratch(1, (size_t)AA * xsC),
                  dyT = scratch(2, (size_t)TH * M * Wq * Kp, true), Dy = scratch(3, (size_t)AA * xsK);
#pragma omp for schedule(dynamic, 1)  // fixed groups of images; a stalled thread's share is taken over
    for (int g = 0; g < ngroups; ++g) {
      float* dU = part.data() + (size_t)g * usz;
      double* pb = pbias.data() + (size_t)g * s.K;
      std::fill(dU, dU + usz, 0.f);
      std::fill(pb, pb + s.K, 0.0);
      for (int n = g * GI; n < std::min(s.N, (g + 1) * GI); ++n) {
        const float* dyn = dy + (size_t)n * s.K * PQ;
        if (db) add_row_sums(dyn, s.K, PQ, pb);
        to_channels_last(x + (size_t)n * s.C * s.H * s.W, s.C, s.H, s.W, Cp, Wb, s.ph, s.pw, xT.data());
        to_channels_last(dyn, s.K, P, Q, Kp, Wq, 0, 0, dyT.data());
        for (int th = 0; th < TH; ++th)
          for (int tw = 0; tw < TW; ++tw) {
            const int t = th * TW + tw;
            for (int cb = 0; cb < Cp; cb += 16)
              input_tile<W>(xT.data() + ((size_t)th * M * Wb + tw * M) * Cp + cb, (size_t)Wb * Cp, Cp,
                            V.data() + (size_t)t * Cp + cb, xsC);
            for (int kb = 0; kb < Kp; kb += 16)
              dy_tile<W>(dyT.data() + ((size_t)th * M * Wq + tw * M) * Kp + kb, (size_t)Wq * Kp, Kp,
                         Dy.data() + (size_t)t * Kp + kb, xsK);
          }
        const bool more = n + 1 < std::min(s.N, (g + 1) * GI);
        for (int xi = 0; xi < AA; ++xi) {
          if (more) {
            prefetch_part(x + (n + 1) * xsz, sizeof(float) * xsz, xi, AA, false);
            prefetch_part(dy + (n + 1) * dysz, sizeof(float) * dysz, xi, AA, false);
          }
          const float* Vx = V.data() + (size_t)xi * xsC;
          const float* Dx = Dy.data() + (size_t)xi * xsK;
          float* Ux = dU + (size_t)xi * s.C * Kp;
          for (int k0 = 0; k0 < Kp; k0 += 32) {
            const bool two = Kp - k0 >= 32;
            for (const auto& cb : two ? cblocks2 : cblocks1) {
              auto fn = two ? kGemmBw2[cb.second - 1] : kGemmBw1[cb.second - 1];
              fn(Vx + cb.first, Cp, Dx + k0, Kp, T, Ux + (size_t)cb.first * Kp + k0);
            }
          }
        }
      }
    }
  }
  finish_weight_gradient<W>(part.data(), ngroups, s.C, s.K, Kp, dw);
  if (db)
    for (int k = 0; k < s.K; ++k) {
      double acc = 0;
      for (int g = 0; g < ngroups; ++g) acc += pbias[(size_t)g * s.K + k];
      db[k] = (float)acc;
    }
}
#endif

// Output tile size: 2 for 5x5; for 3x3 F(4x4,3x3) where its 36 products per 4x4 tile come to
// below 85% of F(2x2,3x3)'s 16 per 2x2 tile, partial tiles counted (its transforms cost more).
// Measured on 16->32 @14x14, batch 64, 1 thread: F(4x4) takes 0.87 (forward), 0.84 (input grad),
// 0.90 (weight grad) of F(2x2)'s time; accuracy on MNIST activations (batch 4 x 256, against
// float64): forward 1.4e-6, input grad 2.6e-6 of max|ref| (F(2x2): 3e-7; direct: 7e-7).
int pick_tile(const ConvShape& s, int tile) {
  if (s.R == 5) return 2;
  if (tile == 2 || tile == 4) return tile;
  const long t2 = (long)((s.P() + 1) / 2) * ((s.Q() + 1) / 2), t4 = (long)((s.P() + 3) / 4) * ((s.Q() + 3) / 4);
  return 36 * t4 * 20 < 16 * t2 * 17 ? 4 : 2;
}

void run_forward(const ConvShape& s, const float* x, const float* w, bool flip, const float* b, float* y,
                 bool relu, int tile) {
#if FM_X86
  if (s.R == 5) return forward_impl<F25>(s, x, w, flip, b, y, relu);
  if (pick_tile(s, tile) == 4) return forward_impl<F43>(s, x, w, flip, b, y, relu);
  return forward_impl<F23>(s, x, w, flip, b, y, relu);
#else
  (void)s, (void)x, (void)w, (void)flip, (void)b, (void)y, (void)relu, (void)tile;
#endif
}

void run_backward_input_adjoint(const ConvShape& s, const float* dy, const float* w, float* dx, int tile) {
#if FM_X86
  if (s.R == 5) return backward_input_adjoint<F25>(s, dy, w, dx);
  if (pick_tile(s, tile) == 4) return backward_input_adjoint<F43>(s, dy, w, dx);
  return backward_input_adjoint<F23>(s, dy, w, dx);
#else
  (void)s, (void)dy, (void)w, (void)dx, (void)tile;
#endif
}

void run_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db, int tile) {
#if FM_X86
  if (s.R == 5) return backward_weight_impl<F25>(s, dy, x, dw, db);
  if (pick_tile(s, tile) == 4) return backward_weight_impl<F43>(s, dy, x, dw, db);
  return backward_weight_impl<F23>(s, dy, x, dw, db);
#else
  (void)s, (void)dy, (void)x, (void)dw, (void)db, (void)tile;
#endif
}

}  // namespace

bool winograd_available(const ConvShape& s) {
#if FM_X86
  return gemm_isa() == Isa::avx512 && s.sh == 1 && s.sw == 1 && s.R == s.S && (s.R == 3 || s.R == 5) &&
         s.N > 0;
#else
  (void)s;
  return false;
#endif
}

// Measured on this project's machine (1 thread, batch 64, Winograd time / direct time): 16->32
// 3x3 @14x14 0.62 (forward), 0.60 (input grad), 0.67 (weight grad); 5x5 0.50 / 0.50 / 0.55;
// 8->32 3x3 forward 0.85; 32->8 3x3 forward 1.04 (8 of 16 lanes idle); 8->8 3x3 1.55; 8->16 5x5
// 0.74; weight gradient 8->8 0.95, 64->64 @7x7 0.84.
bool winograd_preferred(const ConvShape& s) {
  return winograd_available(s) && s.C >= 8 && (s.K >= 16 || s.R == 5) && s.P() >= 4 && s.Q() >= 4;
}

void winograd_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu,
                      int tile) {
  run_forward(s, x, w, false, b, y, relu, tile);
}

// The input-gradient convolution: dy (N,K,P,Q) with w' (C,K,R,S), padding R-1-ph -> dx (N,C,H,W).
static ConvShape transposed_shape(const ConvShape& s) {
  return ConvShape{s.N, s.K, s.P(), s.Q(), s.C, s.R, s.S, 1, 1, s.R - 1 - s.ph, s.S - 1 - s.pw};
}

bool winograd_backward_input_available(const ConvShape& s) { return winograd_available(s); }

bool winograd_backward_input_preferred(const ConvShape& s) {
  const ConvShape t{s.N, s.K, s.P(), s.Q(), s.C, s.R, s.S, 1, 1, s.R / 2, s.S / 2};
  return winograd_available(s) && winograd_preferred(t);
}

// Two ways: the forward Winograd on the transposed convolution (tiles over dx; needs pad <= R-1)
// or the adjoint of the forward (tiles over dy, overlapping windows summed): whichever has fewer tiles.
void winograd_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, int tile) {
  const int m = s.R == 5 ? 2 : pick_tile(s, tile);
  const long tiles_dy = (long)((s.P() + m - 1) / m) * ((s.Q() + m - 1) / m);
  const long tiles_dx = (long)((s.H + m - 1) / m) * ((s.W + m - 1) / m);
  if (s.ph <= s.R - 1 && s.pw <= s.S - 1 && tiles_dx <= tiles_dy)
    run_forward(transposed_shape(s), dy, w, true, nullptr, dx, false, tile);
  else
    run_backward_input_adjoint(s, dy, w, dx, tile);
}

bool winograd_backward_weight_preferred(const ConvShape& s) {
  return winograd_available(s) && s.C >= 8 && s.K >= 8 && s.P() >= 4 && s.Q() >= 4;
}

void winograd_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                              int tile) {
  run_backward_weight(s, dy, x, dw, db, tile);
}

static int impl_tile(ConvImpl impl) {
  return impl == ConvImpl::winograd_f2 ? 2 : impl == ConvImpl::winograd_f4 ? 4 : 0;
}

bool winograd_try_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu,
                          ConvImpl& impl) {
  if (impl == ConvImpl::direct) impl = ConvImpl::fast;  // the direct kernels only
  else if (is_winograd(impl) ? winograd_available(s) : impl == ConvImpl::fast && winograd_preferred(s)) {
    winograd_forward(s, x, w, b, y, relu, impl_tile(impl));
    return true;
  }
  if (is_winograd(impl)) impl = ConvImpl::fast;
  return false;
}

bool winograd_try_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, ConvImpl& impl) {
  if (impl == ConvImpl::direct) impl = ConvImpl::fast;
  else if (is_winograd(impl) ? winograd_backward_input_available(s)
                             : impl == ConvImpl::fast && winograd_backward_input_preferred(s)) {
    winograd_backward_input(s, dy, w, dx, impl_tile(impl));
    return true;
  }
  if (is_winograd(impl)) impl = ConvImpl::fast;
  return false;
}

bool winograd_try_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                                  ConvImpl& impl) {
  if (impl == ConvImpl::direct) impl = ConvImpl::fast;
  else if (is_winograd(impl) ? winograd_available(s)
                             : impl == ConvImpl::fast && winograd_backward_weight_preferred(s)) {
    winograd_backward_weight(s, dy, x, dw, db, impl_tile(impl));
    return true;
  }
  if (is_winograd(impl)) impl = ConvImpl::fast;
  return false;
}

}  // namespace fm
