"""ResNet-50 features of MNIST digits (PyTorch), saved as MATLAB .mat files.

Each 28x28 grey digit is scaled to [0, 1], resized to ``size`` x ``size`` (bilinear), repeated to 3
channels and normalised with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225);
the feature vector is the 2048-dimensional global-average-pooled output of ResNet-50 (the input of
its ``fc`` layer).

.mat layout (``scipy.io.loadmat`` / MATLAB ``load``), one file per split:

==================  ============================================================================
``features``        N x 2048 single (float32), one row per image
``labels``          N x 1 int64 digit labels 0-9 (``loadmat`` returns 2-D arrays: use ``.ravel()``)
``split``           'train' or 'test'
``weights``         where the weights came from ('imagenet', a file name, or 'none')
``weights_sha256``  sha256 of the weights file ('' for 'imagenet' / 'none')
``size``            the input side the digits were resized to
``stride_in_1x1``   1 when the network ran with ResNet v1 stride placement, else 0
``preprocessing``   the preprocessing, in words (``PREPROCESSING``)
``fastmnist_version``
==================  ============================================================================

Weights: ``"imagenet"`` is torchvision's pretrained ResNet-50 (IMAGENET1K_V1, downloaded and cached
by torchvision); a path is a torchvision-layout ``state_dict`` file; ``"none"`` is a random network
seeded by ``seed`` (for tests only).

Stride placement. torchvision's ResNet-50 (v1.5) puts the stride 2 of the first bottleneck of
layer2..layer4 on the 3x3 ``conv2``; weights converted from the original MSRA/Caffe or Keras
ResNet-50 (v1) were trained with it on the 1x1 ``conv1``. Both have identical shapes, so the stride
placement cannot be read from the tensors. It is decided, first rule that applies:

1. the ``stride_in_1x1`` argument (``--stride-in-1x1`` / ``--no-stride-in-1x1``);
2. a sidecar JSON file next to the weights, ``<weights file>.json`` (e.g.
   ``resnet50_keras_imagenet_tv.pth.json``) holding ``{"stride_in_1x1": true}``;
3. the file-name rule: a weights file whose name contains ``keras``, ``caffe`` or ``msra`` is a v1
   network (stride in the 1x1 conv);
4. otherwise torchvision's v1.5 placement.

Mixed precision: on CUDA with ``precision="auto"`` the first batch is run in float32 and in float16
autocast; float16 is used for the rest only if every feature row of that batch agrees with float32
within a relative error ``||f16 - f32|| / ||f32|| <= 1e-2`` (``AMP_TOLERANCE``). The CPU always runs
float32.

Speed (CPU). :class:`FeatureExtractor` runs the network the fastest way found here, in float32
only: inference mode, channels-last memory and ``torch.compile`` (inductor with frozen weights)
of the preprocessing and the network together; ``compile="auto"`` runs eager when inductor has
no C++ compiler or compiling fails, ``"off"`` never compiles. Every batch is padded to
``batch_size`` rows (padding rows are discarded), so each batch has one shape (one compilation)
and a row's features do not depend on where a run was interrupted. Features equal the plain
eager float32 NCHW network's within a relative error (``||f - f_ref|| / ||f_ref||`` per row) of
``FEATURE_RTOL`` = 1e-3; measured: ~2e-6 at 224 px. (Rewriting conv1 for the one grey channel,
with the weights summed over the input channels, is exact but measured slower here, eager and
compiled: oneDNN's first-layer kernel is better tuned for 3 input channels.)

Resumable and sharded (:func:`extract_mnist`). The images are cut into chunks of ``chunk_size``
(a multiple of ``batch_size``), train chunks first. Each finished chunk is written atomically to
``OUT/parts/`` and ``OUT/parts/manifest.json`` records the settings that define the features
(weights file and its sha256, size, batch and chunk size, preprocessing, stride placement, the
subset and a hash of its images); running again resumes at the first missing chunk, and a run with
other settings is refused. ``shard=(i, n)`` extracts chunks ``i, i + n, i + 2n, ...`` only (under
``torchrun`` the shard is ``RANK/WORLD_SIZE`` by default); whichever process finds every chunk
present writes the two .mat files (:func:`merge_parts`, also ``fastmnist extract --merge``),
then deletes the chunks. With the same engine and thread count the .mat files are bit-identical
to an uninterrupted single-process run's (the .mat header carries no time stamp).
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ._io import atomic_savez, atomic_write, atomic_write_json

AMP_TOLERANCE = 1e-2
FEATURE_RTOL = 1e-3
PREPROCESSING = ("uint8/255, bilinear resize (align_corners=False), 3 equal channels, "
                 "ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225)")
CPU_BATCH = 32
CUDA_BATCH = 128
DEFAULT_CHUNK = 1024
PARTS = "parts"
MANIFEST_FORMAT = 1
# the metadata two feature files must share to be used together (train and test)
MATCH_KEYS = ("weights", "weights_sha256", "size", "stride_in_1x1", "preprocessing")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
V1_NAME_MARKERS = ("keras", "caffe", "msra")
FEATURE_DIM = 2048

__all__ = ["build_resnet50", "detect_stride_in_1x1", "patch_stride_in_1x1", "resolve_device",
           "FeatureExtractor", "CompileError", "extract_features", "save_features_mat",
           "load_features_mat", "check_same_extraction", "extract_mnist", "merge_parts", "parse_shard",
           "AMP_TOLERANCE", "FEATURE_RTOL", "PREPROCESSING"]


def _torch():
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("feature extraction needs PyTorch and torchvision: pip install 'fastmnist[torch]'") from e
    return torch


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when available, else 'cpu'. 'cuda' without CUDA is a ValueError."""
    torch = _torch()
    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu")
        return device
    if device == "cpu":
        return device
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


def detect_stride_in_1x1(weights) -> bool:
    """The stride-placement convention for a weights spec (see the module docstring): the sidecar
    ``<file>.json`` key ``stride_in_1x1`` if present, else the file-name rule, else False."""
    if weights is None or str(weights) in ("imagenet", "none"):
        return False
    path = Path(weights)
    sidecar = path.with_name(path.name + ".json")
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read weights sidecar {sidecar}: {e}") from e
        if isinstance(meta, dict) and "stride_in_1x1" in meta:
            return bool(meta["stride_in_1x1"])
    name = path.name.lower()
    return any(m in name for m in V1_NAME_MARKERS)


def patch_stride_in_1x1(model):
    """Move the stride 2 of the first bottleneck of layer2..4 from conv2 (3x3) to conv1 (1x1):
    ResNet v1, as the MSRA/Caffe/Keras ResNet-50 was trained."""
    for layer in (model.layer2, model.layer3, model.layer4):
        layer[0].conv1.stride = (2, 2)
        layer[0].conv2.stride = (1, 1)
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_state_dict(path: Path) -> dict:
    torch = _torch()
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.is_dir():
        raise ValueError(f"weights path is a directory, expected a state_dict file: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unpickling/format failure is a bad file
        raise ValueError(f"cannot read {path} as a PyTorch state_dict ({type(e).__name__}: {e})") from e
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
        raise ValueError(f"{path} does not hold a state_dict (a dict of tensors)")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def build_resnet50(weights="imagenet", stride_in_1x1: bool | None = None, seed: int = 0):
    """ResNet-50 in eval mode with ``fc`` replaced by identity (so it returns the 2048 pooled
    features). Returns ``(model, info)`` with info = {"weights": str, "weights_sha256": str,
    "stride_in_1x1": bool} ("weights_sha256" is the file's, '' for 'imagenet' and 'none')."""
    torch = _torch()
    import torchvision

    spec = "none" if weights is None else str(weights)
    sha = ""
    if spec == "imagenet":
        try:
            model = torchvision.models.resnet50(weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V1)
        except Exception as e:  # noqa: BLE001 -- download failures come in many types
            raise OSError("could not load torchvision's ImageNet ResNet-50 weights (they are downloaded on "
                          f"first use; offline?): {type(e).__name__}: {e}. Pass --weights PATH to a "
                          "state_dict file instead.") from e
    elif spec == "none":
        torch.manual_seed(seed)
        model = torchvision.models.resnet50()
    else:
        path = Path(spec).expanduser()
        sd = _load_state_dict(path)
        model = torchvision.models.resnet50()
        expected = set(model.state_dict())
        got = set(sd)
        optional = {"fc.weight", "fc.bias"}  # a headless feature extractor checkpoint is fine
        missing = sorted(expected - got - optional)
        unexpected = sorted(got - expected)
        if missing or unexpected:
            raise ValueError(
                f"{path} is not a torchvision ResNet-50 state_dict: {len(missing)} missing keys "
                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        try:
            model.load_state_dict(sd, strict=not (optional - got))
        except RuntimeError as e:
            raise ValueError(f"{path}: tensor shapes do not match torchvision's ResNet-50: {e}") from e
        spec = path.name
        sha = _sha256(path)
    if stride_in_1x1 is None:
        stride_in_1x1 = detect_stride_in_1x1(weights)
    if stride_in_1x1:
        patch_stride_in_1x1(model)
    model.fc = torch.nn.Identity()
    model.eval()
    return model, {"weights": spec, "weights_sha256": sha, "stride_in_1x1": bool(stride_in_1x1)}


class CompileError(RuntimeError):
    """torch.compile failed while ``compile="on"`` was asked for."""


def _compile_unavailable(cuda: bool) -> str | None:
    """Why torch.compile cannot run here (None when it can): no torch.compile, or on the CPU no
    C++ compiler among the ones inductor would use (``CXX``, else g++)."""
    torch = _torch()
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if cuda:
        return None
    import shutil

    try:
        import torch._inductor.config as inductor_config

        cxx = inductor_config.cpp.cxx
    except (ImportError, AttributeError):  # pragma: no cover - another torch layout: let compile decide
        return None
    cands = [c for c in (cxx if isinstance(cxx, (list, tuple)) else (cxx,)) if c]
    if not any(shutil.which(c) for c in cands):
        return f"no C++ compiler found for inductor (tried {', '.join(cands) or 'none'}; set CXX)"
    return None


def _preprocess(x, size: int):
    """uint8 tensor (B, 28, 28) on the device -> normalised float32 (B, 3, size, size), channels-last."""
    import torch.nn.functional as F

    torch = _torch()
    x = x.to(torch.float32).div(255.0).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x.expand(-1, 3, -1, -1) - mean) / std).contiguous(memory_format=torch.channels_last)


class FeatureExtractor:
    """ResNet features (N, 2048) float32 of uint8 images (N, 28, 28), the fast way (module
    docstring): a channels-last copy of ``model``, inference mode and, with
    ``compile`` 'auto' (CPU only) or 'on', ``torch.compile`` with frozen weights. 'auto' falls back
    to eager (with a message) when compiling fails; 'on' raises :class:`CompileError` instead.
    ``engine`` says what runs: 'compiled' or 'eager'."""

    def __init__(self, model, size: int = 224, device: str = "cpu", batch_size: int | None = None,
                 precision: str = "auto", compile: str = "auto", quiet: bool = False):
        torch = _torch()
        if isinstance(size, bool) or not (isinstance(size, (int, np.integer)) and size >= 32):
            raise ValueError(f"size must be an integer >= 32 (ResNet-50 downsamples by 32), got {size!r}")
        dev = torch.device(device)
        self.cuda = dev.type == "cuda"
        if batch_size is None:
            batch_size = CUDA_BATCH if self.cuda else CPU_BATCH
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if precision not in ("auto", "fp32", "fp16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'fp16', got {precision!r}")
        if precision == "fp16" and not self.cuda:
            raise ValueError("precision 'fp16' needs a CUDA device")
        if compile not in ("auto", "on", "off"):
            raise ValueError(f"compile must be 'auto', 'on' or 'off', got {compile!r}")
        self.size, self.device, self.batch_size = int(size), dev, int(batch_size)
        self.precision, self.compile, self.quiet = precision, compile, quiet
        self.use_amp = None if (self.cuda and precision == "auto") else precision == "fp16"
        self.model = copy.deepcopy(model).to(dev).to(memory_format=torch.channels_last).eval()
        self.engine = "eager"
        if compile == "on" or (compile == "auto" and not self.cuda):
            why = _compile_unavailable(self.cuda)
            if why is None:
                self.engine = "compiled"
            elif compile == "on":
                raise CompileError(f"torch.compile cannot run: {why}")
            elif not quiet:
                print(f"torch.compile cannot run ({why}); running eager", file=sys.stderr)
        self._compiled = torch.compile(self._eager, dynamic=False) if self.engine == "compiled" else None

    def _eager(self, xb):
        return self.model(_preprocess(xb, self.size))

    def _net(self, xb):
        torch = _torch()
        if self.engine == "compiled":
            import torch._inductor.config as inductor_config

            try:
                with inductor_config.patch(freezing=True):
                    return self._compiled(xb)
            except Exception as e:  # noqa: BLE001 -- compilers fail in many ways; eager is always correct
                msg = f"torch.compile failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:300]})"
                if self.compile == "on":
                    raise CompileError(msg) from e
                print(f"{msg}; running eager (--compile off skips the attempt)", file=sys.stderr)
                self.engine, self._compiled = "eager", None
                torch._dynamo.reset()
        return self._eager(xb)

    def _forward(self, xb):
        torch = _torch()
        if self.use_amp is None:  # CUDA, precision auto: decide on the first batch
            f32 = self._net(xb).float()
            with torch.autocast("cuda", dtype=torch.float16):
                f16 = self._net(xb).float()
            rel = ((f16 - f32).norm(dim=1) / f32.norm(dim=1).clamp_min(1e-12)).max().item()
            self.use_amp = rel <= AMP_TOLERANCE
            if not self.quiet:
                print(f"mixed precision: max relative feature error {rel:.2e} "
                      f"{'<=' if self.use_amp else '>'} {AMP_TOLERANCE:g}: using {'fp16' if self.use_amp else 'fp32'}")
            return f32
        if self.use_amp:
            with torch.autocast("cuda", dtype=torch.float16):
                return self._net(xb).float()
        return self._net(xb)

    def __call__(self, images, bar=None) -> np.ndarray:
        """Features (N, 2048) float32 of ``images`` uint8 (N, H, W); ``bar`` (optional) is advanced
        by the number of images of each batch."""
        torch = _torch()
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
        n, b = images.shape[0], self.batch_size
        out = np.empty((n, FEATURE_DIM), np.float32)
        src = torch.from_numpy(np.ascontiguousarray(images))
        if self.cuda:
            src = src.pin_memory()
        with torch.inference_mode():
            for start in range(0, n, b):
                xb = src[start:start + b]
                k = xb.shape[0]
                if k < b:  # one batch shape for the whole run: pad, then drop the padding rows
                    xb = torch.cat([xb, xb.new_zeros((b - k,) + tuple(xb.shape[1:]))])
                fb = self._forward(xb.to(self.device, non_blocking=self.cuda))
                out[start:start + k] = fb[:k].reshape(k, -1).cpu().numpy()
                if bar is not None:
                    bar.update(k)
        return out


def extract_features(model, images, size: int = 224, batch_size: int | None = None, device: str = "cpu",
                     precision: str = "auto", quiet: bool = False, desc: str = "features",
                     compile: str = "auto") -> np.ndarray:
    """ResNet features (N, 2048) float32 of uint8 images (N, 28, 28) through a
    :class:`FeatureExtractor` (``batch_size`` None: 32 on the CPU, 128 on CUDA)."""
    from ._progress import progress

    fx = FeatureExtractor(model, size=size, device=device, batch_size=batch_size, precision=precision,
                          compile=compile, quiet=quiet)
    images = np.asarray(images)
    bar = progress(total=len(images), desc=desc, quiet=quiet, unit="img")
    try:
        return fx(images, bar=bar)
    finally:
        bar.close()


def _mat_bytes(d: dict) -> bytes:
    """A MATLAB v5 file of ``d`` as bytes, with a fixed header text (scipy puts the time of writing
    there), so the same content gives the same bytes."""
    import scipy.io

    from . import __version__

    buf = io.BytesIO()
    scipy.io.savemat(buf, d, do_compression=False)
    data = bytearray(buf.getvalue())
    head = f"MATLAB 5.0 MAT-file, written by fastmnist {__version__}".encode("ascii")
    data[:116] = head.ljust(116, b" ")
    return bytes(data)


def save_features_mat(path, features, labels, **meta) -> Path:
    """Write ``features`` (N, 2048) float32 and ``labels`` (N,) to a MATLAB v5 .mat file (keys in
    the module docstring) plus any scalar/string ``meta``, atomically; the same content gives the
    same bytes."""
    path = Path(path)
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels).astype(np.int64).reshape(-1, 1)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features (N, D) and labels (N,) must match, got {features.shape} and {labels.shape}")
    d = {"features": features, "labels": labels}
    d.update({k: v for k, v in meta.items() if v is not None})
    data = _mat_bytes(d)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(data), "wb")
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from e
    return path


_META_KEYS = ("split", "weights", "weights_sha256", "size", "stride_in_1x1", "preprocessing", "fastmnist_version")


def _mat_scalar(v):
    v = np.asarray(v)
    if v.dtype.kind == "U":
        return str(v.ravel()[0]) if v.size else ""
    if v.size == 1 and v.dtype.kind in "iuf":
        x = v.item()
        return int(x) if float(x).is_integer() else x
    return None


def load_features_mat(path, meta: bool = False):
    """Read a features .mat file -> ``(features float32 (N, D), labels int64 (N,))``, plus a dict
    of its metadata (``split``, ``weights``, ``weights_sha256``, ``size``, ``stride_in_1x1``,
    ``preprocessing``, ``fastmnist_version``: those present) when ``meta`` is true. Complex,
    non-numeric or non-finite features and non-integer labels are a ValueError."""
    import scipy.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"features file not found: {path}")
    try:
        d = scipy.io.loadmat(str(path))
    except OSError as e:
        raise OSError(f"cannot read {path}: {e}") from e
    except Exception as e:  # noqa: BLE001 -- scipy raises assorted errors for non-MAT content
        raise ValueError(f"cannot read {path} as a MATLAB .mat file ({type(e).__name__}: {e})") from e
    keys = sorted(k for k in d if not k.startswith("__"))
    for k in ("features", "labels"):
        if k not in d:
            raise ValueError(f"{path} has no {k!r} variable (it holds {keys}); expected 'features' (N x D) "
                             "and 'labels' (N x 1) as written by 'fastmnist extract'")
    X = np.asarray(d["features"])
    y_raw = np.asarray(d["labels"])
    y = y_raw.ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: 'features' must be N x D and 'labels' N x 1, got {X.shape} and {y_raw.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{path}: 'features' is empty ({X.shape})")
    if np.iscomplexobj(X) or X.dtype.kind not in "fiu":
        raise ValueError(f"{path}: 'features' must be real numbers, got {'complex' if np.iscomplexobj(X) else X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{path}: 'features' holds {int(bad.sum())} non-finite values (first at row {r}, column {c}: "
                         f"{X[r, c]})")
    if np.iscomplexobj(y) or y.dtype.kind not in "fiu":
        raise ValueError(f"{path}: 'labels' must be integers, got {'complex' if np.iscomplexobj(y) else y.dtype}")
    if y.dtype.kind == "f":
        frac = ~np.isfinite(y) | (y != np.round(y))
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise ValueError(f"{path}: 'labels' must be integers, got {int(frac.sum())} non-integer values "
                             f"(first at row {i}: {y[i].item()!r})")
    y = y.astype(np.int64)
    if not meta:
        return X, y
    info = {k: _mat_scalar(d[k]) for k in _META_KEYS if k in d}
    return X, y, {k: v for k, v in info.items() if v is not None}


def check_same_extraction(meta_a: dict, meta_b: dict, name_a: str = "train", name_b: str = "test") -> None:
    """ValueError when two feature files' metadata differ in any of ``MATCH_KEYS`` (size, weights,
    their sha256, stride placement, preprocessing); keys missing from either file are not compared."""
    diff = [f"{k}: {meta_a[k]!r} vs {meta_b[k]!r}" for k in MATCH_KEYS
            if k in meta_a and k in meta_b and meta_a[k] != meta_b[k]]
    if diff:
        raise ValueError(f"{name_a} and {name_b} features come from different extractions ({'; '.join(diff)}): "
                         "extract both with the same --weights, --size and stride placement")


# ---- resumable, sharded extraction of MNIST ------------------------------------------------------

def parse_shard(shard) -> tuple[int, int]:
    """'I/N' (or a pair) -> (I, N) with 0 <= I < N; None -> from torchrun's RANK / WORLD_SIZE when
    set, else (0, 1)."""
    if shard is None:
        world = os.environ.get("WORLD_SIZE")
        rank = os.environ.get("RANK")
        if world is None or rank is None:
            return 0, 1
        shard, what = f"{rank}/{world}", "RANK/WORLD_SIZE"
    else:
        what = "shard"
    try:
        i, n = (shard.split("/") if isinstance(shard, str) else shard)
        i, n = int(i), int(n)
    except (ValueError, TypeError):
        raise ValueError(f"{what} must be 'I/N' with integers 0 <= I < N, got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"{what} must be 'I/N' with integers 0 <= I < N, got {shard!r}")
    return i, n


def _chunks(n_train: int, n_test: int, chunk: int) -> list[tuple[str, int, int]]:
    return [(split, s, min(s + chunk, n)) for split, n in (("train", n_train), ("test", n_test))
            for s in range(0, n, chunk)]


def _chunk_name(split: str, start: int, end: int) -> str:
    return f"{split}_{start:06d}_{end:06d}.npz"


def _array_sha256(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def _remove_stale_tmp(folder: Path, names) -> None:
    """Temporary files a killed writer left for ``names`` (atomic_write names them '.NAME*.tmp')."""
    for name in names:
        for p in folder.glob(f".{name}*.tmp"):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def _manifest(parts: Path, settings: dict) -> None:
    """Write ``parts/manifest.json`` or check that the one there holds the same settings."""
    path = parts / "manifest.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"cannot read {path} ({type(e).__name__}: {e}); remove {parts} to start over") from e
        diff = [f"{k}: {old.get(k)!r} there, {settings.get(k)!r} now"
                for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
        if diff:
            raise ValueError(f"{parts.parent} holds a partial extraction with other settings ({'; '.join(diff)}): "
                             "resume with the same settings, use another --out, or add --overwrite to start over")
        return
    atomic_write_json(path, {"format": MANIFEST_FORMAT, "settings": settings})


def _done_path(out: Path) -> Path:
    return out / "extract.json"


def extract_mnist(out, weights="imagenet", size: int = 224, batch_size: int | None = None, device: str = "auto",
                  limit: int | None = None, limit_test: int | None = None, data=None,
                  stride_in_1x1: bool | None = None, precision: str = "auto", seed: int = 0,
                  quiet: bool = False, compile: str = "auto", chunk_size: int | None = None,
                  shard=None, overwrite: bool = False):
    """Extract the features of MNIST train and test (optionally a stratified subset of ``limit``
    train / ``limit_test`` test images) into ``out/mnist_train.mat`` and ``out/mnist_test.mat``,
    resumably and optionally as one shard of several (module docstring). ``chunk_size`` None:
    ``DEFAULT_CHUNK`` rounded up to a multiple of the batch. Returns a dict: device, model info,
    engine, shard, chunk counts, images extracted by this call and their rate, and ``merged``
    (the two paths, or None while other shards' chunks are missing)."""
    from .data import load_mnist, subsample

    out = Path(out)
    shard_i, shard_n = parse_shard(shard)
    dev = resolve_device(device)
    if dev == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per rank
        dev = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    if batch_size is None:
        batch_size = CUDA_BATCH if dev.startswith("cuda") else CPU_BATCH
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if chunk_size is None:
        chunk_size = -(-DEFAULT_CHUNK // batch_size) * batch_size
    if (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1
            or chunk_size % batch_size):
        raise ValueError(f"chunk_size must be a positive multiple of batch_size {batch_size}, got {chunk_size!r}")
    parts = out / PARTS
    if overwrite:
        for p in list(parts.glob("*")) if parts.is_dir() else []:
            p.unlink()
        _done_path(out).unlink(missing_ok=True)
    model, info = build_resnet50(weights, stride_in_1x1=stride_in_1x1, seed=seed)
    x_tr, y_tr, x_te, y_te = load_mnist(data, download=True, quiet=quiet)
    if limit:
        x_tr, y_tr = subsample(x_tr, y_tr, min(int(limit), len(y_tr)), seed=seed)
    lt = limit_test if limit_test is not None else limit
    if lt:
        x_te, y_te = subsample(x_te, y_te, min(int(lt), len(y_te)), seed=seed)
    settings = {
        "weights": info["weights"] if info["weights"] != "none" else f"none (seed {seed})",
        "weights_sha256": info["weights_sha256"], "stride_in_1x1": info["stride_in_1x1"],
        "size": int(size), "batch_size": int(batch_size), "chunk_size": int(chunk_size),
        "preprocessing": PREPROCESSING, "precision": precision,
        "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
        "subset": {"limit": limit, "limit_test": limit_test, "seed": seed},
        "data_sha256": _array_sha256(x_tr, y_tr, x_te, y_te),
    }
    done = _done_path(out)
    result = {"device": dev, **info, "size": int(size), "batch_size": int(batch_size), "shard": (shard_i, shard_n),
              "engine": None, "images": 0, "seconds": 0.0, "images_per_second": None}
    if done.exists():
        finished = json.loads(done.read_text())
        if finished.get("settings") != settings:
            raise ValueError(f"{out} holds a finished extraction with other settings: use another --out or add "
                             "--overwrite")
        result.update(chunks_total=finished["chunks"], chunks_done=finished["chunks"],
                      merged={s: str(out / f"mnist_{s}.mat") for s in ("train", "test")}, already_complete=True)
        return result
    parts.mkdir(parents=True, exist_ok=True)
    _manifest(parts, settings)
    plan = _chunks(len(y_tr), len(y_te), int(chunk_size))
    mine = [c for k, c in enumerate(plan) if k % shard_n == shard_i]
    _remove_stale_tmp(parts, [_chunk_name(*c) for c in mine])
    todo = [c for c in mine if not (parts / _chunk_name(*c)).exists()]
    result.update(chunks_total=len(plan))
    if todo:
        from ._progress import progress

        fx = FeatureExtractor(model, size=size, device=dev, batch_size=batch_size, precision=precision,
                              compile=compile, quiet=quiet)
        torch = _torch()
        split_data = {"train": (x_tr, y_tr), "test": (x_te, y_te)}
        total = sum(e - s for _, s, e in mine)
        left = sum(e - s for _, s, e in todo)
        label = "ResNet-50" + (f" shard {shard_i}/{shard_n}" if shard_n > 1 else "")
        bar = progress(total=total, initial=total - left, desc=label, quiet=quiet, unit="img")
        t0 = time.perf_counter()
        try:
            for split, s, e in todo:
                x, y = split_data[split]
                f = fx(x[s:e], bar=bar)
                atomic_savez(parts / _chunk_name(split, s, e), compressed=False, features=f,
                             labels=y[s:e].astype(np.int64), engine=np.array(fx.engine),
                             threads=np.int64(torch.get_num_threads()))
        finally:
            bar.close()
        secs = time.perf_counter() - t0
        result.update(engine=fx.engine, images=left, seconds=secs, images_per_second=left / secs if secs > 0 else None)
    missing = [c for c in plan if not (parts / _chunk_name(*c)).exists()]
    result["chunks_done"] = len(plan) - len(missing)
    result["merged"] = None if missing else merge_parts(out, quiet=True)
    return result


def merge_parts(out, quiet: bool = False) -> dict | None:
    """Write ``out/mnist_{train,test}.mat`` from the chunks in ``out/parts`` and delete them.
    Returns the two paths; None when another process is merging. A ValueError names the missing
    chunks when some are missing."""
    from . import __version__

    out = Path(out)
    parts = out / PARTS
    done = _done_path(out)
    if done.exists():
        return {s: str(out / f"mnist_{s}.mat") for s in ("train", "test")}
    man = parts / "manifest.json"
    if not man.exists():
        raise ValueError(f"{out} holds no extraction to merge (no {PARTS}/manifest.json)")
    try:
        settings = json.loads(man.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read {man} ({type(e).__name__}: {e})") from e
    lock = _try_lock(parts / "merge.lock")
    if lock is False:
        return None  # another shard is merging
    try:
        if done.exists():
            return {s: str(out / f"mnist_{s}.mat") for s in ("train", "test")}
        plan = _chunks(settings["n_train"], settings["n_test"], settings["chunk_size"])
        missing = [_chunk_name(*c) for c in plan if not (parts / _chunk_name(*c)).exists()]
        if missing:
            raise ValueError(f"{len(missing)} of {len(plan)} chunks are missing in {parts} (e.g. {missing[:3]}): "
                             "run the remaining shards first")
        _remove_stale_tmp(out, ["mnist_train.mat", "mnist_test.mat"])
        paths = {}
        for split in ("train", "test"):
            fs, ys = [], []
            for sp, s, e in plan:
                if sp != split:
                    continue
                p = parts / _chunk_name(sp, s, e)
                try:
                    with np.load(p) as z:
                        f, y = z["features"], z["labels"]
                except Exception as err:  # noqa: BLE001 -- a damaged chunk: say which, and how to redo it
                    raise ValueError(f"cannot read chunk {p} ({type(err).__name__}: {err}); delete it and run "
                                     "the extraction again") from err
                if f.shape != (e - s, FEATURE_DIM) or y.shape != (e - s,):
                    raise ValueError(f"chunk {p} holds {f.shape} features and {y.shape} labels, expected "
                                     f"({e - s}, {FEATURE_DIM}); delete it and run the extraction again")
                fs.append(f)
                ys.append(y)
            feats = np.concatenate(fs) if fs else np.zeros((0, FEATURE_DIM), np.float32)
            labels = np.concatenate(ys) if ys else np.zeros(0, np.int64)
            paths[split] = str(save_features_mat(
                out / f"mnist_{split}.mat", feats, labels, split=split, weights=settings["weights"],
                weights_sha256=settings["weights_sha256"], size=int(settings["size"]),
                stride_in_1x1=int(settings["stride_in_1x1"]), preprocessing=settings["preprocessing"],
                fastmnist_version=__version__))
        atomic_write_json(done, {"settings": settings, "chunks": len(plan),
                                 "files": {s: {"path": Path(p).name, "sha256": _sha256(Path(p))}
                                           for s, p in paths.items()}})
        for c in plan:
            (parts / _chunk_name(*c)).unlink(missing_ok=True)
        if not quiet:
            print(f"merged {len(plan)} chunks into {paths['train']} and {paths['test']}")
        return paths
    finally:
        _unlock(lock)


def _try_lock(path: Path):
    """An exclusive advisory lock on ``path`` (released when the process dies): the open file, or
    False when another process holds it, or None where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return False
    return f


def _unlock(lock) -> None:
    if lock:
        lock.close()
