// Elementwise activations: memory-bound loops (activation.inl) compiled once per ISA and picked by
// the one dispatch; OpenMP only above a size where a parallel region pays for itself.
#include "activation.hpp"

namespace fm {

struct ActKernels {
  void (*relu)(int64_t n, const float* x, float* y);
  void (*relu_backward)(int64_t n, const float* gy, const float* x, float* gx);
  void (*sigmoid)(int64_t n, const float* x, float* y);
  void (*sigmoid_backward)(int64_t n, const float* gy, const float* y, float* gx);
  void (*bias_relu)(int64_t r0, int64_t r1, int64_t cols, const float* b, float* y, bool relu);
  const char* name;
};

}  // namespace fm

#define FM_KERNELS_FILE "activation.inl"
#include "simd/instantiate.hpp"

namespace fm {

namespace {

constexpr int64_t kParallelMin = 1 << 17;  // elements below which a call runs on one thread

const ActKernels& act() {
  const ActKernels& k = FM_PICK(kAct);
  note_kernel(Op::activation, k.name);
  return k;
}

}  // namespace

// x (n) -> y (n)
void relu_forward(int64_t n, const float* x, float* y) {
  for_ranges(n, kParallelMin, [&, k = act().relu](int64_t b, int64_t e) { k(e - b, x + b, y + b); });
}

// gy (n), x (n) -> gx (n)
void relu_backward(int64_t n, const float* gy, const float* x, float* gx) {
  for_ranges(n, kParallelMin, [&, k = act().relu_backward](int64_t b, int64_t e) { k(e - b, gy + b, x + b, gx + b); });
}

// x (n) -> y (n)
void sigmoid_forward(int64_t n, const float* x, float* y) {
  for_ranges(n, kParallelMin / 4, [&, k = act().sigmoid](int64_t b, int64_t e) { k(e - b, x + b, y + b); });
}

// gy (n), y (n) -> gx (n)
void sigmoid_backward(int64_t n, const float* gy, const float* y, float* gx) {
  for_ranges(n, kParallelMin, [&, k = act().sigmoid_backward](int64_t b, int64_t e) { k(e - b, gy + b, y + b, gx + b); });
}

// y (rows, cols) += b (cols), then relu if asked, in place
void bias_relu_rows(int64_t rows, int64_t cols, const float* b, float* y, bool relu) {
  if (!relu && !b) return;
  const int64_t min_rows = cols > 0 ? (kParallelMin + cols - 1) / cols : rows + 1;
  for_ranges(rows, min_rows, [&, k = act().bias_relu](int64_t r0, int64_t r1) { k(r0, r1, cols, b, y, relu); });
}

}  // namespace fm
