"""Every example notebook runs from top to bottom without an error, in quick mode
(FASTMNIST_QUICK=1: small subsets), in a real Jupyter kernel (nbclient, python3 from ipykernel)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import _mnist_dir, _require, fastmnist_path

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_all_five_writeups_have_a_notebook_and_the_generator_matches_them():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import make_notebooks
    finally:
        sys.path.pop(0)
    assert [p.name for p in NOTEBOOKS] == sorted(make_notebooks.NOTEBOOKS) and len(NOTEBOOKS) == 5
    for p in NOTEBOOKS:  # the committed notebooks are what the generator writes
        want = make_notebooks.nb(make_notebooks.NOTEBOOKS[p.name])
        got = nbformat.read(p, as_version=4)
        assert [c.source for c in got.cells] == [c.source for c in want.cells], p.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    data = _require(_mnist_dir(), "MNIST data")
    monkeypatch.setenv("FASTMNIST_QUICK", "1")
    monkeypatch.setenv("FASTMNIST_DATA", str(data))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline, as for a user
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([fastmnist_path(), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    if "resnet50" in path.name:
        from conftest import SHARED

        env = os.environ.get("FASTMNIST_WEIGHTS")
        weights = _require(Path(env) if env else SHARED / "weights" / "resnet50_keras_imagenet_tv.pth",
                           "ResNet-50 weights")
        monkeypatch.setenv("FASTMNIST_WEIGHTS", str(weights))
    book = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    images = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} showed no figure inline"
