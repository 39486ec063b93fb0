// 2-D convolution: forward, backward_input, backward_weight (+ bias).
//
// Implementations (conv2d_forward etc. pick one; ConvImpl forces one for tests):
// - reference: plain loops with double accumulation.
// - gemm: im2col + fm::sgemm per image, col2im for the input gradient (any ISA, any stride).
// - fast, AVX-512 (chosen at run time):
//   * stride-1 forward ("flat" kernel): the image is expanded once into S-shifted planes
//     xs[c*S+t][h][q] = xpad[c][h][q+t], so that tap (c,r,t) at the flattened output pixel
//     j = p*Q+q is xs[c*S+t][r*Q + j] -- contiguous in j. A register tile is 8 output channels x
//     48 output pixels; each tap is 3 vector loads, 8 weight broadcasts and 24 FMAs, the output is
//     stored straight into NCHW with bias (and ReLU) applied in registers. No im2col matrix, no
//     transposes. The stride-1 input gradient is the same kernel on dy with the flipped,
//     transposed weights.
//   * other strides ("broadcast-x" kernel): a tile holds MR output pixels x 16*NV channels; every
//     step of the C*R*S reduction broadcasts MR pixels of a zero-padded image copy (addressed
//     through offset tables, so any stride works) against one packed weight row.
//   * weight gradient: the broadcast-x tile with pixels and channels exchanged (reduction over the
//     output pixels, dy transposed per image in 16 x 16 register blocks, bias sums on the way);
//     for few input channels (the first layer) a flat kernel keeps KB channels x R*S taps in zmm
//     accumulators across a chunk of images.
// - fast, AVX2 + FMA: the stride-1 flat forward / input-gradient kernel (6 channels x 16 pixels)
//   and the broadcast-x weight-gradient tile (6 taps x 16 channels) in ymm registers; other
//   strides use im2col + SGEMM.
// OpenMP runs over the batch (dynamic schedule: a thread that the OS stalls does not hold up the
// others); each thread allocates its workspaces once per call. The fast weight gradients sum into
// one partial buffer per fixed group of 16 images, reduced in group order (no atomics), so they do
// not depend on the thread count at all; the gemm path uses per-thread partials (depends only on
// the thread count).
#include "conv2d.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.hpp"
#include "conv_wgrad1.hpp"
#include "gemm.hpp"
#include "winograd.hpp"

namespace fm {

// =============================================================================================
// forward
// =============================================================================================

// x (N,C,H,W), w (K,C,R,S), b (K,) or null -> y (N,K,P,Q)
void conv2d_forward_reference(const ConvShape& s, const float* x, const float* w, const float* b,
                              float* y, bool relu) {
  const int P = s.P(), Q = s.Q();
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double acc = b ? b[k] : 0.0;
          for (int c = 0; c < s.C; ++c)
            for (int r = 0; r < s.R; ++r) {
              int ih = p * s.sh + r - s.ph;
              if (ih < 0 || ih >= s.H) continue;
              for (int t = 0; t < s.S; ++t) {
                int iw = q * s.sw + t - s.pw;
                if (iw < 0 || iw >= s.W) continue;
                acc += (double)x[(((size_t)n * s.C + c) * s.H + ih) * s.W + iw] *
                       w[(((size_t)k * s.C + c) * s.R + r) * s.S + t];
              }
            }
          float v = (float)acc;
          if (relu && v < 0.f) v = 0.f;  // NaN passes, as torch.relu
          y[(((size_t)n * s.K + k) * P + p) * Q + q] = v;
        }
}

// x_n (C,H,W) -> col (C*R*S, P*Q)
static void im2col(const ConvShape& s, const float* x, float* col) {
  const int P = s.P(), Q = s.Q();
  for (int c = 0; c < s.C; ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t) {
        float* dst = col + ((size_t)(c * s.R + r) * s.S + t) * P * Q;
        const float* xc = x + (size_t)c * s.H * s.W;
        for (int p = 0; p < P; ++p) {
          int ih = p * s.sh + r - s.ph;
          float* d = dst + (size_t)p * Q;
          if (ih < 0 || ih >= s.H) {
            for (int q = 0; q < Q; ++q) d[q] = 0.f;
            continue;
          }
          const float* xr = xc + (size_t)ih * s.W;
          for (int q = 0; q < Q; ++q) {
            int iw = q * s.sw + t - s.pw;
            d[q] = (iw >= 0 && iw < s.W) ? xr[iw] : 0.f;
          }
        }
      }
}

// col (C*R*S, P*Q) -> dx_n (C,H,W) (overwritten)
static void col2im(const ConvShape& s, const float* col, float* dx) {
  const int P = s.P(), Q = s.Q();
  std::fill(dx, dx + (size_t)s.C * s.H * s.W, 0.f);
  for (int c = 0; c < s.C; ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t) {
        const float* src = col + ((size_t)(c * s.R + r) * s.S + t) * P * Q;
        float* dc = dx + (size_t)c * s.H * s.W;
        for (int p = 0; p < P; ++p) {
          int ih = p * s.sh + r - s.ph;
          if (ih < 0 || ih >= s.H) continue;
          float* dr = dc + (size_t)ih * s.W;
          const float* sr = src + (size_t)p * Q;
          for (int q = 0; q < Q; ++q) {
            int iw = q * s.sw + t - s.pw;
            if (iw >= 0 && iw < s.W) dr[iw] += sr[q];
          }
        }
      }
}

static void bias_relu(float* y, int K, int PQ, const float* b, bool relu) {
  for (int k = 0; k < K; ++k) {
    float* row = y + (size_t)k * PQ;
    float bk = b ? b[k] : 0.f;
    if (relu)
      for (int i = 0; i < PQ; ++i) row[i] = std::max(row[i] + bk, 0.f);
    else if (b)
      for (int i = 0; i < PQ; ++i) row[i] += bk;
  }
}

static void forward_gemm(const ConvShape& s, const float* x, const float* w, const float* b,
                         float* y, bool relu) {
  const int P = s.P(), Q = s.Q(), PQ = P * Q, CRS = s.C * s.R * s.S;
#pragma omp parallel
  {
    std::vector<float> col((size_t)CRS * PQ);
#pragma omp for schedule(dynamic, 1)  // images are independent: a stalled thread's share is taken over
    for (int n = 0; n < s.N; ++n) {
      im2col(s, x + (size_t)n * s.C * s.H * s.W, col.data());
      float* yn = y + (size_t)n * s.K * PQ;
      sgemm(false, false, s.K, PQ, CRS, 1.f, w, CRS, col.data(), PQ, 0.f, yn, PQ);
      bias_relu(yn, s.K, PQ, b, relu);
    }
  }
}

// Zero-padded copy of one image: x_n (C,H,W) -> xp (C, H+2ph, W+2pw). The borders of xp are
// zeroed once when the buffer is allocated; only the interior is written here.
[[maybe_unused]] static void pad_image(const ConvShape& s, const float* x, float* xp) {
  const int Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw;
  for (int c = 0; c < s.C; ++c)
    for (int h = 0; h < s.H; ++h)
      std::memcpy(xp + ((size_t)c * Hp + h + s.ph) * Wp + s.pw, x + ((size_t)c * s.H + h) * s.W,
                  sizeof(float) * s.W);
}

#if FM_X86
// One image, one block of 16*NV output channels.
// xp (C,Hp,Wp) padded image, koff[C*R*S] offsets of (c,r,s) in xp, wt (C*R*S, 16*NV) packed
// weights of this channel block, bias (16*NV) or null -> y rows kb..kb+kn of (K, P*Q).
template <int MR, int NV>
__attribute__((target("avx512f"))) static void fwd_block_avx512(
    const float* xp, const int* koff, int CRS, const int* pqoff, int PQ, const float* wt,
    const float* bias, int kn, float* y, bool relu) {
  constexpr int KW = 16 * NV;
  __m512 bv[NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    int cnt = std::min(16, std::max(0, kn - 16 * v));
    __mmask16 mk = (__mmask16)((1u << cnt) - 1);
    bv[v] = bias ? _mm512_maskz_loadu_ps(mk, bias + 16 * v) : _mm512_setzero_ps();
  }
  alignas(64) float tile[MR][KW];
  for (int pq0 = 0; pq0 < PQ; pq0 += MR) {
    const int mr = std::min(MR, PQ - pq0);
    const float* ptr[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) ptr[i] = xp + pqoff[std::min(pq0 + i, PQ - 1)];
    __m512 c[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) c[i][v] = bv[v];
    const float* wk = wt;
    for (int k = 0; k < CRS; ++k, wk += KW) {
      const int o = koff[k];
      __m512 wv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(wk + 16 * v);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        __m512 a = _mm512_set1_ps(ptr[i][o]);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) c[i][v] = _mm512_fmadd_ps(a, wv[v], c[i][v]);
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        __m512 t = c[i][v];
        if (relu) t = _mm512_max_ps(_mm512_setzero_ps(), t);  // max(0, NaN) = NaN (second operand)
        _mm512_store_ps(&tile[i][16 * v], t);
      }
    for (int kk = 0; kk < kn; ++kk) {
      float* yr = y + (size_t)kk * PQ + pq0;
      for (int i = 0; i < mr; ++i) yr[i] = tile[i][kk];
    }
  }
}

// ---- stride-1 kernels on S-shifted planes --------------------------------------------------
// xs (C*S, Hp, Q): xs[c*S+t][h][q] = xpad[c][h][q+t] (xpad = x zero-padded by ph, pw). A tap
// (c,r,t) at the flattened output pixel j = p*Q+q reads xs[c*S+t][p+r][q] = plane + r*Q + j, which
// is contiguous in j: 16 output pixels are one vector load, with no lanes lost at row ends.
// Which entries of xs are zero depends only on the geometry, so a thread zeroes its buffer once and
// build_planes writes only the entries that come from x.

// pstride: floats between consecutive planes (>= Hp*Q).
__attribute__((target("avx512f"))) void build_planes_avx512(const ConvShape& s, int Q, size_t pstride,
                                                                    const float* x, float* xs) {
  for (int c = 0; c < s.C; ++c)
    for (int t = 0; t < s.S; ++t) {
      const int q0 = std::max(0, s.pw - t), q1 = std::min(Q, s.W + s.pw - t);
      if (q1 <= q0) continue;
      const int n = q1 - q0;
      const float* src = x + (size_t)c * s.H * s.W + q0 + t - s.pw;
      float* dst = xs + (size_t)(c * s.S + t) * pstride + (size_t)s.ph * Q + q0;
      for (int h = 0; h < s.H; ++h, src += s.W, dst += Q)
        for (int i = 0; i < n; i += 16) {
          const __mmask16 m = (__mmask16)((1u << std::min(16, n - i)) - 1);
          _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
        }
    }
}

// y tile: MK output channels x 16*NJ flattened output pixels starting at j0.
// xs planes, toff[T] plane offsets of the taps, wp (T, MK) packed weights of this channel block,
// bias (MK) -> y rows (kn of them, row stride PQ). `last` masks the final vector of the tile.
template <int MK, int NJ>
__attribute__((target("avx512f"))) static inline void fwd_flat_tile(
    const float* xs, const int* toff, int T, const float* wp, const float* bias, int j0, __mmask16 last,
    int kn, int PQ, float* y, bool relu) {
  __m512 acc[MK][NJ];
#pragma GCC unroll 16
  for (int m = 0; m < MK; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v) acc[m][v] = _mm512_set1_ps(bias[m]);
  const float* xb = xs + j0;
  for (int t = 0; t < T; ++t, wp += MK) {
    const float* xt = xb + toff[t];
    __m512 xv[NJ];
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v)
      xv[v] = v == NJ - 1 ? _mm512_maskz_loadu_ps(last, xt + 16 * v) : _mm512_loadu_ps(xt + 16 * v);
#pragma GCC unroll 16
    for (int m = 0; m < MK; ++m) {
      const __m512 a = _mm512_set1_ps(wp[m]);
#pragma GCC unroll 4
      for (int v = 0; v < NJ; ++v) acc[m][v] = _mm512_fmadd_ps(a, xv[v], acc[m][v]);
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MK; ++m) {
    if (m >= kn) break;
    float* yr = y + (size_t)m * PQ + j0;
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v) {
      __m512 o = relu ? _mm512_max_ps(_mm512_setzero_ps(), acc[m][v]) : acc[m][v];  // NaN passes
      if (v == NJ - 1)
        _mm512_mask_storeu_ps(yr + 16 * v, last, o);
      else
        _mm512_storeu_ps(yr + 16 * v, o);
    }
  }
}

// The same planes for the AVX2 path (plain row copies).
static void build_planes_generic(const ConvShape& s, int Q, size_t pstride, const float* x, float* xs) {
  for (int c = 0; c < s.C; ++c)
    for (int t = 0; t < s.S; ++t) {
      const int q0 = std::max(0, s.pw - t), q1 = std::min(Q, s.W + s.pw - t);
      if (q1 <= q0) continue;
      const float* src = x + (size_t)c * s.H * s.W + q0 + t - s.pw;
      float* dst = xs + (size_t)(c * s.S + t) * pstride + (size_t)s.ph * Q + q0;
      for (int h = 0; h < s.H; ++h, src += s.W, dst += Q) std::memcpy(dst, src, sizeof(float) * (q1 - q0));
    }
}

// AVX2 + FMA version of fwd_flat_tile: MK output channels x 8*NJ output pixels (16 ymm registers).
// `lastn` (1..8) lanes of the final vector are valid.
template <int MK, int NJ>
__attribute__((target("avx2,fma"))) static inline void fwd_flat_tile_avx2(
    const float* xs, const int* toff, int T, const float* wp, const float* bias, int j0, int lastn, int kn,
    int PQ, float* y, bool relu) {
  const __m256i lm = _mm256_cmpgt_epi32(_mm256_set1_epi32(lastn), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 acc[MK][NJ];
#pragma GCC unroll 8
  for (int m = 0; m < MK; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v) acc[m][v] = _mm256_broadcast_ss(bias + m);
  const float* xb = xs + j0;
  for (int t = 0; t < T; ++t, wp += MK) {
    const float* xt = xb + toff[t];
    __m256 xv[NJ];
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v)
      xv[v] = v == NJ - 1 ? _mm256_maskload_ps(xt + 8 * v, lm) : _mm256_loadu_ps(xt + 8 * v);
#pragma GCC unroll 8
    for (int m = 0; m < MK; ++m) {
      const __m256 a = _mm256_broadcast_ss(wp + m);
#pragma GCC unroll 4
      for (int v = 0; v < NJ; ++v) acc[m][v] = _mm256_fmadd_ps(a, xv[v], acc[m][v]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MK; ++m) {
    if (m >= kn) break;
    float* yr = y + (size_t)m * PQ + j0;
#pragma GCC unroll 4
    for (int v = 0; v < NJ; ++v) {
      __m256 o = relu ? _mm256_max_ps(_mm256_setzero_ps(), acc[m][v]) : acc[m][v];  // NaN passes
      if (v == NJ - 1)
        _mm256_maskstore_ps(yr + 8 * v, lm, o);
      else
        _mm256_storeu_ps(yr + 8 * v, o);
    }
  }
}

// Stride-1 forward (and, with flipped weights, input gradient) on AVX-512 or AVX2:
// x (N,C,H,W), w (K,C,R,S), b (K,) or null -> y (N,K,P,Q).
static void forward_flat(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                         bool relu, bool avx512) {
  const int MK = avx512 ? 8 : 6;
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
      const float* xn = x + (size_t)n * s.C * s.H * s.W;
      if (avx512)
        build_planes_avx512(s, Q, (size_t)Hp * Q, xn, xs.data());
      else
        build_planes_generic(s, Q, (size_t)Hp * Q, xn, xs.data());
      float* yn = y + (size_t)n * s.K * PQ;
      for (int kt = 0; kt < nkt; ++kt) {
        const float* wk = wp.data() + (size_t)kt * T * MK;
        const float* bk = bp.data() + (size_t)kt * MK;
        const int kn = std::min(MK, s.K - kt * MK);
        float* yk = yn + (size_t)kt * MK * PQ;
        int j = 0;
        if (avx512) {
          constexpr int NJ = 3;
          for (; j + 16 * NJ <= PQ; j += 16 * NJ)
            fwd_flat_tile<8, NJ>(xs.data(), toff.data(), T, wk, bk, j, (__mmask16)0xFFFF, kn, PQ, yk, relu);
          for (; j < PQ; j += 16)
            fwd_flat_tile<8, 1>(xs.data(), toff.data(), T, wk, bk, j,
                                (__mmask16)((1u << std::min(16, PQ - j)) - 1), kn, PQ, yk, relu);
        } else {
          constexpr int NJ = 2;
          for (; j + 8 * NJ <= PQ; j += 8 * NJ)
            fwd_flat_tile_avx2<6, NJ>(xs.data(), toff.data(), T, wk, bk, j, 8, kn, PQ, yk, relu);
          for (; j < PQ; j += 8)
            fwd_flat_tile_avx2<6, 1>(xs.data(), toff.data(), T, wk, bk, j, std::min(8, PQ - j), kn, PQ, yk, relu);
        }
      }
    }
  }
}

// Shared driver for forward (and stride-1 input gradient): x (N,C,H,W), w (K,C,R,S) -> y.
static void forward_avx512(const ConvShape& s, const float* x, const float* w, const float* b,
                           float* y, bool relu) {
  const int P = s.P(), Q = s.Q(), PQ = P * Q, CRS = s.C * s.R * s.S;
  const int Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw;
  const int NV = s.K <= 16 ? 1 : 2, KW = 16 * NV;
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
        int kn = std::min(KW, s.K - kb * KW);
        float* yb = yn + (size_t)kb * KW * PQ;
        if (NV == 1)
          fwd_block_avx512<12, 1>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, wb, bb, kn, yb, relu);
        else
          fwd_block_avx512<8, 2>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, wb, bb, kn, yb, relu);
      }
    }
  }
}
#endif

// True when the n floats hold no NaN or infinity (exponent bits all ones); vectorises, no branch.
static bool all_finite(const float* p, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, p + i, sizeof u);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

// NaN/inf footprint. The fast kernels multiply weights by the zero padding (of x forward, of dy
// in the input gradient) and padded x by dy in the weight gradient; PyTorch skips those products,
// and NaN * 0 = NaN, inf * 0 = NaN. So with a non-finite weight (checked up front: K*C*R*S floats)
// forward and input gradient run the reference loops, and a non-finite weight gradient (checked
// after: K*C*R*S floats) is recomputed by them; then exactly the outputs that PyTorch makes NaN or
// inf are. Finite inputs never take these paths. (A non-finite x or dy in the Winograd forward /
// input gradient still spreads over its tiles: see the README.)
void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                    bool relu, ConvImpl impl) {
  if (s.N <= 0) return;
  constexpr Op op = Op::conv2d_forward;
  if (impl == ConvImpl::reference || !all_finite(w, (size_t)s.K * s.C * s.R * s.S)) {
    note_kernel(op, "reference");
    return conv2d_forward_reference(s, x, w, b, y, relu);
  }
  if (winograd_try_forward(s, x, w, b, y, relu, impl)) return;
#if FM_X86
  if (impl == ConvImpl::fast && gemm_isa() == Isa::avx512) {
    note_kernel(op, s.sh == 1 && s.sw == 1 ? "avx512 direct (shifted planes)" : "avx512 direct");
    if (s.sh == 1 && s.sw == 1) return forward_flat(s, x, w, b, y, relu, true);
    return forward_avx512(s, x, w, b, y, relu);
  }
  if (impl == ConvImpl::fast && gemm_isa() == Isa::avx2 && s.sh == 1 && s.sw == 1) {
    note_kernel(op, "avx2 direct (shifted planes)");
    return forward_flat(s, x, w, b, y, relu, false);
  }
#endif
  note_kernel(op, "im2col + sgemm");
  forward_gemm(s, x, w, b, y, relu);
}

// =============================================================================================
// backward
// =============================================================================================

// dy (N,K,P,Q), w (K,C,R,S) -> dx (N,C,H,W)
void conv2d_backward_input_reference(const ConvShape& s, const float* dy, const float* w, float* dx) {
  const int P = s.P(), Q = s.Q();
  std::vector<double> acc((size_t)s.C * s.H * s.W);
  for (int n = 0; n < s.N; ++n) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double g = dy[(((size_t)n * s.K + k) * P + p) * Q + q];
          for (int c = 0; c < s.C; ++c)
            for (int r = 0; r < s.R; ++r) {
              int ih = p * s.sh + r - s.ph;
              if (ih < 0 || ih >= s.H) continue;
              for (int t = 0; t < s.S; ++t) {
                int iw = q * s.sw + t - s.pw;
                if (iw < 0 || iw >= s.W) continue;
                acc[((size_t)c * s.H + ih) * s.W + iw] += g * w[(((size_t)k * s.C + c) * s.R + r) * s.S + t];
              }
            }
        }
    for (size_t i = 0; i < acc.size(); ++i) dx[(size_t)n * acc.size() + i] = (float)acc[i];
  }
}

static void backward_input_gemm(const ConvShape& s, const float* dy, const float* w, float* dx) {
  const int PQ = s.P() * s.Q(), CRS = s.C * s.R * s.S;
#pragma omp parallel
  {
    std::vector<float> col((size_t)CRS * PQ);
#pragma omp for schedule(dynamic, 1)  // images are independent: a stalled thread's share is taken over
    for (int n = 0; n < s.N; ++n) {
      // col (CRS, PQ) = w^T (CRS, K) * dy_n (K, PQ)
      sgemm(true, false, CRS, PQ, s.K, 1.f, w, CRS, dy + (size_t)n * s.K * PQ, PQ, 0.f, col.data(), PQ);
      col2im(s, col.data(), dx + (size_t)n * s.C * s.H * s.W);
    }
  }
}

void conv2d_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx,
                           ConvImpl impl) {
  if (s.N <= 0) return;
  constexpr Op op = Op::conv2d_backward_input;
  if (impl == ConvImpl::reference || !all_finite(w, (size_t)s.K * s.C * s.R * s.S)) {  // see conv2d_forward
    note_kernel(op, "reference");
    return conv2d_backward_input_reference(s, dy, w, dx);
  }
  if (winograd_try_backward_input(s, dy, w, dx, impl)) return;
#if FM_X86
  const int qh = s.R - 1 - s.ph, qw = s.S - 1 - s.pw;
  if (impl == ConvImpl::fast && gemm_isa() != Isa::generic && s.sh == 1 && s.sw == 1 && qh >= 0 && qw >= 0) {
    // Stride 1: dx = conv(dy padded by R-1-ph, w flipped in R,S and transposed to (C,K,R,S)).
    ConvShape t{s.N, s.K, s.P(), s.Q(), s.C, s.R, s.S, 1, 1, qh, qw};
    std::vector<float> wf((size_t)s.C * s.K * s.R * s.S);
    for (int k = 0; k < s.K; ++k)
      for (int c = 0; c < s.C; ++c)
        for (int r = 0; r < s.R; ++r)
          for (int u = 0; u < s.S; ++u)
            wf[(((size_t)c * s.K + k) * s.R + (s.R - 1 - r)) * s.S + (s.S - 1 - u)] =
                w[(((size_t)k * s.C + c) * s.R + r) * s.S + u];
    note_kernel(op, gemm_isa() == Isa::avx512 ? "avx512 direct (transposed conv, shifted planes)"
                                              : "avx2 direct (transposed conv, shifted planes)");
    return forward_flat(t, dy, wf.data(), nullptr, dx, false, gemm_isa() == Isa::avx512);
  }
#endif
  note_kernel(op, "sgemm + col2im");
  backward_input_gemm(s, dy, w, dx);
}

// dy (N,K,P,Q), x (N,C,H,W) -> dw (K,C,R,S), db (K,) or null
void conv2d_backward_weight_reference(const ConvShape& s, const float* dy, const float* x, float* dw,
                                      float* db) {
  const int P = s.P(), Q = s.Q();
  for (int k = 0; k < s.K; ++k) {
    if (db) {
      double a = 0;
      for (int n = 0; n < s.N; ++n)
        for (int i = 0; i < P * Q; ++i) a += dy[((size_t)n * s.K + k) * P * Q + i];
      db[k] = (float)a;
    }
    for (int c = 0; c < s.C; ++c)
      for (int r = 0; r < s.R; ++r)
        for (int t = 0; t < s.S; ++t) {
          double a = 0;
          for (int n = 0; n < s.N; ++n)
            for (int p = 0; p < P; ++p) {
              int ih = p * s.sh + r - s.ph;
              if (ih < 0 || ih >= s.H) continue;
              for (int q = 0; q < Q; ++q) {
                int iw = q * s.sw + t - s.pw;
                if (iw < 0 || iw >= s.W) continue;
                a += (double)dy[(((size_t)n * s.K + k) * P + p) * Q + q] *
                     x[(((size_t)n * s.C + c) * s.H + ih) * s.W + iw];
              }
            }
          dw[(((size_t)k * s.C + c) * s.R + r) * s.S + t] = (float)a;
        }
  }
}

// Partial sums per fixed group of images (at least 16 images, at most 64 groups; one thread runs a
// group, its images in order), reduced in group order in double: the result depends only on the
// inputs, not on the thread count or on which thread ran which group.
static void backward_weight_gemm(const ConvShape& s, const float* dy, const float* x, float* dw,
                                 float* db) {
  const int kGroup = std::max(16, (s.N + 63) / 64);
  const int PQ = s.P() * s.Q(), CRS = s.C * s.R * s.S;
  const int ng = (s.N + kGroup - 1) / kGroup;
  const size_t wsz = (size_t)s.K * CRS;
  std::vector<float> part((size_t)ng * wsz, 0.f);
  std::vector<double> dbp((size_t)ng * s.K, 0.0);
#pragma omp parallel
  {
    std::vector<float> col((size_t)CRS * PQ);
#pragma omp for schedule(dynamic, 1)
    for (int g = 0; g < ng; ++g) {
      float* pw = part.data() + (size_t)g * wsz;
      double* pb = dbp.data() + (size_t)g * s.K;
      for (int n = g * kGroup; n < std::min(s.N, (g + 1) * kGroup); ++n) {
        im2col(s, x + (size_t)n * s.C * s.H * s.W, col.data());
        const float* dyn = dy + (size_t)n * s.K * PQ;
        // pw (K, CRS) += dy_n (K, PQ) * col^T (PQ, CRS)
        sgemm(false, true, s.K, CRS, PQ, 1.f, dyn, PQ, col.data(), PQ, 1.f, pw, CRS);
        if (db)
          for (int k = 0; k < s.K; ++k) {
            double a = 0.0;
            for (int i = 0; i < PQ; ++i) a += dyn[(size_t)k * PQ + i];
            pb[k] += a;
          }
      }
    }
  }
  for (size_t i = 0; i < wsz; ++i) {
    double a = 0.0;
    for (int g = 0; g < ng; ++g) a += part[(size_t)g * wsz + i];
    dw[i] = (float)a;
  }
  if (db)
    for (int k = 0; k < s.K; ++k) {
      double a = 0.0;
      for (int g = 0; g < ng; ++g) a += dbp[(size_t)g * s.K + k];
      db[k] = (float)a;
    }
}

#if FM_X86
// One image, one block of 16*NV output channels: part (CRSp, 16*NV) += x-pixels x dy^T.
// xp (C,Hp,Wp) padded image, koff[C*R*S] offsets of (c,r,s), pqoff[P*Q] offsets of the output
// pixels, dyt (P*Q, 16*NV) transposed output gradient of this channel block.
template <int MR, int NV>
__attribute__((target("avx512f"))) static void bwdw_block_avx512(
    const float* xp, const int* koff, int CRS, const int* pqoff, int PQ, const float* dyt, float* part) {
  constexpr int KW = 16 * NV;
  for (int i0 = 0; i0 < CRS; i0 += MR) {
    const float* ptr[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) ptr[i] = xp + koff[std::min(i0 + i, CRS - 1)];
    float* pr = part + (size_t)i0 * KW;
    __m512 c[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) c[i][v] = _mm512_load_ps(pr + i * KW + 16 * v);
    const float* g = dyt;
    for (int j = 0; j < PQ; ++j, g += KW) {
      const int o = pqoff[j];
      __m512 gv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) gv[v] = _mm512_load_ps(g + 16 * v);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        __m512 a = _mm512_set1_ps(ptr[i][o]);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) c[i][v] = _mm512_fmadd_ps(a, gv[v], c[i][v]);
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) _mm512_store_ps(pr + i * KW + 16 * v, c[i][v]);
  }
}

template <class T>
struct AlignedBuf {  // 64-byte aligned, zero-initialised scratch (no allocation in inner loops)
  std::vector<T> v;
  T* p;
  explicit AlignedBuf(size_t n) : v(n + 64 / sizeof(T), T(0)) {
    uintptr_t a = reinterpret_cast<uintptr_t>(v.data());
    p = reinterpret_cast<T*>((a + 63) & ~uintptr_t(63));
  }
};

// dy_n (K, PQ) -> dyt [K/KW][PQ][KW] (KW = 16 or 32; channels beyond K stay zero) in 16 x 16
// blocks, and pb[k] += sum over PQ of dy_n[k] (the bias gradient).
__attribute__((target("avx512f"))) static void transpose_dy_avx512(const float* dyn, int K, int PQ, int KW,
                                                                    float* dyt, double* pb) {
  for (int k0 = 0; k0 < K; k0 += 16) {
    const int kn = std::min(16, K - k0);
    float* base = dyt + (size_t)(k0 / KW) * PQ * KW + k0 % KW;
    __m512 bsum = _mm512_setzero_ps();
    for (int j0 = 0; j0 < PQ; j0 += 16) {
      const int jn = std::min(16, PQ - j0);
      const __mmask16 mj = (__mmask16)((1u << jn) - 1);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < kn ? _mm512_maskz_loadu_ps(mj, dyn + (size_t)(k0 + i) * PQ + j0) : _mm512_setzero_ps();
      detail::transpose16_avx512(r);
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        if (i >= jn) break;
        bsum = _mm512_add_ps(bsum, r[i]);
        _mm512_storeu_ps(base + (size_t)(j0 + i) * KW, r[i]);
      }
    }
    alignas(64) float b[16];
    _mm512_store_ps(b, bsum);
    for (int i = 0; i < kn; ++i) pb[k0 + i] += b[i];
  }
}

// AVX2 + FMA version of bwdw_block_avx512 with 16 channels (two ymm) per row of the tile.
template <int MR>
__attribute__((target("avx2,fma"))) static void bwdw_block_avx2(
    const float* xp, const int* koff, int CRS, const int* pqoff, int PQ, const float* dyt, float* part) {
  constexpr int KW = 16;
  for (int i0 = 0; i0 < CRS; i0 += MR) {
    const float* ptr[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) ptr[i] = xp + koff[std::min(i0 + i, CRS - 1)];
    float* pr = part + (size_t)i0 * KW;
    __m256 c[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      c[i][0] = _mm256_loadu_ps(pr + i * KW);
      c[i][1] = _mm256_loadu_ps(pr + i * KW + 8);
    }
    const float* g = dyt;
    for (int j = 0; j < PQ; ++j, g += KW) {
      const int o = pqoff[j];
      const __m256 g0 = _mm256_loadu_ps(g), g1 = _mm256_loadu_ps(g + 8);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256 a = _mm256_broadcast_ss(ptr[i] + o);
        c[i][0] = _mm256_fmadd_ps(a, g0, c[i][0]);
        c[i][1] = _mm256_fmadd_ps(a, g1, c[i][1]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      _mm256_storeu_ps(pr + i * KW, c[i][0]);
      _mm256_storeu_ps(pr + i * KW + 8, c[i][1]);
    }
  }
}

// dy_n (K, PQ) -> dyt [K/KW][PQ][KW] and pb[k] += sum of dy_n[k] (scalar, for the AVX2 path).
static void transpose_dy_generic(const float* dyn, int K, int PQ, int KW, float* dyt, double* pb) {
  for (int k = 0; k < K; ++k) {
    const float* src = dyn + (size_t)k * PQ;
    float* dst = dyt + (size_t)(k / KW) * PQ * KW + k % KW;
    float a = 0.f;
    for (int j = 0; j < PQ; ++j) {
      dst[(size_t)j * KW] = src[j];
      a += src[j];
    }
    pb[k] += a;
  }
}

// Weight gradient, any stride, AVX-512 or AVX2: dy (N,K,P,Q), x (N,C,H,W) -> dw (K,C,R,S), db.
static void backward_weight_bx(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                               bool avx512) {
  const int P = s.P(), Q = s.Q(), PQ = P * Q, CRS = s.C * s.R * s.S;
  const int Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw;
  const int NV = (s.K <= 16 || !avx512) ? 1 : 2, KW = 16 * NV, MR = !avx512 ? 6 : NV == 1 ? 12 : 8;
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
        const float* dyn = dy + (size_t)n * s.K * PQ;
        if (avx512)
          transpose_dy_avx512(dyn, s.K, PQ, KW, dyt.p, pb);
        else
          transpose_dy_generic(dyn, s.K, PQ, KW, dyt.p, pb);
        for (int kb = 0; kb < nkb; ++kb) {
          const float* g = dyt.p + (size_t)kb * PQ * KW;
          float* pk = pw + (size_t)kb * CRSp * KW;
          if (!avx512)
            bwdw_block_avx2<6>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, g, pk);
          else if (NV == 1)
            bwdw_block_avx512<12, 1>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, g, pk);
          else
            bwdw_block_avx512<8, 2>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, g, pk);
        }
      }
    }
  }
  for (int k = 0; k < s.K; ++k)
    for (int i = 0; i < CRS; ++i) {
      size_t off = ((size_t)(k / KW) * CRSp + i) * KW + k % KW;
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

#endif

static void backward_weight_fast(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                                 ConvImpl impl) {
  constexpr Op op = Op::conv2d_backward_weight;
  if (winograd_try_backward_weight(s, dy, x, dw, db, impl)) return;
#if FM_X86
  if (impl == ConvImpl::fast && gemm_isa() == Isa::avx512) {
    if (conv2d_backward_weight_first_layer(s, dy, x, dw, db)) return note_kernel(op, "avx512 first-layer wgrad");
    note_kernel(op, "avx512 direct");
    return backward_weight_bx(s, dy, x, dw, db, true);
  }
  if (impl == ConvImpl::fast && gemm_isa() == Isa::avx2) {
    note_kernel(op, "avx2 direct");
    return backward_weight_bx(s, dy, x, dw, db, false);
  }
#endif
  note_kernel(op, "im2col + sgemm");
  backward_weight_gemm(s, dy, x, dw, db);
}

void conv2d_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                            ConvImpl impl) {
  if (impl == ConvImpl::reference) {
    note_kernel(Op::conv2d_backward_weight, "reference");
    return conv2d_backward_weight_reference(s, dy, x, dw, db);
  }
  if (s.N <= 0) {
    std::fill(dw, dw + (size_t)s.K * s.C * s.R * s.S, 0.f);
    if (db) std::fill(db, db + s.K, 0.f);
    return;
  }
  backward_weight_fast(s, dy, x, dw, db, impl);
  if (!all_finite(dw, (size_t)s.K * s.C * s.R * s.S)) {  // see conv2d_forward
    note_kernel(Op::conv2d_backward_weight, "reference");
    conv2d_backward_weight_reference(s, dy, x, dw, db);
  }
}

}  // namespace fm
