"""conv2d forward / backward (and the fused conv2d_relu) against PyTorch computed in the test.

Tolerances (float32; relative to the largest reference magnitude of each output):
  forward, conv2d_relu, grad_x:  max|diff| <= 2e-5 * max|ref|     (sums of C*R*S products)
  grad_weight, grad_bias:        max|diff| <= 1e-4 * max|ref|     (sums over N*P*Q products)
"""
from __future__ import annotations


import numpy as np
import pytest
from conftest import on_isa
import torch

import fastmnist
from fastmnist import _core
from fastmnist.functional import conv2d, conv2d_backward, conv2d_relu

TOL_FWD = 2e-5
TOL_DX = 2e-5
TOL_DW = 1e-4

# (N, C, H, W, K, R, S, stride, padding)
CONFIGS = [
    # the classic MNIST layers
    (1, 1, 28, 28, 16, 3, 3, 1, 1), (64, 1, 28, 28, 16, 3, 3, 1, 1), (256, 1, 28, 28, 16, 3, 3, 1, 1),
    (1, 1, 28, 28, 16, 5, 5, 1, 2), (64, 1, 28, 28, 16, 5, 5, 1, 2),
    (1, 16, 14, 14, 32, 3, 3, 1, 1), (64, 16, 14, 14, 32, 3, 3, 1, 1),
    (1, 16, 14, 14, 32, 5, 5, 1, 2), (64, 16, 14, 14, 32, 5, 5, 1, 2), (256, 16, 14, 14, 32, 5, 5, 1, 2),
    (8, 1, 28, 28, 24, 5, 5, 1, 0), (8, 24, 12, 12, 32, 5, 5, 1, 0),
    # padding 0 / 1 / 2 on both sizes
    (4, 1, 28, 28, 16, 3, 3, 1, 0), (4, 1, 28, 28, 16, 5, 5, 1, 0), (4, 1, 28, 28, 16, 5, 5, 1, 1),
    (4, 16, 14, 14, 32, 3, 3, 1, 0), (4, 16, 14, 14, 32, 3, 3, 1, 2), (4, 16, 14, 14, 32, 5, 5, 1, 0),
    (4, 16, 14, 14, 32, 5, 5, 1, 1), (4, 1, 14, 14, 16, 3, 3, 1, 1), (4, 16, 28, 28, 32, 3, 3, 1, 1),
    # stride 2 (and mixed strides)
    (3, 1, 28, 28, 16, 3, 3, 2, 1), (3, 16, 14, 14, 32, 3, 3, 2, 1), (3, 16, 14, 14, 32, 5, 5, 2, 2),
    (3, 3, 15, 15, 8, 3, 3, 2, 0), (2, 4, 13, 11, 6, 3, 3, (2, 1), (1, 0)), (2, 2, 9, 9, 3, 2, 2, 3, 0),
    (2, 5, 10, 12, 7, 1, 1, 2, 0),
    # non-square kernels and inputs
    (2, 3, 9, 13, 5, 3, 5, 1, (1, 2)), (2, 3, 13, 9, 5, 5, 3, 1, (2, 1)), (2, 2, 11, 7, 4, 1, 3, 1, (0, 1)),
    (2, 2, 7, 11, 4, 2, 1, 1, 0), (1, 6, 5, 17, 9, 2, 4, 1, (1, 1)), (3, 1, 28, 20, 16, 3, 3, 1, 1),
    # channels not divisible by 8 / 16, more than 32 output channels (several channel blocks)
    (3, 3, 10, 10, 5, 3, 3, 1, 1), (3, 7, 10, 10, 11, 3, 3, 1, 1), (2, 17, 9, 9, 33, 3, 3, 1, 1),
    (2, 20, 8, 8, 40, 3, 3, 1, 0), (2, 24, 7, 7, 24, 3, 3, 1, 1), (2, 13, 6, 6, 70, 3, 3, 1, 1),
    (2, 33, 6, 6, 17, 3, 3, 1, 1), (2, 64, 7, 7, 64, 3, 3, 1, 1),
    # 1x1 kernels, kernel == padded input, padding larger than the kernel
    (2, 8, 7, 7, 12, 1, 1, 1, 0), (2, 3, 5, 5, 4, 5, 5, 1, 0), (2, 3, 3, 3, 4, 5, 5, 1, 1),
    (2, 3, 6, 6, 4, 3, 3, 1, 3), (2, 2, 4, 5, 3, 2, 2, 1, (2, 0)),
    # batch 1 and single pixels
    (1, 1, 1, 1, 1, 1, 1, 1, 0), (1, 3, 1, 1, 2, 1, 1, 1, 0), (1, 2, 1, 1, 3, 3, 3, 1, 1),
    (5, 1, 7, 7, 1, 3, 3, 1, 1), (1, 32, 14, 14, 16, 3, 3, 1, 1),
    # a first layer on an image too large for the fixed-stride weight-gradient planes
    (2, 1, 40, 40, 8, 3, 3, 1, 1), (2, 2, 33, 30, 6, 5, 5, 1, 2),
]


def _pair(v):
    return list(v) if isinstance(v, tuple) else [v, v]


def _make(cfg, seed=0):
    n, c, h, w, k, r, s, st, pd = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = (rng.standard_normal((k, c, r, s), dtype=np.float32) / np.sqrt(c * r * s)).astype(np.float32)
    b = rng.standard_normal(k, dtype=np.float32)
    return x, wt, b, st, pd


def _torch_all(x, w, b, st, pd, seed=1):
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    y = torch.nn.functional.conv2d(xt, wt, bt, st, pd)
    g = np.random.default_rng(seed).standard_normal(tuple(y.shape), dtype=np.float32)
    y.backward(torch.from_numpy(g))
    return y.detach().numpy(), g, xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def _close(got, ref, tol, what):
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - ref).max() if ref.size else 0.0
    scale = max(np.abs(ref).max() if ref.size else 0.0, 1e-30)
    assert err <= tol * scale, f"{what}: max|diff| {err:.3g} > {tol} * {scale:.3g}"


def _check(cfg, impl="fast"):
    x, w, b, st, pd = _make(cfg)
    y_ref, g, dx_ref, dw_ref, db_ref = _torch_all(x, w, b, st, pd)
    _close(_core.conv2d_forward(x, w, b, st, pd, False, impl), y_ref, TOL_FWD, "forward")
    _close(_core.conv2d_forward(x, w, b, st, pd, True, impl), np.maximum(y_ref, 0), TOL_FWD, "conv2d_relu")
    dx, dw, db = _core.conv2d_backward(g, x, w, st, pd, True, True, impl)
    _close(dx, dx_ref, TOL_DX, "grad_x")
    _close(dw, dw_ref, TOL_DW, "grad_weight")
    _close(db, db_ref, TOL_DW, "grad_bias")


ISAS = ["generic", "avx2", "avx512"]


def _by_thread_count(fn, counts=(1, 2, 3)):
    prev = fastmnist.get_num_threads()
    try:
        res = []
        for t in counts:
            fastmnist.set_num_threads(t)
            res.append(fn())
    finally:
        fastmnist.set_num_threads(prev)
    return res


def test_config_count():
    assert len(CONFIGS) >= 50


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "x".join(map(str, c)).replace(" ", ""))
def test_conv2d_matches_torch(cfg):
    _check(cfg)


SMALL = [c for c in CONFIGS if c[0] * c[1] * c[2] * c[3] * c[4] <= 200_000]


@pytest.mark.parametrize("cfg", SMALL[::2], ids=lambda c: "x".join(map(str, c)).replace(" ", ""))
def test_im2col_gemm_path_matches_torch(cfg):
    _check(cfg, "gemm")


@pytest.mark.parametrize("cfg", [c for c in SMALL if c[0] * c[1] * c[2] * c[3] * c[4] <= 5000][:8])
def test_reference_loops_match_torch(cfg):
    _check(cfg, "reference")


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_other_isas(isa):
    with on_isa(isa):
        for cfg in [CONFIGS[1], CONFIGS[8], (2, 4, 13, 11, 6, 3, 3, (2, 1), (1, 0)), (2, 13, 6, 6, 70, 3, 3, 1, 1)]:
            _check(cfg)


def test_public_wrappers_and_options():
    x, w, b, st, pd = _make((3, 4, 9, 8, 6, 3, 3, (2, 1), (1, 2)))
    y_ref, g, dx_ref, dw_ref, db_ref = _torch_all(x, w, b, st, pd)
    _close(conv2d(x, w, b, stride=st, padding=pd), y_ref, TOL_FWD, "conv2d")
    _close(fastmnist.conv2d_relu(x, w, b, stride=st, padding=pd), np.maximum(y_ref, 0), TOL_FWD, "relu")
    y_nb = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, st, pd).numpy()
    _close(conv2d(x, w, stride=st, padding=pd), y_nb, TOL_FWD, "conv2d no bias")
    _close(conv2d(x, w, None, [np.int64(2), 1], (np.int32(1), 2)), y_nb, TOL_FWD, "numpy ints")
    dx, dw, db = conv2d_backward(g, x, w, stride=st, padding=pd)
    _close(dx, dx_ref, TOL_DX, "grad_x")
    _close(dw, dw_ref, TOL_DW, "grad_w")
    _close(db, db_ref, TOL_DW, "grad_b")
    dx2, dw2, db2 = conv2d_backward(g, x, w, stride=st, padding=pd, bias=False, input_grad=False)
    assert dx2 is None and db2 is None
    np.testing.assert_array_equal(dw2, dw)


def test_batch_zero():
    x = np.zeros((0, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    assert conv2d(x, w).shape == (0, 3, 3, 3)
    dx, dw, db = conv2d_backward(np.zeros((0, 3, 3, 3), np.float32), x, w)
    assert dx.shape == x.shape and not dw.any() and not db.any()


def test_noncontiguous_inputs():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 3, 30, 20), dtype=np.float32)
    x = base[::2, :, ::2, :].transpose(0, 1, 3, 2)  # strided + transposed: (3, 3, 20, 15)
    w = torch.randn(5, 4, 3, 3).permute(0, 3, 2, 1).numpy()[:, :3]  # torch .numpy() view, (5, 3, 3, 4)
    b = rng.standard_normal(10, dtype=np.float32)[::2]
    assert not x.flags.c_contiguous and not w.flags.c_contiguous and not b.flags.c_contiguous
    xc, wc, bc = (np.ascontiguousarray(a) for a in (x, w, b))
    y_ref, g, dx_ref, dw_ref, db_ref = _torch_all(xc, wc, bc, 1, 1)
    _close(conv2d(x, w, b, 1, 1), y_ref, TOL_FWD, "forward")
    g_nc = np.asfortranarray(g)
    dx, dw, db = conv2d_backward(g_nc, x, w, 1, 1)
    _close(dx, dx_ref, TOL_DX, "grad_x")
    _close(dw, dw_ref, TOL_DW, "grad_w")
    _close(db, db_ref, TOL_DW, "grad_b")


@pytest.mark.parametrize("cfg", [(2, 2, 6, 5, 3, 3, 3, 1, 1), (2, 3, 7, 7, 2, 3, 2, 2, (1, 0)),
                                 (1, 1, 6, 6, 17, 5, 5, 1, 2)])
def test_finite_difference_gradients(cfg):
    """Central differences of L = sum(g * conv2d(x, w, b)) through fastmnist's own forward. L is
    linear in x, w and b, so the difference quotient is exact up to float32 rounding of L."""
    x, w, b, st, pd = _make(cfg, seed=5)
    g = np.random.default_rng(6).standard_normal(conv2d(x, w, b, st, pd).shape).astype(np.float32)
    dx, dw, db = conv2d_backward(g, x, w, st, pd)
    rng = np.random.default_rng(7)
    h = 1e-2

    def loss(xx, ww, bb):
        return float(np.sum(g.astype(np.float64) * conv2d(xx, ww, bb, st, pd)))

    for name, arr, grad in (("x", x, dx), ("w", w, dw), ("b", b, db)):
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(6)]:
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += h
            minus[idx] -= h
            args_p = {"x": (plus, w, b), "w": (x, plus, b), "b": (x, w, plus)}[name]
            args_m = {"x": (minus, w, b), "w": (x, minus, b), "b": (x, w, minus)}[name]
            fd = (loss(*args_p) - loss(*args_m)) / (2 * h)
            assert abs(fd - grad[idx]) <= 2e-3 * max(1.0, abs(grad[idx])), (name, idx, fd, grad[idx])


def test_weight_gradient_is_deterministic():
    x, w, b, st, pd = _make((37, 16, 14, 14, 32, 5, 5, 1, 2))
    g = np.random.default_rng(9).standard_normal((37, 32, 14, 14), dtype=np.float32)
    r1 = conv2d_backward(g, x, w, st, pd)
    r2 = conv2d_backward(g, x, w, st, pd)
    for a1, a2 in zip(r1, r2):
        np.testing.assert_array_equal(a1, a2)


def test_thread_counts_agree():
    x, w, b, st, pd = _make((9, 16, 14, 14, 32, 3, 3, 1, 1))
    y_ref, g, dx_ref, dw_ref, db_ref = _torch_all(x, w, b, st, pd)
    prev = fastmnist.get_num_threads()
    try:
        for t in (1, 3):
            fastmnist.set_num_threads(t)
            _close(conv2d(x, w, b, st, pd), y_ref, TOL_FWD, f"forward t={t}")
            dx, dw, db = conv2d_backward(g, x, w, st, pd)
            _close(dx, dx_ref, TOL_DX, f"grad_x t={t}")
            _close(dw, dw_ref, TOL_DW, f"grad_w t={t}")
    finally:
        fastmnist.set_num_threads(prev)


def test_special_values_propagate():
    x = np.ones((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = np.nan
    y = conv2d(x, np.ones((2, 1, 3, 3), np.float32), padding=1)
    assert np.isnan(y[0, :, 1:4, 1:4]).all() and not np.isnan(y[0, :, 0, :]).any()


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)
G = np.zeros((2, 4, 6, 6), np.float32)


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: conv2d(X[0, 0], W), ValueError, r"x must have 4 dimensions.*\(8, 8\)"),  # (C, H, W) is unbatched
    (lambda: conv2d(X, W[0]), ValueError, r"weight must have 4 dimensions"),
    (lambda: conv2d(X, np.zeros((4, 2, 3, 3), np.float32)), ValueError, r"in-channels.*\(4, 2, 3, 3\).*\(2, 3, 8, 8\)"),
    (lambda: conv2d(X, W, np.zeros(5, np.float32)), ValueError, r"bias must have shape \(K,\) = \(4,\).*\(5,\)"),
    (lambda: conv2d(X, W, np.zeros((4, 1), np.float32)), ValueError, r"bias must have 1 dimensions"),
    (lambda: conv2d(X, np.zeros((4, 3, 11, 3), np.float32)), ValueError, r"larger than the padded input"),
    (lambda: conv2d(X, np.zeros((4, 3, 11, 3), np.float32), padding=1), ValueError, r"larger than the padded"),
    (lambda: conv2d(X, W, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda: conv2d(X, W, padding=(0, -2)), ValueError, r"padding must be >= 0"),
    (lambda: conv2d(X, W, stride=0), ValueError, r"stride must be >= 1"),
    (lambda: conv2d(X, W, stride=(1, -1)), ValueError, r"stride must be >= 1"),
    (lambda: conv2d(X, W, stride=1.5), TypeError, r"stride must be an int or a pair"),
    (lambda: conv2d(X, W, padding=(1, 2, 3)), TypeError, r"padding must be an int or a pair"),
    (lambda: conv2d(X.astype(np.int32), W), TypeError, r"x must be float32"),  # float64 is converted
    (lambda: conv2d(X, W.astype(np.int16)), TypeError, r"weight must be float32"),
    (lambda: conv2d(X, W, np.zeros(4, np.int32)), TypeError, r"bias must be float32"),
    (lambda: conv2d(X.tolist(), W), TypeError, r"x must be a numpy float32 array"),
    (lambda: conv2d(np.zeros((2, 3, 0, 8), np.float32), W), ValueError, r"non-empty"),
    (lambda: conv2d(X, np.zeros((0, 3, 3, 3), np.float32)), ValueError, r"weight must be non-empty"),
    (lambda: conv2d_relu(X, W, stride=0), ValueError, r"stride must be >= 1"),
    (lambda: conv2d_backward(G[:, :3], X, W), ValueError, r"grad_y must have the forward output shape.*\(2, 3, 6, 6\)"),
    (lambda: conv2d_backward(G, X, W, padding=1), ValueError, r"grad_y must have the forward output shape \(N, K, P, Q\) = \(2, 4, 8, 8\)"),
    (lambda: conv2d_backward(G[0], X, W), ValueError, r"grad_y must have 4 dimensions"),
    (lambda: conv2d_backward(G.astype(np.float64), X, W), TypeError, r"grad_y must be float32"),
    (lambda: conv2d_backward(G, X[:, :2], W), ValueError, r"in-channels"),
    (lambda: conv2d_backward(G, X, W, stride=0), ValueError, r"stride must be >= 1"),
])
def test_bad_input(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("impl", ["fast", "gemm"])
@pytest.mark.parametrize("cfg", [(37, 16, 14, 14, 32, 5, 5, 1, 2), (37, 1, 28, 28, 16, 3, 3, 1, 1),
                                 (21, 3, 11, 9, 8, 3, 3, 2, 1)])
def test_weight_gradient_independent_of_thread_count(cfg, impl, isa):
    """Every weight-gradient path (each ISA, the im2col + SGEMM one too) sums per fixed group of
    images, not per thread: bitwise equal whatever the thread count."""
    x, w, b, st, pd = _make(cfg)
    g = np.random.default_rng(4).standard_normal(conv2d(x, w, b, st, pd).shape).astype(np.float32)
    with on_isa(isa):
        res = _by_thread_count(lambda: _core.conv2d_backward(g, x, w, st, pd, True, False, impl))
    dw_ref, db_ref = (t.numpy() for t in torch.ops.aten.convolution_backward(
        torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w), [w.shape[0]], _pair(st), _pair(pd),
        [1, 1], False, [0, 0], 1, [False, True, True])[1:])
    _close(res[0][1], dw_ref, TOL_DW, "grad_weight")
    _close(res[0][2], db_ref, TOL_DW, "grad_bias")
    for r in res[1:]:
        np.testing.assert_array_equal(r[1], res[0][1])
        np.testing.assert_array_equal(r[2], res[0][2])


# ----------------------------------------------------------------------------------------------
# Winograd (stride 1, 3x3 / 5x5): forced F(2x2,.) / F(4x4,3x3) and the default dispatch
# ----------------------------------------------------------------------------------------------

WINO_CONFIGS = [
    # the MNIST 16->32 layers at batch 1 / 3 / 64
    (1, 16, 14, 14, 32, 3, 3, 1, 1), (3, 16, 14, 14, 32, 3, 3, 1, 1), (64, 16, 14, 14, 32, 3, 3, 1, 1),
    (1, 16, 14, 14, 32, 5, 5, 1, 2), (3, 16, 14, 14, 32, 5, 5, 1, 2), (64, 16, 14, 14, 32, 5, 5, 1, 2),
    # partial tiles (odd and non-square sizes), padding 0 / 1 / 2 / 3
    (2, 16, 13, 13, 32, 3, 3, 1, 1), (2, 16, 15, 9, 32, 3, 3, 1, 0), (2, 16, 15, 9, 32, 5, 5, 1, 2),
    (2, 16, 13, 13, 32, 5, 5, 1, 1), (2, 16, 9, 15, 32, 3, 3, 1, 2), (2, 16, 11, 7, 32, 5, 5, 1, 0),
    (2, 8, 10, 10, 8, 3, 3, 1, 3),
    # channels not multiples of 16, more than 32 output channels, input gradient with K < 16
    (2, 17, 13, 13, 33, 3, 3, 1, 1), (2, 9, 12, 12, 12, 5, 5, 1, 2), (2, 20, 9, 11, 18, 3, 3, 1, 2),
    (2, 32, 14, 14, 16, 3, 3, 1, 1), (2, 40, 7, 7, 70, 3, 3, 1, 1), (2, 24, 8, 8, 5, 5, 5, 1, 2),
    # a bigger image (several tile rows per channel block)
    (1, 16, 28, 28, 32, 3, 3, 1, 1),
    # the second layers of the cnn5 and fast models (no padding: input gradient by the adjoint)
    (5, 16, 12, 12, 32, 5, 5, 1, 0), (5, 24, 12, 12, 32, 3, 3, 1, 0),
]


_WINO_DEFAULT = [c for c in CONFIGS if c[1] >= 8 and c[4] >= 8 and c[7] == 1]


@pytest.mark.parametrize("cfg", _WINO_DEFAULT, ids=lambda c: "x".join(map(str, c)).replace(" ", ""))
def test_direct_kernels_still_match_torch(cfg):
    """impl='direct': the direct (non-Winograd) kernels on the shapes the default now sends to Winograd."""
    _check(cfg, "direct")


@pytest.mark.parametrize("impl", ["winograd2", "winograd4", "winograd"])
@pytest.mark.parametrize("cfg", WINO_CONFIGS, ids=lambda c: "x".join(map(str, c)))
def test_winograd_matches_torch(cfg, impl):
    _check(cfg, impl)


def _check_arrays(x, w, b, pd, impls=("winograd2", "winograd4", "fast")):
    y_ref, g, dx_ref, dw_ref, db_ref = _torch_all(x, w, b, 1, pd)
    for impl in impls:
        _close(_core.conv2d_forward(x, w, b, 1, pd, False, impl), y_ref, TOL_FWD, f"forward {impl}")
        _close(_core.conv2d_forward(x, w, b, 1, pd, True, impl), np.maximum(y_ref, 0), TOL_FWD, f"relu {impl}")
        dx, dw, db = _core.conv2d_backward(g, x, w, 1, pd, True, True, impl)
        _close(dx, dx_ref, TOL_DX, f"grad_x {impl}")
        _close(dw, dw_ref, TOL_DW, f"grad_weight {impl}")
        _close(db, db_ref, TOL_DW, f"grad_bias {impl}")


@pytest.mark.parametrize("scale", [1e-4, 1e4])
@pytest.mark.parametrize("R", [3, 5])
def test_winograd_big_and_small_magnitudes(scale, R):
    x, w, b, _, _ = _make((5, 16, 14, 14, 32, R, R, 1, R // 2), seed=11)
    x = (x * scale).astype(np.float32)
    w = (w * 30).astype(np.float32)
    b = (b * scale).astype(np.float32)
    _check_arrays(x, w, b, R // 2)


@pytest.mark.parametrize("R", [3, 5])
def test_winograd_on_mnist_activations(mnist, R):
    """Realistic inputs: real digits through a 1->16 conv + ReLU + max-pool (torch), then the
    16->32 layer (non-negative, mostly-zero activations with a large mean)."""
    x_train = mnist[0]
    imgs = (x_train[:48].astype(np.float32) / 255.0 - 0.1307) / 0.3081
    rng = np.random.default_rng(12)
    w1 = torch.from_numpy((rng.standard_normal((16, 1, R, R)) / R).astype(np.float32))
    with torch.no_grad():
        a = torch.nn.functional.conv2d(torch.from_numpy(imgs[:, None]), w1, torch.full((16,), 0.1), 1, R // 2)
        a = torch.nn.functional.max_pool2d(torch.relu(a), 2).numpy()
    assert a.shape == (48, 16, 14, 14) and (a == 0).mean() > 0.2
    w2 = (rng.standard_normal((32, 16, R, R)) / np.sqrt(16 * R * R)).astype(np.float32)
    b2 = rng.standard_normal(32).astype(np.float32) * 0.1
    _check_arrays(np.ascontiguousarray(a), w2, b2, R // 2)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("cfg", [(4, 16, 14, 14, 32, 3, 3, 1, 1), (4, 16, 14, 14, 32, 5, 5, 1, 2)])
def test_default_dispatch_uses_winograd_on_mnist_layers(cfg, isa):
    """The 16->32 MNIST layers run the Winograd kernels by default on every vector ISA (bitwise the
    same result as the forced Winograd, not the direct kernels' result)."""
    x, w, b, st, pd = _make(cfg)
    g = np.random.default_rng(2).standard_normal((4, 32, 14, 14)).astype(np.float32)
    with on_isa(isa):
        fast = _core.conv2d_forward(x, w, b, st, pd, True, "fast")
        np.testing.assert_array_equal(fast, _core.conv2d_forward(x, w, b, st, pd, True, "winograd"))
        assert not np.array_equal(fast, _core.conv2d_forward(x, w, b, st, pd, True, "direct"))
        for a, c in zip(_core.conv2d_backward(g, x, w, st, pd, True, True, "fast"),
                        _core.conv2d_backward(g, x, w, st, pd, True, True, "winograd")):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("isa, kernels", [
    ("generic", ["im2col + sgemm", "sgemm + col2im", "im2col + sgemm"] * 2),
    ("avx2", ["avx2 winograd F(4x4,3x3)"] * 3 + ["avx2 winograd F(2x2,5x5)"] * 3),
    ("avx512", ["avx512 winograd F(4x4,3x3)"] * 3 + ["avx512 winograd F(2x2,5x5)"] * 3),
])
def test_kernel_report_names_the_conv_kernels(isa, kernels):
    """build_info()["kernels"] / kernel_report() name the kernel each conv op ran on the MNIST
    16->32 layers (3x3 and 5x5, padding R // 2), per ISA."""
    got = []
    with on_isa(isa):
        for r in (3, 5):
            x, w, b, st, pd = _make((2, 16, 14, 14, 32, r, r, 1, r // 2))
            g = np.ones((2, 32, 14, 14), np.float32)
            _core.conv2d_forward(x, w, b, st, pd, True, "fast")
            fwd = _core.kernel_report()["conv2d_forward"]
            _core.conv2d_backward(g, x, w, st, pd, True, True, "fast")
            rep = _core.kernel_report()
            got += [fwd, rep["conv2d_backward_input"], rep["conv2d_backward_weight"]]
    assert got == kernels


@pytest.mark.parametrize("cfg", [(3, 16, 14, 14, 32, 3, 3, 2, 1), (2, 8, 7, 7, 12, 1, 1, 1, 0),
                                 (2, 3, 9, 13, 5, 3, 5, 1, (1, 2)), (2, 6, 6, 6, 4, 3, 3, 1, 3),
                                 (2, 16, 14, 14, 32, 3, 3, (1, 2), 1)])
def test_winograd_impl_falls_back_where_it_does_not_apply(cfg):
    """Strides > 1, 1x1 / non-square kernels, padding > R-1 (input gradient): the other kernels."""
    for impl in ("winograd", "winograd4"):
        _check(cfg, impl)


@pytest.mark.parametrize("isa", ISAS)
def test_winograd_impl_on_each_isa(isa):
    """The forced Winograd impls on every ISA (generic: the direct / im2col kernels instead)."""
    with on_isa(isa):
        _check((3, 16, 14, 14, 32, 3, 3, 1, 1), "winograd")
        _check((3, 16, 14, 14, 32, 5, 5, 1, 2), "winograd2")


# the Winograd configurations small enough to repeat on every ISA
_WINO_SMALL = [c for c in WINO_CONFIGS if c[0] <= 5]


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("cfg", _WINO_SMALL, ids=lambda c: "x".join(map(str, c)))
def test_winograd_matches_torch_on_each_isa(cfg, isa):
    """The Winograd kernels are one source instantiated per ISA (16 lanes on AVX-512, 8 on AVX2):
    both tile sizes on the partial-tile, odd-channel and adjoint shapes, on each vector ISA."""
    with on_isa(isa):
        for impl in ("winograd2", "winograd4"):
            _check(cfg, impl)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("impl", ["winograd2", "winograd4"])
def test_winograd_weight_gradient_independent_of_thread_count(impl, isa):
    x, w, b, st, pd = _make((37, 16, 13, 13, 24, 3, 3, 1, 1))
    g = np.random.default_rng(4).standard_normal((37, 24, 13, 13)).astype(np.float32)
    with on_isa(isa):
        res = _by_thread_count(lambda: _core.conv2d_backward(g, x, w, st, pd, True, True, impl))
    for r in res[1:]:
        for a, c in zip(r, res[0]):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("impl", ["winograd2", "winograd4", "fast"])
def test_winograd_nan_propagates(impl, isa):
    """A NaN input pixel reaches every output that depends on it; outputs whose tiles do not see it
    stay finite."""
    x, w, b, _, _ = _make((2, 16, 14, 14, 32, 3, 3, 1, 1), seed=13)
    x[1, 5, 7, 7] = np.nan
    g = np.ones((2, 32, 14, 14), np.float32)
    g[0, 3, 2, 2] = np.nan
    with on_isa(isa):
        y = _core.conv2d_forward(x, w, b, 1, 1, False, impl)
        yr = _core.conv2d_forward(x, w, b, 1, 1, True, impl)
        dx, dw, db = _core.conv2d_backward(g, x, w, 1, 1, True, True, impl)
    assert np.isnan(y[1, :, 6:9, 6:9]).all() and np.isnan(yr[1, :, 6:9, 6:9]).all()
    assert not np.isnan(y[0]).any() and not np.isnan(y[1, :, [0, 13], :]).any()
    assert np.isnan(dx[0, :, 1:4, 1:4]).all() and not np.isnan(dx[1]).any()
    assert np.isnan(dw[3]).all() and np.isnan(db[3])


def test_bad_impl_name():
    with pytest.raises(ValueError, match="impl must be.*winograd.*got 'winograd3'"):
        _core.conv2d_forward(X, W, None, 1, 0, False, "winograd3")


# ----------------------------------------------------------------------------------------------
# first-layer weight gradient (C <= 4, stride 1): the direct kernel (3x3) and Winograd along the
# kernel rows (5x5), see cpp/conv_wgrad1.cpp
# ----------------------------------------------------------------------------------------------

# (N, C, H, W, K, R, padding): batch sizes across the 16-image groups, odd image sizes (output rows
# not a multiple of the 4-row Winograd tile, columns not a multiple of 16, fewer than 16), channel
# counts not a multiple of the channel blocks, 1-4 input channels, a 64-column image
FIRST_LAYER = [
    (1, 1, 28, 28, 16, 3, 1), (3, 1, 28, 28, 16, 3, 1), (17, 1, 28, 28, 16, 3, 1), (256, 1, 28, 28, 16, 3, 1),
    (1, 1, 28, 28, 16, 5, 2), (3, 1, 28, 28, 16, 5, 2), (17, 1, 28, 28, 16, 5, 2), (256, 1, 28, 28, 16, 5, 2),
    (5, 1, 27, 23, 16, 3, 0), (5, 1, 27, 23, 16, 3, 2), (5, 1, 27, 23, 16, 5, 0), (5, 1, 27, 23, 16, 5, 1),
    (5, 1, 27, 23, 5, 5, 2), (4, 1, 28, 28, 24, 5, 2), (4, 1, 28, 28, 33, 5, 2), (4, 1, 28, 28, 33, 3, 1),
    (3, 1, 28, 28, 7, 3, 1), (3, 1, 28, 28, 3, 5, 2), (6, 2, 13, 9, 12, 5, 1), (6, 3, 11, 14, 10, 5, 2),
    (6, 4, 9, 7, 9, 5, 2), (6, 4, 9, 7, 9, 3, 1), (3, 1, 5, 5, 4, 5, 0), (3, 1, 6, 5, 4, 5, 1),
    (2, 1, 64, 64, 8, 5, 2), (2, 1, 30, 41, 6, 5, 1),
]


@pytest.mark.parametrize("cfg", FIRST_LAYER, ids=lambda c: "x".join(map(str, c)))
def test_first_layer_weight_gradient_matches_torch(cfg):
    n, c, h, w, k, r, pd = cfg
    x, wt, b, st, pd = _make((n, c, h, w, k, r, r, 1, pd))
    _, g, _, dw_ref, db_ref = _torch_all(x, wt, b, st, pd)
    dx, dw, db = _core.conv2d_backward(g, x, wt, st, pd, True, False)
    assert dx is None
    _close(dw, dw_ref, TOL_DW, "grad_weight")
    _close(db, db_ref, TOL_DW, "grad_bias")
    # without the bias gradient: the same weight gradient
    _, dw2, db2 = _core.conv2d_backward(g, x, wt, st, pd, False, False)
    assert db2 is None
    np.testing.assert_array_equal(dw2, dw)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cfg", [(40, 1, 28, 28, 16, 3, 1), (40, 1, 28, 28, 16, 5, 2), (19, 3, 27, 23, 10, 5, 1)])
def test_first_layer_weight_gradient_independent_of_thread_count(cfg, isa):
    n, c, h, w, k, r, pd = cfg
    x, wt, b, st, pd = _make((n, c, h, w, k, r, r, 1, pd))
    g = np.random.default_rng(5).standard_normal((n, k, h + 2 * pd - r + 1, w + 2 * pd - r + 1)).astype(np.float32)
    dw_ref, db_ref = (t.numpy() for t in torch.ops.aten.convolution_backward(
        torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(wt), [k], [1, 1], [pd, pd], [1, 1], False,
        [0, 0], 1, [False, True, True])[1:])
    with on_isa(isa):
        res = _by_thread_count(lambda: conv2d_backward(g, x, wt, 1, pd), (1, 2, 3, 4))
    _close(res[0][1], dw_ref, TOL_DW, "grad_weight")
    _close(res[0][2], db_ref, TOL_DW, "grad_bias")
    for rr in res[1:]:
        np.testing.assert_array_equal(rr[1], res[0][1])
        np.testing.assert_array_equal(rr[2], res[0][2])


@pytest.mark.parametrize("r, pd", [(3, 1), (5, 2)])
def test_first_layer_weight_gradient_nonfinite_stays_in_its_channel(r, pd):
    """A NaN / inf in one output channel's gradient (at a row start, next to the padded lanes past
    the previous row's end) reaches that channel's weight and bias gradients only, and there the
    same entries as in PyTorch."""
    x, wt, b, st, pd = _make((3, 1, 28, 28, 6, r, r, 1, pd))
    g = np.random.default_rng(6).standard_normal((3, 6, 28, 28)).astype(np.float32)
    g[1, 2, 5, 0] = np.nan
    g[2, 4, 9, 0] = np.inf
    _, dw, db = _core.conv2d_backward(g, x, wt, 1, pd, True, False)
    dw_ref, db_ref = (t.numpy() for t in torch.ops.aten.convolution_backward(
        torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(wt), [6], [1, 1], [pd, pd], [1, 1], False,
        [0, 0], 1, [False, True, True])[1:])
    fin = np.isfinite(dw_ref).all(axis=(1, 2, 3))
    assert list(np.flatnonzero(~fin)) == [2, 4]
    assert np.isfinite(dw[fin]).all()
    # within those channels, exactly the entries PyTorch makes non-finite (taps that only meet the
    # zero padding stay finite: inf * 0 products are not formed)
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(dw_ref))
    np.testing.assert_array_equal(np.isinf(dw), np.isinf(dw_ref))
    np.testing.assert_array_equal(np.isfinite(db), np.isfinite(db_ref))
    _close(dw[fin], dw_ref[fin], TOL_DW, "grad_weight of the finite channels")


# The first-layer weight gradient is one kernel source (cpp/conv_wgrad1.inl) instantiated per ISA:
# every vector ISA runs it (AVX2 too, since it beat AVX2's direct kernel), generic runs the portable
# loops. Shapes: the MNIST first layers, and columns that leave several partial / empty vectors on
# the narrower ISAs (Q = 12, 5, 19: 5x5 rows of 2 x 8 lanes with 4 used, one vector with 5 of 8 or
# 16 lanes, 3 vectors of 8) and rows past P in the last Winograd tile.
FIRST_LAYER_ISA = [(3, 1, 28, 28, 16, 3, 1, "direct"), (3, 1, 28, 28, 16, 5, 0, "winograd rows"),
                   (2, 1, 28, 28, 24, 5, 0, "winograd rows"), (3, 1, 16, 16, 5, 5, 0, "winograd rows"),
                   (2, 2, 9, 9, 3, 5, 0, "winograd rows"), (2, 1, 13, 17, 7, 3, 1, "direct"),
                   (18, 3, 23, 19, 6, 5, 2, "winograd rows")]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cfg", FIRST_LAYER_ISA, ids=lambda c: "x".join(map(str, c[:7])))
def test_first_layer_weight_gradient_on_every_isa(cfg, isa):
    n, c, h, w, k, r, pd, kind = cfg
    x, wt, b, st, pd = _make((n, c, h, w, k, r, r, 1, pd))
    _, g, _, dw_ref, db_ref = _torch_all(x, wt, b, st, pd)
    with on_isa(isa):
        _, dw, db = _core.conv2d_backward(g, x, wt, st, pd, True, False)
        kernel = _core.kernel_report()["conv2d_backward_weight"]
    _close(dw, dw_ref, TOL_DW, "grad_weight")
    _close(db, db_ref, TOL_DW, "grad_bias")
    if isa == "generic":
        assert "first-layer" not in kernel
    else:
        assert kernel == f"{isa} first-layer wgrad {kind}"
