"""Multinomial logistic regression trained by mini-batch gradient descent in C++.

``LogisticRegression`` is a scikit-learn estimator (``fit``/``predict``/``predict_proba``/
``decision_function``/``score``, ``coef_``/``intercept_``/``classes_``, ``get_params``/``set_params``,
tags for scikit-learn 1.4 through the newest, without importing scikit-learn itself): it works with
``clone``, ``cross_val_score``, ``GridSearchCV`` and ``Pipeline`` and passes ``check_estimator``.
The solver is plain mini-batch gradient descent on the mean softmax cross-entropy, whose two
knobs are the batch size and the learning rate. Each epoch (forward, softmax, gradient and update of every batch) is ONE call
into C++ (``cpp/logreg.cpp``, OpenMP over the rows of each batch); the batch order is a permutation
drawn in Python from ``seed``, so the same seed and thread count give the same weights.

The ROC helpers (``roc_curve``, ``roc_curve_ovr``, ``auc``) live in ``fastmnist.roc`` and are
re-exported here.
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from . import _core
from .functional import untorch
from .roc import auc, roc_auc_ovr, roc_curve, roc_curve_ovr

__all__ = ["LogisticRegression", "NotFittedError", "roc_curve", "roc_curve_ovr", "auc", "roc_auc_ovr"]


class NotFittedError(ValueError, AttributeError):
    """Raised when a LogisticRegression is used before ``fit`` (scikit-learn's ``NotFittedError`` is
    also a ValueError and an AttributeError). When scikit-learn is loaded, the error raised is also
    an instance of ``sklearn.exceptions.NotFittedError``."""


_SK_NOT_FITTED = []


def _not_fitted_error(msg):
    """Our NotFittedError, made a subclass of scikit-learn's too when scikit-learn is already loaded
    (so that its tools recognise it) without importing scikit-learn ourselves (~1 s)."""
    if "sklearn" not in sys.modules:
        return NotFittedError(msg)
    if not _SK_NOT_FITTED:
        from sklearn.exceptions import NotFittedError as SK

        _SK_NOT_FITTED.append(type("NotFittedError", (NotFittedError, SK), {"__module__": __name__}))
    return _SK_NOT_FITTED[0](msg)


def _features(X, name: str = "X", min_rows: int = 1) -> np.ndarray:
    """X -> float32 C-contiguous (N, D), with scikit-learn's error conventions (the messages that
    ``check_estimator`` looks for)."""
    if X is None:
        raise TypeError(f"{name} must be an array (N, D), got None")
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"{name}: sparse input is not supported; pass {name}.toarray()")
    X = np.asarray(untorch(X))
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}")
    if X.dtype.kind == "O":
        X = X.astype(np.float64)  # numbers stored as objects; anything else raises TypeError/ValueError
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {X.shape}. Reshape your data either using "
                         "X.reshape(-1, 1) if it has a single feature or X.reshape(1, -1) if it is a single sample.")
    if X.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.shape[0] < min_rows:
        raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of "
                         f"{min_rows} is required.")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"Input {name} contains NaN or infinity (or a value too large for float32)")
    return X


def _labels(y, n: int, name: str = "y") -> np.ndarray:
    if y is None:
        raise ValueError(f"requires y to be passed, but the target {name} is None")
    y = np.asarray(untorch(y))
    if y.ndim == 2 and y.shape[1] == 1:
        try:
            from sklearn.exceptions import DataConversionWarning as _W
        except ImportError:  # scikit-learn is optional
            _W = UserWarning
        warnings.warn(f"A column-vector {name} was passed when a 1d array was expected; it is raveled to "
                      "shape (n_samples,)", _W, stacklevel=3)
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} must have one label per row of X: got {y.shape[0]} labels for {n} rows")
    if y.dtype.kind == "f":
        if np.any(np.isnan(y)):
            raise ValueError(f"Input {name} contains NaN.")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"Input {name} contains infinity or a value too large for dtype('float64').")
        if np.any(y != np.round(y)):
            raise ValueError(f"Unknown label type: continuous. {name} must hold class labels (integers or "
                             "strings); got non-integer values")
    return y


def _tag_classes():
    """scikit-learn's tag classes (>= 1.6), or None on older versions (which read ``_more_tags``)."""
    try:
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags
    except ImportError:
        return None
    return Tags, ClassifierTags, InputTags, TargetTags


class LogisticRegression:
    """Multinomial (softmax) logistic regression fitted by mini-batch gradient descent.

    Parameters
    ----------
    lr : float
        Learning rate of the plain gradient step (SGDClassifier's ``eta0`` with a constant schedule).
    batch_size : int
        Samples per gradient step (the last batch of an epoch may be smaller).
    epochs : int
        Passes over the training set, each in a fresh random order.
    l2 : float
        L2 penalty ``l2/2 * ||W||^2`` on the weights (not the intercept) added to the mean loss,
        i.e. PyTorch SGD's ``weight_decay`` and SGDClassifier's ``alpha``.
    standardize : bool
        Train on features standardised with the training mean and standard deviation (done on the
        fly inside the kernel, no copy of X); ``coef_``/``intercept_`` are reported for the raw
        features either way.
    seed : int
        Seeds the batch order (scikit-learn's ``random_state``). Weights start at zero.
    verbose : bool
        Print one line per epoch.
    C : float or None
        scikit-learn's inverse regularisation strength (``sklearn.linear_model.LogisticRegression``:
        ``C * sum(loss) + ||W||^2 / 2``): when set, ``l2 = 1 / (C * n_samples)``, the same objective
        up to the factor ``C * n_samples``. Give ``C`` or ``l2``, not both.
    max_iter : int or None
        scikit-learn's name for the number of passes (SGDClassifier's epochs): when set, it
        replaces ``epochs``.

    Attributes
    ----------
    classes_ : (C,) the sorted distinct training labels.
    coef_ : (C, D) float32 weights on the raw features (C = 2 rows for a binary problem, where
        scikit-learn has 1; ``decision_function`` follows scikit-learn: (N,) for two classes).
    intercept_ : (C,) float32.
    history_ : dict of per-epoch lists ``epoch``, ``train_loss`` (mean cross-entropy over the
        epoch's batches, each measured before its step), ``train_acc`` (accuracy of those same
        forward passes), ``val_loss``, ``val_acc`` (on ``X_val`` after the epoch; ``None`` without
        one) and ``seconds`` (wall time of the epoch's training call).
    n_features_in_, n_iter_ (epochs run).

    Raises :class:`fastmnist.train.TrainingDiverged` (a ValueError) when the weights or the loss
    become non-finite, the loss explodes (more than 100x the starting loss log(C)) or a logit passes
    1e4 (float32 softmax saturates near 88), measured after each epoch on up to 2048 training rows:
    lower ``lr``.
    """

    _estimator_type = "classifier"  # scikit-learn < 1.6 reads this
    _PARAMS = ("lr", "batch_size", "epochs", "l2", "standardize", "seed", "verbose", "C", "max_iter")

    def __init__(self, lr: float = 0.1, batch_size: int = 128, epochs: int = 10, l2: float = 0.0,
                 standardize: bool = True, seed: int = 0, verbose: bool = False, C: float | None = None,
                 max_iter: int | None = None):
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.l2 = l2
        self.standardize = standardize
        self.seed = seed
        self.verbose = verbose
        self.C = C
        self.max_iter = max_iter

    # -- scikit-learn conventions ------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params):
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for LogisticRegression; valid: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __sklearn_tags__(self):
        """Tags for scikit-learn >= 1.6: a classifier needing y, dense 2-D float input, no NaN."""
        classes = _tag_classes()
        if classes is None:  # pragma: no cover - only called by scikit-learn >= 1.6
            raise AttributeError("__sklearn_tags__ needs scikit-learn >= 1.6")
        Tags, ClassifierTags, InputTags, TargetTags = classes
        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(multi_class=True, multi_label=False, poor_score=False),
                    input_tags=InputTags(two_d_array=True, sparse=False, allow_nan=False))

    def _more_tags(self):
        """The same tags for scikit-learn < 1.6."""
        return {"requires_y": True, "allow_nan": False, "X_types": ["2darray"], "binary_only": False,
                "multilabel": False, "poor_score": False}

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_W")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"LogisticRegression({args})"

    def _check_params(self):
        def count(name, v):
            if isinstance(v, bool) or not (isinstance(v, (int, np.integer)) and v >= 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        def number(name, v):
            try:
                return float(v)
            except (TypeError, ValueError):
                raise TypeError(f"{name} must be a number, got {v!r}") from None

        count("batch_size", self.batch_size)
        count("epochs", self.epochs)
        if self.max_iter is not None:
            count("max_iter", self.max_iter)
        if not (np.isfinite(number("lr", self.lr)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (np.isfinite(number("l2", self.l2)) and self.l2 >= 0):
            raise ValueError(f"l2 must be >= 0, got {self.l2!r}")
        if self.C is not None:
            if not (np.isfinite(number("C", self.C)) and self.C > 0):
                raise ValueError(f"C must be a positive number, got {self.C!r}")
            if self.l2 != 0:
                raise ValueError(f"give C (scikit-learn's name) or l2, not both: C={self.C!r}, l2={self.l2!r}")

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, *, eval_name="val"):
        """Fit on X (N, D) and labels y (N,); with X_val/y_val, record their loss and accuracy after
        every epoch in ``history_`` (``val_loss``/``val_acc``; ``eval_name`` is what the progress
        lines call that set, e.g. "test" when it is the test set). Returns self."""
        from .train import TrainingDiverged

        self._check_params()
        X = _features(X)
        y = _labels(y, X.shape[0])
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(f"y must contain at least two classes, got 1 class: {classes.tolist()}")
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
        epochs = int(self.epochs if self.max_iter is None else self.max_iter)
        l2 = float(self.l2) if self.C is None else 1.0 / (float(self.C) * N)
        for attr in ("_W", "_b", "classes_", "n_features_in_", "n_iter_", "history_"):
            self.__dict__.pop(attr, None)  # a refit starts unfitted (and stays so if it fails)
        if self.standardize:
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            std[std < 1e-12] = 1.0
            mean32, scale32 = mean.astype(np.float32), (1.0 / std).astype(np.float32)
        else:
            mean32 = scale32 = None
        W = np.zeros((C, D), np.float32)
        b = np.zeros(C, np.float32)
        # divergence watch: the loss of the end-of-epoch weights on a fixed sample of the training set
        watch = np.sort(np.random.default_rng(0).choice(N, size=min(N, 2048), replace=False))
        Xw, yw = np.ascontiguousarray(X[watch]), y_idx[watch]
        start_loss = float(np.log(C))  # zero weights
        rng = np.random.default_rng(self.seed)
        h = {"epoch": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "seconds": []}
        for ep in range(1, epochs + 1):
            perm = rng.permutation(N).astype(np.int64)
            t0 = time.perf_counter()
            loss_sum, correct = _core.logreg_epoch(X, y_idx, perm, W, b, mean32, scale32,
                                                   float(self.lr), l2, int(self.batch_size), False)
            secs = time.perf_counter() - t0
            end_loss, zmax = self._loss(Xw, yw, W, b, mean32, scale32)
            if not (np.isfinite(loss_sum) and np.isfinite(end_loss) and np.all(np.isfinite(W))
                    and np.all(np.isfinite(b))) or end_loss > 100 * start_loss or zmax > 1e4:
                raise TrainingDiverged(
                    f"training diverged at epoch {ep}: the loss went from {start_loss:.4g} to "
                    f"{max(loss_sum / N, end_loss):.4g}, the largest logit is {zmax:.3g}; lower lr (now {self.lr})")
            h["epoch"].append(ep)
            h["train_loss"].append(loss_sum / N)
            h["train_acc"].append(correct / N)
            h["seconds"].append(secs)
            if X_val is not None:
                h["val_loss"].append(self._loss(X_val, yv_idx, W, b, mean32, scale32)[0])
                p = _core.logreg_forward(X_val, W, b, mean32, scale32, False)
                h["val_acc"].append(float(np.mean(p.argmax(axis=1) == yv_idx)))
            else:
                h["val_loss"].append(None)
                h["val_acc"].append(None)
            if self.verbose:
                val = (f"  {eval_name} loss {h['val_loss'][-1]:.4f}  {eval_name} acc {h['val_acc'][-1]:.4f}"
                       if X_val is not None else "")
                print(f"epoch {ep:3d}/{epochs}  train loss {h['train_loss'][-1]:.4f}  "
                      f"train acc {h['train_acc'][-1]:.4f}{val}  ({secs:.2f} s)", flush=True)
        self._mean, self._scale, self._W, self._b = mean32, scale32, W, b
        self.classes_ = classes
        self.n_features_in_ = D
        self.n_iter_ = epochs
        self.history_ = h
        return self

    @staticmethod
    def _loss(X, y_idx, W, b, mean, scale):
        """(mean cross-entropy, largest |logit|) of (W, b) on (X, y_idx), in float64 from the
        float32 logits (NaN when they are not finite)."""
        z = _core.logreg_forward(X, W, b, mean, scale, False).astype(np.float64)
        if not np.all(np.isfinite(z)):
            return float("nan"), float("inf")
        zmax = float(np.abs(z).max())
        z -= z.max(axis=1, keepdims=True)
        logp = z[np.arange(len(y_idx)), y_idx] - np.log(np.exp(z).sum(axis=1))
        return float(-np.mean(logp)), zmax

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
            raise _not_fitted_error("this LogisticRegression is not fitted yet; call fit(X, y) first")

    def _check_X(self, X):
        self._check_fitted()
        X = _features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but LogisticRegression is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    def _proba(self, X):
        return _core.logreg_forward(X, self._W, self._b, self._mean, self._scale, True)

    def _logits(self, X):
        return _core.logreg_forward(self._check_X(X), self._W, self._b, self._mean, self._scale, False)

    def decision_function(self, X) -> np.ndarray:
        """Logits (N, C); for two classes, as scikit-learn, the (N,) score of ``classes_[1]``
        (logit 1 - logit 0: positive means class 1)."""
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, C) float32, columns in the order of ``classes_``."""
        return self._proba(self._check_X(X))

    def predict_log_proba(self, X) -> np.ndarray:
        """log of :meth:`predict_proba`, computed stably from the logits (N, C)."""
        z = self._logits(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,)."""
        z = self._logits(X)  # first: raises NotFittedError on an unfitted model
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
