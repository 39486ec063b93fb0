"""Classification metrics in plain NumPy, following scikit-learn's names, arguments and return
conventions (``sklearn.metrics``): ``confusion_matrix``, ``accuracy_score``,
``precision_recall_fscore_support`` and ``classification_report`` (same text layout).

Only single-label (binary or multiclass) targets are supported: 1-D arrays of integers or strings.
"""
from __future__ import annotations

import warnings
from numbers import Real

import numpy as np

__all__ = ["confusion_matrix", "accuracy", "accuracy_score", "precision_recall_fscore_support",
           "classification_report", "per_class_accuracy", "UndefinedMetricWarning"]


class UndefinedMetricWarning(UserWarning):
    """A metric is ill-defined (a division by zero) and was set to ``zero_division``."""


# ----------------------------------------------------------------------------- validation
def _as_labels(name: str, y) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinity")
        if np.any(a != np.round(a)):
            raise ValueError(f"{name} holds non-integer floats; pass class labels, not scores")
    elif a.dtype.kind not in "iubUSO":
        raise TypeError(f"{name} must hold integer or string class labels, got dtype {a.dtype}")
    return a


def _check_pair(y_true, y_pred, sample_weight=None):
    yt = _as_labels("y_true", y_true)
    yp = _as_labels("y_pred", y_pred)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {yt.shape[0]} and {yp.shape[0]}")
    if (yt.dtype.kind in "US") != (yp.dtype.kind in "US"):
        raise TypeError(f"y_true ({yt.dtype}) and y_pred ({yp.dtype}) mix string and numeric labels")
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.shape != yt.shape:
            raise ValueError(f"sample_weight must have shape {yt.shape}, got {sw.shape}")
        if not np.all(np.isfinite(sw)):
            raise ValueError("sample_weight contains NaN or infinity")
    return yt, yp, sw


def _labels_for(yt, yp, labels):
    if labels is None:
        return np.union1d(yt, yp)
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D list of classes, got shape {lab.shape}")
    if np.unique(lab).size != lab.size:
        raise ValueError("labels must not contain duplicates")
    return lab


def _check_zero_division(zero_division) -> float:
    if isinstance(zero_division, str):
        if zero_division == "warn":
            return 0.0
        raise ValueError(f"zero_division must be 'warn', 0, 1 or np.nan, got {zero_division!r}")
    if isinstance(zero_division, Real):
        if np.isnan(zero_division):
            return float("nan")
        if zero_division in (0, 1):
            return float(zero_division)
    raise ValueError(f"zero_division must be 'warn', 0, 1 or np.nan, got {zero_division!r}")


def _encode(y: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Index of each entry of ``y`` in ``lab`` (-1 where it is not a label)."""
    order = np.argsort(lab, kind="stable")
    sorted_lab = lab[order]
    pos = np.clip(np.searchsorted(sorted_lab, y), 0, lab.size - 1)
    return np.where(sorted_lab[pos] == y, order[pos], -1)


# ----------------------------------------------------------------------------- metrics
def confusion_matrix(y_true, y_pred, *, labels=None, sample_weight=None, normalize=None) -> np.ndarray:
    """Confusion matrix ``C`` with ``C[i, j]`` = number of samples of true class ``labels[i]``
    predicted as ``labels[j]`` (rows: truth, columns: prediction), as in scikit-learn.

    ``labels`` defaults to the sorted union of the classes in ``y_true`` and ``y_pred``; samples whose
    true or predicted class is not in ``labels`` are ignored. ``normalize`` is None, 'true' (rows sum
    to 1), 'pred' (columns sum to 1) or 'all'. Counts are int64 (float64 with weights/normalize).
    """
    yt, yp, sw = _check_pair(y_true, y_pred, sample_weight)
    lab = _labels_for(yt, yp, labels)
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    n = lab.size
    it, ip = _encode(yt, lab), _encode(yp, lab)
    keep = (it >= 0) & (ip >= 0)
    dtype = np.int64 if sw is None else np.float64
    cm = np.zeros((n, n), dtype=dtype)
    w = np.ones(keep.sum(), dtype=dtype) if sw is None else sw[keep]
    np.add.at(cm, (it[keep], ip[keep]), w)  # sequential, like a sparse sum

    if normalize is not None:
        cm = cm.astype(np.float64)
        with np.errstate(all="ignore"):
            if normalize == "true":
                cm = cm / cm.sum(axis=1, keepdims=True)
            elif normalize == "pred":
                cm = cm / cm.sum(axis=0, keepdims=True)
            else:
                cm = cm / cm.sum()
        cm = np.nan_to_num(cm)
    return cm


def accuracy_score(y_true, y_pred, *, normalize=True, sample_weight=None) -> float:
    """Fraction (``normalize=True``) or number of samples whose prediction equals the truth."""
    yt, yp, sw = _check_pair(y_true, y_pred, sample_weight)
    correct = (yt == yp).astype(np.float64)
    if sw is not None:
        correct = correct * sw
        total = sw.sum()
    else:
        total = correct.size
    if not normalize:
        return float(correct.sum())
    if total == 0:
        return float("nan") if sw is None else 0.0
    return float(correct.sum() / total)


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions (``accuracy_score`` with its defaults)."""
    return accuracy_score(y_true, y_pred)


def per_class_accuracy(y_true, y_pred, *, labels=None) -> np.ndarray:
    """Recall of every class (the diagonal of the row-normalised confusion matrix)."""
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    with np.errstate(all="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def _divide(num, den, what, modifier, average, zero_division, warn):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    mask = den == 0
    out = num / np.where(mask, 1.0, den)
    if mask.any():
        out[mask] = _check_zero_division(zero_division)
        if warn and zero_division == "warn":
            kind = "samples" if average is None or average == "micro" else "labels"
            warnings.warn(f"{what.capitalize()} is ill-defined and being set to 0.0 in {kind} with no "
                          f"{modifier} samples. Use `zero_division` parameter to control this behavior.",
                          UndefinedMetricWarning, stacklevel=3)
    return out


def _nanaverage(a, weights=None) -> float:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return float("nan")
    mask = np.isnan(a)
    if mask.all():
        return float("nan")
    if weights is None:
        return float(a[~mask].mean())
    w = np.asarray(weights, dtype=np.float64)[~mask]
    a = a[~mask]
    if w.sum() == 0:  # all weights zero: ignore them (as scikit-learn does)
        return float(a.mean())
    return float(np.average(a, weights=w))


def precision_recall_fscore_support(y_true, y_pred, *, beta=1.0, labels=None, average=None,
                                    warn_for=("precision", "recall", "f-score"),
                                    sample_weight=None, zero_division="warn"):
    """Per-class precision, recall, F-beta and support, or their average.

    ``average``: None (arrays per class, in ``labels`` order), 'micro' (global counts), 'macro'
    (unweighted mean over classes), 'weighted' (mean weighted by support) or 'binary' (the class
    ``1`` only). Ill-defined ratios (0/0) become ``zero_division`` (0.0 with a warning for 'warn',
    0, 1 or np.nan); NaNs are left out of averages. With an average, support is None.
    Returns ``(precision, recall, fscore, support)`` like scikit-learn.
    """
    if average not in (None, "micro", "macro", "weighted", "binary"):
        raise ValueError(f"average must be None, 'micro', 'macro', 'weighted' or 'binary', got {average!r}")
    if not isinstance(beta, Real) or beta < 0 or np.isnan(beta):
        raise ValueError(f"beta must be a non-negative number, got {beta!r}")
    _check_zero_division(zero_division)
    yt, yp, sw = _check_pair(y_true, y_pred, sample_weight)
    if average == "binary":
        present = np.union1d(yt, yp)
        if present.size > 2:
            raise ValueError(f"average='binary' needs binary targets, got {present.size} classes; "
                             "choose average=None, 'micro', 'macro' or 'weighted'")
        labels = [1]
    lab = _labels_for(yt, yp, labels)
    # per-label counts as sequential weighted bincounts (the summation order scikit-learn uses, so
    # that float supports with sample weights agree to the last digit)
    it, ip = _encode(yt, lab), _encode(yp, lab)
    k = lab.size
    w = np.ones(yt.size) if sw is None else sw
    hit = (yt == yp) & (it >= 0)
    tp = np.bincount(it[hit], weights=w[hit], minlength=k).astype(np.float64)
    pred_sum = np.bincount(ip[ip >= 0], weights=w[ip >= 0], minlength=k).astype(np.float64)
    true_sum = np.bincount(it[it >= 0], weights=w[it >= 0], minlength=k).astype(np.float64)
    if average == "micro":
        tp, pred_sum, true_sum = np.array([tp.sum()]), np.array([pred_sum.sum()]), np.array([true_sum.sum()])

    precision = _divide(tp, pred_sum, "precision", "predicted", average, zero_division,
                        "precision" in warn_for)
    recall = _divide(tp, true_sum, "recall", "true", average, zero_division, "recall" in warn_for)
    if np.isposinf(beta):
        f = recall
    elif beta == 0:
        f = precision
    else:
        b2 = float(beta) ** 2
        f = _divide((1 + b2) * tp, b2 * true_sum + pred_sum, "f-score", "true nor predicted",
                    average, zero_division, "f-score" in warn_for)

    if average is None:
        support = true_sum.astype(np.int64) if sw is None else true_sum
        return precision, recall, f, support
    weights = true_sum if average == "weighted" else None
    return _nanaverage(precision, weights), _nanaverage(recall, weights), _nanaverage(f, weights), None


def classification_report(y_true, y_pred, *, labels=None, target_names=None, sample_weight=None,
                          digits=2, output_dict=False, zero_division="warn"):
    """Text summary of precision, recall, F1 and support per class, with the accuracy and the
    macro/weighted averages, in scikit-learn's exact layout (or a dict with ``output_dict=True``)."""
    yt, yp, sw = _check_pair(y_true, y_pred, sample_weight)
    if not isinstance(digits, (int, np.integer)) or digits < 0:
        raise ValueError(f"digits must be a non-negative integer, got {digits!r}")
    present = np.union1d(yt, yp)
    if labels is None:
        lab = present
        labels_given = False
    else:
        lab = _labels_for(yt, yp, labels)
        labels_given = True
    micro_is_accuracy = not labels_given or set(lab.tolist()) >= set(present.tolist())
    if target_names is not None and len(target_names) != lab.size:
        if labels_given:
            warnings.warn(f"labels size, {lab.size}, does not match size of target_names, "
                          f"{len(target_names)}")
        else:
            raise ValueError(f"Number of classes, {lab.size}, does not match size of target_names, "
                             f"{len(target_names)}. Try specifying the labels parameter")
    if target_names is None:
        target_names = [f"{c}" for c in lab.tolist()]
    target_names = [str(t) for t in target_names]

    headers = ["precision", "recall", "f1-score", "support"]
    p, r, f1, s = precision_recall_fscore_support(yt, yp, labels=lab, average=None, sample_weight=sw,
                                                  zero_division=zero_division)
    rows = list(zip(target_names, p, r, f1, s))

    if output_dict:
        report_dict = {name: dict(zip(headers, [float(v) for v in vals])) for name, *vals in rows}
    else:
        heading = "weighted avg"
        width = max(max((len(t) for t in target_names), default=0), len(heading), digits)
        head_fmt = "{:>{width}s} " + " {:>9}" * len(headers)
        report = head_fmt.format("", *headers, width=width) + "\n\n"
        row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
        for row in rows:
            report += row_fmt.format(*row, width=width, digits=digits)
        report += "\n"

    for average in ("micro", "macro", "weighted"):
        line = "accuracy" if (average == "micro" and micro_is_accuracy) else average + " avg"
        ap, ar, af, _ = precision_recall_fscore_support(yt, yp, labels=lab, average=average,
                                                        sample_weight=sw, zero_division=zero_division)
        avg = [ap, ar, af, np.sum(s)]
        if output_dict:
            report_dict[line] = dict(zip(headers, [float(v) for v in avg]))
        elif line == "accuracy":
            fmt = "{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f}" + " {:>9}\n"
            report += fmt.format(line, "", "", *avg[2:], width=width, digits=digits)
        else:
            report += row_fmt.format(line, *avg, width=width, digits=digits)

    if output_dict:
        if "accuracy" in report_dict:
            report_dict["accuracy"] = report_dict["accuracy"]["precision"]
        return report_dict
    return report
