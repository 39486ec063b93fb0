"""Figures drawn from real outputs: a small NumPy softmax regression trained here on real MNIST (its
history, predictions and probabilities) and the feature maps of a real PyTorch CNN. Each figure is
saved and checked: the PNG exists with the expected pixel size, is not blank, and the data drawn
equal the inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from fastmnist import plots  # noqa: E402

N_TRAIN, N_TEST = 3000, 1000


# ----------------------------------------------------------------------------- a real run
def train_softmax(x_train, y_train, x_test, y_test, epochs=6, lr=0.5, seed=0):
    """Multinomial logistic regression by full-batch gradient descent in NumPy; returns the history
    (as in history.json) and (y_pred, proba) on the test set."""
    rng = np.random.default_rng(seed)
    xtr = x_train.reshape(len(x_train), -1).astype(np.float64) / 255.0
    xte = x_test.reshape(len(x_test), -1).astype(np.float64) / 255.0
    W = rng.normal(0, 0.01, (784, 10))
    b = np.zeros(10)

    def forward(x):
        z = x @ W + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def loss_acc(x, y):
        p = forward(x)
        return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()), float((p.argmax(1) == y).mean())

    hist = {"epoch": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "seconds": []}
    onehot = np.eye(10)[y_train]
    for ep in range(1, epochs + 1):
        for _ in range(5):
            p = forward(xtr)
            g = (p - onehot) / len(xtr)
            W -= lr * xtr.T @ g
            b -= lr * g.sum(axis=0)
        tl, ta = loss_acc(xtr, y_train)
        vl, va = loss_acc(xte, y_test)
        for k, v in zip(hist, (ep, tl, ta, vl, va, 0.01 * ep)):
            hist[k].append(v)
    proba = forward(xte).astype(np.float32)
    return hist, proba.argmax(1).astype(np.int64), proba


def torch_feature_maps(image):
    """Layer outputs of a small (seeded, untrained) PyTorch CNN for one image, in layer order."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layers = [("conv1", torch.nn.Conv2d(1, 8, 5)), ("relu1", torch.nn.ReLU()), ("pool1", torch.nn.MaxPool2d(2)),
              ("conv2", torch.nn.Conv2d(8, 16, 5)), ("relu2", torch.nn.ReLU()), ("pool2", torch.nn.MaxPool2d(2))]
    x = torch.from_numpy(image[None, None].astype(np.float32))
    out = []
    with torch.no_grad():
        for i, (name, layer) in enumerate(layers):
            x = layer(x)
            out.append((f"{i:02d}_{name}", x[0].numpy().copy()))
    return out


def build_run_dir(path, mnist, *, with_images=True, with_feature_maps=True, command="train",
                  model="softmax", data_dir=None):
    """Write a train run directory following the run-directory contract from a real run."""
    x_train, y_train, x_test, y_test = mnist
    xtr, ytr = x_train[:N_TRAIN], y_train[:N_TRAIN].astype(np.int64)
    xte, yte = x_test[:N_TEST], y_test[:N_TEST].astype(np.int64)
    hist, y_pred, proba = train_softmax(xtr, ytr, xte, yte)
    path.mkdir(parents=True, exist_ok=True)
    acc = float((y_pred == yte).mean())
    settings = {"model": model, "epochs": len(hist["epoch"]), "lr": 0.5, "batch_size": N_TRAIN,
                "seed": 0, "train_size": N_TRAIN, "test_size": N_TEST}
    if data_dir is not None:
        settings["data"] = str(data_dir)
    summary = {"command": command, "model": model, "settings": settings,
               "results": {"test_accuracy": acc, "train_seconds": 0.06, "final_train_loss": hist["train_loss"][-1]},
               "fastmnist_version": "test", "threads": 1}
    (path / "summary.json").write_text(json.dumps(summary, indent=1))
    (path / "history.json").write_text(json.dumps(hist))
    arrays = {"y_true": yte, "y_pred": y_pred, "proba": proba}
    if with_images:
        arrays["images"] = xte
    np.savez(path / "predictions.npz", **arrays)
    if with_feature_maps:
        img = xte[0].astype(np.float32) / 255.0
        fm = {"image": img}
        fm.update(dict(torch_feature_maps(img)))
        np.savez(path / "feature_maps.npz", **fm)
    return path, hist, yte, y_pred, proba


@pytest.fixture(scope="module")
def run(mnist, tmp_path_factory):
    path, hist, yt, yp, proba = build_run_dir(tmp_path_factory.mktemp("run") / "softmax", mnist)
    return {"dir": path, "hist": hist, "y_true": yt, "y_pred": yp, "proba": proba,
            "images": mnist[2][:N_TEST]}


# ----------------------------------------------------------------------------- helpers
def read_png(path):
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def check_png(fig, path, dpi=80):
    w_in, h_in = fig.get_size_inches()
    out = plots.save_figure(fig, path, dpi=dpi)
    assert out == path and path.is_file()
    px = read_png(path)
    assert px.shape[:2] == (round(h_in * dpi), round(w_in * dpi))
    assert px.std() > 10, "the figure is (nearly) blank"
    # not a single colour anywhere near everywhere: a real drawing covers a fair share of pixels
    assert (np.abs(px - 255).sum(axis=2) > 30).mean() > 0.01
    return px


# ----------------------------------------------------------------------------- figures
def test_training_curves_single(run, tmp_path):
    h = run["hist"]
    fig = plots.plot_training_curves(h)
    ax_loss, ax_acc = fig.axes[:2]
    lines = {ln.get_label(): ln for ln in ax_loss.get_lines()}
    np.testing.assert_array_equal(lines["train"].get_xdata(), h["epoch"])
    np.testing.assert_allclose(lines["train"].get_ydata(), h["train_loss"])
    np.testing.assert_allclose(lines["validation"].get_ydata(), h["val_loss"])
    lines = {ln.get_label(): ln for ln in ax_acc.get_lines()}
    np.testing.assert_allclose(lines["train"].get_ydata(), h["train_acc"])
    np.testing.assert_allclose(lines["validation"].get_ydata(), h["val_acc"])
    # the softmax model really learned: loss falls, accuracy rises
    assert h["train_loss"][-1] < h["train_loss"][0] and h["val_acc"][-1] > 0.8
    check_png(fig, tmp_path / "curves.png")


def test_training_curves_comparison_and_missing_validation(run, tmp_path):
    h = run["hist"]
    h2 = dict(h, val_loss=[None] * len(h["epoch"]), val_acc=[None] * len(h["epoch"]),
              train_loss=[v * 1.5 for v in h["train_loss"]])
    fig = plots.plot_training_curves({"softmax": h, "other": h2})
    ax_loss, ax_acc = fig.axes[:2]
    labels = [ln.get_label() for ln in ax_loss.get_lines()]
    assert labels == ["softmax train", "softmax validation", "other train"]
    np.testing.assert_allclose(ax_loss.get_lines()[2].get_ydata(), h2["train_loss"])
    # the two models get different colours
    assert ax_loss.get_lines()[0].get_color() != ax_loss.get_lines()[2].get_color()
    # one legend for the figure, outside both axes: it covers no curve
    assert len(fig.legends) == 1 and ax_loss.get_legend() is None and ax_acc.get_legend() is None
    check_png(fig, tmp_path / "cmp.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    r = FigureCanvasAgg(fig).get_renderer()
    fig.draw(r)
    leg = fig.legends[0].get_window_extent(r)
    for ax in (ax_loss, ax_acc):
        assert not leg.overlaps(ax.get_window_extent(r))
        assert not leg.overlaps(ax.xaxis.label.get_window_extent(r)), "the legend covers the x label"
        assert not leg.overlaps(ax.xaxis.get_tightbbox(r)), "the legend covers the tick labels"


def test_training_curves_one_epoch_and_test_columns(tmp_path):
    # a run evaluated on the test set each epoch (history "test_*" columns) says "test", and a
    # one-epoch run writes its values beside its single points
    h = {"epoch": [1], "train_loss": [0.5], "train_acc": [0.9], "test_loss": [0.4], "test_acc": [0.95]}
    fig = plots.plot_training_curves(h)
    ax_loss, ax_acc = fig.axes[:2]
    assert [ln.get_label() for ln in ax_acc.get_lines()] == ["train", "test"]
    assert all(ln.get_marker() not in (None, "None", "") for ln in ax_acc.get_lines())
    assert sorted(t.get_text() for t in ax_acc.texts) == ["90.00%", "95.00%"]
    assert sorted(t.get_text() for t in ax_loss.texts) == ["0.4000", "0.5000"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    r = FigureCanvasAgg(fig).get_renderer()
    fig.draw(r)
    for ax in (ax_loss, ax_acc):  # the values are written inside the axes, clear of its frame
        box = ax.get_window_extent(r)
        for t in ax.texts:
            b = t.get_window_extent(r)
            assert box.y0 < b.y0 and b.y1 < box.y1, t.get_text()
    check_png(fig, tmp_path / "one.png")


def test_confusion_matrix_heatmap(run, tmp_path):
    from sklearn.metrics import confusion_matrix, recall_score

    yt, yp = run["y_true"], run["y_pred"]
    fig = plots.plot_confusion_matrix(yt, yp, labels=np.arange(10))
    ax, ax_r = fig.axes[0], fig.axes[1]
    want = confusion_matrix(yt, yp, labels=np.arange(10))
    texts = [t for t in ax.texts]
    assert len(texts) == 100
    got = np.zeros((10, 10), dtype=np.int64)
    for t in texts:
        x, y = t.get_position()
        got[int(round(y)), int(round(x))] = int(t.get_text())
    np.testing.assert_array_equal(got, want)
    assert got.sum() == N_TEST
    # the image holds the row-normalised fractions
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), want / want.sum(1, keepdims=True))
    # per-class recall bars
    widths = np.array([p.get_width() for p in ax_r.patches])
    np.testing.assert_allclose(widths, recall_score(yt, yp, average=None, labels=np.arange(10)))
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(10)]
    check_png(fig, tmp_path / "cm.png")


def test_label_distribution(mnist, tmp_path):
    y_train, y_test = mnist[1], mnist[3]
    fig = plots.plot_label_distribution(y_train, y_test)
    a_tr, a_te = fig.axes[:2]
    np.testing.assert_array_equal([p.get_height() for p in a_tr.patches], np.bincount(y_train, minlength=10))
    np.testing.assert_array_equal([p.get_height() for p in a_te.patches], np.bincount(y_test, minlength=10))
    assert sum(p.get_height() for p in a_tr.patches) == 60000
    check_png(fig, tmp_path / "labels.png")


def mosaic_of(ax):
    """The one tiled image of a grid figure (NaN where no image is)."""
    assert len(ax.images) == 1
    return np.ma.filled(np.ma.asarray(ax.images[0].get_array(), dtype=np.float64), np.nan)


def tiles_under_labels(ax, h=28, w=28):
    """For each label of a grid figure (a text centred above its image): the top-left pixel (row,
    column) in the mosaic of the image under it, found by walking down from the label to the first
    row of pixels that are not blank."""
    a = mosaic_of(ax)
    corners = []
    for t in ax.texts:
        x, y = t.get_position()
        c = round(x - (w - 1) / 2)
        r = max(0, int(np.ceil(y)))
        while np.isnan(a[r, c: c + w]).all():
            r += 1
        corners.append((r, c))
    return corners


def png_pixels_of_tile(png, ax, r, c, h=28, w=28):
    """The saved PNG's grey level at the centre of each pixel of the tile at (r, c) of the mosaic
    (the figure saved at its own dpi, so that ax.transData gives PNG pixel positions)."""
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    xy = ax.transData.transform(np.c_[(c + jj).ravel(), (r + ii).ravel()])
    rows = (png.shape[0] - xy[:, 1]).astype(int)
    cols = xy[:, 0].astype(int)
    return png[rows, cols].reshape(h, w, 3)


def check_grid_png(fig, ax, corners, images, path):
    """Save ``fig`` and check that the PNG shows ``images[k]`` (uint8 digits, drawn dark on white) at
    mosaic position ``corners[k]``."""
    check_png(fig, path, dpi=fig.dpi)
    png = read_png(path)
    for (r, c), img in zip(corners, images):
        px = png_pixels_of_tile(png, ax, r, c)
        np.testing.assert_array_equal(px[..., 0], px[..., 2])  # grey
        want = 255.0 - img.astype(np.float64)  # gray_r over 0..255
        assert np.abs(px[..., 0] - want).max() <= 3, np.abs(px[..., 0] - want).max()


def test_sample_grid(mnist, tmp_path):
    x, y = mnist[2], mnist[3]
    fig = plots.plot_samples(x, y, n=20, ncols=10)
    # one axes showing one tiled image: cheap to draw
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [f"label {y[i]}" for i in range(20)]
    corners = tiles_under_labels(ax)
    mosaic = mosaic_of(ax)
    for i, (r, c) in enumerate(corners):
        np.testing.assert_array_equal(mosaic[r: r + 28, c: c + 28], x[i])
    # 10 per row, left to right, then the next row
    assert len({r for r, _ in corners[:10]}) == 1 and corners[10][0] > corners[0][0]
    assert [c for _, c in corners[:10]] == sorted(c for _, c in corners[:10])
    check_grid_png(fig, ax, corners, x[:20], tmp_path / "samples.png")
    # a random choice with a seed: the chosen images in dataset order
    idx = np.sort(np.random.default_rng(5).choice(len(x), 7, replace=False))
    ax = plots.plot_samples(x, y, n=7, seed=5).axes[0]
    assert [t.get_text() for t in ax.texts] == [f"label {y[i]}" for i in idx]
    mosaic = mosaic_of(ax)
    for i, (r, c) in zip(idx, tiles_under_labels(ax)):
        np.testing.assert_array_equal(mosaic[r: r + 28, c: c + 28], x[i])


def test_misclassified_grid(run, tmp_path):
    yt, yp, proba, x = run["y_true"], run["y_pred"], run["proba"], run["images"]
    fig = plots.plot_misclassified(x, yt, yp, proba, n=12)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    wrong = np.flatnonzero(yt != yp)
    assert wrong.size > 12
    conf = proba[np.arange(len(yp)), yp]
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:12]
    assert [t.get_text() for t in ax.texts] == [f"true {yt[i]}  pred {yp[i]}\n{conf[i] * 100:.1f}% sure"
                                                for i in order]
    corners = tiles_under_labels(ax)
    mosaic = mosaic_of(ax)
    for (r, c), i in zip(corners, order):
        np.testing.assert_array_equal(mosaic[r: r + 28, c: c + 28], x[i])
        assert yt[i] != yp[i]
    check_grid_png(fig, ax, corners, x[order], tmp_path / "wrong.png")
    # no mistakes: an explicit message rather than an empty grid
    fig = plots.plot_misclassified(x[:5], yt[:5], yt[:5])
    assert "no misclassified" in fig.axes[0].texts[0].get_text()


def test_feature_maps(run, tmp_path):
    img = run["images"][0].astype(np.float32) / 255.0
    layers = torch_feature_maps(img)
    fig = plots.plot_feature_maps(img, layers, max_channels=8)
    imgs = [ax.images[0] for ax in fig.axes if ax.get_visible() and ax.images]
    np.testing.assert_allclose(np.asarray(imgs[0].get_array()), img)
    # one mosaic per layer (few axes: cheap to draw); tile j of a layer is channel j scaled to [0, 1]
    assert len(imgs) == 1 + len(layers)
    for im, (_, a) in zip(imgs[1:], layers):
        mosaic = np.asarray(im.get_array().filled(np.nan), dtype=np.float64)
        h, w = a.shape[1:]
        for j in range(min(8, a.shape[0])):
            r, q = divmod(j, 8)
            tile = mosaic[r * (h + 1): r * (h + 1) + h, q * (w + 1): q * (w + 1) + w]
            want = (a[j] - a[j].min()) / (a[j].max() - a[j].min()) if a[j].max() > a[j].min() else 0.5
            np.testing.assert_allclose(tile, np.broadcast_to(want, (h, w)), atol=1e-5)
    titles = [ax.get_title() for ax in fig.axes[1:]]
    assert titles[0].startswith("00_conv1  (8x24x24") and titles[-1].startswith("05_pool2  (16x4x4")
    check_png(fig, tmp_path / "fmaps.png")


def test_augmentation_preview(mnist, tmp_path):
    x = mnist[2][:4]

    def shift(b, rng):
        return np.roll(b, int(rng.integers(1, 3)), axis=2)

    def noise(b, rng):
        return b + rng.normal(0, 0.2, b.shape)  # not clipped: a tile is scaled by max(1, its maximum)

    def crop(b, rng):
        return b[:, 4:-4, 4:-4]

    fig = plots.plot_augmentation_preview(x, [("shift", shift), ("noise", noise), ("crop", crop)], seed=3)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["original", "shift", "noise", "crop"]
    mosaic = mosaic_of(ax)
    xf = x.astype(np.float32) / 255
    noisy = xf + np.random.default_rng(3).normal(0, 0.2, xf.shape)
    # row i: digit i; columns under their titles: the original, then each transform's output
    col_x = [round(t.get_position()[0] - 13.5) for t in ax.texts]
    tops = [r for r in range(mosaic.shape[0]) if not np.isnan(mosaic[r, col_x[0]:col_x[0] + 28]).all()
            and (r == 0 or np.isnan(mosaic[r - 1, col_x[0]:col_x[0] + 28]).all())]
    assert len(tops) == 4
    for i, r in enumerate(tops):
        def tile(j, r=r):
            return mosaic[r: r + 28, col_x[j]: col_x[j] + 28]

        np.testing.assert_allclose(tile(0), xf[i], rtol=1e-6)
        np.testing.assert_allclose(tile(1), np.roll(xf[i], int(np.random.default_rng(3).integers(1, 3)), axis=1),
                                   rtol=1e-6)
        np.testing.assert_allclose(tile(2), noisy[i] / max(1.0, noisy[i].max()), rtol=1e-5, atol=1e-6)
        # a smaller output is centred in its tile, blank around it
        np.testing.assert_allclose(tile(3)[4:-4, 4:-4], xf[i, 4:-4, 4:-4], rtol=1e-6)
        assert np.isnan(tile(3)[:4]).all() and np.isnan(tile(3)[:, -4:]).all()
    check_png(fig, tmp_path / "aug.png")
    with pytest.raises(TypeError, match="transform"):
        plots.plot_augmentation_preview(x, [("bad", 3)])


def test_conv_demo_matches_torch(mnist, tmp_path):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from fastmnist.commands.demo_conv import conv2d_by_hand, make_filter, max_pool_by_hand

    img = mnist[2][7].astype(np.float32) / 255.0
    for kind, padding, stride in (("edge", 0, 1), ("blur", 2, 1), ("random", 1, 2), ("edge", 3, 3)):
        k = make_filter(kind, seed=1)
        assert k.shape == (5, 5)
        got = conv2d_by_hand(img, k, padding=padding, stride=stride)
        want = F.conv2d(torch.from_numpy(img)[None, None], torch.from_numpy(k)[None, None],
                        padding=padding, stride=stride)[0, 0].numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
        pooled = max_pool_by_hand(got)
        np.testing.assert_array_equal(pooled, F.max_pool2d(torch.from_numpy(got)[None, None], 2)[0, 0].numpy())
    assert abs(make_filter("blur").sum() - 1) < 1e-6
    with pytest.raises(ValueError, match="filter"):
        make_filter("sharpen")
    with pytest.raises(ValueError, match="stride"):
        conv2d_by_hand(img, k, stride=0)
    k = make_filter("edge")
    conv = conv2d_by_hand(img, k, padding=2)
    pooled = max_pool_by_hand(conv)
    fig = plots.plot_conv_demo(img, k, conv, pooled, padding=2, stride=1, filter_name="edge")
    ims = [ax.images[0] for ax in fig.axes if ax.images]
    np.testing.assert_allclose(np.asarray(ims[0].get_array()), np.pad(img, 2))
    np.testing.assert_allclose(np.asarray(ims[2].get_array()), conv)
    np.testing.assert_allclose(np.asarray(ims[3].get_array()), pooled)
    check_png(fig, tmp_path / "conv.png")


def test_demo_conv_command(mnist_dir, tmp_path):
    from fastmnist.cli import main

    out = tmp_path / "demo.png"
    rc = main(["demo-conv", "--data", str(mnist_dir), "--index", "3", "--padding", "1", "--stride", "2",
               "--filter", "blur", "--out", str(out)])
    assert rc == 0 and read_png(out).std() > 10
    assert main(["demo-conv", "--data", str(mnist_dir), "--index", "99999", "--out", str(out)]) == 1


def test_write_run_figures(run, tmp_path, mnist_dir):
    import shutil

    d = tmp_path / "r"
    shutil.copytree(run["dir"], d)
    s = json.loads((d / "summary.json").read_text())
    s["settings"]["data"] = str(mnist_dir)
    (d / "summary.json").write_text(json.dumps(s))
    paths = plots.write_run_figures(d)
    names = sorted(p.name for p in paths)
    assert names == sorted(["training_curves.png", "confusion_matrix.png", "label_distribution.png",
                            "samples.png", "misclassified.png", "feature_maps.png"])
    for p in paths:
        assert p.parent == d / "figures" and read_png(p).std() > 10


def test_write_run_figures_tolerates_missing_files(run, tmp_path):
    d = tmp_path / "sparse"
    d.mkdir()
    # feature-based run: predictions without images, no history, no feature maps
    z = np.load(run["dir"] / "predictions.npz")
    np.savez(d / "predictions.npz", y_true=z["y_true"], y_pred=z["y_pred"], proba=z["proba"])
    (d / "summary.json").write_text(json.dumps({"command": "logreg", "model": "logreg", "settings": {},
                                                "results": {"test_accuracy": 0.9}}))
    names = sorted(p.name for p in plots.write_run_figures(d))
    assert names == ["confusion_matrix.png", "label_distribution.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert plots.write_run_figures(empty) == []
    with pytest.raises(ValueError, match="does not exist"):
        plots.write_run_figures(tmp_path / "nope")
    (empty / "history.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        plots.write_run_figures(empty)


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(cm=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="y_pred has 3 entries"):
        plots.plot_confusion_matrix([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W\)"):
        plots.plot_samples(np.zeros((28, 28)))
    with pytest.raises(ValueError, match="must lie in"):
        plots.plot_label_distribution([0, 11])
    with pytest.raises(ValueError, match="epochs"):
        plots.plot_training_curves({"epoch": [1, 2], "train_loss": [1.0]})
    with pytest.raises(TypeError, match="Figure"):
        plots.save_figure("not a figure", "x.png")


def test_roc_zoomed_inset_for_auc_near_one(tmp_path):
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    for sep, want_inset in ((3.5, True), (0.8, False)):
        s = y * sep + rng.normal(size=y.size)
        fpr, tpr, _ = roc_curve(y, s)
        fig = plots.plot_roc({"class 9": (fpr, tpr)})
        ax = fig.axes[0]
        assert f"AUC = {roc_auc_score(y, s):.4f}" in ax.get_lines()[0].get_label()
        assert bool(ax.child_axes) == want_inset
        if want_inset:
            ins = ax.child_axes[0]
            assert ins.get_xlim()[1] <= 0.1 and ins.get_ylim()[1] >= 1.0
            np.testing.assert_array_equal(ins.get_lines()[0].get_xydata(), np.c_[fpr, tpr])
            check_png(fig, tmp_path / "roc.png")


def test_augmentation_preview_titles_do_not_overlap(mnist, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    spec = "rotate:10,perspective:0.2,noise:0.2,hflip:0.7"
    cols = plots.augmentation_columns(spec)
    assert [c[0] for c in cols] == spec.split(",") + ["all, in order"]
    fig = plots.plot_augmentation_preview(mnist[2][:3], cols, title=spec)
    r = FigureCanvasAgg(fig).get_renderer()
    fig.draw(r)
    texts = fig.axes[0].texts
    boxes = [t.get_window_extent(r) for t in texts]
    assert [t.get_text() for t in texts] == ["original"] + [c[0] for c in cols]
    for a, b in zip(boxes, boxes[1:]):
        assert a.x1 < b.x0, "column titles overlap"
    # the titles sit above the images, inside the figure
    top_of_images = fig.axes[0].get_window_extent(r).y1
    assert all(top_of_images <= b.y0 and b.y1 < fig.bbox.y1 for b in boxes)
    check_png(fig, tmp_path / "aug.png")


def test_run_figures_include_the_augmentation_preview(tmp_path, mnist_dir):
    from fastmnist.cli import main

    out = tmp_path / "aug"
    assert main(["train", "mlp", "--epochs", "1", "--train-size", "300", "--test-size", "100", "--data",
                 str(mnist_dir), "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "augmentation.png" in names and "label_distribution.png" in names
