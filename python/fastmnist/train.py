"""Training loop and history (checkpoints: :mod:`fastmnist.checkpoint`).

The whole data set is converted once to a float32 (N, 1, 28, 28) array; each epoch draws a
permutation from the seed and slices batches from it, so no Python work happens per sample.
The same seed and thread count give an identical :class:`History`.

Example::

    from fastmnist import models, train
    model = models.build("cnn", seed=0)
    opt = fastmnist.optim.Adam(model.parameters(), lr=1e-3)
    trainer = train.Trainer(model, opt, batch_size=64, epochs=1, seed=0)
    history = trainer.fit(x_train, y_train, x_val=x_test, y_val=y_test, eval_set="test")
    print(trainer.evaluate(x_test, y_test))
"""
from __future__ import annotations

import collections
import csv
import io
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import nn
from ._io import atomic_write_text
from ._progress import progress

__all__ = ["Trainer", "History", "fit", "prepare", "TrainingDiverged", "MNIST_MEAN", "MNIST_STD"]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class TrainingDiverged(ValueError):
    """Training diverged: the loss or a parameter became NaN or infinite, or the loss exploded."""


class _DivergenceCheck:
    """Stops a run whose loss or parameters are non-finite, or whose loss exploded: the mean over
    the last ``window`` batches above ``ratio`` x the first batch's loss (the initial model's) and
    above ``floor``. The named recipes stay far below: on 3,000 real images their 10-batch mean peaks
    at 1.04x the first loss (4.4x for mlp-scratch, whose MSE on sigmoid outputs cannot exceed 1)."""

    def __init__(self, optimizer, window=10, ratio=1e3, floor=1e2, param_every=100):
        self.optimizer, self.window, self.ratio, self.floor, self.param_every = optimizer, window, ratio, floor, param_every
        self.first = None
        self.recent = collections.deque(maxlen=window)

    def _fail(self, what, ep, b, nb):
        raise TrainingDiverged(f"training diverged at epoch {ep}, batch {b + 1}/{nb}: {what}; lower the "
                               f"learning rate (--lr; the optimizer's rate was {getattr(self.optimizer, 'lr', '?')})")

    def loss(self, loss, ep, b, nb):
        if not math.isfinite(loss):
            self._fail(f"the loss became {loss}", ep, b, nb)
        if self.first is None:
            self.first = loss
        self.recent.append(loss)
        mean = sum(self.recent) / len(self.recent)
        if len(self.recent) == self.window and mean > max(self.ratio * self.first, self.floor):
            self._fail(f"the loss over the last {self.window} batches averages {mean:.3g}, over "
                       f"{self.ratio:g}x the initial {self.first:.3g}", ep, b, nb)

    def params(self, model, ep, b, nb, force=False):
        if force or (b + 1) % self.param_every == 0:
            for name, p in model.named_parameters():
                with np.errstate(invalid="ignore", over="ignore"):
                    total = np.sum(p.data, dtype=np.float64)  # NaN or inf iff some element is
                if not math.isfinite(total):
                    self._fail(f"parameter {name!r} holds NaN or infinite values", ep, b, nb)


def prepare(x, normalize=True) -> np.ndarray:
    """Images -> float32 (N, 1, 28, 28). uint8 input is scaled to [0, 1]; float input is taken as
    already in [0, 1]. With ``normalize`` the MNIST mean/std normalisation is applied."""
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, 28, 28), (N, 784) or (N, 1, 28, 28), got {x.shape}")
    if x.dtype == np.uint8:
        out = x.astype(np.float32) * np.float32(1.0 / 255.0)
    elif np.issubdtype(x.dtype, np.floating):
        out = np.array(x, dtype=np.float32)
        if not np.all(np.isfinite(out)):
            raise ValueError("images contain NaN or infinite values")
    else:
        raise TypeError(f"images must be uint8 or floating point, got dtype {x.dtype}")
    if normalize:
        out -= np.float32(MNIST_MEAN)
        out *= np.float32(1.0 / MNIST_STD)
    return np.ascontiguousarray(out)


def _labels(y, n, what="y"):
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{what} must be a 1-D array of {n} labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{what} must hold integer labels, got dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{what} labels must be in 0..9, got range {y.min()}..{y.max()}")
    return y.astype(np.int64)


@dataclass
class History:
    """Per-epoch metrics. ``val_*`` hold None where there was no evaluation set. ``eval_set`` names
    what the ``val_*`` columns measured: ``"val"`` (a validation split) or ``"test"`` (the test set):
    history.json / history.csv then call the columns ``test_loss`` / ``test_acc``. ``partial`` marks
    an epoch cut short by Ctrl-C; ``interrupted`` the run."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    partial: list = field(default_factory=list)
    interrupted: bool = False
    eval_set: str = "val"

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "partial")

    def append(self, **row):
        row.setdefault("partial", False)
        for c in self.COLUMNS:
            getattr(self, c).append(row.get(c))

    def _name(self, c):
        return c.replace("val_", "test_") if self.eval_set == "test" and c.startswith("val_") else c

    def to_dict(self) -> dict:
        d = {self._name(c): list(getattr(self, c)) for c in self.COLUMNS}
        d["eval_set"] = self.eval_set
        d["interrupted"] = bool(self.interrupted)
        return d

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_csv(self, path=None) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([self._name(c) for c in self.COLUMNS])
        for i in range(len(self.epoch)):
            row = []
            for c in self.COLUMNS:
                v = getattr(self, c)[i]
                row.append("" if v is None else int(bool(v)) if c == "partial" else v)
            w.writerow(row)
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d) -> "History":
        eval_set = d.get("eval_set") or ("test" if "test_acc" in d and "val_acc" not in d else "val")
        cols = {}
        for c in cls.COLUMNS:
            alt = c.replace("val_", "test_")
            v = d.get(c, d.get(alt, []))
            cols[c] = list(v) if v is not None else []
        n = len(cols["epoch"])
        if len(cols["partial"]) != n:
            cols["partial"] = [False] * n
        return cls(**cols, interrupted=bool(d.get("interrupted", False)), eval_set=eval_set)

    @classmethod
    def from_json(cls, path_or_text) -> "History":
        s = str(path_or_text)
        text = s if s.lstrip().startswith("{") else Path(s).read_text()
        return cls.from_dict(json.loads(text))

    def __len__(self):
        return len(self.epoch)


class _StopFlag:
    """SIGINT handler that lets the current batch finish (installed only in the main thread)."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.stop:  # second Ctrl-C: give up at once
                    raise KeyboardInterrupt
                self.stop = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class Trainer:
    """Mini-batch training of a :class:`fastmnist.nn.Sequential`.

    Parameters
    ----------
    model, optimizer : the network and an optimizer over ``model.parameters()``.
    loss : ``"cross_entropy"`` (integer labels) or ``"mse"`` (one-hot targets), or a loss object.
    batch_size, epochs : as usual; the last partial batch of an epoch is kept.
    augment : None or a callable ``t(x_batch_float32_in_[0,1], rng) -> x_batch`` (see
        :mod:`fastmnist.augment`), applied to each training batch before normalisation.
    scheduler : None or a learning-rate schedule with ``step()``, stepped after every batch.
    seed : drives the per-epoch permutations, the augmentation and the validation split.
    normalize : apply the MNIST mean/std normalisation to the inputs.
    quiet : no progress bar and no per-epoch lines.
    log : callable receiving one line per epoch (default: ``print`` unless quiet).
    """

    def __init__(self, model, optimizer, loss="cross_entropy", batch_size=64, epochs=1, augment=None,
                 scheduler=None, seed=0, normalize=True, quiet=False, log=None):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(epochs) < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.model = model
        model.input_normalize = bool(normalize)  # model(uint8 images) then prepares them as we do
        self.optimizer = optimizer
        self.loss = nn.get_loss(loss)
        self.batch_size = int(batch_size)
        self.epochs = int(epochs)
        self.augment = augment
        self.scheduler = scheduler
        self.seed = seed
        self.normalize = bool(normalize)
        self.quiet = bool(quiet)
        self.log = log if log is not None else (None if quiet else print)
        self.history = History()
        self.train_seconds = 0.0

    # -- data ---------------------------------------------------------------------------------
    def _inputs(self, x, normalize=None):
        return prepare(x, self.normalize if normalize is None else normalize)

    # -- training -------------------------------------------------------------------------------
    def fit(self, x, y, x_val=None, y_val=None, val_split=0.0, eval_set="val") -> History:
        """Train on images ``x`` (uint8 (N, 28, 28) or float in [0, 1]) and labels ``y``. Validation
        on (``x_val``, ``y_val``), or on a ``val_split`` fraction held out of the training set (the
        indices of ``x`` used: ``self.split_["train"]`` / ``["val"]``). ``eval_set`` names what
        (``x_val``, ``y_val``) is: ``"val"`` or ``"test"`` (``history.eval_set``).
        Returns the :class:`History` (also ``self.history``). Ctrl-C stops after the current batch
        and keeps the model and the history so far (``history.interrupted``; the epoch cut short is
        marked in ``history.partial``)."""
        rng = np.random.default_rng(self.seed)
        y = _labels(y, len(x))
        if eval_set not in ("val", "test"):
            raise ValueError(f"eval_set must be 'val' or 'test', got {eval_set!r}")
        self.split_ = {"train": np.arange(len(y)), "val": np.arange(0)}
        if val_split and x_val is None:
            if not 0.0 < val_split < 1.0:
                raise ValueError(f"val_split must be in (0, 1), got {val_split}")
            perm = rng.permutation(len(y))
            nv = int(round(len(y) * val_split))
            self.split_ = {"train": perm[nv:], "val": perm[:nv]}
            x_val, y_val = x[perm[:nv]], y[perm[:nv]]
            x, y = x[perm[nv:]], y[perm[nv:]]
            eval_set = "val"
        if x_val is not None:
            self.history.eval_set = eval_set
        # augmentation runs on [0, 1] images; normalisation follows it per batch
        pre_norm = self.normalize and self.augment is None
        xs = prepare(x, normalize=pre_norm)
        xv = yv = None
        if x_val is not None:
            yv = _labels(y_val, len(x_val), "y_val")
            xv = self._inputs(x_val)
        n = len(y)
        if n == 0:
            raise ValueError("the training set is empty")
        bs = self.batch_size
        nb = (n + bs - 1) // bs
        mean, inv_std = np.float32(MNIST_MEAN), np.float32(1.0 / MNIST_STD)
        hist = self.history
        model, opt, lossf, sched = self.model, self.optimizer, self.loss, self.scheduler
        start_epoch = len(hist) + 1
        # one batch buffer for the whole run: batches are gathered into it (no per-batch allocation)
        xbuf = np.empty((min(bs, n),) + xs.shape[1:], np.float32)
        check = _DivergenceCheck(opt)
        with _StopFlag() as flag:
            for ep in range(start_epoch, start_epoch + self.epochs):
                model.train()
                t0 = time.perf_counter()
                perm = rng.permutation(n)
                tot_loss = 0.0
                correct = 0
                seen = 0
                bar = progress(range(nb), total=nb, desc=f"epoch {ep}", quiet=self.quiet, unit="batch")
                for b in bar:
                    idx = perm[b * bs:(b + 1) * bs]
                    xb = np.take(xs, idx, axis=0, out=xbuf[:len(idx)])
                    yb = y[idx]
                    if self.augment is not None:
                        xb = np.ascontiguousarray(self.augment(xb, rng), dtype=np.float32)
                        if self.normalize:
                            xb -= mean
                            xb *= inv_std
                    out = model.forward(xb)
                    loss, grad = lossf.loss_and_grad(out, yb)
                    loss = float(loss)
                    check.loss(loss, ep, b, nb)
                    opt.zero_grad()
                    model.backward(grad)
                    opt.step()
                    check.params(model, ep, b, nb, force=b == nb - 1)
                    if sched is not None:
                        sched.step()
                    m = len(yb)
                    tot_loss += loss * m
                    correct += int(np.count_nonzero(out.argmax(1) == yb))
                    seen += m
                    if b % 20 == 0 or b == nb - 1:
                        bar.set_postfix(loss=f"{tot_loss / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
                    if flag.stop:
                        break
                bar.close()
                secs = time.perf_counter() - t0
                self.train_seconds += secs
                vl = va = None
                if xv is not None:
                    vl, va = self._evaluate_prepared(xv, yv)
                partial = bool(flag.stop) and seen < n
                hist.append(epoch=ep, train_loss=tot_loss / max(seen, 1), train_acc=correct / max(seen, 1),
                            val_loss=vl, val_acc=va, seconds=secs, partial=partial)
                if self.log:
                    line = (f"epoch {ep}/{start_epoch + self.epochs - 1}  loss {tot_loss / max(seen, 1):.4f}  "
                            f"acc {correct / max(seen, 1):.4f}")
                    if va is not None:
                        line += f"  {hist.eval_set}_loss {vl:.4f}  {hist.eval_set}_acc {va:.4f}"
                    line += f"  {secs:.1f}s"
                    if flag.stop:
                        line += f"  (interrupted after {seen} of {n} images)" if partial else "  (interrupted)"
                    self.log(line)
                if flag.stop:
                    hist.interrupted = True
                    break
        model.eval()
        return hist

    # -- inference ----------------------------------------------------------------------------
    # inference batch: batch 1000 first-touched 55 MB activations of `fast` (0.34 s for the 10,000 test
    # digits after training, against 0.12 s at 256); the outputs are the same bits at any batch size
    EVAL_BATCH = 256

    def _outputs(self, xp, batch_size=EVAL_BATCH):
        was = self.model.training
        self.model.eval()
        try:
            outs = [self.model.forward(xp[i:i + batch_size]) for i in range(0, len(xp), batch_size)]
        finally:
            self.model.train(was)
        return np.concatenate(outs) if outs else np.zeros((0, 10), np.float32)

    def _evaluate_prepared(self, xp, y):
        out = self._outputs(xp)
        self.last_eval_outputs_ = out  # the network outputs of the latest evaluation (reused by callers)
        loss, _ = self.loss.loss_and_grad(out, y)
        return float(loss), float(np.mean(out.argmax(1) == y))

    def evaluate(self, x, y, return_proba=False):
        """(mean loss, accuracy) on images ``x`` and labels ``y``; with ``return_proba`` also the
        class probabilities (N, 10) of the same forward pass: (loss, accuracy, proba)."""
        y = _labels(y, len(x))
        if not return_proba:
            return self._evaluate_prepared(self._inputs(x), y)
        out = self._outputs(self._inputs(x))
        loss, _ = self.loss.loss_and_grad(out, y)
        return float(loss), float(np.mean(out.argmax(1) == y)), self.loss.probabilities(out)

    def predict_proba(self, x):
        """Class probabilities (N, 10) float32 (softmax of the network output)."""
        return self.loss.probabilities(self._outputs(self._inputs(x)))

    def predict(self, x):
        """Predicted digits (N,) int64."""
        return self._outputs(self._inputs(x)).argmax(1).astype(np.int64)


def fit(model, x, y, optimizer=None, lr=1e-3, x_val=None, y_val=None, **kw):
    """Shortcut: build an Adam optimizer unless given, train, return (trainer, history)."""
    if optimizer is None:
        from .optim import Adam

        optimizer = Adam(model.parameters(), lr=lr)
    trainer = Trainer(model, optimizer, **kw)
    hist = trainer.fit(x, y, x_val=x_val, y_val=y_val)
    return trainer, hist
