"""``fastmnist roc``: ROC curves and AUCs from saved scores."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def add_parser(sub):
    p = sub.add_parser(
        "roc", help="draw ROC curves (with AUC) from saved scores: predictions.npz, .npy or .csv",
        description="Read scores and labels and draw ROC curves with their AUC. SCORES is a .npz "
                    "holding y_true and proba (N x C, e.g. a run's predictions.npz) or y_score (N,); or "
                    "a .npy/.csv of scores (N,) or (N, C) with the labels from --labels (.npy/.csv/.txt); "
                    "or a .csv without --labels whose first column is the label and the rest the scores. "
                    "N x C scores give one-vs-rest curves (column c = class c); N scores give one curve "
                    "with positives = labels equal to --pos-label.")
    p.add_argument("scores", help="predictions.npz, or a .npy/.csv of scores")
    p.add_argument("--labels", default=None, help="labels file (.npy, .csv or .txt, one per line) for .npy/.csv scores")
    p.add_argument("--class", dest="classes", type=int, action="append", default=None,
                   help="class to draw (repeatable; default: all); for N x C scores")
    p.add_argument("--pos-label", type=int, default=1, help="positive label for one score column (default 1)")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--out", required=True, help="a .png file, or a directory (gets roc.png and roc.json)")
    p.set_defaults(func=run)


def _read_table(path: Path) -> np.ndarray:
    """A .npy array, or the numbers of a text table (.csv / .txt, comma-separated, optional header row)."""
    from .._io import read_npy

    if path.suffix == ".npy":
        return read_npy(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a .npy/.csv/.txt file")
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text table (.csv/.txt) nor a .npy/.npz file") from None
    except OSError as e:
        raise OSError(f"cannot read {path}: {e}") from e
    if not lines:
        raise ValueError(f"{path} is empty")
    first = lines[0]
    try:
        float(first.split(",")[0])
    except ValueError:
        lines = lines[1:]  # header
    if not lines:
        raise ValueError(f"{path} holds no rows of numbers (its only line: {first[:60]!r})")
    try:
        rows = [[float(v) for v in ln.split(",")] for ln in lines]
    except ValueError as e:
        raise ValueError(f"{path}: non-numeric value ({e})") from None
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"{path}: rows have different numbers of columns ({sorted(widths)})")
    a = np.array(rows)
    return a[:, 0] if a.shape[1] == 1 else a


def load_scores(scores, labels=None):
    """-> (y_true (N,), scores (N,) or (N, C))."""
    from .._io import read_npz

    path = Path(scores)
    if not path.exists():
        raise FileNotFoundError(f"scores file not found: {path}")
    if path.suffix == ".npz":
        d = read_npz(path)
        ykey = next((k for k in ("y_true", "labels", "y") if k in d), None)
        skey = next((k for k in ("proba", "y_score", "scores") if k in d), None)
        if skey is None or (ykey is None and labels is None):
            raise ValueError(f"{path} must hold y_true and proba (or y_score); it holds {sorted(d)}")
        s = d[skey]
        y = d[ykey] if labels is None else _read_table(Path(labels))
    else:
        t = _read_table(path)
        if labels is not None:
            s, y = t, _read_table(Path(labels))
        elif path.suffix == ".csv" and t.ndim == 2 and t.shape[1] >= 2:
            y, s = t[:, 0], t[:, 1:]
            if s.shape[1] == 1:
                s = s[:, 0]
        else:
            raise ValueError(f"{path}: give the labels with --labels (or a .csv whose first column is the label)")
    ylabel = f"{path}: labels" if labels is None else f"{labels}: labels"
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{ylabel} must be a 1-D array, got shape {y.shape}")
    if y.dtype.kind not in "iubf":
        raise ValueError(f"{ylabel} must be numbers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{ylabel} must be integers")
        y = y.astype(np.int64)
    s = np.asarray(s)
    if s.dtype.kind not in "iuf":
        raise ValueError(f"{path}: scores must be numbers, got dtype {s.dtype}")
    if s.ndim not in (1, 2):
        raise ValueError(f"{path}: scores must be (N,) or (N, C), got shape {s.shape}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: scores and labels must have the same length, got {s.shape} and {y.shape}")
    return y, s


def run(args) -> int:
    from .._io import atomic_write_json
    from ..logreg import auc, roc_curve, roc_curve_ovr
    from ..plots import plot_roc

    y, s = load_scores(args.scores, args.labels)
    if s.ndim == 2:
        classes = args.classes if args.classes else list(range(s.shape[1]))
        for c in classes:
            if not 0 <= c < s.shape[1]:
                raise ValueError(f"--class {c} out of range: the scores have {s.shape[1]} columns")
        curves_all = roc_curve_ovr(y.astype(np.int64), s)
        curves = {f"class {c}": curves_all[c] for c in classes}
    else:
        curves = {f"positive = {args.pos_label}": roc_curve(y, s, pos_label=args.pos_label)}
    aucs = {k: auc(f, t) for k, (f, t, _) in curves.items()}
    out = Path(args.out)
    if out.suffix.lower() in (".png", ".pdf", ".svg"):
        out.parent.mkdir(parents=True, exist_ok=True)
        fig_path = out
    else:
        out.mkdir(parents=True, exist_ok=True)
        fig_path = out / "roc.png"
        atomic_write_json(out / "roc.json", {"classes": {
            k.split()[-1]: {"fpr": f.tolist(), "tpr": t.tolist(), "auc": aucs[k]} for k, (f, t, _) in curves.items()}},
            indent=None)
    plot_roc(curves, title=args.title).savefig(fig_path)
    for k, a in aucs.items():
        print(f"AUC {k}: {a:.5f}")
    print(f"wrote {fig_path}")
    return 0
