"""The one dispatch: FASTMNIST_ISA lowers every kernel family (each reports the kernel it ran in
build_info()["kernels"]), and the results do not depend on the thread count at any level."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import fastmnist_path, on_isa
import torch

import fastmnist
from fastmnist import _core

LEVELS = [lv for lv in ("generic", "neon", "avx2", "avx512") if lv in fastmnist.build_info()["isa_levels"]]

# runs one op of every family ported to the simd layer, then prints the kernel report
_SCRIPT = r"""
import json, numpy as np, fastmnist
from fastmnist import _core, augment
rng = np.random.default_rng(0)
a = rng.standard_normal((70, 90), dtype=np.float32)
_core._sgemm(a, a.T)
x = rng.standard_normal((4, 8, 28, 28), dtype=np.float32)
y, code = _core.max_pool2d_compact(x, 2)
_core.max_pool2d_compact_backward(np.ones_like(y), code, x.shape, 2)
fastmnist.relu(x)
logits = rng.standard_normal((64, 10), dtype=np.float32)
fastmnist.softmax_cross_entropy(logits, np.arange(64) % 10)
p, g = rng.standard_normal(1000, dtype=np.float32), rng.standard_normal(1000, dtype=np.float32)
_core.adam_step(p, g, np.zeros_like(p), np.zeros_like(p), 1, 1e-3)
_core.logreg_forward(rng.standard_normal((5, 33), dtype=np.float32), rng.standard_normal((10, 33), dtype=np.float32),
                     np.zeros(10, np.float32), None, None, False)
augment.rotate(x[:, :1], 10.0)
fastmnist.linear(a, a[:20])
b = fastmnist.build_info()
print(json.dumps({"dispatch": b["dispatch"], "kernels": b["kernels"]}))
"""

PORTED = ["sgemm", "max_pool2d", "max_pool2d_backward", "activation", "softmax_cross_entropy", "optim", "logreg",
          "augment", "linear"]


@pytest.mark.parametrize("level", LEVELS)
def test_fastmnist_isa_lowers_every_family(level):
    env = dict(os.environ, FASTMNIST_ISA=level, PYTHONPATH=fastmnist_path())
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True).stdout
    rep = json.loads(out.strip().splitlines()[-1])
    assert rep["dispatch"] == level
    for op in PORTED:
        assert rep["kernels"][op].split()[0] == level, (op, rep["kernels"][op])


def test_build_info_reports_levels_and_kernels():
    b = fastmnist.build_info()
    assert b["dispatch"] in b["isa_levels"] and b["isa_levels"][0] == "generic"
    assert set(PORTED) <= set(b["kernels"]) and set(_core.kernel_report()) == set(b["kernels"])
    _core._sgemm(np.ones((3, 4), np.float32), np.ones((4, 5), np.float32))
    assert _core.kernel_report()["sgemm"].startswith(b["dispatch"])


def _start(isa: str, code: str = "import fastmnist; print(fastmnist.build_info()['dispatch'])"):
    env = dict(os.environ, FASTMNIST_ISA=isa, PYTHONPATH=fastmnist_path())
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


@pytest.mark.parametrize("bad", ["sse9", "avx-512", "native"])
def test_unknown_level_is_ignored_with_a_warning(bad):
    r = _start(bad)
    assert r.stdout.strip() == LEVELS[-1]
    assert (f"RuntimeWarning: FASTMNIST_ISA={bad} is not one of generic, neon, avx2, avx512: ignored, "
            f"the kernels run at {LEVELS[-1]}") in r.stderr


def test_level_the_cpu_lacks_is_ignored_with_a_warning():
    lacking = next(lv for lv in ("neon", "avx2", "avx512") if lv not in LEVELS)  # neon on x86, avx2 on ARM
    r = _start(lacking)
    assert r.stdout.strip() == LEVELS[-1]
    assert (f"FASTMNIST_ISA={lacking}: this CPU (or build) cannot run {lacking} kernels (it runs "
            f"{', '.join(LEVELS)}): ignored, the kernels run at {LEVELS[-1]}") in r.stderr
    info = _start(lacking, "from fastmnist.commands.info import info_lines; print(chr(10).join(info_lines()))")
    assert f"warning: FASTMNIST_ISA={lacking}: this CPU (or build) cannot run" in info.stdout


@pytest.mark.parametrize("spelling", ["GENERIC", " generic", "Generic "])
def test_level_names_ignore_case_and_blanks(spelling):
    r = _start(spelling)
    assert r.stdout.strip() == "generic" and "Warning" not in r.stderr


def test_unset_or_empty_level_runs_the_best_without_a_warning():
    r = _start("")
    assert r.stdout.strip() == LEVELS[-1] and r.stderr == ""


@pytest.fixture(params=LEVELS)
def level(request):
    with on_isa(request.param):
        yield request.param


def _with_threads(n, fn):
    prev = fastmnist.get_num_threads()
    fastmnist.set_num_threads(n)
    try:
        return fn()
    finally:
        fastmnist.set_num_threads(prev)


def test_results_independent_of_thread_count(level):
    """Same bits with 1, 2 and 3 threads for every ported family (and correct against torch)."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((300, 257), dtype=np.float32)
    B = rng.standard_normal((257, 190), dtype=np.float32)
    x = rng.standard_normal((64, 16, 28, 28), dtype=np.float32)
    w = rng.standard_normal((128, 784), dtype=np.float32)
    bias = rng.standard_normal(128, dtype=np.float32)
    xf = rng.standard_normal((256, 784), dtype=np.float32)
    logits = rng.standard_normal((4096, 10), dtype=np.float32)
    labels = np.arange(4096) % 10
    p0 = rng.standard_normal(421642, dtype=np.float32)
    g0 = rng.standard_normal(421642, dtype=np.float32)

    def run():
        out = {"sgemm": _core._sgemm(A, B)}
        y, code = _core.max_pool2d_compact(x, 2)
        out["pool"] = y
        out["pool_bwd"] = _core.max_pool2d_compact_backward(y, code, x.shape, 2)
        out["relu"] = fastmnist.relu(x - 0.1)
        out["linear"] = fastmnist.linear(xf, w, bias)
        loss, grad = fastmnist.softmax_cross_entropy(logits, labels)
        out["xent"], out["xent_grad"] = np.float64(loss), grad
        p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        _core.adam_step(p, g0, m, v, 1, 1e-3)
        out["adam"] = p
        out["warp"] = fastmnist.augment.rotate(x[:, :1], 12.0)
        return out

    ref = _with_threads(1, run)
    for n in (2, 3):
        got = _with_threads(n, run)
        for k in ref:
            assert np.array_equal(np.asarray(got[k]), np.asarray(ref[k]), equal_nan=True), (level, n, k)
    # and right: against torch
    np.testing.assert_allclose(ref["sgemm"], (torch.from_numpy(A).double() @ torch.from_numpy(B).double()).numpy(),
                               rtol=1e-4, atol=1e-3)
    tp = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2)
    np.testing.assert_array_equal(ref["pool"], tp.numpy())
    np.testing.assert_allclose(ref["linear"], torch.nn.functional.linear(torch.from_numpy(xf), torch.from_numpy(w),
                                                                         torch.from_numpy(bias)).numpy(),
                               rtol=1e-4, atol=1e-3)
