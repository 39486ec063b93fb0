// Multinomial logistic regression: one whole epoch of mini-batch gradient descent in one call.
#pragma once
#include <cstdint>

namespace fm {

struct LogregEpochStats {
  double loss_sum = 0;  // sum over the epoch's samples of -log p(y | x) (weights before each step)
  int64_t correct = 0;  // samples whose argmax logit equalled the label (same forward pass)
};

// One epoch of mini-batch gradient descent on softmax cross-entropy.
//   X (N, D) features, y (N,) labels in [0, C), perm (M,) row indices into X (the epoch's order;
//   batch k is perm[k*B : (k+1)*B], the last batch may be smaller), W (C, D) and b (C,) updated in
//   place. mean/scale (D,) or nullptr: rows are standardised as (x - mean) * scale on the fly.
//   For each batch (size n): z = x W^T + b, p = softmax(z), loss = mean(-log p_y),
//   grad_W = (p - onehot)^T x / n + l2 * W, grad_b = sum(p - onehot) / n,
//   W -= lr * grad_W, b -= lr * grad_b   (PyTorch SGD with weight_decay=l2 on W only).
// OpenMP: the rows of each batch are split into a fixed number of slots spread over the threads;
// every slot accumulates its own partial gradient, reduced in slot order, so the results do not
// depend on the thread count.
LogregEpochStats logreg_epoch(const float* X, const int64_t* y, const int64_t* perm, int64_t M,
                              int D, int C, float* W, float* b, const float* mean,
                              const float* scale, float lr, float l2, int batch_size);

// Plain loops, same maths, kept for tests.
LogregEpochStats logreg_epoch_reference(const float* X, const int64_t* y, const int64_t* perm,
                                        int64_t M, int D, int C, float* W, float* b,
                                        const float* mean, const float* scale, float lr, float l2,
                                        int batch_size);

// X (N, D) -> out (N, C): logits x W^T + b (rows standardised as above), or softmax
// probabilities when `softmax`.
void logreg_forward(const float* X, int64_t N, int D, int C, const float* W, const float* b,
                    const float* mean, const float* scale, float* out, bool softmax);

// Name of the row-kernel path chosen at run time ("avx2+fma" or "generic").
const char* logreg_kernel_path();

}  // namespace fm
