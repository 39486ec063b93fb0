"""Augmentation warps against torchvision's tensor path (computed here, on real MNIST digits).

torchvision reference: ``torchvision.transforms.functional.rotate / affine / perspective`` with
``interpolation=BILINEAR`` and the default ``fill=None`` (grid_sample, zeros padding,
align_corners=False). Tolerance: 2e-5 absolute on [0, 1] images (torchvision builds its sampling
grid in float32 and rounds the perspective coefficients to float32; we use float64 matrices).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

import fastmnist
from fastmnist import _core
from fastmnist import augment as A

BIL = InterpolationMode.BILINEAR
TOL = 2e-5


@pytest.fixture(scope="module")
def digits(mnist):
    """64 real test digits as float32 (64, 1, 28, 28) in [0, 1]."""
    return (mnist[2][:64].astype(np.float32) / 255.0)[:, None]


def tv(x):
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("angle", [0.0, 10.0, -23.5, 45.0, 90.0, 180.0, 271.3])
def test_rotate_matches_torchvision(digits, angle):
    ours = A.rotate(digits, angle)
    ref = TF.rotate(tv(digits), angle, interpolation=BIL).numpy()
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)
    assert ours.dtype == np.float32 and ours.shape == digits.shape


@pytest.mark.parametrize("angle,translate,scale,shear", [
    (0.0, (3, -2), 1.0, (0.0, 0.0)),
    (15.0, (0, 0), 0.8, (0.0, 0.0)),
    (-30.0, (1.5, 2.25), 1.25, (10.0, 0.0)),
    (7.0, (-4, 1), 0.9, (-12.0, 8.0)),
])
def test_affine_matches_torchvision(digits, angle, translate, scale, shear):
    ours = A.affine(digits, angle, translate, scale, shear)
    ref = TF.affine(tv(digits), angle, list(translate), scale, list(shear), interpolation=BIL).numpy()
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


def test_non_square_multichannel_and_3d_batches():
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 19, 31)).astype(np.float32)
    for ang in (33.0, -71.0):
        np.testing.assert_allclose(A.rotate(x, ang), TF.rotate(tv(x), ang, interpolation=BIL).numpy(), atol=TOL)
    np.testing.assert_allclose(A.affine(x, 12.0, (2, -1), 1.1, (5.0, -3.0)),
                               TF.affine(tv(x), 12.0, [2, -1], 1.1, [5.0, -3.0], interpolation=BIL).numpy(),
                               atol=TOL)
    sp = [[0, 0], [30, 0], [30, 18], [0, 18]]
    ep = [[2, 3], [27, 1], [29, 16], [4, 17]]
    np.testing.assert_allclose(A.perspective(x, sp, ep),
                               TF.perspective(tv(x), sp, ep, interpolation=BIL).numpy(), atol=TOL)
    # (N, H, W) batches give the same as (N, 1, H, W)
    y = x[:, 0]
    np.testing.assert_array_equal(A.rotate(y, 20.0), A.rotate(y[:, None], 20.0)[:, 0])
    # a non-contiguous view is read correctly
    xt = np.ascontiguousarray(x[:, :, :, ::-1])
    np.testing.assert_array_equal(A.rotate(x[:, :, :, ::-1], 20.0), A.rotate(xt, 20.0))


def test_perspective_matches_torchvision_per_sample(digits):
    t = A.RandomPerspective(distortion_scale=0.6, p=1.0)
    x = digits[:12]
    params = t.get_params(len(x), np.random.default_rng(1), 28, 28)
    ours = t.apply(x, params)
    for i in range(len(x)):
        ref = TF.perspective(tv(x[i]), params["startpoints"][i].astype(int).tolist(),
                             params["endpoints"][i].astype(int).tolist(), interpolation=BIL).numpy()
        np.testing.assert_allclose(ours[i], ref, atol=TOL, rtol=0)


def test_random_transforms_equal_functional_with_their_params(digits):
    """Each random transform = the torchvision functional op with the parameters it drew."""
    x = digits[:10]
    ra = A.RandomAffine(degrees=20, translate=(0.1, 0.2), scale=(0.8, 1.2), shear=(-5, 5, -3, 3))
    p = ra.get_params(len(x), np.random.default_rng(2), 28, 28)
    out = ra(x, np.random.default_rng(2))
    for i in range(len(x)):
        ref = TF.affine(tv(x[i]), float(p["angle"][i]), p["translate"][i].tolist(), float(p["scale"][i]),
                        p["shear"][i].tolist(), interpolation=BIL).numpy()
        np.testing.assert_allclose(out[i], ref, atol=TOL, rtol=0)
    rr = A.RandomRotation(25)
    p = rr.get_params(len(x), np.random.default_rng(3), 28, 28)
    out = rr(x, np.random.default_rng(3))
    for i in range(len(x)):
        ref = TF.rotate(tv(x[i]), float(p["angle"][i]), interpolation=BIL).numpy()
        np.testing.assert_allclose(out[i], ref, atol=TOL, rtol=0)


def test_random_shift_is_exact_zero_filled_roll(digits):
    t = A.RandomShift(3)
    p = t.get_params(len(digits), np.random.default_rng(4), 28, 28)
    out = t(digits, np.random.default_rng(4))
    for i in range(len(digits)):
        dx, dy = p["shift"][i]
        ref = np.zeros_like(digits[i])
        src = digits[i][:, max(0, -dy):28 - max(0, dy), max(0, -dx):28 - max(0, dx)]
        ref[:, max(0, dy):28 - max(0, -dy), max(0, dx):28 - max(0, -dx)] = src
        np.testing.assert_array_equal(out[i], ref)


def test_parameter_ranges_are_respected():
    rng = np.random.default_rng(5)
    n = 20000
    a = A.RandomRotation(12).get_params(n, rng, 28, 28)["angle"]
    assert a.min() >= -12 and a.max() <= 12 and a.min() < -11.9 and a.max() > 11.9
    a = A.RandomRotation((5, 8)).get_params(n, rng, 28, 28)["angle"]
    assert a.min() >= 5 and a.max() <= 8
    p = A.RandomAffine(0, translate=(0.1, 0.05), scale=(0.9, 1.1)).get_params(n, rng, 28, 28)
    tr = p["translate"]
    assert np.all(tr == np.round(tr))
    assert np.abs(tr[:, 0]).max() == 3 and np.abs(tr[:, 1]).max() == 1  # round(2.8), round(1.4)
    assert p["scale"].min() >= 0.9 and p["scale"].max() <= 1.1
    s = A.RandomShift(2).get_params(n, rng, 28, 28)["shift"]
    assert set(np.unique(s)) == {-2, -1, 0, 1, 2}
    pp = A.RandomPerspective(0.5, p=0.3).get_params(n, rng, 28, 28)
    ep, applied = pp["endpoints"], pp["applied"]
    assert abs(applied.mean() - 0.3) < 0.02
    bound = int(0.5 * 14) + 1  # torchvision: int(distortion_scale * half) + 1 (exclusive)
    e = ep[applied]
    assert e[:, [0, 3], 0].max() < bound and e[:, [1, 2], 0].min() >= 28 - bound
    assert e[:, [0, 1], 1].max() < bound and e[:, [2, 3], 1].min() >= 28 - bound
    assert np.all(ep[~applied] == pp["startpoints"][~applied])
    f = A.RandomHorizontalFlip(0.25).get_params(n, rng, 28, 28)["flip"]
    assert abs(f.mean() - 0.25) < 0.02


def test_perspective_p0_and_identity_are_exact(digits):
    np.testing.assert_array_equal(A.RandomPerspective(0.5, p=0.0)(digits, np.random.default_rng(0)), digits)
    np.testing.assert_array_equal(A.rotate(digits, 0.0), digits)
    np.testing.assert_array_equal(A.RandomRotation(0)(digits, np.random.default_rng(0)), digits)


def test_flip_normalize_noise(digits):
    x = digits[:16]
    np.testing.assert_array_equal(A.RandomHorizontalFlip(1.0)(x, np.random.default_rng(0)), np.flip(x, -1))
    np.testing.assert_array_equal(A.RandomHorizontalFlip(0.0)(x, np.random.default_rng(0)), x)
    t = A.RandomHorizontalFlip(0.5)
    f = t.get_params(16, np.random.default_rng(6), 28, 28)["flip"]
    out = t(x, np.random.default_rng(6))
    np.testing.assert_array_equal(out[f], np.flip(x[f], -1))
    np.testing.assert_array_equal(out[~f], x[~f])
    np.testing.assert_allclose(A.Normalize()(x), (x - 0.1307) / 0.3081, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(A.Normalize(0.5, 2.0)(x), (x - 0.5) / 2.0, rtol=1e-6, atol=1e-7)
    noise = np.random.default_rng(7).standard_normal(x.shape, dtype=np.float32)
    np.testing.assert_allclose(A.GaussianNoise(0.2)(x, np.random.default_rng(7)), x + 0.2 * noise, atol=1e-6)
    out = A.GaussianNoise(0.2, clip=True)(x, np.random.default_rng(7))
    np.testing.assert_allclose(out, np.clip(x + 0.2 * noise, 0, 1), atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0


def test_same_seed_same_images_whatever_the_thread_count(digits):
    t = A.from_spec("rotate:15,affine:5:0.1:0.1,shift:2,perspective:0.3:0.7,noise:0.1:clip,hflip,normalize")
    old = fastmnist.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            fastmnist.set_num_threads(n)
            outs.append(t(digits, np.random.default_rng(123)))
    finally:
        fastmnist.set_num_threads(old)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], t(digits, np.random.default_rng(124)))


def test_fast_warp_equals_reference_loop():
    rng = np.random.default_rng(8)
    x = rng.random((5, 2, 17, 23)).astype(np.float32)
    m = A.affine_matrices(17, 23, rng.uniform(-40, 40, 5), rng.uniform(-3, 3, (5, 2)), rng.uniform(0.7, 1.3, 5))
    np.testing.assert_allclose(_core.warp(x, m), _core.warp(x, m, reference=True), atol=1e-5)
    h = A.perspective_matrices(17, 23, [[0, 0], [22, 0], [22, 16], [0, 16]],
                               rng.uniform(-3, 3, (5, 4, 2)) + np.array([[0, 0], [22, 0], [22, 16], [0, 16]]))
    np.testing.assert_allclose(_core.warp(x, h), _core.warp(x, h, reference=True), atol=1e-5)
    # far outside the image (huge zoom-out into nowhere): all zeros, no crash
    far = np.tile(np.array([[1e9, 0, 1e12], [0, 1e9, -1e12], [0, 0, 1]]), (5, 1, 1))
    assert np.all(_core.warp(x, far) == 0)


def test_from_spec():
    c = A.from_spec("rotate:10, perspective:0.2, normalize")
    assert [type(t) for t in c.transforms] == [A.RandomRotation, A.RandomPerspective, A.Normalize]
    assert c.transforms[0].degrees == (-10.0, 10.0) and c.transforms[1].distortion_scale == 0.2
    assert c.transforms[1].p == 0.5
    c = A.from_spec("affine:8:0.1:0.2,shift:2,noise:0.05,hflip:0.3,normalize:0.5:0.25")
    aff, sh, no, fl, nm = c.transforms
    assert aff.degrees == (-8.0, 8.0) and aff.translate == (0.1, 0.1) and aff.scale == (0.8, 1.2)
    assert sh.max_shift == 2 and no.std == 0.05 and no.clip is None and fl.p == 0.3
    assert (nm.mean, nm.std) == (0.5, 0.25)
    assert A.from_spec("") is None and A.from_spec("none") is None and A.from_spec(None) is None
    for bad, match in [("twist:3", "unknown transform"), ("rotate", "missing"), ("rotate:ten", "not a float"),
                       ("shift:1.5", "not a int"), ("rotate:1:2", "too many"), ("noise:0.1:foo", "clip"),
                       ("normalize:0.5", "both"), ("perspective:2", "distortion_scale")]:
        with pytest.raises(ValueError, match=match):
            A.from_spec(bad)


def test_bad_inputs_raise(digits):
    rng = np.random.default_rng(0)
    t = A.RandomRotation(10)
    with pytest.raises(TypeError, match="float32"):
        t(digits.astype(np.float64), rng)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        t(digits[0, 0], rng)
    with pytest.raises(TypeError, match="numpy"):
        t(digits.tolist(), rng)
    with pytest.raises(TypeError, match="Generator"):
        t(digits, 42)
    with pytest.raises(ValueError, match="one value per sample"):
        A.rotate(digits, np.zeros(3))
    with pytest.raises(ValueError, match="mats must have shape"):
        _core.warp(digits, np.zeros((63, 2, 3)))
    with pytest.raises(ValueError, match="mats must have shape"):
        _core.warp(digits, np.zeros((64, 3, 2)))
    m = np.tile(np.eye(3), (64, 1, 1))
    m[5, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        _core.warp(digits, m)
    with pytest.raises(ValueError, match="degenerate"):
        A.perspective(digits, [[0, 0], [27, 0], [27, 27], [0, 27]], [[0, 0], [1, 1], [2, 2], [3, 3]])
    for ctor, match in [(lambda: A.RandomRotation(-5), ">= 0"), (lambda: A.RandomRotation((5, 1)), "lo <= hi"),
                        (lambda: A.RandomAffine(0, translate=(2, 0)), "translate"),
                        (lambda: A.RandomAffine(0, scale=(0, 1)), "scale"),
                        (lambda: A.RandomPerspective(1.5), "distortion_scale"),
                        (lambda: A.RandomPerspective(0.5, p=2), "p must"),
                        (lambda: A.RandomShift(-1), "max_shift"), (lambda: A.GaussianNoise(-1), "std"),
                        (lambda: A.RandomHorizontalFlip(1.5), "p must"), (lambda: A.Normalize(0, 0), "std")]:
        with pytest.raises(ValueError, match=match):
            ctor()
    with pytest.raises(TypeError, match="callable"):
        A.Compose([A.Normalize(), 3])
