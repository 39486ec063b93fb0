// Weight gradient of a stride-1 convolution with few input channels (the first layer of an MNIST
// net), AVX-512: Winograd along the kernel rows.
//
//   dw[k][c][r][t] = sum_{n,p,q} dy[n][k][p][q] * xpad[n][c][p+r][q+t],   db[k] = sum dy[n][k]
//
// With C = 1 there is nothing to amortise a 2-D Winograd transform of dy over, but a 1-D one along
// the kernel rows is cheap. Split the output rows p into tiles of TR = 4 (p = 4*tr + i); for a fixed
// tile row tr, column q and tap column t, the sum over i is a 1-D correlation producing R outputs
// (r = 0..R-1) from 4 dy values and R+3 x values: Winograd F(R, 4) with alpha A = R + 3 points
// (0, +-1, +-2 for R = 3; also +-1/2 for R = 5):
//   dw[.][r][t] = sum_a AT[r][a] * M[a][t],   M[a][t] = sum_{n,tr,q} dyT[a][tr][q] * xT[a][tr][q+t],
//   dyT[a] = sum_i G[a][i] dy[4tr+i][q]   (a few adds per 4 rows, computed once per channel k),
//   xT[a]  = sum_b BT[a][b] xpad[4tr+b][.] (computed once per image, shared by all K channels).
// The multiply-adds drop from 4*R*S to A*S per 4 output rows: 18 instead of 36 for 3x3, 40 instead
// of 100 for 5x5. The transformed planes are laid out flat over j = tr*Q + q (so a 16-lane vector
// wastes no lanes at row ends) and interleaved per vector: dyT [v][k][a][16], xT [c][v][a][t][16],
// so that the main loop addresses every operand as one pointer plus an immediate. The main loop is
// a register tile of KB channels x AB transform points x S taps accumulated over a chunk of images.
// The bias gradient is the sum of the a = 1 point (G row 1 = [1,1,1,1]), taken during the dy
// transform. Partial sums live per fixed group of 16 images, reduced in group order: the result
// does not depend on the thread count. The last transform (AT) runs once, in double.
#include "conv_wgrad1.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(FASTMNIST_NO_SIMD)
#include <immintrin.h>
#define FM_X86 1
#else
#define FM_X86 0
#endif

#include "common.hpp"
#include "gemm.hpp"

namespace fm {

#if FM_X86
namespace {

constexpr int TR = 4;  // dy rows per Winograd tile

template <int R>
struct RowWino;

// F(3, 4): points 0, 1, -1, 2, -2, inf. G (6x4) = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1].
template <>
struct RowWino<3> {
  static constexpr int A = 6;
  static constexpr float BT[6][6] = {
      {1.f, 0.f, -5.f / 4, 0.f, 1.f / 4, 0.f},
      {0.f, 2.f / 3, 2.f / 3, -1.f / 6, -1.f / 6, 0.f},
      {0.f, -2.f / 3, 2.f / 3, 1.f / 6, -1.f / 6, 0.f},
      {0.f, -1.f / 12, -1.f / 24, 1.f / 12, 1.f / 24, 0.f},
      {0.f, 1.f / 12, -1.f / 24, -1.f / 12, 1.f / 24, 0.f},
      {0.f, 4.f, 0.f, -5.f, 0.f, 1.f},
  };
  static constexpr double AT[3][6] = {
      {1, 1, 1, 1, 1, 0},
      {0, 1, -1, 2, -2, 0},
      {0, 1, 1, 4, 4, 1},
  };
  // g: 4 dy rows -> t: 6 transformed rows (G g)
  __attribute__((target("avx512f"), always_inline)) static inline void dy_transform(const __m512 (&g)[4],
                                                                                    __m512 (&t)[6]) {
    const __m512 four = _mm512_set1_ps(4.f);
    const __m512 e1 = _mm512_add_ps(g[0], g[2]), o1 = _mm512_add_ps(g[1], g[3]);
    const __m512 e2 = _mm512_fmadd_ps(g[2], four, g[0]);  // g0 + 4 g2
    __m512 o2 = _mm512_fmadd_ps(g[3], four, g[1]);        // g1 + 4 g3
    o2 = _mm512_add_ps(o2, o2);                           // 2 g1 + 8 g3
    t[0] = g[0];
    t[1] = _mm512_add_ps(e1, o1);
    t[2] = _mm512_sub_ps(e1, o1);
    t[3] = _mm512_add_ps(e2, o2);
    t[4] = _mm512_sub_ps(e2, o2);
    t[5] = g[3];
  }
};

// F(5, 4): points 0, 1, -1, 2, -2, 1/2, -1/2, inf; the +-1/2 rows of G scaled by 8 (BT rows by 1/8):
// G (8x4) = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 8 4 2 1; 8 -4 2 -1; 0 0 0 1].
template <>
struct RowWino<5> {
  static constexpr int A = 8;
  static constexpr float BT[8][8] = {
      {1.f, 0.f, -21.f / 4, 0.f, 21.f / 4, 0.f, -1.f, 0.f},
      {0.f, -2.f / 9, -2.f / 9, 17.f / 18, 17.f / 18, -2.f / 9, -2.f / 9, 0.f},
      {0.f, 2.f / 9, -2.f / 9, -17.f / 18, 17.f / 18, 2.f / 9, -2.f / 9, 0.f},
      {0.f, 1.f / 180, 1.f / 360, -1.f / 36, -1.f / 72, 1.f / 45, 1.f / 90, 0.f},
      {0.f, -1.f / 180, 1.f / 360, 1.f / 36, -1.f / 72, -1.f / 45, 1.f / 90, 0.f},
      {0.f, 8.f / 45, 16.f / 45, -2.f / 9, -4.f / 9, 2.f / 45, 4.f / 45, 0.f},
      {0.f, -8.f / 45, 16.f / 45, 2.f / 9, -4.f / 9, -2.f / 45, 4.f / 45, 0.f},
      {0.f, -1.f, 0.f, 21.f / 4, 0.f, -21.f / 4, 0.f, 1.f},
  };
  static constexpr double AT[5][8] = {
      {1, 1, 1, 1, 1, 1, 1, 0},
      {0, 1, -1, 2, -2, 0.5, -0.5, 0},
      {0, 1, 1, 4, 4, 0.25, 0.25, 0},
      {0, 1, -1, 8, -8, 0.125, -0.125, 0},
      {0, 1, 1, 16, 16, 0.0625, 0.0625, 1},
  };
  __attribute__((target("avx512f"), always_inline)) static inline void dy_transform(const __m512 (&g)[4],
                                                                                    __m512 (&t)[8]) {
    const __m512 four = _mm512_set1_ps(4.f);
    const __m512 e1 = _mm512_add_ps(g[0], g[2]), o1 = _mm512_add_ps(g[1], g[3]);
    const __m512 e2 = _mm512_fmadd_ps(g[2], four, g[0]);  // g0 + 4 g2
    __m512 o2 = _mm512_fmadd_ps(g[3], four, g[1]);        // g1 + 4 g3
    o2 = _mm512_add_ps(o2, o2);                           // 2 g1 + 8 g3
    __m512 e3 = _mm512_fmadd_ps(g[0], four, g[2]);        // 4 g0 + g2
    e3 = _mm512_add_ps(e3, e3);                           // 8 g0 + 2 g2
    const __m512 o3 = _mm512_fmadd_ps(g[1], four, g[3]);  // 4 g1 + g3
    t[0] = g[0];
    t[1] = _mm512_add_ps(e1, o1);
    t[2] = _mm512_sub_ps(e1, o1);
    t[3] = _mm512_add_ps(e2, o2);
    t[4] = _mm512_sub_ps(e2, o2);
    t[5] = _mm512_add_ps(e3, o3);
    t[6] = _mm512_sub_ps(e3, o3);
    t[7] = g[3];
  }
};

template <class T>
struct Aligned {  // 64-byte aligned, zero-initialised scratch
  std::vector<T> v;
  T* p;
  explicit Aligned(size_t n) : v(n + 64 / sizeof(T), T(0)) {
    uintptr_t a = reinterpret_cast<uintptr_t>(v.data());
    p = reinterpret_cast<T*>((a + 63) & ~uintptr_t(63));
  }
};

// Geometry of the flat tile-row layout of one image.
struct Geo {
  int P, Q, TRn;  // output rows, columns, tile rows (ceil(P / 4))
  int nvi;        // 16-lane vectors per image: ceil(TRn * Q / 16)
  int Wps;        // row stride of the padded image / transformed x rows (Q + S - 1 rounded up to 16)
  int Hx;         // rows of the padded image the transform reads: 4 * TRn + R - 1
};

// The pieces of vector v (lanes j = 16v .. 16v+15 of the flat index j = tr*Q + q) that lie in one
// tile row: tile row tr[i], lane mask m[i]. Returns the number of pieces (lanes past the last tile
// row belong to none).
static inline int segments(const Geo& g, int v, int* tr, __mmask16* m) {
  const int j0 = 16 * v;
  int n = 0;
  for (int t = j0 / g.Q; t < g.TRn && t * g.Q < j0 + 16; ++t) {
    const int lo = std::max(j0, t * g.Q) - j0, hi = std::min(j0 + 16, (t + 1) * g.Q) - j0;
    tr[n] = t;
    m[n++] = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
  }
  return n;
}

// One output channel of one image: dyk (P,Q) -> dst [v][KBL][A][16] (this channel's slot), and
// bacc += the a = 1 point (the bias gradient's partial sums).
template <int R, int KBL>
__attribute__((target("avx512f"))) static void dy_transform_image(const Geo& g, const float* dyk, float* dst,
                                                                  __m512& bacc) {
  constexpr int A = RowWino<R>::A;
  int trs[20];
  __mmask16 ms[20];
  for (int v = 0; v < g.nvi; ++v) {
    const int ns = segments(g, v, trs, ms);
    __m512 in[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int i = 0; i < ns; ++i) {
      // lane l -> dy[4 tr + row][16 v + l - tr Q]
      const float* base = dyk + (size_t)3 * trs[i] * g.Q + 16 * v;
#pragma GCC unroll 4
      for (int row = 0; row < 4; ++row)
        if (TR * trs[i] + row < g.P) in[row] = _mm512_mask_loadu_ps(in[row], ms[i], base + (size_t)row * g.Q);
    }
    __m512 t[A];
    RowWino<R>::dy_transform(in, t);
    bacc = _mm512_add_ps(bacc, t[1]);
    float* d = dst + (size_t)v * KBL * A * 16;
#pragma GCC unroll 8
    for (int a = 0; a < A; ++a) _mm512_store_ps(d + a * 16, t[a]);
  }
}

// One input channel of one image: xpad (Hx, Wps) zero-padded plane -> xtp [A][TRn][Wps] (BT along
// the rows) -> xt [v][A][S][16] (flat, shifted by the tap column t).
template <int R, int S>
__attribute__((target("avx512f"))) static void x_transform_image(const Geo& g, const float* xpad, float* xtp,
                                                                 float* xt) {
  constexpr int A = RowWino<R>::A;
  for (int tr = 0; tr < g.TRn; ++tr)
    for (int w0 = 0; w0 < g.Wps; w0 += 16) {
      __m512 d[A];
#pragma GCC unroll 8
      for (int b = 0; b < A; ++b) d[b] = _mm512_load_ps(xpad + (size_t)(TR * tr + b) * g.Wps + w0);
#pragma GCC unroll 8
      for (int a = 0; a < A; ++a) {
        __m512 o = _mm512_setzero_ps();
        bool first = true;
#pragma GCC unroll 8
        for (int b = 0; b < A; ++b) {
          const float c = RowWino<R>::BT[a][b];
          if (c == 0.f) continue;
          if (first) o = c == 1.f ? d[b] : _mm512_mul_ps(_mm512_set1_ps(c), d[b]);
          else o = _mm512_fmadd_ps(_mm512_set1_ps(c), d[b], o);
          first = false;
        }
        _mm512_store_ps(xtp + ((size_t)a * g.TRn + tr) * g.Wps + w0, o);
      }
    }
  int trs[20];
  __mmask16 ms[20];
  for (int v = 0; v < g.nvi; ++v) {
    const int ns = segments(g, v, trs, ms);
    float* d = xt + (size_t)v * A * S * 16;
    for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
      for (int t = 0; t < S; ++t) {
        __m512 o = _mm512_setzero_ps();
        for (int i = 0; i < ns; ++i)  // lane l -> xtp[a][tr][16 v + l - tr Q + t]
          o = _mm512_mask_loadu_ps(
              o, ms[i], xtp + ((size_t)a * g.TRn + trs[i]) * g.Wps + t + 16 * v - (ptrdiff_t)trs[i] * g.Q);
        _mm512_store_ps(d + (a * S + t) * 16, o);
      }
  }
}

// The main loop: M[k][a][t] += sum over nv vectors of dyT[v][k][a] * xT[v][a][t] for KB channels
// (of a KBL-channel dyT block), AB transform points a0.., S taps. va: the accumulators of channel
// kb, point 0, tap 0 ([a][t][16], kstride floats between channels).
template <int KB, int KBL, int AB, int S, int A>
__attribute__((target("avx512f"))) static void wino_pass(const float* dyt, const float* xt, int a0, int nv,
                                                         float* va, size_t kstride) {
  __m512 acc[KB][AB][S];
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 8
    for (int a = 0; a < AB; ++a)
#pragma GCC unroll 8
      for (int t = 0; t < S; ++t) acc[k][a][t] = _mm512_load_ps(va + k * kstride + ((a0 + a) * S + t) * 16);
  const float* dp = dyt + a0 * 16;
  const float* xp = xt + a0 * S * 16;
  for (int v = 0; v < nv; ++v, dp += KBL * A * 16, xp += A * S * 16) {
#pragma GCC unroll 8
    for (int a = 0; a < AB; ++a) {
      __m512 xv[S];
#pragma GCC unroll 8
      for (int t = 0; t < S; ++t) xv[t] = _mm512_load_ps(xp + (a * S + t) * 16);
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) {
        const __m512 d = _mm512_load_ps(dp + (k * A + a) * 16);
#pragma GCC unroll 8
        for (int t = 0; t < S; ++t) acc[k][a][t] = _mm512_fmadd_ps(d, xv[t], acc[k][a][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 8
    for (int a = 0; a < AB; ++a)
#pragma GCC unroll 8
      for (int t = 0; t < S; ++t) _mm512_store_ps(va + k * kstride + ((a0 + a) * S + t) * 16, acc[k][a][t]);
}

template <int KBL, int AB, int S, int A>
__attribute__((target("avx512f"))) static void wino_pass_n(int kn, const float* dyt, const float* xt, int a0, int nv, float* va, size_t kstride) {
  static_assert(KBL <= 8, "channel block");
  switch (kn) {
    case 1: return wino_pass<1, KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride);
    case 2: if constexpr (KBL >= 2) return wino_pass<2, KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride); break;
    case 3: if constexpr (KBL >= 3) return wino_pass<3, KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride); break;
    case 4: if constexpr (KBL >= 4) return wino_pass<4, KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride); break;
    case 5: if constexpr (KBL >= 5) return wino_pass<5, KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride); break;
    case 6: if constexpr (KBL >= 6) return wino_pass<6, KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride); break;
    case 7: if constexpr (KBL >= 7) return wino_pass<7, KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride); break;
    case 8: if constexpr (KBL >= 8) return wino_pass<8, KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride); break;
  }
}

// R = S taps, KBL output channels per dyT block, AB transform points per pass, CH images per chunk.
template <int R, int KBL, int AB, int CH>
__attribute__((target("avx512f"))) static void wgrad_rows_winograd(const ConvShape& s, const float* dy, const float* x, float* dw, float* db) {
  constexpr int S = R, A = RowWino<R>::A;
  static_assert(A % AB == 0, "points per pass");
  Geo g;
  g.P = s.P();
  g.Q = s.Q();
  g.TRn = (g.P + TR - 1) / TR;
  g.nvi = (g.TRn * g.Q + 15) / 16;
  g.Wps = (g.Q + S - 1 + 15) / 16 * 16;
  g.Hx = TR * g.TRn + R - 1;
  const int C = s.C, K = s.K, PQ = g.P * g.Q;
  constexpr int G = 16;  // images per partial-sum group
  const int ng = (s.N + G - 1) / G;
  const size_t kstride = (size_t)C * A * S * 16;  // floats per channel k in a group's accumulators
  const size_t vsz = (size_t)K * kstride + (size_t)K * 16;
  Aligned<float> vacc((size_t)ng * vsz);
  const size_t xt_img = (size_t)g.nvi * A * S * 16, dyt_img = (size_t)g.nvi * KBL * A * 16;
#pragma omp parallel
  {
    Aligned<float> xpad((size_t)g.Hx * g.Wps), xtp((size_t)A * g.TRn * g.Wps);
    Aligned<float> xt((size_t)C * CH * xt_img), dyt((size_t)CH * dyt_img);
#pragma omp for schedule(dynamic, 1)
    for (int gi = 0; gi < ng; ++gi) {
      float* va = vacc.p + (size_t)gi * vsz;
      float* vb = va + (size_t)K * kstride;
      const int n1 = std::min(s.N, (gi + 1) * G);
      for (int c0 = gi * G; c0 < n1; c0 += CH) {
        const int cn = std::min(CH, n1 - c0), nv = cn * g.nvi;
        for (int i = 0; i < cn; ++i)
          for (int c = 0; c < C; ++c) {
            const float* xc = x + ((size_t)(c0 + i) * C + c) * s.H * s.W;
            for (int h = 0; h < s.H; ++h)
              std::memcpy(xpad.p + (size_t)(h + s.ph) * g.Wps + s.pw, xc + (size_t)h * s.W, sizeof(float) * s.W);
            x_transform_image<R, S>(g, xpad.p, xtp.p, xt.p + ((size_t)c * CH + i) * xt_img);
          }
        for (int kb = 0; kb < K; kb += KBL) {
          const int kn = std::min(KBL, K - kb);
          for (int kk = 0; kk < kn; ++kk) {
            __m512 bacc = _mm512_load_ps(vb + (size_t)(kb + kk) * 16);
            for (int i = 0; i < cn; ++i)
              dy_transform_image<R, KBL>(g, dy + ((size_t)(c0 + i) * K + kb + kk) * PQ,
                                         dyt.p + (size_t)i * dyt_img + (size_t)kk * A * 16, bacc);
            _mm512_store_ps(vb + (size_t)(kb + kk) * 16, bacc);
          }
          for (int c = 0; c < C; ++c)
            for (int a0 = 0; a0 < A; a0 += AB)
              wino_pass_n<KBL, AB, S, A>(kn, dyt.p, xt.p + (size_t)c * CH * xt_img, a0, nv,
                                         va + (size_t)kb * kstride + (size_t)c * A * S * 16, kstride);
        }
      }
    }
  }
  // reduce: lanes in order, groups in order, then the output transform AT (in double)
  std::vector<double> M((size_t)A * S);
  for (int k = 0; k < K; ++k) {
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < A * S; ++i) {
        double a = 0.0;
        for (int gi = 0; gi < ng; ++gi) {
          const float* v = vacc.p + (size_t)gi * vsz + (size_t)k * kstride + ((size_t)c * A * S + i) * 16;
          float l = 0.f;
          for (int u = 0; u < 16; ++u) l += v[u];
          a += l;
        }
        M[i] = a;
      }
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < S; ++t) {
          double a = 0.0;
          for (int p = 0; p < A; ++p) a += RowWino<R>::AT[r][p] * M[(size_t)p * S + t];
          dw[(((size_t)k * C + c) * R + r) * S + t] = (float)a;
        }
    }
    if (db) {
      double a = 0.0;
      for (int gi = 0; gi < ng; ++gi) {
        const float* v = vacc.p + (size_t)gi * vsz + (size_t)K * kstride + (size_t)k * 16;
        float l = 0.f;
        for (int u = 0; u < 16; ++u) l += v[u];
        a += l;
      }
      db[k] = (float)a;
    }
  }
}

}  // namespace
#endif

bool conv2d_backward_weight_rows_winograd(const ConvShape& s, const float* dy, const float* x, float* dw,
                                          float* db) {
#if FM_X86
  if (gemm_isa() != Isa::avx512) return false;
  if (s.N <= 0 || s.sh != 1 || s.sw != 1 || s.C > 4 || s.R != s.S || s.P() < 1 || s.Q() < 1) return false;
  if (s.H > 64 || s.W > 64 || s.ph > 8 || s.pw > 8) return false;
  if (s.R == 3) return wgrad_rows_winograd<3, 4, 2, 2>(s, dy, x, dw, db), true;
  if (s.R == 5) return wgrad_rows_winograd<5, 4, 1, 2>(s, dy, x, dw, db), true;
#endif
  (void)s, (void)dy, (void)x, (void)dw, (void)db;
  return false;
}

}  // namespace fm
