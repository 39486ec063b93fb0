"""``fastmnist extract`` resumable and sharded: a run killed with SIGKILL and resumed, two shards
run one after the other, and two ranks under torchrun all give .mat files byte-identical to one
uninterrupted run's (same settings, eager, 1 thread); other settings are refused on resume.

A ResNet-50 at 64 px on 96 + 32 real digits, batches and chunks of 8 (16 chunks), keeps it quick."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import fastmnist_path

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("scipy.io")

from fastmnist import cli  # noqa: E402

N_CHUNKS = 16


def _args(weights, mnist_dir, out, *extra):
    return ["extract", "--weights", str(weights), "--size", "64", "--limit", "96", "--limit-test", "32",
            "--data", str(mnist_dir), "--device", "cpu", "--batch-size", "8", "--chunk-size", "8",
            "--compile", "off", "--threads", "1", "--quiet", "--out", str(out), *extra]


def _env():
    env = dict(os.environ, PYTHONPATH=fastmnist_path() + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    return env


def _mats(out):
    return {s: (Path(out) / f"mnist_{s}.mat").read_bytes() for s in ("train", "test")}


@pytest.fixture
def one_thread():
    """cli.main(--threads 1) sets the thread counts of the whole test process: restore them."""
    import fastmnist

    t, f = torch.get_num_threads(), fastmnist.get_num_threads()
    yield
    torch.set_num_threads(t)
    fastmnist.set_num_threads(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, resnet_weights, mnist_dir):
    """The .mat bytes of one uninterrupted run."""
    import fastmnist

    out = tmp_path_factory.mktemp("ref")
    t, f = torch.get_num_threads(), fastmnist.get_num_threads()
    try:
        assert cli.main(_args(resnet_weights, mnist_dir, out)) == 0
    finally:
        torch.set_num_threads(t)
        fastmnist.set_num_threads(f)
    assert not list((out / "parts").glob("*.npz"))  # chunks are deleted after the merge
    return _mats(out)


def test_sigkill_then_resume(reference, resnet_weights, mnist_dir, tmp_path, one_thread, capsys):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fastmnist"] + _args(resnet_weights, mnist_dir, out),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = out / "parts"
    deadline = time.monotonic() + 300
    while not list(parts.glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = list(parts.glob("*.npz"))
    assert 1 <= len(done) < N_CHUNKS, len(done)  # killed mid-way
    assert not (out / "mnist_train.mat").exists()
    # a torn chunk from an earlier kill: a stale temporary file of atomic_write
    (parts / ".test_000024_000032.npzabcd.tmp").write_bytes(b"torn")
    assert cli.main(_args(resnet_weights, mnist_dir, out)) == 0
    assert f"{N_CHUNKS * 8 - 8 * len(done)} images" in capsys.readouterr().out  # only the missing chunks ran
    assert _mats(out) == reference
    assert not list(parts.glob(".*.tmp"))
    # once finished, the same command does nothing and says so
    assert cli.main(_args(resnet_weights, mnist_dir, out)) == 0
    assert "already complete" in capsys.readouterr().out


def test_resume_with_other_settings_is_refused(resnet_weights, mnist_dir, tmp_path, one_thread, capsys):
    out = tmp_path / "run"
    assert cli.main(_args(resnet_weights, mnist_dir, out, "--shard", "1/8")) == 0
    capsys.readouterr()
    a = _args(resnet_weights, mnist_dir, out)
    for flag, value, what in (("--size", "96", "size: 64 there, 96 now"),
                              ("--batch-size", "4", "batch_size: 8 there, 4 now"),
                              ("--limit", "80", "n_train: 96 there, 80 now")):
        args = list(a)
        args[args.index(flag) + 1] = value
        assert cli.main(args) == 1
        err = capsys.readouterr().err
        assert "holds a partial extraction with other settings" in err and what in err, err
    assert cli.main(a + ["--no-stride-in-1x1"]) == 1
    assert "stride_in_1x1: True there, False now" in capsys.readouterr().err
    assert cli.main(a + ["--weights", "none"]) == 1
    assert "weights_sha256" in capsys.readouterr().err
    # --overwrite starts over with the new settings
    args = list(a)
    args[args.index("--limit") + 1] = "16"
    args[args.index("--limit-test") + 1] = "8"
    assert cli.main(args + ["--overwrite"]) == 0
    assert "wrote" in capsys.readouterr().out


def test_shards_then_merge(reference, resnet_weights, mnist_dir, tmp_path, one_thread, capsys):
    out = tmp_path / "run"
    assert cli.main(_args(resnet_weights, mnist_dir, out, "--shard", "1/2")) == 0
    assert "8 of 16 chunks done" in capsys.readouterr().out
    assert not (out / "mnist_train.mat").exists()
    assert cli.main(["extract", "--merge", "--out", str(out)]) == 1
    assert "8 of 16 chunks are missing" in capsys.readouterr().err
    assert cli.main(_args(resnet_weights, mnist_dir, out, "--shard", "0/2")) == 0  # the last shard merges
    assert _mats(out) == reference
    assert cli.main(["extract", "--merge", "--out", str(out)]) == 0  # already merged: nothing to do
    for bad in ("2/2", "x", "1/0", "-1/2"):
        assert cli.main(_args(resnet_weights, mnist_dir, out, f"--shard={bad}")) == 1
        assert "shard must be 'I/N'" in capsys.readouterr().err


def test_torchrun_two_ranks(reference, resnet_weights, mnist_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "fastmnist"] + _args(resnet_weights, mnist_dir, out)
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "shard 0/2" in r.stdout and "shard 1/2" in r.stdout
    assert _mats(out) == reference
