"""The `fast` recipe and what it needs beyond the other recipes: the cross-entropy's label smoothing
against torch's (value and gradient), the recipe's training steps against the same steps in PyTorch,
and the CLI run training with (and recording) the smoothed loss.

Tolerances: loss rtol 1e-6 / gradient atol 1e-7 vs float64 torch (as tests/test_loss.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from conftest import on_isa
from fastmnist import models, nn
from fastmnist.cli import main
from fastmnist.train import prepare


def torch_ce(x, labels, eps):
    xt = torch.from_numpy(x).double().requires_grad_(True)
    loss = TF.cross_entropy(xt, torch.from_numpy(labels.astype(np.int64)), label_smoothing=eps)
    loss.backward()
    return loss.item(), xt.grad.numpy()


@pytest.mark.parametrize("shape", [(1, 10), (256, 10), (7, 3), (5, 1)])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.37, 1.0])
def test_label_smoothing_matches_torch(shape, eps, rng):
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0]).astype(np.uint8)
    lossf = nn.CrossEntropyLoss(label_smoothing=eps)
    loss = lossf(x, labels)
    grad = lossf.backward()
    tl, tg = torch_ce(x, labels, eps)
    assert isinstance(loss, float) and grad.dtype == np.float32 and grad.shape == shape
    np.testing.assert_allclose(loss, tl, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, tg, rtol=1e-5, atol=1e-7)


def test_label_smoothing_huge_logits_and_nan():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], np.float32)
    labels = np.array([1, 0])
    lossf = nn.CrossEntropyLoss(label_smoothing=0.1)
    tl, tg = torch_ce(x, labels, 0.1)
    np.testing.assert_allclose(lossf(x, labels), tl, rtol=1e-6)
    np.testing.assert_allclose(lossf.backward(), tg, rtol=1e-5, atol=1e-7)
    x[0, 2] = np.nan
    assert np.isnan(lossf(x, labels))


@pytest.mark.parametrize("bad, err", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                      ("x", TypeError), (None, TypeError)])
def test_label_smoothing_bad_values(bad, err):
    with pytest.raises(err, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=bad)


def test_make_loss():
    r = models.recipe("fast")
    assert r.label_smoothing > 0 and "(label smoothing" in r.line()
    assert models.make_loss(r).label_smoothing == r.label_smoothing
    assert models.make_loss(models.recipe("cnn")).label_smoothing == 0.0
    assert models.make_loss(models.recipe("mlp-scratch")).name == "mse"
    with pytest.raises(ValueError, match="cross_entropy loss only"):
        models.make_loss(r.updated(loss="mse"))


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_fast_recipe_steps_match_torch(isa, mnist):
    """Three steps of the whole recipe (loss, Adam, one-cycle) from the same weights and batches, on
    each instruction-set level's kernels."""
    with on_isa(isa):
        _recipe_steps_match_torch(*mnist[:2])


def _recipe_steps_match_torch(x_train, y_train):
    r = models.recipe("fast")
    model = models.build("fast", seed=2)
    tm = model.to_torch()
    steps, bs = 3, 64
    opt = models.make_optimizer(r, model.parameters())
    sched = models.make_scheduler(r, opt, steps)
    lossf = models.make_loss(r)
    topt = torch.optim.Adam(tm.parameters(), lr=r.lr, betas=tuple(r.betas))
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=r.lr, total_steps=steps * r.epochs,
                                                 pct_start=r.pct_start, cycle_momentum=False)
    for step in range(steps):
        x = prepare(x_train[step * bs:(step + 1) * bs])
        y = y_train[step * bs:(step + 1) * bs].astype(np.int64)
        loss = lossf(model.forward(x), y)
        opt.zero_grad()
        model.backward(lossf.backward())
        grads = [p.grad.copy() for p in model.parameters()]
        opt.step()
        sched.step()
        tloss = TF.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y), label_smoothing=r.label_smoothing)
        topt.zero_grad()
        tloss.backward()
        tgrads = [p.grad.numpy().copy() for m in tm for p in m.parameters(recurse=False)]
        topt.step()
        tsched.step()
        assert abs(loss - tloss.item()) < 1e-5 * max(1.0, tloss.item()), step
        for (pname, _), g, tg in zip(model.named_parameters(), grads, tgrads):
            assert np.abs(g - tg).max() <= 1e-4 * max(np.abs(tg).max(), 1e-6) + 1e-6, (pname, step)
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-9)


def test_cli_fast_trains_with_the_smoothed_loss(tmp_path, mnist_dir, capsys):
    out = tmp_path / "fast"
    rc = main(["train", "fast", "--data", str(mnist_dir), "--out", str(out), "--quiet", "--no-figures",
               "--train-size", "600", "--test-size", "200"])
    assert rc == 0
    first = capsys.readouterr().out.splitlines()[0]
    r = models.recipe("fast")
    assert f"loss cross_entropy (label smoothing {r.label_smoothing:g})" in first
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["recipe"]["label_smoothing"] == r.label_smoothing
    # the test loss is torch's smoothed cross-entropy of the saved predictions
    p = np.load(out / "predictions.npz")
    want = TF.cross_entropy(torch.from_numpy(np.log(p["proba"].astype(np.float64))), torch.from_numpy(p["y_true"]),
                            label_smoothing=r.label_smoothing).item()
    assert s["results"]["test_loss"] == pytest.approx(want, rel=1e-4)
    # --label-smoothing overrides it; a bad value or one with the MSE loss fails before training
    assert main(["train", "fast", "--data", str(mnist_dir), "--out", str(tmp_path / "b"),
                 "--label-smoothing", "2"]) == 1
    assert "label_smoothing must be in [0, 1]" in capsys.readouterr().err
    assert main(["train", "fast", "--data", str(mnist_dir), "--out", str(tmp_path / "c"), "--loss", "mse"]) == 1
    assert "--label-smoothing 0" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
