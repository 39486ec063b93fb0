"""Figures (matplotlib, headless: every function returns a ``matplotlib.figure.Figure`` built
without pyplot, so no display is needed)."""
from __future__ import annotations

import numpy as np


# --- logistic regression and ROC ---

def _roc_items(curves):
    """Normalise the accepted curve containers to a list of (label, fpr, tpr, auc or None)."""
    def one(label, c):
        if isinstance(c, dict):
            return (label, np.asarray(c["fpr"], float), np.asarray(c["tpr"], float), c.get("auc"))
        c = tuple(c)
        if len(c) < 2:
            raise ValueError(f"a ROC curve needs (fpr, tpr[, thresholds]); got {len(c)} items for {label!r}")
        return (label, np.asarray(c[0], float), np.asarray(c[1], float), None)

    if isinstance(curves, dict) and "classes" in curves and isinstance(curves["classes"], dict):
        curves = {f"class {k}": v for k, v in curves["classes"].items()}
    if isinstance(curves, dict):
        if "fpr" in curves and "tpr" in curves:
            return [one("ROC", curves)]
        return [one(str(k), v) for k, v in curves.items()]
    if isinstance(curves, tuple) and len(curves) in (2, 3) and np.ndim(curves[0]) == 1 and np.ndim(curves[1]) == 1 \
            and not isinstance(curves[0], tuple):
        return [one("ROC", curves)]
    if isinstance(curves, (list, tuple)):
        return [one(f"class {i}", c) for i, c in enumerate(curves)]
    raise TypeError("curves must be (fpr, tpr[, thr]), a list of those (one per class), a dict "
                    "{label: (fpr, tpr[, thr]) or {'fpr','tpr','auc'}}, or a roc.json dict")


def plot_roc(curves, title: str | None = None, ax=None):
    """ROC curve(s) with their AUC in the legend.

    ``curves``: one ``(fpr, tpr[, thresholds])`` tuple (e.g. from ``fastmnist.roc_curve``), a list
    of them (e.g. ``fastmnist.roc_curve_ovr``: one per class, labelled ``class i``), a dict
    ``{label: curve}`` or a ``roc.json`` dict ``{"classes": {"0": {"fpr", "tpr", "auc"}}}``.
    Returns the Figure.
    """
    from matplotlib.figure import Figure

    from .roc import auc as _auc

    items = _roc_items(curves)
    if not items:
        raise ValueError("plot_roc: no curve given")
    if ax is None:
        fig = Figure(figsize=(5.5, 5.0), dpi=110)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    many = len(items) > 1
    for i, (label, fpr, tpr, a) in enumerate(items):
        if a is None:
            a = _auc(fpr, tpr)
        ax.plot(fpr, tpr, lw=1.4 if many else 2.0, label=f"{label} (AUC = {a:.4f})",
                color=None if many else "C3", drawstyle="default")
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6", label="chance (AUC = 0.5)")
    ax.set_xlim(-0.01, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or ("ROC curves (one vs rest)" if many else "ROC curve"))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7 if many else 9)
    fig.tight_layout()
    return fig


def plot_logreg_accuracy(history, title: str | None = None):
    """Train (and validation/test) accuracy per epoch of a LogisticRegression ``history_`` (or a
    history.json dict / History object with ``epoch``, ``train_acc``, ``val_acc``). Returns the Figure."""
    from matplotlib.figure import Figure

    def get(k):
        v = history.get(k) if isinstance(history, dict) else getattr(history, k, None)
        return list(v) if v is not None else []

    epochs, train, val = get("epoch"), get("train_acc"), get("val_acc")
    if not epochs:
        raise ValueError("plot_logreg_accuracy: the history has no epochs")
    fig = Figure(figsize=(6.0, 4.0), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(epochs, [100 * a for a in train], "o-", label="train (running, during the epoch)")
    if val and any(v is not None for v in val):
        ax.plot([e for e, v in zip(epochs, val) if v is not None], [100 * v for v in val if v is not None],
                "s-", label="test (after the epoch)")
        best = max(v for v in val if v is not None)
        ax.axhline(100 * best, ls=":", lw=0.8, color="0.5")
        ax.annotate(f"best {100 * best:.2f}%", xy=(epochs[0], 100 * best), xytext=(2, 3),
                    textcoords="offset points", fontsize=8, color="0.3")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Logistic regression: accuracy per epoch")
    if len(epochs) < 15:
        ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
