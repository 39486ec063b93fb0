"""Each write-up's recipe is the default of its models: a short run of the default recipe (1 epoch on a
few hundred real MNIST images, recorded as overrides) writes the write-up's values, spelled out here
from the write-ups (not read from fastmnist.models), as the named recipe in summary.json."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastmnist.cli import main

# the write-ups' recipes, as published (see the module docstring of fastmnist.models for the sources)
ADAM = {"optimizer": "adam", "betas": [0.9, 0.999], "momentum": 0.0, "weight_decay": 0.0}
# 001's rotation/perspective amounts are not recorded in the write-up: only their presence is checked
W001 = dict(ADAM, lr=1e-3, scheduler=None, epochs=10, batch_size=64, loss="cross_entropy",
            normalize=True, train_size=30000, test_size=5000)
WRITEUPS = {
    # 001: logistic regression vs a 256-unit FNN vs a two-block CNN, Adam, cross-entropy, 10 epochs, batch 64,
    # rotation + perspective augmentation, 30k/5k subsample
    "logreg": ("write-up 001", W001),
    "fnn": ("write-up 001", W001),
    "cnn": ("write-up 001", W001),
    # 002: CNN with 5x5 filters (16, 32, dense 64), Adam (1e-3), 5 epochs, batch 128, no schedule
    "cnn5": ("write-up 002", dict(ADAM, lr=1e-3, scheduler=None, epochs=5, batch_size=128, loss="cross_entropy",
                                  augment=None, normalize=True, train_size=None, test_size=None)),
    # 003: CNN from scratch, several conv layers (its optimizer values are not recorded: ours, SGD)
    "cnn-scratch": ("write-up 003", {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0,
                                     "scheduler": None, "epochs": 5, "batch_size": 64, "loss": "cross_entropy",
                                     "augment": None, "normalize": True, "train_size": None, "test_size": None}),
    # 004: MLP from scratch (sigmoid, MSE, plain mini-batch gradient descent)
    "mlp-scratch": ("write-up 004", {"optimizer": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0,
                                     "scheduler": None, "epochs": 10, "batch_size": 32, "loss": "mse",
                                     "augment": None, "normalize": False, "train_size": None, "test_size": None}),
    # 004: MLP with Gaussian noise std 0.2 and horizontal flips p 0.7, Adam lr 0.01, 30 epochs
    "mlp": ("write-up 004", dict(ADAM, lr=0.01, scheduler=None, epochs=30, batch_size=512, loss="cross_entropy",
                                 augment="noise:0.2,hflip:0.7", normalize=True, train_size=None, test_size=None)),
}
QUICK = {"epochs": 1, "train_size": 300, "test_size": 100}


def _run(tmp_path, mnist_dir, model, *extra):
    out = tmp_path / model
    rc = main(["train", model, "--data", str(mnist_dir), "--out", str(out), "--quiet", "--no-figures",
               "--epochs", "1", "--train-size", "300", "--test-size", "100", *extra])
    assert rc == 0
    return json.loads((out / "summary.json").read_text()), out


@pytest.mark.parametrize("model", list(WRITEUPS))
def test_default_recipe_is_the_writeups(model, tmp_path, mnist_dir, capsys):
    source, want = WRITEUPS[model]
    s, out = _run(tmp_path, mnist_dir, model)
    st = s["settings"]
    assert st["recipe_name"] == "default" and st["recipe_source"].startswith(source)
    named = st["named_recipe"]
    assert {k: named[k] for k in want} == want
    # the quick-mode overrides are recorded, and the effective recipe is the write-up's plus them
    assert st["overrides"] == QUICK
    assert {k: st["recipe"][k] for k in want} == dict(want, **QUICK)
    # the one recipe line printed at the start names every value
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{model}: recipe default: {want['optimizer']} lr {want['lr']:g}")
    assert f"batch {want['batch_size']}" in first and f"loss {want['loss']}" in first
    if "augment" in want:
        assert f"augment {want['augment'] or 'none'}" in first
    else:  # write-up 001: rotation and perspective, amounts not recorded
        aug = named["augment"] or ""
        assert "rotate:" in aug and "perspective:" in aug and f"augment {aug}" in first
    assert "[overridden: epochs=1" in first
    assert s["results"]["train_size"] == 300 and s["results"]["test_size"] == 100
    assert (out / "model.npz").is_file() and (out / "classification_report.txt").is_file()


def test_tuned_recipes(tmp_path, mnist_dir):
    s, _ = _run(tmp_path, mnist_dir, "cnn5", "--recipe", "tuned")
    r = s["settings"]["named_recipe"]
    assert (r["name"], r["lr"], r["scheduler"], r["epochs"], r["batch_size"]) == ("tuned", 2e-3, "cosine", 5, 128)
    s, _ = _run(tmp_path, mnist_dir, "cnn", "--recipe", "tuned")
    r = s["settings"]["named_recipe"]
    assert (r["lr"], r["scheduler"], r["epochs"], r["batch_size"]) == (1e-3, "cosine", 10, 64)
    from fastmnist import models

    assert models.recipe("mlp", "tuned").augment == "noise:0.0616,hflip:0.7"


def test_help_is_the_model_table(capsys):
    from fastmnist import models

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in models.names():
        assert f"\n  {name} " in text
        for rname in models.recipe_names(name):
            line = models.recipe(name, rname).line().split(": ", 1)[1]
            assert line in " ".join(text.split()) or line[:60] in text, (name, rname)
    assert main(["train", "fast", "--recipe", "nope", "--out", "x"]) == 1
    assert "has no recipe 'nope'" in capsys.readouterr().err


def test_cnn_scratch_depth_is_configurable_and_learns(tmp_path, mnist_dir, mnist):
    from fastmnist import models, nn

    for ch in ([8], [8, 16], [8, 16, 32], [4, 8, 8, 8]):
        m = models.build("cnn-scratch", channels=ch)
        convs = [l for l in m.layers.values() if isinstance(l, nn.Conv2d)]
        assert [c.weight.data.shape[0] for c in convs] == ch
        assert m.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    with pytest.raises(ValueError, match="channels"):
        models.build("cnn-scratch", channels=[8] * 5)
    out = tmp_path / "deep"
    assert main(["train", "cnn-scratch", "--option", "channels=8,16,32", "--data", str(mnist_dir), "--out",
                 str(out), "--quiet", "--no-figures", "--epochs", "1", "--train-size", "3000",
                 "--test-size", "500", "--lr", "0.02"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["model_options"] == {"channels": [8, 16, 32]}
    assert s["results"]["test_accuracy"] > 0.6
    with np.load(out / "feature_maps.npz") as fm:
        assert [k for k in fm if "conv" in k] == ["00_conv1", "03_conv2", "06_conv3"]


def test_summary_command_matches_torch(capsys, tmp_path):
    # write-up 002's Keras-style model summary: shapes and parameter counts of the same net in torch
    import torch

    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(512, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    shapes, x = [], torch.zeros(1, 1, 28, 28)
    for layer in tnet:
        x = layer(x)
        shapes.append("[" + ", ".join(["-1"] + [str(d) for d in x.shape[1:]]) + "]")
    counts = [sum(p.numel() for p in layer.parameters()) for layer in tnet]
    assert main(["summary", "cnn5"]) == 0
    text = capsys.readouterr().out
    rows = [l.split() for l in text.splitlines() if "(" in l and l.split()[-1].replace(",", "").isdigit()]
    assert len(rows) == len(tnet)
    for row, shape, n in zip(rows, shapes, counts):
        assert " ".join(row[2:-1]) == shape and int(row[-1].replace(",", "")) == n
    assert f"Total params: {sum(counts):,}" in text
    assert "recipe default: adam lr 0.001" in text and "5 epochs, batch 128" in text
    assert main(["summary", "cnn-scratch", "--option", "channels=4,8,16"]) == 0
    assert text.count("Conv2d") == 2 and capsys.readouterr().out.count("Conv2d") == 3
    assert main(["summary", str(tmp_path / "missing.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err
