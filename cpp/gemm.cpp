// Blocked SGEMM (BLIS/GotoBLAS structure): op(B) is packed into NR-column panels of KC rows,
// op(A) into MR-row panels, and a register-blocked micro-kernel computes one MR x NR tile of C
// from one A panel and one B panel. The micro-kernel and packers are written once (gemm.inl) and
// instantiated per ISA (AVX-512 8 x 32, AVX2+FMA 6 x 16, NEON 8 x 8, generic 4 x 16); the dispatch
// (dispatch.hpp) picks the current level's copy at run time, so the default build stays portable.
#include "gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.hpp"

namespace fm {

// ---------------------------------------------------------------------------------------------
// reference
// ---------------------------------------------------------------------------------------------

void sgemm_reference(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                     const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0;
      for (int k = 0; k < K; ++k) {
        float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        acc += (double)a * b;
      }
      float c = beta == 0.f ? 0.f : beta * C[(size_t)i * ldc + j];
      C[(size_t)i * ldc + j] = c + alpha * (float)acc;
    }
}

// ---------------------------------------------------------------------------------------------
// kernels (gemm.inl, one copy per ISA)
// ---------------------------------------------------------------------------------------------

struct GemmKernels {
  int mr, nr;
  void (*ukr)(int kc, const float* A, const float* B, float* C, int ldc, int m, int n, bool accumulate);
  void (*pack_a)(bool ta, const float* A, int lda, int i0, int m, int k0, int kc, float alpha, float* dst);
  void (*pack_b)(bool tb, const float* B, int ldb, int k0, int kc, int j0, int n, float* dst);
  const char* name;
};

}  // namespace fm

#define FM_KERNELS_FILE "gemm.inl"
#include "simd/instantiate.hpp"

namespace fm {

// ---------------------------------------------------------------------------------------------
// driver
// ---------------------------------------------------------------------------------------------

constexpr int KC = 128;  // rows of a packed B panel (the KC x NR micro-panel stays in L1)
constexpr int MC = 192;   // rows of packed A per block (multiple of 8, 6 and 4; the block stays in L2)
constexpr int NC = 1024;  // columns of packed B per block (fits L2)

// Per-thread packing buffers, grown on demand and kept between calls.
static float* pack_buffer(int which, size_t n) {
  thread_local std::vector<float> buf[2];
  if (buf[which].size() < n) buf[which].resize(n);
  return buf[which].data();
}

static void scale_c(int M, int N, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    float* row = C + (size_t)i * ldc;
    if (beta == 0.f)
      for (int j = 0; j < N; ++j) row[j] = 0.f;
    else
      for (int j = 0; j < N; ++j) row[j] *= beta;
  }
}

void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {
    if (beta != 1.f) scale_c(M, N, beta, C, ldc);
    return;
  }
  const GemmKernels& kr = FM_PICK(kGemm);
  note_kernel(Op::sgemm, kr.name);
  const int MR = kr.mr, NR = kr.nr;
  bool first_acc = beta != 0.f;
  if (beta != 0.f && beta != 1.f) scale_c(M, N, beta, C, ldc);
  const int nc_max = std::min(NC, (N + NR - 1) / NR * NR);
  const int mc_max = std::min(MC, (M + MR - 1) / MR * MR);
  const int kc_max = std::min(KC, K);
  float* bp = pack_buffer(0, (size_t)nc_max * kc_max);
  float* ap = pack_buffer(1, (size_t)mc_max * kc_max);
  for (int jc = 0; jc < N; jc += NC) {
    int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      int kc = std::min(KC, K - pc);
      bool acc = pc > 0 || first_acc;
      kr.pack_b(tb, B, ldb, pc, kc, jc, nc, bp);
      for (int ic = 0; ic < M; ic += MC) {
        int mc = std::min(MC, M - ic);
        kr.pack_a(ta, A, lda, ic, mc, pc, kc, alpha, ap);
        for (int jr = 0; jr < nc; jr += NR) {
          int nr = std::min(NR, nc - jr);
          const float* bpanel = bp + (size_t)(jr / NR) * NR * kc;
          for (int ir = 0; ir < mc; ir += MR) {
            int mr = std::min(MR, mc - ir);
            kr.ukr(kc, ap + (size_t)(ir / MR) * MR * kc, bpanel, C + (size_t)(ic + ir) * ldc + jc + jr,
                  ldc, mr, nr, acc);
          }
        }
      }
    }
  }
}

void sgemm_parallel(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  int nt = max_threads();
#ifdef _OPENMP
  if (omp_in_parallel()) nt = 1;
#endif
  double work = (double)M * N * K;
  if (nt <= 1 || work < 2e5 || M <= 0 || N <= 0) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const GemmKernels& kr = FM_PICK(kGemm);
  // Split the larger dimension of C into per-thread blocks aligned to the register tile.
  bool split_n = (N / kr.nr) >= (M / kr.mr);
  int unit = split_n ? kr.nr : kr.mr;
  int total = split_n ? N : M;
  int units = (total + unit - 1) / unit;
  if (units < nt) nt = std::max(1, units);
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    split_range(units, thread_id(), num_threads(), b, e);
    int lo = int(b) * unit, hi = std::min(total, int(e) * unit);
    if (lo < hi) {
      if (split_n) {
        const float* Bs = tb ? B + (size_t)lo * ldb : B + lo;
        sgemm(ta, tb, M, hi - lo, K, alpha, A, lda, Bs, ldb, beta, C + lo, ldc);
      } else {
        const float* As = ta ? A + lo : A + (size_t)lo * lda;
        sgemm(ta, tb, hi - lo, N, K, alpha, As, lda, B, ldb, beta, C + (size_t)lo * ldc, ldc);
      }
    }
  }
}

}  // namespace fm
