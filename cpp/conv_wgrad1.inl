// First-layer weight-gradient kernels of one instruction set (see conv_wgrad1.cpp). Pasted by
// simd/instantiate.hpp into namespace fm::<isa>, where S is that ISA's traits type
// (simd/simd.hpp); includes nothing itself. The partial sums hold S::W lanes per entry.

using F = S::V;
constexpr int W = S::W;
// Vector registers of this ISA: the register tiles are sized to fit (16 ymm on AVX2; 32 zmm on
// AVX-512, 32 q registers on NEON).
constexpr int NREG = W == 8 ? 16 : 32;

// The sum of the W-lane partial sums at v + gi * vsz + off over the groups gi < ng, groups in order
// (lane-wise), then the lanes (reduce_add's fixed tree): the same order for any thread count.
float group_lane_sum(const float* v, size_t vsz, int ng, size_t off) {
  F a = S::load(v + off);
  for (int gi = 1; gi < ng; ++gi) a = S::add(a, S::load(v + (size_t)gi * vsz + off));
  return S::reduce_add(a);
}

// =============================================================================================
// direct kernel on SW-shifted planes
// =============================================================================================

// One vector of W output pixels j0.. for taps r in [R0, R1), all t < SW, KB output channels.
// xc: the SW planes of one input channel; g0: dy of channel kb (channels PQ floats apart); n: the
// lanes inside the plane (W when FULL).
template <int R0, int R1, int SW, int KB, bool FULL>
FM_INLINE void flat_step(F (&acc)[KB][(R1 - R0) * SW], F (&bacc)[KB], const float* xc, const float* g0, int Q,
                         int PQ, int j0, int n) {
  F g[KB];
#pragma GCC unroll 4
  for (int j = 0; j < KB; ++j) {
    const float* gp = g0 + (size_t)j * PQ + j0;
    g[j] = FULL ? S::load(gp) : S::load_n(gp, n);
    if (R0 == 0) bacc[j] = S::add(bacc[j], g[j]);
  }
#pragma GCC unroll 8
  for (int r = R0; r < R1; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < SW; ++t) {
      const float* xp = xc + (size_t)t * PLANE + (size_t)r * Q + j0;
      F xv = FULL ? S::load(xp) : S::load_n(xp, n);
      if (KB > 1) FM_WG1_KEEP(xv);  // load once into a register, not once per FMA operand
#pragma GCC unroll 4
      for (int j = 0; j < KB; ++j) acc[j][(r - R0) * SW + t] = S::fma(g[j], xv, acc[j][(r - R0) * SW + t]);
    }
}

// One pass over a chunk of nimg images for KB output channels kb.., input channel c, taps r in
// [R0, R1). xs: nimg images of planes (plane floats each); dy: the same images (nimg, K, P*Q).
// vacc [K][C][R*SW (+1 for the bias)][W]: the group's lane-wise accumulators.
template <int R, int SW, int KB, int R0, int R1>
void flat_pass(const float* xs, size_t plane, int nimg, int C, int c, int kb, int Q, int PQ, int K, const float* dy,
               float* vacc) {
  constexpr int RS = R * SW, NT = (R1 - R0) * SW;
  F acc[KB][NT], bacc[KB];
#pragma GCC unroll 4
  for (int j = 0; j < KB; ++j) {
    const float* va = vacc + ((size_t)(kb + j) * C + c) * (RS + 1) * W + R0 * SW * W;
#pragma GCC unroll 32
    for (int i = 0; i < NT; ++i) acc[j][i] = S::load(va + i * W);
    bacc[j] = S::load(vacc + (((size_t)(kb + j) * C + c) * (RS + 1) + RS) * W);
  }
  for (int n = 0; n < nimg; ++n) {
    const float* xc = xs + n * plane + (size_t)c * SW * PLANE;
    const float* g0 = dy + ((size_t)n * K + kb) * PQ;
    // the dy the first pass reads next (the next image, else image 0 of the next channel block),
    // fetched into L1 one line per channel per 16 pixels, well ahead of its use
    const float* gn = n + 1 < nimg ? g0 + (size_t)K * PQ : dy + (size_t)(kb + KB < K ? kb + KB : kb) * PQ;
    int j0 = 0;
    for (; j0 + W <= PQ; j0 += W) {
      if (R0 == 0 && c == 0 && j0 % 16 == 0)
#pragma GCC unroll 4
        for (int j = 0; j < KB; ++j) __builtin_prefetch(gn + (size_t)j * PQ + j0, 0, 3);
      flat_step<R0, R1, SW, KB, true>(acc, bacc, xc, g0, Q, PQ, j0, W);
    }
    if (j0 < PQ) flat_step<R0, R1, SW, KB, false>(acc, bacc, xc, g0, Q, PQ, j0, PQ - j0);
  }
#pragma GCC unroll 4
  for (int j = 0; j < KB; ++j) {
    float* va = vacc + ((size_t)(kb + j) * C + c) * (RS + 1) * W + R0 * SW * W;
#pragma GCC unroll 32
    for (int i = 0; i < NT; ++i) S::store(va + i * W, acc[j][i]);
    if (R0 == 0 && c == 0) S::store(vacc + (((size_t)(kb + j) * C + c) * (RS + 1) + RS) * W, bacc[j]);
  }
}

// A chunk of images: every channel block kb (KB channels) and input channel c, the taps split into
// passes of RP kernel rows so that KB * RP * SW accumulators fit in the registers.
template <int R, int SW, int KB, int RP>
void flat_chunk(const float* xs, size_t plane, int nimg, int C, int Q, int PQ, int K, const float* dy, float* vacc) {
  static_assert(R <= 3 * RP, "at most three passes");
  for (int kb = 0; kb < K; kb += KB)
    for (int c = 0; c < C; ++c) {
      flat_pass<R, SW, KB, 0, std::min(R, RP)>(xs, plane, nimg, C, c, kb, Q, PQ, K, dy, vacc);
      if constexpr (R > RP) flat_pass<R, SW, KB, RP, std::min(R, 2 * RP)>(xs, plane, nimg, C, c, kb, Q, PQ, K, dy, vacc);
      if constexpr (R > 2 * RP) flat_pass<R, SW, KB, 2 * RP, R>(xs, plane, nimg, C, c, kb, Q, PQ, K, dy, vacc);
    }
}

using flat_fn = void (*)(const float*, size_t, int, int, int, int, int, const float*, float*);

// Register tiles: 2 channels x all 3x3 taps (18 accumulators) / 2 channels x 2 rows of 5x5 taps
// (20) with 32 registers; one channel (9 / 10) with 16.
flat_fn pick_flat(const ConvShape& s) {
  constexpr int KB = NREG >= 32 ? 2 : 1;
  if ((s.H + 2 * s.ph) * s.Q() > PLANE) return nullptr;
  if (s.R == 3 && s.S == 3) return s.K % KB == 0 ? &flat_chunk<3, 3, KB, 3> : &flat_chunk<3, 3, 1, 3>;
  if (s.R == 5 && s.S == 5) return s.K % KB == 0 ? &flat_chunk<5, 5, KB, 2> : &flat_chunk<5, 5, 1, 5>;
  return nullptr;
}

void wgrad_flat(const ConvShape& s, flat_fn fn, const float* dy, const float* x, float* dw, float* db) {
  const int P = s.P(), Q = s.Q(), PQ = P * Q, RS = s.R * s.S, CRS = s.C * RS;
  const size_t plane = (size_t)s.C * s.S * PLANE;
  const size_t vsz = (size_t)s.K * s.C * (RS + 1) * W;
  const int ng = (s.N + G - 1) / G;
  float* vacc = scratch(0, (size_t)ng * vsz);
#pragma omp parallel
  {
    float* xs = plane_scratch(s, Q, (size_t)CHUNK * plane);
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
        dw[(size_t)k * CRS + c * RS + i] = group_lane_sum(vacc, vsz, ng, (((size_t)k * s.C + c) * (RS + 1) + i) * W);
    if (db) db[k] = group_lane_sum(vacc, vsz, ng, ((size_t)k * s.C * (RS + 1) + RS) * W);
  }
}

// =============================================================================================
// Winograd along the kernel rows
// =============================================================================================

// One input channel of one image: xpad (Hx, Wps) zero-padded plane -> xt[a][t][tr*Qp + q] (row
// stride JMAX) = sum_b BT[a][b] xpad[4 tr + b][q + t] for q < Q, zero for Q <= q < Qp.
// xtp: scratch of A * Wps floats.
template <int R, int SW>
void x_transform_image(const Geo& g, const float* xpad, float* xtp, float* xt) {
  constexpr int A = RowWino<R>::A;
  for (int tr = 0; tr < g.TRn; ++tr) {
    for (int w0 = 0; w0 < g.Wps; w0 += W) {
      F d[A];
#pragma GCC unroll 8
      for (int b = 0; b < A; ++b) d[b] = S::load(xpad + (size_t)(TR * tr + b) * g.Wps + w0);
#pragma GCC unroll 8
      for (int a = 0; a < A; ++a) {
        F o = S::zero();
        bool first = true;
#pragma GCC unroll 8
        for (int b = 0; b < A; ++b) {
          const float c = RowWino<R>::BT[a][b];
          if (c == 0.f) continue;
          if (first) o = c == 1.f ? d[b] : S::mul(S::set1(c), d[b]);
          else o = S::fma(S::set1(c), d[b], o);
          first = false;
        }
        S::store(xtp + (size_t)a * g.Wps + w0, o);
      }
    }
    for (int q0 = 0; q0 < g.Qp; q0 += W) {
      const int n = std::max(0, std::min(W, g.Q - q0));
      for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
        for (int t = 0; t < SW; ++t)
          S::store(xt + (size_t)(a * SW + t) * JMAX + tr * g.Qp + q0, S::load_n(xtp + (size_t)a * g.Wps + t + q0, n));
    }
  }
}

// The two points of group GRP from 4 dy rows (the rows a group does not need are not loaded).
template <int GRP>
FM_INLINE void group_transform(const F (&g)[4], F& u, F& w) {
  const F four = S::set1(4.f);
  if constexpr (GRP == 0) {
    u = g[0];
    w = g[3];
  } else {
    F e, o;
    if constexpr (GRP == 1) {  // [1 1 1 1], [1 -1 1 -1]
      e = S::add(g[0], g[2]);
      o = S::add(g[1], g[3]);
    } else if constexpr (GRP == 2) {  // [1 2 4 8], [1 -2 4 -8]
      e = S::fma(g[2], four, g[0]);
      o = S::fma(g[3], four, g[1]);
      o = S::add(o, o);
    } else {  // [8 4 2 1], [8 -4 2 -1]
      e = S::fma(g[0], four, g[2]);
      e = S::add(e, e);
      o = S::fma(g[1], four, g[3]);
    }
    u = S::add(e, o);
    w = S::sub(e, o);
  }
}

// One tile row (4 dy rows, NQV vectors of W columns) of the main loop:
//   M[k][point(j)][t] += (G dy[k][4tr..4tr+3][q])[point(j)] * xt[point(j)][t][tr*Qp + q]
// for KB channels (src: dy of channel kb at row 4 tr; channels PQ floats apart), the two points of
// group GRP, all SW taps. The last vector of a row loads only its ql lanes q < Q (the rest are zero);
// FULL: all 4 rows exist (else rows past P are zero).
template <int R, int GRP, int KB, int NQV, bool FULL>
FM_INLINE void wino_tile_row(F (&acc)[KB][2][R], F (&bacc)[KB], const Geo& g, const float* src, const float* xp,
                             int p0, int ql) {
  constexpr int SW = R, A = RowWino<R>::A;
  constexpr int pa = point<A, GRP>(0), pb = point<A, GRP>(1);
  constexpr bool NEED[4] = {true, GRP != 0, GRP != 0, true};
  const int Q = g.Q;
  const size_t PQs = (size_t)g.P * g.Q;
#pragma GCC unroll 4
  for (int j = 0; j < NQV; ++j) {
    const int q0 = W * j;
    F u[KB], w[KB];
#pragma GCC unroll 8
    for (int k = 0; k < KB; ++k) {
      const float* sk = src + k * PQs + q0;
      F in[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        if (!NEED[r] || (!FULL && p0 + r >= g.P)) in[r] = S::zero();
        else if (j < NQV - 1) in[r] = S::load(sk + (size_t)r * Q);
        else in[r] = S::load_n(sk + (size_t)r * Q, ql);
      }
      group_transform<GRP>(in, u[k], w[k]);
      FM_WG1_KEEP(u[k]);  // keep in registers: no reload per FMA operand
      FM_WG1_KEEP(w[k]);
      if (GRP == 1) bacc[k] = S::add(bacc[k], u[k]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < SW; ++t) {
      F xa = S::load(xp + q0 + (pa * SW + t) * JMAX);
      F xb = S::load(xp + q0 + (pb * SW + t) * JMAX);
      if (KB > 1) {  // one load each, not one per FMA operand
        FM_WG1_KEEP(xa);
        FM_WG1_KEEP(xb);
      }
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) {
        acc[k][0][t] = S::fma(u[k], xa, acc[k][0][t]);
        acc[k][1][t] = S::fma(w[k], xb, acc[k][1][t]);
      }
    }
  }
}

// One pass of group GRP over nimg images for KB channels: dyk (image 0, channel kb; istride floats
// between images), xt (image i at i * seg); va: accumulators of channel kb ([A][SW][W], kstride
// floats between channels); vb: bias accumulators of channel kb (W floats each), updated by group
// 1. Group 0 (the first to read this dy) also prefetches pfn floats at pf (the dy of the next
// channel block) spread over its tile rows. NQV = ceil(Q / W).
template <int R, int GRP, int KB, int NQV>
void wino_pass(const Geo& g, const float* dyk, size_t istride, const float* xt, int nimg, float* va, size_t kstride,
               float* vb, const float* pf, size_t pfn) {
  constexpr int SW = R, A = RowWino<R>::A;
  constexpr int pa = point<A, GRP>(0), pb = point<A, GRP>(1);
  const int ql = g.Q - W * (NQV - 1);  // lanes of the last vector of a row
  F acc[KB][2][SW], bacc[KB];
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k) {
#pragma GCC unroll 8
    for (int t = 0; t < SW; ++t) {
      acc[k][0][t] = S::load(va + k * kstride + (pa * SW + t) * W);
      acc[k][1][t] = S::load(va + k * kstride + (pb * SW + t) * W);
    }
    bacc[k] = GRP == 1 ? S::load(vb + k * W) : S::zero();
  }
  const size_t rowstep = (size_t)TR * g.Q;
  const size_t pflines = GRP == 0 && pf ? (pfn + 15) / 16 : 0, per = (pflines + g.TRn - 1) / g.TRn;
  for (int i = 0; i < nimg; ++i) {
    const float* src = dyk + i * istride;
    const float* xp = xt + i * g.seg;
    const float* pfi = pflines ? pf + i * istride : nullptr;
    size_t pl = 0;
    for (int tr = 0; tr < g.TRn; ++tr, src += rowstep, xp += g.Qp) {
      if (GRP == 0)
        for (const size_t e = std::min(pflines, pl + per); pl < e; ++pl) __builtin_prefetch(pfi + 16 * pl, 0, 3);
      if (tr < g.TRf) wino_tile_row<R, GRP, KB, NQV, true>(acc, bacc, g, src, xp, TR * tr, ql);
      else wino_tile_row<R, GRP, KB, NQV, false>(acc, bacc, g, src, xp, TR * tr, ql);
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k) {
#pragma GCC unroll 8
    for (int t = 0; t < SW; ++t) {
      S::store(va + k * kstride + (pa * SW + t) * W, acc[k][0][t]);
      S::store(va + k * kstride + (pb * SW + t) * W, acc[k][1][t]);
    }
    if (GRP == 1) S::store(vb + k * W, bacc[k]);
  }
}

// All transform groups for a block of kn <= KBL channels.
template <int R, int KBL, int NQV, int GRP = 0>
void wino_groups(int kn, const Geo& g, const float* dyk, size_t istride, const float* xt, int nimg, float* va,
                 size_t kstride, float* vb, const float* pf, size_t pfn) {
  constexpr int NG = RowWino<R>::A / 2;
  if constexpr (GRP < NG) {
    if (kn >= KBL) wino_pass<R, GRP, KBL, NQV>(g, dyk, istride, xt, nimg, va, kstride, vb, pf, pfn);
    else if constexpr (KBL > 1)
      return wino_groups<R, KBL - 1, NQV, GRP>(kn, g, dyk, istride, xt, nimg, va, kstride, vb, pf, pfn);
    wino_groups<R, KBL, NQV, GRP + 1>(kn, g, dyk, istride, xt, nimg, va, kstride, vb, pf, pfn);
  }
}

using groups_fn = void (*)(int, const Geo&, const float*, size_t, const float*, int, float*, size_t, float*,
                           const float*, size_t);

// The groups kernel for NQV = ceil(Q / W) vectors per row (templated: every row vector but the
// last is a full load); nullptr past MAXV vectors.
constexpr int MAXV = 8;
template <int R, int KBL, int NQV = 1>
groups_fn pick_groups(int nqv) {
  if constexpr (NQV > MAXV) return nullptr;
  else return nqv == NQV ? &wino_groups<R, KBL, NQV> : pick_groups<R, KBL, NQV + 1>(nqv);
}

// R = SW taps, up to KBL output channels per pass, CH images per chunk. False (nothing written)
// when a row takes more than MAXV vectors.
template <int R, int KBL, int CH>
bool wgrad_rows_winograd(const ConvShape& s, const float* dy, const float* x, float* dw, float* db) {
  constexpr int SW = R, A = RowWino<R>::A;
  const Geo g = make_geo(s, R);
  const groups_fn groups = pick_groups<R, KBL>((g.Q + W - 1) / W);
  if (!groups) return false;
  const int ch = std::max(1, std::min(CH, JMAX / g.seg));
  const int C = s.C, K = s.K;
  const size_t PQ = (size_t)g.P * g.Q;
  const int ng = (s.N + G - 1) / G;
  const size_t kstride = (size_t)C * A * SW * W;  // floats per channel k in a group's accumulators
  const size_t vsz = (size_t)K * kstride + (size_t)K * W;
  float* vacc = scratch(0, (size_t)ng * vsz);
  const std::vector<int> kblk = channel_blocks(K, KBL);
#pragma omp parallel
  {
    // (slot 0 is the caller's vacc; slot 1 is the flat kernel's planes)
    float* xpad = scratch(2, (size_t)g.Hx * g.Wps);
    float* xtp = scratch(3, (size_t)A * g.Wps + 32);
    float* xt = scratch(4, (size_t)C * A * SW * JMAX + (size_t)KBL * W);
    float* bjunk = xt + (size_t)C * A * SW * JMAX;  // bias accumulators of the input channels c > 0
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
            x_transform_image<R, SW>(g, xpad, xtp, xt + (size_t)c * A * SW * JMAX + (size_t)i * g.seg);
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
            groups(kn, g, dy + ((size_t)c0 * K + kb) * PQ, (size_t)K * PQ, xt + (size_t)c * A * SW * JMAX, cn,
                   va + (size_t)kb * kstride + (size_t)c * A * SW * W, kstride, c == 0 ? vb + (size_t)kb * W : bjunk,
                   c == 0 ? pf : nullptr, pfn);
          kb += kn;
        }
      }
    }
  }
  // reduce: groups in order, then the lanes, then the output transform AT (in double)
  std::vector<double> M((size_t)A * SW);
  for (int k = 0; k < K; ++k) {
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < A * SW; ++i)
        M[i] = group_lane_sum(vacc, vsz, ng, (size_t)k * kstride + ((size_t)c * A * SW + i) * W);
      row_output_transform<R>(M.data(), dw + ((size_t)k * C + c) * R * SW);
    }
    if (db) db[k] = group_lane_sum(vacc, vsz, ng, (size_t)K * kstride + (size_t)k * W);
  }
  return true;
}

// The entry point of this ISA: the kernel's name, or nullptr (nothing written) when the shape is not
// one it handles (the caller has checked stride 1, C <= 4, R = S in {3, 5}).
const char* wgrad1_run(const ConvShape& s, const float* dy, const float* x, float* dw, float* db) {
  constexpr int KBL = NREG >= 32 ? 2 : 1;  // channels per Winograd pass: 2 x 2 x 5 (or 1 x 2 x 5) accumulators
  if (s.R == 5 && winograd_rows_fits(s) && wgrad_rows_winograd<5, KBL, 2>(s, dy, x, dw, db))
    return kWgrad1Names[FM_ISA_LEVEL][1];
  if (const flat_fn fn = pick_flat(s)) return wgrad_flat(s, fn, dy, x, dw, db), kWgrad1Names[FM_ISA_LEVEL][0];
  return nullptr;
}

const Wgrad1Kernels kWgrad1 = {&wgrad1_run};
