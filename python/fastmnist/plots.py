"""The figures of the classic MNIST write-ups, drawn with matplotlib's Agg backend (headless-safe:
no pyplot, no display). Every ``plot_*`` function returns a ``matplotlib.figure.Figure``;
``save_figure`` writes it as a PNG of exactly ``figsize * dpi`` pixels and ``write_run_figures(run_dir)``
draws every figure a run directory's files allow.

Drawing cost: the axes are placed once at fixed positions (margins in inches, ``_grid``) instead of by
constrained layout, which measures every text again at each draw (and ``savefig`` draws twice with a
layout engine); grids of small images (samples, misclassified digits, augmentation preview, feature
maps) are one axes showing one tiled image with text labels, not one axes per image.

Figures: training curves (one or several models side by side), confusion matrix with per-class
recall, label distributions, sample and misclassified image grids, CNN feature maps, the hand-run
convolution / max-pooling demo, and an augmentation preview.
"""
from __future__ import annotations

import json
import math
import sys
import textwrap
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.patches
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure  # used directly (no pyplot): no GUI backend, no global state
from matplotlib.ticker import MaxNLocator, PercentFormatter

__all__ = ["plot_training_curves", "plot_confusion_matrix", "plot_label_distribution", "plot_samples",
           "plot_misclassified", "plot_feature_maps", "plot_conv_demo", "plot_augmentation_preview",
           "plot_model_comparison", "save_figure", "write_run_figures"]

_TRAIN_STYLE = dict(linestyle="-", marker="o", markersize=4, linewidth=1.8)
_VAL_STYLE = dict(linestyle="--", marker="s", markersize=4, linewidth=1.8)
_RC = {"font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold", "axes.labelsize": 10,
       "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 13,
       "figure.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False}


def _figure(figsize, layout=None) -> Figure:
    """A Figure in the house style; without ``layout`` its axes are placed by ``_grid`` / ``add_axes``."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=figsize, layout=layout)
    return fig


def _grid(fig, nrows=1, ncols=1, *, left=0.75, right=0.2, top=0.65, bottom=0.55, wspace=0.0, hspace=0.0,
          **gridspec_kw):
    """``fig.subplots(nrows, ncols)`` (squeezed) with the margins and the gaps between axes in inches."""
    w, h = fig.get_size_inches()
    aw = max((w - left - right - (ncols - 1) * wspace) / ncols, 0.1)
    ah = max((h - top - bottom - (nrows - 1) * hspace) / nrows, 0.1)
    gs = fig.add_gridspec(nrows, ncols, left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                          wspace=wspace / aw, hspace=hspace / ah, **gridspec_kw)
    with _fixed_titles():
        return gs.subplots()


def _fixed_titles():
    """Axes created in this context put their title just above the axes, where the margins leave
    room for it, instead of measuring every tick label at each draw to find a free place."""
    return matplotlib.rc_context({"axes.titley": 1.0})


def _suptitle(fig, text):
    fig.suptitle(text, fontsize=13, fontweight="bold", y=1 - 0.08 / fig.get_figheight(), va="top")


def _style(ax, grid=True):
    ax.spines[["top", "right"]].set_visible(False)
    if grid:
        ax.grid(True, color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)


def _image_axes(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _as_images(name: str, images) -> np.ndarray:
    a = np.asarray(images)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2 and a.shape[1] == 784:
        a = a.reshape(-1, 28, 28)
    if a.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W) (or (N, 1, H, W) / (N, 784)), got {a.shape}")
    if a.dtype.kind not in "uif":
        raise TypeError(f"{name} must be numeric images, got dtype {a.dtype}")
    return a


def _as_1d(name: str, y, n=None, kind="i") -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries but {n} were expected")
    if kind == "i" and a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer class labels, got dtype {a.dtype}")
    return a


def _img_range(a: np.ndarray):
    return (0, 255) if a.dtype == np.uint8 else (float(np.min(a)), float(np.max(a)) or 1.0)


# ----------------------------------------------------------------------------- training curves
def _history_dict(h) -> dict:
    if isinstance(h, Mapping):
        return dict(h)
    for attr in ("to_dict", "as_dict"):
        if callable(getattr(h, attr, None)):
            return dict(getattr(h, attr)())
    raise TypeError(f"a history must be a dict as in history.json (or have to_dict()), got {type(h).__name__}")


def _series(h: dict, key: str, n: int):
    v = h.get(key)
    if v is None:
        return None
    arr = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"history[{key!r}] has {arr.size} values but there are {n} epochs")
    return None if np.all(np.isnan(arr)) else arr


def plot_training_curves(histories, *, title: str | None = None, figsize=(11.0, 4.2)) -> Figure:
    """Loss (left) and accuracy (right) per epoch, train (solid) and validation (dashed).

    ``histories`` is one history dict as in history.json (keys epoch, train_loss, train_acc,
    val_loss, val_acc; val_* may hold None) or a dict ``name -> history`` to compare several models
    on the same axes (one colour per model). Lines are labelled ``"<name> train"`` /
    ``"<name> validation"`` (just ``"train"`` / ``"validation"`` for a single unnamed history).
    """
    if isinstance(histories, Mapping) and "epoch" in histories:
        histories = {"": histories}
    elif not isinstance(histories, Mapping):
        histories = {"": histories}
    if not histories:
        raise ValueError("histories is empty")
    fig = _figure(figsize)
    ax_loss, ax_acc = _grid(fig, 1, 2, left=0.8, wspace=0.95)
    colors = matplotlib.colormaps["tab10"].colors
    max_epoch = 1
    any_acc = False
    for i, (name, h) in enumerate(histories.items()):
        h = _history_dict(h)
        if "epoch" not in h:
            raise ValueError(f"history {name!r} has no 'epoch' list (keys: {sorted(h)})")
        epochs = np.asarray(h["epoch"], dtype=np.float64)
        n = epochs.size
        max_epoch = max(max_epoch, int(np.nanmax(epochs)) if n else 1)
        c = colors[i % len(colors)]
        prefix = f"{name} " if name else ""
        # "val_*" is a validation split; a run evaluated on the test set each epoch has "test_*"
        ev, ev_label = ("test", "test") if h.get("test_loss") is not None or h.get("test_acc") is not None \
            else ("val", "validation")
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            tr, va = _series(h, f"train_{key}", n), _series(h, f"{ev}_{key}", n)
            if tr is not None:
                ax.plot(epochs, tr, color=c, label=f"{prefix}train", **_TRAIN_STYLE)
            if va is not None:
                ax.plot(epochs, va, color=c, label=f"{prefix}{ev_label}", **_VAL_STYLE)
            if n == 1:  # one epoch: a single point per curve, so write its value beside it
                for v, dy in ((tr, 6), (va, -12)):
                    if v is not None and np.isfinite(v[0]):
                        txt = f"{v[0] * 100:.2f}%" if key == "acc" and v[0] <= 1 else f"{v[0]:.4f}"
                        ax.annotate(txt, (epochs[0], v[0]), xytext=(8, dy), textcoords="offset points",
                                    fontsize=8, color=c)
                ax.margins(y=0.12)  # room for the values written beside the top and bottom points
            if key == "acc" and (tr is not None or va is not None):
                any_acc = True
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy loss")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        _style(ax)
        if max_epoch <= 12:
            ax.set_xticks(range(1, max_epoch + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, max_epoch + 0.5)
    if len(histories) > 1 and ax_loss.get_lines():
        # several models: one legend below the axes, where it cannot cover a curve
        handles, labels = ax_loss.get_legend_handles_labels()
        ncol = min(len(labels), 6)
        legend_h = 0.25 * math.ceil(len(labels) / ncol) + 0.1
        gs = ax_loss.get_gridspec()
        gs.update(bottom=(0.55 + legend_h) / fig.get_figheight())
        for ax in (ax_loss, ax_acc):
            ax.set_position(ax.get_subplotspec().get_position(fig))
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False)
    else:
        for ax in (ax_loss, ax_acc):
            if ax.get_lines():
                ax.legend(loc="best", frameon=False)
    if any_acc:
        ys = np.concatenate([ln.get_ydata() for ln in ax_acc.get_lines()])
        if np.nanmax(ys) <= 1.0:
            ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    _suptitle(fig, title or ("Training curves" if len(histories) == 1 else "Training curves: model comparison"))
    return fig


# ----------------------------------------------------------------------------- confusion matrix
def plot_confusion_matrix(y_true=None, y_pred=None, *, cm=None, labels=None, title: str | None = None,
                          figsize=(9.0, 7.2)) -> Figure:
    """Confusion-matrix heatmap (rows: true class, columns: predicted class) with the count in every
    cell, coloured by the fraction of the true class (square-root scale so that errors show), and a
    side panel with each class's recall.

    Pass ``y_true`` and ``y_pred`` (class labels), or a precomputed square ``cm`` of counts. The
    counts are the text of the cells; the image holds the row-normalised fractions.
    """
    from .metrics import confusion_matrix

    if cm is None:
        if y_true is None or y_pred is None:
            raise ValueError("pass y_true and y_pred, or cm")
        yt = _as_1d("y_true", y_true)
        yp = _as_1d("y_pred", y_pred, yt.shape[0])
        if labels is None:
            labels = np.union1d(yt, yp)
        cm = confusion_matrix(yt, yp, labels=labels)
    else:
        cm = np.asarray(cm)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
            raise ValueError(f"cm must be a square matrix, got shape {cm.shape}")
        if labels is None:
            labels = np.arange(cm.shape[0])
    labels = [str(x) for x in np.asarray(labels).tolist()]
    if len(labels) != cm.shape[0]:
        raise ValueError(f"{len(labels)} labels for a {cm.shape[0]}x{cm.shape[0]} confusion matrix")
    k = cm.shape[0]
    support = cm.sum(axis=1)
    with np.errstate(all="ignore"):
        frac = np.where(support[:, None] > 0, cm / np.maximum(support[:, None], 1), 0.0)
        recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    total = cm.sum()
    acc = np.trace(cm) / total if total else float("nan")

    fig = _figure(figsize)
    # fixed layout in inches: heatmap (square), colour bar, recall bars of the same height
    w, h = fig.get_size_inches()
    lab = max(len(x) for x in labels)
    left, top, bottom = 0.45 + 0.08 * lab, 0.65, 0.6
    gap, cbar_w, cbar_lab, r_lab, r_w, right = 0.12, 0.2, 0.75, 0.25 + 0.08 * lab, 1.25, 0.25
    side = max(1.0, min(h - top - bottom, w - left - gap - cbar_w - cbar_lab - r_lab - r_w - right))
    y0 = bottom + (h - top - bottom - side) / 2
    x_cb = left + side + gap
    x_r = x_cb + cbar_w + cbar_lab + r_lab
    with _fixed_titles():
        ax = fig.add_axes((left / w, y0 / h, side / w, side / h))
        ax_r = fig.add_axes((x_r / w, y0 / h, max(0.3, w - x_r - right) / w, side / h))
        cax = fig.add_axes((x_cb / w, y0 / h, cbar_w / w, side / h))
    norm = mcolors.PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    im = ax.imshow(frac, cmap="Blues", norm=norm, interpolation="nearest", aspect="equal")
    fs = 9 if k <= 10 else max(5, 9 - (k - 10) // 3)
    for i in range(k):
        for j in range(k):
            v = cm[i, j]
            txt = f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=fs,
                    color="white" if norm(frac[i, j]) > 0.6 else ("#222222" if v else "#bbbbbb"),
                    fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set(xlabel="predicted label", ylabel="true label")
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("fraction of the true class")

    y = np.arange(k)
    rec = np.nan_to_num(recall, nan=0.0)
    ax_r.barh(y, rec, color="#4c72b0", height=0.7)
    lo = max(0.0, math.floor((np.nanmin(recall) if np.any(support) else 0.0) * 20) / 20 - 0.05)
    ax_r.set_xlim(lo, 1.0)
    ax_r.set_ylim(k - 0.5, -0.5)
    ax_r.set_yticks(y, labels)
    for i in range(k):
        label = "n/a" if np.isnan(recall[i]) else f"{recall[i] * 100:.1f}%"
        ax_r.text(lo + 0.01 * (1 - lo), i, label, va="center", ha="left", fontsize=8, color="white"
                  if rec[i] > lo + 0.35 * (1 - lo) else "#222222")
    ax_r.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax_r.xaxis.set_major_locator(MaxNLocator(3))
    ax_r.set(title="recall", xlabel="per true class")
    _style(ax_r, grid=False)
    _suptitle(fig, title or f"Confusion matrix  (n = {total:.0f}, accuracy {acc * 100:.2f}%)")
    return fig


# ----------------------------------------------------------------------------- data figures
def plot_label_distribution(y_train=None, y_test=None, *, sets: Mapping | None = None, num_classes: int = 10,
                            title: str | None = None, figsize=None, counts: Mapping | None = None) -> Figure:
    """Histogram (one bar per class) of the labels of each set, side by side.

    ``plot_label_distribution(y_train, y_test)`` or ``sets={"train": y_train, "test": y_test, ...}``;
    bar heights are ``np.bincount(labels, minlength=num_classes)``. ``counts={"train": [n0, ..., n9],
    ...}`` gives the bar heights directly (as in a run's label_counts.json).
    """
    if counts is not None:
        c = {}
        for name, v in counts.items():
            a = np.asarray(v)
            if a.ndim != 1 or a.size != num_classes or not np.issubdtype(a.dtype, np.integer) or (a < 0).any():
                raise ValueError(f"counts of {name!r} must be {num_classes} non-negative integers, got {v!r}")
            c[name] = a.astype(np.int64)
        return _label_bars(c, num_classes, title, figsize)
    if sets is None:
        sets = {}
        if y_train is not None:
            sets["train"] = y_train
        if y_test is not None:
            sets["test"] = y_test
    if not sets:
        raise ValueError("no labels given: pass y_train / y_test or sets={name: labels}")
    counts = {}
    for name, y in sets.items():
        a = _as_1d(f"labels of {name!r}", y)
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"labels of {name!r} must lie in [0, {num_classes}), got [{a.min()}, {a.max()}]")
        counts[name] = np.bincount(a, minlength=num_classes)
    return _label_bars(counts, num_classes, title, figsize)


def _label_bars(counts, num_classes, title, figsize):
    n = len(counts)
    fig = _figure(figsize or (5.2 * n, 4.0))
    axes = np.atleast_1d(_grid(fig, 1, n, right=0.15, wspace=0.85))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for i, (ax, (name, c)) in enumerate(zip(axes, counts.items())):
        bars = ax.bar(np.arange(num_classes), c, color=colors[i % len(colors)], width=0.75)
        ax.bar_label(bars, labels=[f"{v:,}" for v in c], fontsize=7, padding=2)
        ax.set_xticks(np.arange(num_classes))
        ax.set(title=f"{name} set  ({c.sum():,} images)", xlabel="digit", ylabel="images")
        ax.set_ylim(0, max(1, c.max()) * 1.12)
        mean = c.sum() / num_classes
        ax.axhline(mean, color="#555555", linestyle=":", linewidth=1, label=f"uniform ({mean:,.0f})")
        ax.legend(loc="lower right", frameon=True, framealpha=0.9)
        _style(ax)
        ax.grid(axis="x", visible=False)
    _suptitle(fig, title or "Label distribution")
    return fig


def _grid_shape(n, ncols):
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _tile(tiles, ncols: int, *, gap: int = 1, band: int = 0):
    """Images ``tiles`` (N, H, W) laid out row-major, ``ncols`` per row, ``gap`` pixels apart, each under
    a blank band of ``band`` pixel rows (room for its label): one float32 image, NaN (drawn blank)
    outside the tiles, and the (row, column) of each tile's top-left pixel in it."""
    n, h, w = tiles.shape
    rows, cols = _grid_shape(n, ncols)
    out = np.full((rows * (band + h) + (rows - 1) * gap, cols * w + (cols - 1) * gap), np.nan, np.float32)
    corners = []
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = r * (band + h + gap) + band, q * (w + gap)
        out[y: y + h, x: x + w] = tiles[i]
        corners.append((y, x))
    return out, corners


def _mosaic_figure(mosaic, *, scale: float, left=0.1, right=0.1, top=0.55, bottom=0.1, cmap="gray_r",
                   **imshow_kw):
    """A figure showing ``mosaic`` in one axes, ``scale`` inches per pixel, margins in inches; NaN
    pixels are white. Returns ``(fig, ax)``; ``ax`` has data coordinates in mosaic pixels."""
    hpx, wpx = mosaic.shape
    # whole quarter inches (exact in binary): the PNG is exactly figsize * dpi pixels at any integer dpi
    fw = math.ceil((wpx * scale + left + right) * 4) / 4
    fh = math.ceil((hpx * scale + top + bottom) * 4) / 4
    left += (fw - wpx * scale - left - right) / 2
    bottom += fh - hpx * scale - top - bottom
    fig = _figure((fw, fh))
    ax = fig.add_axes((left / fw, bottom / fh, wpx * scale / fw, hpx * scale / fh))
    ax.imshow(mosaic, cmap=matplotlib.colormaps[cmap].with_extremes(bad="white"), interpolation="nearest",
              aspect="auto", **imshow_kw)
    ax.set_axis_off()
    return fig, ax


def _label_tiles(ax, corners, shape, band, texts, **text_kw):
    """Write ``texts[i]`` centred in the band above tile ``i``."""
    _, w = shape
    for (y, x), t in zip(corners, texts):
        ax.text(x + (w - 1) / 2, y - 0.5 - band / 2, t, ha="center", va="center", **text_kw)


def _tile_scale(imgs) -> float:
    """Inches per image pixel in the image grids: every image (a 28x28 digit, say) is drawn one inch
    wide."""
    return 1.0 / max(imgs.shape[1], imgs.shape[2], 1)


def plot_samples(images, labels=None, *, n: int = 32, ncols: int = 8, seed=None,
                 title: str | None = None) -> Figure:
    """A grid of ``n`` images (the first ``n``, or a random choice when ``seed`` is given) with their
    labels above them, drawn as one tiled image (``fig.axes[0].images[0]``, tiles ``ncols`` per row)."""
    imgs = _as_images("images", images)
    if labels is not None:
        labels = _as_1d("labels", labels, imgs.shape[0], kind="any")
    if imgs.shape[0] == 0:
        raise ValueError("images is empty")
    n = min(int(n), imgs.shape[0])
    idx = (np.arange(n) if seed is None else
           np.sort(np.random.default_rng(seed).choice(imgs.shape[0], n, replace=False)))
    vmin, vmax = _img_range(imgs)
    scale = _tile_scale(imgs)
    band = round(0.32 / scale) if labels is not None else 0
    mosaic, corners = _tile(imgs[idx], ncols, gap=round(0.25 / scale), band=band)
    fig, ax = _mosaic_figure(mosaic, scale=scale, vmin=vmin, vmax=vmax, top=0.45 if band else 0.6)
    if labels is not None:
        _label_tiles(ax, corners, imgs.shape[1:], band, [f"label {labels[i]}" for i in idx], fontsize=9)
    _suptitle(fig, title or "Sample images")
    return fig


def plot_misclassified(images, y_true, y_pred, proba=None, *, n: int = 24, ncols: int = 8,
                       order: str = "confidence", title: str | None = None) -> Figure:
    """A grid of misclassified images, each titled with the true label, the prediction and the
    model's confidence in that prediction (``proba[i, y_pred[i]]``), drawn as one tiled image
    (``fig.axes[0].images[0]``, tiles ``ncols`` per row, titles in ``fig.axes[0].texts``).

    ``order``: 'confidence' (the most confident mistakes first) or 'index' (dataset order).
    """
    imgs = _as_images("images", images)
    yt = _as_1d("y_true", y_true, imgs.shape[0])
    yp = _as_1d("y_pred", y_pred, imgs.shape[0])
    conf = None
    if proba is not None:
        p = np.asarray(proba, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != imgs.shape[0]:
            raise ValueError(f"proba must have shape (N={imgs.shape[0]}, classes), got {p.shape}")
        if yp.size and yp.max() >= p.shape[1]:
            raise ValueError(f"y_pred holds class {yp.max()} but proba has {p.shape[1]} columns")
        conf = p[np.arange(p.shape[0]), yp]
    if order not in ("confidence", "index"):
        raise ValueError(f"order must be 'confidence' or 'index', got {order!r}")
    wrong = np.flatnonzero(yt != yp)
    if order == "confidence" and conf is not None:
        wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    total_wrong = wrong.size
    wrong = wrong[: int(n)]
    if wrong.size == 0:
        fig = _figure((6, 2))
        ax = fig.add_axes((0, 0, 1, 0.75))
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no misclassified images among {imgs.shape[0]:,}", ha="center", va="center",
                fontsize=12)
        _suptitle(fig, title or "Misclassified test images")
        return fig
    vmin, vmax = _img_range(imgs)
    scale = _tile_scale(imgs)
    band = round((0.5 if conf is not None else 0.32) / scale)
    mosaic, corners = _tile(imgs[wrong], ncols, gap=round(0.35 / scale), band=band)
    fig, ax = _mosaic_figure(mosaic, scale=scale, vmin=vmin, vmax=vmax, top=0.45)
    texts = [f"true {yt[i]}  pred {yp[i]}" + (f"\n{conf[i] * 100:.1f}% sure" if conf is not None else "")
             for i in wrong]
    _label_tiles(ax, corners, imgs.shape[1:], band, texts, fontsize=8, color="#b22222")
    what = "most confident" if (order == "confidence" and conf is not None) else "first"
    _suptitle(fig, title or f"Misclassified test images: {what} {wrong.size} of {total_wrong:,} "
                          f"({total_wrong / imgs.shape[0] * 100:.2f}% of {imgs.shape[0]:,})")
    return fig


# ----------------------------------------------------------------------------- CNN internals
def _as_chw(name, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 1:
        a = a[None, None, :]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"feature map {name!r} must have shape (C, H, W), got {a.shape}")
    return a


def _mosaic(a: np.ndarray, c: int, ncols: int) -> np.ndarray:
    """Channels ``a[:c]`` (C, H, W), each scaled to [0, 1] on its own, tiled ``ncols`` per row with a
    one-pixel NaN gap (drawn blank) between tiles: one image instead of one axes per map."""
    m = a[:c].astype(np.float32)
    lo = np.nanmin(m, axis=(1, 2), keepdims=True)
    hi = np.nanmax(m, axis=(1, 2), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(hi > lo, (m - lo) / np.where(hi > lo, hi - lo, 1), np.float32(0.5))
    return _tile(m, ncols, gap=1)[0]


def plot_feature_maps(image, layers: Sequence, *, max_channels: int = 16, ncols: int = 8,
                      title: str | None = None) -> Figure:
    """The input image, then up to ``max_channels`` channels of every layer's output for that image
    (one mosaic per layer, ``ncols`` maps per row, each map scaled to [0, 1] on its own colour scale,
    channel 0 at the top left).

    ``layers`` is a list of ``(name, array)`` with arrays of shape (C, H, W) (a 1-D output, e.g. of
    a linear layer, is drawn as a strip), as stored in feature_maps.npz.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 2:
        raise ValueError(f"image must have shape (H, W), got {img.shape}")
    if isinstance(layers, Mapping):
        layers = list(layers.items())
    layers = [(str(nm), _as_chw(nm, a)) for nm, a in layers]
    if not layers:
        raise ValueError("layers is empty")
    if int(max_channels) < 1 or int(ncols) < 1:
        raise ValueError(f"max_channels and ncols must be >= 1, got {max_channels}, {ncols}")
    blocks = []
    for nm, a in layers:
        c = min(a.shape[0], int(max_channels))
        strip = a.shape[1] == 1 and a.shape[2] > 4 * a.shape[1]
        blocks.append((nm, a, c, strip))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    # one row of axes per layer, each as high as its mosaic (in tiles)
    heights = [1.4] + [0.6 if strip else 1.0 * math.ceil(c / ncols) for _, _, c, strip in blocks]
    width = 1.0 * ncols + 0.4
    fig = Figure(figsize=(width, sum(heights) + 0.35 * len(blocks) + 0.8))
    with _fixed_titles():
        axes = fig.subplots(len(blocks) + 1, 1, gridspec_kw={"height_ratios": heights, "hspace": 0.45})
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.95 / fig.get_figheight(), bottom=0.02)
    ax = axes[0]
    ax.imshow(img, cmap="gray_r", interpolation="nearest")
    _image_axes(ax)
    ax.set_title(f"input image ({img.shape[0]}x{img.shape[1]})", fontsize=10)
    for ax, (nm, a, c, strip) in zip(axes[1:], blocks):
        shape = "x".join(str(s) for s in a.shape)
        more = f", first {c} of {a.shape[0]} channels" if c < a.shape[0] else ""
        ax.set_title(f"{nm}  ({shape}{more})", fontsize=10, fontweight="bold")
        if strip:
            ax.imshow(a[0], cmap="viridis", aspect="auto", interpolation="nearest")
        else:
            ax.imshow(_mosaic(a, c, ncols), cmap=cmap, interpolation="nearest")
            ax.set_anchor("W")
        _image_axes(ax)
    _suptitle(fig, title or "Feature maps of one test image")
    return fig


def plot_conv_demo(image, kernel, conv, pooled, *, padding: int = 0, stride: int = 1,
                   filter_name: str = "", title: str | None = None, figsize=(15.0, 4.4)) -> Figure:
    """The hand-run convolution: the input image (with its zero padding), the filter with its
    weights written in, the convolved map and the 2x2 max-pooled map, side by side."""
    img = np.asarray(image, dtype=np.float32)
    k = np.asarray(kernel, dtype=np.float32)
    y = np.asarray(conv, dtype=np.float32)
    p = np.asarray(pooled, dtype=np.float32)
    for nm, a in (("image", img), ("kernel", k), ("conv", y), ("pooled", p)):
        if a.ndim != 2:
            raise ValueError(f"{nm} must be 2-D, got shape {a.shape}")
    fig = _figure(figsize, layout="constrained")  # drawn once by `fastmnist demo-conv`, not per run
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 0.85, 1, 1]})
    shown = np.pad(img, padding) if padding else img
    axes[0].imshow(shown, cmap="gray_r", interpolation="nearest")
    if padding:
        h, w = img.shape
        axes[0].add_patch(matplotlib.patches.Rectangle((padding - 0.5, padding - 0.5), w, h, fill=False,
                                                       edgecolor="#dd8452", linewidth=1.5, linestyle="--"))
    axes[0].set_title(f"input {img.shape[0]}x{img.shape[1]}" + (f", zero-padded by {padding}" if padding else ""))
    lim = float(np.max(np.abs(k))) or 1.0
    axes[1].imshow(k, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    for (i, j), v in np.ndenumerate(k):
        axes[1].text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                     color="white" if abs(v) > 0.6 * lim else "#222222")
    axes[1].set_title(f"{k.shape[0]}x{k.shape[1]} filter" + (f" ({filter_name})" if filter_name else ""))
    ylim = float(np.max(np.abs(y))) or 1.0
    im = axes[2].imshow(y, cmap="RdBu_r", vmin=-ylim, vmax=ylim, interpolation="nearest")
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.03)
    axes[2].set_title(f"convolved {y.shape[0]}x{y.shape[1]} (stride {stride})")
    plim = float(np.max(np.abs(p))) or 1.0
    im = axes[3].imshow(p, cmap="RdBu_r", vmin=-plim, vmax=plim, interpolation="nearest")
    fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.03)
    axes[3].set_title(f"2x2 max-pooled {p.shape[0]}x{p.shape[1]}")
    for ax in axes:
        _image_axes(ax)
    _suptitle(fig, title or "A convolution and a max-pooling, by hand")
    return fig


def plot_augmentation_preview(images, transforms: Sequence, *, seed=0, title: str | None = None) -> Figure:
    """The same digits (rows) before and after each transform (columns).

    ``transforms`` is a list of ``(name, fn)`` with ``fn(x, rng) -> x'`` taking the whole batch ``x``
    as float32 of shape (N, 28, 28) scaled to [0, 1] and a ``numpy.random.Generator``; the output may
    be (N, H, W), (N, 1, H, W) or (N, H*W). Every transform gets a generator seeded from ``seed``.
    """
    imgs = _as_images("images", images)
    x = imgs.astype(np.float32)
    if imgs.dtype == np.uint8:
        x = x / 255.0
    if isinstance(transforms, Mapping):
        transforms = list(transforms.items())
    transforms = list(transforms)
    cols = [("original", x)]
    for t in transforms:
        if not (isinstance(t, (tuple, list)) and len(t) == 2 and callable(t[1])):
            raise TypeError(f"each transform must be a (name, callable(x, rng)) pair, got {t!r}")
        name, fn = t
        out = np.asarray(fn(x.copy(), np.random.default_rng(seed)), dtype=np.float32)
        if out.shape[0] != x.shape[0]:
            raise ValueError(f"transform {name!r} returned {out.shape[0]} images for {x.shape[0]}")
        cols.append((str(name), _as_images(f"output of {name!r}", out)))
    n, m = x.shape[0], len(cols)
    hh = max(a.shape[1] for _, a in cols)
    ww = max(a.shape[2] for _, a in cols)
    # tile (i, j) = image i after column j's transform, scaled by max(1, its maximum) (colour range [0, 1]);
    # a transform that changed the size is centred in its tile
    tiles = np.full((n, m, hh, ww), np.nan, np.float32)
    for j, (_, arr) in enumerate(cols):
        top, lft = (hh - arr.shape[1]) // 2, (ww - arr.shape[2]) // 2
        peak = np.maximum(1.0, np.nanmax(arr.reshape(n, -1), axis=1, initial=0.0))
        tiles[:, j, top: top + arr.shape[1], lft: lft + arr.shape[2]] = arr / peak[:, None, None]
    scale = 1.1 / max(28, hh, ww)
    mosaic, corners = _tile(tiles.reshape(n * m, hh, ww), m, gap=round(0.6 / scale))
    # column titles wrap (a spec such as "perspective:0.2" is wider than one image)
    names = [textwrap.fill(name, 18) for name, _ in cols]
    lines = max(t.count("\n") + 1 for t in names)
    fig, ax = _mosaic_figure(mosaic, scale=scale, vmin=0.0, vmax=1.0, top=0.5 + 0.16 * lines, left=0.3,
                             right=0.3)
    for (y, x0), name in zip(corners[:m], names):
        ax.text(x0 + (ww - 1) / 2, y - 0.5 - 0.06 / scale, name, ha="center", va="bottom", fontsize=8)
    _suptitle(fig, title or "Data augmentation preview")
    return fig


def plot_model_comparison(results: Mapping, *, title: str | None = None) -> Figure:
    """Bars of each model's test accuracy and training time (``results``: name -> dict with
    test_accuracy and train_seconds, as in a compare run's summary.json)."""
    if not results:
        raise ValueError("results is empty")
    names = list(results)
    acc = np.array([float(results[k].get("test_accuracy", np.nan)) for k in names])
    secs = np.array([float(results[k].get("train_seconds", np.nan) or np.nan) for k in names])
    fig = _figure((max(8.0, 1.6 * len(names) + 4), 4.0))
    a1, a2 = _grid(fig, 1, 2, right=0.15, wspace=0.85, bottom=0.55 if len(names) <= 4 else
                   0.45 + 0.035 * max(len(str(k)) for k in names))  # room for the labels turned by 20 degrees
    colors = [matplotlib.colormaps["tab10"].colors[i % 10] for i in range(len(names))]
    b = a1.bar(names, acc * 100, color=colors)
    a1.bar_label(b, labels=[f"{v * 100:.2f}%" for v in acc], fontsize=8, padding=2)
    lo = np.nanmin(acc) * 100 if np.any(np.isfinite(acc)) else 0
    a1.set_ylim(max(0, math.floor(lo) - 2), 100.5)
    a1.set(title="Test accuracy", ylabel="accuracy (%)")
    b = a2.bar(names, secs, color=colors)
    a2.bar_label(b, labels=[f"{v:.1f}s" for v in secs], fontsize=8, padding=2)
    a2.set(title="Training time", ylabel="seconds")
    for ax in (a1, a2):
        _style(ax)
        ax.grid(axis="x", visible=False)
        ax.tick_params(axis="x", rotation=20 if len(names) > 4 else 0)
    _suptitle(fig, title or "Model comparison")
    return fig


# ----------------------------------------------------------------------------- files
def save_figure(fig: Figure, path, *, dpi: int = 100, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG and close it. The figures here are laid out to fit their size, so by
    default the PNG is exactly ``figsize * dpi`` pixels; ``tight=True`` crops it to the drawn
    content (``bbox_inches='tight'``, which costs an extra draw). Returns the path."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_figure writes PNG files; {path} does not end in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    from ._io import atomic_savefig

    atomic_savefig(fig, path, dpi=dpi, format="png", bbox_inches="tight" if tight else None,
                   facecolor="white", metadata={"Software": "fastmnist"})
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return path


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


_NPZ_CACHE: dict = {}  # the last arrays read, by file identity: a figure worker reads predictions.npz once


def _load_npz(path: Path) -> dict:
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if key not in _NPZ_CACHE:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if len(_NPZ_CACHE) >= 4:
                _NPZ_CACHE.pop(next(iter(_NPZ_CACHE)))
            _NPZ_CACHE[key] = arrays
        return dict(_NPZ_CACHE[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def augmentation_columns(spec: str):
    """``(name, transform)`` pairs of an ``--augment`` spec: each transform alone, then all of them
    (the preview's columns)."""
    from .augment import from_spec

    toks = [t.strip() for t in str(spec).split(",") if t.strip()]
    cols = [(t, from_spec(t)) for t in toks]
    if len(toks) > 1:
        cols.append(("all, in order", from_spec(spec)))
    return cols


def _single_run_jobs(run_dir: Path, out: Path, prefix: str, dpi: int, settings: Mapping) -> list:
    """The figures of one train/logreg run directory as ``(file name, draw)`` pairs (see
    ``run_figure_jobs``); the files are read now, the figures drawn when ``draw()`` is called."""
    jobs = []

    def job(name, make):
        path = out / f"{prefix}{name}.png"
        jobs.append((path.name, lambda: save_figure(make(), path, dpi=dpi)))

    model = f" ({prefix[:-1]})" if prefix else ""
    hist = run_dir / "history.json"
    if hist.is_file():
        h = _read_json(hist)
        if h.get("epoch"):
            note = " (interrupted)" if h.get("interrupted") else ""
            job("training_curves", lambda: plot_training_curves(h, title=f"Training curves{model}{note}"))
    pred = run_dir / "predictions.npz"
    counts_file = run_dir / "label_counts.json"
    z = _load_npz(pred) if pred.is_file() else None
    if z is not None:
        if "y_true" not in z or "y_pred" not in z:
            raise ValueError(f"{pred} must hold y_true and y_pred (has {sorted(z)})")
        yt, yp = z["y_true"], z["y_pred"]
        labels = np.arange(max(10, int(max(yt.max(initial=0), yp.max(initial=0))) + 1))
        job("confusion_matrix", lambda: plot_confusion_matrix(yt, yp, labels=labels, title=None if not prefix else
                                                              f"Confusion matrix{model}"))
    if counts_file.is_file():
        # the labels of the images the run actually used (after subsampling and splitting); needs no
        # predictions.npz, so that a figure worker can draw it before that file is written
        counts = _read_json(counts_file)
        if not (isinstance(counts, dict) and all(isinstance(v, list) for v in counts.values())):
            raise ValueError(f"{counts_file} must map set names to lists of counts per class")
        counts = {k: v for k, v in counts.items() if sum(v)}
        if counts:
            k = len(next(iter(counts.values())))
            job("label_distribution", lambda: plot_label_distribution(
                counts=counts, num_classes=k, title=f"Label distribution of the images used{model}"))
    elif z is not None and yt.min(initial=0) >= 0 and yt.max(initial=0) < labels.size:
        job("label_distribution", lambda: plot_label_distribution(sets={"test": yt}, num_classes=labels.size))
    if z is not None and "images" in z and z["images"].shape[0] == yt.shape[0]:
        job("samples", lambda: plot_samples(z["images"], yt, n=32, title="Sample test images"))
        job("misclassified", lambda: plot_misclassified(
            z["images"], yt, yp, z.get("proba"), title=None if not prefix else f"Misclassified test images{model}"))
    spec = (settings.get("recipe") or {}).get("augment") if isinstance(settings.get("recipe"), Mapping) else None
    if spec and z is not None and "images" in z and z["images"].shape[0]:
        job("augmentation", lambda: plot_augmentation_preview(
            z["images"][:6], augmentation_columns(spec), title=f"Data augmentation preview{model}: {spec}"))
    fm = run_dir / "feature_maps.npz"
    if fm.is_file():
        f = _load_npz(fm)
        if "image" in f:
            layers = [(k, f[k]) for k in sorted(f) if k != "image"]
            if layers:
                job("feature_maps", lambda: plot_feature_maps(f["image"], layers,
                                                              title=f"Feature maps of one test image{model}"))
    roc = run_dir / "roc.json"
    if roc.is_file():
        r = _read_json(roc)
        job("roc", lambda: plot_roc(r))
    return jobs


def run_figure_jobs(run_dir, *, dpi: int = 100) -> list:
    """Every figure that the files of ``run_dir`` allow, as ``(file name, draw)`` pairs in
    ``write_run_figures``'s order: ``draw()`` draws that figure into ``run_dir/figures/`` and returns
    its path. The files are read now. Several processes can each draw a share of the list."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    summary = {}
    if (run_dir / "summary.json").is_file():
        summary = _read_json(run_dir / "summary.json")
    settings = summary.get("settings") or {}
    out = run_dir / "figures"
    models = [d for d in sorted(run_dir.iterdir())
              if d.is_dir() and d.name != "figures" and ((d / "summary.json").is_file()
                                                          or (d / "history.json").is_file())]
    if summary.get("command") == "compare" or (models and not (run_dir / "history.json").is_file()
                                               and not (run_dir / "predictions.npz").is_file()):
        jobs = []
        results = (summary.get("results") or {}).get("models") or {}
        order = list(results) + [d.name for d in models if d.name not in results]
        dirs = {d.name: d for d in models}
        hists = {}
        for name in order:
            h = dirs.get(name, run_dir / name) / "history.json"
            if h.is_file():
                hd = _read_json(h)
                if hd.get("epoch"):
                    hists[name] = hd
        if hists:
            jobs.append(("training_curves_comparison.png", lambda: save_figure(
                plot_training_curves(hists), out / "training_curves_comparison.png", dpi=dpi)))
        if results:
            jobs.append(("model_comparison.png", lambda: save_figure(
                plot_model_comparison(results), out / "model_comparison.png", dpi=dpi)))
        for name in order:
            d = dirs.get(name)
            if d is None:
                continue
            sub = _read_json(d / "summary.json") if (d / "summary.json").is_file() else {}
            jobs += _single_run_jobs(d, out, f"{name}_", dpi, sub.get("settings") or settings)
        return jobs
    return _single_run_jobs(run_dir, out, "", dpi, settings)


def draw_figure_jobs(jobs) -> list[Path]:
    """Draw ``(file name, draw)`` pairs from ``run_figure_jobs``; the paths written."""
    return [draw() for _, draw in jobs]


def write_run_figures(run_dir, *, dpi: int = 100) -> list[Path]:
    """Draw every figure that the files of ``run_dir`` (see the run-directory contract) allow into
    ``run_dir/figures/`` and return the paths written.

    A train or logreg run gives training curves (history.json), the confusion matrix, sample and
    misclassified grids (predictions.npz), the label distribution of the images the run used
    (label_counts.json; else the test labels), the augmentation preview (when summary.json's recipe
    augments), the feature maps (feature_maps.npz) and the ROC curves (roc.json); missing files are
    skipped. A compare run
    (summary.json command 'compare', one sub-directory per model) gives the side-by-side training
    curves, the accuracy/time bars, and every model's own figures prefixed with its name.
    """
    return draw_figure_jobs(run_figure_jobs(run_dir, dpi=dpi))


def warm_up() -> None:
    """Draw (into memory) a small figure with what the run figures use: text in the fonts and
    weights used, a legend, a colour bar, bar labels, percent ticks, an image with blank pixels. The
    first figure a process draws pays for loading fonts and the matplotlib modules that load on
    first use; a figure worker pays that before it is needed."""
    import io

    fig = _figure((3.0, 2.0))
    ax, ax2 = _grid(fig, 1, 2, left=0.3, right=0.3, top=0.4, bottom=0.3, wspace=0.4)
    ax.plot([1, 2], [0.5, 0.9], label="train", **_TRAIN_STYLE)
    ax.annotate("90.00%", (2, 0.9), xytext=(8, 6), textcoords="offset points", fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    ax.legend(loc="best", frameon=False)
    _style(ax)
    bars = ax2.bar([0, 1], [3, 4])
    ax2.bar_label(bars, labels=["3", "4"], fontsize=7)
    ax2.text(0, 1, "7", fontsize=9, fontweight="bold", color="#b22222")
    im = ax2.imshow(np.array([[np.nan, 0.5], [1.0, 0.0]], np.float32),
                    cmap=matplotlib.colormaps["viridis"].with_extremes(bad="white"), extent=(0, 1, 0, 1))
    fig.colorbar(im, ax=ax2).set_label("fraction")
    _suptitle(fig, "warm-up")
    fig.savefig(io.BytesIO(), format="png", dpi=100, facecolor="white")


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
    aucs = []
    for i, (label, fpr, tpr, a) in enumerate(items):
        if a is None:
            a = _auc(fpr, tpr)
        aucs.append(float(a))
        ax.plot(fpr, tpr, lw=1.4 if many else 2.0, label=f"{label} (AUC = {a:.4f})",
                color=None if many else "C3", drawstyle="default")
    if aucs and min(aucs) >= 0.97:
        # near-perfect curves hug the top-left corner: a zoomed inset shows where they differ
        x_hi = 0.1 if min(aucs) < 0.995 else 0.02
        y_lo = min(float(np.interp(0.0, fpr, tpr)) for _, fpr, tpr, _ in items)
        y_lo = max(0.0, min(y_lo, 0.95) - 0.02)
        ins = ax.inset_axes([0.38, 0.3, 0.5, 0.45])
        for (label, fpr, tpr, _), line in zip(items, ax.get_lines()):
            ins.plot(fpr, tpr, lw=1.2, color=line.get_color())
        ins.set_xlim(0.0, x_hi)
        ins.set_ylim(y_lo, 1.0 + (1.0 - y_lo) * 0.02)
        ins.set_title(f"zoom: false positive rate <= {x_hi:g}", fontsize=7)
        ins.tick_params(labelsize=6)
        ins.grid(alpha=0.3)
        ax.indicate_inset_zoom(ins, edgecolor="0.5")
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
