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
    for f in ["summary.json", "history.json", "history.csv", "predictions.npz", "feature_maps.npz", "model.npz",
              "label_counts.json", "classification_report.txt", "model_summary.txt"]:
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
    rows = list(csv.DictReader((out / "history.csv").read_text().splitlines()))
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


def test_metadata_describes_the_run(tmp_path, mnist_dir, mnist):
    # 30,000 images with --val-split 0.1: summary, histogram data and report all say 27,000 / 3,000 / 10,000
    out = tmp_path / "meta"
    assert main(["train", "logreg", "--recipe", "full", "--epochs", "1", "--train-size", "30000", "--val-split", "0.1", "--data",
                 str(mnist_dir), "--out", str(out), "--quiet"]) == 0
    r = json.loads((out / "summary.json").read_text())["results"]
    assert (r["train_size"], r["val_size"], r["test_size"]) == (27000, 3000, 10000)
    counts = json.loads((out / "label_counts.json").read_text())
    assert [sum(counts[k]) for k in ("train", "val", "test")] == [27000, 3000, 10000]
    # the histogram data are the labels of the images used: train + val is the stratified subsample
    from fastmnist.data import subsample

    _, y_sub = subsample(mnist[0], mnist[1], 30000, seed=0)
    np.testing.assert_array_equal(np.add(counts["train"], counts["val"]), np.bincount(y_sub, minlength=10))
    np.testing.assert_array_equal(counts["test"], np.bincount(mnist[3], minlength=10))
    # the label-distribution figure shows those sets
    from fastmnist import plots

    fig = plots.plot_label_distribution(counts=counts)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["train set  (27,000 images)", "val set  (3,000 images)",
                                                       "test set  (10,000 images)"]
    assert main(["report", str(out)]) == 0
    page = (out / "report.md").read_text()
    assert "27,000 train / 3,000 val / 10,000 test" in (out / "report.html").read_text()
    assert "| train_size | 27000 |" in page and "| val_size | 3000 |" in page and "| test_size | 10000 |" in page
    # the Settings table shows the effective recipe, not None
    assert "| recipe.lr | 0.001 |" in page and "| recipe.batch_size | 64 |" in page
    assert "| overrides.train_size | 30000 |" in page
    # the data section: images per digit of each set, from the same counts
    assert "## Data: images per digit" in page
    assert f"| train | {' | '.join(f'{c:,}' for c in counts['train'])} | 27,000 |" in page


def test_out_needs_overwrite_and_stale_temps_go(tmp_path, mnist_dir, capsys):
    out = _train(tmp_path, mnist_dir, "cnn", "--no-figures")
    (out / ".predictions.npzab12.tmp").write_bytes(b"torn")
    assert main(["train", "fnn", "--epochs", "1", "--train-size", "500", "--test-size", "100", "--data",
                 str(mnist_dir), "--out", str(out), "--quiet", "--no-figures"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["model"] == "cnn"  # untouched
    assert main(["train", "fnn", "--epochs", "1", "--train-size", "500", "--test-size", "100", "--data",
                 str(mnist_dir), "--out", str(out), "--quiet", "--no-figures", "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["model"] == "fnn"
    # nothing of the old cnn run is left to describe another run, and no temp file
    assert not (out / "feature_maps.npz").exists() and not list(out.glob(".*.tmp"))


def test_interrupted_run_exits_130_and_says_so_everywhere(tmp_path, mnist_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "int"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(p) for p in sys.path if p]), MPLBACKEND="Agg")
    # long epochs (small batches), so that the Ctrl-C sent 0.3 s after epoch 1 lands inside epoch 2
    p = subprocess.Popen([sys.executable, "-u", "-m", "fastmnist", "train", "fnn", "--epochs", "500",
                          "--train-size", "8000", "--batch-size", "8", "--test-size", "200", "--no-figures", "--data",
                          str(mnist_dir), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in p.stdout:  # wait for the first epoch line, then Ctrl-C
        lines.append(line)
        if line.startswith("epoch 1/500"):
            time.sleep(0.3)
            p.send_signal(signal.SIGINT)
            break
    rest, _ = p.communicate(timeout=120)
    assert p.returncode == 130, "".join(lines) + rest
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["results"]["interrupted"] is True
    h = json.loads((out / "history.json").read_text())
    assert h["interrupted"] is True and 2 <= len(h["epoch"]) < 500
    assert h["partial"][-1] is True and not any(h["partial"][:-1])
    rows = list(csv.DictReader((out / "history.csv").read_text().splitlines()))
    assert rows[-1]["partial"] == "1" and rows[0]["partial"] == "0"
    assert "interrupted" in (out / "classification_report.txt").read_text()
    with np.load(out / "predictions.npz") as z:
        assert bool(z["interrupted"])
    assert main(["report", str(out), "--no-figures"]) == 0
    assert "INTERRUPTED" in (out / "report.md").read_text()
    assert "(interrupted)" in rest


def test_compare_writes_a_checkpoint_per_model(tmp_path, mnist_dir, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "logreg,cnn", "--epochs", "1", "--train-size", "500", "--test-size",
                 "100", "--data", str(mnist_dir), "--out", str(out), "--quiet"]) == 0
    for name in ("logreg", "cnn"):
        assert (out / name / "model.npz").is_file()
        capsys.readouterr()
        assert main(["predict", str(out / name / "model.npz"), str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
                     "--limit", "3"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 3
    assert (out / "table.txt").is_file() and (out / "figures" / "training_curves_comparison.png").is_file()


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_threads_below_one_is_an_error_not_all_cores(tmp_path, mnist_dir, capsys, threads):
    import fastmnist

    before = fastmnist.get_num_threads()
    rc = main(["train", "logreg", "--epochs", "1", "--train-size", "100", "--test-size", "50", "--data",
               str(mnist_dir), "--out", str(tmp_path / "run"), "--quiet", "--threads", threads])
    err = capsys.readouterr().err
    assert rc == 1 and f"fastmnist train: error: set_num_threads: n must be >= 1, got {threads}" in err
    assert not (tmp_path / "run").exists() and fastmnist.get_num_threads() == before
