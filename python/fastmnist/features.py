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
``size``            the input side the digits were resized to
``stride_in_1x1``   1 when the network ran with ResNet v1 stride placement, else 0
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
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

AMP_TOLERANCE = 1e-2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
V1_NAME_MARKERS = ("keras", "caffe", "msra")
FEATURE_DIM = 2048

__all__ = ["build_resnet50", "detect_stride_in_1x1", "patch_stride_in_1x1", "resolve_device",
           "extract_features", "save_features_mat", "load_features_mat", "extract_mnist",
           "AMP_TOLERANCE"]


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
    features). Returns ``(model, info)`` with info = {"weights": str, "stride_in_1x1": bool}."""
    torch = _torch()
    import torchvision

    spec = "none" if weights is None else str(weights)
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
    if stride_in_1x1 is None:
        stride_in_1x1 = detect_stride_in_1x1(weights)
    if stride_in_1x1:
        patch_stride_in_1x1(model)
    model.fc = torch.nn.Identity()
    model.eval()
    return model, {"weights": spec, "stride_in_1x1": bool(stride_in_1x1)}


def _preprocess(x, size: int):
    """uint8 tensor (B, 28, 28) on the device -> normalised float32 (B, 3, size, size)."""
    torch = _torch()
    import torch.nn.functional as F

    x = x.to(torch.float32).div_(255.0).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x.expand(-1, 3, -1, -1) - mean) / std).contiguous(memory_format=torch.channels_last)


def extract_features(model, images, size: int = 224, batch_size: int = 128, device: str = "cpu",
                     precision: str = "auto", quiet: bool = False, desc: str = "features") -> np.ndarray:
    """ResNet features (N, 2048) float32 of uint8 images (N, 28, 28)."""
    torch = _torch()
    from ._progress import progress

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    if not (isinstance(size, (int, np.integer)) and size >= 32):
        raise ValueError(f"size must be an integer >= 32 (ResNet-50 downsamples by 32), got {size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if precision not in ("auto", "fp32", "fp16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'fp16', got {precision!r}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if precision == "fp16" and not cuda:
        raise ValueError("precision 'fp16' needs a CUDA device")
    model = model.to(dev).to(memory_format=torch.channels_last)
    n = images.shape[0]
    out = np.empty((n, FEATURE_DIM), np.float32)
    src = torch.from_numpy(images)
    if cuda:
        src = src.pin_memory()
    use_amp = precision == "fp16"
    bar = progress(total=n, desc=desc, quiet=quiet, unit="img")
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            xb = _preprocess(src[start:start + batch_size].to(dev, non_blocking=cuda), size)
            if cuda and precision == "auto" and start == 0:
                f32 = model(xb).float()
                with torch.autocast("cuda", dtype=torch.float16):
                    f16 = model(xb).float()
                rel = ((f16 - f32).norm(dim=1) / f32.norm(dim=1).clamp_min(1e-12)).max().item()
                use_amp = rel <= AMP_TOLERANCE
                if not quiet:
                    print(f"mixed precision: max relative feature error {rel:.2e} "
                          f"{'<=' if use_amp else '>'} {AMP_TOLERANCE:g}: using {'fp16' if use_amp else 'fp32'}")
                fb = f32
            elif use_amp:
                with torch.autocast("cuda", dtype=torch.float16):
                    fb = model(xb).float()
            else:
                fb = model(xb)
            out[start:start + fb.shape[0]] = fb.reshape(fb.shape[0], -1).cpu().numpy()
            bar.update(fb.shape[0])
    bar.close()
    return out


def save_features_mat(path, features, labels, **meta) -> Path:
    """Write ``features`` (N, 2048) float32 and ``labels`` (N,) to a MATLAB v5 .mat file (keys in
    the module docstring) plus any scalar/string ``meta``."""
    import scipy.io

    path = Path(path)
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels).astype(np.int64).reshape(-1, 1)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features (N, D) and labels (N,) must match, got {features.shape} and {labels.shape}")
    d = {"features": features, "labels": labels}
    d.update({k: v for k, v in meta.items() if v is not None})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(path), d, do_compression=False)
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from e
    return path


def load_features_mat(path):
    """Read a features .mat file -> ``(features float32 (N, D), labels int64 (N,))``."""
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
    y = np.asarray(d["labels"]).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: 'features' must be N x D and 'labels' N x 1, got {X.shape} and {d['labels'].shape}")
    return np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64)


def extract_mnist(out, weights="imagenet", size: int = 224, batch_size: int = 128, device: str = "auto",
                  limit: int | None = None, limit_test: int | None = None, data=None,
                  stride_in_1x1: bool | None = None, precision: str = "auto", seed: int = 0,
                  quiet: bool = False):
    """Extract the features of MNIST train and test (optionally a stratified subset of ``limit``
    train / ``limit_test`` test images) into ``out/mnist_train.mat`` and ``out/mnist_test.mat``.
    Returns a dict with the two paths, the device, the model info and timings."""
    from .data import load_mnist, subsample

    out = Path(out)
    dev = resolve_device(device)
    model, info = build_resnet50(weights, stride_in_1x1=stride_in_1x1, seed=seed)
    x_tr, y_tr, x_te, y_te = load_mnist(data, download=True, quiet=quiet)
    if limit:
        x_tr, y_tr = subsample(x_tr, y_tr, min(int(limit), len(y_tr)), seed=seed)
    lt = limit_test if limit_test is not None else limit
    if lt:
        x_te, y_te = subsample(x_te, y_te, min(int(lt), len(y_te)), seed=seed)
    from . import __version__

    result = {"device": dev, **info, "size": int(size)}
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        t0 = time.perf_counter()
        f = extract_features(model, x, size=size, batch_size=batch_size, device=dev, precision=precision,
                             quiet=quiet, desc=f"ResNet-50 {split}")
        secs = time.perf_counter() - t0
        p = save_features_mat(out / f"mnist_{split}.mat", f, y, split=split, weights=info["weights"],
                              size=int(size), stride_in_1x1=int(info["stride_in_1x1"]),
                              fastmnist_version=__version__)
        result[split] = {"path": str(p), "n": int(len(y)), "seconds": secs, "images_per_second": len(y) / secs}
    return result
