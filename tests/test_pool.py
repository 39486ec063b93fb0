"""max_pool2d forward/backward against torch.nn.functional.max_pool2d and autograd.

Tolerances: forward values and indices must match exactly (a max is exact); gradients must match
exactly except where overlapping windows add several values (rtol 1e-6)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastmnist.functional as fm
from fastmnist import _core
from conftest import cpu_isas, on_isa

# (N, C, H, W), kernel_size, stride, padding
CASES = [
    ((1, 1, 4, 4), 2, None, 0),
    ((64, 16, 28, 28), 2, 2, 0),
    ((3, 5, 7, 9), 2, 2, 0),        # odd, non-square: last row/column dropped
    ((2, 3, 27, 28), 2, None, 0),
    ((2, 3, 14, 14), 2, 2, 1),
    ((2, 2, 9, 8), 3, 1, 0),
    ((2, 2, 9, 8), 3, 1, 1),
    ((2, 2, 11, 10), 3, 2, 1),
    ((1, 4, 10, 13), 3, 3, 0),
    ((1, 4, 10, 13), 3, 3, 1),
    ((2, 3, 8, 8), 2, 1, 0),
    ((2, 3, 8, 11), (2, 3), (1, 2), (1, 1)),
    ((1, 2, 5, 6), (3, 2), (2, 3), (1, 0)),
    ((64, 32, 14, 14), 2, 2, 0),
    ((1, 1, 1, 1), 1, 1, 0),
    ((2, 2, 3, 3), 3, 1, 0),
    ((1, 1, 2, 2), 3, 1, 1),        # no window lies inside the input
    ((1, 2, 5, 600), 3, 1, 1),      # rows longer than the kernel's column chunk
    ((1, 2, 6, 1030), 2, 2, 0),
]


def torch_pool(x, k, s, p, gy=None):
    xt = torch.from_numpy(x).requires_grad_(gy is not None)
    y, i = F.max_pool2d(xt, k, s, p, return_indices=True)
    gx = None
    if gy is not None:
        y.backward(torch.from_numpy(gy))
        gx = xt.grad.numpy()
    return y.detach().numpy(), i.numpy(), gx


def check(x, k, s, p, rng):
    y, idx = fm.max_pool2d(x, k, s, p, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ty, ti, tgx = torch_pool(x, k, s, p, gy)
    assert y.dtype == np.float32 and idx.dtype == np.int64
    assert y.shape == ty.shape
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, ti)
    np.testing.assert_array_equal(fm.max_pool2d(x, k, s, p), ty)  # values-only path
    gx = fm.max_pool2d_backward(gy, idx, x.shape)
    np.testing.assert_allclose(gx, tgx, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_random(shape, k, s, p, rng):
    check(rng.standard_normal(shape).astype(np.float32), k, s, p, rng)


@pytest.mark.parametrize("shape,k,s,p", CASES[:12])
def test_ties(shape, k, s, p, rng):
    check(np.ones(shape, np.float32), k, s, p, rng)  # all equal: the first position wins
    check(rng.integers(0, 3, shape).astype(np.float32), k, s, p, rng)  # many repeated values
    check(np.full(shape, -np.inf, np.float32), k, s, p, rng)


@pytest.mark.parametrize("shape,k,s,p", [CASES[1], CASES[2], CASES[6], CASES[11]])
def test_nan_propagates(shape, k, s, p, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = np.nan
    x.reshape(-1)[:4] = np.nan  # two NaNs in one window: torch keeps the last one's index
    y, idx = fm.max_pool2d(x, k, s, p, return_indices=True)
    ty, ti, _ = torch_pool(x, k, s, p)
    assert np.isnan(y).any()
    np.testing.assert_array_equal(y, ty)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(idx, ti)


@pytest.fixture
def portable():
    """Run with the AVX-512 paths switched off (the portable build's code), then restore them."""
    _core._pool_set_simd(False)
    yield
    _core._pool_set_simd(True)


@pytest.mark.parametrize("shape,k,s,p", [CASES[1], CASES[2], CASES[3], CASES[6], CASES[13]])
def test_portable_paths(shape, k, s, p, rng, portable):
    check(rng.standard_normal(shape).astype(np.float32), k, s, p, rng)
    check(rng.integers(0, 3, shape).astype(np.float32), k, s, p, rng)
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = np.nan
    y, idx = fm.max_pool2d(x, k, s, p, return_indices=True)
    ty, ti, _ = torch_pool(x, k, s, p)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, ti)
    test_backward_indices_outside_2x2_windows(rng)


def test_reference_matches_fast(rng):
    x = rng.standard_normal((4, 6, 28, 28)).astype(np.float32)
    for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 1, 1)]:
        y, i = fm.max_pool2d(x, k, s, p, return_indices=True)
        ry, ri = _core._max_pool2d_reference(x, k, k, s, s, p, p)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(i, ri)


def test_three_dims(rng):
    x = rng.standard_normal((3, 9, 8)).astype(np.float32)
    y, i = fm.max_pool2d(x, 2, return_indices=True)
    ty, ti = F.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(i, ti.numpy())
    gy = np.ones_like(y)
    gx = fm.max_pool2d_backward(gy, i, x.shape)
    assert gx.shape == x.shape and gx.sum() == y.size


def test_non_contiguous(rng):
    base = rng.standard_normal((16, 8, 30, 30)).astype(np.float32)
    for x in [base.transpose(1, 0, 2, 3), base[:, :, 1:29, 2:30], base[::2, ::2]]:
        assert not x.flags.c_contiguous
        y, idx = fm.max_pool2d(x, 2, return_indices=True)
        ty, ti = F.max_pool2d(torch.from_numpy(np.ascontiguousarray(x)), 2, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, ti.numpy())
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx = fm.max_pool2d_backward(gy.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2), idx[..., ::1], x.shape)
        _, _, tgx = torch_pool(np.ascontiguousarray(x), 2, 2, 0, gy)
        np.testing.assert_array_equal(gx, tgx)


def test_backward_indices_outside_2x2_windows(rng):
    # OH == H/2 but the pool was 3x3 stride 2 padding 1: the fast backward path must fall back.
    x = rng.standard_normal((2, 3, 28, 28)).astype(np.float32)
    check(x, 3, 2, 1, rng)
    # hand-made indices all pointing at pixel 0 (a valid scatter-add)
    gy = rng.standard_normal((2, 3, 14, 14)).astype(np.float32)
    gx = fm.max_pool2d_backward(gy, np.zeros(gy.shape, np.int64), x.shape)
    np.testing.assert_allclose(gx[:, :, 0, 0], gy.sum(axis=(2, 3)), rtol=1e-5)
    assert np.count_nonzero(gx.reshape(6, -1)[:, 1:]) == 0


def test_backward_index_dtypes(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, idx = fm.max_pool2d(x, 2, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ref = fm.max_pool2d_backward(gy, idx, x.shape)
    np.testing.assert_array_equal(fm.max_pool2d_backward(gy, idx.astype(np.int32), list(x.shape)), ref)


def test_errors(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(TypeError, match="x must be float32"):
        fm.max_pool2d(x.astype(np.int32), 2)  # float64 is converted
    with pytest.raises(TypeError, match="x"):
        fm.max_pool2d(x.tolist(), 2)
    with pytest.raises(ValueError, match=r"x must have 4 dimensions.*\(8, 8\)"):
        fm.max_pool2d(x[0, 0], 2)
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        fm.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="stride must be positive"):
        fm.max_pool2d(x, 2, 0)
    with pytest.raises(ValueError, match="padding must be non-negative"):
        fm.max_pool2d(x, 2, 2, -1)
    with pytest.raises(ValueError, match="at most half"):
        fm.max_pool2d(x, 2, 2, 2)
    with pytest.raises(ValueError, match="larger than the input"):
        fm.max_pool2d(x, 9)
    with pytest.raises(TypeError, match="kernel_size"):
        fm.max_pool2d(x, (2, 2, 2))
    y, idx = fm.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(ValueError, match="same shape"):
        fm.max_pool2d_backward(y[:, :, :3], idx, x.shape)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, H\*W\)"):
        fm.max_pool2d_backward(y, idx + 64, x.shape)
    with pytest.raises(ValueError, match=r"indices must lie"):
        fm.max_pool2d_backward(y, idx - 100, x.shape)
    with pytest.raises(TypeError, match="indices must be an integer array"):
        fm.max_pool2d_backward(y, idx.astype(np.float32), x.shape)
    with pytest.raises(TypeError, match="grad_y must be float32"):
        fm.max_pool2d_backward(y.astype(np.float64), idx, x.shape)
    with pytest.raises(ValueError, match="does not match input_shape"):
        fm.max_pool2d_backward(y, idx, (2, 4, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        fm.max_pool2d_backward(y, idx, (8, 8))
    with pytest.raises(TypeError, match="input_shape must be a tuple of ints"):
        fm.max_pool2d_backward(y, idx, 5)
    with pytest.raises(TypeError, match="input_shape must be a tuple of ints"):
        fm.max_pool2d_backward(y, idx, (2, 3, 8, 8.0))
    np.testing.assert_array_equal(fm.max_pool2d_backward(y, idx, np.array(x.shape)),
                                  fm.max_pool2d_backward(y, idx, x.shape))


# ---- compact argmax ---------------------------------------------------------------------------


def compact_to_torch(a, x_shape, y_shape, k, s, p):
    """PyTorch's flat indices from window offsets (independent NumPy arithmetic)."""
    kh, kw = (k, k) if isinstance(k, int) else k
    s = k if s is None else s
    sh, sw = (s, s) if isinstance(s, int) else s
    ph, pw = (p, p) if isinstance(p, int) else p
    oh = np.arange(y_shape[-2])[:, None]
    ow = np.arange(y_shape[-1])[None, :]
    a = a.astype(np.int64)
    return (oh * sh - ph + a // kw) * x_shape[-1] + (ow * sw - pw + a % kw)


@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_compact_matches_torch(shape, k, s, p, rng):
    for x in [rng.standard_normal(shape).astype(np.float32), rng.integers(0, 3, shape).astype(np.float32)]:
        y, a = fm.max_pool2d_compact(x, k, s, p)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        ty, ti, tgx = torch_pool(x, k, s, p, gy)
        assert a.dtype == np.uint8 and a.shape == ty.shape
        np.testing.assert_array_equal(y, ty)
        np.testing.assert_array_equal(compact_to_torch(a, x.shape, y.shape, k, s, p), ti)
        gx = fm.max_pool2d_compact_backward(gy, a, x.shape, k, s, p)
        np.testing.assert_allclose(gx, tgx, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape,k,s,p", [CASES[1], CASES[2], CASES[3], CASES[6], CASES[13]])
def test_compact_portable_and_nan(shape, k, s, p, rng, portable):
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = np.nan
    y, a = fm.max_pool2d_compact(x, k, s, p)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ty, ti, tgx = torch_pool(x, k, s, p, gy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(compact_to_torch(a, x.shape, y.shape, k, s, p), ti)
    np.testing.assert_allclose(fm.max_pool2d_compact_backward(gy, a, x.shape, k, s, p), tgx, rtol=1e-6, atol=1e-7)


def test_compact_simd_equals_portable(rng):
    x = rng.standard_normal((8, 4, 28, 27)).astype(np.float32)
    y, a = fm.max_pool2d_compact(x, 2)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    g = fm.max_pool2d_compact_backward(gy, a, x.shape, 2)
    _core._pool_set_simd(False)
    try:
        y2, a2 = fm.max_pool2d_compact(x, 2)
        g2 = fm.max_pool2d_compact_backward(gy, a, x.shape, 2)
    finally:
        _core._pool_set_simd(True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(g, g2)


@pytest.mark.parametrize("simd", [True, False])
def test_compact_errors(rng, simd):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, a = fm.max_pool2d_compact(x, 2)
    _core._pool_set_simd(simd)
    try:
        bad = a.copy()
        bad[1, 2, 3, 3] = 4
        with pytest.raises(ValueError, match="window offset outside"):
            fm.max_pool2d_compact_backward(y, bad, x.shape, 2)
        _, a3 = fm.max_pool2d_compact(x, 3, 2, 1)
        bad3 = a3.copy()
        bad3[0, 0, 0, 0] = 0  # top-left of the first window is padding
        with pytest.raises(ValueError, match="inside the padding"):
            fm.max_pool2d_compact_backward(np.ones(a3.shape, np.float32), bad3, x.shape, 3, 2, 1)
    finally:
        _core._pool_set_simd(True)
    with pytest.raises(TypeError, match="argmax must be the uint8 array"):
        fm.max_pool2d_compact_backward(y, a.astype(np.int64), x.shape, 2)
    with pytest.raises(ValueError, match=r"must have shape \(2, 3, 2, 2\).*got \(2, 3, 4, 4\)"):
        fm.max_pool2d_compact_backward(y, a, x.shape, 3)
    with pytest.raises(ValueError, match="kernel_size area <= 256"):
        fm.max_pool2d_compact(np.zeros((1, 1, 20, 20), np.float32), 17)
    with pytest.raises(ValueError, match="stride must be positive"):
        fm.max_pool2d_compact(x, 2, 0)
    with pytest.raises(TypeError, match="x must be float32"):
        fm.max_pool2d_compact(x.astype(np.float64), 2)


# ---- the flat-stream backward (2x2 / stride 2 pools tiling the input: H = 2*OH, W = 2*OW) ----
# grad_x of the whole tensor is written in one pass whose pattern repeats every lcm(4*OW, 16)
# floats. The widths cover every period length (1..8 vectors of 16), periods spanning several
# rows and planes (OW < 8), a partial last period, planes shorter than a period (falls back),
# and widths whose period is too long (OW = 9, 18, 33: the row kernels run).
STREAM_SHAPES = [
    (1, 1, 2, 2), (1, 3, 2, 4), (2, 17, 4, 6), (3, 3, 6, 8), (1, 1, 10, 10), (2, 5, 4, 12),
    (1, 17, 14, 14), (2, 3, 2, 14), (1, 1, 16, 16), (3, 2, 6, 18), (1, 3, 20, 20), (2, 2, 8, 24),
    (1, 1, 6, 28), (5, 3, 28, 28), (1, 2, 4, 32), (1, 1, 6, 40), (2, 1, 8, 48), (1, 1, 4, 56),
    (1, 1, 4, 64), (1, 1, 4, 66), (1, 1, 2, 128), (3, 1, 10, 14),
    (1, 2, 1024, 64), (1, 1, 1026, 64),  # planes of exactly 2^16 elements (16-bit positions), and more
    (11, 17, 14, 14), (3, 16, 28, 28),  # large enough to run on several threads
]


def _has_stream():
    """Whether this CPU runs the stream kernel (AVX-512 VBMI): a valid call leaves the counter alone
    and a stray index moves it."""
    x = np.zeros((1, 1, 4, 4), np.float32)
    y, idx = fm.max_pool2d(x, 2, return_indices=True)
    before = _core._pool_stream_fallbacks()
    fm.max_pool2d_backward(y, np.zeros_like(idx), x.shape)
    return _core._pool_stream_fallbacks() > before


def stream_inputs(shape, rng):
    yield rng.standard_normal(shape).astype(np.float32)
    yield rng.integers(0, 3, shape).astype(np.float32)  # ties: the first maximum wins
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.1] = -np.inf
    yield x
    yield np.full(shape, -np.inf, np.float32)


def check_stream(x, rng):
    fallbacks = _core._pool_stream_fallbacks()
    y, idx = fm.max_pool2d(x, 2, return_indices=True)
    y2, a = fm.max_pool2d_compact(x, 2)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ty, ti, tgx = torch_pool(x, 2, 2, 0, gy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(y2, ty)
    np.testing.assert_array_equal(idx, ti)
    np.testing.assert_array_equal(compact_to_torch(a, x.shape, y.shape, 2, 2, 0), ti)
    np.testing.assert_array_equal(fm.max_pool2d_backward(gy, idx, x.shape), tgx)
    np.testing.assert_array_equal(fm.max_pool2d_compact_backward(gy, a, x.shape, 2), tgx)
    # NaN gradients land at their argmax only
    gy[..., 0] = np.nan
    ty, ti, tgx = torch_pool(x, 2, 2, 0, gy)
    np.testing.assert_array_equal(fm.max_pool2d_backward(gy, idx, x.shape), tgx)
    np.testing.assert_array_equal(fm.max_pool2d_compact_backward(gy, a, x.shape, 2), tgx)
    assert _core._pool_stream_fallbacks() == fallbacks  # valid argmax never leaves the fast path


@pytest.mark.parametrize("shape", STREAM_SHAPES, ids=str)
def test_stream_backward(shape, rng):
    for x in stream_inputs(shape, rng):
        check_stream(x, rng)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stream_backward_thread_splits(threads, rng):
    import fastmnist

    old = fastmnist.get_num_threads()
    fastmnist.set_num_threads(threads)
    try:
        for shape in [(11, 17, 14, 14), (3, 16, 28, 28), (7, 5, 14, 26)]:
            check_stream(rng.standard_normal(shape).astype(np.float32), rng)
    finally:
        fastmnist.set_num_threads(old)


def test_stream_backward_portable_equal(rng, portable):
    for shape in [(2, 17, 4, 6), (5, 3, 28, 28), (1, 17, 14, 14), (3, 2, 6, 18)]:
        check_stream(rng.standard_normal(shape).astype(np.float32), rng)


def test_stream_backward_non_contiguous(rng):
    x = rng.standard_normal((4, 6, 14, 14)).astype(np.float32)
    y, idx = fm.max_pool2d(x, 2, return_indices=True)
    _, a = fm.max_pool2d_compact(x, 2)
    gy = rng.standard_normal((6, 4, 7, 7)).astype(np.float32).transpose(1, 0, 2, 3)
    idx_nc = np.asfortranarray(idx)
    a_nc = np.asfortranarray(a)
    assert not gy.flags.c_contiguous and not idx_nc.flags.c_contiguous and not a_nc.flags.c_contiguous
    _, _, tgx = torch_pool(x, 2, 2, 0, np.ascontiguousarray(gy))
    np.testing.assert_array_equal(fm.max_pool2d_backward(gy, idx_nc, x.shape), tgx)
    np.testing.assert_array_equal(fm.max_pool2d_compact_backward(gy, a_nc, x.shape, 2), tgx)


def test_stream_backward_stray_indices(rng):
    # indices inside the plane but outside their own 2x2 window: a plain scatter-add (as torch's
    # max_pool2d_with_indices_backward), computed by the fallback after the stream detects them
    x = rng.standard_normal((3, 4, 14, 14)).astype(np.float32)
    y, idx = fm.max_pool2d(x, 2, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    for change in [(0, 0, 0, 0, 100), (2, 3, 6, 6, 0), (1, 1, 3, 4, 195)]:
        bad = idx.copy()
        bad[change[:4]] = change[4]
        ref = np.zeros((12, 196), np.float32)
        np.add.at(ref, (np.arange(12)[:, None], bad.reshape(12, -1)), gy.reshape(12, -1))
        t = torch.ops.aten.max_pool2d_with_indices_backward(
            torch.from_numpy(gy), torch.from_numpy(x), [2, 2], [2, 2], [0, 0], [1, 1], False, torch.from_numpy(bad))
        np.testing.assert_allclose(fm.max_pool2d_backward(gy, bad, x.shape), t.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(fm.max_pool2d_backward(gy, bad, x.shape).reshape(12, -1), ref, rtol=1e-6, atol=1e-7)
    assert _core._pool_stream_fallbacks() > 0 or not _has_stream()
    # indices beyond the plane, also ones whose low 16 or 32 bits look like a valid position
    for delta in [196, 1 << 16, 1 << 32, -(1 << 32), -1 - int(idx[1, 2, 3, 4])]:
        bad = idx.copy()
        bad[1, 2, 3, 4] += delta
        with pytest.raises(ValueError, match=r"indices must lie in \[0, H\*W\)"):
            fm.max_pool2d_backward(gy, bad, x.shape)


def test_stream_backward_bad_codes(rng):
    x = rng.standard_normal((3, 5, 28, 28)).astype(np.float32)
    y, a = fm.max_pool2d_compact(x, 2)
    for code in [4, 7, 255]:
        bad = a.copy()
        bad[2, 4, 13, 13] = code
        with pytest.raises(ValueError, match="window offset outside"):
            fm.max_pool2d_compact_backward(y, bad, x.shape, 2)


@pytest.mark.parametrize("shape,k,s,p", [CASES[1], CASES[2], CASES[6], CASES[13], ((3, 17, 14, 14), 2, 2, 0),
                                         ((2, 3, 10, 14), 2, 2, 0)])
@pytest.mark.parametrize("simd", [True, False])
def test_compact_backward_fused_relu(shape, k, s, p, simd, rng):
    # relu(x) -> max_pool2d, backward through both with torch autograd, against the fused call
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = 0.0
    x.reshape(-1)[5] = np.nan
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = F.max_pool2d(torch.relu(xt), k, s, p)
    gy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(gy))
    _core._pool_set_simd(simd)
    try:
        y, a = fm.max_pool2d_compact(fm.relu(x), k, s, p)
        gx = fm.max_pool2d_compact_backward(gy, a, x.shape, k, s, p, relu_y=y)
        unfused = fm.max_pool2d_compact_backward(fm.relu_backward(gy, y), a, x.shape, k, s, p)
    finally:
        _core._pool_set_simd(True)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(gx, unfused)
    # torch's relu backward masks where relu(x) <= 0; ours where the pooled value is <= 0: the same
    # positions, since a gradient lands only on its window's maximum (NaN rows compare as NaN)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_compact_backward_fused_relu_errors(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, a = fm.max_pool2d_compact(x, 2)
    with pytest.raises(ValueError, match="grad_y and relu_y must have the same shape"):
        fm.max_pool2d_compact_backward(y, a, x.shape, 2, relu_y=y[:, :2])
    with pytest.raises(TypeError, match="relu_y must be float32"):
        fm.max_pool2d_compact_backward(y, a, x.shape, 2, relu_y=y.astype(np.float64))


# Every ISA's row kernels of the uint8 forward and backward: rows shorter than a vector (their
# stores spill into the rows after them, which must overwrite the spill), rows one lane longer (an
# overlapping last step), odd H / W (an uncovered last row / column), NaN, the ReLU fused into the
# backward, several thread splits.
ROW_SHAPES = [(1, 1, 2, 2), (3, 1, 2, 4), (2, 3, 6, 6), (5, 2, 14, 14), (1, 7, 4, 10), (2, 3, 2, 16),
              (2, 2, 4, 18), (3, 2, 6, 30), (1, 3, 4, 32), (1, 2, 4, 34), (2, 2, 5, 15), (1, 3, 7, 3),
              (2, 2, 3, 34), (9, 8, 28, 28), (17, 5, 14, 14)]


@pytest.mark.parametrize("isa", cpu_isas())
def test_compact_rows_every_isa(isa, rng):
    import fastmnist

    old = fastmnist.get_num_threads()
    with on_isa(isa):
        try:
            for shape in ROW_SHAPES:
                x = rng.standard_normal(shape).astype(np.float32)
                x[rng.random(shape) < 0.1] = 0.0
                x[rng.random(shape) < 0.02] = np.nan
                xt = torch.from_numpy(x).requires_grad_(True)
                yt = F.max_pool2d(torch.relu(xt), 2)
                gy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
                yt.backward(torch.from_numpy(gy))
                ty, ti, tgx = torch_pool(x, 2, 2, 0, gy)
                for threads in (1, 2, 3):
                    fastmnist.set_num_threads(threads)
                    y, a = fm.max_pool2d_compact(fm.relu(x), 2)
                    np.testing.assert_array_equal(y, yt.detach().numpy())
                    y0, a0 = fm.max_pool2d_compact(x, 2)
                    np.testing.assert_array_equal(y0, ty)
                    np.testing.assert_array_equal(fm.max_pool2d(x, 2), ty)
                    np.testing.assert_array_equal(compact_to_torch(a0, x.shape, ty.shape, 2, 2, 0), ti)
                    np.testing.assert_array_equal(fm.max_pool2d_compact_backward(gy, a0, x.shape, 2), tgx,
                                                  err_msg=f"{isa} {shape} threads {threads}")
                    np.testing.assert_array_equal(fm.max_pool2d_compact_backward(gy, a, x.shape, 2, relu_y=y),
                                                  xt.grad.numpy(), err_msg=f"{isa} {shape} relu threads {threads}")
        finally:
            fastmnist.set_num_threads(old)
