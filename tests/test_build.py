"""The package itself: thread control, build information, `fastmnist info`, torch beside fastmnist."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fastmnist


def _py(code: str, **env) -> str:
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, check=True).stdout


def test_threads_roundtrip():
    n = fastmnist.get_num_threads()
    try:
        fastmnist.set_num_threads(1)
        assert fastmnist.get_num_threads() == 1
        fastmnist.set_num_threads(3)
        assert fastmnist.get_num_threads() == 3
    finally:
        fastmnist.set_num_threads(n)
    with pytest.raises(ValueError, match="n must be >= 1"):
        fastmnist.set_num_threads(0)


def test_omp_num_threads_honoured():
    assert _py("import fastmnist; print(fastmnist.get_num_threads())", OMP_NUM_THREADS="3").strip() == "3"


@pytest.mark.parametrize("order", ["torch first", "fastmnist first"])
def test_torch_and_fastmnist_in_one_process(order):
    # two OpenMP runtimes (torch bundles its own) must coexist; conv2d must agree with torch after both load
    imports = "import torch, fastmnist" if order == "torch first" else "import fastmnist, torch"
    code = f"""{imports}
import numpy as np
torch.set_num_threads(2); fastmnist.set_num_threads(2)
a = np.random.default_rng(0).standard_normal((64, 33)).astype(np.float32)
b = np.random.default_rng(1).standard_normal((33, 17)).astype(np.float32)
c = fastmnist._core._sgemm(a, b)
print(float(np.abs(c - (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()).max()))
"""
    assert float(_py(code)) < 1e-4


def test_build_info_and_info_command():
    b = fastmnist.build_info()
    assert b["version"] == fastmnist.__version__ != ""
    assert "-O3" in b["build_flags"]
    out = subprocess.run([sys.executable, "-m", "fastmnist", "info", "--threads", "3"], capture_output=True,
                         text=True, check=True).stdout
    assert f"fastmnist {fastmnist.__version__}" in out
    assert "OpenMP: yes" in out and "threads: 3" in out
    assert "torch:" in out and "compiler:" in out
    assert f"kernel paths: {fastmnist._core.gemm_isa()}" in out


def test_info_reports_forced_isa():
    # FASTMNIST_ISA lowers the run-time kernel choice; info must report the path actually used
    env = dict(os.environ, FASTMNIST_ISA="generic")
    out = subprocess.run([sys.executable, "-m", "fastmnist", "info"], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert "kernel paths: generic" in out
    # the same switch governs the other kernel families (one meaning of FASTMNIST_ISA everywhere)
    code = "import fastmnist; print(fastmnist._core.logreg_kernel_path())"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert got.stdout.strip() == "generic"
    assert fastmnist.build_info()["dispatch"] == fastmnist._core.gemm_isa()


def test_checkpoint_functions_exported():
    from fastmnist import checkpoint

    assert fastmnist.save_checkpoint is checkpoint.save_checkpoint
    assert fastmnist.load_checkpoint is checkpoint.load_checkpoint
    assert {"save_checkpoint", "load_checkpoint"} <= set(dir(fastmnist))


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        fastmnist.nonexistent  # noqa: B018


_STEP_FAULTS = """
import resource, sys, numpy as np, fastmnist
from fastmnist import models
m = models.build("fast")
x = np.random.default_rng(0).random((256, 1, 28, 28), dtype=np.float32)
def step():
    y = m.forward(x)
    m.backward(np.ones_like(y) / y.size)
for _ in range(3):
    step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 10, fastmnist.build_info()["malloc"], sep="|")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc thresholds and ru_minflt are Linux's")
def test_training_steps_do_not_refault_their_buffers():
    """A `fast` training step at batch 256 frees and reallocates activations of 3-14 MB. With glibc's
    default thresholds and numpy's allocator they once went back to the kernel every step (500-800 minor
    page faults per step on AVX2/AVX-512, a third of `fastmnist train fast`'s time on AVX2). Two things
    keep them mapped now, each enough alone: the module raises glibc's thresholds at import
    (FASTMNIST_MALLOC=0 keeps the defaults), and kernel outputs of 2 MiB or more come from the output
    pool (FASTMNIST_OUTPUT_POOL=0 turns it off). The check that this test sees refaults at all: with
    glibc told to map every block of 128 KiB or more afresh (MALLOC_MMAP_THRESHOLD_, which also keeps
    the module's thresholds off) and no pool, thousands per step; the pool alone removes most of them
    (the rest are numpy arrays of the Python layer)."""
    tuned, setting = _py(_STEP_FAULTS, OMP_NUM_THREADS="2").strip().split("|")
    assert setting.startswith("mmap threshold"), setting
    assert float(tuned) < 50, f"{tuned} page faults per step"
    # without the pool numpy's allocations still fault now and then (35-86 per step between runs)
    no_pool, _ = _py(_STEP_FAULTS, OMP_NUM_THREADS="2", FASTMNIST_OUTPUT_POOL="0").strip().split("|")
    assert float(no_pool) < 200, f"{no_pool} page faults per step with the thresholds but no pool"
    pool_only, setting = _py(_STEP_FAULTS, OMP_NUM_THREADS="2", FASTMNIST_MALLOC="0").strip().split("|")
    assert setting.startswith("glibc defaults"), setting
    assert float(pool_only) < 50, f"{pool_only} page faults per step with the pool but glibc's defaults"
    fresh, setting = _py(_STEP_FAULTS, OMP_NUM_THREADS="2", MALLOC_MMAP_THRESHOLD_="131072",
                         FASTMNIST_OUTPUT_POOL="0").strip().split("|")
    assert setting == "as the environment sets it", setting
    assert float(fresh) > 1000, f"{fresh} page faults per step with every array mapped afresh"
    fresh_pool, _ = _py(_STEP_FAULTS, OMP_NUM_THREADS="2", MALLOC_MMAP_THRESHOLD_="131072").strip().split("|")
    assert float(fresh_pool) < float(fresh) / 2, f"pool: {fresh_pool} page faults per step, without: {fresh}"
    setting = _py("import fastmnist; print(fastmnist.build_info()['malloc'])",
                  GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000000").strip()
    assert setting == "as the environment sets it"
