// Winograd kernels of one instruction set (see winograd.cpp). Pasted by simd/instantiate.hpp into
// namespace fm::<isa>, where S is that ISA's traits type (simd/simd.hpp); includes nothing itself.

using F = S::V;
constexpr int LN = S::W;  // channels per vector
// Most tiles per register block of the per-position products, for 2 / 1 vectors of output
// channels: TB * KV accumulators, KV weight vectors and one broadcast fit the register file
// (16 ymm on AVX2; 32 zmm on AVX-512, 32 q registers on NEON).
constexpr int TB2 = LN == 8 ? 6 : 12, TB1 = LN == 8 ? 12 : 16;


// Two-sided product with a constant matrix, vectorised over n (compiled per ISA, so the double
// loops run at this ISA's width): out[p][q][:] = sum_{i,j} L[p][i]
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

// out[o] = sum_i coef(o, i) * in[i] for a constant matrix: after full unrolling the compiler sees
// every coefficient, so zero terms vanish and +-1 become adds / subtracts.
template <int NO, int NI, class Coef>
__attribute__((always_inline)) inline void const_apply(Coef coef, const F* in,
                                                                          F* out) {
#pragma GCC unroll 8
  for (int o = 0; o < NO; ++o) {
    // start from a +1 term where the row has one (saves the first multiply / negation)
    int one = -1;
#pragma GCC unroll 8
    for (int i = NI - 1; i >= 0; --i)
      if (coef(o, i) == 1.f) one = i;
    F acc = one >= 0 ? in[one] : S::zero();
    bool first = one < 0;
#pragma GCC unroll 8
    for (int i = 0; i < NI; ++i) {
      const float c = coef(o, i);
      if (c == 0.f || i == one) continue;
      if (first) {
        acc = c == 1.f ? in[i] : c == -1.f ? S::sub(S::zero(), in[i])
                                           : S::mul(S::set1(c), in[i]);
        first = false;
      } else if (c == 1.f) {
        acc = S::add(acc, in[i]);
      } else if (c == -1.f) {
        acc = S::sub(acc, in[i]);
      } else {
        acc = S::fma(S::set1(c), in[i], acc);
      }
    }
    out[o] = acc;
  }
}

// out = Mx in
template <int NO, int NI>
__attribute__((always_inline)) inline void mat_apply(const float (&Mx)[NO][NI],
                                                                        const F* in, F* out) {
  const_apply<NO, NI>([&](int o, int i) { return Mx[o][i]; }, in, out);
}

// BT of the 6-point transforms (FM_WG_BT6) applied to 6 vectors, common terms shared
// (16 operations instead of 24).
__attribute__((always_inline)) inline void bt6_apply(const F* d, F* r) {
  const F a = S::sub(d[4], d[2]), b = S::sub(d[3], d[1]);
  r[3] = S::fma(S::set1(2.f), b, a);
  r[4] = S::fma(S::set1(-0.5f), b, a);
  r[0] = S::fma(S::set1(1.5f), b,
                         S::fma(S::set1(-2.f), d[2], S::add(d[0], d[4])));
  r[1] = S::fma(S::set1(2.5f), d[3],
                         S::fma(S::set1(0.5f), d[2], S::sub(d[4], d[1])));
  r[2] = S::fma(S::set1(0.5f), d[3],
                         S::fma(S::set1(-2.5f), d[2], S::add(d[4], d[1])));
  r[5] = S::fma(S::set1(1.5f), a,
                         S::fma(S::set1(-2.f), d[3], S::add(d[5], d[1])));
}

template <class W>
__attribute__((always_inline)) inline void bt_apply(const F* in, F* out) {
  if constexpr (W::A == 6)
    bt6_apply(in, out);
  else
    mat_apply(W::BT, in, out);
}

// x_n (C,H,W) -> xT [Hb][Wb][Cp] at row ph, column pw (the zero border is left untouched). With
// `sums`, sums[c] += the sum of channel c (float lanes in pixel order, then double): the bias
// gradient when x is an output gradient, from the transposed vectors already in registers.
void to_channels_last(const float* x, int C, int H, int W, int Cp, int Wb, int ph, int pw, float* xT,
                      double* sums = nullptr) {
  for (int cb = 0; cb < Cp; cb += LN) {
    F acc = S::zero();
    for (int h = 0; h < H; ++h)
      for (int q0 = 0; q0 < W; q0 += LN) {
        const int nq = std::min(LN, W - q0);
        F r[LN];
#pragma GCC unroll 16
        for (int i = 0; i < LN; ++i)
          r[i] = cb + i < C ? S::load_n(x + ((size_t)(cb + i) * H + h) * W + q0, nq) : S::zero();
        S::transpose(r);
        float* dst = xT + ((size_t)(h + ph) * Wb + q0 + pw) * Cp + cb;
        for (int j = 0; j < nq; ++j) {
          S::store(dst + (size_t)j * Cp, r[j]);
          if (sums) acc = S::add(acc, r[j]);
        }
      }
    if (sums) {
      alignas(64) float a[LN];
      S::store(a, acc);
      for (int i = 0; i < LN && cb + i < C; ++i) sums[cb + i] += a[i];
    }
  }
}

// yT [rows][Wy][Kp] -> y (K, rows, Q), channel planes `plane` floats apart
void from_channels_last(const float* yT, int K, int rows, int Q, int Kp, int Wy, size_t plane, float* y) {
  for (int kb = 0; kb < K; kb += LN)
    for (int p = 0; p < rows; ++p)
      for (int q0 = 0; q0 < Q; q0 += LN) {
        const int nq = std::min(LN, Q - q0);
        F r[LN];
        const float* src = yT + ((size_t)p * Wy + q0) * Kp + kb;
#pragma GCC unroll 16
        for (int j = 0; j < LN; ++j) r[j] = S::load(src + (size_t)j * Kp);
        S::transpose(r);
        const int nk = std::min(LN, K - kb);
        for (int i = 0; i < nk; ++i) S::store_n(y + (size_t)(kb + i) * plane + (size_t)p * Q + q0, r[i], nq);
      }
}

// One tile, LN channels: src = xT at the tile's top-left (row stride rs, pixel stride Cp)
// -> dst = V[0][t][cb], position xi at dst + xi * xs.
template <class W>
inline void input_tile(const float* src, size_t rs, size_t cs, float* dst,
                                                          size_t xs) {
  constexpr int A = W::A;
  F tmp[A][A];  // tmp[a][j] = sum_i BT[a][i] d[i][j]
#pragma GCC unroll 8
  for (int j = 0; j < A; ++j) {
    F col[A], o[A];
#pragma GCC unroll 8
    for (int i = 0; i < A; ++i) col[i] = S::load(src + i * rs + j * cs);
    bt_apply<W>(col, o);
#pragma GCC unroll 8
    for (int a = 0; a < A; ++a) tmp[a][j] = o[a];
  }
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a) {
    F o[A];
    bt_apply<W>(tmp[a], o);
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) S::store(dst + (size_t)(a * A + b) * xs, o[b]);
  }
}

// One tile, LN output channels: src = Mo[0][t][kb] (position xi at src + xi * xs) -> m x m
// outputs (+ bias, ReLU) at dst = yT at the tile's top-left (row stride rs, pixel stride Kp).
template <class W>
inline void output_tile(const float* src, size_t xs, const float* bias16, bool relu,
                                                           float* dst, size_t rs, size_t cs) {
  constexpr int A = W::A, M = W::M;
  const F bias = S::load(bias16);
  F z[M][A];  // z[j][a] = sum_b M[a][b] AT[j][b]
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a) {
    F row[A], o[M];
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) row[b] = S::load(src + (size_t)(a * A + b) * xs);
    mat_apply(W::AT, row, o);
#pragma GCC unroll 4
    for (int j = 0; j < M; ++j) z[j][a] = o[j];
  }
#pragma GCC unroll 4
  for (int j = 0; j < M; ++j) {
    F o[M];
    mat_apply(W::AT, z[j], o);
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      F v = S::add(o[i], bias);
      if (relu) v = S::max(S::zero(), v);  // max(0, NaN) = NaN (second operand)
      S::store(dst + i * rs + j * cs, v);
    }
  }
}

// Mo (TB tiles x LN*KV channels) = V (TB tiles, row stride Cp) * U (C x LN*KV, row stride Kp).
template <int KV, int TB>
void wg_gemm(const float* V, int Cp, const float* U, int Kp, int C,
                                                float* Mo) {
  F acc[TB][KV];
#pragma GCC unroll 16
  for (int i = 0; i < TB; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) acc[i][v] = S::zero();
  for (int c = 0; c < C; ++c) {
    F u[KV];
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) u[v] = S::load(U + (size_t)c * Kp + LN * v);
#pragma GCC unroll 16
    for (int i = 0; i < TB; ++i) {
      const F a = S::set1(V[(size_t)i * Cp + c]);
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) acc[i][v] = S::fma(a, u[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < TB; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) S::store(Mo + (size_t)i * Kp + LN * v, acc[i][v]);
}

// out = Mx^T in
template <int NI, int NO>
__attribute__((always_inline)) inline void mat_apply_t(const float (&Mx)[NI][NO],
                                                                          const F* in, F* out) {
  const_apply<NO, NI>([&](int o, int i) { return Mx[i][o]; }, in, out);
}

// Weight gradient, one output-gradient tile, LN channels: Dy = AT^T dy AT (the adjoint of the
// output transform). src = dyT at the tile's top-left (row stride rs, pixel stride cs) -> dst =
// Dy[0][t][kb], position xi at dst + xi * xs.
template <class W>
inline void dy_tile(const float* src, size_t rs, size_t cs, float* dst,
                                                       size_t xs) {
  constexpr int A = W::A, M = W::M;
  F z[A][M];  // z[a][j] = sum_i AT[i][a] dy[i][j]
#pragma GCC unroll 4
  for (int j = 0; j < M; ++j) {
    F col[M], o[A];
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) col[i] = S::load(src + i * rs + j * cs);
    mat_apply_t(W::AT, col, o);
#pragma GCC unroll 8
    for (int a = 0; a < A; ++a) z[a][j] = o[a];
  }
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a) {
    F o[A];
    mat_apply_t(W::AT, z[a], o);
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) S::store(dst + (size_t)(a * A + b) * xs, o[b]);
  }
}

// Input gradient by the adjoint, one tile, LN channels: dd = BT^T dV BT added into dst = dxT at
// the tile's top-left (row stride rs, pixel stride cs); src = dV[0][t][cb], position xi at
// src + xi * xs.
template <class W>
inline void input_tile_adjoint(const float* src, size_t xs, float* dst,
                                                                  size_t rs, size_t cs) {
  constexpr int A = W::A;
  F z[A][A];  // z[j][a] = sum_b dV[a][b] BT[b][j]
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a) {
    F row[A], o[A];
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) row[b] = S::load(src + (size_t)(a * A + b) * xs);
    mat_apply_t(W::BT, row, o);
#pragma GCC unroll 8
    for (int j = 0; j < A; ++j) z[j][a] = o[j];
  }
#pragma GCC unroll 8
  for (int j = 0; j < A; ++j) {
    F o[A];
    mat_apply_t(W::BT, z[j], o);
#pragma GCC unroll 8
    for (int i = 0; i < A; ++i) {
      float* d = dst + i * rs + j * cs;
      S::store(d, S::add(S::load(d), o[i]));
    }
  }
}

// dU (CB input channels x LN*KV output channels, row stride Kp) += V^T (CB x T) * Dy (T x LN*KV):
// V rows of Cp floats (this block's channels first), Dy rows of Kp floats.
template <int KV, int CB>
void wg_gemm_bw(const float* V, int Cp, const float* Dy, int Kp, int T,
                                                   float* dU) {
  F acc[CB][KV];
#pragma GCC unroll 16
  for (int i = 0; i < CB; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) acc[i][v] = S::load(dU + (size_t)i * Kp + LN * v);
  for (int t = 0; t < T; ++t) {
    F u[KV];
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) u[v] = S::load(Dy + (size_t)t * Kp + LN * v);
    const float* vt = V + (size_t)t * Cp;
#pragma GCC unroll 16
    for (int i = 0; i < CB; ++i) {
      const F a = S::set1(vt[i]);
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) acc[i][v] = S::fma(a, u[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < CB; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) S::store(dU + (size_t)i * Kp + LN * v, acc[i][v]);
}

using gemm_fn = void (*)(const float*, int, const float*, int, int, float*);
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

// The per-position products of one image: for every transform position xi,
//   Out[xi] (T x Np) = In[xi] (T x Kr) * Uw[xi] (Kr x Np)
// (In rows ldi apart, positions istride apart; Uw positions Kr * Np apart; Out rows Np apart,
// positions ostride apart), over tile blocks balanced in size, 2 LN (or LN) output columns at a
// time. Meanwhile the next image's input (pre_in) is prefetched for reading and this image's
// output (pre_out) for writing, one part per position.
struct Blocks {
  std::vector<std::pair<int, int>> two, one;  // (first tile, count) for 2 LN / LN output columns
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
    for (int j0 = 0; j0 < Np; j0 += 2 * LN) {
      const bool two = Np - j0 >= 2 * LN;
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
                  Mo = scratch(2, (size_t)AA * xsK), yT = scratch(3, (size_t)M * Wy * Kp, true);
    // images are independent: a stalled thread's share is taken over; runs of 4 images per thread
    // let the products prefetch the next image
#pragma omp for schedule(dynamic, 4)
    for (int n = 0; n < s.N; ++n) {
      to_channels_last(x + (size_t)n * s.C * s.H * s.W, s.C, s.H, s.W, Cp, Wb, s.ph, s.pw, xT.data());
      // input transform
      for (int th = 0; th < TH; ++th)
        for (int tw = 0; tw < TW; ++tw) {
          const int t = th * TW + tw;
          for (int cb = 0; cb < Cp; cb += LN)
            input_tile<W>(xT.data() + ((size_t)th * M * Wb + tw * M) * Cp + cb, (size_t)Wb * Cp, Cp,
                          V.data() + (size_t)t * Cp + cb, xsC);
        }
      // per-position products
      position_products(AA, blocks, V.data(), xsC, Cp, U.data(), s.C, Kp, Mo.data(), xsK,
                        n + 1 < s.N ? x + (n + 1) * xsz : nullptr, xsz, y + n * ysz, ysz);
      // output transform (+ bias, ReLU), one row of tiles at a time (yT stays in L1)
      for (int th = 0; th < TH; ++th) {
        for (int tw = 0; tw < TW; ++tw) {
          const int t = th * TW + tw;
          for (int kb = 0; kb < Kp; kb += LN)
            output_tile<W>(Mo.data() + (size_t)t * Kp + kb, xsK, bias.data() + kb, relu,
                           yT.data() + (size_t)tw * M * Kp + kb, (size_t)Wy * Kp, Kp);
        }
        from_channels_last(yT.data(), s.K, std::min(M, P - th * M), Q, Kp, Wy, (size_t)P * Q,
                           y + (size_t)n * ysz + (size_t)th * M * Q);
      }
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
          for (int kb = 0; kb < Kp; kb += LN)
            dy_tile<W>(dyT.data() + ((size_t)th * M * Wq + tw * M) * Kp + kb, (size_t)Wq * Kp, Kp,
                       Dy.data() + (size_t)t * Kp + kb, xsK);
        }
      position_products(AA, blocks, Dy.data(), xsK, Kp, Ut.data(), s.K, Cp, dV.data(), xsC,
                        n + 1 < s.N ? dy + (n + 1) * dysz : nullptr, dysz, dx + n * dxsz, dxsz);
      std::fill(dxT.begin(), dxT.end(), 0.f);
      for (int th = 0; th < TH; ++th)
        for (int tw = 0; tw < TW; ++tw) {
          const int t = th * TW + tw;
          for (int cb = 0; cb < Cp; cb += LN)
            input_tile_adjoint<W>(dV.data() + (size_t)t * Cp + cb, xsC,
                                  dxT.data() + ((size_t)th * M * Wd + tw * M) * Cp + cb, (size_t)Wd * Cp, Cp);
        }
      from_channels_last(dxT.data() + ((size_t)s.ph * Wd + s.pw) * Cp, s.C, s.H, s.W, Cp, Wd,
                         (size_t)s.H * s.W, dx + (size_t)n * s.C * s.H * s.W);
    }
  }
}

// Weight gradient, last step: part [ngroups][A*A][C][Kp] partial dU sums -> dw (K,C,R,R):
// the groups summed in order, then dw = G^T dU G, all in double; split over input channels, all
// K output channels in the innermost (vectorised) loops.
template <class W>
void finish_weight_gradient(const float* part, int ngroups, int C, int K,
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
// in group order in double: the result does not depend on the thread count. The images of a group
// are transformed NI at a time (their tiles side by side in V and Dy), so that one pass of the
// products sums NI * T tiles into the register-held dU block before storing it back.
template <class W>
void backward_weight_impl(const ConvShape& s, const float* dy, const float* x, float* dw, float* db) {
  constexpr int A = W::A, M = W::M, AA = A * A, R = W::R, GI = 16, NI = 4;
  const int P = s.P(), Q = s.Q(), PQ = P * Q;
  const int TH = (P + M - 1) / M, TW = (Q + M - 1) / M, T = TH * TW;
  const int Cp = (s.C + 15) / 16 * 16, Kp = (s.K + 15) / 16 * 16;
  const size_t xsC = position_stride((size_t)NI * T * Cp), xsK = position_stride((size_t)NI * T * Kp);
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
      const int n1 = std::min(s.N, (g + 1) * GI);
      for (int n0 = g * GI; n0 < n1; n0 += NI) {
        const int ni = std::min(NI, n1 - n0);
        for (int i = 0; i < ni; ++i) {
          const int n = n0 + i;
          const float* dyn = dy + (size_t)n * dysz;
          to_channels_last(x + (size_t)n * xsz, s.C, s.H, s.W, Cp, Wb, s.ph, s.pw, xT.data());
          to_channels_last(dyn, s.K, P, Q, Kp, Wq, 0, 0, dyT.data(), db ? pb : nullptr);
          for (int th = 0; th < TH; ++th)
            for (int tw = 0; tw < TW; ++tw) {
              const int t = i * T + th * TW + tw;
              for (int cb = 0; cb < Cp; cb += LN)
                input_tile<W>(xT.data() + ((size_t)th * M * Wb + tw * M) * Cp + cb, (size_t)Wb * Cp, Cp,
                              V.data() + (size_t)t * Cp + cb, xsC);
              for (int kb = 0; kb < Kp; kb += LN)
                dy_tile<W>(dyT.data() + ((size_t)th * M * Wq + tw * M) * Kp + kb, (size_t)Wq * Kp, Kp,
                           Dy.data() + (size_t)t * Kp + kb, xsK);
            }
        }
        const int nt = ni * T, nn = std::min(NI, n1 - n0 - ni);  // tiles now; images of the next chunk
        for (int xi = 0; xi < AA; ++xi) {
          if (nn > 0) {
            prefetch_part(x + (n0 + ni) * xsz, sizeof(float) * nn * xsz, xi, AA, false);
            prefetch_part(dy + (n0 + ni) * dysz, sizeof(float) * nn * dysz, xi, AA, false);
          }
          const float* Vx = V.data() + (size_t)xi * xsC;
          const float* Dx = Dy.data() + (size_t)xi * xsK;
          float* Ux = dU + (size_t)xi * s.C * Kp;
          for (int k0 = 0; k0 < Kp; k0 += 2 * LN) {
            const bool two = Kp - k0 >= 2 * LN;
            for (const auto& cb : two ? cblocks2 : cblocks1) {
              auto fn = two ? kGemmBw2[cb.second - 1] : kGemmBw1[cb.second - 1];
              fn(Vx + cb.first, Cp, Dx + k0, Kp, nt, Ux + (size_t)cb.first * Kp + k0);
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

// The entry points of this ISA (m: output tile size, from pick_tile).
void wg_forward(const ConvShape& s, const float* x, const float* w, bool flip, const float* b, float* y, bool relu,
                int m) {
  if (s.R == 5) return forward_impl<F25>(s, x, w, flip, b, y, relu);
  if (m == 4) return forward_impl<F43>(s, x, w, flip, b, y, relu);
  return forward_impl<F23>(s, x, w, flip, b, y, relu);
}

void wg_backward_input_adjoint(const ConvShape& s, const float* dy, const float* w, float* dx, int m) {
  if (s.R == 5) return backward_input_adjoint<F25>(s, dy, w, dx);
  if (m == 4) return backward_input_adjoint<F43>(s, dy, w, dx);
  return backward_input_adjoint<F23>(s, dy, w, dx);
}

void wg_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db, int m) {
  if (s.R == 5) return backward_weight_impl<F25>(s, dy, x, dw, db);
  if (m == 4) return backward_weight_impl<F43>(s, dy, x, dw, db);
  return backward_weight_impl<F23>(s, dy, x, dw, db);
}

const WinogradKernels kWinograd = {&wg_forward, &wg_backward_input_adjoint, &wg_backward_weight};
