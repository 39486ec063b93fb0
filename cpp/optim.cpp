// Optimizer update steps. Each is a single streaming pass over the parameter (memory bound), so the
// fast path is the same loop compiled twice (baseline and AVX2+FMA, chosen at run time) and split
// over OpenMP threads for large tensors. Elementwise: the result does not depend on the thread count.
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

// p, g, m, v on [0, n): the loop body shared by both instruction-set variants.
__attribute__((always_inline)) inline void adam_body(float* __restrict p, const float* __restrict g,
                                                     float* __restrict m, float* __restrict v, int64_t n,
                                                     const AdamConst& c) {
  // no decay multiply / no wd * p term when off: inf * 0 would turn an infinite parameter into NaN
  // where torch keeps it (the tests are loop-invariant; the compiler unswitches them)
  const bool l2 = c.l2, decoupled = c.decoupled;
  const float wd = c.wd, decay = c.decay;
  const float omb1 = c.omb1, b2 = c.b2, omb2 = c.omb2, bcs = c.bc2_sqrt, eps = c.eps, ss = c.step_size;
  for (int64_t i = 0; i < n; ++i) {
    float pi = decoupled ? p[i] * decay : p[i];
    float gi = l2 ? g[i] + wd * pi : g[i];
    float mi = m[i] + omb1 * (gi - m[i]);  // exp_avg.lerp_(grad, 1 - beta1)
    float vi = b2 * v[i] + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - ss * (mi / (std::sqrt(vi) / bcs + eps));
  }
}

__attribute__((always_inline)) inline void sgd_body(float* __restrict p, const float* __restrict g,
                                                    float* __restrict buf, int64_t n, float lr, float mom,
                                                    float damp, float wd, bool nesterov, bool first) {
  if (wd == 0.0f) {  // without the wd * p term (inf * 0 = NaN would poison an infinite parameter)
    if (mom == 0.0f) {
      for (int64_t i = 0; i < n; ++i) p[i] -= lr * g[i];
      return;
    }
    if (!first && !nesterov) {
      const float omd = 1.0f - damp;
      for (int64_t i = 0; i < n; ++i) {
        float b = mom * buf[i] + omd * g[i];
        buf[i] = b;
        p[i] -= lr * b;
      }
      return;
    }
  }
  const bool use_wd = wd != 0.0f;
  if (mom == 0.0f) {
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
  } else if (first) {
    if (nesterov)
      for (int64_t i = 0; i < n; ++i) {
        float d = use_wd ? g[i] + wd * p[i] : g[i];
        buf[i] = d;
        p[i] -= lr * (d + mom * d);
      }
    else
      for (int64_t i = 0; i < n; ++i) {
        float d = use_wd ? g[i] + wd * p[i] : g[i];
        buf[i] = d;
        p[i] -= lr * d;
      }
  } else {
    const float omd = 1.0f - damp;
    if (nesterov)
      for (int64_t i = 0; i < n; ++i) {
        float d = use_wd ? g[i] + wd * p[i] : g[i];
        float b = mom * buf[i] + omd * d;
        buf[i] = b;
        p[i] -= lr * (d + mom * b);
      }
    else
      for (int64_t i = 0; i < n; ++i) {
        float d = use_wd ? g[i] + wd * p[i] : g[i];
        float b = mom * buf[i] + omd * d;
        buf[i] = b;
        p[i] -= lr * b;
      }
  }
}

#if FM_X86 && !defined(__AVX2__)
#define FM_DISPATCH 1
__attribute__((target("avx2,fma"))) void adam_avx2(float* p, const float* g, float* m, float* v, int64_t n,
                                                   const AdamConst& c) {
  adam_body(p, g, m, v, n, c);
}
__attribute__((target("avx2,fma"))) void sgd_avx2(float* p, const float* g, float* buf, int64_t n, float lr,
                                                  float mom, float damp, float wd, bool nesterov, bool first) {
  sgd_body(p, g, buf, n, lr, mom, damp, wd, nesterov, first);
}
inline bool has_avx2() { return simd_at_least(Isa::avx2); }
#endif

void adam_chunk(float* p, const float* g, float* m, float* v, int64_t n, const AdamConst& c) {
#ifdef FM_DISPATCH
  if (has_avx2()) return adam_avx2(p, g, m, v, n, c);
#endif
  adam_body(p, g, m, v, n, c);
}

void sgd_chunk(float* p, const float* g, float* buf, int64_t n, float lr, float mom, float damp, float wd,
               bool nesterov, bool first) {
#ifdef FM_DISPATCH
  if (has_avx2()) return sgd_avx2(p, g, buf, n, lr, mom, damp, wd, nesterov, first);
#endif
  sgd_body(p, g, buf, n, lr, mom, damp, wd, nesterov, first);
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
  parallel_range(n, [&](int64_t b, int64_t e) {
    sgd_chunk(p + b, g + b, buf ? buf + b : nullptr, e - b, lr, momentum, dampening, weight_decay, nesterov, first);
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
  parallel_range(n, [&](int64_t b, int64_t e) { adam_chunk(p + b, g + b, m + b, v + b, e - b, c); });
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
