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


# Shapes for each path of the parallel driver: rows split with the packed B shared by the team
# (few columns, or M > 2N with both operands packed), B read in place (M <= 256, B not transposed)
# with a partial last panel, columns split (few rows; both operands packed with M <= 2N, K in
# blocks of the packed path), last panels of 1-11 rows, K in several equal blocks.
THREAD_SHAPES = [(1024, 40, 300), (300, 200, 784), (64, 784, 256), (70, 1000, 1568), (13, 900, 129),
                 (5, 2000, 64), (256, 784, 64), (600, 33, 513), (300, 520, 600), (1200, 300, 100)]


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_sgemm_parallel_same_bits_for_any_thread_count(isa, ta, tb):
    """sgemm_parallel is correct and gives the same bits with 1, 2 and 3 threads on every level
    (every element is the same sequence of fma whatever the split and the tile that holds it)."""
    import fastmnist

    rng = np.random.default_rng(3)
    before = fastmnist.get_num_threads()
    try:
        for m, n, k in THREAD_SHAPES:
            a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
            out = []
            for t in (1, 2, 3):
                fastmnist.set_num_threads(t)
                out.append(_core._sgemm(a, b, ta, tb, True))
            ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
            assert np.abs(out[0] - ref).max() <= 1e-5 * np.sqrt(k) * max(1.0, np.abs(ref).max()), (m, n, k)
            for o in out[1:]:
                np.testing.assert_array_equal(o, out[0], err_msg=f"{isa} {m}x{n}x{k} ta={ta} tb={tb}")
            np.testing.assert_array_equal(_core._sgemm(a, b, ta, tb, False), out[0])
    finally:
        fastmnist.set_num_threads(before)


def test_copied_b_panels_give_the_bits_of_panels_read_in_place(isa):
    """A non-transposed B that is not packed as a block is read in place when C has fewer than 64
    rows and copied one panel at a time from 64 rows on: the first 63 rows of a 64-row product are
    the same bits as the 63-row product (same fma sequence per element), for a partial last panel
    and K in several blocks too."""
    rng = np.random.default_rng(4)
    for n, k in [(1568, 256), (37, 600), (100, 9)]:
        for ta in (False, True):
            a = rng.standard_normal((k, 64) if ta else (64, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            full = _core._sgemm(a, b, ta, False, False)
            part = _core._sgemm(np.ascontiguousarray(a[:, :63] if ta else a[:63]), b, ta, False, False)
            ref = (a.T if ta else a).astype(np.float64) @ b.astype(np.float64)
            assert np.abs(full - ref).max() <= 1e-5 * np.sqrt(k) * max(1.0, np.abs(ref).max()), (isa, n, k, ta)
            np.testing.assert_array_equal(full[:63], part, err_msg=f"{isa} n={n} k={k} ta={ta}")
