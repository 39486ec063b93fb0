"""fm::sgemm (blocked, packed, runtime-dispatched micro-kernels) against NumPy in float64.

Tolerance: max|C - C_ref| <= 1e-5 * K**0.5 * max(1, max|C_ref|) (float32 accumulation of K products)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import on_isa

from fastmnist import _core

SIZES = [(1, 1, 1), (7, 33, 129), (129, 7, 33), (33, 129, 7), (1, 129, 33), (64, 1, 300),
         (300, 17, 1), (257, 130, 513), (8, 32, 256), (97, 600, 260)]
ISAS = [i for i in ("generic", "avx2", "avx512")]


@pytest.fixture(params=ISAS)
def isa(request):
    with on_isa(request.param):
        yield request.param


def test_isa_name():
    assert _core.gemm_isa() in ("generic", "avx2", "avx512")
    with pytest.raises(ValueError, match="isa"):
        _core._set_gemm_isa("sse9")


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_sgemm_matches_numpy(isa, ta, tb, parallel):
    rng = np.random.default_rng(1)
    for m, n, k in SIZES:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        c = _core._sgemm(a, b, ta, tb, parallel)
        assert c.shape == (m, n) and c.dtype == np.float32
        tol = 1e-5 * np.sqrt(k) * max(1.0, np.abs(ref).max())
        assert np.abs(c - ref).max() <= tol, (isa, ta, tb, m, n, k)


def test_sgemm_noncontiguous_and_errors():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 70), dtype=np.float32)[:, ::2]  # strided view
    b = np.asfortranarray(rng.standard_normal((35, 9), dtype=np.float32))
    c = _core._sgemm(a, b)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="inner dimensions"):
        _core._sgemm(a, b.T)
    with pytest.raises(TypeError, match="float32"):
        _core._sgemm(a.astype(np.float64), b)
