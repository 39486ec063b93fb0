// Row-wise softmax, log-softmax, softmax cross-entropy (fused forward + gradient) and MSE.
// Rows are short (C = 10 for MNIST): each kernel (loss.inl, one copy per ISA) works on a range of
// rows (a vectorised exp), split across OpenMP threads only for large batches.
#include "loss.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "activation.hpp"  // for_ranges, exp_nonpos

namespace fm {

struct LossKernels {
  void (*softmax)(int64_t r0, int64_t r1, int64_t C, const float* x, float* y);
  void (*softmax_backward)(int64_t r0, int64_t r1, int64_t C, const float* gy, const float* y, float* gx);
  void (*log_softmax)(int64_t r0, int64_t r1, int64_t C, const float* x, float* y);
  void (*log_softmax_backward)(int64_t r0, int64_t r1, int64_t C, const float* gy, const float* y, float* gx);
  void (*cross_entropy)(int64_t r0, int64_t r1, int64_t C, const float* x, const int64_t* labels, float invN,
                        float* grad, float* e, double* loss);
  double (*mse)(int64_t i0, int64_t i1, const float* pred, const float* target, float scale, float* grad);
  const char* name;
};

}  // namespace fm

#define FM_KERNELS_FILE "loss.inl"
#include "simd/instantiate.hpp"

namespace fm {

namespace {
constexpr int64_t kParallelMin = 1 << 16;  // elements below which a call runs on one thread

int64_t min_rows(int64_t C) { return C > 0 ? (kParallelMin + C - 1) / C : std::numeric_limits<int64_t>::max(); }

const LossKernels& loss_kernels() {
  const LossKernels& k = FM_PICK(kLoss);
  note_kernel(Op::softmax_cross_entropy, k.name);
  return k;
}
}  // namespace

// x (N,C) -> y (N,C)
void softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
  for_ranges(N, min_rows(C), [&, k = loss_kernels().softmax](int64_t a, int64_t b) { k(a, b, C, x, y); });
}

// gy (N,C), y (N,C) -> gx (N,C)
void softmax_backward(int64_t N, int64_t C, const float* gy, const float* y, float* gx) {
  for_ranges(N, min_rows(C), [&, k = loss_kernels().softmax_backward](int64_t a, int64_t b) { k(a, b, C, gy, y, gx); });
}

// x (N,C) -> y (N,C)
void log_softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
  for_ranges(N, min_rows(C), [&, k = loss_kernels().log_softmax](int64_t a, int64_t b) { k(a, b, C, x, y); });
}

// gy (N,C), y (N,C) -> gx (N,C)
void log_softmax_backward(int64_t N, int64_t C, const float* gy, const float* y, float* gx) {
  for_ranges(N, min_rows(C), [&, k = loss_kernels().log_softmax_backward](int64_t a, int64_t b) { k(a, b, C, gy, y, gx); });
}

// logits (N,C), labels (N) -> loss, grad (N,C)
double softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels, float* grad) {
  std::vector<double> row_loss(N);
  const float invN = 1.f / float(N);
  for_ranges(N, min_rows(C), [&, k = loss_kernels().cross_entropy](int64_t a, int64_t b) {
    std::vector<float> e(grad ? 0 : C);  // exp scratch when no gradient is wanted
    k(a, b, C, logits, labels, invN, grad, e.data(), row_loss.data());
  });
  double total = 0;  // rows added in order: independent of the thread count
  for (int64_t n = 0; n < N; ++n) total += row_loss[n];
  return total / double(N);
}

// pred (n), target (n) -> loss, grad (n)
double mse_loss(int64_t n, const float* pred, const float* target, float* grad) {
  constexpr int64_t kBlock = 4096;  // fixed blocks summed in order: independent of the thread count
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(nb);
  const float scale = n ? 2.f / float(n) : 0.f;
  for_ranges(nb, kParallelMin / kBlock, [&, k = loss_kernels().mse](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      part[b] = k(b * kBlock, std::min(n, (b + 1) * kBlock), pred, target, scale, grad);
  });
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += part[b];
  return n ? total / double(n) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace fm
