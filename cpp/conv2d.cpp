// 2-D convolution: forward, backward_input, backward_weight (+ bias).
//
// Three implementations of each op:
// - reference: plain loops with double accumulation (tests).
// - gemm: im2col + fm::sgemm per image, col2im for the input gradient (any ISA, any stride).
// - fast (AVX-512): "broadcast-x" register tiles. The image is copied once into a zero-padded
//   per-thread buffer xp (C, H+2ph, W+2pw); a tile holds MR output pixels x 16*NV output channels
//   in zmm registers, and every step of the C*R*S reduction broadcasts MR pixels of xp (addressed
//   through an offset table, so no im2col matrix is ever built and any stride works) against one
//   packed weight row. The input gradient with stride 1 is the same kernel run on dy with the
//   flipped, transposed weights; the weight gradient is the same tile with the roles of pixels
//   and channels exchanged (reduction over output pixels, dy transposed per image).
// OpenMP runs over the batch; each thread owns whole images and allocates its workspaces once per
// call. Weight gradients go to per-thread partial buffers summed in thread order (no atomics), so
// results depend only on the thread count.
#include "conv2d.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FM_X86 1
#else
#define FM_X86 0
#endif

#include "common.hpp"
#include "gemm.hpp"

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
          if (relu && !(v > 0.f)) v = 0.f;
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
#pragma omp for schedule(static)
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
static void pad_image(const ConvShape& s, const float* x, float* xp) {
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
        if (relu) t = _mm512_max_ps(t, _mm512_setzero_ps());
        _mm512_store_ps(&tile[i][16 * v], t);
      }
    for (int kk = 0; kk < kn; ++kk) {
      float* yr = y + (size_t)kk * PQ + pq0;
      for (int i = 0; i < mr; ++i) yr[i] = tile[i][kk];
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
#pragma omp for schedule(static)
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

void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                    bool relu, ConvImpl impl) {
  if (s.N <= 0) return;
  if (impl == ConvImpl::reference) return conv2d_forward_reference(s, x, w, b, y, relu);
#if FM_X86
  if (impl == ConvImpl::fast && gemm_isa() == Isa::avx512) return forward_avx512(s, x, w, b, y, relu);
#endif
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
#pragma omp for schedule(static)
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
  if (impl == ConvImpl::reference) return conv2d_backward_input_reference(s, dy, w, dx);
#if FM_X86
  const int qh = s.R - 1 - s.ph, qw = s.S - 1 - s.pw;
  if (impl == ConvImpl::fast && gemm_isa() == Isa::avx512 && s.sh == 1 && s.sw == 1 && qh >= 0 && qw >= 0) {
    // Stride 1: dx = conv(dy padded by R-1-ph, w flipped in R,S and transposed to (C,K,R,S)).
    ConvShape t{s.N, s.K, s.P(), s.Q(), s.C, s.R, s.S, 1, 1, qh, qw};
    std::vector<float> wf((size_t)s.C * s.K * s.R * s.S);
    for (int k = 0; k < s.K; ++k)
      for (int c = 0; c < s.C; ++c)
        for (int r = 0; r < s.R; ++r)
          for (int u = 0; u < s.S; ++u)
            wf[(((size_t)c * s.K + k) * s.R + (s.R - 1 - r)) * s.S + (s.S - 1 - u)] =
                w[(((size_t)k * s.C + c) * s.R + r) * s.S + u];
    return forward_avx512(t, dy, wf.data(), nullptr, dx, false);
  }
#endif
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

static void backward_weight_gemm(const ConvShape& s, const float* dy, const float* x, float* dw,
                                 float* db) {
  const int PQ = s.P() * s.Q(), CRS = s.C * s.R * s.S;
  const int T = max_threads();
  std::vector<float> part((size_t)T * s.K * CRS, 0.f), dbp((size_t)T * s.K, 0.f);
#pragma omp parallel num_threads(T)
  {
    const int t = thread_id();
    std::vector<float> col((size_t)CRS * PQ);
    float* pw = part.data() + (size_t)t * s.K * CRS;
    float* pb = dbp.data() + (size_t)t * s.K;
#pragma omp for schedule(static)
    for (int n = 0; n < s.N; ++n) {
      im2col(s, x + (size_t)n * s.C * s.H * s.W, col.data());
      const float* dyn = dy + (size_t)n * s.K * PQ;
      // pw (K, CRS) += dy_n (K, PQ) * col^T (PQ, CRS)
      sgemm(false, true, s.K, CRS, PQ, 1.f, dyn, PQ, col.data(), PQ, 1.f, pw, CRS);
      if (db)
        for (int k = 0; k < s.K; ++k) {
          float a = 0.f;
          for (int i = 0; i < PQ; ++i) a += dyn[(size_t)k * PQ + i];
          pb[k] += a;
        }
    }
  }
  for (size_t i = 0; i < (size_t)s.K * CRS; ++i) {
    float a = 0.f;
    for (int t = 0; t < T; ++t) a += part[(size_t)t * s.K * CRS + i];
    dw[i] = a;
  }
  if (db)
    for (int k = 0; k < s.K; ++k) {
      float a = 0.f;
      for (int t = 0; t < T; ++t) a += dbp[(size_t)t * s.K + k];
      db[k] = a;
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

static void backward_weight_avx512(const ConvShape& s, const float* dy, const float* x, float* dw,
                                   float* db) {
  const int P = s.P(), Q = s.Q(), PQ = P * Q, CRS = s.C * s.R * s.S;
  const int Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw;
  const int NV = s.K <= 16 ? 1 : 2, KW = 16 * NV, MR = NV == 1 ? 12 : 8;
  const int nkb = (s.K + KW - 1) / KW;
  const int CRSp = (CRS + MR - 1) / MR * MR;
  std::vector<int> koff(CRS), pqoff(PQ);
  for (int c = 0; c < s.C; ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t) koff[(c * s.R + r) * s.S + t] = (c * Hp + r) * Wp + t;
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) pqoff[p * Q + q] = p * s.sh * Wp + q * s.sw;
  const int T = max_threads();
  const size_t part_sz = (size_t)nkb * CRSp * KW;
  AlignedBuf<float> part((size_t)T * part_sz);
  std::vector<double> dbp((size_t)T * s.K, 0.0);
#pragma omp parallel num_threads(T)
  {
    const int t = thread_id();
    std::vector<float> xp((size_t)s.C * Hp * Wp, 0.f);
    AlignedBuf<float> dyt((size_t)nkb * PQ * KW);
    float* pw = part.p + (size_t)t * part_sz;
    double* pb = dbp.data() + (size_t)t * s.K;
#pragma omp for schedule(static)
    for (int n = 0; n < s.N; ++n) {
      pad_image(s, x + (size_t)n * s.C * s.H * s.W, xp.data());
      const float* dyn = dy + (size_t)n * s.K * PQ;
      for (int k = 0; k < s.K; ++k) {  // transpose dy_n (K, PQ) -> dyt [kb][PQ][KW]
        const float* src = dyn + (size_t)k * PQ;
        float* dst = dyt.p + (size_t)(k / KW) * PQ * KW + k % KW;
        float a = 0.f;
        for (int j = 0; j < PQ; ++j) {
          dst[(size_t)j * KW] = src[j];
          a += src[j];
        }
        pb[k] += a;
      }
      for (int kb = 0; kb < nkb; ++kb) {
        const float* g = dyt.p + (size_t)kb * PQ * KW;
        float* pk = pw + (size_t)kb * CRSp * KW;
        if (NV == 1)
          bwdw_block_avx512<12, 1>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, g, pk);
        else
          bwdw_block_avx512<8, 2>(xp.data(), koff.data(), CRS, pqoff.data(), PQ, g, pk);
      }
    }
  }
  for (int k = 0; k < s.K; ++k)
    for (int i = 0; i < CRS; ++i) {
      size_t off = ((size_t)(k / KW) * CRSp + i) * KW + k % KW;
      float a = 0.f;
      for (int t = 0; t < T; ++t) a += part.p[(size_t)t * part_sz + off];
      dw[(size_t)k * CRS + i] = a;
    }
  if (db)
    for (int k = 0; k < s.K; ++k) {
      double a = 0.0;
      for (int t = 0; t < T; ++t) a += dbp[(size_t)t * s.K + k];
      db[k] = (float)a;
    }
}
#endif

void conv2d_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                            ConvImpl impl) {
  if (impl == ConvImpl::reference) return conv2d_backward_weight_reference(s, dy, x, dw, db);
  if (s.N <= 0) {
    std::fill(dw, dw + (size_t)s.K * s.C * s.R * s.S, 0.f);
    if (db) std::fill(db, db + s.K, 0.f);
    return;
  }
#if FM_X86
  if (impl == ConvImpl::fast && gemm_isa() == Isa::avx512) return backward_weight_avx512(s, dy, x, dw, db);
#endif
  backward_weight_gemm(s, dy, x, dw, db);
}

}  // namespace fm
