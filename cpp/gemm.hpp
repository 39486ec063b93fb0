// The SGEMM every conv / linear layer runs on.
#pragma once

#include "common.hpp"

namespace fm {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major.
// op(A) = A (M x K, row stride lda) or A^T (A stored K x M, row stride lda) when trans_a.
// op(B) = B (K x N, row stride ldb) or B^T (B stored N x K, row stride ldb) when trans_b.
// beta == 0 overwrites C (NaN/garbage in C is ignored).
// sgemm is single-threaded and safe to call inside an OpenMP region (one image per thread);
// sgemm_parallel splits the work across the OpenMP threads itself. The result does not depend on
// the thread count: every element is the same sequence of operations.
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);
void sgemm_parallel(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc);

// C[M,N] = op(A) * op(B), then C[i,j] += bias[j] (bias may be null) and, with relu, max(C, 0)
// (NaN kept), applied by each thread to its own finished rows: linear's forward in one pass.
// parallel = false runs on the calling thread only (safe inside an OpenMP region).
void sgemm_bias_relu(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B,
                     int ldb, const float* bias, bool relu, float* C, int ldc, bool parallel);

// C[:, j0:j1] of sgemm(...) on the calling thread only (safe inside an OpenMP region): for
// callers that split one or more GEMMs between their threads by columns, without barriers.
// Column ranges that start at multiples of sgemm_column_unit() waste no packed columns.
void sgemm_columns(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C, int ldc, int j0, int j1);
int sgemm_column_unit();

// C[M,N] = A[M,K] B[N,K]^T (+ bias[j], then relu), both operands K-contiguous (row strides lda,
// ldb): dot products along K with nothing packed (linear's forward with few outputs). The threads
// split C's rows (or, with few rows, its columns) when parallel. Returns false, doing nothing, at
// the generic level (one lane: the blocked sgemm is faster there).
bool sgemm_abt_bias_relu(int M, int N, int K, const float* A, int lda, const float* B, int ldb, const float* bias,
                         bool relu, float* C, int ldc, bool parallel);

// Plain triple loop, kept for tests.
void sgemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                     int lda, const float* B, int ldb, float beta, float* C, int ldc);

// The kernel level is chosen by the one dispatch (dispatch.hpp: isa(), set_isa()).

#if FM_X86
namespace detail {
// In-register 16 x 16 transpose: rows r[0..15] -> r[c] = column c (simd::Avx512::transpose).
FM_BEGIN_AVX512
inline void transpose16_avx512(__m512 (&r)[16]) { simd::Avx512::transpose(r); }
FM_END_TARGET
}  // namespace detail
#endif

}  // namespace fm
