// The SGEMM every conv / linear layer runs on.
#pragma once

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

// Instruction-set dispatch. The level is chosen once from the CPU (avx512f > avx2+fma > generic);
// FASTMNIST_ISA=generic|avx2|avx512 in the environment or gemm_set_isa() (tests) can lower it.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };
Isa gemm_isa();
const char* gemm_isa_name();
// Selects `name` ("generic", "avx2", "avx512"); returns false (and changes nothing) when the name
// is unknown or the CPU lacks that instruction set.
bool gemm_set_isa(const char* name);

}  // namespace fm
