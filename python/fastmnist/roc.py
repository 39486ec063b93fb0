"""ROC curves and the area under them, with scikit-learn's conventions and results.

``roc_curve`` returns exactly what ``sklearn.metrics.roc_curve`` returns (same points, same float64
values, thresholds starting at ``+inf``, tied scores forming one point, collinear points dropped
with ``drop_intermediate``); the sort and the sweep run in C++ (``cpp/roc.cpp``: parallel radix sort
of the positive and the negative scores, then one merged sweep). The differences from scikit-learn
are deliberate: a curve with one class only, NaN or infinite scores, or lengths that differ raise
``ValueError`` instead of warning and returning NaN.
"""
from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["roc_curve", "roc_curve_ovr", "auc", "roc_auc_ovr"]


def _as_1d(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {a.shape}")
    return a


def _score_array(y_score) -> np.ndarray:
    s = _as_1d(y_score, "y_score")
    if s.dtype == np.float32 or s.dtype == np.float64:
        return s
    if s.dtype.kind in "biuf":
        return s.astype(np.float64)
    raise TypeError(f"y_score must hold real numbers, got dtype {s.dtype}")


def roc_curve(y_true, y_score, pos_label=1, drop_intermediate: bool = True):
    """Receiver operating characteristic curve of a binary problem.

    Parameters
    ----------
    y_true : array (n,)
        Labels; samples equal to ``pos_label`` are the positives, all others the negatives.
    y_score : array (n,)
        Scores (higher means more likely positive): probabilities, logits, decision values.
    pos_label : label of the positive class (default 1).
    drop_intermediate : bool
        Drop the thresholds whose points lie on a straight segment between their neighbours
        (they change neither the plotted curve nor the AUC), as scikit-learn does.

    Returns
    -------
    fpr, tpr, thresholds : float64 arrays (m,)
        ``fpr[i]``/``tpr[i]`` are the false/true positive rates of the rule ``score >=
        thresholds[i]``; ``thresholds[0] = inf`` gives the point (0, 0).

    Raises
    ------
    ValueError
        Lengths differ, no sample, NaN or infinite scores, or only one class present.
    """
    y = _as_1d(y_true, "y_true")
    s = _score_array(y_score)
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"y_true and y_score must have the same length, got {y.shape} and {s.shape}")
    if y.shape[0] == 0:
        raise ValueError("roc_curve needs at least one sample, got empty arrays")
    positive = np.ascontiguousarray(y == pos_label, dtype=np.uint8)
    return _core.roc_curve(np.ascontiguousarray(s), positive, bool(drop_intermediate), False)


def roc_curve_ovr(y_true, proba, drop_intermediate: bool = True):
    """One-vs-rest ROC curves of every class in one C++ call.

    ``proba`` (n, C) holds one score column per class (e.g. ``predict_proba``); ``y_true`` (n,)
    holds class indices 0..C-1. Returns a list of C ``(fpr, tpr, thresholds)`` tuples, item ``c``
    equal to ``roc_curve(y_true == c, proba[:, c])``.
    """
    y = _as_1d(y_true, "y_true")
    if y.dtype.kind not in "biu":
        raise TypeError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    p = np.asarray(proba)
    if p.ndim != 2:
        raise ValueError(f"proba must be 2-D (n, C), got shape {p.shape}")
    if p.dtype.kind not in "biuf":
        raise TypeError(f"proba must hold real numbers, got dtype {p.dtype}")
    if p.dtype != np.float32:
        p = p.astype(np.float64, copy=False)
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true and proba must have the same length, got {y.shape} and {p.shape}")
    if y.shape[0] == 0:
        raise ValueError("roc_curve_ovr needs at least one sample, got empty arrays")
    return list(_core.roc_curve_ovr(y.astype(np.int64, copy=False), p, bool(drop_intermediate)))


def auc(x, y) -> float:
    """Area under a curve by the trapezoidal rule (``sklearn.metrics.auc``): ``x`` must be
    monotonic (increasing or decreasing), at least two points."""
    x = _as_1d(x, "x").astype(np.float64, copy=False)
    y = _as_1d(y, "y").astype(np.float64, copy=False)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"At least 2 points are needed to compute area under curve, but x.shape = {x.shape}")
    direction = 1
    dx = np.diff(x)
    if np.any(dx < 0):
        if np.all(dx <= 0):
            direction = -1
        else:
            raise ValueError(f"x is neither increasing nor decreasing: {x}")
    trapz = getattr(np, "trapezoid", None) or np.trapz
    return float(direction * trapz(y, x))


def roc_auc_ovr(y_true, proba) -> list[float]:
    """Per-class one-vs-rest ROC AUCs (list of C floats)."""
    return [auc(f, t) for f, t, _ in roc_curve_ovr(y_true, proba)]
