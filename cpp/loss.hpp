// Softmax family over the last dimension of (N, C) and the losses the MNIST models train with.
#pragma once
#include <cstdint>

namespace fm {

// x (N,C) -> y (N,C): y = exp(x - max) / sum exp(x - max), row by row.
void softmax_forward(int64_t N, int64_t C, const float* x, float* y);
// gy (N,C), y (N,C) softmax output -> gx (N,C): gx = y * (gy - sum_j gy_j y_j).
void softmax_backward(int64_t N, int64_t C, const float* gy, const float* y, float* gx);

// x (N,C) -> y (N,C): y = x - max - log(sum exp(x - max)).
void log_softmax_forward(int64_t N, int64_t C, const float* x, float* y);
// gy (N,C), y (N,C) log_softmax output -> gx (N,C): gx = gy - exp(y) * sum_j gy_j.
void log_softmax_backward(int64_t N, int64_t C, const float* gy, const float* y, float* gx);

// logits (N,C), labels (N) in [0, C) -> mean over rows of -log softmax(logits)[label] (returned),
// grad (N,C) = (softmax(logits) - onehot(labels)) / N (grad may be null). Labels are not checked
// here (the binding does it).
double softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels, float* grad);

// pred (n), target (n) -> mean((pred - target)^2) (returned), grad (n) = 2 (pred - target) / n
// (grad may be null). The sum runs over fixed blocks added in order: the result does not depend
// on the thread count.
double mse_loss(int64_t n, const float* pred, const float* target, float* grad);

}  // namespace fm
