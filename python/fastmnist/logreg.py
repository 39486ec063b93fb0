"""Multinomial logistic regression trained by mini-batch gradient descent in C++.

``LogisticRegression`` follows scikit-learn's estimator conventions (``fit``/``predict``/
``predict_proba``/``score``, ``coef_``/``intercept_``/``classes_``), but the solver is plain
mini-batch gradient descent on the mean softmax cross-entropy, whose two knobs are the batch size
and the learning rate. Each epoch (forward, softmax, gradient and update of every batch) is ONE call
into C++ (``cpp/logreg.cpp``, OpenMP over the rows of each batch); the batch order is a permutation
drawn in Python from ``seed``, so the same seed and thread count give the same weights.

The ROC helpers (``roc_curve``, ``roc_curve_ovr``, ``auc``) live in ``fastmnist.roc`` and are
re-exported here.
"""
from __future__ import annotations

import time

import numpy as np

from . import _core
from .roc import auc, roc_auc_ovr, roc_curve, roc_curve_ovr

__all__ = ["LogisticRegression", "NotFittedError", "roc_curve", "roc_curve_ovr", "auc", "roc_auc_ovr"]


class NotFittedError(ValueError, AttributeError):
    """Raised when a LogisticRegression is used before ``fit``."""


def _features(X, name: str = "X") -> np.ndarray:
    if X is None:
        raise TypeError(f"{name} must be an array (N, D), got None")
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {X.shape}")
    return np.ascontiguousarray(X, dtype=np.float32)


def _labels(y, n: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} must have one label per row of X: got {y.shape[0]} labels for {n} rows")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{name} must hold class labels; got non-integer values")
    return y


class LogisticRegression:
    """Multinomial (softmax) logistic regression fitted by mini-batch gradient descent.

    Parameters
    ----------
    lr : float
        Learning rate of the plain gradient step.
    batch_size : int
        Samples per gradient step (the last batch of an epoch may be smaller).
    epochs : int
        Passes over the training set, each in a fresh random order.
    l2 : float
        L2 penalty ``l2/2 * ||W||^2`` on the weights (not the intercept), i.e. PyTorch SGD's
        ``weight_decay``.
    standardize : bool
        Train on features standardised with the training mean and standard deviation (done on the
        fly inside the kernel, no copy of X); ``coef_``/``intercept_`` are reported for the raw
        features either way.
    seed : int
        Seeds the batch order. Weights start at zero.
    verbose : bool
        Print one line per epoch.

    Attributes
    ----------
    classes_ : (C,) the sorted distinct training labels.
    coef_ : (C, D) float32 weights on the raw features (C = 2 rows for a binary problem).
    intercept_ : (C,) float32.
    history_ : dict of per-epoch lists ``epoch``, ``train_loss`` (mean cross-entropy over the
        epoch's batches, each measured before its step), ``train_acc`` (accuracy of those same
        forward passes), ``val_loss``, ``val_acc`` (on ``X_val`` after the epoch; ``None`` without
        one) and ``seconds`` (wall time of the epoch's training call).
    n_features_in_, n_iter_ (epochs run).
    """

    def __init__(self, lr: float = 0.1, batch_size: int = 128, epochs: int = 10, l2: float = 0.0,
                 standardize: bool = True, seed: int = 0, verbose: bool = False):
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.l2 = l2
        self.standardize = standardize
        self.seed = seed
        self.verbose = verbose

    # -- scikit-learn conventions ------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in
                ("lr", "batch_size", "epochs", "l2", "standardize", "seed", "verbose")}

    def set_params(self, **params):
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for LogisticRegression; valid: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"LogisticRegression({args})"

    def _check_params(self):
        if not (isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not (isinstance(self.epochs, (int, np.integer)) and self.epochs >= 1):
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (np.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be >= 0, got {self.l2!r}")

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None):
        """Fit on X (N, D) and labels y (N,); with X_val/y_val, record validation loss and accuracy
        after every epoch in ``history_``. Returns self."""
        self._check_params()
        X = _features(X)
        y = _labels(y, X.shape[0])
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values")
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(f"y must contain at least two classes, got only {classes.tolist()}")
        y_idx = y_idx.reshape(-1).astype(np.int64)
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together")
        if X_val is not None:
            X_val = _features(X_val, "X_val")
            if X_val.shape[1] != X.shape[1]:
                raise ValueError(f"X_val has {X_val.shape[1]} features, X has {X.shape[1]}")
            y_val = _labels(y_val, X_val.shape[0], "y_val")
            yv_idx = self._encode(y_val, classes, "y_val")

        N, D = X.shape
        C = classes.shape[0]
        self.classes_ = classes
        self.n_features_in_ = D
        if self.standardize:
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            std[std < 1e-12] = 1.0
            self._mean = mean.astype(np.float32)
            self._scale = (1.0 / std).astype(np.float32)
        else:
            self._mean = self._scale = None
        self._W = np.zeros((C, D), np.float32)
        self._b = np.zeros(C, np.float32)
        rng = np.random.default_rng(self.seed)
        h = {"epoch": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "seconds": []}
        self.history_ = h
        for ep in range(1, int(self.epochs) + 1):
            perm = rng.permutation(N).astype(np.int64)
            t0 = time.perf_counter()
            loss_sum, correct = _core.logreg_epoch(X, y_idx, perm, self._W, self._b, self._mean, self._scale,
                                                   float(self.lr), float(self.l2), int(self.batch_size), False)
            secs = time.perf_counter() - t0
            if not np.isfinite(loss_sum):
                raise ValueError(f"training diverged at epoch {ep} (loss is {loss_sum}); lower lr (now {self.lr})")
            h["epoch"].append(ep)
            h["train_loss"].append(loss_sum / N)
            h["train_acc"].append(correct / N)
            h["seconds"].append(secs)
            if X_val is not None:
                p = self._proba(X_val)
                h["val_loss"].append(float(-np.mean(np.log(np.maximum(p[np.arange(len(yv_idx)), yv_idx], 1e-30)))))
                h["val_acc"].append(float(np.mean(p.argmax(axis=1) == yv_idx)))
            else:
                h["val_loss"].append(None)
                h["val_acc"].append(None)
            self.n_iter_ = ep
            if self.verbose:
                val = f"  val loss {h['val_loss'][-1]:.4f}  val acc {h['val_acc'][-1]:.4f}" if X_val is not None else ""
                print(f"epoch {ep:3d}/{self.epochs}  train loss {h['train_loss'][-1]:.4f}  "
                      f"train acc {h['train_acc'][-1]:.4f}{val}  ({secs:.2f} s)", flush=True)
        return self

    @staticmethod
    def _encode(y, classes, name):
        idx = np.searchsorted(classes, y)
        idx = np.clip(idx, 0, len(classes) - 1)
        bad = classes[idx] != y
        if np.any(bad):
            raise ValueError(f"{name} holds labels unseen in training: {np.unique(np.asarray(y)[bad])[:10].tolist()}")
        return idx.astype(np.int64)

    # -- inference --------------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "_W"):
            raise NotFittedError("this LogisticRegression is not fitted yet; call fit(X, y) first")

    def _check_X(self, X):
        self._check_fitted()
        X = _features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but this model was fitted on {self.n_features_in_}")
        return X

    def _proba(self, X):
        return _core.logreg_forward(X, self._W, self._b, self._mean, self._scale, True)

    def decision_function(self, X) -> np.ndarray:
        """Logits (N, C)."""
        X = self._check_X(X)
        return _core.logreg_forward(X, self._W, self._b, self._mean, self._scale, False)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, C) float32, columns in the order of ``classes_``."""
        return self._proba(self._check_X(X))

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,)."""
        z = self.decision_function(X)
        return self.classes_[z.argmax(axis=1)]

    def score(self, X, y) -> float:
        """Mean accuracy on (X, y)."""
        X = self._check_X(X)
        y = _labels(y, X.shape[0])
        return float(np.mean(self.predict(X) == y))

    @property
    def coef_(self) -> np.ndarray:
        self._check_fitted()
        if self._scale is None:
            return self._W.copy()
        return (self._W * self._scale[None, :]).astype(np.float32)

    @property
    def intercept_(self) -> np.ndarray:
        self._check_fitted()
        if self._scale is None:
            return self._b.copy()
        w = self._W.astype(np.float64) * self._scale[None, :]
        return (self._b - w @ self._mean.astype(np.float64)).astype(np.float32)
