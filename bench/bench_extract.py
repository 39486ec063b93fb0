"""ResNet-50 feature extraction at 224 x 224 (what ``fastmnist extract`` runs) against plain eager
PyTorch, float32, same threads, same real MNIST digits.

Rows (ms per batch; ratio = eager NCHW time / ours, i.e. the images/s ratio; the shape column
reads "<ours> vs <eager NCHW> img/s, err <max relative feature error>"):
- ``resnet50 224 (<engine>)``: :class:`fastmnist.features.FeatureExtractor` with
  ``compile="auto"`` (torch.compile with frozen weights, falling back to eager), preprocessing
  included, against eager PyTorch on NCHW float32 (the documented preprocessing building the
  3-channel normalised image, ``torch.no_grad``). ``img_s_ours`` / ``img_s_torch`` are images/s,
  ``max_rel_err`` the largest per-image ``||f - f_ref|| / ||f_ref||`` against the eager features,
  ``compile_s`` the first call (compilation included).
- ``resnet50 224 (eager)`` (full mode): the same without torch.compile (eager, channels-last).

Weights: the shared ImageNet ResNet-50 (``$FASTMNIST_WEIGHTS`` or ``../shared/weights``), with its
v1 stride placement; a seeded random network when absent. Quick mode: batch 16, 2 timed batches;
full: batches 16, 32 and 64, 3 timed batches each.

    python bench/compare.py --only extract [--quick]
    python bench/bench_extract.py [--quick] [--threads N]     (standalone)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from _util import timeit

SIZE = 224
HERE = Path(__file__).resolve().parent


def _weights():
    p = os.environ.get("FASTMNIST_WEIGHTS") or str(HERE.parents[1] / "shared" / "weights" /
                                                    "resnet50_keras_imagenet_tv.pth")
    if Path(p).exists():
        return p
    print(f"  extract: weights {p} not found; a seeded random ResNet-50 is timed instead", file=sys.stderr)
    return "none"


def _digits(n):
    from fastmnist.data import load_mnist

    root = os.environ.get("FASTMNIST_DATA") or str(HERE.parents[1] / "shared" / "mnist")
    try:
        return load_mnist(root, download=False)[2][:n]
    except Exception as e:  # noqa: BLE001
        print(f"  extract: MNIST not found ({e}); random digits instead", file=sys.stderr)
        return np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def eager_nchw(model, size):
    """The baseline: eager PyTorch on the NCHW float32 3-channel normalised image."""
    import torch

    from fastmnist.features import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def run(images):
        with torch.no_grad():
            x = torch.from_numpy(images).float().unsqueeze(1) / 255.0
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            return model((x.repeat(1, 3, 1, 1) - mean) / std).numpy()

    return run


def max_rel_err(f, ref):
    return float((np.linalg.norm(f - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)).max())


def run(ctx):
    import copy

    import torch

    from fastmnist.features import FeatureExtractor, build_resnet50

    model, info = build_resnet50(_weights())
    reference = copy.deepcopy(model)  # NCHW, untouched by the extractor
    base = eager_nchw(reference, SIZE)
    batches = [16] if ctx.quick else [16, 32, 64]
    nrep = 2 if ctx.quick else 3
    images = _digits(max(batches))
    engines = ["auto"] if ctx.quick else ["auto", "off"]
    for b in batches:
        x = images[:b]
        ref = base(x)
        th = timeit(lambda x=x: base(x), repeat=nrep, warmup=1)
        for compile in engines:
            fx = FeatureExtractor(model, size=SIZE, device="cpu", batch_size=b, compile=compile, quiet=True)
            t0 = time.perf_counter()
            f = fx(x)
            first = time.perf_counter() - t0
            ours = timeit(lambda fx=fx, x=x: fx(x), repeat=nrep, warmup=1)
            err = max_rel_err(f, ref)
            ctx.add(f"resnet50 {SIZE} ({fx.engine})", f"{b / ours * 1e3:.1f} vs {b / th * 1e3:.1f} img/s, err {err:.0e}",
                    b, ours, th, baseline="torch eager NCHW", weights=info["weights"],
                    img_s_ours=round(b / ours * 1e3, 2), img_s_torch=round(b / th * 1e3, 2), max_rel_err=err,
                    compile_s=round(first, 1), torch_threads=torch.get_num_threads())
            del fx
            torch._dynamo.reset()


if __name__ == "__main__":
    import argparse

    import torch

    import fastmnist
    from _util import Ctx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    threads = a.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    fastmnist.set_num_threads(threads)
    c = Ctx(threads=threads, quick=a.quick, peak_gflops=0.0)
    run(c)
    for r in c.rows:
        print(r)
