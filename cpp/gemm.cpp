// Blocked SGEMM (BLIS/GotoBLAS structure): op(B) is packed into NR-column panels of KC rows,
// op(A) into MR-row panels, and a register-blocked micro-kernel computes one MR x NR tile of C
// from one A panel and one B panel. Micro-kernels exist for AVX-512 (8 x 32), AVX2+FMA (6 x 16)
// and portable C++ (4 x 16, auto-vectorised); the widest one the CPU supports is chosen at run
// time (GCC target attributes + __builtin_cpu_supports), so the default build stays portable.
#include "gemm.hpp"

#include <algorithm>
#include <atomic>
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
// micro-kernels: C tile (m <= MR rows, n <= NR cols, row stride ldc) = [C +] Apanel * Bpanel
// Apanel: kc x MR (k-major, MR contiguous), Bpanel: kc x NR (k-major, NR contiguous).
// ---------------------------------------------------------------------------------------------

using ukr_t = void (*)(int kc, const float* A, const float* B, float* C, int ldc, int m, int n,
                       bool accumulate);

template <int MR, int NR>
static void ukr_generic(int kc, const float* A, const float* B, float* C, int ldc, int m, int n,
                        bool acc) {
  float c[MR][NR] = {};
  for (int k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i) {
      float a = A[i];
      for (int j = 0; j < NR; ++j) c[i][j] += a * B[j];
    }
    A += MR;
    B += NR;
  }
  for (int i = 0; i < m; ++i) {
    float* row = C + (size_t)i * ldc;
    if (acc)
      for (int j = 0; j < n; ++j) row[j] += c[i][j];
    else
      for (int j = 0; j < n; ++j) row[j] = c[i][j];
  }
}

#if FM_X86
__attribute__((target("avx2,fma"))) static void ukr_avx2(int kc, const float* A, const float* B,
                                                         float* C, int ldc, int m, int n, bool acc) {
  constexpr int MR = 6;
  __m256 c[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      __m256 a = _mm256_broadcast_ss(A + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
    A += MR;
    B += 16;
  }
  if (n == 16) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      if (i >= m) break;
      float* row = C + (size_t)i * ldc;
      __m256 v0 = c[i][0], v1 = c[i][1];
      if (acc) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, v0);
      _mm256_storeu_ps(row + 8, v1);
    }
  } else {
    alignas(32) float t[MR][16];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      _mm256_store_ps(t[i], c[i][0]);
      _mm256_store_ps(t[i] + 8, c[i][1]);
    }
    for (int i = 0; i < m; ++i) {
      float* row = C + (size_t)i * ldc;
      if (acc)
        for (int j = 0; j < n; ++j) row[j] += t[i][j];
      else
        for (int j = 0; j < n; ++j) row[j] = t[i][j];
    }
  }
}

__attribute__((target("avx512f"))) static void ukr_avx512(int kc, const float* A, const float* B,
                                                          float* C, int ldc, int m, int n, bool acc) {
  constexpr int MR = 8;
  __m512 c[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    __m512 b0 = _mm512_loadu_ps(B), b1 = _mm512_loadu_ps(B + 16);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      __m512 a = _mm512_set1_ps(A[i]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
    }
    A += MR;
    B += 32;
  }
  __mmask16 m0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
  __mmask16 m1 = n >= 32 ? (__mmask16)0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : (__mmask16)0;
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    float* row = C + (size_t)i * ldc;
    __m512 v0 = c[i][0], v1 = c[i][1];
    if (acc) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row + 16));
    }
    _mm512_mask_storeu_ps(row, m0, v0);
    _mm512_mask_storeu_ps(row + 16, m1, v1);
  }
}
#endif

// ---------------------------------------------------------------------------------------------
// dispatch
// ---------------------------------------------------------------------------------------------

struct Kernel {
  Isa isa;
  int mr, nr;
  ukr_t fn;
  const char* name;
};

static const Kernel kGeneric{Isa::generic, 4, 16, &ukr_generic<4, 16>, "generic"};
#if FM_X86
static const Kernel kAvx2{Isa::avx2, 6, 16, &ukr_avx2, "avx2"};
static const Kernel kAvx512{Isa::avx512, 8, 32, &ukr_avx512, "avx512"};
#endif

static bool cpu_has(Isa isa) {
  if (isa == Isa::generic) return true;
#if FM_X86
  __builtin_cpu_init();
  if (isa == Isa::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::avx512) return __builtin_cpu_supports("avx512f");
#endif
  return false;
}

static const Kernel* kernel_for(Isa isa) {
#if FM_X86
  if (isa == Isa::avx512) return &kAvx512;
  if (isa == Isa::avx2) return &kAvx2;
#endif
  return &kGeneric;
}

static bool parse_isa(const char* name, Isa& out) {
  if (!name) return false;
  if (!std::strcmp(name, "generic")) out = Isa::generic;
  else if (!std::strcmp(name, "avx2")) out = Isa::avx2;
  else if (!std::strcmp(name, "avx512")) out = Isa::avx512;
  else return false;
  return true;
}

static Isa initial_isa() {
  Isa best = cpu_has(Isa::avx512) ? Isa::avx512 : cpu_has(Isa::avx2) ? Isa::avx2 : Isa::generic;
  Isa env;
  if (parse_isa(std::getenv("FASTMNIST_ISA"), env) && int(env) <= int(best)) best = env;
  return best;
}

static std::atomic<int> g_isa{int(initial_isa())};

Isa gemm_isa() { return Isa(g_isa.load(std::memory_order_relaxed)); }
const char* gemm_isa_name() { return kernel_for(gemm_isa())->name; }
bool gemm_set_isa(const char* name) {
  Isa isa;
  if (!parse_isa(name, isa) || !cpu_has(isa)) return false;
  g_isa.store(int(isa));
  return true;
}

// ---------------------------------------------------------------------------------------------
// packing
// ---------------------------------------------------------------------------------------------

// op(A)[i0:i0+m, k0:k0+kc] * alpha -> MR-row panels (zero-padded to a multiple of MR rows).
static void pack_a(bool ta, const float* A, int lda, int i0, int m, int k0, int kc, float alpha,
                   int MR, float* dst) {
  for (int ip = 0; ip < m; ip += MR) {
    int mr = std::min(MR, m - ip);
    if (!ta) {
      for (int i = 0; i < MR; ++i) {
        if (i < mr) {
          const float* src = A + (size_t)(i0 + ip + i) * lda + k0;
          for (int k = 0; k < kc; ++k) dst[(size_t)k * MR + i] = alpha * src[k];
        } else {
          for (int k = 0; k < kc; ++k) dst[(size_t)k * MR + i] = 0.f;
        }
      }
    } else {
      for (int k = 0; k < kc; ++k) {
        const float* src = A + (size_t)(k0 + k) * lda + i0 + ip;
        float* d = dst + (size_t)k * MR;
        for (int i = 0; i < mr; ++i) d[i] = alpha * src[i];
        for (int i = mr; i < MR; ++i) d[i] = 0.f;
      }
    }
    dst += (size_t)MR * kc;
  }
}

// op(B)[k0:k0+kc, j0:j0+n] -> NR-column panels (zero-padded to a multiple of NR columns).
static void pack_b(bool tb, const float* B, int ldb, int k0, int kc, int j0, int n, int NR,
                   float* dst) {
  for (int jp = 0; jp < n; jp += NR) {
    int nr = std::min(NR, n - jp);
    if (!tb) {
      for (int k = 0; k < kc; ++k) {
        const float* src = B + (size_t)(k0 + k) * ldb + j0 + jp;
        float* d = dst + (size_t)k * NR;
        if (nr == NR)
          for (int j = 0; j < NR; ++j) d[j] = src[j];
        else {
          for (int j = 0; j < nr; ++j) d[j] = src[j];
          for (int j = nr; j < NR; ++j) d[j] = 0.f;
        }
      }
    } else {
      for (int j = 0; j < NR; ++j) {
        if (j < nr) {
          const float* src = B + (size_t)(j0 + jp + j) * ldb + k0;
          for (int k = 0; k < kc; ++k) dst[(size_t)k * NR + j] = src[k];
        } else {
          for (int k = 0; k < kc; ++k) dst[(size_t)k * NR + j] = 0.f;
        }
      }
    }
    dst += (size_t)NR * kc;
  }
}

#if FM_X86
// AVX-512 packing for the two layouts that need a transpose (row-major A into k-major MR = 8
// panels; B^T into k-major NR = 32 panels), 16 x 16 blocks transposed in registers.
__attribute__((target("avx512f"))) static void pack_a_rows_avx512(const float* A, int lda, int i0, int m, int k0,
                                                                   int kc, float alpha, float* dst) {
  constexpr int MR = 8;
  const __m512 va = _mm512_set1_ps(alpha);
  for (int ip = 0; ip < m; ip += MR) {
    const int mr = std::min(MR, m - ip);
    for (int kb = 0; kb < kc; kb += 16) {
      const int kn = std::min(16, kc - kb);
      const __mmask16 mk = (__mmask16)((1u << kn) - 1);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < mr ? _mm512_mul_ps(va, _mm512_maskz_loadu_ps(mk, A + (size_t)(i0 + ip + i) * lda + k0 + kb))
                      : _mm512_setzero_ps();
      detail::transpose16_avx512(r);
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) {
        if (k >= kn) break;
        _mm256_storeu_ps(dst + (size_t)(kb + k) * MR, _mm512_castps512_ps256(r[k]));
      }
    }
    dst += (size_t)MR * kc;
  }
}

__attribute__((target("avx512f"))) static void pack_bt_avx512(const float* B, int ldb, int k0, int kc, int j0, int n,
                                                              float* dst) {
  constexpr int NR = 32;
  for (int jp = 0; jp < n; jp += NR) {
    const int nr = std::min(NR, n - jp);
    for (int kb = 0; kb < kc; kb += 16) {
      const int kn = std::min(16, kc - kb);
      const __mmask16 mk = (__mmask16)((1u << kn) - 1);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i)
          r[i] = 16 * h + i < nr ? _mm512_maskz_loadu_ps(mk, B + (size_t)(j0 + jp + 16 * h + i) * ldb + k0 + kb)
                                 : _mm512_setzero_ps();
        detail::transpose16_avx512(r);
#pragma GCC unroll 16
        for (int k = 0; k < 16; ++k) {
          if (k >= kn) break;
          _mm512_storeu_ps(dst + (size_t)(kb + k) * NR + 16 * h, r[k]);
        }
      }
    }
    dst += (size_t)NR * kc;
  }
}
#endif

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
  const Kernel& kr = *kernel_for(gemm_isa());
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
#if FM_X86
      if (tb && kr.isa == Isa::avx512)
        pack_bt_avx512(B, ldb, pc, kc, jc, nc, bp);
      else
#endif
        pack_b(tb, B, ldb, pc, kc, jc, nc, NR, bp);
      for (int ic = 0; ic < M; ic += MC) {
        int mc = std::min(MC, M - ic);
#if FM_X86
        if (!ta && kr.isa == Isa::avx512)
          pack_a_rows_avx512(A, lda, ic, mc, pc, kc, alpha, ap);
        else
#endif
          pack_a(ta, A, lda, ic, mc, pc, kc, alpha, MR, ap);
        for (int jr = 0; jr < nc; jr += NR) {
          int nr = std::min(NR, nc - jr);
          const float* bpanel = bp + (size_t)(jr / NR) * NR * kc;
          for (int ir = 0; ir < mc; ir += MR) {
            int mr = std::min(MR, mc - ir);
            kr.fn(kc, ap + (size_t)(ir / MR) * MR * kc, bpanel, C + (size_t)(ic + ir) * ldc + jc + jr,
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
  const Kernel& kr = *kernel_for(gemm_isa());
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
