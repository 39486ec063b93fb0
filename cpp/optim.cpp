// Optimizer update steps. Each is a single streaming pass over the parameter (memory bound): the
// loops (optim.inl) are compiled once per ISA, picked by the one dispatch, and split over OpenMP
// threads for large tensors. Elementwise: the result does not depend on the thread count.
#include "optim.hpp"

#include <cmath>

#include "common.hpp"

namespace fm {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this an OpenMP region costs more than the loop

struct AdamConst {
  float wd, omb1, b2, omb2, bc2_sqrt, eps, step_size, decay;  // decay: p *= decay (AdamW)
  bool l2, decoupled;
};

}  // namespace

struct OptimKernels {
  void (*adam)(float* p, const float* g, float* m, float* v, int64_t n, const AdamConst& c);
  void (*sgd)(float* p, const float* g, float* buf, int64_t n, float lr, float mom, float damp, float wd,
              bool nesterov, bool first);
  const char* name;
};

}  // namespace fm

#define FM_KERNELS_FILE "optim.inl"
#include "simd/instantiate.hpp"

namespace fm {

namespace {

const OptimKernels& optim_kernels() {
  const OptimKernels& k = FM_PICK(kOptim);
  note_kernel(Op::optim, k.name);
  return k;
}

AdamConst adam_const(double lr, double beta1, double beta2, double eps, double wd, int64_t step, bool decoupled) {
  AdamConst c;
  double bc1 = 1.0 - std::pow(beta1, double(step));
  double bc2 = 1.0 - std::pow(beta2, double(step));
  c.wd = float(wd);
  c.omb1 = float(1.0 - beta1);
  c.b2 = float(beta2);
  c.omb2 = float(1.0 - beta2);
  c.bc2_sqrt = float(std::sqrt(bc2));
  c.eps = float(eps);
  c.step_size = float(lr / bc1);
  c.decay = float(1.0 - lr * wd);
  c.l2 = (wd != 0.0) && !decoupled;
  c.decoupled = (wd != 0.0) && decoupled;
  return c;
}

// Run fn(begin, end) over [0, n) split into contiguous per-thread ranges (serial when small).
template <class F>
void parallel_range(int64_t n, F fn) {
  if (n < kParallelMin || max_threads() == 1) {
    fn(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    int64_t b, e;
    split_range(n, thread_id(), num_threads(), b, e);
    // keep chunk starts 16-float aligned relative to the buffer start (whole cache lines per thread)
    b = (b + 15) & ~int64_t(15);
    e = (thread_id() == num_threads() - 1) ? n : ((e + 15) & ~int64_t(15));
    if (b > n) b = n;
    if (e > n) e = n;
    if (e > b) fn(b, e);
  }
}

}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, float dampening,
              float weight_decay, bool nesterov, bool first) {
  parallel_range(n, [&, k = optim_kernels().sgd](int64_t b, int64_t e) {
    k(p + b, g + b, buf ? buf + b : nullptr, e - b, lr, momentum, dampening, weight_decay, nesterov, first);
  });
}

void sgd_step_reference(float* p, const float* g, float* buf, int64_t n, float lr, float momentum,
                        float dampening, float weight_decay, bool nesterov, bool first) {
  for (int64_t i = 0; i < n; ++i) {
    float d = weight_decay != 0.0f ? g[i] + weight_decay * p[i] : g[i];
    if (momentum != 0.0f) {
      buf[i] = first ? d : momentum * buf[i] + (1.0f - dampening) * d;
      d = nesterov ? d + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * d;
  }
}

void adam_step(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
               double eps, double weight_decay, int64_t step, bool decoupled) {
  const AdamConst c = adam_const(lr, beta1, beta2, eps, weight_decay, step, decoupled);
  parallel_range(n, [&, k = optim_kernels().adam](int64_t b, int64_t e) { k(p + b, g + b, m + b, v + b, e - b, c); });
}

void adam_step_reference(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1,
                         double beta2, double eps, double weight_decay, int64_t step, bool decoupled) {
  const double bc1 = 1.0 - std::pow(beta1, double(step)), bc2 = 1.0 - std::pow(beta2, double(step));
  for (int64_t i = 0; i < n; ++i) {
    double pi = p[i], gi = g[i];
    if (weight_decay != 0.0 && decoupled) pi *= 1.0 - lr * weight_decay;
    else if (weight_decay != 0.0) gi += weight_decay * pi;
    double mi = beta1 * m[i] + (1.0 - beta1) * gi;
    double vi = beta2 * v[i] + (1.0 - beta2) * gi * gi;
    m[i] = float(mi);
    v[i] = float(vi);
    p[i] = float(pi - lr / bc1 * mi / (std::sqrt(vi) / std::sqrt(bc2) + eps));
  }
}

}  // namespace fm
