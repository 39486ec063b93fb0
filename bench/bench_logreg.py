"""Logistic regression and ROC sweep against PyTorch and scikit-learn.

Rows:
- ``logreg epoch``: one epoch of mini-batch GD (batch 128) on (N, 2048) float32 features, 10
  classes; fastmnist's single C++ call against the same loop in PyTorch (index, linear, cross-entropy,
  backward, SGD step per batch). N = 60,000 (10,000 with --quick).
- ``logreg fit``: fit time on MNIST pixels (N = 60,000; 5,000 with --quick) to a similar test
  accuracy: fastmnist (3 epochs, batch 100, lr 0.5) against sklearn's LogisticRegression (lbfgs);
  both accuracies are in the row.
- ``roc_curve``: fastmnist.roc_curve against sklearn.metrics.roc_curve on n random float32 scores,
  n = 1e4, 1e6 and (without --quick) 1e7.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from _util import timeit

BATCH = 128


def _torch_epoch_fn(X, y, perm, C, lr):
    import torch

    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    pt = torch.from_numpy(perm)
    W = torch.nn.Parameter(torch.zeros(C, X.shape[1]))
    b = torch.nn.Parameter(torch.zeros(C))
    opt = torch.optim.SGD([W, b], lr=lr)

    def epoch():
        for s in range(0, len(perm), BATCH):
            idx = pt[s:s + BATCH]
            loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(Xt[idx], W, b), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return epoch


def bench_epoch(ctx):
    from fastmnist import _core

    N = 10_000 if ctx.quick else 60_000
    D, C = 2048, 10
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, C, N).astype(np.int64)
    perm = rng.permutation(N).astype(np.int64)
    W = np.zeros((C, D), np.float32)
    b = np.zeros(C, np.float32)
    fm = timeit(lambda: _core.logreg_epoch(X, y, perm, W, b, None, None, 1e-3, 0.0, BATCH, False),
                repeat=3 if ctx.quick else 5, warmup=1)
    th = timeit(_torch_epoch_fn(X, y, perm, C, 1e-3), repeat=3 if ctx.quick else 5, warmup=1)
    ctx.add("logreg epoch (GD, 10 cls)", f"X({N},{D})", BATCH, fm, th, flops=4.0 * N * D * C)


def _mnist_pixels(n):
    here = Path(__file__).resolve().parents[1]
    root = os.environ.get("FASTMNIST_DATA") or str(here.parent / "shared" / "mnist")
    from fastmnist.data import load_mnist

    try:
        x_tr, y_tr, x_te, y_te = load_mnist(root, download=False)
    except Exception as e:  # noqa: BLE001
        print(f"  logreg fit: MNIST not found ({e}); skipped", file=sys.stderr)
        return None
    f = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255  # noqa: E731
    return f(x_tr[:n]), y_tr[:n].astype(np.int64), f(x_te), y_te.astype(np.int64)


def bench_fit(ctx):
    import fastmnist

    try:
        from sklearn.linear_model import LogisticRegression as SkLR
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("  logreg fit: scikit-learn not installed; skipped", file=sys.stderr)
        return
    N = 5_000 if ctx.quick else 60_000
    data = _mnist_pixels(N)
    if data is None:
        return
    X, y, Xt, yt = data
    ours = fastmnist.LogisticRegression(lr=0.5, batch_size=100, epochs=3, standardize=False)
    fm = timeit(lambda: ours.fit(X, y), repeat=3, warmup=1)
    # sklearn: lbfgs with its default max_iter=100 (about where its test accuracy levels off)
    acc_fm = ours.score(Xt, yt)
    sk = SkLR(max_iter=100, tol=1e-4)
    import warnings

    with threadpool_limits(ctx.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs "did not converge" at max_iter is expected
        skm = timeit(lambda: sk.fit(X, y), repeat=1, warmup=0)
    acc_sk = float(np.mean(sk.predict(Xt) == yt))
    ctx.add("logreg fit MNIST pixels", f"X({N},784)", 100, fm, skm, baseline="sklearn",
            fastmnist_acc=round(acc_fm, 4), sklearn_acc=round(acc_sk, 4))


def bench_roc(ctx):
    import fastmnist
    from sklearn.metrics import roc_curve as sk_roc

    sizes = [10_000, 1_000_000] + ([] if ctx.quick else [10_000_000])
    rng = np.random.default_rng(0)
    for n in sizes:
        y = rng.integers(0, 2, n)
        s = rng.random(n, dtype=np.float32)
        rep = 3 if n >= 10_000_000 else (5 if ctx.quick else 9)
        fm = timeit(lambda: fastmnist.roc_curve(y, s), repeat=rep, warmup=1)
        sk = timeit(lambda: sk_roc(y, s), repeat=rep, warmup=1)
        ctx.add("roc_curve (float32 scores)", f"n={n:.0e}", None, fm, sk, baseline="sklearn")


def run(ctx):
    bench_epoch(ctx)
    bench_fit(ctx)
    bench_roc(ctx)
