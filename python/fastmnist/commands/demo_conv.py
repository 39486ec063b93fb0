"""``fastmnist demo-conv``: one convolution and one max-pooling of an MNIST digit, computed by hand in
plain loops (the point of the classic write-up: there is no magic in a conv layer) and drawn side by
side: the image, the 5x5 filter, the convolved map and the 2x2 max-pooled map."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FILTERS = ("edge", "blur", "random")


def make_filter(kind: str, seed: int = 0) -> np.ndarray:
    """A 5x5 filter: 'edge' (Sobel-like vertical-edge detector: smoothing down the rows times a
    derivative across the columns), 'blur' (binomial approximation of a Gaussian, sums to 1) or
    'random' (normal, std 0.2, from ``seed``)."""
    smooth = np.array([1, 4, 6, 4, 1], dtype=np.float32)
    if kind == "edge":
        deriv = np.array([-1, -2, 0, 2, 1], dtype=np.float32)
        return np.outer(smooth / smooth.sum(), deriv).astype(np.float32)
    if kind == "blur":
        k = np.outer(smooth, smooth)
        return (k / k.sum()).astype(np.float32)
    if kind == "random":
        return np.random.default_rng(seed).normal(0.0, 0.2, size=(5, 5)).astype(np.float32)
    raise ValueError(f"filter must be one of {', '.join(FILTERS)}, got {kind!r}")


def conv2d_by_hand(image, kernel, *, padding: int = 0, stride: int = 1) -> np.ndarray:
    """2-D cross-correlation of one single-channel image with one filter, the way
    ``torch.nn.functional.conv2d`` defines it, in explicit loops.

    image (H, W), kernel (R, S) -> out (P, Q) with P = (H + 2*padding - R) // stride + 1 (same for Q).
    """
    x = np.asarray(image, dtype=np.float32)
    k = np.asarray(kernel, dtype=np.float32)
    if x.ndim != 2 or k.ndim != 2:
        raise ValueError(f"image and kernel must be 2-D, got {x.shape} and {k.shape}")
    if int(padding) != padding or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    padding, stride = int(padding), int(stride)
    H, W = x.shape
    R, S = k.shape
    # 1. zero padding: copy the image into the middle of a larger array of zeros
    padded = np.zeros((H + 2 * padding, W + 2 * padding), dtype=np.float32)
    for i in range(H):
        for j in range(W):
            padded[i + padding, j + padding] = x[i, j]
    P = (H + 2 * padding - R) // stride + 1
    Q = (W + 2 * padding - S) // stride + 1
    if P < 1 or Q < 1:
        raise ValueError(f"a {R}x{S} filter does not fit a {H}x{W} image with padding {padding}")
    # 2. slide the filter: each output is the sum of the elementwise products under the window
    out = np.zeros((P, Q), dtype=np.float32)
    for p in range(P):
        for q in range(Q):
            acc = 0.0
            for r in range(R):
                for s in range(S):
                    acc += float(padded[p * stride + r, q * stride + s]) * float(k[r, s])
            out[p, q] = acc
    return out


def max_pool_by_hand(x, *, size: int = 2, stride: int | None = None) -> np.ndarray:
    """Max pooling of one 2-D map in explicit loops (floor mode, like
    ``torch.nn.functional.max_pool2d``): x (H, W) -> (H', W'), H' = (H - size) // stride + 1."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"x must be 2-D, got shape {a.shape}")
    stride = size if stride is None else stride
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be positive, got {size} and {stride}")
    H, W = a.shape
    P, Q = (H - size) // stride + 1, (W - size) // stride + 1
    if P < 1 or Q < 1:
        raise ValueError(f"a {size}x{size} window does not fit a {H}x{W} map")
    out = np.zeros((P, Q), dtype=np.float32)
    for p in range(P):
        for q in range(Q):
            best = -np.inf
            for r in range(size):
                for s in range(size):
                    v = a[p * stride + r, q * stride + s]
                    if v > best:
                        best = v
            out[p, q] = best
    return out


def load_test_image(data: str | None, index: int) -> tuple[np.ndarray, int]:
    """Test image ``index`` (float32 in [0, 1], 28x28) and its label. ``data`` is an MNIST directory
    (None: ``$FASTMNIST_DATA`` or the cache, downloading the files when missing), a directory holding
    Kaggle's train.csv or a CSV file (the test set as ``fastmnist train --data`` makes it)."""
    from ..data import (
        FILES,
        MNISTError,
        default_root,
        find_file,
        load_dataset,
        load_idx,
        load_mnist,
    )

    root = Path(data).expanduser() if data else default_root()
    fi, fl = (find_file(root, FILES[k][0]) for k in ("test_images", "test_labels"))
    if data and (root.is_file() or (fi is None and (root / "train.csv").is_file())):
        _, _, x, y, _ = load_dataset(root, download=False)
    elif fi is None or fl is None:
        if data:
            raise MNISTError(f"MNIST test files missing in {root}")
        _, _, x, y = load_mnist(root, download=True)
    else:
        x, y = load_idx(fi, expect_ndim=3), load_idx(fl, expect_ndim=1)
    if not 0 <= index < len(x):
        raise ValueError(f"--index must lie in [0, {len(x)}), got {index}")
    return np.asarray(x[index], dtype=np.float32) / 255.0, int(y[index])


def add_parser(sub):
    p = sub.add_parser("demo-conv", help="convolve and max-pool one digit by hand and draw each step",
                       description="Convolve one MNIST test digit with a 5x5 filter and 2x2 max-pool the "
                                   "result in plain, readable loops (no library kernels), then draw "
                                   "the image, the filter, the convolved map and the pooled map.")
    p.add_argument("--index", type=int, default=0, help="test-set image index (default 0)")
    p.add_argument("--padding", type=int, default=0, help="zero padding on each side (default 0)")
    p.add_argument("--stride", type=int, default=1, help="convolution stride (default 1)")
    p.add_argument("--filter", choices=FILTERS, default="edge", help="the 5x5 filter (default edge)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random filter")
    p.add_argument("--data", help="MNIST directory, Kaggle CSV directory or CSV file (default: FASTMNIST_DATA "
                                  "or the cache)")
    p.add_argument("--out", default="conv_demo.png", help="output PNG (default conv_demo.png)")
    p.add_argument("--dpi", type=int, default=100)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..plots import plot_conv_demo, save_figure

    image, label = load_test_image(args.data, args.index)
    kernel = make_filter(args.filter, args.seed)
    conv = conv2d_by_hand(image, kernel, padding=args.padding, stride=args.stride)
    pooled = max_pool_by_hand(conv, size=2)
    fig = plot_conv_demo(image, kernel, conv, pooled, padding=args.padding, stride=args.stride,
                         filter_name=args.filter,
                         title=f"Test image {args.index} (label {label}): a convolution and a max-pooling, by hand")
    out = save_figure(fig, args.out, dpi=args.dpi)
    print(f"image 28x28 -> conv {conv.shape[0]}x{conv.shape[1]} (5x5 {args.filter}, padding {args.padding}, "
          f"stride {args.stride}) -> max-pool {pooled.shape[0]}x{pooled.shape[1]}; wrote {out}")
    return 0
