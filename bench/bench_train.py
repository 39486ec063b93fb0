"""End-to-end training: whole-epoch time of fnn / cnn (batch 64, Adam) and cnn5 (batch 128, Adam)
against the same architecture, optimizer and batch in PyTorch with the same threads, data already
in memory; in full mode also time-to-99% of the ``fast`` recipe against PyTorch running the same
recipe. Quick mode times a fraction of an epoch and scales it to 60,000 images.

    python bench/compare.py --only train [--quick]
    python bench/bench_train.py [--quick] [--threads N]     (standalone)
"""
from __future__ import annotations

import statistics
import time

import numpy as np


def _data(n):
    from fastmnist.data import load_mnist
    from fastmnist.train import prepare

    x_train, y_train, x_test, y_test = load_mnist()
    return prepare(x_train[:n]), y_train[:n].astype(np.int64), (x_train, y_train, x_test, y_test)


def _ours_epoch(name, x, y, bs, nb):
    from fastmnist import models, nn, optim

    m = models.build(name, seed=0)
    opt = optim.Adam(m.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()

    def run():
        for i in range(nb):
            xb = x[i * bs:(i + 1) * bs]
            yb = y[i * bs:(i + 1) * bs]
            out = m.forward(xb)
            lossf(out, yb)
            g = lossf.backward()
            opt.zero_grad()
            m.backward(g)
            opt.step()

    return m, run


def _torch_epoch(model, x, y, bs, nb):
    import torch
    import torch.nn.functional as TF

    tm = model.to_torch()
    opt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def run():
        for i in range(nb):
            out = tm(xt[i * bs:(i + 1) * bs])
            loss = TF.cross_entropy(out, yt[i * bs:(i + 1) * bs])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return run


def _interleaved(fa, fb, repeat):
    """Median seconds of fa and fb, run alternately (noise on a shared machine hits both)."""
    fa()
    fb()
    ta, tb = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        fa()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        fb()
        tb.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def epoch_rows(ctx):
    cases = [("fnn", 64), ("cnn", 64), ("cnn5", 128)]
    n_img = 6400 if ctx.quick else 60000
    x, y, _ = _data(60000)
    for name, bs in cases:
        nb = min(n_img, 60000) // bs
        model, ours = _ours_epoch(name, x, y, bs, nb)
        theirs = _torch_epoch(model, x, y, bs, nb)
        repeat = 3 if ctx.quick else 1
        to, tt = _interleaved(ours, theirs, repeat)
        scale = 60000 / (nb * bs)
        ctx.add(f"{name} epoch (Adam)", "60000x1x28x28" + (" (scaled)" if scale > 1.01 else ""), bs,
                to * scale * 1e3, tt * scale * 1e3)


def fast_rows(ctx):
    """Time to >= 99% test accuracy of the `fast` recipe, both libraries (full data, 1 epoch)."""
    import torch
    import torch.nn.functional as TF

    from fastmnist import models
    from fastmnist.train import Trainer, prepare

    _, _, (x_train, y_train, x_test, y_test) = _data(1)
    r = models.recipe("fast")
    steps = (len(y_train) + r.batch_size - 1) // r.batch_size
    m = models.build("fast", seed=0)
    tm = m.to_torch()
    t = time.perf_counter()
    opt = models.make_optimizer(r, m.parameters())
    tr = Trainer(m, opt, loss=models.make_loss(r), batch_size=r.batch_size, epochs=r.epochs, seed=0,
                 quiet=True, scheduler=models.make_scheduler(r, opt, steps))
    tr.fit(x_train, y_train)
    acc = tr.evaluate(x_test, y_test)[1]
    ours = time.perf_counter() - t

    t = time.perf_counter()
    xs = torch.from_numpy(prepare(x_train))
    ys = torch.from_numpy(y_train.astype(np.int64))
    topt = torch.optim.Adam(tm.parameters(), lr=r.lr, betas=tuple(r.betas))
    sched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=r.lr, total_steps=steps * r.epochs,
                                                pct_start=r.pct_start, cycle_momentum=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(r.epochs):
        perm = torch.randperm(len(ys), generator=g)
        for i in range(steps):
            idx = perm[i * r.batch_size:(i + 1) * r.batch_size]
            loss = TF.cross_entropy(tm(xs[idx]), ys[idx], label_smoothing=r.label_smoothing)
            topt.zero_grad()
            loss.backward()
            topt.step()
            sched.step()
    with torch.no_grad():
        tacc = float((tm(torch.from_numpy(prepare(x_test))).argmax(1).numpy() == y_test).mean())
    theirs = time.perf_counter() - t
    ctx.add(f"fast recipe to test acc (ours {acc:.4f}, torch {tacc:.4f})", "60000 train, 1 epoch",
            r.batch_size, ours * 1e3, theirs * 1e3, test_acc=acc, torch_test_acc=tacc)


def run(ctx):
    epoch_rows(ctx)
    if not ctx.quick:
        fast_rows(ctx)


if __name__ == "__main__":
    import argparse
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch

    import fastmnist
    from _util import Ctx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fastmnist.set_num_threads(a.threads)
    c = Ctx(threads=a.threads, quick=a.quick, peak_gflops=0.0)
    run(c)
    for row in c.rows:
        print(row)
