"""``fastmnist predict CHECKPOINT IMAGE...``: classify digits with a trained model."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_parser(sub):
    p = sub.add_parser(
        "predict", help="classify images with a trained checkpoint (model.npz)",
        description="Print the predicted digit and the class probabilities for each image. Images "
                    "are PNG/JPEG files (any size: converted to grayscale, resized to 28x28 and "
                    "inverted when the background is light, since MNIST digits are white on black), "
                    "IDX image files (.gz or raw; every image in them), or CSV files (.csv or .csv.gz) "
                    "in Kaggle's layouts: train.csv (label,pixel0..pixel783) or the unlabelled "
                    "test.csv (pixel0..pixel783), every row. --submission writes Kaggle's "
                    "ImageId,Label submission file.",
        epilog="example:\n  fastmnist train cnn --out runs/cnn\n"
               "  fastmnist predict runs/cnn/model.npz digit.png t10k-images-idx3-ubyte.gz --limit 5\n"
               "  fastmnist predict runs/cnn/model.npz kaggle/test.csv --submission submission.csv --quiet",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="model.npz written by `fastmnist train`")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG/JPEG image, IDX image file or MNIST CSV")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N images per IDX/CSV file")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.add_argument("--submission", metavar="FILE",
                   help="also write Kaggle's submission CSV: ImageId (1, 2, ... over all inputs in order),Label")
    p.add_argument("--quiet", action="store_true", help="print nothing per image (with --submission)")
    p.add_argument("--threads", type=int, help="OpenMP threads")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)


def load_picture(path: Path) -> np.ndarray:
    """A picture file -> uint8 (28, 28), white digit on black."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a test dependency
        Image = None
    if Image is not None:
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a directory, not an image")
        try:
            with Image.open(path) as im:
                im = im.convert("L")
                if im.size != (28, 28):
                    im = im.resize((28, 28), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (OSError, Image.DecompressionBombError) as e:
            raise ValueError(f"{str(path)!r} is not a readable image: {e}") from None
    else:
        import matplotlib.image as mpimg

        a = mpimg.imread(str(path))
        if a.ndim == 3:
            a = a[..., :3].mean(-1)
        if a.dtype != np.uint8:
            a = (np.clip(a, 0, 1) * 255).astype(np.uint8)
        if a.shape != (28, 28):
            raise ValueError(f"{str(path)!r}: image must be 28x28 without pillow, got {a.shape}")
    # MNIST digits are light on a dark background: invert pictures with a light background
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 127:
        a = 255 - a
    return a


def load_inputs(path: Path, limit=None):
    """-> list of (label, uint8 (28, 28) image)."""
    from ..data import load_idx, load_mnist_csv

    name = path.name.lower()
    if not path.exists():
        raise OSError(f"{str(path)!r} does not exist")
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        x, _ = load_mnist_csv(path)
        x = x[:limit] if limit else x
        return [(f"{path}:{i}", x[i]) for i in range(len(x))]
    if "idx" in name or name.endswith("ubyte") or name.endswith("ubyte.gz"):
        x = load_idx(path, expect_shape=(None, 28, 28))
        if x.dtype != np.uint8:
            raise ValueError(f"{str(path)!r}: expected uint8 pixels in an IDX image file, got {x.dtype}")
        x = x[:limit] if limit else x
        return [(f"{path}:{i}", x[i]) for i in range(len(x))]
    return [(str(path), load_picture(path))]


def run(args) -> int:
    from ..checkpoint import load_checkpoint
    from ..train import prepare

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")

    model, info = load_checkpoint(args.checkpoint)
    meta = info.get("meta", {})
    normalize = bool(meta.get("normalize", True))
    from ..nn import get_loss

    loss = get_loss(meta.get("loss", "cross_entropy"))
    items = []
    for p in args.images:
        items += load_inputs(Path(p), args.limit)
    if not items:
        raise ValueError("no images to classify")
    x = np.stack([a for _, a in items])
    xp = prepare(x, normalize=normalize)
    outs = [model.forward(xp[i:i + 1000]) for i in range(0, len(xp), 1000)]
    proba = loss.probabilities(np.concatenate(outs))
    if args.submission:
        from .._io import atomic_write_text

        digits = proba.argmax(1)
        atomic_write_text(Path(args.submission), "ImageId,Label\n" + "".join(
            f"{i},{int(d)}\n" for i, d in enumerate(digits, 1)))
        print(f"wrote {args.submission} ({len(digits)} predictions)")
    if args.quiet:
        return 0
    for (label, _), pr in zip(items, proba):
        d = int(pr.argmax())
        if args.json:
            print(json.dumps({"input": label, "digit": d, "probabilities": [round(float(v), 6) for v in pr]}))
        else:
            ps = " ".join(f"{k}:{v:.3f}" for k, v in enumerate(pr))
            print(f"{label}: {d} (p={pr[d]:.3f})  [{ps}]")
    return 0
