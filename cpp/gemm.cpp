#include "gemm.hpp"

#include <vector>

#include "common.hpp"

namespace fm {

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

// Simple cache-friendly baseline: rows of C accumulate rows of op(B) (vectorisable inner loop).
static void sgemm_rows(bool ta, bool tb, int i0, int i1, int N, int K, float alpha, const float* A,
                       int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  std::vector<float> bt;
  if (tb) {  // materialise B^T as K x N so the inner loop is contiguous
    bt.resize((size_t)K * N);
    for (int j = 0; j < N; ++j)
      for (int k = 0; k < K; ++k) bt[(size_t)k * N + j] = B[(size_t)j * ldb + k];
    B = bt.data();
    ldb = N;
  }
  for (int i = i0; i < i1; ++i) {
    float* c = C + (size_t)i * ldc;
    if (beta == 0.f)
      for (int j = 0; j < N; ++j) c[j] = 0.f;
    else if (beta != 1.f)
      for (int j = 0; j < N; ++j) c[j] *= beta;
    for (int k = 0; k < K; ++k) {
      float a = alpha * (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
      const float* b = B + (size_t)k * ldb;
      for (int j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}

void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  sgemm_rows(ta, tb, 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_parallel(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
#pragma omp parallel
  {
    int64_t b, e;
    split_range(M, thread_id(), num_threads(), b, e);
    if (b < e) sgemm_rows(ta, tb, (int)b, (int)e, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

}  // namespace fm
