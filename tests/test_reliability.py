"""Bad input never crashes or lies: corrupt checkpoints, gzip bombs, diverging training, bad files
given to the CLI. Memory bounds are checked in a subprocess through its peak RSS."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import fastmnist_path

from fastmnist import models
from fastmnist.checkpoint import CheckpointError, load_checkpoint, save_checkpoint



def run_python(code: str, *args, timeout=120):
    """Run ``code`` in a fresh interpreter (fastmnist importable); returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=fastmnist_path() + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking process (here the
# test runner, holding MNIST) across exec, while VmHWM belongs to the new process's own memory map
_RSS = """
import sys
{body}
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print("PEAK_RSS_MB", int(hwm.split()[1]) / 1024)
"""


def peak_rss_mb(body: str, *args) -> tuple[float, str]:
    """(peak RSS in MB, stdout) of a subprocess running ``body``."""
    if not Path("/proc/self/status").exists():
        pytest.skip("peak RSS is read from /proc (Linux)")
    r = run_python(_RSS.format(body=body), *args)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("PEAK_RSS_MB")][-1]
    return float(line.split()[1]), r.stdout


def run_cli(*args, timeout=120):
    return run_python("import sys; from fastmnist.cli import main; sys.exit(main(sys.argv[1:]))", *args,
                      timeout=timeout)


def assert_one_line_error(r, *fragments):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "error:" in r.stderr, r.stderr
    for f in fragments:
        assert f in r.stderr, r.stderr


# ----------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A real fnn checkpoint with Adam state after one step, and its state dict."""
    from fastmnist import optim

    m = models.build("fnn", seed=3)
    opt = optim.Adam(m.parameters(), lr=1e-3)
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    from fastmnist import nn

    loss, g = nn.CrossEntropyLoss().loss_and_grad(m.forward(x), np.arange(8) % 10)
    m.backward(g)
    opt.step()
    p = save_checkpoint(m, tmp_path_factory.mktemp("ckpt") / "model.npz", opt, meta={"k": 1})
    return p, m.state_dict()


def _entries(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write_zip(path, entries: dict, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for n, b in entries.items():
            z.writestr(n, b)
    return path


def _npy(a) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _with_info(entries, info) -> dict:
    return {**entries, "__info__.npy": _npy(np.array(json.dumps(info)))}


def _info(entries) -> dict:
    import io

    return json.loads(str(np.load(io.BytesIO(entries["__info__.npy"]))))


def test_save_checkpoint_both_argument_orders(ckpt, tmp_path):
    p, state = ckpt
    m, info = load_checkpoint(p)
    assert info["meta"] == {"k": 1} and info["optimizer_type"] == "Adam"
    for k, v in state.items():
        np.testing.assert_array_equal(m.state_dict()[k], v)
    # torch.save(obj, path) order (documented) and the older (path, model) order write the same arrays
    m2 = models.build("fnn", seed=3)
    a = save_checkpoint(m2, tmp_path / "a.npz")
    b = save_checkpoint(str(tmp_path / "b.npz"), m2)
    for k in state:
        np.testing.assert_array_equal(load_checkpoint(a)[0].state_dict()[k], load_checkpoint(b)[0].state_dict()[k])
    with pytest.raises(TypeError, match="model must be a fastmnist model"):
        save_checkpoint(tmp_path / "c.npz", tmp_path / "d.npz")


@pytest.mark.parametrize("name,options", [(n, {}) for n in models.names()] + [
    ("fnn", {"hidden": 64}), ("cnn5", {"dropout": 0.5}), ("cnn5", {"dropout": 0}),
    ("mlp-scratch", {"sizes": [784, 30, 20, 10], "activation": "relu"}), ("mlp-scratch", {"arch": "cnn"}),
    ("mlp-scratch", {"output_activation": "sigmoid"}), ("fast", {"c1": 8, "c2": 8, "hidden": 32})])
def test_validation_accepts_every_genuine_checkpoint(tmp_path, name, options):
    m = models.build(name, seed=1, **options)
    m2, info = load_checkpoint(save_checkpoint(m, tmp_path / "m.npz"))
    assert info["spec"] == {"name": name, "seed": 1, "options": options}
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(a, b)


def test_truncated_checkpoints(ckpt, tmp_path):
    p, _ = ckpt
    data = p.read_bytes()
    q = tmp_path / "t.npz"
    for cut in [0, 1, 30, 100, 1000, len(data) // 3, len(data) // 2, len(data) - 200, len(data) - 22, len(data) - 1]:
        q.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="t.npz"):
            load_checkpoint(q)


def test_bit_flipped_checkpoints(ckpt, tmp_path):
    # every flip is caught (zip CRC, header checks) or harmless (a field nobody reads): never another
    # exception type, never a model with other numbers
    p, state = ckpt
    data = p.read_bytes()
    rng = np.random.default_rng(0)
    q = tmp_path / "f.npz"
    caught = 0
    positions = np.concatenate([np.arange(0, 200, 7), np.arange(len(data) - 600, len(data), 13),
                                rng.integers(0, len(data), 40)])
    for pos in positions:
        b = bytearray(data)
        b[pos] ^= 1 << int(rng.integers(8))
        q.write_bytes(bytes(b))
        try:
            m, _ = load_checkpoint(q)
        except CheckpointError:
            caught += 1
            continue
        for k, v in state.items():
            np.testing.assert_array_equal(m.state_dict()[k], v)
    assert caught > len(positions) // 2


def test_zip_with_wrong_entries(ckpt, tmp_path):
    p, state = ckpt
    good = _entries(p)
    info = _info(good)
    cases = {
        "text entry": ({"notes.txt": b"hello"}, "unexpected entry 'notes.txt'"),
        "no info": ({k: v for k, v in good.items() if k != "__info__.npy"}, "no __info__ entry"),
        "info not json": ({**good, "__info__.npy": _npy(np.array("{not json"))}, "not valid JSON"),
        "info not text": ({**good, "__info__.npy": _npy(np.zeros(3))}, "__info__ must be a text scalar"),
        "info list": (_with_info(good, [1, 2]), "must be an object with format"),
        "deep json": ({**good, "__info__.npy": _npy(np.array("[" * 100000 + "]" * 100000))}, "not valid JSON"),
        "pickled object": ({**good, "param/fc1.bias.npy": _npy(np.array([object()], dtype=object))},
                           "holds Python objects"),
        "missing param": ({k: v for k, v in good.items() if k != "param/fc2.bias.npy"}, "missing ['fc2.bias']"),
        "extra param": ({**good, "param/fc9.weight.npy": _npy(np.zeros((2, 2), np.float32))},
                        "unexpected ['fc9.weight']"),
        "wrong shape": ({**good, "param/fc2.bias.npy": _npy(np.zeros(11, np.float32))},
                        "shape mismatch for 'fc2.bias': checkpoint has (11,)"),
        "int dtype": ({**good, "param/fc2.bias.npy": _npy(np.zeros(10, np.int32))}, "shape mismatch for 'fc2.bias'"),
        "unknown model": (_with_info(good, {**info, "spec": {"name": "resnet", "seed": 0, "options": {}}}),
                          "unknown model 'resnet'"),
        "unknown option": (_with_info(good, {**info, "spec": {**info["spec"], "options": {"depth": 3}}}),
                           "no option 'depth'"),
        "option type": (_with_info(good, {**info, "spec": {**info["spec"], "options": {"hidden": "256"}}}),
                        "option 'hidden': '256' is not a valid value"),
        "negative size": (_with_info(good, {**info, "spec": {**info["spec"], "options": {"hidden": -5}}}),
                          "option 'hidden': -5"),
        "seed": (_with_info(good, {**info, "spec": {**info["spec"], "seed": "x"}}), "seed must be an integer"),
        "bad optimizer state": (_with_info(good, {**info, "optimizer": {"__array__": "optim/nope"}}),
                                "missing array 'optim/nope'"),
        "no spec": (_with_info(good, {**info, "spec": None}), "does not record which model"),
    }
    for what, (entries, msg) in cases.items():
        q = _write_zip(tmp_path / "w.npz", entries)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(q)
        assert msg in str(e.value), (what, str(e.value))
    # an entry whose .npy header announces 300M floats (1.2 GB) with 64 bytes behind it: refused from
    # the headers, nothing allocated
    import io

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (300_000_000,)})
    big = {**good, "optim/x.npy": head.getvalue() + bytes(64)}
    q = _write_zip(tmp_path / "b.npz", big, zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match=r"entry 'optim/x': its header announces \(300000000,\)"):
        load_checkpoint(q)
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.npz")


def test_checkpoint_size_limit(ckpt, monkeypatch):
    import fastmnist.checkpoint as ck

    p, _ = ckpt
    monkeypatch.setattr(ck, "MAX_CHECKPOINT_BYTES", 100_000)
    with pytest.raises(CheckpointError, match=r"declare [\d,]+ bytes, more than the 100,000-byte limit"):
        load_checkpoint(p)


def test_spec_lying_about_size_allocates_nothing(ckpt, tmp_path):
    # the genuine fnn arrays (hidden 256) under a spec claiming hidden=200000 (a 630 MB model): refused
    # from the headers before anything is built
    p, _ = ckpt
    good = _entries(p)
    info = _info(good)
    q = _write_zip(tmp_path / "lie.npz", _with_info(good, {**info, "spec": {**info["spec"],
                                                                           "options": {"hidden": 200000}}}))
    rss, out = peak_rss_mb("""
from fastmnist.checkpoint import load_checkpoint, CheckpointError
try:
    load_checkpoint(sys.argv[1])
except CheckpointError as e:
    print("REFUSED", e)
""", q)
    assert "REFUSED" in out and "shape mismatch for 'fc1.weight'" in out and "(200000, 784)" in out
    assert rss < 250, f"peak RSS {rss:.0f} MB"


def test_predict_cli_bad_checkpoints_one_line(ckpt, tmp_path):
    p, _ = ckpt
    img = tmp_path / "x-idx3-ubyte"
    img.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(784))
    r = run_cli("predict", p, img)
    assert r.returncode == 0 and r.stdout.startswith(f"{img}:0: "), r.stderr
    data = p.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("hello")
    b = bytearray(data)
    b[len(data) // 2] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(b))
    for bad in ["trunc.npz", "text.npz", "flip.npz"]:
        assert_one_line_error(run_cli("predict", tmp_path / bad, img), "fastmnist predict: error:", bad)
    assert_one_line_error(run_cli("predict", tmp_path, img), "is a directory")


# ----------------------------------------------------------------------------------- divergence


def _small(mnist, n=640):
    from fastmnist.data import subsample

    return subsample(mnist[0], mnist[1], n, seed=0)


def test_exploding_loss_stops_training(mnist):
    from fastmnist import optim
    from fastmnist.train import Trainer, TrainingDiverged

    x, y = _small(mnist)
    m = models.build("fnn", seed=0)
    tr = Trainer(m, optim.Adam(m.parameters(), lr=1e6), batch_size=32, epochs=2, quiet=True)
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1, batch \d+/20: the loss over the last 10 "
                                               r"batches averages .*lower the learning rate \(--lr"):
        tr.fit(x, y)


class _LrSpikeAt:
    """A learning-rate schedule that sets the rate to 1e300 for step ``k`` (float32 inf in the kernels)."""

    def __init__(self, opt, k):
        self.opt, self.k, self.calls = opt, k, 0

    def step(self):
        self.calls += 1
        if self.calls == self.k:
            self.opt.lr = 1e300


def test_non_finite_parameters_after_last_step_stop_training(mnist):
    # the last step of the run overflows the weights: no later forward pass sees a loss, the parameter
    # check catches it
    from fastmnist import optim
    from fastmnist.train import Trainer, TrainingDiverged

    x, y = _small(mnist)
    m = models.build("logreg", seed=0)
    opt = optim.SGD(m.parameters(), lr=0.01)
    tr = Trainer(m, opt, batch_size=64, epochs=1, scheduler=_LrSpikeAt(opt, 9), quiet=True)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 10/10: parameter 'fc1\.(weight|bias)' holds NaN"):
        tr.fit(x, y)


def test_named_recipes_do_not_trip_the_divergence_check(mnist):
    # the first (at most two) epochs of each recipe on 640 real images; the full study (3,000 images,
    # whole recipes: a 10-batch mean of at most 4.4x the first loss) is in _DivergenceCheck's docstring
    from fastmnist import augment
    from fastmnist.train import Trainer

    x, y = _small(mnist, 640)
    for name in models.names():
        r = models.recipe(name)
        m = models.build(name, seed=0)
        opt = models.make_optimizer(r, m.parameters())
        epochs = min(r.epochs, 2)
        r.epochs = epochs
        sched = models.make_scheduler(r, opt, (len(y) + r.batch_size - 1) // r.batch_size)
        aug = augment.from_spec(r.augment) if r.augment else None
        h = Trainer(m, opt, loss=r.loss, batch_size=r.batch_size, epochs=epochs, augment=aug, scheduler=sched,
                    normalize=r.normalize, quiet=True).fit(x, y)
        assert len(h) == epochs and np.isfinite(h.train_loss).all(), name


def test_cli_train_diverging_exits_1(mnist_dir, tmp_path):
    r = run_cli("train", "logreg", "--lr", "1e6", "--epochs", "2", "--train-size", "1000", "--test-size", "100",
                "--data", mnist_dir, "--quiet", "--no-figures", "--out", tmp_path / "run")
    assert_one_line_error(r, "fastmnist train: error: training diverged at epoch 1", "lower the learning rate")


# ----------------------------------------------------------------------------------- gzip bomb


def _gzip_bomb(path: Path, header: bytes, zero_mb: int) -> Path:
    """A gzip stream of ``header`` followed by ``zero_mb`` MB of zeros (~1 MB on disk per 1 GB)."""
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(c.compress(header))
        for _ in range(zero_mb):
            f.write(c.compress(chunk))
        f.write(c.flush())
    return path


def test_gzip_bomb_bounded_by_header(tmp_path):
    # 400 MB of zeros behind a header announcing 10 images: read up to 7,840 + 1 bytes, then refused
    bomb = _gzip_bomb(tmp_path / "t10k-images-idx3-ubyte.gz",
                      bytes([0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28]), 400)
    assert bomb.stat().st_size < 2_000_000
    rss, out = peak_rss_mb("""
from fastmnist.data import load_idx, MNISTError
try:
    load_idx(sys.argv[1])
except MNISTError as e:
    print("REFUSED", e)
""", bomb)
    assert "REFUSED" in out and "wrong size" in out
    assert rss < 200, f"peak RSS {rss:.0f} MB"
    # as an MNIST file, the same header is refused before any data is read (10 images, not 10000)
    d = tmp_path
    from fastmnist.data import MNISTError, load_idx

    with pytest.raises(MNISTError, match=r"announces shape \(10, 28, 28\), expected \(10000, 28, 28\)"):
        load_idx(bomb, expect_shape=(10000, 28, 28))
    # predict refuses it with one line
    r = run_cli("predict", d / "nothing.npz", bomb)
    assert r.returncode == 1 and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------------- bad files in the CLI


def _cli_in_process(capsys, *args) -> tuple[int, str]:
    from fastmnist.cli import main

    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Files of the wrong kind or damaged, each named by what it is."""
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.txt").write_text("hello world\n")
    (d / "notes.csv").write_text("hello world\n")
    (d / "empty.npz").write_bytes(b"")
    (d / "empty.npy").write_bytes(b"")
    (d / "empty.csv").write_bytes(b"")
    (d / "text.npz").write_text("hello")
    (d / "text.npy").write_text("hello")
    (d / "binary.csv").write_bytes(b"\xff\xfe\x00\x81")
    (d / "ragged.csv").write_text("1,0.5,0.2\n0,0.1\n")
    np.savez(d / "good.npz", y_true=np.arange(20) % 2, proba=np.random.default_rng(0).random((20, 2)))
    data = (d / "good.npz").read_bytes()
    (d / "trunc.npz").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    (d / "flipped.npz").write_bytes(bytes(flipped))
    np.save(d / "pickle.npy", np.array([object()]), allow_pickle=True)
    np.savez(d / "strlabels.npz", y_true=np.array(["a", "b"]), proba=np.zeros((2, 2)))
    (d / "adir").mkdir()
    return d


@pytest.mark.parametrize("name", ["notes.txt", "notes.csv", "empty.npz", "empty.npy", "empty.csv", "text.npz",
                                  "text.npy", "binary.csv", "ragged.csv", "trunc.npz", "flipped.npz", "pickle.npy",
                                  "strlabels.npz", "adir", "missing.npz"])
def test_roc_bad_scores_file_one_line(bad_files, tmp_path, capsys, name):
    rc, err = _cli_in_process(capsys, "roc", bad_files / name, "--out", tmp_path / "o")
    assert rc == 1 and err.startswith("fastmnist roc: error: ") and err.count("\n") == 1, err
    assert name in err


def test_roc_good_file_and_bad_labels_file(bad_files, tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    rc, _ = _cli_in_process(capsys, "roc", bad_files / "good.npz", "--out", tmp_path / "o")
    assert rc == 0
    d = np.load(bad_files / "good.npz")
    got = json.loads((tmp_path / "o" / "roc.json").read_text())["classes"]["1"]["auc"]
    assert got == pytest.approx(roc_auc_score(d["y_true"], d["proba"][:, 1]), abs=1e-12)
    np.save(tmp_path / "s.npy", d["proba"][:, 1])
    for bad in ["notes.txt", "text.npy", "adir"]:
        rc, err = _cli_in_process(capsys, "roc", tmp_path / "s.npy", "--labels", bad_files / bad, "--out", tmp_path / "o")
        assert rc == 1 and err.count("\n") == 1 and bad in err, err


def test_roc_cli_text_file_subprocess(bad_files, tmp_path):
    # the audit's reproducer, through the installed entry point's code path in a fresh interpreter
    assert_one_line_error(run_cli("roc", bad_files / "notes.txt", "--out", tmp_path / "o"),
                          "fastmnist roc: error:", "holds no rows of numbers")


def test_predict_bad_inputs_one_line(ckpt, bad_files, tmp_path, capsys):
    import struct

    p, _ = ckpt
    # a PNG whose header claims 30000 x 30000 pixels (PIL's decompression-bomb guard)
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))

    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
                                        + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    (tmp_path / "labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]))
    (tmp_path / "f32-idx3-ubyte").write_bytes(bytes([0, 0, 0x0D, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28])
                                              + np.zeros(784, ">f4").tobytes())
    cases = [(bad_files / "notes.txt", "not a readable image"), (bad_files / "adir", "is a directory"),
             (tmp_path / "bomb.png", "not a readable image"), (tmp_path / "missing.png", "does not exist"),
             (tmp_path / "labels-idx1-ubyte", "expected (N, 28, 28)"), (tmp_path / "f32-idx3-ubyte", "uint8")]
    for path, msg in cases:
        rc, err = _cli_in_process(capsys, "predict", p, path)
        assert rc == 1 and err.startswith("fastmnist predict: error: ") and err.count("\n") == 1, err
        assert msg in err and path.name in err, err
    for limit in ["0", "-1"]:
        rc, err = _cli_in_process(capsys, "predict", p, tmp_path / "labels-idx1-ubyte", "--limit", limit)
        assert rc == 1 and "--limit must be >= 1" in err


def test_data_bad_directory_one_line(bad_files, tmp_path, mnist_dir, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rc, err = _cli_in_process(capsys, "data", "--data", bad_files / "notes.txt", "--no-download")
    assert rc == 1 and "is not a directory" in err and err.count("\n") == 1
    d = tmp_path / "d"
    d.mkdir()
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]:
        (d / name).symlink_to(mnist_dir / name)
    (d / "t10k-labels-idx1-ubyte.gz").mkdir()
    rc, err = _cli_in_process(capsys, "data", "--data", d, "--no-download")
    assert rc == 1 and "t10k-labels-idx1-ubyte.gz: is a directory" in err and err.count("\n") == 1


def test_atomic_savez_round_trip_deflate_level_1(tmp_path):
    """Compressed run files (predictions.npz) are written with deflate level 1 by our own zip writer:
    np.load must give back every array exactly (dtype, shape, 0-d values) and the members must be
    compressed, as numpy's own savez_compressed file would be."""
    from fastmnist._io import atomic_savez
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8) * (rng.random((50, 28, 28)) < 0.2)
    arrays = {"images": digits.astype(np.uint8),                 # mostly zero, as MNIST digits are
              "proba": rng.random((50, 10), dtype=np.float32), "y": rng.integers(0, 10, 50),
              "interrupted": np.bool_(True), "empty": np.zeros((0, 3), np.float64),
              "fortran": np.asfortranarray(rng.random((4, 5)))}
    atomic_savez(tmp_path / "a.npz", **arrays)
    np.savez_compressed(tmp_path / "ref.npz", **arrays)
    with np.load(tmp_path / "a.npz") as got, np.load(tmp_path / "ref.npz") as ref:
        assert sorted(got.files) == sorted(ref.files)
        for k in ref.files:
            assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape
            np.testing.assert_array_equal(got[k], ref[k])
    with zipfile.ZipFile(tmp_path / "a.npz") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
        assert z.getinfo("images.npy").compress_size < 50 * 28 * 28
    with pytest.raises(ValueError):   # object arrays are refused, as np.load would refuse them
        atomic_savez(tmp_path / "b.npz", bad=np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "b.npz").exists()
