// Optimizer update loops, written once and compiled per ISA by simd/instantiate.hpp (streaming,
// memory-bound: the compiler vectorises them at each region's width). Elementwise, so the result
// does not depend on the thread count.

// p, g, m, v on [0, n)
static void adam_body(float* __restrict p, const float* __restrict g,
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

static void sgd_body(float* __restrict p, const float* __restrict g,
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

const OptimKernels kOptim{&adam_body, &sgd_body, S::name};
