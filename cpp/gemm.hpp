// The SGEMM every conv / linear layer runs on.
#pragma once

#include "common.hpp"

namespace fm {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major.
// op(A) = A (M x K, row stride lda) or A^T (A stored K x M, row stride lda) when trans_a.
// op(B) = B (K x N, row stride ldb) or B^T (B stored N x K, row stride ldb) when trans_b.
// beta == 0 overwrites C (NaN/garbage in C is ignored).
// sgemm is single-threaded and safe to call inside an OpenMP region (one image per thread);
// sgemm_parallel splits the work across the OpenMP threads itself.
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);
void sgemm_parallel(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc);

// Plain triple loop, kept for tests.
void sgemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                     int lda, const float* B, int ldb, float beta, float* C, int ldc);

// Isa and gemm_isa() (the run-time instruction-set choice) are declared in common.hpp.
const char* gemm_isa_name();
// Selects `name` ("generic", "avx2", "avx512"); returns false (and changes nothing) when the name
// is unknown or the CPU lacks that instruction set.
bool gemm_set_isa(const char* name);

#if FM_X86
namespace detail {
// In-register 16 x 16 transpose: rows r[0..15] -> r[c] = column c.
__attribute__((target("avx512f"), always_inline)) inline void transpose16_avx512(__m512 (&r)[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4i+j], 128-bit lane L: column 4L+j of rows 4i..4i+3
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512 s0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), s1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    const __m512 s2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), s3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    t[0 + j] = _mm512_shuffle_f32x4(s0, s2, 0x88);
    t[8 + j] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
    t[4 + j] = _mm512_shuffle_f32x4(s1, s3, 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

}  // namespace detail
#endif

}  // namespace fm
