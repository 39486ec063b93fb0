"""ResNet-50 feature extraction (stride placement, .mat files, errors) and the whole CLI chain
extract -> logreg -> roc on a small MNIST subset with the shared ImageNet weights."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
scipy_io = pytest.importorskip("scipy.io")
sk = pytest.importorskip("sklearn.metrics")

from fastmnist import cli  # noqa: E402
from fastmnist.features import (FEATURE_RTOL, FeatureExtractor, build_resnet50,  # noqa: E402
                                check_same_extraction, detect_stride_in_1x1, extract_features,
                                load_features_mat, resolve_device, save_features_mat)

# Logistic regression on 2,000 training images' features (size 32, shared Keras ImageNet weights,
# lr 0.03, batch 32, 10 epochs) scored 0.884-0.896 on 500 test images across lr 0.01-0.1 and
# 10-20 epochs when measured; the floor leaves room for thread-count rounding differences.
FEATURE_FLOOR = 0.85


def _reference_input(images: np.ndarray, size: int):
    """The documented preprocessing, written independently of fastmnist."""
    x = torch.from_numpy(images).float().unsqueeze(1) / 255.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.repeat(1, 3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_stride_in_1x1_weights_run_as_trained(resnet_weights, mnist):
    images = mnist[2][:4]
    size = 64
    ours, info = build_resnet50(resnet_weights)  # auto-detected from the file name (keras)
    assert info["stride_in_1x1"] is True
    feats = extract_features(ours, images, size=size, batch_size=3, device="cpu", quiet=True, compile="off")
    assert feats.shape == (4, 2048) and feats.dtype == np.float32

    sd = torch.load(resnet_weights, weights_only=True)
    patched = torchvision.models.resnet50()
    patched.load_state_dict(sd)
    for layer in (patched.layer2, patched.layer3, patched.layer4):  # as WEIGHTS.md prescribes
        layer[0].conv1.stride = (2, 2)
        layer[0].conv2.stride = (1, 1)
    unpatched = torchvision.models.resnet50()
    unpatched.load_state_dict(sd)
    x = _reference_input(images, size)
    with torch.no_grad():
        ref = []
        for m in (patched, unpatched):
            m.fc = torch.nn.Identity()
            m.eval()
            ref.append(m(x).numpy())
    np.testing.assert_allclose(feats, ref[0], rtol=1e-4, atol=1e-4)
    rel = np.linalg.norm(feats - ref[1]) / np.linalg.norm(ref[1])
    assert rel > 0.05, rel  # the v1.5 placement is a different network

    forced, info2 = build_resnet50(resnet_weights, stride_in_1x1=False)
    assert info2["stride_in_1x1"] is False
    f2 = extract_features(forced, images, size=size, batch_size=4, device="cpu", quiet=True, compile="off")
    np.testing.assert_allclose(f2, ref[1], rtol=1e-4, atol=1e-4)


def test_stride_convention(tmp_path):
    assert detect_stride_in_1x1("imagenet") is False
    assert detect_stride_in_1x1("none") is False
    assert detect_stride_in_1x1(tmp_path / "resnet50_keras_imagenet_tv.pth") is True
    assert detect_stride_in_1x1(tmp_path / "Resnet50_CAFFE.pth") is True
    plain = tmp_path / "resnet50.pth"
    assert detect_stride_in_1x1(plain) is False
    (tmp_path / "resnet50.pth.json").write_text(json.dumps({"stride_in_1x1": True}))
    assert detect_stride_in_1x1(plain) is True
    (tmp_path / "my_keras.pth.json").write_text(json.dumps({"stride_in_1x1": False}))
    assert detect_stride_in_1x1(tmp_path / "my_keras.pth") is False  # the sidecar wins


def test_random_weights_are_seeded():
    a, _ = build_resnet50("none", seed=3)
    b, _ = build_resnet50("none", seed=3)
    c, _ = build_resnet50("none", seed=4)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_resnet50(tmp_path / "missing.pth")
    bad = tmp_path / "bad_keys.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "foo.bar": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision ResNet-50 state_dict"):
        build_resnet50(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        build_resnet50(junk)
    with pytest.raises(FileNotFoundError, match="features file not found"):
        load_features_mat(tmp_path / "nope.mat")
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(ValueError, match="cannot read .* as a MATLAB .mat file"):
        load_features_mat(garbage)
    other = tmp_path / "other.mat"
    scipy_io.savemat(other, {"x": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="no 'features' variable"):
        load_features_mat(other)
    with pytest.raises(OSError, match="cannot write"):
        save_features_mat(tmp_path / "garbage.mat" / "sub.mat", np.zeros((2, 3)), [0, 1])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
        assert cli.main(["extract", "--device", "cuda", "--out", str(tmp_path / "x")]) == 1
        assert "CUDA is not available" in capsys.readouterr().err
    assert resolve_device("cpu") == "cpu"
    assert cli.main(["extract", "--weights", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x")]) == 1
    assert "weights file not found" in capsys.readouterr().err
    assert cli.main(["logreg", "--train", str(garbage), "--test", str(garbage), "--out", str(tmp_path / "r")]) == 1
    assert "as a MATLAB .mat file" in capsys.readouterr().err


def test_fast_paths_match_plain_eager(resnet_weights, mnist):
    """Eager channels-last and torch.compile against the plain eager network on the documented
    3-channel NCHW input; 5 digits in batches of 4 also exercise the padded last batch."""
    import shutil

    images = mnist[2][:5]
    size = 32
    model, _ = build_resnet50(resnet_weights)
    with torch.no_grad():
        ref = model(_reference_input(images, size)).numpy()
    modes = ["off"]
    if shutil.which(__import__("os").environ.get("CXX", "g++")):
        modes.append("on")
    for mode in modes:
        fx = FeatureExtractor(model, size=size, device="cpu", batch_size=4, compile=mode, quiet=True)
        f = fx(images)
        assert fx.engine == {"off": "eager", "on": "compiled"}[mode]
        rel = np.linalg.norm(f - ref, axis=1) / np.linalg.norm(ref, axis=1)
        # measured: eager ~1e-7, compiled ~1e-6 (both fp32)
        assert rel.max() <= (1e-5 if mode == "off" else FEATURE_RTOL), (mode, rel)
        del fx
        torch._dynamo.reset()


def test_compile_falls_back_to_eager_without_a_compiler(capsys):
    import torch._inductor.config as inductor_config

    from fastmnist.features import CompileError

    model, _ = build_resnet50("none")
    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/c++")}):
        fx = FeatureExtractor(model, size=32, compile="auto")
        assert fx.engine == "eager"
        assert "no C++ compiler found for inductor (tried /nonexistent/c++" in capsys.readouterr().err
        with pytest.raises(CompileError, match="torch.compile cannot run: no C\\+\\+ compiler"):
            FeatureExtractor(model, size=32, compile="on")


def test_extractor_bad_arguments():
    model, _ = build_resnet50("none")
    for kw, msg in ((dict(size=16), "size must be an integer >= 32"), (dict(batch_size=0), "batch_size"),
                    (dict(compile="yes"), "compile must be"), (dict(precision="fp16"), "needs a CUDA device")):
        with pytest.raises(ValueError, match=msg):
            FeatureExtractor(model, **kw)
    fx = FeatureExtractor(model, size=32, compile="off")
    with pytest.raises(ValueError, match="images must be uint8"):
        fx(np.zeros((2, 28, 28), np.float32))


def test_mat_content_is_validated(tmp_path):
    """Complex or non-finite features and fractional labels were coerced silently (issue 14, item 9)."""
    y = np.array([[0], [1], [2]])
    cases = [({"features": np.ones((3, 4)) * (1 + 1j), "labels": y}, "'features' must be real numbers, got complex"),
             ({"features": np.ones((3, 4)), "labels": np.array([[0.0], [1.5], [2.0]])},
              r"'labels' must be integers, got 1 non-integer values \(first at row 1: 1.5"),
             ({"features": np.ones((3, 4)), "labels": y * (1 + 1j)}, "'labels' must be integers, got complex"),
             ({"features": np.array([[1.0, np.nan]] * 3), "labels": y}, "3 non-finite values"),
             ({"features": np.ones((3, 4)), "labels": np.array(["a", "b", "c"])}, "'labels' must be integers")]
    for i, (d, msg) in enumerate(cases):
        p = tmp_path / f"bad{i}.mat"
        scipy_io.savemat(p, d)
        with pytest.raises(ValueError, match=msg):
            load_features_mat(p)
    ok = tmp_path / "ok.mat"
    scipy_io.savemat(ok, {"features": np.ones((3, 4)), "labels": np.array([[0.0], [1.0], [2.0]])})
    X, labels = load_features_mat(ok)
    assert X.dtype == np.float32 and labels.dtype == np.int64 and labels.tolist() == [0, 1, 2]


def test_mat_metadata_and_same_extraction(tmp_path):
    p = save_features_mat(tmp_path / "a.mat", np.ones((2, 3)), [4, 5], split="train", weights="w.pth",
                          weights_sha256="ab" * 32, size=224, stride_in_1x1=1, preprocessing="pre")
    assert b"Created on" not in p.read_bytes()[:116]  # no time stamp: same content, same bytes
    X, y, meta = load_features_mat(p, meta=True)
    assert meta == {"split": "train", "weights": "w.pth", "weights_sha256": "ab" * 32, "size": 224,
                    "stride_in_1x1": 1, "preprocessing": "pre"}
    check_same_extraction(meta, dict(meta, split="test"))
    with pytest.raises(ValueError, match="different extractions .*size: 224 vs 32"):
        check_same_extraction(meta, dict(meta, size=32))
    with pytest.raises(ValueError, match="weights_sha256"):
        check_same_extraction(meta, dict(meta, weights_sha256="cd" * 32))
    check_same_extraction(meta, {"size": 224})  # keys an older file lacks are not compared


# ---- the whole chain on a subset: one extraction shared by the tests below --------------------

@pytest.fixture(scope="module")
def features_dir(tmp_path_factory, resnet_weights, mnist_dir):
    d = tmp_path_factory.mktemp("features")
    rc = cli.main(["extract", "--weights", str(resnet_weights), "--size", "32", "--limit", "2000",
                   "--limit-test", "500", "--data", str(mnist_dir), "--device", "cpu", "--batch-size", "250",
                   "--compile", "off", "--quiet", "--out", str(d)])
    assert rc == 0
    return d


def _not_blank(png):
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    flat = img[..., :3].reshape(-1, 3)
    assert flat.std() > 0.05
    assert len(np.unique(np.round(flat, 2), axis=0)) > 10


def test_mat_files(features_dir, mnist):
    for split, n in (("train", 2000), ("test", 500)):
        d = scipy_io.loadmat(features_dir / f"mnist_{split}.mat")
        assert d["features"].shape == (n, 2048) and d["features"].dtype == np.float32
        assert d["labels"].shape == (n, 1)
        labels = d["labels"].ravel()
        assert set(np.unique(labels)) == set(range(10))
        assert str(d["split"][0]) == split and d["stride_in_1x1"].item() == 1 and d["size"].item() == 32
        assert str(d["weights"][0]) == "resnet50_keras_imagenet_tv.pth" and len(str(d["weights_sha256"][0])) == 64
        assert np.all(np.isfinite(d["features"])) and d["features"].min() >= 0  # post-ReLU average
    # the test-split labels are a stratified subset of the genuine test labels
    counts = np.bincount(scipy_io.loadmat(features_dir / "mnist_test.mat")["labels"].ravel(), minlength=10)
    np.testing.assert_allclose(counts / 500, np.bincount(mnist[3], minlength=10) / 10000, atol=0.01)


def test_cli_logreg_and_roc_chain(features_dir, tmp_path):
    run = tmp_path / "run"
    rc = cli.main(["logreg", "--train", str(features_dir / "mnist_train.mat"), "--test",
                   str(features_dir / "mnist_test.mat"), "--epochs", "10", "--lr", "0.03", "--batch-size", "32",
                   "--quiet", "--out", str(run)])
    assert rc == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["command"] == "logreg" and s["settings"]["batch_size"] == 32
    acc = s["results"]["test_accuracy"]
    assert acc >= FEATURE_FLOOR, acc
    h = json.loads((run / "history.json").read_text())
    assert h["epoch"] == list(range(1, 11)) and len(h["test_acc"]) == 10 and "val_acc" not in h
    assert (run / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    p = np.load(run / "predictions.npz")
    assert p["proba"].shape == (500, 10) and "images" not in p
    assert np.mean(p["y_pred"] == p["y_true"]) == pytest.approx(acc)
    # AUCs against scikit-learn on the saved scores
    roc = json.loads((run / "roc.json").read_text())
    for c in range(10):
        ref = sk.roc_auc_score(p["y_true"] == c, p["proba"][:, c])
        assert roc["classes"][str(c)]["auc"] == pytest.approx(ref, abs=1e-12)
        assert s["results"]["auc_per_class"][str(c)] == pytest.approx(ref, abs=1e-12)
    assert s["results"]["auc_roc_class"] == pytest.approx(roc["classes"]["9"]["auc"])
    for f in ("accuracy.png", "roc_class9.png", "roc_all.png"):
        _not_blank(run / "figures" / f)

    # fastmnist roc from the saved predictions, from .npy + labels, and from a .csv
    assert cli.main(["roc", str(run / "predictions.npz"), "--class", "9", "--out", str(tmp_path / "r9.png")]) == 0
    _not_blank(tmp_path / "r9.png")
    np.save(tmp_path / "s.npy", p["proba"][:, 9])
    np.save(tmp_path / "y.npy", p["y_true"])
    assert cli.main(["roc", str(tmp_path / "s.npy"), "--labels", str(tmp_path / "y.npy"), "--pos-label", "9",
                     "--out", str(tmp_path / "rdir")]) == 0
    r = json.loads((tmp_path / "rdir" / "roc.json").read_text())
    (only,) = r["classes"].values()
    assert only["auc"] == pytest.approx(roc["classes"]["9"]["auc"], abs=1e-12)
    _not_blank(tmp_path / "rdir" / "roc.png")
    csv = tmp_path / "scores.csv"
    np.savetxt(csv, np.c_[p["y_true"], p["proba"]], delimiter=",", header="label," + ",".join(map(str, range(10))),
               comments="")
    assert cli.main(["roc", str(csv), "--out", str(tmp_path / "all.png")]) == 0
    _not_blank(tmp_path / "all.png")


def test_cli_logreg_refuses_features_of_other_extractions(features_dir, tmp_path, capsys):
    """32 px train + 224 px test features used to run silently to ~14 % accuracy."""
    d = scipy_io.loadmat(features_dir / "mnist_test.mat")
    d = {k: v for k, v in d.items() if not k.startswith("__")}
    d["size"] = 224
    other = tmp_path / "test224.mat"
    scipy_io.savemat(other, d)
    rc = cli.main(["logreg", "--train", str(features_dir / "mnist_train.mat"), "--test", str(other),
                   "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "different extractions" in err and "size: 32 vs 224" in err
    assert not (tmp_path / "run").exists()
