"""One self-contained HTML report (and a Markdown summary beside it) for a run directory of
``fastmnist train``, ``compare`` or ``logreg``: settings, results, per-epoch history, the
classification report of the saved predictions and every figure of ``RUN_DIR/figures``.

The HTML page embeds its figures as base64 ``data:`` URIs and its CSS inline; it has no scripts and
loads nothing from anywhere, so it can be mailed or archived as one file.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["build_report", "run_kind"]

_FIGURE_ORDER = ["training_curves_comparison", "model_comparison", "training_curves", "confusion_matrix",
                 "roc", "logreg_accuracy", "misclassified", "samples", "label_distribution", "feature_maps",
                 "augmentation", "conv_demo"]
_CAPTIONS = {
    "training_curves_comparison": "Training curves of every model, side by side (solid: train, dashed: validation).",
    "model_comparison": "Test accuracy and training time of each model.",
    "training_curves": "Loss and accuracy per epoch (solid: train, dashed: validation).",
    "confusion_matrix": "Confusion matrix of the test predictions (counts; colour: fraction of the true class) "
                        "and each class's recall.",
    "roc": "One-vs-rest ROC curves per class.",
    "misclassified": "Misclassified test images, the most confident mistakes first.",
    "samples": "The first test images with their labels.",
    "label_distribution": "How many images of each digit the sets hold.",
    "feature_maps": "The output of every layer of the CNN for one test image.",
}

_CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #dde1e8; --accent: #2f5d9e; --bg: #ffffff; --soft: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--fg);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 60px; background: var(--bg);
       min-height: 100vh; box-shadow: 0 0 24px rgba(0,0,0,.06); }
header { border-bottom: 3px solid var(--accent); margin-bottom: 18px; padding-bottom: 10px; }
h1 { margin: 0 0 4px; font-size: 28px; }
h2 { margin: 34px 0 10px; font-size: 21px; color: var(--accent); border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { margin: 22px 0 8px; font-size: 17px; }
.meta { color: var(--muted); font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0 6px; }
.card { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px;
        min-width: 150px; }
.card .v { font-size: 24px; font-weight: 700; color: var(--accent); }
.card .k { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px; text-align: right; }
th { background: var(--soft); font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
table.kv td:first-child { color: var(--muted); }
table.kv td { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
tr.avg td { font-weight: 600; background: #fbfcfd; }
pre { background: #f3f5f8; border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px;
      overflow-x: auto; font: 13px/1.4 ui-monospace, Menlo, Consolas, monospace; }
figure { margin: 18px 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
nav { font-size: 14px; margin: 6px 0; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
.cols { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
p.interrupted { background: #fff3f0; border: 1px solid #e7b4a8; border-radius: 6px; padding: 10px 14px; }
"""


# ----------------------------------------------------------------------------- reading the run
def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _load_predictions(d: Path):
    p = d / "predictions.npz"
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            if "y_true" not in z.files or "y_pred" not in z.files:
                raise ValueError(f"{p} must hold y_true and y_pred (has {sorted(z.files)})")
            return np.asarray(z["y_true"]), np.asarray(z["y_pred"])
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {p}: {e}") from None


def _model_dirs(run_dir: Path, summary: Mapping) -> dict[str, Path]:
    names = list(((summary.get("results") or {}).get("models") or {}))
    subs = [d for d in sorted(run_dir.iterdir()) if d.is_dir() and d.name != "figures"
            and ((d / "summary.json").is_file() or (d / "history.json").is_file())]
    out = {n: run_dir / n for n in names if (run_dir / n).is_dir()}
    for d in subs:
        out.setdefault(d.name, d)
    return out


def run_kind(run_dir) -> str:
    """'train', 'compare', 'logreg' (from summary.json; a directory of model runs is 'compare')."""
    run_dir = Path(run_dir)
    s = _read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    if s.get("command"):
        return str(s["command"])
    if _model_dirs(run_dir, s) and not (run_dir / "history.json").is_file():
        return "compare"
    return "train"


# ----------------------------------------------------------------------------- formatting
def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 1e5 or (v != 0 and abs(v) < 1e-3):
            return f"{v:.4g}"
        return f"{v:.4f}".rstrip("0").rstrip(".") if not float(v).is_integer() else f"{v:.1f}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return json.dumps(v)
    return str(v)


def _pct(v) -> str:
    try:
        return f"{float(v) * 100:.2f}%"
    except (TypeError, ValueError):
        return _fmt(v)


def _h(s) -> str:
    return html.escape(str(s), quote=True)


def _flat_settings(settings: Mapping) -> dict:
    """The settings as one level of ``key: value`` rows: the effective recipe first (``recipe.lr``,
    ...), nested mappings spelled out as ``outer.inner``; the named recipe it comes from is left out
    (the ``overrides`` row says what differs from it)."""
    out = {}

    def walk(prefix, v):
        if isinstance(v, Mapping) and v:
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            out[prefix] = v

    order = ["recipe_name", "recipe_source", "recipe", "overrides"]
    for k in order + [k for k in settings if k not in order]:
        if k in settings and k != "named_recipe":
            v = settings[k]
            if k == "recipe" and isinstance(v, Mapping):  # name and source have their own rows
                v = {a: b for a, b in v.items() if a not in ("name", "source", "options") or
                     (a == "options" and b)}
            if k == "overrides" and not v:
                out[k] = "none"
            else:
                walk(k, v)
    return out


def _kv_table_html(d: Mapping) -> str:
    rows = "".join(f"<tr><td>{_h(k)}</td><td>{_h(_fmt(v))}</td></tr>" for k, v in d.items())
    return f'<table class="kv">{rows}</table>' if rows else "<p>(none)</p>"


def _kv_table_md(d: Mapping) -> str:
    if not d:
        return "(none)\n"
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v).replace('|', '/')} |" for k, v in d.items()]
    return "\n".join(lines) + "\n"


def _results_rows(summary: Mapping, models: Mapping):
    """(header, rows) of the results table: one row per model for compare, key/value otherwise."""
    res = summary.get("results") or {}
    per_model = res.get("models")
    if isinstance(per_model, Mapping) and per_model:
        keys = []
        for r in per_model.values():
            for k in r:
                if k not in keys:
                    keys.append(k)
        header = ["model"] + keys
        rows = [[name] + [(_pct(r.get(k)) if "acc" in k else _fmt(r.get(k, ""))) for k in keys]
                for name, r in per_model.items()]
        return header, rows
    header = ["result", "value"]
    rows = [[k, _pct(v) if ("acc" in k and isinstance(v, (int, float)) and v <= 1) else _fmt(v)]
            for k, v in res.items() if not isinstance(v, Mapping)]
    return header, rows


def _table_html(header, rows, cls="") -> str:
    th = "".join(f"<th>{_h(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _table_md(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _history_rows(h: Mapping):
    cols = [c for c in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                        "seconds", "partial") if h.get(c)]
    if "epoch" not in cols:
        return None
    n = len(h["epoch"])
    rows = []
    for i in range(n):
        row = []
        for c in cols:
            v = h[c][i] if i < len(h[c]) else None
            if v is None:
                row.append("-")
            elif c == "partial":
                row.append("partial (interrupted)" if v else "")
            elif c == "epoch":
                row.append(str(v))
            elif c.endswith("acc"):
                row.append(_pct(v))
            elif c == "seconds":
                row.append(f"{float(v):.2f}")
            else:
                row.append(f"{float(v):.4f}")
        rows.append(row)
    return cols, rows


def _class_report(y_true, y_pred):
    from .metrics import classification_report

    labels = np.union1d(y_true, y_pred)
    text = classification_report(y_true, y_pred, labels=labels, digits=4, zero_division=0)
    d = classification_report(y_true, y_pred, labels=labels, digits=4, zero_division=0, output_dict=True)
    return text, d


def _class_report_html(d: Mapping) -> str:
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>f1-score</th><th>support</th></tr>"
    body = []
    for k, v in d.items():
        if k == "accuracy":
            body.append(f'<tr class="avg"><td>accuracy</td><td></td><td></td><td>{v:.4f}</td><td></td></tr>')
            continue
        cls = ' class="avg"' if k.endswith("avg") else ""
        body.append(f"<tr{cls}><td>{_h(k)}</td><td>{v['precision']:.4f}</td><td>{v['recall']:.4f}</td>"
                    f"<td>{v['f1-score']:.4f}</td><td>{v['support']:.0f}</td></tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _figure_sort_key(p: Path, model_names):
    stem = p.stem
    model = ""
    for m in sorted(model_names, key=len, reverse=True):
        if stem.startswith(m + "_"):
            model, stem = m, stem[len(m) + 1:]
            break
    rank = _FIGURE_ORDER.index(stem) if stem in _FIGURE_ORDER else len(_FIGURE_ORDER)
    return (model != "", model, rank, stem)


def _caption(p: Path, model_names) -> str:
    stem = p.stem
    for m in sorted(model_names, key=len, reverse=True):
        if stem.startswith(m + "_"):
            rest = stem[len(m) + 1:]
            return f"{m}: " + _CAPTIONS.get(rest, rest.replace("_", " ") + ".")
    return _CAPTIONS.get(stem, stem.replace("_", " ") + ".")


# ----------------------------------------------------------------------------- the report
def build_report(run_dir, out=None, *, figures: bool = True, title: str | None = None) -> Path:
    """Write ``out`` (default ``RUN_DIR/report.html``), one self-contained HTML page, and a
    Markdown summary beside it (same name, ``.md``). When ``figures`` and ``RUN_DIR/figures``
    holds no PNG yet, ``fastmnist.plots.write_run_figures`` draws them first. Returns the HTML path.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    summary = _read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    if not isinstance(summary, Mapping):
        raise ValueError(f"{run_dir / 'summary.json'} must hold a JSON object")
    kind = run_kind(run_dir)
    models = _model_dirs(run_dir, summary) if kind == "compare" else {}
    has_any = summary or models or any((run_dir / f).is_file() for f in ("history.json", "predictions.npz"))
    if not has_any:
        raise ValueError(f"{run_dir} is not a run directory (no summary.json, history.json or predictions.npz)")
    out = Path(out) if out is not None else run_dir / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out must end in .html, got {out}")
    md_path = out.with_suffix(".md")

    fig_dir = run_dir / "figures"
    if figures and not any(fig_dir.glob("*.png")):
        from .plots import write_run_figures

        write_run_figures(run_dir)
    pngs = sorted(fig_dir.glob("*.png"), key=lambda p: _figure_sort_key(p, list(models))) if fig_dir.is_dir() else []

    model = summary.get("model") or run_dir.name
    title = title or f"fastmnist {kind}: {model}"
    settings = summary.get("settings") or {}
    results = summary.get("results") or {}
    meta = [f"run directory <code>{_h(run_dir.name)}</code>"]
    if summary.get("fastmnist_version"):
        meta.append(f"fastmnist {_h(summary['fastmnist_version'])}")
    if summary.get("threads"):
        meta.append(f"{_h(summary['threads'])} threads")
    meta.append(f"report written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}")

    H: list[str] = []   # html body parts
    M: list[str] = []   # markdown parts
    M.append(f"# {title}\n")
    M.append(" · ".join(m.replace("<code>", "`").replace("</code>", "`") for m in meta) + "\n")

    # headline cards
    cards = []
    if kind == "compare" and isinstance(results.get("models"), Mapping):
        per = results["models"]
        best = max(per, key=lambda k: float(per[k].get("test_accuracy", -1) or -1), default=None)
        if best is not None:
            cards.append(("best model", best))
            cards.append(("best test accuracy", _pct(per[best].get("test_accuracy"))))
        cards.append(("models", str(len(per))))
    else:
        if "test_accuracy" in results:
            cards.append(("test accuracy", _pct(results["test_accuracy"])))
        if "train_seconds" in results:
            cards.append(("training time", f"{float(results['train_seconds']):.1f} s"))
        if settings.get("epochs") is not None:
            cards.append(("epochs", _fmt(settings["epochs"])))
        if "train_size" in results:
            sizes = [f"{int(results['train_size']):,} train"]
            if "val_size" in results:
                sizes.append(f"{int(results['val_size']):,} val")
            if "test_size" in results:
                sizes.append(f"{int(results['test_size']):,} test")
            cards.append(("images", " / ".join(sizes)))
    sections = ["results", "settings"]

    # an interrupted run says so first
    if summary.get("status") == "interrupted" or results.get("interrupted"):
        note = ("This run was interrupted (Ctrl-C): the model, the metrics and the figures describe the "
                "training done until then; the last epoch of the history may be partial.")
        H.append(f'<p class="interrupted"><strong>INTERRUPTED.</strong> {_h(note)}</p>')
        M.append(f"**INTERRUPTED.** {note}\n")
        cards.insert(0, ("status", "interrupted"))

    # results
    H.append('<section id="results"><h2>Results</h2>')
    if cards:
        H.append('<div class="cards">' + "".join(
            f'<div class="card"><div class="v">{_h(v)}</div><div class="k">{_h(k)}</div></div>' for k, v in cards)
            + "</div>")
    header, rows = _results_rows(summary, models)
    M.append("## Results\n")
    if rows:
        H.append(_table_html(header, rows))
        M.append(_table_md(header, rows))
    else:
        H.append("<p>No results recorded in summary.json.</p>")
        M.append("No results recorded in summary.json.\n")
    H.append("</section>")

    # settings
    flat = _flat_settings(settings)
    H.append('<section id="settings"><h2>Settings</h2>' + _kv_table_html(flat) + "</section>")
    M.append("## Settings\n")
    M.append(_kv_table_md(flat))

    # the images each set held (label_counts.json: after subsampling and splitting)
    runs = list(models.items()) if kind == "compare" else [("", run_dir)]
    data_parts, data_md = [], []
    for name, d in runs:
        cp = d / "label_counts.json"
        if not cp.is_file():
            continue
        counts = _read_json(cp)
        if not isinstance(counts, Mapping):
            raise ValueError(f"{cp} must hold a JSON object")
        header = ["set"] + [str(k) for k in range(10)] + ["images"]
        rows = [[k] + [f"{int(c):,}" for c in v] + [f"{int(sum(v)):,}"] for k, v in counts.items() if sum(v)]
        sub = f"<h3>{_h(name)}</h3>" if name else ""
        data_parts.append(sub + _table_html(header, rows))
        data_md.append((f"### {name}\n" if name else "") + _table_md(header, rows))
    if data_parts:
        sections.append("data")
        H.append('<section id="data"><h2>Data: images per digit</h2>' + "".join(data_parts) + "</section>")
        M.append("## Data: images per digit\n")
        M.extend(data_md)

    # per-run (or per-model) history and classification report
    hist_parts, hist_md, cr_parts, cr_md = [], [], [], []
    for name, d in runs:
        sub = f"<h3>{_h(name)}</h3>" if name else ""
        hp = d / "history.json"
        if hp.is_file():
            hr = _history_rows(_read_json(hp))
            if hr:
                hist_parts.append(sub + _table_html(*hr))
                hist_md.append((f"### {name}\n" if name else "") + _table_md(*hr))
        preds = _load_predictions(d)
        if preds is not None:
            text, dct = _class_report(*preds)
            acc = float(np.mean(preds[0] == preds[1])) if preds[0].size else float("nan")
            cr_parts.append(sub + f"<p>{preds[0].size:,} test images, accuracy {_pct(acc)}.</p>"
                            + '<div class="cols">' + _class_report_html(dct)
                            + f'<pre class="classification-report">{_h(text)}</pre></div>')
            cr_md.append((f"### {name}\n" if name else "") + "```\n" + text + "```\n")
    if cr_parts:
        sections.append("classification-report")
        H.append('<section id="classification-report"><h2>Classification report</h2>' + "".join(cr_parts)
                 + "</section>")
        M.append("## Classification report\n")
        M.extend(cr_md)
    if hist_parts:
        sections.append("history")
        H.append('<section id="history"><h2>Training history</h2>' + "".join(hist_parts) + "</section>")
        M.append("## Training history\n")
        M.extend(hist_md)

    # figures
    if pngs:
        sections.append("figures")
        H.append('<section id="figures"><h2>Figures</h2>')
        M.append("## Figures\n")
        current = None
        for p in pngs:
            key = _figure_sort_key(p, list(models))
            if key[0] and key[1] != current:
                current = key[1]
                H.append(f"<h3>{_h(current)}</h3>")
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            cap = _caption(p, list(models))
            H.append(f'<figure id="fig-{_h(p.stem)}"><img alt="{_h(p.stem)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{_h(cap)}</figcaption></figure>')
            rel = os.path.relpath(p.resolve(), md_path.resolve().parent).replace(os.sep, "/")
            M.append(f"![{p.stem}]({rel})\n\n*{cap}*\n")
        H.append("</section>")

    nav = "<nav>" + "".join(f'<a href="#{s}">{s.replace("-", " ")}</a>' for s in sections) + "</nav>"
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_h(title)}</title><style>{_CSS}</style></head><body><main>"
            f"<header><h1>{_h(title)}</h1><div class=\"meta\">{' · '.join(meta)}</div>{nav}</header>"
            + "".join(H)
            + "<footer>Generated by <code>fastmnist report</code>. Self-contained: figures are embedded, "
              "nothing is loaded from the network.</footer></main></body></html>\n")
    from ._io import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    atomic_write_text(md_path, "\n".join(M))
    return out
