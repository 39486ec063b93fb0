"""Shared fixtures. MNIST comes from FASTMNIST_DATA or ../shared/mnist beside the checkout; under
CI=true a missing data directory is a failure, not a skip."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@contextlib.contextmanager
def on_isa(isa):
    """Runs the block with the kernels of instruction-set level ``isa`` (FASTMNIST_ISA's names) and
    restores the previous level; skips the test where this CPU lacks the level."""
    from fastmnist import _core

    try:
        prev = _core._set_gemm_isa(isa)
    except ValueError:
        pytest.skip(f"CPU lacks {isa}")
    try:
        yield isa
    finally:
        _core._set_gemm_isa(prev)


def cpu_isas() -> list:
    """The instruction-set levels this CPU runs, lowest first."""
    import fastmnist

    return list(fastmnist.build_info()["isa_levels"])


def fastmnist_path() -> str:
    """The sys.path entry this test session's fastmnist was imported from: the source tree's python/
    in a developer build, site-packages after ``pip install``. Subprocesses put it first on PYTHONPATH so
    that they run the same build (the source tree holds no compiled module after a plain install)."""
    import fastmnist

    return str(Path(fastmnist.__file__).resolve().parents[1])


def _mnist_dir() -> Path | None:
    env = os.environ.get("FASTMNIST_DATA")
    for cand in ([Path(env)] if env else []) + [SHARED / "mnist"]:
        if (cand / "train-labels-idx1-ubyte.gz").exists() or (cand / "train-labels-idx1-ubyte").exists():
            return cand
    return None


def _require(path: Path | None, what: str) -> Path:
    if path is None or not path.exists():
        msg = f"{what} not found (set FASTMNIST_DATA or put ../shared beside the checkout)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Directory holding the genuine MNIST IDX files."""
    return _require(_mnist_dir(), "MNIST data")


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """(x_train, y_train, x_test, y_test) uint8 arrays, loaded once per session."""
    from fastmnist.data import load_mnist

    return load_mnist(mnist_dir, download=False)


@pytest.fixture(scope="session")
def resnet_weights() -> Path:
    """The shared ImageNet ResNet-50 state_dict (see ../shared/weights/WEIGHTS.md)."""
    p = SHARED / "weights" / "resnet50_keras_imagenet_tv.pth"
    env = os.environ.get("FASTMNIST_WEIGHTS")
    return _require(Path(env) if env else p, "ResNet-50 weights")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
