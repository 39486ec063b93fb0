"""softmax, log_softmax, softmax_cross_entropy, mse_loss and one_hot against torch (autograd for
the gradients).

Tolerances: rtol 1e-5 / atol 1e-6 for values and gradients (loss rtol 1e-6 vs float64 torch)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastmnist.functional as fm
from torchref import autograd

SHAPES = [(1, 10), (64, 10), (256, 10), (3, 1), (7, 33), (1000, 40)]


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_log_softmax(shape, rng):
    x = (5 * rng.standard_normal(shape)).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    ty, tgx = autograd(lambda t: F.softmax(t, dim=-1), x, gy)
    y = fm.softmax(x)
    np.testing.assert_allclose(y, ty, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fm.softmax_backward(gy, ty), tgx, rtol=1e-4, atol=1e-6)
    ty, tgx = autograd(lambda t: F.log_softmax(t, dim=-1), x, gy)
    y = fm.log_softmax(x)
    np.testing.assert_allclose(y, ty, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fm.log_softmax_backward(gy, ty), tgx, rtol=1e-4, atol=1e-5)


def torch_ce(x, labels):
    xt = torch.from_numpy(x).double().requires_grad_(True)
    loss = F.cross_entropy(xt, torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
    return loss.item(), xt.grad.numpy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.int16])
def test_cross_entropy(shape, dtype, rng):
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0]).astype(dtype)
    loss, grad = fm.softmax_cross_entropy(x, labels)
    tl, tg = torch_ce(x, labels)
    assert isinstance(loss, float) and grad.dtype == np.float32 and grad.shape == shape
    np.testing.assert_allclose(loss, tl, rtol=1e-6)
    np.testing.assert_allclose(grad, tg, rtol=1e-5, atol=1e-7)
    loss2, g2 = fm.softmax_cross_entropy(x, labels, grad=False)
    assert g2 is None and loss2 == loss


def test_cross_entropy_huge_logits():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4 - 1, -1e4]], np.float32)
    for labels in [np.array([0, 1, 2]), np.array([1, 0, 1]), np.array([2, 2, 0])]:
        loss, grad = fm.softmax_cross_entropy(x, labels)
        tl, tg = torch_ce(x, labels)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        np.testing.assert_allclose(loss, tl, rtol=1e-6)
        np.testing.assert_allclose(grad, tg, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fm.softmax(x), F.softmax(torch.from_numpy(x), -1).numpy(), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(fm.log_softmax(x), F.log_softmax(torch.from_numpy(x), -1).numpy(), rtol=1e-6)


def test_cross_entropy_batch1_and_non_contiguous(rng):
    x = rng.standard_normal((10, 1)).astype(np.float32).T  # (1, 10) view
    loss, grad = fm.softmax_cross_entropy(x, np.array([7]))
    tl, tg = torch_ce(np.ascontiguousarray(x), np.array([7]))
    np.testing.assert_allclose(loss, tl, rtol=1e-6)
    np.testing.assert_allclose(grad, tg, rtol=1e-5, atol=1e-7)
    xb = rng.standard_normal((64, 20)).astype(np.float32)
    x = xb[:, ::2]
    labels = rng.integers(0, 10, 128)[::2]
    loss, grad = fm.softmax_cross_entropy(x, labels)
    tl, tg = torch_ce(np.ascontiguousarray(x), labels)
    np.testing.assert_allclose(loss, tl, rtol=1e-6)
    np.testing.assert_allclose(grad, tg, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", [(1, 10), (64, 10), (3, 7, 5), (100000,)])
def test_mse(shape, rng):
    p = rng.standard_normal(shape).astype(np.float32)
    t = rng.standard_normal(shape).astype(np.float32)
    pt = torch.from_numpy(p).double().requires_grad_(True)
    tl = F.mse_loss(pt, torch.from_numpy(t).double())
    tl.backward()
    loss, grad = fm.mse_loss(p, t)
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-6)
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-5, atol=1e-9)
    assert fm.mse_loss(p, t, grad=False)[1] is None


def test_mse_one_hot_targets(rng):
    labels = rng.integers(0, 10, 64)
    oh = fm.one_hot(labels)
    np.testing.assert_array_equal(oh, F.one_hot(torch.from_numpy(labels), 10).numpy().astype(np.float32))
    assert oh.dtype == np.float32
    p = rng.random((64, 10)).astype(np.float32)
    np.testing.assert_allclose(fm.mse_loss(p, oh)[0], F.mse_loss(torch.from_numpy(p), torch.from_numpy(oh)).item(),
                               rtol=1e-6)
    assert fm.one_hot(np.array([2], np.uint8), 3).tolist() == [[0, 0, 1]]


def test_softmax_non_finite_rows_match_torch():
    x = np.array([[np.inf, 1, 2], [-np.inf, -np.inf, -np.inf], [-np.inf, 0, 1], [np.nan, 1, 2], [1e30, -1e30, 0]],
                 np.float32)
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(fm.softmax(x), F.softmax(xt, -1).numpy(), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(fm.log_softmax(x), F.log_softmax(xt, -1).numpy(), rtol=1e-6, equal_nan=True)


def test_nan_propagates():
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], np.float32)
    loss, grad = fm.softmax_cross_entropy(x, np.array([1, 2]))
    assert np.isnan(loss) and np.isnan(grad[0]).all() and np.isfinite(grad[1]).all()
    assert np.isnan(fm.softmax(x)[0]).all()


def test_same_result_for_any_thread_count(rng):
    import fastmnist

    logits = rng.standard_normal((20000, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 20000)
    p = rng.standard_normal((300, 1000)).astype(np.float32)
    t = rng.standard_normal((300, 1000)).astype(np.float32)
    before = fastmnist.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            fastmnist.set_num_threads(n)
            out.append((*fm.softmax_cross_entropy(logits, labels), *fm.mse_loss(p, t), fm.softmax(logits)))
    finally:
        fastmnist.set_num_threads(before)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_errors(rng):
    x = rng.standard_normal((4, 10)).astype(np.float32)
    with pytest.raises(ValueError, match=r"labels\[2\] = 10 is outside \[0, 10\)"):
        fm.softmax_cross_entropy(x, np.array([0, 1, 10, 3]))
    with pytest.raises(ValueError, match=r"labels\[0\] = -1"):
        fm.softmax_cross_entropy(x, np.array([-1, 1, 2, 3]))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        fm.softmax_cross_entropy(x, np.array([0.0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\).*got \(3,\)"):
        fm.softmax_cross_entropy(x, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="logits must be float32"):
        fm.softmax_cross_entropy(x.astype(np.float64), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"logits must have 2 dimensions"):
        fm.softmax_cross_entropy(x.reshape(-1), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="at least one row"):
        fm.softmax_cross_entropy(np.zeros((0, 10), np.float32), np.zeros(0, np.int64))
    with pytest.raises(TypeError, match="x must be float32"):
        fm.softmax(x.astype(np.int32))  # float64 is converted
    with pytest.raises(ValueError, match=r"dim must be in \[-3, 2\]"):  # any rank, along dim
        fm.log_softmax(x.reshape(2, 2, 10), dim=3)
    with pytest.raises(ValueError, match=r"same shape.*\(4, 10\).*\(4, 9\)"):
        fm.mse_loss(x, x[:, :9])
    with pytest.raises(TypeError, match="target must be float32"):
        fm.mse_loss(x, x.astype(np.float64))
    with pytest.raises(ValueError, match=r"labels\[1\] = 10 is outside \[0, 10\)"):
        fm.one_hot(np.array([0, 10]))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        fm.one_hot(np.array([0.5]))
