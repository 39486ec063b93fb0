"""linear / linear_relu forward and linear_backward against torch (float64 reference, autograd),
plus a finite-difference check of a small composed network.

Tolerances: rtol 1e-4, atol 1e-5 * sqrt(reduction length) against float64 torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastmnist.functional as fm
from fastmnist import _core

SIZES = [(784, 256), (256, 10), (1, 1), (33, 17), (1568, 128), (128, 10)]
BATCHES = [1, 64, 256]


def torch_linear(x, w, b, gy, relu=False):
    xt = torch.from_numpy(x).double().requires_grad_(True)
    wt = torch.from_numpy(w).double().requires_grad_(True)
    bt = torch.from_numpy(b).double().requires_grad_(True) if b is not None else None
    y = F.linear(xt, wt, bt)
    if relu:
        y = torch.relu(y)
    y.backward(torch.from_numpy(gy).double())
    return (y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), None if b is None else bt.grad.numpy())


def close(a, ref, k):
    np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-5 * np.sqrt(max(k, 1)))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("fin,fout", SIZES)
def test_linear(fin, fout, batch, rng):
    x = rng.standard_normal((batch, fin)).astype(np.float32)
    w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32)
    gy = rng.standard_normal((batch, fout)).astype(np.float32)
    ty, tgx, tgw, tgb = torch_linear(x, w, b, gy)
    y = fm.linear(x, w, b)
    assert y.shape == (batch, fout) and y.dtype == np.float32
    close(y, ty, fin)
    gx, gw, gb = fm.linear_backward(gy, x, w)
    close(gx, tgx, fout)
    close(gw, tgw, batch)
    close(gb, tgb, batch)
    close(fm.linear(x, w), ty - b, fin)  # no bias


@pytest.mark.parametrize("fin,fout,batch", [(784, 256, 64), (33, 17, 1), (256, 10, 256)])
def test_linear_relu_and_options(fin, fout, batch, rng):
    x = rng.standard_normal((batch, fin)).astype(np.float32)
    w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32)
    gy = rng.standard_normal((batch, fout)).astype(np.float32)
    ty, *_ = torch_linear(x, w, b, gy, relu=True)
    close(fm.linear_relu(x, w, b), ty, fin)
    close(fm.linear_relu(x, w), np.maximum(torch_linear(x, w, None, gy)[0], 0), fin)
    gx, gw, gb = fm.linear_backward(gy, x, w, bias=False, input_grad=False)
    assert gx is None and gb is None
    close(gw, torch_linear(x, w, b, gy)[2], batch)


def test_reference_and_non_contiguous(rng):
    xb = rng.standard_normal((40, 100)).astype(np.float32)
    wb = rng.standard_normal((60, 33)).astype(np.float32)
    x = xb[::2, 3:36]  # (20, 33) strided
    w = wb.T[:33].T[:17]  # (17, 33), a view
    b = rng.standard_normal(34).astype(np.float32)[::2]
    assert not x.flags.c_contiguous and not b.flags.c_contiguous
    gy = rng.standard_normal((17, 20)).astype(np.float32).T
    ty, tgx, tgw, tgb = torch_linear(np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(b),
                                     np.ascontiguousarray(gy))
    close(fm.linear(x, w, b), ty, 33)
    close(_core._linear_reference(x, w, b), ty, 33)
    gx, gw, gb = fm.linear_backward(gy, x, w)
    close(gx, tgx, 17)
    close(gw, tgw, 20)
    close(gb, tgb, 20)


def test_finite_difference_mlp(rng):
    """Backward of softmax_cross_entropy(linear(relu(linear(x)))) against central differences of
    the forward (float32, step 3e-3)."""
    x = rng.standard_normal((5, 7)).astype(np.float32)
    w1 = rng.standard_normal((6, 7)).astype(np.float32) * 0.5
    b1 = rng.standard_normal(6).astype(np.float32) * 0.5
    w2 = rng.standard_normal((4, 6)).astype(np.float32) * 0.5
    b2 = rng.standard_normal(4).astype(np.float32) * 0.5
    labels = np.array([0, 3, 1, 2, 3])
    a = fm.linear(x, w1, b1)  # keep every pre-activation 0.1 away from the ReLU kink
    x[np.abs(a).min(axis=1) < 0.1] *= -1.5
    a = fm.linear(x, w1, b1)
    assert np.abs(a).min() > 0.02
    params = [x, w1, b1, w2, b2]

    def loss():
        h = fm.relu(fm.linear(x, w1, b1))
        return fm.softmax_cross_entropy(fm.linear(h, w2, b2), labels, grad=False)[0]

    a1 = fm.linear(x, w1, b1)
    h = fm.relu(a1)
    _, g = fm.softmax_cross_entropy(fm.linear(h, w2, b2), labels)
    gh, gw2, gb2 = fm.linear_backward(g, h, w2)
    gx, gw1, gb1 = fm.linear_backward(fm.relu_backward(gh, a1), x, w1)
    eps = 3e-3
    for p, analytic in zip(params, [gx, gw1, gb1, gw2, gb2]):
        num = np.zeros(p.shape)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            lp = loss()
            p[i] = old - eps
            lm = loss()
            p[i] = old
            num[i] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(analytic, num, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_level_correct_and_same_for_any_thread_count(isa, rng):
    """Each level's linear (blocked GEMM with the bias/ReLU epilogue; dot products for <= 16
    outputs; the backward's two GEMMs side by side) against float64 torch, and bitwise equal for
    1, 2 and 3 threads (no atomics, every element the same sequence of operations)."""
    import fastmnist
    from conftest import on_isa

    before = fastmnist.get_num_threads()
    with on_isa(isa):
        try:
            for batch, fin, fout in [(256, 784, 256), (64, 1568, 128), (256, 128, 10), (37, 100, 13), (5, 300, 700)]:
                x = rng.standard_normal((batch, fin)).astype(np.float32)
                w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
                b = rng.standard_normal(fout).astype(np.float32)
                gy = rng.standard_normal((batch, fout)).astype(np.float32)
                ty, tgx, tgw, tgb = torch_linear(x, w, b, gy)
                out = []
                for t in (1, 2, 3):
                    fastmnist.set_num_threads(t)
                    out.append((fm.linear(x, w, b), fm.linear_relu(x, w, b), *fm.linear_backward(gy, x, w)))
                y, yr, gx, gw, gb = out[0]
                close(y, ty, fin)
                close(yr, np.maximum(ty, 0), fin)
                close(gx, tgx, fout)
                close(gw, tgw, batch)
                close(gb, tgb, batch)
                for o in out[1:]:
                    for a, c in zip(o, out[0]):
                        np.testing.assert_array_equal(a, c, err_msg=f"{isa} {batch}x{fin}->{fout}")
        finally:
            fastmnist.set_num_threads(before)


@pytest.mark.parametrize("fout", [10, 256])
def test_nan_propagates_through_bias_and_relu(fout, rng):
    """linear_relu keeps NaN (as torch.relu does), on the dot-product and the blocked path."""
    x = rng.standard_normal((8, 50)).astype(np.float32)
    x[3, 7] = np.nan
    w = rng.standard_normal((fout, 50)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32)
    ref = torch.relu(F.linear(*map(torch.from_numpy, (x, w, b)))).numpy()
    y = fm.linear_relu(x, w, b)
    assert np.isnan(y[3]).all() and not np.isnan(np.delete(y, 3, axis=0)).any()
    np.testing.assert_allclose(np.delete(y, 3, axis=0), np.delete(ref, 3, axis=0), rtol=1e-4, atol=1e-4)


def test_errors(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match="x must be float32"):
        fm.linear(x.astype(np.int32), w)  # float64 is converted
    with pytest.raises(TypeError, match="weight must be float32"):
        fm.linear(x, w.astype(bool))
    with pytest.raises(TypeError, match="bias must be float32"):
        fm.linear(x, w, b.astype(np.int64))
    with pytest.raises(ValueError, match=r"x must have 2 dimensions.*\(20,\)"):
        fm.linear(x.reshape(-1), w)
    with pytest.raises(ValueError, match=r"x of shape \(4, 5\) and weight of shape \(5, 3\)"):
        fm.linear(x, w.T.copy())
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\).*got \(4,\)"):
        fm.linear(x, w, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"grad_y must have shape \(4, 3\).*got \(4, 2\)"):
        fm.linear_backward(np.zeros((4, 2), np.float32), x, w)
    with pytest.raises(TypeError, match="grad_y must be float32"):
        fm.linear_backward(np.zeros((4, 3)), x, w)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_transposed_forward(isa, rng):
    """Batches small next to the layer (N (in + out) < in out) run y^T = W x^T and transpose y: on
    every level against float64 torch, with and without bias and ReLU, NaN kept by the ReLU, odd
    sizes (tails in both directions of the transposition), and the same bits for 1, 2 and 3 threads."""
    import fastmnist
    from conftest import on_isa

    before = fastmnist.get_num_threads()
    with on_isa(isa):
        try:
            for batch, fin, fout in [(64, 784, 256), (86, 517, 203), (64, 1568, 128)]:
                x = rng.standard_normal((batch, fin)).astype(np.float32)
                x[5, 9] = np.nan
                w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
                b = rng.standard_normal(fout).astype(np.float32)
                xt, wt, bt = (torch.from_numpy(a).double() for a in (x, w, b))
                ty = F.linear(xt, wt, bt).numpy()
                ty0 = F.linear(xt, wt).numpy()
                out = []
                for t in (1, 2, 3):
                    fastmnist.set_num_threads(t)
                    _core._reset_kernel_report()
                    out.append((fm.linear(x, w, b), fm.linear_relu(x, w, b), fm.linear(x, w), fm.linear_relu(x, w)))
                    assert _core.kernel_report()["linear"] == f"{isa} transposed (y^T = W x^T)"
                y, yr, y0, yr0 = out[0]
                assert np.isnan(y[5]).all() and np.isnan(yr[5]).all() and np.isnan(yr0[5]).all()
                keep = np.arange(batch) != 5
                for a, ref in [(y, ty), (yr, np.maximum(ty, 0)), (y0, ty0), (yr0, np.maximum(ty0, 0))]:
                    assert not np.isnan(a[keep]).any()
                    close(a[keep], ref[keep], fin)
                for o in out[1:]:
                    for a, c in zip(o, out[0]):
                        np.testing.assert_array_equal(a, c, err_msg=f"{isa} {batch}x{fin}->{fout}")
            # batch 256 runs the direct product on one thread and the transposed one on several:
            # the same bits either way
            x = rng.standard_normal((256, 784)).astype(np.float32)
            w = (rng.standard_normal((256, 784)) / 28).astype(np.float32)
            b = rng.standard_normal(256).astype(np.float32)
            ty = F.linear(*(torch.from_numpy(a).double() for a in (x, w, b))).numpy()
            ran = []
            for t in (1, 2, 3):
                fastmnist.set_num_threads(t)
                _core._reset_kernel_report()
                out[t - 1] = fm.linear_relu(x, w, b)
                ran.append(_core.kernel_report()["linear"])
            assert ran == [isa] + [f"{isa} transposed (y^T = W x^T)"] * 2
            close(out[0], np.maximum(ty, 0), 784)
            np.testing.assert_array_equal(out[1], out[0])
            np.testing.assert_array_equal(out[2], out[0])
        finally:
            fastmnist.set_num_threads(before)
