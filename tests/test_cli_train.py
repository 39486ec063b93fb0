"""``fastmnist train`` / ``compare`` / ``predict`` end to end on small real-MNIST subsets."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fastmnist.cli import main


def _train(tmp_path, mnist_dir, model, *extra):
    out = tmp_path / model
    rc = main(["train", model, "--epochs", "1", "--train-size", "1000", "--test-size", "200", "--data",
               str(mnist_dir), "--out", str(out), "--quiet", *extra])
    assert rc == 0
    return out


def test_train_cnn_writes_every_file(tmp_path, mnist_dir, mnist, capsys):
    out = _train(tmp_path, mnist_dir, "cnn", "--no-figures")
    printed = capsys.readouterr().out
    assert "test accuracy:" in printed
    for f in ["summary.json", "history.json", "history.csv", "predictions.npz", "feature_maps.npz", "model.npz"]:
        assert (out / f).is_file(), f
    s = json.loads((out / "summary.json").read_text())
    assert s["command"] == "train" and s["model"] == "cnn" and s["threads"] >= 1
    assert s["settings"]["epochs"] == 1 and s["settings"]["seed"] == 0 and "fastmnist_version" in s
    acc = s["results"]["test_accuracy"]
    assert 0.5 < acc <= 1 and s["results"]["train_seconds"] > 0
    assert f"test accuracy: {acc:.4f}" in printed
    h = json.loads((out / "history.json").read_text())
    # without --val-split the per-epoch evaluation is the test set, and says so
    assert h["epoch"] == [1] and "val_acc" not in h and h["eval_set"] == "test"
    assert h["test_acc"][0] == pytest.approx(acc) and h["partial"] == [False] and h["interrupted"] is False
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "partial"]
    assert s["status"] == "complete" and s["results"]["per_epoch_eval"] == "test"
    assert s["results"]["train_size"] == 1000 and s["results"]["val_size"] == 0
    with np.load(out / "predictions.npz") as p:
        assert p["y_true"].dtype == np.int64 and p["y_pred"].dtype == np.int64 and p["y_true"].shape == (200,)
        assert p["proba"].dtype == np.float32 and p["proba"].shape == (200, 10)
        np.testing.assert_allclose(p["proba"].sum(1), 1, atol=1e-5)
        assert p["images"].dtype == np.uint8 and p["images"].shape == (200, 28, 28)
        assert np.mean(p["y_pred"] == p["y_true"]) == pytest.approx(acc)
        np.testing.assert_array_equal(p["y_pred"], p["proba"].argmax(1))
        # the stored images are genuine test images with their labels
        x_test, y_test = mnist[2], mnist[3]
        i = int(np.flatnonzero((x_test == p["images"][0]).all(axis=(1, 2)))[0])
        assert y_test[i] == p["y_true"][0]
        images, y_pred = p["images"], p["y_pred"]
    with np.load(out / "feature_maps.npz") as fm:
        keys = list(fm.keys())
        assert keys[0] == "image" and fm["image"].shape == (28, 28)
        assert keys[1:] == ["00_conv1", "01_relu1", "02_pool1", "03_conv2", "04_relu2", "05_pool2"]
        assert fm["00_conv1"].shape == (16, 28, 28) and fm["05_pool2"].shape == (32, 7, 7)
        np.testing.assert_array_equal(fm["01_relu1"], np.maximum(fm["00_conv1"], 0))
        np.testing.assert_allclose(fm["image"], images[0] / 255.0, atol=1e-6)

    # predict from the checkpoint: an IDX file and a PNG give the run's predictions
    from PIL import Image

    png = tmp_path / "digit.png"
    Image.fromarray(images[3]).save(png)
    inverted = tmp_path / "dark_on_light.png"
    Image.fromarray(255 - images[3]).save(inverted)
    capsys.readouterr()
    assert main(["predict", str(out / "model.npz"), str(png), str(inverted), "--json"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [l["digit"] for l in lines] == [int(y_pred[3])] * 2
    assert abs(sum(lines[0]["probabilities"]) - 1) < 1e-4
    assert main(["predict", str(out / "model.npz"), str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
                 "--limit", "4"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 4 and text[0].startswith(str(mnist_dir / "t10k-images-idx3-ubyte.gz") + ":0: ")


def test_train_fnn_with_figures(tmp_path, mnist_dir):
    pytest.importorskip("fastmnist.plots")
    out = _train(tmp_path, mnist_dir, "fnn", "--lr", "0.002", "--batch-size", "100")
    figs = list((out / "figures").glob("*.png"))
    assert figs, "no figures written"
    assert not (out / "feature_maps.npz").exists()
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["recipe"]["lr"] == 0.002 and s["settings"]["recipe"]["batch_size"] == 100


def test_train_with_augmentation_and_val_split(tmp_path, mnist_dir):
    out = _train(tmp_path, mnist_dir, "mlp", "--augment", "rotate:10,noise:0.1", "--val-split", "0.1",
                 "--no-figures")
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["recipe"]["augment"] == "rotate:10,noise:0.1"
    assert s["results"]["train_size"] == 900 and s["results"]["val_size"] == 100
    h = json.loads((out / "history.json").read_text())
    assert h["val_acc"][0] is not None and h["eval_set"] == "val" and "test_acc" not in h


def test_compare_writes_table_and_subdirectories(tmp_path, mnist_dir, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--models", "logreg,fnn", "--epochs", "1", "--train-size", "1000", "--test-size",
               "200", "--data", str(mnist_dir), "--out", str(out), "--quiet", "--no-figures"])
    assert rc == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["command"] == "compare" and set(s["results"]["models"]) == {"logreg", "fnn"}
    for name in ("logreg", "fnn"):
        r = s["results"]["models"][name]
        assert 0.5 < r["test_accuracy"] <= 1 and r["train_seconds"] > 0
        assert f"{r['test_accuracy']:.4f}" in printed
        sub = json.loads((out / name / "summary.json").read_text())
        assert sub["results"]["test_accuracy"] == r["test_accuracy"]
        for f in ["history.json", "history.csv", "predictions.npz"]:
            assert (out / name / f).is_file()


def test_cli_errors_are_clean(tmp_path, mnist_dir, capsys):
    assert main(["train", "resnet", "--data", str(mnist_dir), "--out", str(tmp_path / "x")]) == 1
    assert "unknown model 'resnet'" in capsys.readouterr().err
    assert main(["train", "fnn", "--epochs", "0", "--data", str(mnist_dir), "--out", str(tmp_path / "x")]) == 1
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert main(["train", "fnn", "--option", "oops", "--data", str(mnist_dir)]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "none.npz"), "x.png"]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "mlp-scratch" in capsys.readouterr().out
