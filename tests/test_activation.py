"""relu / sigmoid forward and backward against torch (autograd for the gradients).

Tolerances: relu and its gradient exact; sigmoid rtol 1e-6 / atol 1e-7 (exp differs by an ulp),
sigmoid_backward rtol 1e-6."""
import numpy as np
import pytest
import torch

import fastmnist.functional as fm
from torchref import autograd

SHAPES = [(7,), (3, 5), (64, 16, 28, 28), (1, 1, 1, 1), (0, 4), (2, 3, 5, 7, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_relu(shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    if x.size:
        x.reshape(-1)[::7] = 0.0  # exact zeros: gradient 0 there, as torch
    gy = rng.standard_normal(shape).astype(np.float32)
    ty, tgx = autograd(torch.relu, x, gy)
    y = fm.relu(x)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(fm.relu_backward(gy, x), tgx)


@pytest.mark.parametrize("shape", SHAPES)
def test_sigmoid(shape, rng):
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    if x.size > 4:
        x.reshape(-1)[:4] = [100.0, -100.0, 0.0, -20.0]
    gy = rng.standard_normal(shape).astype(np.float32)
    ty, tgx = autograd(torch.sigmoid, x, gy)
    y = fm.sigmoid(x)
    np.testing.assert_allclose(y, ty, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fm.sigmoid_backward(gy, ty), tgx, rtol=1e-6, atol=1e-7)


def test_nan_propagates():
    x = np.array([np.nan, -1.0, 2.0, np.inf, -np.inf], np.float32)
    gy = np.ones_like(x)
    np.testing.assert_array_equal(fm.relu(x), torch.relu(torch.from_numpy(x)).numpy())
    np.testing.assert_array_equal(fm.sigmoid(x), torch.sigmoid(torch.from_numpy(x)).numpy())
    tgx = torch.ops.aten.threshold_backward(torch.from_numpy(gy), torch.from_numpy(x), 0).numpy()
    np.testing.assert_array_equal(fm.relu_backward(gy, x), tgx)
    assert np.isnan(fm.relu(x)[0]) and np.isnan(fm.sigmoid(x)[0])


def test_non_contiguous(rng):
    base = rng.standard_normal((32, 16, 28, 28)).astype(np.float32)
    x = base.transpose(1, 0, 3, 2)[:, ::2]
    gy = rng.standard_normal(x.shape).astype(np.float32).transpose(3, 2, 1, 0).copy().transpose(3, 2, 1, 0)
    assert not x.flags.c_contiguous and not gy.flags.c_contiguous
    xc = np.ascontiguousarray(x)
    np.testing.assert_array_equal(fm.relu(x), np.maximum(xc, 0))
    np.testing.assert_array_equal(fm.relu_backward(gy, x), np.where(xc > 0, gy, 0))
    np.testing.assert_allclose(fm.sigmoid(x), torch.sigmoid(torch.from_numpy(xc)).numpy(), rtol=1e-6)


def test_errors(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(TypeError, match="x must be float32"):
        fm.relu(x.astype(np.int64))  # float64 is converted
    with pytest.raises(TypeError, match="x must be float32"):
        fm.sigmoid(x.astype(np.int32))
    with pytest.raises(TypeError, match="x must be a numpy"):
        fm.relu([1.0, 2.0])
    with pytest.raises(ValueError, match=r"same shape.*\(4, 5\).*\(5, 4\)"):
        fm.relu_backward(x, x.T.copy())
    with pytest.raises(TypeError, match="y must be float32"):
        fm.sigmoid_backward(x, x.astype(np.float64))
    with pytest.raises(TypeError, match="grad_y must be float32"):
        fm.relu_backward(x.astype(np.float16), x)
