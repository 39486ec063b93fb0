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
#include <cstdlib>
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

// Per-thread scratch that lives across calls (grown when needed, never shrunk), so that a call does
// not map and fault in fresh pages for its buffers: slot i of the calling thread, n floats, 64-byte
// aligned, zeroed.
static float* scratch(int slot, size_t n) {
  static thread_local std::vector<float> bufs[6];
  std::vector<float>& v = bufs[slot];
  if (v.size() < n + 16) v.assign(n + 16, 0.f);
  float* p = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
  std::memset(p, 0, n * sizeof(float));
  return p;
}

// Row stride of the transformed x planes (a compile-time constant, so that the main loop addresses
// every x operand as one pointer plus an immediate; 4160 bytes, not a multiple of 4 KiB).
constexpr int JMAX = 1040;

struct Geo {
  int P, Q, TRn;  // output rows, columns, tile rows (ceil(P / 4))
  int Qp;         // Q rounded up to 16: lanes per tile row in the transformed x planes
  int Wps;        // row stride of the padded image (Q + S - 1 rounded up to 16)
  int Hx;         // rows of the padded image the transform reads: 4 * TRn + R - 1
  int seg;        // floats of one image in a transformed x row: TRn * Qp
  int TRf;        // full tile rows (all 4 dy rows inside the plane): P / 4
};

// One input channel of one image: xpad (Hx, Wps) zero-padded plane -> xt[a][t][tr*Qp + q] (row
// stride JMAX) = sum_b BT[a][b] xpad[4 tr + b][q + t] for q < Q, zero for Q <= q < Qp.
// xtp: scratch of A * Wps floats.
template <int R, int S>
__attribute__((target("avx512f"), noinline)) static void x_transform_image(const Geo& g, const float* xpad, float* xtp,
                                                                 float* xt) {
  constexpr int A = RowWino<R>::A;
  for (int tr = 0; tr < g.TRn; ++tr) {
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
        _mm512_store_ps(xtp + (size_t)a * g.Wps + w0, o);
      }
    }
    for (int q0 = 0; q0 < g.Qp; q0 += 16) {
      const __mmask16 m = (__mmask16)((1u << std::max(0, std::min(16, g.Q - q0))) - 1);
      for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
        for (int t = 0; t < S; ++t)
          _mm512_store_ps(xt + (size_t)(a * S + t) * JMAX + tr * g.Qp + q0,
                          _mm512_maskz_loadu_ps(m, xtp + (size_t)a * g.Wps + t + q0));
    }
  }
}

// The points of transform group GRP: {0, A-1} (dy rows 0 and 3 as they are), then pairs
// {2 GRP - 1, 2 GRP} that share their even and odd halves (see RowWino::dy_transform).
template <int A, int GRP>
constexpr int point(int j) {
  return GRP == 0 ? (j == 0 ? 0 : A - 1) : 2 * GRP - 1 + j;
}

// The two points of group GRP from 4 dy rows (the rows a group does not need are not loaded).
template <int GRP>
__attribute__((target("avx512f"), always_inline)) static inline void group_transform(const __m512 (&g)[4],
                                                                                     __m512& u, __m512& w) {
  const __m512 four = _mm512_set1_ps(4.f);
  if constexpr (GRP == 0) {
    u = g[0];
    w = g[3];
  } else {
    __m512 e, o;
    if constexpr (GRP == 1) {  // [1 1 1 1], [1 -1 1 -1]
      e = _mm512_add_ps(g[0], g[2]);
      o = _mm512_add_ps(g[1], g[3]);
    } else if constexpr (GRP == 2) {  // [1 2 4 8], [1 -2 4 -8]
      e = _mm512_fmadd_ps(g[2], four, g[0]);
      o = _mm512_fmadd_ps(g[3], four, g[1]);
      o = _mm512_add_ps(o, o);
    } else {  // [8 4 2 1], [8 -4 2 -1]
      e = _mm512_fmadd_ps(g[0], four, g[2]);
      e = _mm512_add_ps(e, e);
      o = _mm512_fmadd_ps(g[1], four, g[3]);
    }
    u = _mm512_add_ps(e, o);
    w = _mm512_sub_ps(e, o);
  }
}

// The main loop, dy transform fused (nothing is stored but the accumulators):
//   M[k][point(j)][t] += sum over the images, tile rows tr and columns q of
//                        (G dy[k][4tr..4tr+3][q])[point(j)] * xt[point(j)][t][tr*Qp + q]
// for KB channels k of dy (dyk: image 0, channel kb; istride floats between images), the two
// points of group GRP, all S taps. va: accumulators of channel kb ([A][S][16], kstride floats
// between channels); vb: bias accumulators of channel kb (16 floats each), updated by group 1
// (a scratch for the input channels c > 0).
// Lanes past the end of a dy row read the next row (finite values) and meet zeros in xt; the bias
// masks them; rows past the end of the plane (p*Q + q >= P*Q) are not read.
template <int R, int GRP, int KB, int NQV, bool FULL>
__attribute__((target("avx512f"), always_inline)) static inline void wino_tile_row(
    __m512 (&acc)[KB][2][R], __m512 (&bacc)[KB], const Geo& g, const float* src, const float* xp, int p0,
    const __mmask16* mq) {
  constexpr int S = R, A = RowWino<R>::A;
  constexpr int pa = point<A, GRP>(0), pb = point<A, GRP>(1);
  constexpr bool NEED[4] = {true, GRP != 0, GRP != 0, true};
  const int Q = g.Q;
  const size_t PQs = (size_t)g.P * g.Q;
#pragma GCC unroll 4
  for (int j = 0; j < NQV; ++j) {
    const int q0 = 16 * j;
    __m512 u[KB], w[KB];
#pragma GCC unroll 8
    for (int k = 0; k < KB; ++k) {
      const float* sk = src + k * PQs + q0;
      __m512 in[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        if (!NEED[r] || (!FULL && p0 + r >= g.P)) in[r] = _mm512_setzero_ps();
        else if (j < NQV - 1) in[r] = _mm512_loadu_ps(sk + (size_t)r * Q);
#ifdef EXP_NOMASK
        else in[r] = _mm512_loadu_ps(sk + (size_t)r * Q);
#else
        else in[r] = _mm512_maskz_loadu_ps(mq[j], sk + (size_t)r * Q);  // lanes q >= Q: zero, not read
#endif
      }
      group_transform<GRP>(in, u[k], w[k]);
      asm("" : "+v"(u[k]), "+v"(w[k]));  // keep in registers: no reload per FMA operand
      if (GRP == 1) bacc[k] = _mm512_add_ps(bacc[k], u[k]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < S; ++t) {
      __m512 xa = _mm512_load_ps(xp + q0 + (pa * S + t) * JMAX);
      __m512 xb = _mm512_load_ps(xp + q0 + (pb * S + t) * JMAX);
      if (KB > 1) asm("" : "+v"(xa), "+v"(xb));  // one load each, not one per FMA operand
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) {
        acc[k][0][t] = _mm512_fmadd_ps(u[k], xa, acc[k][0][t]);
        acc[k][1][t] = _mm512_fmadd_ps(w[k], xb, acc[k][1][t]);
      }
    }
  }
}

// NQV = ceil(Q / 16) vectors per tile row (the loop over them is unrolled).
template <int R, int GRP, int KB, int NQV>
__attribute__((target("avx512f"))) static void wino_pass(const Geo& g, const float* dyk, size_t istride,
                                                         const float* xt, int nimg, float* va, size_t kstride,
                                                         float* vb) {
  constexpr int S = R, A = RowWino<R>::A;
  constexpr int pa = point<A, GRP>(0), pb = point<A, GRP>(1);
  __mmask16 mq[NQV];
  for (int j = 0; j < NQV; ++j) mq[j] = (__mmask16)((1u << std::max(0, std::min(16, g.Q - 16 * j))) - 1);
  __m512 acc[KB][2][S], bacc[KB];
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k) {
#pragma GCC unroll 8
    for (int t = 0; t < S; ++t) {
      acc[k][0][t] = _mm512_load_ps(va + k * kstride + (pa * S + t) * 16);
      acc[k][1][t] = _mm512_load_ps(va + k * kstride + (pb * S + t) * 16);
    }
    bacc[k] = GRP == 1 ? _mm512_load_ps(vb + k * 16) : _mm512_setzero_ps();
  }
  const size_t rowstep = (size_t)TR * g.Q;
  for (int i = 0; i < nimg; ++i) {
    const float* src = dyk + i * istride;
    const float* xp = xt + i * g.seg;
    int tr = 0;
    for (; tr < g.TRf; ++tr, src += rowstep, xp += g.Qp)
      wino_tile_row<R, GRP, KB, NQV, true>(acc, bacc, g, src, xp, TR * tr, mq);
    for (; tr < g.TRn; ++tr, src += rowstep, xp += g.Qp)
      wino_tile_row<R, GRP, KB, NQV, false>(acc, bacc, g, src, xp, TR * tr, mq);
  }
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k) {
#pragma GCC unroll 8
    for (int t = 0; t < S; ++t) {
      _mm512_store_ps(va + k * kstride + (pa * S + t) * 16, acc[k][0][t]);
      _mm512_store_ps(va + k * kstride + (pb * S + t) * 16, acc[k][1][t]);
    }
    if (GRP == 1) _mm512_store_ps(vb + k * 16, bacc[k]);
  }
}

// 8-lane (ymm) copies of the above (AVX-512VL masks): on AMD Zen 4 a 32-byte load splits a cache
// line less often than a 64-byte one.
// The two points of group GRP from 4 dy rows (the rows a group does not need are not loaded).
template <int GRP>
__attribute__((target("avx512f,avx512vl,fma"), always_inline)) static inline void group_transform8(const __m256 (&g)[4],
                                                                                     __m256& u, __m256& w) {
  const __m256 four = _mm256_set1_ps(4.f);
  if constexpr (GRP == 0) {
    u = g[0];
    w = g[3];
  } else {
    __m256 e, o;
    if constexpr (GRP == 1) {  // [1 1 1 1], [1 -1 1 -1]
      e = _mm256_add_ps(g[0], g[2]);
      o = _mm256_add_ps(g[1], g[3]);
    } else if constexpr (GRP == 2) {  // [1 2 4 8], [1 -2 4 -8]
      e = _mm256_fmadd_ps(g[2], four, g[0]);
      o = _mm256_fmadd_ps(g[3], four, g[1]);
      o = _mm256_add_ps(o, o);
    } else {  // [8 4 2 1], [8 -4 2 -1]
      e = _mm256_fmadd_ps(g[0], four, g[2]);
      e = _mm256_add_ps(e, e);
      o = _mm256_fmadd_ps(g[1], four, g[3]);
    }
    u = _mm256_add_ps(e, o);
    w = _mm256_sub_ps(e, o);
  }
}

template <int R, int GRP, int KB, int NQV, bool FULL>
__attribute__((target("avx512f,avx512vl,fma"), always_inline)) static inline void wino_tile_row8(
    __m256 (&acc)[KB][2][R], __m256 (&bacc)[KB], const Geo& g, const float* src, const float* xp, int p0,
    const __mmask8* mq) {
  constexpr int S = R, A = RowWino<R>::A;
  constexpr int pa = point<A, GRP>(0), pb = point<A, GRP>(1);
  constexpr bool NEED[4] = {true, GRP != 0, GRP != 0, true};
  const int Q = g.Q;
  const size_t PQs = (size_t)g.P * g.Q;
#pragma GCC unroll 4
  for (int j = 0; j < NQV; ++j) {
    const int q0 = 8 * j;
    __m256 u[KB], w[KB];
#pragma GCC unroll 8
    for (int k = 0; k < KB; ++k) {
      const float* sk = src + k * PQs + q0;
      __m256 in[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        if (!NEED[r] || (!FULL && p0 + r >= g.P)) in[r] = _mm256_setzero_ps();
        else if (j < NQV - 1) in[r] = _mm256_loadu_ps(sk + (size_t)r * Q);
        else in[r] = _mm256_maskz_loadu_ps(mq[j], sk + (size_t)r * Q);  // lanes q >= Q: zero, not read
      }
      group_transform8<GRP>(in, u[k], w[k]);
      asm("" : "+v"(u[k]), "+v"(w[k]));  // keep in registers: no reload per FMA operand
      if (GRP == 1) bacc[k] = _mm256_add_ps(bacc[k], u[k]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < S; ++t) {
      __m256 xa = _mm256_load_ps(xp + q0 + (pa * S + t) * JMAX);
      __m256 xb = _mm256_load_ps(xp + q0 + (pb * S + t) * JMAX);
      if (KB > 1) asm("" : "+v"(xa), "+v"(xb));  // one load each, not one per FMA operand
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) {
        acc[k][0][t] = _mm256_fmadd_ps(u[k], xa, acc[k][0][t]);
        acc[k][1][t] = _mm256_fmadd_ps(w[k], xb, acc[k][1][t]);
      }
    }
  }
}

// NQV = ceil(Q / 16) vectors per tile row (the loop over them is unrolled).
template <int R, int GRP, int KB, int NQV>
__attribute__((target("avx512f,avx512vl,fma"))) static void wino_pass8(const Geo& g, const float* dyk, size_t istride,
                                                         const float* xt, int nimg, float* va, size_t kstride,
                                                         float* vb) {
  constexpr int S = R, A = RowWino<R>::A;
  constexpr int pa = point<A, GRP>(0), pb = point<A, GRP>(1);
  __mmask8 mq[NQV];
  for (int j = 0; j < NQV; ++j) mq[j] = (__mmask8)((1u << std::max(0, std::min(8, g.Q - 8 * j))) - 1);
  __m256 acc[KB][2][S], bacc[KB];
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k) {
#pragma GCC unroll 8
    for (int t = 0; t < S; ++t) {
      acc[k][0][t] = _mm256_load_ps(va + k * kstride + (pa * S + t) * 16);
      acc[k][1][t] = _mm256_load_ps(va + k * kstride + (pb * S + t) * 16);
    }
    bacc[k] = GRP == 1 ? _mm256_load_ps(vb + k * 16) : _mm256_setzero_ps();
  }
  const size_t rowstep = (size_t)TR * g.Q;
  for (int i = 0; i < nimg; ++i) {
    const float* src = dyk + i * istride;
    const float* xp = xt + i * g.seg;
    int tr = 0;
    for (; tr < g.TRf; ++tr, src += rowstep, xp += g.Qp)
      wino_tile_row8<R, GRP, KB, NQV, true>(acc, bacc, g, src, xp, TR * tr, mq);
    for (; tr < g.TRn; ++tr, src += rowstep, xp += g.Qp)
      wino_tile_row8<R, GRP, KB, NQV, false>(acc, bacc, g, src, xp, TR * tr, mq);
  }
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k) {
#pragma GCC unroll 8
    for (int t = 0; t < S; ++t) {
      _mm256_store_ps(va + k * kstride + (pa * S + t) * 16, acc[k][0][t]);
      _mm256_store_ps(va + k * kstride + (pb * S + t) * 16, acc[k][1][t]);
    }
    if (GRP == 1) _mm256_store_ps(vb + k * 16, bacc[k]);
  }
}

// All transform groups for a block of kn <= KBL channels.
template <int R, int KBL, int NQV, bool Y8 = false, int GRP = 0>
__attribute__((target("avx512f,avx512vl,fma"))) static void wino_groups(int kn, const Geo& g, const float* dyk, size_t istride,
                                                           const float* xt, int nimg, float* va, size_t kstride,
                                                           float* vb) {
  constexpr int NG = RowWino<R>::A / 2;
  if constexpr (GRP < NG) {
    if (kn >= KBL) {
      if constexpr (Y8) wino_pass8<R, GRP, KBL, 2 * NQV>(g, dyk, istride, xt, nimg, va, kstride, vb);
      else wino_pass<R, GRP, KBL, NQV>(g, dyk, istride, xt, nimg, va, kstride, vb);
    } else if constexpr (KBL > 1) {
      return wino_groups<R, KBL - 1, NQV, Y8, GRP>(kn, g, dyk, istride, xt, nimg, va, kstride, vb);
    }
    wino_groups<R, KBL, NQV, Y8, GRP + 1>(kn, g, dyk, istride, xt, nimg, va, kstride, vb);
  }
}

// ---- variant: dy transformed once into aligned planes, then a plain register-tiled main loop ----

// One output channel of one image: dyk (P,Q) -> dst[a][tr*Qp + q] (row stride JMAX), zero for
// q >= Q; bacc += the a = 1 point.
template <int R, int NQV>
__attribute__((target("avx512f"))) static void dy_transform_image(const Geo& g, const float* dyk, float* dst,
                                                                  __m512& bacc, const __mmask16* mq) {
  constexpr int A = RowWino<R>::A;
  const int Q = g.Q;
  for (int tr = 0; tr < g.TRn; ++tr) {
    const int p0 = TR * tr;
    const float* src = dyk + (size_t)p0 * Q;
#pragma GCC unroll 4
    for (int j = 0; j < NQV; ++j) {
      __m512 in[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        if (p0 + r >= g.P) in[r] = _mm512_setzero_ps();
        else if (j < NQV - 1) in[r] = _mm512_loadu_ps(src + (size_t)r * Q + 16 * j);
        else in[r] = _mm512_maskz_loadu_ps(mq[j], src + (size_t)r * Q + 16 * j);
      }
      __m512 t[A];
      RowWino<R>::dy_transform(in, t);
      bacc = _mm512_add_ps(bacc, t[1]);
      float* d = dst + tr * g.Qp + 16 * j;
#pragma GCC unroll 8
      for (int a = 0; a < A; ++a) _mm512_store_ps(d + a * JMAX, t[a]);
    }
  }
}

// M[k][a][t] += sum_j dyT[k][a][j] * xT[a][t][j] for KB channels, AB points a0.., S taps.
// dyt: [k][A][JMAX], xt: [A][S][JMAX]; va: accumulators of channel kb ([A][S][16]).
template <int KB, int AB, int S, int A>
__attribute__((target("avx512f"))) static void stored_pass(const float* dyt, const float* xt, int a0, int nv,
                                                           float* va, size_t kstride) {
  __m512 acc[KB][AB][S];
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 8
    for (int a = 0; a < AB; ++a)
#pragma GCC unroll 8
      for (int t = 0; t < S; ++t) acc[k][a][t] = _mm512_load_ps(va + k * kstride + ((a0 + a) * S + t) * 16);
  const float* dp = dyt + a0 * JMAX;
  const float* xp = xt + a0 * S * JMAX;
  for (int v = 0; v < nv; ++v, dp += 16, xp += 16) {
#pragma GCC unroll 8
    for (int a = 0; a < AB; ++a) {
      __m512 xv[S];
#pragma GCC unroll 8
      for (int t = 0; t < S; ++t) {
        xv[t] = _mm512_load_ps(xp + (a * S + t) * JMAX);
        if (KB > 1) asm("" : "+v"(xv[t]));
      }
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) {
        __m512 d = _mm512_load_ps(dp + (k * A + a) * JMAX);
        asm("" : "+v"(d));
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
__attribute__((target("avx512f"))) static void stored_pass_n(int kn, const float* dyt, const float* xt, int a0,
                                                             int nv, float* va, size_t kstride) {
  if constexpr (KBL > 1)
    if (kn < KBL) return stored_pass_n<KBL - 1, AB, S, A>(kn, dyt, xt, a0, nv, va, kstride);
  stored_pass<KBL, AB, S, A>(dyt, xt, a0, nv, va, kstride);
}

// R = S taps, up to KBL output channels per pass, up to CH images per chunk.
// STORED: dy transformed into planes first (stored_pass, KBS channels x AB points per pass), else
// fused (wino_groups, KBL channels per pass).
template <int R, int KBL, int CH, bool STORED = false, int KBS = 4, int AB = 2, bool Y8 = false>
__attribute__((target("avx512f"))) static void wgrad_rows_winograd(const ConvShape& s, const float* dy,
                                                                   const float* x, float* dw, float* db) {
  constexpr int S = R, A = RowWino<R>::A;
  Geo g;
  g.P = s.P();
  g.Q = s.Q();
  g.TRn = (g.P + TR - 1) / TR;
  g.Qp = (g.Q + 15) / 16 * 16;
  g.Wps = (g.Q + S - 1 + 15) / 16 * 16;
  g.Hx = TR * g.TRn + R - 1;
  g.seg = g.TRn * g.Qp;
  g.TRf = g.P / TR;
  const int ch = std::max(1, std::min(CH, JMAX / g.seg));
  const int C = s.C, K = s.K;
  const size_t PQ = (size_t)g.P * g.Q;
  constexpr int G = 16;  // images per partial-sum group
  const int ng = (s.N + G - 1) / G;
  const size_t kstride = (size_t)C * A * S * 16;  // floats per channel k in a group's accumulators
  const size_t vsz = (size_t)K * kstride + (size_t)K * 16;
  struct { float* p; } vacc{scratch(0, (size_t)ng * vsz)};
  const auto groups = g.Qp == 16 ? &wino_groups<R, KBL, 1, Y8> : g.Qp == 32 ? &wino_groups<R, KBL, 2, Y8>
                    : g.Qp == 48 ? &wino_groups<R, KBL, 3, Y8> : &wino_groups<R, KBL, 4, Y8>;
  // channel blocks: KBL channels, the last two blocks balanced (16 = 3+3+3+3+2+2 rather than +1)
  std::vector<int> kblk;
  for (int k = 0; k < K;) {
    int n = std::min(KBL, K - k);
    if (K - k > KBL && K - k < 2 * KBL) n = (K - k + 1) / 2;
    kblk.push_back(n);
    k += n;
  }
#pragma omp parallel
  {
    // (slot 0 is the caller's vacc; the caller is also OpenMP thread 0)
    struct { float* p; } xpad{scratch(1, (size_t)g.Hx * g.Wps)}, xtp{scratch(2, (size_t)A * g.Wps + 32)};
    struct { float* p; } xt{scratch(3, (size_t)C * A * S * JMAX)}, bscratch{scratch(4, (size_t)KBL * 16)};
    struct { float* p; } dyt{scratch(5, STORED ? (size_t)KBS * A * JMAX : 0)};
    __mmask16 mq[4];
    for (int j = 0; j < 4; ++j) mq[j] = (__mmask16)((1u << std::max(0, std::min(16, g.Q - 16 * j))) - 1);
#pragma omp for schedule(dynamic, 1)
    for (int gi = 0; gi < ng; ++gi) {
      float* va = vacc.p + (size_t)gi * vsz;
      float* vb = va + (size_t)K * kstride;
      const int n1 = std::min(s.N, (gi + 1) * G);
      for (int c0 = gi * G; c0 < n1; c0 += ch) {
        const int cn = std::min(ch, n1 - c0);
        for (int i = 0; i < cn; ++i)
          for (int c = 0; c < C; ++c) {
            const float* xc = x + ((size_t)(c0 + i) * C + c) * s.H * s.W;
            for (int h = 0; h < s.H; ++h)
              std::memcpy(xpad.p + (size_t)(h + s.ph) * g.Wps + s.pw, xc + (size_t)h * s.W, sizeof(float) * s.W);
            x_transform_image<R, S>(g, xpad.p, xtp.p, xt.p + (size_t)c * A * S * JMAX + (size_t)i * g.seg);
          }
        if constexpr (STORED) {
          const int nv = cn * g.seg / 16;
          for (int kb = 0; kb < K; kb += KBS) {
            const int kn = std::min(KBS, K - kb);
            for (int kk = 0; kk < kn; ++kk) {
              __m512 bacc = _mm512_load_ps(vb + (size_t)(kb + kk) * 16);
              for (int i = 0; i < cn; ++i) {
                const float* dyk = dy + ((size_t)(c0 + i) * K + kb + kk) * PQ;
                float* dst = dyt.p + (size_t)kk * A * JMAX + (size_t)i * g.seg;
                switch (g.Qp / 16) {
                  case 1: dy_transform_image<R, 1>(g, dyk, dst, bacc, mq); break;
                  case 2: dy_transform_image<R, 2>(g, dyk, dst, bacc, mq); break;
                  case 3: dy_transform_image<R, 3>(g, dyk, dst, bacc, mq); break;
                  default: dy_transform_image<R, 4>(g, dyk, dst, bacc, mq); break;
                }
              }
              _mm512_store_ps(vb + (size_t)(kb + kk) * 16, bacc);
            }
            for (int c = 0; c < C; ++c)
              for (int a0 = 0; a0 < A; a0 += AB)
                stored_pass_n<KBS, AB, S, A>(kn, dyt.p, xt.p + (size_t)c * A * S * JMAX, a0, nv,
                                             va + (size_t)kb * kstride + (size_t)c * A * S * 16, kstride);
          }
          continue;
        }
        int kb = 0;
        for (int kn : kblk) {
          for (int c = 0; c < C; ++c)
            groups(kn, g, dy + ((size_t)c0 * K + kb) * PQ, (size_t)K * PQ,
                                xt.p + (size_t)c * A * S * JMAX, cn, va + (size_t)kb * kstride + (size_t)c * A * S * 16,
                                kstride, c == 0 ? vb + (size_t)kb * 16 : bscratch.p);
          kb += kn;
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
  const int TRn = (s.P() + TR - 1) / TR, Qp = (s.Q() + 15) / 16 * 16;
  if (TRn * Qp > JMAX || Qp > 64) return false;
  static const int var = getenv("FM_WV") ? atoi(getenv("FM_WV")) : 0;
  if (s.R == 3 && var == 1) return wgrad_rows_winograd<3, 3, 2, true, 4, 2>(s, dy, x, dw, db), true;
  if (s.R == 3 && var == 2) return wgrad_rows_winograd<3, 3, 2, true, 8, 1>(s, dy, x, dw, db), true;
  if (s.R == 3 && var == 3) return wgrad_rows_winograd<3, 3, 1, true, 4, 2>(s, dy, x, dw, db), true;
  if (s.R == 5 && var == 1) return wgrad_rows_winograd<5, 2, 2, true, 4, 1>(s, dy, x, dw, db), true;
  if (s.R == 5 && var == 2) return wgrad_rows_winograd<5, 2, 1, true, 4, 1>(s, dy, x, dw, db), true;
  if (s.R == 3 && var == 8) return wgrad_rows_winograd<3, 3, 1, false, 4, 2, true>(s, dy, x, dw, db), true;
  if (s.R == 5 && var == 8) return wgrad_rows_winograd<5, 2, 1, false, 4, 2, true>(s, dy, x, dw, db), true;
  if (s.R == 3 && var == 9) return wgrad_rows_winograd<3, 3, 2, false, 4, 2, true>(s, dy, x, dw, db), true;
  if (s.R == 5 && var == 9) return wgrad_rows_winograd<5, 2, 2, false, 4, 2, true>(s, dy, x, dw, db), true;
  if (s.R == 3) return wgrad_rows_winograd<3, 3, 1>(s, dy, x, dw, db), true;
  if (s.R == 5) return wgrad_rows_winograd<5, 2, 1>(s, dy, x, dw, db), true;
#endif
  (void)s, (void)dy, (void)x, (void)dw, (void)db;
  return false;
}

}  // namespace fm
