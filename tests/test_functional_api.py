"""The functional API and modules accept what torch.nn.functional / torch.nn users pass: dim=,
float64 and torch tensors, unbatched (C, H, W) input, padding="same"/"valid", ceil_mode; losses as
values; the Module contract. Everything against torch computed here."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastmnist as fm
from fastmnist import nn
from fastmnist.train import prepare

torch.set_num_threads(1)


# -------------------------------------------------------------------------------------------
# softmax / log_softmax with dim
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, dim", [((4, 7), 1), ((4, 7), -1), ((4, 7), 0), ((2, 3, 5), 1), ((2, 3, 5), -3),
                                        ((2, 3, 4, 5), 2), ((6,), 0)])
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_dim_matches_torch(shape, dim, fn, rng):
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    got = getattr(fm, fn)(x, dim=dim)
    ref = getattr(TF, fn)(torch.from_numpy(x), dim=dim).numpy()
    assert got.shape == ref.shape and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_softmax_dim_errors(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"dim must be in \[-2, 1\].*got 2"):
        fm.softmax(x, dim=2)
    with pytest.raises(TypeError, match="dim must be an int"):
        fm.log_softmax(x, dim=1.0)


# -------------------------------------------------------------------------------------------
# dtypes and torch tensors
# -------------------------------------------------------------------------------------------
def test_float64_and_torch_tensors_are_converted(rng):
    x = rng.standard_normal((2, 3, 9, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    ref = TF.conv2d(torch.from_numpy(x).float(), torch.from_numpy(w).float(), torch.from_numpy(b).float()).numpy()
    for args in [(x, w, b), (torch.from_numpy(x), torch.from_numpy(w).float(), torch.from_numpy(b)),
                 (torch.from_numpy(x).float().requires_grad_(), w, b)]:  # a tensor that needs grad
        got = fm.conv2d(*args)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    t = torch.from_numpy(x).float()
    np.testing.assert_allclose(fm.max_pool2d(t, 2), TF.max_pool2d(t, 2).numpy())
    np.testing.assert_array_equal(fm.relu(x), TF.relu(t).numpy())
    np.testing.assert_allclose(fm.sigmoid(t), torch.sigmoid(t).numpy(), rtol=1e-6)
    np.testing.assert_allclose(fm.linear(x.reshape(2, -1)[:, :5], w.reshape(4, -1)[:, :5], b),
                               TF.linear(t.reshape(2, -1)[:, :5], torch.from_numpy(w).float().reshape(4, -1)[:, :5],
                                         torch.from_numpy(b).float()).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fm.softmax(t.reshape(2, -1), dim=1), TF.softmax(t.reshape(2, -1), dim=1).numpy(),
                               rtol=1e-5, atol=1e-7)


def test_integer_input_is_refused_not_converted(rng):
    with pytest.raises(TypeError, match=r"x must be float32.*got dtype int64"):
        fm.conv2d(np.zeros((1, 1, 4, 4), np.int64), np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(TypeError, match=r"x must be float32.*got dtype bool"):
        fm.relu(torch.zeros(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="x must be a numpy"):
        fm.conv2d([[[[1.0]]]], np.zeros((1, 1, 1, 1), np.float32))


# -------------------------------------------------------------------------------------------
# unbatched input, padding="same"/"valid", dilation/groups refusal
# -------------------------------------------------------------------------------------------
def test_unbatched_conv_and_pool(rng):
    x = rng.standard_normal((3, 10, 11)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    ref = TF.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    got = fm.conv2d(x, w, padding=1)
    assert got.shape == ref.shape == (5, 10, 11)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fm.conv2d_relu(x, w, padding=1), np.maximum(ref, 0), rtol=1e-4, atol=1e-4)
    gy = rng.standard_normal(ref.shape).astype(np.float32)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    TF.conv2d(xt, wt, padding=1).backward(torch.from_numpy(gy))
    gx, gw, _ = fm.conv2d_backward(gy, x, w, padding=1, bias=False)
    assert gx.shape == x.shape
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(fm.max_pool2d(x, 2), TF.max_pool2d(torch.from_numpy(x), 2).numpy())


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's notice
@pytest.mark.parametrize("kernel", [(3, 3), (4, 4), (2, 5), (1, 1), (5, 2)])
def test_padding_same_and_valid_match_torch(kernel, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3) + kernel).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    for pad in ("same", "valid"):
        ref = TF.conv2d(xt, wt, bt, padding=pad)
        got = fm.conv2d(x, w, b, padding=pad)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref.detach().numpy(), rtol=1e-4, atol=1e-4)
        gy = rng.standard_normal(ref.shape).astype(np.float32)
        for t in (xt, wt, bt):
            t.grad = None
        ref.backward(torch.from_numpy(gy))
        gx, gw, gb = fm.conv2d_backward(gy, x, w, padding=pad)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(gb, bt.grad.numpy(), rtol=1e-4, atol=1e-4)
    assert fm.conv2d(x, w, padding="same").shape[2:] == x.shape[2:]


def test_unsupported_options_raise_clearly(rng):
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        fm.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be an int, a pair, 'same' or 'valid', got 'full'"):
        fm.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="dilation must be 1"):
        fm.conv2d(x, w, dilation=2)
    with pytest.raises(ValueError, match="groups must be 1"):
        fm.conv2d(x, w[:, :1], groups=2)
    with pytest.raises(ValueError, match="dilation must be 1"):
        fm.max_pool2d(x, 2, dilation=(2, 1))


# -------------------------------------------------------------------------------------------
# max_pool2d ceil_mode
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, k, s, p", [((2, 3, 7, 7), 2, 2, 0), ((1, 2, 8, 9), 3, 2, 1), ((1, 1, 5, 6), 2, 3, 0),
                                            ((2, 2, 6, 6), 2, 2, 0), ((1, 1, 10, 7), (3, 2), (2, 2), (1, 0)),
                                            ((3, 7, 5), 3, 3, 1), ((1, 1, 4, 4), 3, 2, 1)])
def test_max_pool_ceil_mode_matches_torch(shape, k, s, p, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    x[..., 0, 0] = -np.inf  # a window of -inf keeps a real argmax
    xt = torch.from_numpy(x).requires_grad_()
    ref, ridx = TF.max_pool2d(xt, k, s, p, ceil_mode=True, return_indices=True)
    y, idx = fm.max_pool2d(x, k, s, p, ceil_mode=True, return_indices=True)
    assert y.shape == tuple(ref.shape)
    np.testing.assert_array_equal(y, ref.detach().numpy())
    np.testing.assert_array_equal(idx, ridx.numpy())
    np.testing.assert_array_equal(fm.max_pool2d(x, k, s, p, ceil_mode=True), y)
    if len(shape) == 4:
        gy = rng.standard_normal(y.shape).astype(np.float32)
        ref.backward(torch.from_numpy(gy))
        np.testing.assert_allclose(fm.max_pool2d_backward(gy, idx, x.shape), xt.grad.numpy(), rtol=1e-6)


# -------------------------------------------------------------------------------------------
# losses as values, Module contract, model(x) inputs
# -------------------------------------------------------------------------------------------
def test_losses_are_values_with_backward(rng):
    z = rng.standard_normal((6, 10)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    zt = torch.from_numpy(z).requires_grad_()
    for crit, tl in [(nn.CrossEntropyLoss(), TF.cross_entropy(zt, torch.from_numpy(y))),
                     (nn.MSELoss(), TF.mse_loss(zt, TF.one_hot(torch.from_numpy(y), 10).float()))]:
        with pytest.raises(RuntimeError, match="before the loss was computed"):
            crit.backward()
        loss = crit(z, y)
        assert isinstance(loss, float)
        zt.grad = None
        tl.backward()
        assert abs(loss - tl.item()) < 1e-6
        np.testing.assert_allclose(crit.backward(), zt.grad.numpy(), rtol=1e-5, atol=1e-7)
        l2, g2 = crit.loss_and_grad(z, y)
        assert l2 == pytest.approx(loss) and np.array_equal(g2, crit.backward())


def test_every_module_has_state_dict_load_and_zero_grad(rng):
    lin, tlin = nn.Linear(5, 3, seed=1), torch.nn.Linear(5, 3)
    assert list(lin.state_dict()) == list(tlin.state_dict()) == ["weight", "bias"]
    lin.load_state_dict(tlin.state_dict())  # torch tensors accepted
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(lin(x), tlin(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    lin.backward(np.ones((4, 3), np.float32))
    assert lin.weight.grad is not None
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None
    conv = nn.Conv2d(1, 2, 3)
    with pytest.raises(ValueError, match=r"missing keys \['bias'\]"):
        conv.load_state_dict({"weight": np.zeros((2, 1, 3, 3))})
    assert nn.ReLU().state_dict() == {} and nn.MaxPool2d(2).load_state_dict({}) is not None


def test_model_call_accepts_trainer_inputs(mnist):
    from fastmnist import models

    x_train = mnist[0][:5]
    m = models.build("cnn", seed=0).eval()
    ref = m.forward(prepare(x_train))
    np.testing.assert_array_equal(m(x_train), ref)                     # uint8 (N, 28, 28), as the Trainer
    np.testing.assert_array_equal(m(x_train.reshape(5, 784)), ref)      # uint8 (N, 784)
    xp = prepare(x_train)
    np.testing.assert_array_equal(m(torch.from_numpy(xp)), ref)         # torch tensor
    np.testing.assert_allclose(m(xp.astype(np.float64)), ref)           # float64
    maps = m.feature_maps(x_train[:1])
    np.testing.assert_allclose(maps[-1][1], ref[:1], rtol=1e-5, atol=1e-5)
    m.input_normalize = False
    np.testing.assert_array_equal(m(x_train), m.forward(prepare(x_train, normalize=False)))
    with pytest.raises(TypeError, match="got dtype int32"):
        m(x_train.astype(np.int32))


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")  # torch's notice
def test_linear_zero_in_features_matches_torch():
    # issue 14, item 15: nn.Linear(0, 3) raised ZeroDivisionError; torch allows it (output = bias = 0)
    lin, tlin = nn.Linear(0, 3), torch.nn.Linear(0, 3)
    assert lin.weight.shape == tuple(tlin.weight.shape) == (3, 0)
    np.testing.assert_array_equal(lin.bias.data, tlin.bias.detach().numpy())
    x = np.zeros((2, 0), np.float32)
    np.testing.assert_array_equal(lin(x), tlin(torch.from_numpy(x)).detach().numpy())
    with pytest.raises(ValueError, match="in_features must be >= 0, got -1"):
        nn.Linear(-1, 3)
    with pytest.raises(TypeError, match="out_features must be an int"):
        nn.Linear(3, 2.5)
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        nn.Conv2d(0, 3, 3)


# -------------------------------------------------------------------------------------------
# the fusion pass
# -------------------------------------------------------------------------------------------
def _small(seed=0, **kw):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, seed=seed), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, seed=seed + 1), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Conv2d(6, 6, 1, seed=seed + 4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6, 12, seed=seed + 2), nn.ReLU(),
                         nn.Linear(12, 5, seed=seed + 3), **kw)


def test_fuse_pass_equals_torch_and_shares_parameters(rng):
    model = _small(seed=3, fuse=False)
    fused = nn.fuse(model)
    kinds = [type(l).__name__ for l in fused.layers.values()]
    assert kinds == ["ConvReLUPool2d", "ConvReLUPool2d", "ConvReLU2d", "Flatten", "LinearReLU", "Linear"]
    assert list(fused.state_dict()) == list(model.state_dict())
    assert all(a is b for a, b in zip(fused.parameters(), model.parameters()))
    x = rng.standard_normal((3, 1, 10, 10)).astype(np.float32)
    y = np.array([0, 3, 4])
    tm = model.to_torch()
    xt = torch.from_numpy(x).requires_grad_()
    tloss = TF.cross_entropy(tm(xt), torch.from_numpy(y))
    tloss.backward()
    for m in (model, fused):
        m.zero_grad()
        crit = nn.CrossEntropyLoss()
        loss = crit(m(x), y)
        gx = m.backward(crit.backward(), input_grad=True)
        assert abs(loss - tloss.item()) < 1e-5
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-6)
        for p, tp in zip(m.parameters(), tm.parameters()):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(fused.forward(x), _small(seed=3).forward(x))  # Sequential fuses by default
    with pytest.raises(TypeError, match="must be a fastmnist.nn.Sequential"):
        nn.fuse(nn.Linear(2, 2))
