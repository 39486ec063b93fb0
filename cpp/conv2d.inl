// Direct convolution kernels of one instruction set (see conv2d.cpp). Pasted by
// simd/instantiate.hpp into namespace fm::<isa>, where S is that ISA's traits type
// (simd/simd.hpp); includes nothing itself. Register tiles sized per ISA from the vector width:
// AVX-512 and NEON have 32 vector registers, AVX2 16.

using F = S::V;
constexpr int LN = S::W;  // floats per vector

// ---- strided forward on the padded image -------------------------------------------------------
// One image, one block of LN*NV output channels.
// xp (C,Hp,Wp) padded image, koff[C*R*S] offsets of (c,r,s) in xp, pqoff[P*Q] offsets of the
// output pixels, wt (C*R*S, LN*NV) packed weights of this channel block, bias (LN*NV) or null ->
// y rows kb..kb+kn of (K, P*Q).
template <int MR, int NV>
void fwd_block(const float* xp, const int* koff, int CRS, const int* pqoff, int PQ, const float* wt,
               const float* bias, int kn, float* y, bool relu) {
  constexpr int KW = LN * NV;
  F bv[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) bv[v] = bias ? S::load_n(bias + LN * v, std::max(0, kn - LN * v)) : S::zero();
  alignas(64) float tile[MR][KW];
  for (int pq0 = 0; pq0 < PQ; pq0 += MR) {
    const int mr = std::min(MR, PQ - pq0);
    const float* ptr[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) ptr[i] = xp + pqoff[std::min(pq0 + i, PQ - 1)];
    F c[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[i][v] = bv[v];
    const float* wk = wt;
    for (int k = 0; k < CRS; ++k, wk += KW) {
      const int o = koff[k];
      F wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wv[v] = S::load(wk + LN * v);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const F a = S::set1(ptr[i][o]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) c[i][v] = S::fma(a, wv[v], c[i][v]);
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        F t = c[i][v];
        if (relu) t = S::max(S::zero(), t);  // max(0, NaN) = NaN (second operand)
        S::store(&tile[i][LN * v], t);
      }
    for (int kk = 0; kk < kn; ++kk) {
      float* yr = y + (size_t)kk * PQ + pq0;
      for (int i = 0; i < mr; ++i) yr[i] = tile[i][kk];
    }
  }
}

// x (N,C,H,W), w (K,C,R,S), b (K,) or null -> y (N,K,P,Q), any stride.
void forward_strided(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu) {
  // output channels per block: 2 vectors (one where K fits in one), as many output pixels as the
  // accumulators allow
  constexpr int NV2 = LN >= 8 ? 2 : 4, MR2 = LN == 16 ? 8 : 6, MR1 = 12;
  const int P = s.P(), Q = s.Q(), PQ = P * Q, CRS = s.C * s.R * s.S;
  const int Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw;
  const bool one = s.K <= LN;
  const int KW = one ? LN : LN * NV2;
  const int nkb = (s.K + KW - 1) / KW;
  // packed weights [kb][crs][KW] (zero beyond K) and offset tables
  std::vector<float> wt((size_t)nkb * CRS * KW, 0.f);
  for (int k = 0; k < s.K; ++k)
    for (int i = 0; i < CRS; ++i) wt[((size_t)(k / KW) * CRS + i) * KW + k % KW] = w[(size_t)k * CRS + i];
  std::vector<float> bpad;
  if (b) {
    bpad.assign((size_t)nkb * KW, 0.f);
    std::copy(b, b + s.K, bpad.begin());
  }
  std::vector<int> koff(CRS), pqoff(PQ);
  for (int c = 0; c < s.C; ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t) koff[(c * s.R + r) * s.S + t] = (c * Hp + r) * Wp + t;
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) pqoff[p * Q + q] = p * s.sh * Wp + q * s.sw;
#pragma omp parallel
  {
    std::vector<float> xp((size_t)s.C * Hp * Wp, 0.f);
#pragma omp for schedule(dynamic, 1)  // images are independent: a stalled thread's share is taken over
    for (int n = 0; n < s.N; ++n) {
      pad_image(s, x + (size_t)n * s.C * s.H * s.W, xp.data());
      float* yn = y + (size_t)n * s.K * PQ;
      for (int kb = 0; kb < nkb; ++kb) {
        const float* wb = wt.data() + (size_t)kb * CRS * KW;
        const float* bb = b ? bpad.data() + (size_t)kb * KW : nullptr;
        const int kn = std::min(KW, s.K - kb * KW);
        float* yb = yn + (size_t)kb * KW * PQ;
        if (one)
          fwd_block<MR1, 1>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, wb, bb, kn, yb, relu);
        else
          fwd_block<MR2, NV2>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, wb, bb, kn, yb, relu);
      }
    }
  }
}

// ---- stride-1 forward on S-shifted planes (see build_planes in conv2d.cpp) ---------------------
// y tile: MK output channels x LN*NJ flattened output pixels starting at j0.
// xs planes, toff[T] plane offsets of the taps, wp (T, MK) packed weights of this channel block,
// bias (MK) -> y rows (kn of them, row stride PQ). With TAIL, `lastn` (1..LN) lanes of the final
// vector are valid; without, all of them.
template <int MK, int NJ, bool TAIL>
__attribute__((always_inline)) inline void fwd_flat_tile(const float* xs, const int* toff, int T, const float* wp,
                                                         const float* bias, int j0, int lastn, int kn, int PQ,
                                                         float* y, bool relu) {
  F acc[MK][NJ];
#pragma GCC unroll 16
  for (int m = 0; m < MK; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v) acc[m][v] = S::set1(bias[m]);
  const float* xb = xs + j0;
  for (int t = 0; t < T; ++t, wp += MK) {
    const float* xt = xb + toff[t];
    F xv[NJ];
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v) xv[v] = TAIL && v == NJ - 1 ? S::load_n(xt + LN * v, lastn) : S::load(xt + LN * v);
#pragma GCC unroll 16
    for (int m = 0; m < MK; ++m) {
      const F a = S::set1(wp[m]);
#pragma GCC unroll 4
      for (int v = 0; v < NJ; ++v) acc[m][v] = S::fma(a, xv[v], acc[m][v]);
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MK; ++m) {
    if (m >= kn) break;
    float* yr = y + (size_t)m * PQ + j0;
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v) {
      const F o = relu ? S::max(S::zero(), acc[m][v]) : acc[m][v];  // NaN passes
      if (TAIL && v == NJ - 1)
        S::store_n(yr + LN * v, o, lastn);
      else
        S::store(yr + LN * v, o);
    }
  }
}

// Stride-1 forward (and, with flipped weights, input gradient):
// x (N,C,H,W), w (K,C,R,S), b (K,) or null -> y (N,K,P,Q).
void forward_flat(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu) {
  // MK x NJ accumulators + NJ input vectors + one broadcast within the register file
  constexpr int MK = LN == 8 ? 6 : 8, NJ = LN == 8 ? 2 : 3;
  const int P = s.P(), Q = s.Q(), PQ = P * Q, T = s.C * s.R * s.S;
  const int Hp = s.H + 2 * s.ph;
  const int nkt = (s.K + MK - 1) / MK;
  std::vector<float> wp((size_t)nkt * T * MK, 0.f), bp((size_t)nkt * MK, 0.f);
  for (int k = 0; k < s.K; ++k)
    for (int i = 0; i < T; ++i) wp[((size_t)(k / MK) * T + i) * MK + k % MK] = w[(size_t)k * T + i];
  if (b) std::copy(b, b + s.K, bp.begin());
  std::vector<int> toff(T);
  for (int c = 0; c < s.C; ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t) toff[(c * s.R + r) * s.S + t] = ((c * s.S + t) * Hp + r) * Q;
  const size_t plane = (size_t)s.C * s.S * Hp * Q;
#pragma omp parallel
  {
    std::vector<float> xs(plane, 0.f);
#pragma omp for schedule(dynamic, 1)  // images are independent: a stalled thread's share is taken over
    for (int n = 0; n < s.N; ++n) {
      build_planes(s, Q, (size_t)Hp * Q, x + (size_t)n * s.C * s.H * s.W, xs.data());
      float* yn = y + (size_t)n * s.K * PQ;
      for (int kt = 0; kt < nkt; ++kt) {
        const float* wk = wp.data() + (size_t)kt * T * MK;
        const float* bk = bp.data() + (size_t)kt * MK;
        const int kn = std::min(MK, s.K - kt * MK);
        float* yk = yn + (size_t)kt * MK * PQ;
        int j = 0;
        for (; j + LN * NJ <= PQ; j += LN * NJ)
          fwd_flat_tile<MK, NJ, false>(xs.data(), toff.data(), T, wk, bk, j, LN, kn, PQ, yk, relu);
        for (; j < PQ; j += LN)
          fwd_flat_tile<MK, 1, true>(xs.data(), toff.data(), T, wk, bk, j, std::min(LN, PQ - j), kn, PQ, yk, relu);
      }
    }
  }
}

// ---- weight gradient, any stride ----------------------------------------------------------------
// One image, one block of LN*NV output channels: part (CRSp, LN*NV) += x-pixels x dy^T.
// xp (C,Hp,Wp) padded image, koff[C*R*S] offsets of (c,r,s), pqoff[P*Q] offsets of the output
// pixels, dyt (P*Q, LN*NV) transposed output gradient of this channel block.
template <int MR, int NV>
void bwdw_block(const float* xp, const int* koff, int CRS, const int* pqoff, int PQ, const float* dyt, float* part) {
  constexpr int KW = LN * NV;
  for (int i0 = 0; i0 < CRS; i0 += MR) {
    const float* ptr[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) ptr[i] = xp + koff[std::min(i0 + i, CRS - 1)];
    float* pr = part + (size_t)i0 * KW;
    F c[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[i][v] = S::load(pr + i * KW + LN * v);
    const float* g = dyt;
    for (int j = 0; j < PQ; ++j, g += KW) {
      const int o = pqoff[j];
      F gv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) gv[v] = S::load(g + LN * v);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const F a = S::set1(ptr[i][o]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) c[i][v] = S::fma(a, gv[v], c[i][v]);
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) S::store(pr + i * KW + LN * v, c[i][v]);
  }
}

// dy_n (K, PQ) -> dyt [K/KW][PQ][KW] (KW a multiple of LN; channels beyond K stay zero) in LN x LN
// blocks, and pb[k] += sum over PQ of dy_n[k] (the bias gradient).
void transpose_dy(const float* dyn, int K, int PQ, int KW, float* dyt, double* pb) {
  for (int k0 = 0; k0 < K; k0 += LN) {
    const int kn = std::min(LN, K - k0);
    float* base = dyt + (size_t)(k0 / KW) * PQ * KW + k0 % KW;
    F bsum = S::zero();
    for (int j0 = 0; j0 < PQ; j0 += LN) {
      const int jn = std::min(LN, PQ - j0);
      F r[LN];
#pragma GCC unroll 16
      for (int i = 0; i < LN; ++i) r[i] = i < kn ? S::load_n(dyn + (size_t)(k0 + i) * PQ + j0, jn) : S::zero();
      S::transpose(r);
#pragma GCC unroll 16
      for (int i = 0; i < LN; ++i) {
        if (i >= jn) break;
        bsum = S::add(bsum, r[i]);
        S::store(base + (size_t)(j0 + i) * KW, r[i]);
      }
    }
    alignas(64) float bs[LN];
    S::store(bs, bsum);
    for (int i = 0; i < kn; ++i) pb[k0 + i] += bs[i];
  }
}

// dy (N,K,P,Q), x (N,C,H,W) -> dw (K,C,R,S), db (K,) or null, any stride.
void backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db) {
  // output channels per block (KW = LN * NV) and input taps per register tile (MR)
  const int NV = LN == 16 ? (s.K <= 16 ? 1 : 2) : 16 / LN, KW = LN * NV;
  const int MR = LN == 16 ? (NV == 1 ? 12 : 8) : 6;
  const int P = s.P(), Q = s.Q(), PQ = P * Q, CRS = s.C * s.R * s.S;
  const int Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw;
  const int nkb = (s.K + KW - 1) / KW;
  const int CRSp = (CRS + MR - 1) / MR * MR;
  std::vector<int> koff(CRS), pqoff(PQ);
  for (int c = 0; c < s.C; ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t) koff[(c * s.R + r) * s.S + t] = (c * Hp + r) * Wp + t;
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) pqoff[p * Q + q] = p * s.sh * Wp + q * s.sw;
  // Partial sums per fixed group of G images (not per thread), reduced in group order: the result
  // does not depend on the thread count or on which thread ran which group, and a stalled thread's
  // groups are taken over by the others (dynamic schedule).
  constexpr int G = 16;
  const int ng = (s.N + G - 1) / G;
  const size_t part_sz = (size_t)nkb * CRSp * KW;
  AlignedBuf<float> part((size_t)ng * part_sz);
  std::vector<double> dbp((size_t)ng * s.K, 0.0);
#pragma omp parallel
  {
    std::vector<float> xp((size_t)s.C * Hp * Wp, 0.f);
    AlignedBuf<float> dyt((size_t)nkb * PQ * KW);
#pragma omp for schedule(dynamic, 1)
    for (int gi = 0; gi < ng; ++gi) {
      float* pw = part.p + (size_t)gi * part_sz;
      double* pb = dbp.data() + (size_t)gi * s.K;
      for (int n = gi * G; n < std::min(s.N, (gi + 1) * G); ++n) {
        pad_image(s, x + (size_t)n * s.C * s.H * s.W, xp.data());
        transpose_dy(dy + (size_t)n * s.K * PQ, s.K, PQ, KW, dyt.p, pb);
        for (int kb = 0; kb < nkb; ++kb) {
          const float* g = dyt.p + (size_t)kb * PQ * KW;
          float* pk = pw + (size_t)kb * CRSp * KW;
          if (LN == 16 && NV == 1)
            bwdw_block<12, 1>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, g, pk);
          else if (LN == 16)
            bwdw_block<8, 2>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, g, pk);
          else
            bwdw_block<6, (LN >= 16 ? 1 : 16 / LN)>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, g, pk);
        }
      }
    }
  }
  for (int k = 0; k < s.K; ++k)
    for (int i = 0; i < CRS; ++i) {
      const size_t off = ((size_t)(k / KW) * CRSp + i) * KW + k % KW;
      float a = 0.f;
      for (int gi = 0; gi < ng; ++gi) a += part.p[(size_t)gi * part_sz + off];
      dw[(size_t)k * CRS + i] = a;
    }
  if (db)
    for (int k = 0; k < s.K; ++k) {
      double a = 0.0;
      for (int gi = 0; gi < ng; ++gi) a += dbp[(size_t)gi * s.K + k];
      db[k] = (float)a;
    }
}

const ConvDirectKernels kConvDirect = {&forward_flat, &forward_strided, &backward_weight};
