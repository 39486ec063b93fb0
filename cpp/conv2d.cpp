// 2-D convolution: forward, backward_input, backward_weight (+ bias).
//
// Implementations (conv2d_forward etc. pick one; ConvImpl forces one for tests):
// - reference: plain loops with double accumulation.
// - gemm: im2col + fm::sgemm per image, col2im for the input gradient (any ISA, any stride); the
//   generic (FASTMNIST_ISA=generic) path.
// - Winograd (winograd.cpp) for the stride-1 3x3 / 5x5 layers with enough channels.
// - direct kernels (conv2d.inl), written once against the SIMD layer and instantiated per ISA
//   (AVX-512, AVX2, NEON; LN floats per vector):
//   * stride-1 forward ("flat" kernel): the image is expanded once into S-shifted planes
//     xs[c*S+t][h][q] = xpad[c][h][q+t], so that tap (c,r,t) at the flattened output pixel
//     j = p*Q+q is xs[c*S+t][r*Q + j] -- contiguous in j. A register tile is MK output channels x
//     NJ vectors of output pixels (8 x 3 with 32 registers, 6 x 2 on AVX2); each tap is NJ vector
//     loads, MK weight broadcasts and MK*NJ FMAs, the output is stored straight into NCHW with bias
//     (and ReLU) applied in registers. No im2col matrix, no transposes. The stride-1 input
//     gradient is the same kernel on dy with the flipped, transposed weights.
//   * other strides ("broadcast-x" kernel): a tile holds MR output pixels x LN*NV channels; every
//     step of the C*R*S reduction broadcasts MR pixels of a zero-padded image copy (addressed
//     through offset tables, so any stride works) against one packed weight row.
//   * weight gradient: the broadcast-x tile with pixels and channels exchanged (reduction over the
//     output pixels, dy transposed per image in LN x LN register blocks, bias sums on the way).
//   * for few input channels (the first layer) on AVX-512, the weight gradient of conv_wgrad1.cpp.
// OpenMP runs over the batch (dynamic schedule: a thread that the OS stalls does not hold up the
// others); each thread allocates its workspaces once per call. Every weight gradient sums into
// one partial buffer per fixed group of images, reduced in group order (no atomics), so it does
// not depend on the thread count at all.
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

// ---- stride-1 kernels on S-shifted planes --------------------------------------------------
// xs (C*S, Hp, Q): xs[c*S+t][h][q] = xpad[c][h][q+t] (xpad = x zero-padded by ph, pw). A tap
// (c,r,t) at the flattened output pixel j = p*Q+q reads xs[c*S+t][p+r][q] = plane + r*Q + j, which
// is contiguous in j: one vector of output pixels is one load, with no lanes lost at row ends.
// Which entries of xs are zero depends only on the geometry, so a thread zeroes its buffer once and
// build_planes writes only the entries that come from x. pstride: floats between consecutive
// planes (>= Hp*Q).
void build_planes(const ConvShape& s, int Q, size_t pstride, const float* x, float* xs) {
  for (int c = 0; c < s.C; ++c)
    for (int t = 0; t < s.S; ++t) {
      const int q0 = std::max(0, s.pw - t), q1 = std::min(Q, s.W + s.pw - t);
      if (q1 <= q0) continue;
      const float* src = x + (size_t)c * s.H * s.W + q0 + t - s.pw;
      float* dst = xs + (size_t)(c * s.S + t) * pstride + (size_t)s.ph * Q + q0;
      for (int h = 0; h < s.H; ++h, src += s.W, dst += Q) std::memcpy(dst, src, sizeof(float) * (q1 - q0));
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

// The direct kernels of one instruction set (conv2d.inl, instantiated per ISA):
//   forward_flat     stride 1, on shifted planes (also the stride-1 input gradient, as the
//                    convolution of dy with the flipped, transposed weights)
//   forward_strided  any stride, on the padded image
//   backward_weight  any stride; partial sums per fixed group of 16 images
struct ConvDirectKernels {
  void (*forward_flat)(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu);
  void (*forward_strided)(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu);
  void (*backward_weight)(const ConvShape& s, const float* dy, const float* x, float* dw, float* db);
};

}  // namespace fm

#define FM_KERNELS_FILE "conv2d.inl"
#include "simd/instantiate.hpp"

namespace fm {

static const ConvDirectKernels& direct_kernels() { return FM_PICK(kConvDirect); }

// "<isa> <what>" for the kernel report (string literals, indexed by Isa).
static const char* direct_name(int what) {
  static constexpr const char* names[4][3] = {
      {"generic direct (shifted planes)", "generic direct (transposed conv, shifted planes)", "generic direct"},
      {"neon direct (shifted planes)", "neon direct (transposed conv, shifted planes)", "neon direct"},
      {"avx2 direct (shifted planes)", "avx2 direct (transposed conv, shifted planes)", "avx2 direct"},
      {"avx512 direct (shifted planes)", "avx512 direct (transposed conv, shifted planes)", "avx512 direct"}};
  return names[int(isa())][what];
}

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
  if (impl == ConvImpl::fast && isa() != Isa::generic) {  // the vector direct kernels
    const bool flat = s.sh == 1 && s.sw == 1;
    note_kernel(op, direct_name(flat ? 0 : 2));
    return (flat ? direct_kernels().forward_flat : direct_kernels().forward_strided)(s, x, w, b, y, relu);
  }
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
  const int qh = s.R - 1 - s.ph, qw = s.S - 1 - s.pw;
  if (impl == ConvImpl::fast && isa() != Isa::generic && s.sh == 1 && s.sw == 1 && qh >= 0 && qw >= 0) {
    // Stride 1: dx = conv(dy padded by R-1-ph, w flipped in R,S and transposed to (C,K,R,S)).
    ConvShape t{s.N, s.K, s.P(), s.Q(), s.C, s.R, s.S, 1, 1, qh, qw};
    std::vector<float> wf((size_t)s.C * s.K * s.R * s.S);
    for (int k = 0; k < s.K; ++k)
      for (int c = 0; c < s.C; ++c)
        for (int r = 0; r < s.R; ++r)
          for (int u = 0; u < s.S; ++u)
            wf[(((size_t)c * s.K + k) * s.R + (s.R - 1 - r)) * s.S + (s.S - 1 - u)] =
                w[(((size_t)k * s.C + c) * s.R + r) * s.S + u];
    note_kernel(op, direct_name(1));
    return direct_kernels().forward_flat(t, dy, wf.data(), nullptr, dx, false);
  }
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

static void backward_weight_fast(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                                 ConvImpl impl) {
  constexpr Op op = Op::conv2d_backward_weight;
  if (winograd_try_backward_weight(s, dy, x, dw, db, impl)) return;
  if (impl == ConvImpl::fast && isa() != Isa::generic) {
    if (conv2d_backward_weight_first_layer(s, dy, x, dw, db)) return;  // it names its kernel
    note_kernel(op, direct_name(2));
    return direct_kernels().backward_weight(s, dy, x, dw, db);
  }
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
