"""Trainer, History and checkpoints on real MNIST: accuracy floors of short runs, determinism,
checkpoint round trips, NaN detection, Ctrl-C, bad input."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from fastmnist import models
from fastmnist.checkpoint import load_checkpoint, save_checkpoint
from fastmnist.train import History, Trainer, TrainingDiverged, prepare


def make(name, seed=0, **kw):
    r = models.recipe(name)
    for k, v in kw.items():
        setattr(r, k, v)
    m = models.build(name, seed=seed)
    opt = models.make_optimizer(r, m.parameters())
    return m, opt, r


def test_cnn_one_epoch_on_10000_images_reaches_95_percent(mnist):
    x_train, y_train, x_test, y_test = mnist
    m, opt, r = make("cnn")
    tr = Trainer(m, opt, batch_size=64, epochs=1, seed=0, quiet=True)
    hist = tr.fit(x_train[:10000], y_train[:10000])
    loss, acc = tr.evaluate(x_test, y_test)
    assert acc >= 0.95, acc
    assert len(hist) == 1 and hist.val_acc == [None] and hist.train_acc[0] > 0.85
    assert abs(acc - np.mean(tr.predict(x_test) == y_test)) < 1e-12


def test_fast_recipe_one_epoch_on_20000_images(mnist):
    x_train, y_train, x_test, y_test = mnist
    m, opt, r = make("fast")
    n = 20000
    sched = models.make_scheduler(r, opt, (n + r.batch_size - 1) // r.batch_size)
    tr = Trainer(m, opt, loss=models.make_loss(r), batch_size=r.batch_size, epochs=1, scheduler=sched, seed=0,
                 quiet=True)
    tr.fit(x_train[:n], y_train[:n])
    assert tr.evaluate(x_test, y_test)[1] >= 0.97


def test_fnn_and_logreg_floors(mnist):
    x_train, y_train, x_test, y_test = mnist
    for name, floor in [("fnn", 0.88), ("logreg", 0.86)]:
        m, opt, _ = make(name)
        tr = Trainer(m, opt, batch_size=64, epochs=1, seed=0, quiet=True)
        tr.fit(x_train[:10000], y_train[:10000])
        assert tr.evaluate(x_test, y_test)[1] >= floor, name


def test_mlp_scratch_mse_sgd_learns(mnist):
    x_train, y_train, x_test, y_test = mnist
    m, opt, r = make("mlp-scratch")
    tr = Trainer(m, opt, loss=r.loss, batch_size=r.batch_size, epochs=1, seed=0, normalize=r.normalize,
                 quiet=True)
    tr.fit(x_train[:10000], y_train[:10000])
    assert tr.evaluate(x_test[:2000], y_test[:2000])[1] >= 0.70


def test_same_seed_same_history_and_weights(mnist):
    x_train, y_train, x_test, y_test = mnist
    runs = []
    for _ in range(2):
        m, opt, _ = make("cnn", seed=5)
        tr = Trainer(m, opt, batch_size=64, epochs=2, seed=7, quiet=True)
        h = tr.fit(x_train[:1500], y_train[:1500], x_val=x_test[:500], y_val=y_test[:500])
        runs.append((h, m.state_dict()))
    (h1, s1), (h2, s2) = runs
    for c in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert getattr(h1, c) == getattr(h2, c), c
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])
    # a different shuffling seed gives a different history
    m, opt, _ = make("cnn", seed=5)
    h3 = Trainer(m, opt, batch_size=64, epochs=2, seed=8, quiet=True).fit(x_train[:1500], y_train[:1500])
    assert h3.train_loss != h1.train_loss


def test_validation_split_and_history_files(mnist, tmp_path):
    x_train, y_train, _, _ = mnist
    m, opt, _ = make("fnn")
    h = Trainer(m, opt, batch_size=100, epochs=2, seed=0, quiet=True).fit(x_train[:2000], y_train[:2000],
                                                                         val_split=0.2)
    assert h.epoch == [1, 2] and all(0.5 < v <= 1 for v in h.val_acc) and all(s > 0 for s in h.seconds)
    h.to_json(tmp_path / "h.json")
    h.to_csv(tmp_path / "h.csv")
    d = json.loads((tmp_path / "h.json").read_text())
    assert set(d) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "partial", "eval_set",
                      "interrupted"}
    assert History.from_json(tmp_path / "h.json").to_dict() == h.to_dict()
    import csv

    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    assert len(rows) == 2 and float(rows[1]["val_acc"]) == pytest.approx(h.val_acc[1])


def test_checkpoint_round_trip_predicts_identically(mnist, tmp_path):
    x_train, y_train, x_test, y_test = mnist
    m, opt, _ = make("cnn5", seed=2)
    tr = Trainer(m, opt, batch_size=128, epochs=1, seed=0, quiet=True)
    tr.fit(x_train[:1000], y_train[:1000])
    p = save_checkpoint(m, tmp_path / "model.npz", opt, meta={"note": "test"})
    assert p.exists() and not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    m2, info = load_checkpoint(p)
    assert info["meta"] == {"note": "test"} and info["spec"]["name"] == "cnn5"
    assert "optimizer_state" in info
    tr2 = Trainer(m2, opt, quiet=True)
    np.testing.assert_array_equal(tr.predict_proba(x_test[:500]), tr2.predict_proba(x_test[:500]))
    np.testing.assert_array_equal(tr.predict(x_test[:500]), tr2.predict(x_test[:500]))
    # loading into a given model of another architecture fails clearly
    with pytest.raises(ValueError, match=r"shape mismatch for 'conv1.weight'"):
        load_checkpoint(p, model=models.build("cnn"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a fastmnist checkpoint"):
        load_checkpoint(tmp_path / "junk.npz")
    with pytest.raises(OSError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.npz")


def test_nan_loss_stops_with_clear_error(mnist):
    x_train, y_train, _, _ = mnist
    m, opt, _ = make("fnn")
    m.parameters()[0].data[0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match="diverged at epoch 1, batch 1/4: the loss became nan"):
        Trainer(m, opt, batch_size=64, epochs=1, quiet=True).fit(x_train[:256], y_train[:256])


class _InterruptAfter:
    """A learning-rate 'schedule' that sends SIGINT to this process after ``n`` batches."""

    def __init__(self, n):
        self.n = n
        self.calls = 0

    def step(self):
        self.calls += 1
        if self.calls == self.n:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_after_current_batch_and_keeps_history(mnist):
    x_train, y_train, _, _ = mnist
    m, opt, _ = make("fnn")
    sched = _InterruptAfter(5)
    before = m.state_dict()
    h = Trainer(m, opt, batch_size=64, epochs=3, scheduler=sched, quiet=True).fit(x_train[:2000], y_train[:2000])
    assert h.interrupted and len(h) == 1 and sched.calls == 5
    assert any(not np.array_equal(before[k], v) for k, v in m.state_dict().items())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_bad_inputs(mnist):
    x_train, y_train, _, _ = mnist
    m, opt, _ = make("logreg")
    tr = Trainer(m, opt, quiet=True)
    with pytest.raises(ValueError, match="1-D array of 10 labels"):
        tr.fit(x_train[:10], y_train[:9])
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        tr.fit(x_train[:10], np.full(10, 12))
    with pytest.raises(ValueError, match=r"images must have shape.*got \(10, 5\)"):
        prepare(np.zeros((10, 5), np.uint8))
    with pytest.raises(TypeError, match="uint8 or floating"):
        prepare(np.zeros((2, 28, 28), np.int32))
    with pytest.raises(ValueError, match="NaN"):
        prepare(np.full((2, 28, 28), np.nan, np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(m, opt, batch_size=0)
    with pytest.raises(ValueError, match="unknown loss"):
        Trainer(m, opt, loss="hinge")
    with pytest.raises(ValueError, match="val_split"):
        tr.fit(x_train[:10], y_train[:10], val_split=1.5)


@pytest.mark.parametrize("name", ["fast", "cnn", "fnn"])
def test_inference_does_not_depend_on_the_batch(mnist, name):
    """Trainer evaluates in batches of Trainer.EVAL_BATCH: its probabilities must be the same bits as one
    forward pass over all the images (and as NumPy's softmax of that pass within float32 rounding)."""
    raw = mnist[2][:700]
    model = models.build(name, seed=3)
    trainer = Trainer(model, models.make_optimizer(models.recipe(name), model.parameters()), batch_size=64)
    assert 700 % Trainer.EVAL_BATCH != 0  # a partial last batch too
    xp = trainer._inputs(raw)
    model.eval()
    whole = model.forward(xp)
    np.testing.assert_array_equal(trainer._outputs(xp), whole)
    e = np.exp(whole.astype(np.float64) - whole.max(1, keepdims=True))
    np.testing.assert_allclose(trainer.predict_proba(raw), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
