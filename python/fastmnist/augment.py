"""Batch data augmentation for float32 image batches, with torchvision's tensor-path geometry.

Every transform is a callable ``t(x, rng) -> new array`` on a whole batch ``x`` of shape
``(N, C, H, W)`` or ``(N, H, W)`` (float32, values in [0, 1] before :class:`Normalize`), with ``rng``
a ``numpy.random.Generator``. Per-sample parameters are drawn in Python from ``rng``
(``t.get_params(n, rng, H, W)``), then one C++ call warps the whole batch (OpenMP over samples), so
the same seed gives the same images whatever the thread count.

Warps are bilinear with zero fill, exactly what ``torchvision.transforms.functional.rotate /
affine / perspective`` do on tensors with ``interpolation=BILINEAR`` and ``fill=None``
(``grid_sample(..., padding_mode="zeros", align_corners=False)``): rotation about the image centre
``((W-1)/2, (H-1)/2)``, positive angles counter-clockwise.

The functional forms take one parameter per sample: :func:`rotate`, :func:`affine`,
:func:`perspective`, :func:`warp_affine`, :func:`warp_perspective`.

``from_spec`` builds a :class:`Compose` from the CLI's ``--augment`` string, e.g.
``"rotate:10,shift:2,perspective:0.2,noise:0.05,normalize"``; see :func:`from_spec`.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from . import _core

__all__ = [
    "Transform", "Compose", "RandomRotation", "RandomAffine", "RandomShift", "RandomPerspective",
    "GaussianNoise", "RandomHorizontalFlip", "Normalize", "from_spec", "SPEC_HELP",
    "rotate", "affine", "perspective", "warp_affine", "warp_perspective",
    "affine_matrices", "perspective_matrices", "MNIST_MEAN", "MNIST_STD",
]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


# ------------------------------------------------------------------------------- input checking

def _batch(x, name: str = "x") -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy float32 array (N, C, H, W) or (N, H, W), got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must be float32 (N, C, H, W) or (N, H, W), got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (N, C, H, W) or (N, H, W), got shape {x.shape}")
    return x


def _per_sample(v, n: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{name} must be a number or one value per sample ({n},), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def _range(v, name: str, symmetric: bool = True, lo_bound: float | None = None) -> tuple[float, float]:
    """A number d -> (-d, d) (symmetric) or a pair (lo, hi)."""
    if isinstance(v, (int, float, np.integer, np.floating)):
        d = float(v)
        if symmetric:
            if d < 0:
                raise ValueError(f"{name} must be >= 0 when a single number, got {d}")
            r = (-d, d)
        else:
            r = (d, d)
    elif isinstance(v, (tuple, list)) and len(v) == 2:
        r = (float(v[0]), float(v[1]))
        if r[0] > r[1]:
            raise ValueError(f"{name} must be (lo, hi) with lo <= hi, got {tuple(v)}")
    else:
        raise ValueError(f"{name} must be a number or a pair (lo, hi), got {v!r}")
    if not all(math.isfinite(t) for t in r):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if lo_bound is not None and r[0] <= lo_bound:
        raise ValueError(f"{name} values must be > {lo_bound}, got {v!r}")
    return r


# ----------------------------------------------------------------------------------- geometry

def affine_matrices(H: int, W: int, angle, translate=(0.0, 0.0), scale=1.0, shear=(0.0, 0.0)) -> np.ndarray:
    """(N, 2, 3) float64 matrices mapping an output pixel (col, row, 1) to the input pixel it samples,
    for ``torchvision.transforms.functional.affine(img, angle, translate, scale, shear)`` with the
    default centre. ``angle`` (degrees) and ``scale`` are numbers or (N,) arrays, ``translate`` and
    ``shear`` (degrees) pairs or (N, 2) arrays."""
    angle = np.atleast_1d(np.asarray(angle, np.float64))
    n = angle.shape[0]
    angle = _per_sample(angle, n, "angle")
    scale = _per_sample(scale, n, "scale")
    if np.any(scale <= 0):
        raise ValueError("scale must be > 0")
    tr = np.broadcast_to(np.asarray(translate, np.float64), (n, 2))
    sh = np.broadcast_to(np.asarray(shear, np.float64), (n, 2))
    # the inverse of  T * C * R(angle) S(shear) scale * C^-1  (torchvision's _get_inverse_affine_matrix)
    rot = np.radians(angle)
    sx, sy = np.radians(sh[:, 0]), np.radians(sh[:, 1])
    a = np.cos(rot - sy) / np.cos(sy)
    b = -np.cos(rot - sy) * np.tan(sx) / np.cos(sy) - np.sin(rot)
    c = np.sin(rot - sy) / np.cos(sy)
    d = -np.sin(rot - sy) * np.tan(sx) / np.cos(sy) + np.cos(rot)
    A = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], 1) / scale[:, None, None]  # (N,2,2)
    # centred coordinates: origin at the image centre ((W-1)/2, (H-1)/2) in pixel indices
    t = -np.einsum("nij,nj->ni", A, tr)
    ctr = np.array([(W - 1) * 0.5, (H - 1) * 0.5])
    t = t + ctr - A @ ctr
    return np.concatenate([A, t[:, :, None]], axis=2)


def perspective_matrices(H: int, W: int, startpoints, endpoints) -> np.ndarray:
    """(N, 3, 3) homographies mapping an output pixel (col, row, 1) to the input pixel it samples,
    for ``torchvision.transforms.functional.perspective(img, startpoints, endpoints)``: the four
    ``startpoints`` (x, y) of the input move to ``endpoints`` in the output. Points are (4, 2) or
    (N, 4, 2)."""
    sp = np.asarray(startpoints, np.float64)
    ep = np.asarray(endpoints, np.float64)
    if sp.shape[-2:] != (4, 2) or ep.shape[-2:] != (4, 2):
        raise ValueError(f"startpoints and endpoints must be (4, 2) or (N, 4, 2), got {sp.shape} and {ep.shape}")
    if sp.ndim == 2 and ep.ndim == 2:
        sp, ep = sp[None], ep[None]
    n = max(sp.shape[0] if sp.ndim == 3 else 1, ep.shape[0] if ep.ndim == 3 else 1)
    sp = np.broadcast_to(sp, (n, 4, 2))
    ep = np.broadcast_to(ep, (n, 4, 2))
    if not (np.all(np.isfinite(sp)) and np.all(np.isfinite(ep))):
        raise ValueError("startpoints and endpoints must be finite")
    # solve for (a..h): startpoint = ((a x + b y + c) / (g x + h y + 1), (d x + e y + f) / (...)) at each
    # endpoint (x, y) -- Pillow's / torchvision's coefficient convention, in pixel-edge coordinates
    M = np.zeros((n, 8, 8))
    x, y = ep[..., 0], ep[..., 1]
    u, v = sp[..., 0], sp[..., 1]
    M[:, 0::2, 0], M[:, 0::2, 1], M[:, 0::2, 2] = x, y, 1
    M[:, 0::2, 6], M[:, 0::2, 7] = -u * x, -u * y
    M[:, 1::2, 3], M[:, 1::2, 4], M[:, 1::2, 5] = x, y, 1
    M[:, 1::2, 6], M[:, 1::2, 7] = -v * x, -v * y
    rhs = np.stack([u, v], -1).reshape(n, 8)
    try:
        coef = np.linalg.solve(M, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        raise ValueError("perspective: degenerate start/end points (three of them on a line?)") from None
    Hm = np.concatenate([coef, np.ones((n, 1))], 1).reshape(n, 3, 3)
    # torchvision samples output pixel centres at (j + 0.5, i + 0.5) and reads the input at X - 0.5
    T_in = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    T_out = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    return T_out @ Hm @ T_in


def warp_affine(x: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """Warp each sample of ``x`` (N, C, H, W) / (N, H, W) by its (2, 3) matrix in ``mats`` (N, 2, 3)
    (output pixel -> input pixel), bilinear, zero fill. Returns a new float32 array."""
    return _core.warp(_batch(x), mats)


def warp_perspective(x: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """Warp each sample of ``x`` by its (3, 3) homography in ``mats`` (N, 3, 3) (output pixel ->
    input pixel), bilinear, zero fill."""
    return _core.warp(_batch(x), mats)


def rotate(x: np.ndarray, angle) -> np.ndarray:
    """``torchvision.transforms.functional.rotate(x, angle, BILINEAR)`` per sample: ``angle`` in degrees
    (counter-clockwise), a number or (N,) array."""
    x = _batch(x)
    ang = _per_sample(angle, x.shape[0], "angle")
    # torchvision's rotate passes -angle to the inverse-affine helper (its affine convention)
    return _core.warp(x, affine_matrices(x.shape[-2], x.shape[-1], -ang))


def affine(x: np.ndarray, angle=0.0, translate=(0.0, 0.0), scale=1.0, shear=(0.0, 0.0)) -> np.ndarray:
    """``torchvision.transforms.functional.affine(x, angle, translate, scale, shear, BILINEAR)`` per
    sample (numbers apply to all samples; arrays give one value/pair per sample)."""
    x = _batch(x)
    n = x.shape[0]
    ang = _per_sample(angle, n, "angle")
    tr = np.asarray(translate, np.float64)
    sh = np.asarray(shear, np.float64)
    if sh.ndim == 0:
        sh = np.array([float(sh), 0.0])
    for nm, a in (("translate", tr), ("shear", sh)):
        if a.shape not in ((2,), (n, 2)):
            raise ValueError(f"{nm} must be a pair or ({n}, 2), got shape {a.shape}")
    return _core.warp(x, affine_matrices(x.shape[-2], x.shape[-1], ang, tr, _per_sample(scale, n, "scale"), sh))


def perspective(x: np.ndarray, startpoints, endpoints) -> np.ndarray:
    """``torchvision.transforms.functional.perspective(x, startpoints, endpoints, BILINEAR)``; points
    (4, 2) for the whole batch or (N, 4, 2) per sample."""
    x = _batch(x)
    m = perspective_matrices(x.shape[-2], x.shape[-1], startpoints, endpoints)
    if m.shape[0] == 1 and x.shape[0] != 1:
        m = np.repeat(m, x.shape[0], axis=0)
    if m.shape[0] != x.shape[0]:
        raise ValueError(f"got {m.shape[0]} point sets for a batch of {x.shape[0]}")
    return _core.warp(x, m)


# --------------------------------------------------------------------------------- transforms

class Transform:
    """Base class: ``t(x, rng)`` draws ``get_params(len(x), rng, H, W)`` then ``apply(x, params)``."""

    def get_params(self, n: int, rng: np.random.Generator, H: int, W: int) -> dict:
        return {}

    def apply(self, x: np.ndarray, params: dict) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _batch(x)
        if rng is None:
            rng = np.random.default_rng()
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return self.apply(x, self.get_params(x.shape[0], rng, x.shape[-2], x.shape[-1]))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in order (each draws from the same ``rng`` in turn)."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] is not callable: {t!r}")

    def __call__(self, x, rng=None):
        x = _batch(x)
        if rng is None:
            rng = np.random.default_rng()
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class RandomAffine(Transform):
    """``torchvision.transforms.RandomAffine`` per sample: angle ~ U(degrees), translation
    ``round(U(-t*W, t*W))`` pixels (integers, as torchvision), scale ~ U(scale), shear ~ U(shear)
    (a number s: x-shear in (-s, s); a pair: x range; four numbers: x and y ranges)."""

    def __init__(self, degrees=0.0, translate=None, scale=None, shear=None):
        self.degrees = _range(degrees, "degrees")
        if translate is not None:
            if not (isinstance(translate, (tuple, list)) and len(translate) == 2
                    and all(0.0 <= float(t) <= 1.0 for t in translate)):
                raise ValueError(f"translate must be a pair of fractions in [0, 1], got {translate!r}")
            translate = (float(translate[0]), float(translate[1]))
        self.translate = translate
        self.scale = None if scale is None else _range(scale, "scale", symmetric=False, lo_bound=0.0)
        if shear is None:
            self.shear = None
        elif isinstance(shear, (tuple, list)) and len(shear) == 4:
            self.shear = (_range(tuple(shear[:2]), "shear"), _range(tuple(shear[2:]), "shear"))
        else:
            self.shear = (_range(shear, "shear"), (0.0, 0.0))

    def get_params(self, n, rng, H, W):
        angle = rng.uniform(self.degrees[0], self.degrees[1], n)
        if self.translate is not None:
            mx, my = self.translate[0] * W, self.translate[1] * H
            tr = np.stack([np.round(rng.uniform(-mx, mx, n)), np.round(rng.uniform(-my, my, n))], 1)
        else:
            tr = np.zeros((n, 2))
        scale = rng.uniform(self.scale[0], self.scale[1], n) if self.scale is not None else np.ones(n)
        if self.shear is not None:
            (a, b), (c, d) = self.shear
            sh = np.stack([rng.uniform(a, b, n), rng.uniform(c, d, n)], 1)
        else:
            sh = np.zeros((n, 2))
        return {"angle": angle, "translate": tr, "scale": scale, "shear": sh}

    def apply(self, x, params):
        return _core.warp(x, affine_matrices(x.shape[-2], x.shape[-1], params["angle"], params["translate"],
                                             params["scale"], params["shear"]))


class RandomRotation(Transform):
    """``torchvision.transforms.RandomRotation(degrees, BILINEAR)`` per sample: angle ~ U(-d, d) (or
    U(lo, hi) for a pair), counter-clockwise about the centre, zero fill."""

    def __init__(self, degrees):
        self.degrees = _range(degrees, "degrees")

    def get_params(self, n, rng, H, W):
        return {"angle": rng.uniform(self.degrees[0], self.degrees[1], n)}

    def apply(self, x, params):
        return rotate(x, params["angle"])


class RandomShift(Transform):
    """Shift each sample by whole pixels ``(dx, dy)``, each uniform in ``[-max_shift, max_shift]``,
    zero fill (exact: no interpolation at integer offsets)."""

    def __init__(self, max_shift: int):
        if not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise ValueError(f"max_shift must be a non-negative integer, got {max_shift!r}")
        self.max_shift = int(max_shift)

    def get_params(self, n, rng, H, W):
        return {"shift": rng.integers(-self.max_shift, self.max_shift + 1, size=(n, 2))}

    def apply(self, x, params):
        s = np.asarray(params["shift"], np.float64)
        m = np.zeros((x.shape[0], 2, 3))
        m[:, 0, 0] = m[:, 1, 1] = 1.0
        m[:, :, 2] = -s  # output (j, i) reads input (j - dx, i - dy)
        return _core.warp(x, m)


class RandomPerspective(Transform):
    """``torchvision.transforms.RandomPerspective(distortion_scale, p, BILINEAR)`` per sample: with
    probability ``p`` each corner moves inwards by a random whole number of pixels below
    ``distortion_scale * W/2`` (resp. H/2), torchvision's ``get_params``."""

    def __init__(self, distortion_scale: float = 0.5, p: float = 0.5):
        if not (0.0 <= float(distortion_scale) <= 1.0):
            raise ValueError(f"distortion_scale must be in [0, 1], got {distortion_scale!r}")
        if not (0.0 <= float(p) <= 1.0):
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.distortion_scale = float(distortion_scale)
        self.p = float(p)

    def get_params(self, n, rng, H, W):
        bw = int(self.distortion_scale * (W // 2)) + 1
        bh = int(self.distortion_scale * (H // 2)) + 1
        ri = rng.integers
        tl = np.stack([ri(0, bw, n), ri(0, bh, n)], 1)
        tr = np.stack([ri(W - bw, W, n), ri(0, bh, n)], 1)
        br = np.stack([ri(W - bw, W, n), ri(H - bh, H, n)], 1)
        bl = np.stack([ri(0, bw, n), ri(H - bh, H, n)], 1)
        end = np.stack([tl, tr, br, bl], 1).astype(np.float64)  # (n, 4, 2)
        start = np.array([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]], np.float64)
        apply = rng.random(n) < self.p
        end[~apply] = start
        return {"startpoints": np.broadcast_to(start, (n, 4, 2)).copy(), "endpoints": end, "applied": apply}

    def apply(self, x, params):
        m = perspective_matrices(x.shape[-2], x.shape[-1], params["startpoints"], params["endpoints"])
        m[~params["applied"]] = np.eye(3)  # untouched samples are copied exactly
        return _core.warp(x, m)


class GaussianNoise(Transform):
    """``x + std * N(0, 1)`` per pixel, then clipped to ``clip=(lo, hi)`` if given (``clip=True``
    means (0, 1)). Noise is drawn from ``rng`` in float32."""

    def __init__(self, std: float, clip=None):
        std = float(std)
        if not (math.isfinite(std) and std >= 0):
            raise ValueError(f"std must be a finite number >= 0, got {std!r}")
        if clip is True:
            clip = (0.0, 1.0)
        elif clip is False:
            clip = None
        if clip is not None:
            clip = _range(tuple(clip) if isinstance(clip, (tuple, list)) else clip, "clip")
        self.std = std
        self.clip = clip

    def __call__(self, x, rng=None):
        x = _batch(x)
        if rng is None:
            rng = np.random.default_rng()
        noise = rng.standard_normal(x.shape, dtype=np.float32)
        lo, hi = self.clip if self.clip is not None else (None, None)
        return _core.add_noise_clip(x, noise, self.std, lo, hi)


class RandomHorizontalFlip(Transform):
    """Mirror each sample left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if not (0.0 <= float(p) <= 1.0):
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def get_params(self, n, rng, H, W):
        return {"flip": rng.random(n) < self.p}

    def apply(self, x, params):
        out = x.copy()
        f = params["flip"]
        out[f] = x[f][..., ::-1]
        return out


class Normalize(Transform):
    """``(x - mean) / std`` (MNIST's 0.1307 / 0.3081 by default); deterministic."""

    def __init__(self, mean: float = MNIST_MEAN, std: float = MNIST_STD):
        self.mean = float(mean)
        self.std = float(std)
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"Normalize needs a finite mean and std > 0, got mean={mean!r}, std={std!r}")

    def __call__(self, x, rng=None):
        x = _batch(x)
        return (x - np.float32(self.mean)) / np.float32(self.std)


# ------------------------------------------------------------------------------------ CLI spec

SPEC_HELP = """comma-separated transforms applied in order, arguments after colons:
  rotate:DEG               RandomRotation(DEG)           angle in [-DEG, DEG]
  affine:DEG[:T[:S]]       RandomAffine(DEG, translate=(T, T), scale=(1-S, 1+S))
  shift:PIX                RandomShift(PIX)              whole-pixel shifts in [-PIX, PIX]
  perspective:D[:P]        RandomPerspective(D, p=P)     P defaults to 0.5
  noise:STD[:clip]         GaussianNoise(STD), 'clip' clips to [0, 1]
  hflip[:P]                RandomHorizontalFlip(P)       P defaults to 0.5
  normalize[:MEAN:STD]     Normalize, MNIST's 0.1307/0.3081 by default
example: rotate:10,shift:2,perspective:0.2,normalize"""


def from_spec(spec: str | None) -> Compose | None:
    """Parse the ``--augment`` string (see :data:`SPEC_HELP`) into a :class:`Compose`; ``None`` or an
    empty / ``"none"`` string gives ``None``."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    out = []
    for tok in spec.split(","):
        tok = tok.strip()
        if not tok:
            continue
        name, *args = [s.strip() for s in tok.split(":")]
        name = name.lower()

        def num(i, default=None, kind=float):
            if i < len(args) and args[i] != "":
                try:
                    return kind(args[i])
                except ValueError:
                    raise ValueError(f"--augment {tok!r}: argument {args[i]!r} is not a {kind.__name__}") from None
            if default is None:
                raise ValueError(f"--augment {tok!r}: missing argument\n{SPEC_HELP}")
            return default

        def nargs(k):
            if len(args) > k:
                raise ValueError(f"--augment {tok!r}: too many arguments\n{SPEC_HELP}")

        if name == "rotate":
            nargs(1)
            out.append(RandomRotation(num(0)))
        elif name == "affine":
            nargs(3)
            t, s = num(1, 0.0), num(2, 0.0)
            if not 0 <= s < 1:
                raise ValueError(f"--augment {tok!r}: scale spread must be in [0, 1)")
            out.append(RandomAffine(num(0), translate=(t, t) if t else None, scale=(1 - s, 1 + s) if s else None))
        elif name == "shift":
            nargs(1)
            out.append(RandomShift(num(0, kind=int)))
        elif name == "perspective":
            nargs(2)
            out.append(RandomPerspective(num(0), p=num(1, 0.5)))
        elif name == "noise":
            nargs(2)
            clip = None
            if len(args) > 1:
                if args[1].lower() != "clip":
                    raise ValueError(f"--augment {tok!r}: the second argument can only be 'clip'")
                clip = (0.0, 1.0)
            out.append(GaussianNoise(num(0), clip=clip))
        elif name == "hflip":
            nargs(1)
            out.append(RandomHorizontalFlip(num(0, 0.5)))
        elif name == "normalize":
            nargs(2)
            if len(args) == 1:
                raise ValueError(f"--augment {tok!r}: give both MEAN and STD, or neither")
            out.append(Normalize(num(0, MNIST_MEAN), num(1, MNIST_STD)))
        else:
            raise ValueError(f"--augment: unknown transform {name!r}\n{SPEC_HELP}")
    return Compose(out) if out else None
