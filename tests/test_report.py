"""The HTML report of train, compare and logreg run directories built here from real runs (a NumPy
softmax regression on real MNIST, see test_plots.build_run_dir): self-contained (figures embedded
byte for byte, nothing loaded from the network), the classification report equal to
scikit-learn's, and the page rendered by a real headless Chromium into a non-blank screenshot."""
from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from fastmnist.cli import main
from fastmnist.report import build_report
from test_plots import build_run_dir, read_png


@pytest.fixture(scope="module")
def train_run(mnist, tmp_path_factory):
    d, hist, yt, yp, proba = build_run_dir(tmp_path_factory.mktemp("rep") / "softmax", mnist)
    return d, yt, yp


@pytest.fixture(scope="module")
def compare_run(mnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    accs = {}
    for name, extra in (("softmax", True), ("linear", False)):
        d, _, yt, yp, _ = build_run_dir(root / name, mnist, with_feature_maps=extra, with_images=extra,
                                        model=name)
        accs[name] = float((yt == yp).mean())
    (root / "summary.json").write_text(json.dumps({
        "command": "compare", "model": "softmax,linear", "settings": {"epochs": 6, "seed": 0},
        "results": {"models": {n: {"test_accuracy": a, "train_seconds": 0.06} for n, a in accs.items()}},
        "fastmnist_version": "test", "threads": 1}))
    return root, accs


@pytest.fixture(scope="module")
def logreg_run(mnist, tmp_path_factory):
    from sklearn.metrics import auc, roc_curve

    src, _, yt, yp, proba = build_run_dir(tmp_path_factory.mktemp("lr") / "tmp", mnist,
                                          with_images=False, with_feature_maps=False, command="logreg",
                                          model="logreg")
    d = src.parent / "logreg"
    src.rename(d)
    (d / "history.json").unlink()  # a feature-based run need not have a history
    roc = {"classes": {}}
    for c in range(10):
        fpr, tpr, _ = roc_curve(yt == c, proba[:, c])
        roc["classes"][str(c)] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": float(auc(fpr, tpr))}
    (d / "roc.json").write_text(json.dumps(roc))
    return d, yt, yp


def check_self_contained(page: str):
    # no scripts, no external style sheets or imports, no references that could load anything
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    assert not re.search(r"https?://", page), "the page names a network address"
    for attr, val in re.findall(r'\b(src|href)\s*=\s*"([^"]*)"', page):
        if attr == "src":
            assert val.startswith("data:image/png;base64,"), val[:60]
        else:
            assert val.startswith("#"), val


def embedded_images(page: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in
            re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)}


def test_train_report(train_run, tmp_path):
    from sklearn.metrics import classification_report

    d, yt, yp = train_run
    out = build_report(d)
    assert out == d / "report.html"
    page = out.read_text()
    check_self_contained(page)
    # figures were drawn first (RUN_DIR/figures was empty) and every one is embedded byte for byte
    pngs = sorted((d / "figures").glob("*.png"))
    assert {p.stem for p in pngs} >= {"training_curves", "confusion_matrix", "misclassified", "feature_maps"}
    imgs = embedded_images(page)
    assert set(imgs) == {p.stem for p in pngs}
    for p in pngs:
        assert imgs[p.stem] == p.read_bytes()
    # the classification report is scikit-learn's, character for character
    want = classification_report(yt, yp, digits=4, zero_division=0)
    assert html.escape(want) in page
    acc = (yt == yp).mean()
    assert f"{acc * 100:.2f}%" in page
    assert "<td>lr</td><td>0.5</td>" in page
    # the Markdown summary beside it, with links that resolve
    md = (d / "report.md").read_text()
    assert want in md and f"{acc * 100:.2f}%" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == len(pngs) and all((d / link).is_file() for link in links)


def test_compare_report(compare_run, tmp_path):
    from sklearn.metrics import classification_report

    root, accs = compare_run
    out = tmp_path / "elsewhere" / "cmp.html"
    assert main(["report", str(root), "--out", str(out)]) == 0
    page = out.read_text()
    check_self_contained(page)
    imgs = embedded_images(page)
    assert {"training_curves_comparison", "model_comparison", "softmax_confusion_matrix",
            "linear_confusion_matrix", "softmax_feature_maps"} <= set(imgs)
    assert "linear_feature_maps" not in imgs and "linear_misclassified" not in imgs
    assert "softmax_misclassified" in imgs
    for name, a in accs.items():
        assert f"<td>{name}</td><td>{a * 100:.2f}%</td>" in page
        z = np.load(root / name / "predictions.npz")
        assert html.escape(classification_report(z["y_true"], z["y_pred"], digits=4, zero_division=0)) in page
    md = out.with_suffix(".md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all((out.parent / link).resolve().is_file() for link in links)


def test_logreg_report(logreg_run):
    d, yt, yp = logreg_run
    out = build_report(d)
    page = out.read_text()
    check_self_contained(page)
    imgs = embedded_images(page)
    assert "confusion_matrix" in imgs and "misclassified" not in imgs and "training_curves" not in imgs
    assert "fastmnist logreg: logreg" in page
    assert "Training history" not in page


def test_report_bad_input(tmp_path, train_run, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a run directory"):
        build_report(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"\.html"):
        build_report(train_run[0], tmp_path / "x.pdf")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{oops")
    assert main(["report", str(bad)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real browser
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    msg = "no headless Chromium found (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def test_report_renders_in_headless_chromium(train_run, tmp_path):
    exe = _chromium()
    d = train_run[0]
    out = d / "report.html"
    if not out.exists():
        build_report(d)
    shot = tmp_path / "shot.png"
    w, h = 1280, 3600
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-extensions", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
           f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={w},{h}",
           f"--screenshot={shot}", out.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.is_file(), f"chromium wrote no screenshot (rc {r.returncode}): {r.stderr[-2000:]}"
    px = read_png(shot)
    assert px.shape[:2] == (h, w)
    assert px.std() > 20, "the screenshot is blank"
    # the embedded figures really render: the training curves' matplotlib blue (#1f77b4) is drawn,
    # a colour that the page's own CSS never uses
    blue = (np.abs(px - np.array([31, 119, 180])).max(axis=2) < 12).sum()
    assert blue > 500, f"only {blue} pixels of the figures' blue: are the images broken?"
