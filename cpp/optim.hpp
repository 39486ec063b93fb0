// Optimizer update steps (torch.optim semantics), in place on flat float32 buffers. Plain C++.
#pragma once
#include <cstdint>

namespace fm {

// p (n), g (n), buf (n) momentum buffer (may be null when momentum == 0).
// torch.optim.SGD: d = g + wd*p; buf = first ? d : momentum*buf + (1-dampening)*d;
// d = nesterov ? d + momentum*buf : buf; p -= lr*d.
void sgd_step(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, float dampening,
              float weight_decay, bool nesterov, bool first);
void sgd_step_reference(float* p, const float* g, float* buf, int64_t n, float lr, float momentum,
                        float dampening, float weight_decay, bool nesterov, bool first);

// p (n), g (n), m (n) exp_avg, v (n) exp_avg_sq; `step` is the 1-based step count after increment.
// torch.optim.Adam (decoupled=false: L2 added to the gradient) / AdamW (decoupled=true: p *= 1-lr*wd).
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
               double eps, double weight_decay, int64_t step, bool decoupled);
void adam_step_reference(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1,
                         double beta2, double eps, double weight_decay, int64_t step, bool decoupled);

}  // namespace fm
