// Weight gradient of a stride-1 convolution with few input channels (C <= 4: the first layer of an
// MNIST net), AVX-512:
//
//   dw[k][c][r][t] = sum_{n,p,q} dy[n][k][p][q] * xpad[n][c][p+r][q+t],   db[k] = sum dy[n][k]
//
// Two kernels, both vectorised along the output pixels (every FMA lane useful) and both summing
// into one 16-lane partial buffer per fixed group of 16 images, reduced groups first (in order),
// then lanes, so the result does not depend on the thread count:
//
// - direct ("flat"), used for 3x3: the image is expanded once into S-shifted planes
//   xs[c*S+t][h][q] = xpad[c][h][q+t], so that tap (c,r,t) at the flattened output pixel j = p*Q+q
//   is xs[c*S+t][r*Q + j], contiguous in j. A register tile of KB = 2 channels x R*S taps stays in
//   zmm accumulators across a chunk of 8 images: per 16 pixels 2 dy loads + 9 x loads + 18 FMAs.
//   On the test machine (AMD Zen 4, one 512-bit FMA per cycle) it runs at ~0.33 ns per FMA, ~90% of
//   the FMA peak; dy is prefetched one image ahead, since the hardware prefetcher does not follow
//   the jumps between images (worth ~15% at batch 256, where dy does not fit in L2).
//
// - Winograd along the kernel rows, used for 5x5: split the output rows into tiles of 4
//   (p = 4 tr + i); for a fixed tile row, column q and tap column t, the sum over i is a 1-D
//   correlation with R outputs, Winograd F(R, 4) with A = R + 3 points:
//     dw[.][r][t] = sum_a AT[r][a] M[a][t],  M[a][t] = sum_{n,tr,q} dyT[a][tr][q] * xT[a][t][tr][q],
//     dyT[a] = sum_i G[a][i] dy[4tr+i][q]   (a few adds, per channel k, fused into the main loop),
//     xT[a][t] = sum_b BT[a][b] xpad[4tr+b][q+t]   (once per image, shared by all K channels).
//   The multiply-adds per 4 output rows drop from 4*R*S = 100 to A*S = 40 (+ 15 transform ops).
//   The points are taken in pairs that share their even and odd halves ({0, A-1} are plain dy
//   rows), KB = 2 channels x 2 points x 5 taps per pass over a chunk of 2 images; the bias gradient
//   is the sum of point 1 (G row [1 1 1 1]). The output transform AT runs once, in double. About
//   0.55 ns per FMA (the dy transform's adds and loads ride on the same ports), ~15% faster than the
//   direct kernel on 5x5 at batch 64. Rounding: ~4e-6 of max|dw| against float64 (tested: 1e-4).
//   For 3x3 the same scheme (F(3,4): 18 FMAs + 15 transform ops instead of 36 FMAs per 4 rows)
//   measured ~20% slower than the direct kernel on Zen 4: with one input channel the per-channel dy
//   transform is not amortised, its adds and the extra dy loads cost as much as the FMAs saved,
//   and storing the transformed dy instead is slower still (stores are expensive there).
#include "conv_wgrad1.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common.hpp"
#include "gemm.hpp"

namespace fm {

#if FM_X86
namespace {

constexpr int G = 16;  // images per partial-sum group

// Per-thread scratch that lives across calls (grown when needed, never shrunk), so that a call does
// not map and fault in fresh pages for its buffers: slot i of the calling thread, n floats, 64-byte
// aligned, contents undefined.
float* scratch(int slot, size_t n) {
  static thread_local std::vector<float> bufs[5];
  std::vector<float>& v = bufs[slot];
  if (v.size() < n + 16) v.assign(n + 16, 0.f);
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
}

// The sum of the 16-lane partial sums at v + gi * vsz + off over the groups gi < ng, groups in order
// (lane-wise), then the lanes (a fixed tree): the same order for any thread count.
__attribute__((target("avx512f"))) float group_lane_sum(const float* v, size_t vsz, int ng, size_t off) {
  __m512 a = _mm512_loadu_ps(v + off);
  for (int gi = 1; gi < ng; ++gi) a = _mm512_add_ps(a, _mm512_loadu_ps(v + (size_t)gi * vsz + off));
  return _mm512_reduce_add_ps(a);
}

// =============================================================================================
// direct kernel on S-shifted planes
// =============================================================================================

// Planes are PLANE floats apart (a compile-time stride, so every tap's address is a register plus an
// immediate and 25 taps need no 25 pointer registers; not a multiple of 4 KiB to avoid L1 set
// conflicts).
constexpr int PLANE = 1040;

// One vector of 16 output pixels j0.. for taps r in [R0, R1), all t < S, KB output channels.
// xc: the S planes of one input channel; g0: dy of channel kb (channels PQ floats apart).
template <int R0, int R1, int S, int KB, bool FULL>
__attribute__((target("avx512f"), always_inline)) inline void flat_step(__m512 (&acc)[KB][(R1 - R0) * S],
                                                                       __m512 (&bacc)[KB], const float* xc,
                                                                       const float* g0, int Q, int PQ, int j0,
                                                                       __mmask16 m) {
  __m512 g[KB];
#pragma GCC unroll 4
  for (int j = 0; j < KB; ++j) {
    const float* gp = g0 + (size_t)j * PQ + j0;
    g[j] = FULL ? _mm512_loadu_ps(gp) : _mm512_maskz_loadu_ps(m, gp);
    if (R0 == 0) bacc[j] = _mm512_add_ps(bacc[j], g[j]);
  }
#pragma GCC unroll 8
  for (int r = R0; r < R1; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < S; ++t) {
      const float* xp = xc + (size_t)t * PLANE + (size_t)r * Q + j0;
      __m512 xv = FULL ? _mm512_loadu_ps(xp) : _mm512_maskz_loadu_ps(m, xp);
      if (KB > 1) asm("" : "+v"(xv));  // load once into a register, not once per FMA operand
#pragma GCC unroll 4
      for (int j = 0; j < KB; ++j)
        acc[j][(r - R0) * S + t] = _mm512_fmadd_ps(g[j], xv, acc[j][(r - R0) * S + t]);
    }
}

// One pass over a chunk of nimg images for KB output channels kb.., input channel c, taps r in
// [R0, R1). xs: nimg images of planes (plane floats each); dy: the same images (nimg, K, P*Q).
// vacc [K][C][R*S (+1 for the bias)][16]: the group's lane-wise accumulators.
template <int R, int S, int KB, int R0, int R1>
__attribute__((target("avx512f"))) void flat_pass(const float* xs, size_t plane, int nimg, int C, int c, int kb,
                                                  int Q, int PQ, int K, const float* dy, float* vacc) {
  constexpr int RS = R * S, NT = (R1 - R0) * S;
  __m512 acc[KB][NT], bacc[KB];
#pragma GCC unroll 4
  for (int j = 0; j < KB; ++j) {
    const float* va = vacc + ((size_t)(kb + j) * C + c) * (RS + 1) * 16 + R0 * S * 16;
#pragma GCC unroll 32
    for (int i = 0; i < NT; ++i) acc[j][i] = _mm512_loadu_ps(va + i * 16);
    bacc[j] = _mm512_loadu_ps(vacc + (((size_t)(kb + j) * C + c) * (RS + 1) + RS) * 16);
  }
  for (int n = 0; n < nimg; ++n) {
    const float* xc = xs + n * plane + (size_t)c * S * PLANE;
    const float* g0 = dy + ((size_t)n * K + kb) * PQ;
    // the dy the first pass reads next (the next image, else image 0 of the next channel block),
    // fetched into L1 one line per channel per vector step, well ahead of its use
    const float* gn = n + 1 < nimg ? g0 + (size_t)K * PQ : dy + (size_t)(kb + KB < K ? kb + KB : kb) * PQ;
    int j0 = 0;
    for (; j0 + 16 <= PQ; j0 += 16) {
      if (R0 == 0 && c == 0)
#pragma GCC unroll 4
        for (int j = 0; j < KB; ++j) _mm_prefetch((const char*)(gn + (size_t)j * PQ + j0), _MM_HINT_T0);
      flat_step<R0, R1, S, KB, true>(acc, bacc, xc, g0, Q, PQ, j0, 0xFFFF);
    }
    if (j0 < PQ) flat_step<R0, R1, S, KB, false>(acc, bacc, xc, g0, Q, PQ, j0, (__mmask16)((1u << (PQ - j0)) - 1));
  }
#pragma GCC unroll 4
  for (int j = 0; j < KB; ++j) {
    float* va = vacc + ((size_t)(kb + j) * C + c) * (RS + 1) * 16 + R0 * S * 16;
#pragma GCC unroll 32
    for (int i = 0; i < NT; ++i) _mm512_storeu_ps(va + i * 16, acc[j][i]);
    if (R0 == 0 && c == 0) _mm512_storeu_ps(vacc + (((size_t)(kb + j) * C + c) * (RS + 1) + RS) * 16, bacc[j]);
  }
}

// A chunk of images: every channel block kb (KB channels) and input channel c, the taps split into
// passes of RP kernel rows so that KB * RP * S accumulators fit in the registers.
template <int R, int S, int KB, int RP>
__attribute__((target("avx512f"))) void flat_chunk(const float* xs, size_t plane, int nimg, int C, int Q, int PQ,
                                                   int K, const float* dy, float* vacc) {
  static_assert(R <= 3 * RP, "at most three passes");
  for (int kb = 0; kb < K; kb += KB)
    for (int c = 0; c < C; ++c) {
      flat_pass<R, S, KB, 0, std::min(R, RP)>(xs, plane, nimg, C, c, kb, Q, PQ, K, dy, vacc);
      if constexpr (R > RP) flat_pass<R, S, KB, RP, std::min(R, 2 * RP)>(xs, plane, nimg, C, c, kb, Q, PQ, K, dy, vacc);
      if constexpr (R > 2 * RP) flat_pass<R, S, KB, 2 * RP, R>(xs, plane, nimg, C, c, kb, Q, PQ, K, dy, vacc);
    }
}

using flat_fn = void (*)(const float*, size_t, int, int, int, int, int, const float*, float*);

flat_fn pick_flat(const ConvShape& s) {
  if ((s.H + 2 * s.ph) * s.Q() > PLANE) return nullptr;
  if (s.R == 3 && s.S == 3) return s.K % 2 == 0 ? &flat_chunk<3, 3, 2, 3> : &flat_chunk<3, 3, 1, 3>;
  if (s.R == 5 && s.S == 5) return s.K % 2 == 0 ? &flat_chunk<5, 5, 2, 2> : &flat_chunk<5, 5, 1, 5>;
  return nullptr;
}

__attribute__((target("avx512f"))) void wgrad_flat(const ConvShape& s, flat_fn fn, const float* dy, const float* x,
                                                   float* dw, float* db) {
  constexpr int CHUNK = 8;  // images whose planes stay in L2 while every channel block passes over them
  const int P = s.P(), Q = s.Q(), PQ = P * Q, RS = s.R * s.S, CRS = s.C * RS;
  const size_t plane = (size_t)s.C * s.S * PLANE;
  const size_t vsz = (size_t)s.K * s.C * (RS + 1) * 16;
  const int ng = (s.N + G - 1) / G;
  float* vacc = scratch(0, (size_t)ng * vsz);
#pragma omp parallel
  {
    // (slot 0 is the caller's vacc); cleared when this thread's buffer or geometry changed
    float* xs = scratch(1, (size_t)CHUNK * plane);
    static thread_local const float* last_buf = nullptr;
    static thread_local int last_geo[7];
    const int geo[7] = {s.C, s.H, s.W, s.ph, s.pw, s.S, Q};
    if (xs != last_buf || !std::equal(geo, geo + 7, last_geo)) {
      std::memset(xs, 0, sizeof(float) * CHUNK * plane);
      last_buf = xs;
      std::copy(geo, geo + 7, last_geo);
    }
#pragma omp for schedule(dynamic, 1)
    for (int gi = 0; gi < ng; ++gi) {
      float* va = vacc + (size_t)gi * vsz;
      std::memset(va, 0, vsz * sizeof(float));
      const int n1 = std::min(s.N, (gi + 1) * G);
      for (int c0 = gi * G; c0 < n1; c0 += CHUNK) {
        const int cn = std::min(CHUNK, n1 - c0);
        for (int i = 0; i < cn; ++i) build_planes(s, Q, PLANE, x + (size_t)(c0 + i) * s.C * s.H * s.W, xs + i * plane);
        fn(xs, plane, cn, s.C, Q, PQ, s.K, dy + (size_t)c0 * s.K * PQ, va);
      }
    }
  }
  // reduce: groups in order, then the lanes
  for (int k = 0; k < s.K; ++k) {
    for (int c = 0; c < s.C; ++c)
      for (int i = 0; i < RS; ++i)
        dw[(size_t)k * CRS + c * RS + i] =
            group_lane_sum(vacc, vsz, ng, (((size_t)k * s.C + c) * (RS + 1) + i) * 16);
    if (db) db[k] = group_lane_sum(vacc, vsz, ng, ((size_t)k * s.C * (RS + 1) + RS) * 16);
  }
}

// =============================================================================================
// Winograd along the kernel rows
// =============================================================================================

constexpr int TR = 4;  // dy rows per Winograd tile

template <int R>
struct RowWino;

// F(5, 4): points 0, 1, -1, 2, -2, 1/2, -1/2, inf; the +-1/2 rows of G scaled by 8 (BT rows by 1/8):
// G (8x4) = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 8 4 2 1; 8 -4 2 -1; 0 0 0 1]
// (applied in group_transform). Checked: sum_k AT[j][k] G[k][i] BT[k][t] = [t == i + j] exactly.
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
};

// Row stride of the transformed x planes (a compile-time constant, so that the main loop addresses
// every x operand as one pointer plus an immediate; 4160 bytes, not a multiple of 4 KiB).
constexpr int JMAX = 1040;

struct Geo {
  int P, Q, TRn;  // output rows, columns, tile rows (ceil(P / 4))
  int TRf;        // full tile rows (all 4 dy rows inside the plane): P / 4
  int Qp;         // Q rounded up to 16: lanes per tile row in the transformed x planes
  int Wps;        // row stride of the padded image (Q + S - 1 rounded up to 16)
  int Hx;         // rows of the padded image the transform reads: 4 * TRn + R - 1
  int seg;        // floats of one image in a transformed x row: TRn * Qp
};

// One input channel of one image: xpad (Hx, Wps) zero-padded plane -> xt[a][t][tr*Qp + q] (row
// stride JMAX) = sum_b BT[a][b] xpad[4 tr + b][q + t] for q < Q, zero for Q <= q < Qp.
// xtp: scratch of A * Wps floats.
template <int R, int S>
__attribute__((target("avx512f"))) void x_transform_image(const Geo& g, const float* xpad, float* xtp, float* xt) {
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
// {2 GRP - 1, 2 GRP} that share their even and odd halves.
template <int A, int GRP>
constexpr int point(int j) {
  return GRP == 0 ? (j == 0 ? 0 : A - 1) : 2 * GRP - 1 + j;
}

// The two points of group GRP from 4 dy rows (the rows a group does not need are not loaded).
template <int GRP>
__attribute__((target("avx512f"), always_inline)) inline void group_transform(const __m512 (&g)[4], __m512& u,
                                                                              __m512& w) {
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

// One tile row (4 dy rows, NQV vectors of 16 columns) of the main loop:
//   M[k][point(j)][t] += (G dy[k][4tr..4tr+3][q])[point(j)] * xt[point(j)][t][tr*Qp + q]
// for KB channels (src: dy of channel kb at row 4 tr; channels PQ floats apart), the two points of
// group GRP, all S taps. The last vector of a row loads only the lanes q < Q (the rest are zero);
// FULL: all 4 rows exist (else rows past P are zero).
template <int R, int GRP, int KB, int NQV, bool FULL>
__attribute__((target("avx512f"), always_inline)) inline void wino_tile_row(__m512 (&acc)[KB][2][R],
                                                                            __m512 (&bacc)[KB], const Geo& g,
                                                                            const float* src, const float* xp,
                                                                            int p0, const __mmask16* mq) {
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
        else in[r] = _mm512_maskz_loadu_ps(mq[j], sk + (size_t)r * Q);
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

// One pass of group GRP over nimg images for KB channels: dyk (image 0, channel kb; istride floats
// between images), xt (image i at i * seg); va: accumulators of channel kb ([A][S][16], kstride
// floats between channels); vb: bias accumulators of channel kb (16 floats each), updated by group
// 1. Group 0 (the first to read this dy) also prefetches pfn floats at pf (the dy of the next
// channel block) spread over its tile rows. NQV = ceil(Q / 16).
template <int R, int GRP, int KB, int NQV>
__attribute__((target("avx512f"))) void wino_pass(const Geo& g, const float* dyk, size_t istride, const float* xt,
                                                  int nimg, float* va, size_t kstride, float* vb, const float* pf,
                                                  size_t pfn) {
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
  const size_t pflines = GRP == 0 && pf ? (pfn + 15) / 16 : 0, per = (pflines + g.TRn - 1) / g.TRn;
  for (int i = 0; i < nimg; ++i) {
    const float* src = dyk + i * istride;
    const float* xp = xt + i * g.seg;
    const char* pfi = pflines ? (const char*)(pf + i * istride) : nullptr;
    size_t pl = 0;
    for (int tr = 0; tr < g.TRn; ++tr, src += rowstep, xp += g.Qp) {
      if (GRP == 0)
        for (const size_t e = std::min(pflines, pl + per); pl < e; ++pl) _mm_prefetch(pfi + 64 * pl, _MM_HINT_T0);
      if (tr < g.TRf) wino_tile_row<R, GRP, KB, NQV, true>(acc, bacc, g, src, xp, TR * tr, mq);
      else wino_tile_row<R, GRP, KB, NQV, false>(acc, bacc, g, src, xp, TR * tr, mq);
    }
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

// All transform groups for a block of kn <= KBL channels.
template <int R, int KBL, int NQV, int GRP = 0>
__attribute__((target("avx512f"))) void wino_groups(int kn, const Geo& g, const float* dyk, size_t istride,
                                                    const float* xt, int nimg, float* va, size_t kstride, float* vb,
                                                    const float* pf, size_t pfn) {
  constexpr int NG = RowWino<R>::A / 2;
  if constexpr (GRP < NG) {
    if (kn >= KBL) wino_pass<R, GRP, KBL, NQV>(g, dyk, istride, xt, nimg, va, kstride, vb, pf, pfn);
    else if constexpr (KBL > 1)
      return wino_groups<R, KBL - 1, NQV, GRP>(kn, g, dyk, istride, xt, nimg, va, kstride, vb, pf, pfn);
    wino_groups<R, KBL, NQV, GRP + 1>(kn, g, dyk, istride, xt, nimg, va, kstride, vb, pf, pfn);
  }
}

// R = S taps, up to KBL output channels per pass, CH images per chunk.
template <int R, int KBL, int CH>
__attribute__((target("avx512f"))) void wgrad_rows_winograd(const ConvShape& s, const float* dy, const float* x,
                                                            float* dw, float* db) {
  constexpr int S = R, A = RowWino<R>::A;
  Geo g;
  g.P = s.P();
  g.Q = s.Q();
  g.TRn = (g.P + TR - 1) / TR;
  g.TRf = g.P / TR;
  g.Qp = (g.Q + 15) / 16 * 16;
  g.Wps = (g.Q + S - 1 + 15) / 16 * 16;
  g.Hx = TR * g.TRn + R - 1;
  g.seg = g.TRn * g.Qp;
  const int ch = std::max(1, std::min(CH, JMAX / g.seg));
  const int C = s.C, K = s.K;
  const size_t PQ = (size_t)g.P * g.Q;
  const int ng = (s.N + G - 1) / G;
  const size_t kstride = (size_t)C * A * S * 16;  // floats per channel k in a group's accumulators
  const size_t vsz = (size_t)K * kstride + (size_t)K * 16;
  float* vacc = scratch(0, (size_t)ng * vsz);
  const auto groups = g.Qp == 16 ? &wino_groups<R, KBL, 1> : g.Qp == 32 ? &wino_groups<R, KBL, 2>
                    : g.Qp == 48 ? &wino_groups<R, KBL, 3> : &wino_groups<R, KBL, 4>;
  // channel blocks: KBL channels, the last two balanced (e.g. 3+3+3+3+2+2 rather than ...+3+1)
  std::vector<int> kblk;
  for (int k = 0; k < K;) {
    int n = std::min(KBL, K - k);
    if (K - k > KBL && K - k < 2 * KBL) n = (K - k + 1) / 2;
    kblk.push_back(n);
    k += n;
  }
#pragma omp parallel
  {
    // (slot 0 is the caller's vacc; slot 1 is the flat kernel's planes)
    float* xpad = scratch(2, (size_t)g.Hx * g.Wps);
    float* xtp = scratch(3, (size_t)A * g.Wps + 32);
    float* xt = scratch(4, (size_t)C * A * S * JMAX + (size_t)KBL * 16);
    float* bjunk = xt + (size_t)C * A * S * JMAX;  // bias accumulators of the input channels c > 0
    std::memset(xpad, 0, sizeof(float) * g.Hx * g.Wps);
#pragma omp for schedule(dynamic, 1)
    for (int gi = 0; gi < ng; ++gi) {
      float* va = vacc + (size_t)gi * vsz;
      float* vb = va + (size_t)K * kstride;
      std::memset(va, 0, vsz * sizeof(float));
      const int n1 = std::min(s.N, (gi + 1) * G);
      for (int c0 = gi * G; c0 < n1; c0 += ch) {
        const int cn = std::min(ch, n1 - c0);
        for (int i = 0; i < cn; ++i)
          for (int c = 0; c < C; ++c) {
            const float* xc = x + ((size_t)(c0 + i) * C + c) * s.H * s.W;
            for (int h = 0; h < s.H; ++h)
              std::memcpy(xpad + (size_t)(h + s.ph) * g.Wps + s.pw, xc + (size_t)h * s.W, sizeof(float) * s.W);
            x_transform_image<R, S>(g, xpad, xtp, xt + (size_t)c * A * S * JMAX + (size_t)i * g.seg);
          }
        int kb = 0;
        for (size_t b = 0; b < kblk.size(); ++b) {
          const int kn = kblk[b];
          // prefetch: the next channel block of these images, else the first block of the next chunk
          const float* pf = nullptr;
          size_t pfn = 0;
          if (b + 1 < kblk.size()) pf = dy + ((size_t)c0 * K + kb + kn) * PQ, pfn = (size_t)kblk[b + 1] * PQ;
          else if (c0 + cn < s.N) pf = dy + (size_t)(c0 + cn) * K * PQ, pfn = (size_t)kblk[0] * PQ;
          for (int c = 0; c < C; ++c)
            groups(kn, g, dy + ((size_t)c0 * K + kb) * PQ, (size_t)K * PQ, xt + (size_t)c * A * S * JMAX, cn,
                   va + (size_t)kb * kstride + (size_t)c * A * S * 16, kstride, c == 0 ? vb + (size_t)kb * 16 : bjunk,
                   c == 0 ? pf : nullptr, pfn);
          kb += kn;
        }
      }
    }
  }
  // reduce: groups in order, then the lanes, then the output transform AT (in double)
  std::vector<double> M((size_t)A * S);
  for (int k = 0; k < K; ++k) {
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < A * S; ++i)
        M[i] = group_lane_sum(vacc, vsz, ng, (size_t)k * kstride + ((size_t)c * A * S + i) * 16);
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < S; ++t) {
          double a = 0.0;
          for (int p = 0; p < A; ++p) a += RowWino<R>::AT[r][p] * M[(size_t)p * S + t];
          dw[(((size_t)k * C + c) * R + r) * S + t] = (float)a;
        }
    }
    if (db) db[k] = group_lane_sum(vacc, vsz, ng, (size_t)K * kstride + (size_t)k * 16);
  }
}

}  // namespace
#endif

bool conv2d_backward_weight_first_layer(const ConvShape& s, const float* dy, const float* x, float* dw, float* db) {
#if FM_X86
  if (gemm_isa() != Isa::avx512) return false;
  if (s.N <= 0 || s.sh != 1 || s.sw != 1 || s.C > 4 || s.P() < 1 || s.Q() < 1) return false;
  if (s.R == 5 && s.S == 5) {
    const int TRn = (s.P() + TR - 1) / TR, Qp = (s.Q() + 15) / 16 * 16;
    if (TRn * Qp <= JMAX && Qp <= 64 && s.ph <= 8) return wgrad_rows_winograd<5, 2, 2>(s, dy, x, dw, db), true;
  }
  if (auto fn = pick_flat(s)) return wgrad_flat(s, fn, dy, x, dw, db), true;
#endif
  (void)s, (void)dy, (void)x, (void)dw, (void)db;
  return false;
}

}  // namespace fm
