// Kernel check program: every kernel family against its plain reference loops, on the MNIST
// layer shapes and odd shapes, at every instruction-set level this CPU (and build) has. Built
// without Python from the kernel sources (cpp/*.cpp minus the bindings), natively or with a cross
// compiler; tests/test_aarch64.py builds it for aarch64 and runs it under qemu-aarch64.
// Prints one line per check and "ALL OK" at the end; the exit status is the number of failures.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "activation.hpp"
#include "augment.hpp"
#include "conv2d.hpp"
#include "dispatch.hpp"
#include "gemm.hpp"
#include "linear.hpp"
#include "logreg.hpp"
#include "loss.hpp"
#include "optim.hpp"
#include "pool.hpp"

namespace {

int g_fail = 0, g_checks = 0;
std::mt19937 g_rng(1234);

std::vector<float> randn(size_t n) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g_rng);
  return v;
}

// |a - b| <= atol + rtol * |b| elementwise (NaN must match NaN)
void check(const std::string& what, const std::vector<float>& a, const std::vector<float>& b, double rtol = 1e-4,
           double atol = 1e-4) {
  ++g_checks;
  double worst = 0;
  size_t bad = a.size() != b.size() ? 1 : 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const bool na = std::isnan(a[i]), nb = std::isnan(b[i]);
    if (na || nb) {
      bad += na != nb;
      continue;
    }
    const double e = std::fabs(double(a[i]) - b[i]);
    worst = std::max(worst, e);
    if (e > atol + rtol * std::fabs(double(b[i]))) ++bad;
  }
  std::printf("%-6s %-60s %s (max abs err %.2e)\n", fm::isa_name(fm::isa()), what.c_str(), bad ? "FAIL" : "ok", worst);
  if (bad) ++g_fail;
}

void check_true(const std::string& what, bool ok) {
  ++g_checks;
  std::printf("%-6s %-60s %s\n", fm::isa_name(fm::isa()), what.c_str(), ok ? "ok" : "FAIL");
  if (!ok) ++g_fail;
}

void check_gemm() {
  const int shapes[][3] = {{64, 128, 784}, {64, 10, 128}, {128, 784, 64}, {37, 53, 71}, {1, 1, 1}, {9, 33, 17}, {200, 300, 129}};
  for (auto& sh : shapes)
    for (int t = 0; t < 4; ++t) {
      const int M = sh[0], N = sh[1], K = sh[2];
      const bool ta = t & 1, tb = t & 2;
      auto A = randn(size_t(M) * K), B = randn(size_t(K) * N), C = randn(size_t(M) * N), R = C;
      const int lda = ta ? M : K, ldb = tb ? K : N;
      fm::sgemm_parallel(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, C.data(), N);
      fm::sgemm_reference(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, R.data(), N);
      char name[96];
      std::snprintf(name, sizeof name, "sgemm %dx%dx%d ta=%d tb=%d", M, N, K, int(ta), int(tb));
      check(name, C, R, 1e-4, 1e-3);
    }
}

void check_conv() {
  // (N, C, H, W, K, R, S, stride, pad): cnn, cnn5 (5x5 padding 0), fast, odd shapes
  const int shapes[][9] = {{4, 1, 28, 28, 16, 3, 3, 1, 1}, {4, 16, 14, 14, 32, 3, 3, 1, 1}, {3, 1, 28, 28, 16, 5, 5, 1, 0},
                           {3, 16, 12, 12, 32, 5, 5, 1, 0}, {2, 1, 28, 28, 24, 5, 5, 1, 0}, {2, 24, 12, 12, 32, 3, 3, 1, 0},
                           {2, 3, 11, 13, 5, 3, 3, 2, 1}, {1, 5, 9, 7, 3, 5, 5, 1, 2}, {2, 7, 17, 19, 9, 3, 3, 1, 1}};
  for (auto& v : shapes) {
    fm::ConvShape s{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[7], v[8], v[8]};
    const size_t nx = size_t(s.N) * s.C * s.H * s.W, nw = size_t(s.K) * s.C * s.R * s.S,
                 ny = size_t(s.N) * s.K * s.P() * s.Q();
    auto x = randn(nx), w = randn(nw), b = randn(s.K), dy = randn(ny);
    std::vector<float> y(ny), yr(ny), dx(nx), dxr(nx), dw(nw), dwr(nw), db(s.K), dbr(s.K);
    char name[96];
    std::snprintf(name, sizeof name, "conv %dx%dx%dx%d k%d %dx%d s%d p%d", s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.sh, s.ph);
    fm::conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), true);
    fm::conv2d_forward_reference(s, x.data(), w.data(), b.data(), yr.data(), true);
    check(std::string(name) + " fwd+relu", y, yr, 1e-3, 1e-3);
    fm::conv2d_backward_input(s, dy.data(), w.data(), dx.data());
    fm::conv2d_backward_input_reference(s, dy.data(), w.data(), dxr.data());
    check(std::string(name) + " dgrad", dx, dxr, 1e-3, 1e-3);
    fm::conv2d_backward_weight(s, dy.data(), x.data(), dw.data(), db.data());
    fm::conv2d_backward_weight_reference(s, dy.data(), x.data(), dwr.data(), dbr.data());
    check(std::string(name) + " wgrad", dw, dwr, 1e-3, 2e-3);
    check(std::string(name) + " bias grad", db, dbr, 1e-4, 1e-3);
  }
}

void check_pool() {
  // (N, C, H, W, k, stride, pad)
  const int shapes[][7] = {{8, 16, 28, 28, 2, 2, 0}, {8, 32, 14, 14, 2, 2, 0}, {3, 24, 24, 24, 2, 2, 0},
                           {2, 3, 13, 11, 2, 2, 0}, {2, 3, 40, 70, 2, 2, 0},   {2, 3, 9, 10, 3, 2, 1}, {1, 2, 7, 5, 3, 1, 1},
                           {3, 2, 6, 6, 2, 2, 0},   {2, 5, 4, 2, 2, 2, 0},     {2, 3, 6, 10, 2, 2, 0}};  // rows < 4 lanes
  for (auto& v : shapes) {
    fm::Pool2dShape s{v[0], v[1], v[2], v[3], v[4], v[4], v[5], v[5], v[6], v[6], 0, 0};
    s.OH = (s.H + 2 * s.PH - s.KH) / s.SH + 1;
    s.OW = (s.W + 2 * s.PW - s.KW) / s.SW + 1;
    const size_t nx = size_t(s.N * s.C * s.H * s.W), ny = size_t(s.N * s.C * s.OH * s.OW);
    auto x = randn(nx);
    for (size_t i = 0; i < nx; i += 97) x[i] = std::nanf("");  // NaN propagates as in torch
    for (size_t i = 5; i < nx; i += 89) x[i] = x[i - 1];        // ties: the first maximum wins
    std::vector<float> y(ny), yr(ny), yc(ny);
    std::vector<int64_t> idx(ny), idxr(ny);
    std::vector<uint8_t> code(ny);
    fm::max_pool2d_forward(s, x.data(), y.data(), idx.data());
    fm::max_pool2d_forward_reference(s, x.data(), yr.data(), idxr.data());
    fm::max_pool2d_forward(s, x.data(), yc.data(), nullptr, code.data());
    char name[96];
    std::snprintf(name, sizeof name, "max_pool2d %ldx%ldx%ldx%ld k%d s%d p%d", long(s.N), long(s.C), long(s.H),
                  long(s.W), s.KH, s.SH, s.PH);
    check(std::string(name) + " fwd", y, yr, 0, 0);
    check(std::string(name) + " fwd (compact)", yc, yr, 0, 0);
    check_true(std::string(name) + " argmax", idx == idxr);
    auto gy = randn(ny);
    std::vector<float> gx(nx), gxr(nx), gxc(nx);
    const bool ok = fm::max_pool2d_backward(s, gy.data(), idx.data(), gx.data());
    fm::max_pool2d_backward_reference(s, gy.data(), idxr.data(), gxr.data());
    check_true(std::string(name) + " bwd ok", ok);
    check(std::string(name) + " bwd", gx, gxr, 0, 0);
    const bool okc = fm::max_pool2d_backward_compact(s, gy.data(), code.data(), gxc.data());
    check_true(std::string(name) + " bwd compact ok", okc);
    check(std::string(name) + " bwd compact", gxc, gxr, 0, 0);
  }
}

void check_elementwise() {
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(64 * 16 * 28 * 28), int64_t(1001)}) {
    auto x = randn(size_t(n)), gy = randn(size_t(n));
    x[0] = std::nanf("");
    std::vector<float> y(n), r(n), gx(n), gr(n);
    fm::relu_forward(n, x.data(), y.data());
    for (int64_t i = 0; i < n; ++i) r[i] = x[i] < 0.f ? 0.f : x[i];
    check("relu n=" + std::to_string(n), y, r, 0, 0);
    fm::relu_backward(n, gy.data(), x.data(), gx.data());
    for (int64_t i = 0; i < n; ++i) gr[i] = x[i] <= 0.f ? 0.f : gy[i];
    check("relu backward n=" + std::to_string(n), gx, gr, 0, 0);
    fm::sigmoid_forward(n, x.data(), y.data());
    for (int64_t i = 0; i < n; ++i) r[i] = float(1.0 / (1.0 + std::exp(-double(x[i]))));
    check("sigmoid n=" + std::to_string(n), y, r, 1e-5, 1e-6);
  }
}

void check_loss() {
  for (int64_t N : {int64_t(1), int64_t(64), int64_t(1000)})
    for (int64_t C : {int64_t(10), int64_t(3), int64_t(37)}) {
      auto x = randn(size_t(N * C));
      std::vector<int64_t> lab(N);
      for (int64_t n = 0; n < N; ++n) lab[n] = (n * 7) % C;
      std::vector<float> g(N * C), gr(N * C);
      const double loss = fm::softmax_cross_entropy(N, C, x.data(), lab.data(), g.data());
      double lr = 0;
      for (int64_t n = 0; n < N; ++n) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < C; ++j) m = std::max(m, double(x[n * C + j]));
        for (int64_t j = 0; j < C; ++j) s += std::exp(double(x[n * C + j]) - m);
        lr += m + std::log(s) - x[n * C + lab[n]];
        for (int64_t j = 0; j < C; ++j)
          gr[n * C + j] = float((std::exp(double(x[n * C + j]) - m) / s - (j == lab[n])) / double(N));
      }
      lr /= double(N);
      const std::string name = "softmax_cross_entropy " + std::to_string(N) + "x" + std::to_string(C);
      check(name + " loss", {float(loss)}, {float(lr)}, 1e-5, 1e-6);
      check(name + " grad", g, gr, 1e-4, 1e-7);
    }
}

void check_optim() {
  for (int64_t n : {int64_t(5), int64_t(421642), int64_t(1 << 16)}) {
    auto p = randn(size_t(n)), g = randn(size_t(n)), m = randn(size_t(n)), v = randn(size_t(n));
    for (auto& e : v) e = std::fabs(e);
    auto p2 = p, m2 = m, v2 = v;
    fm::adam_step(p.data(), g.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 3, true);
    fm::adam_step_reference(p2.data(), g.data(), m2.data(), v2.data(), n, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 3, true);
    check("adamw n=" + std::to_string(n), p, p2, 1e-5, 1e-6);
    auto b = randn(size_t(n)), b2 = b;
    p2 = p;
    fm::sgd_step(p.data(), g.data(), b.data(), n, 0.1f, 0.9f, 0.f, 1e-4f, true, false);
    fm::sgd_step_reference(p2.data(), g.data(), b2.data(), n, 0.1f, 0.9f, 0.f, 1e-4f, true, false);
    check("sgd nesterov n=" + std::to_string(n), p, p2, 1e-5, 1e-6);
  }
}

void check_linear() {
  const int shapes[][3] = {{64, 784, 128}, {86, 517, 203}, {256, 800, 10}, {3, 5, 7}, {1, 1, 1}};
  for (auto& sh : shapes) {
    const int N = sh[0], in = sh[1], out = sh[2];
    auto x = randn(size_t(N) * in), w = randn(size_t(out) * in), b = randn(out);
    std::vector<float> y(size_t(N) * out), r(size_t(N) * out);
    fm::linear_forward(N, in, out, x.data(), w.data(), b.data(), y.data(), false);
    fm::linear_forward_reference(N, in, out, x.data(), w.data(), b.data(), r.data());
    check("linear " + std::to_string(N) + "x" + std::to_string(in) + "->" + std::to_string(out), y, r, 1e-4, 1e-3);
  }
}

void check_logreg() {
  const int64_t N = 300;
  const int D = 37, C = 10;
  auto X = randn(size_t(N) * D);
  std::vector<int64_t> y(N), perm(N);
  for (int64_t i = 0; i < N; ++i) y[i] = (i * 3) % C, perm[i] = (i * 7) % N;
  auto W = randn(size_t(C) * D), W2 = W;
  std::vector<float> b(C, 0.f), b2(C, 0.f);
  auto s1 = fm::logreg_epoch(X.data(), y.data(), perm.data(), N, D, C, W.data(), b.data(), nullptr, nullptr, 0.1f, 1e-3f, 32);
  auto s2 = fm::logreg_epoch_reference(X.data(), y.data(), perm.data(), N, D, C, W2.data(), b2.data(), nullptr, nullptr,
                                       0.1f, 1e-3f, 32);
  check("logreg epoch W", W, W2, 1e-4, 1e-4);
  check("logreg epoch b", b, b2, 1e-4, 1e-4);
  check_true("logreg epoch accuracy count", s1.correct == s2.correct);
}

void check_augment() {
  const int64_t N = 5, C = 1, H = 28, W = 28;
  auto x = randn(size_t(N * C * H * W));
  std::vector<double> mats(N * 9);
  for (int64_t n = 0; n < N; ++n) {
    const double a = 0.2 * double(n) - 0.4, c = std::cos(a), s = std::sin(a);
    double m[9] = {c, -s, 3.0 * s + 1.5, s, c, -2.0 * s - 0.5, 1e-3 * double(n), -2e-3, 1.0};
    std::copy(m, m + 9, mats.begin() + 9 * n);
  }
  for (bool proj : {false, true}) {
    std::vector<float> o(x.size()), r(x.size());
    fm::warp(x.data(), mats.data(), o.data(), N, C, H, W, proj);
    fm::warp_reference(x.data(), mats.data(), r.data(), N, C, H, W, proj);
    check(std::string("warp 5x1x28x28 ") + (proj ? "projective" : "affine"), o, r, 1e-4, 1e-4);
  }
}

}  // namespace

int main() {
  for (fm::Isa level : {fm::Isa::generic, fm::Isa::neon, fm::Isa::avx2, fm::Isa::avx512}) {
    if (!fm::set_isa(fm::isa_name(level))) continue;
    std::printf("== level %s\n", fm::isa_name(level));
    check_gemm();
    check_conv();
    check_pool();
    check_elementwise();
    check_loss();
    check_optim();
    check_linear();
    check_logreg();
    check_augment();
  }
  std::printf("%d checks, %d failed\n", g_checks, g_fail);
  if (!g_fail) std::printf("ALL OK\n");
  return g_fail > 125 ? 125 : g_fail;
}
