// Multinomial logistic regression kernels (see logreg.hpp).
//
// With C = 10 classes the work per sample is a (C x D) mat-vec forward and a rank-1 update of the
// (C x D) gradient backward, so instead of a general GEMM the epoch runs two small row kernels:
//   dots: z[c] = sum_d W[c,d] x[d]         (x read once, up to 10 class accumulators in registers)
//   ger:  G[c,d] += sum_r g[r,c] x_r[d]    (4 rows at a time, so G is read/written once per 4 rows)
// Both are written once (logreg.inl) and instantiated per ISA; the dispatch picks the current level.
#include "logreg.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.hpp"


namespace fm {

namespace {

constexpr int kRows = 4;     // rows per backward register block
constexpr int kSub = 64;     // rows gathered per sub-block (64 x D floats: 512 KB at D = 2048, in L2)
constexpr int kChunk = 512;  // columns per D-block (C x 512 floats of W or G: 20 KB, in L1)

}  // namespace

struct LogregKernels {
  // z (C,) += W[:, :L] x, W (C, ld)
  void (*dots)(const float* x, const float* W, int ld, int L, int C, float* z);
  // G[:, :L] (C, ld) += g^T rows, rows R x (L,)
  void (*ger)(const float* const* rows, const float* g, int R, int L, int C, float* G, int ld);
  const char* name;
};

}  // namespace fm

#define FM_KERNELS_FILE "logreg.inl"
#include "simd/instantiate.hpp"

namespace fm {

namespace {

const LogregKernels& logreg_kernels() {
  const LogregKernels& k = FM_PICK(kLogreg);
  note_kernel(Op::logreg, k.name);
  return k;
}

inline void dots(const float* x, const float* W, int ld, int L, int C, float* z) {
  logreg_kernels().dots(x, W, ld, L, C, z);
}

inline void ger(const float* const* rows, const float* g, int R, int L, int C, float* G, int ld) {
  logreg_kernels().ger(rows, g, R, L, C, G, ld);
}

inline void prefetch_row(const float* x, int D) {
  for (int d = 0; d < D; d += 16) __builtin_prefetch(x + d, 0, 1);
}

// (x - mean) * scale into buf, or x itself when not standardising.
inline const float* prepare_row(const float* x, const float* mean, const float* scale, int D,
                                float* buf) {
  if (!mean) return x;
#pragma omp simd
  for (int d = 0; d < D; ++d) buf[d] = (x[d] - mean[d]) * scale[d];
  return buf;
}

// z (C,) logits + bias -> p (C,) softmax in place; returns log-sum-exp. argmax in *am.
inline float softmax_inplace(float* z, int C, int* am) {
  int a = 0;
  for (int c = 1; c < C; ++c)
    if (z[c] > z[a]) a = c;
  const float m = z[a];
  float s = 0.f;
  for (int c = 0; c < C; ++c) {
    z[c] = std::exp(z[c] - m);
    s += z[c];
  }
  const float inv = 1.f / s;
  for (int c = 0; c < C; ++c) z[c] *= inv;
  *am = a;
  return m + std::log(s);
}

}  // namespace

const char* logreg_kernel_path() { return logreg_kernels().name; }

// ---- forward --------------------------------------------------------------------------------

// X (N, D), W (C, D), b (C,) -> out (N, C) logits or probabilities
void logreg_forward(const float* X, int64_t N, int D, int C, const float* W, const float* b,
                    const float* mean, const float* scale, float* out, bool softmax) {
#pragma omp parallel
  {
    std::vector<float> buf(mean ? (size_t)D : 0);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i) {
      const float* x = prepare_row(X + (size_t)i * D, mean, scale, D, buf.data());
      float* z = out + (size_t)i * C;
      for (int c = 0; c < C; ++c) z[c] = b[c];
      dots(x, W, D, D, C, z);
      if (softmax) {
        int am;
        softmax_inplace(z, C, &am);
      }
    }
  }
}

// ---- one epoch of mini-batch gradient descent -------------------------------------------------

// X (N, D), y (N,), perm (M,), W (C, D), b (C,) updated in place
//
// Synchronisation: ONE barrier per batch. Every thread keeps a private copy of (W, b); after the
// barrier each thread reduces all slots' partial gradients (in slot order, so every copy gets
// bit-identical values) and steps its own copy, then goes straight on to the next batch. The
// partial-gradient buffers are double-buffered by batch parity: a thread writing batch k+1's
// partials cannot clobber batch k's, which slower threads may still be reading; batch k+2's writes
// come after batch k+1's barrier, which every thread passes only once done with batch k.
// (With more than kRedundantMaxThreads threads the O(T^2) redundant reduction would cost more than
// a second barrier, so then the threads reduce disjoint column slices of the shared W instead.)
constexpr int kRedundantMaxThreads = 4;
// The rows of each batch are split into kSlots fixed slots (slot s runs on thread s % T), each with
// its own partial gradient, reduced in slot order: the result does not depend on the thread count.
constexpr int kSlots = 8;

LogregEpochStats logreg_epoch(const float* X, const int64_t* y, const int64_t* perm, int64_t M,
                              int D, int C, float* W, float* b, const float* mean,
                              const float* scale, float lr, float l2, int batch_size) {
  const int nt_max = max_threads();
  const int64_t nbatches = (M + batch_size - 1) / batch_size;
  const size_t CD = (size_t)C * D;
  // Workspaces, allocated once: per-thread partial gradients (x2 parities), private weights,
  // row buffers, logits.
  std::vector<float> gpart(2 * (size_t)kSlots * CD), bpart(2 * (size_t)kSlots * C);
  std::vector<float> rowbuf((size_t)nt_max * kSub * D), gbuf((size_t)nt_max * kSub * C);
  std::vector<double> loss_s(kSlots, 0.0);
  std::vector<int64_t> correct_s(kSlots, 0);
  const bool redundant = nt_max <= kRedundantMaxThreads;
  std::vector<float> wpriv(redundant ? (size_t)nt_max * (CD + C) : 0);

#pragma omp parallel num_threads(nt_max)
  {
    const int t = thread_id(), T = num_threads();
    float* xs = rowbuf.data() + (size_t)t * kSub * D;  // gathered (standardised) rows
    float* g = gbuf.data() + (size_t)t * kSub * C;     // logits -> p - onehot, per row
    float* Wt = W;
    float* bt = b;
    if (redundant) {
      Wt = wpriv.data() + (size_t)t * (CD + C);
      bt = Wt + CD;
      std::memcpy(Wt, W, sizeof(float) * CD);
      std::memcpy(bt, b, sizeof(float) * C);
    }
    const float* rows[kRows];
    int64_t d0 = 0, d1 = D;
    if (!redundant) split_range(D, t, T, d0, d1);

    for (int64_t bi = 0; bi < nbatches; ++bi) {
      const int64_t start = bi * batch_size;
      const int64_t n = std::min<int64_t>(batch_size, M - start);
      const float inv_n = 1.f / (float)n;
      float* gp = gpart.data() + (size_t)(bi & 1) * kSlots * CD;  // this batch's partials
      float* bp = bpart.data() + (size_t)(bi & 1) * kSlots * C;
      for (int sl = t; sl < kSlots; sl += T) {
      float* Gt = gp + (size_t)sl * CD;
      float* gbt = bp + (size_t)sl * C;
      double& loss = loss_s[sl];
      int64_t& correct = correct_s[sl];
      int64_t r0, r1;
      split_range(n, sl, kSlots, r0, r1);
      std::memset(Gt, 0, sizeof(float) * CD);
      std::memset(gbt, 0, sizeof(float) * C);

      // Sub-blocks of up to kSub rows: gather them (random rows of X) into xs, where they stay
      // in L2 for both passes; run the forward and the gradient in D-blocks of kChunk columns so
      // the slice of W (forward) or of the partial gradient (backward) stays in L1.
      for (int64_t sb = r0; sb < r1; sb += kSub) {
        const int nb = (int)std::min<int64_t>(kSub, r1 - sb);
        for (int k = 0; k < nb; ++k) {
          const float* src = X + (size_t)perm[start + sb + k] * D;
          float* dst = xs + (size_t)k * D;
          if (mean) {
#pragma omp simd
            for (int d = 0; d < D; ++d) dst[d] = (src[d] - mean[d]) * scale[d];
          } else {
            std::memcpy(dst, src, sizeof(float) * D);
          }
          for (int c = 0; c < C; ++c) g[(size_t)k * C + c] = bt[c];
        }
        for (int d0 = 0; d0 < D; d0 += kChunk) {
          const int L = std::min(kChunk, D - d0);
          for (int k = 0; k < nb; ++k) dots(xs + (size_t)k * D + d0, Wt + d0, D, L, C, g + (size_t)k * C);
        }
        for (int k = 0; k < nb; ++k) {
          float* z = g + (size_t)k * C;
          const int yi = (int)y[perm[start + sb + k]];
          const float zy = z[yi];
          int am;
          const float lse = softmax_inplace(z, C, &am);
          loss += (double)(lse - zy);
          correct += (am == yi);
          z[yi] -= 1.f;  // p - onehot
          for (int c = 0; c < C; ++c) {
            z[c] *= inv_n;
            gbt[c] += z[c];
          }
        }
        for (int d0 = 0; d0 < D; d0 += kChunk) {
          const int L = std::min(kChunk, D - d0);
          for (int k = 0; k < nb; k += kRows) {
            const int R = std::min(kRows, nb - k);
            for (int j = 0; j < R; ++j) rows[j] = xs + (size_t)(k + j) * D + d0;
            ger(rows, g + (size_t)k * C, R, L, C, Gt + d0, D);
          }
        }
      }
      }  // slots
#pragma omp barrier
      // Reduce the partial gradients over the slots in a fixed order and step: the whole of the
      // private copy (redundant mode) or this thread's column slice of the shared W.
      for (int c = 0; c < C; ++c) {
        float* w = Wt + (size_t)c * D;
        const float* g0 = gp + (size_t)c * D;
        for (int64_t d = d0; d < d1; ++d) {
          float s = g0[d];
          for (int u = 1; u < kSlots; ++u) s += g0[(size_t)u * CD + d];
          w[d] -= lr * (s + l2 * w[d]);
        }
      }
      if (redundant || t == 0)
        for (int c = 0; c < C; ++c) {
          float s = bp[c];
          for (int u = 1; u < kSlots; ++u) s += bp[(size_t)u * C + c];
          bt[c] -= lr * s;
        }
      if (!redundant) {
#pragma omp barrier
      }
    }
    if (redundant && t == 0) {
      std::memcpy(W, Wt, sizeof(float) * CD);
      std::memcpy(b, bt, sizeof(float) * C);
    }
  }
  LogregEpochStats st;
  for (int sl = 0; sl < kSlots; ++sl) {
    st.loss_sum += loss_s[sl];
    st.correct += correct_s[sl];
  }
  return st;
}

LogregEpochStats logreg_epoch_reference(const float* X, const int64_t* y, const int64_t* perm,
                                        int64_t M, int D, int C, float* W, float* b,
                                        const float* mean, const float* scale, float lr, float l2,
                                        int batch_size) {
  LogregEpochStats st;
  std::vector<double> gW((size_t)C * D), gb(C), p(C);
  std::vector<float> x(D);
  for (int64_t start = 0; start < M; start += batch_size) {
    const int64_t n = std::min<int64_t>(batch_size, M - start);
    std::fill(gW.begin(), gW.end(), 0.0);
    std::fill(gb.begin(), gb.end(), 0.0);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t idx = perm[start + k];
      for (int d = 0; d < D; ++d) {
        float v = X[(size_t)idx * D + d];
        x[d] = mean ? (v - mean[d]) * scale[d] : v;
      }
      double mx = -INFINITY;
      int am = 0;
      for (int c = 0; c < C; ++c) {
        double z = b[c];
        for (int d = 0; d < D; ++d) z += (double)W[(size_t)c * D + d] * x[d];
        p[c] = z;
        if (z > mx) mx = z, am = c;
      }
      double s = 0;
      for (int c = 0; c < C; ++c) s += std::exp(p[c] - mx);
      const int yi = (int)y[idx];
      st.loss_sum += mx + std::log(s) - p[yi];
      st.correct += (am == yi);
      for (int c = 0; c < C; ++c) {
        double gc = (std::exp(p[c] - mx) / s - (c == yi ? 1.0 : 0.0)) / n;
        gb[c] += gc;
        for (int d = 0; d < D; ++d) gW[(size_t)c * D + d] += gc * x[d];
      }
    }
    for (int c = 0; c < C; ++c) {
      for (int d = 0; d < D; ++d) {
        float& w = W[(size_t)c * D + d];
        w -= lr * (float)(gW[(size_t)c * D + d] + (double)l2 * w);
      }
      b[c] -= lr * (float)gb[c];
    }
  }
  return st;
}

}  // namespace fm
