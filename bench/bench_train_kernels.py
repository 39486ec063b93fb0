"""Training-side kernels: the Adam step on the cnn's parameters and batch augmentation.

Rows:
  adam_step        fastmnist Adam.step() (one C++ call per parameter) vs torch.optim.Adam(foreach=True),
                   vs torch's default (single-tensor on CPU), and vs a NumPy implementation.
  sgd_momentum     fastmnist SGD(momentum=0.9, nesterov) vs torch.optim.SGD(foreach=True).
  rot+persp        RandomRotation(10) then RandomPerspective(0.2, p=1) on a 256-image batch, bilinear:
                   fastmnist (a fresh transform per sample) vs torchvision.transforms.v2 on the same batch
                   tensor (ONE transform for the whole batch -- less work than per-sample parameters) and
                   vs v2 applied per image (what per-sample augmentation costs with torchvision).
"""
from __future__ import annotations

import numpy as np

from _util import timeit

# the 3x3 `cnn`'s parameter shapes (~420k floats): conv 1->32, conv 32->64, fc 3136->128, fc 128->10
CNN_SHAPES = [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 3136), (128,), (10, 128), (10,)]


class NumpyAdam:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.p, self.lr, self.b1, self.b2, self.eps = params, lr, betas[0], betas[1], eps
        self.m = [np.zeros_like(a) for a, _ in params]
        self.v = [np.zeros_like(a) for a, _ in params]
        self.t = 0

    def step(self):
        self.t += 1
        bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for (p, g), m, v in zip(self.p, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= (self.lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + self.eps)


def _optim_rows(ctx):
    import torch

    from fastmnist.optim import SGD, Adam
    from fastmnist.parameter import Parameter

    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(np.float32) for s in CNN_SHAPES]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in CNN_SHAPES]
    nfl = sum(a.size for a in init)
    shape = f"cnn params {len(CNN_SHAPES)} tensors, {nfl} floats"
    rep = dict(repeat=5 if ctx.quick else 11, warmup=3, min_time=0.05 if ctx.quick else 0.2)

    def ours(cls, **kw):
        ps = [Parameter(a, f"p{i}") for i, a in enumerate(init)]
        for p, g in zip(ps, grads):
            p.grad = g
        opt = cls(ps, **kw)
        return timeit(opt.step, **rep)

    def theirs(cls, **kw):
        ts = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
        for t, g in zip(ts, grads):
            t.grad = torch.from_numpy(g.copy())
        opt = cls(ts, **kw)
        return timeit(opt.step, **rep)

    ours_ms = ours(Adam, lr=1e-3)
    ctx.add("adam_step", shape, None, ours_ms, theirs(torch.optim.Adam, lr=1e-3, foreach=True),
            baseline="torch-foreach")
    ctx.add("adam_step", shape, None, ours_ms, theirs(torch.optim.Adam, lr=1e-3), baseline="torch")
    npa = NumpyAdam([(a.copy(), g) for a, g in zip(init, grads)])
    ctx.add("adam_step", shape, None, ours_ms, timeit(npa.step, **rep), baseline="numpy")
    kw = dict(lr=0.01, momentum=0.9, nesterov=True)
    ctx.add("sgd_nesterov_step", shape, None, ours(SGD, **kw), theirs(torch.optim.SGD, foreach=True, **kw),
            baseline="torch-foreach")


def _augment_rows(ctx):
    import torch
    from torchvision.transforms import InterpolationMode, v2

    from fastmnist import augment as A

    rng = np.random.default_rng(0)
    n = 256
    x = rng.random((n, 1, 28, 28)).astype(np.float32)
    x[:, :, :4] = 0  # digits have empty borders; irrelevant to speed, kept realistic
    xt = torch.from_numpy(x.copy())
    ours_t = A.Compose([A.RandomRotation(10), A.RandomPerspective(0.2, p=1.0)])
    tv_t = v2.Compose([v2.RandomRotation(10, interpolation=InterpolationMode.BILINEAR),
                       v2.RandomPerspective(0.2, p=1.0, interpolation=InterpolationMode.BILINEAR)])
    g = np.random.default_rng(1)
    rep = dict(repeat=5 if ctx.quick else 11, warmup=2, min_time=0.05 if ctx.quick else 0.2)
    ours_ms = timeit(lambda: ours_t(x, g), **rep)
    shape = f"({n},1,28,28) rotate 10 + perspective 0.2"
    ctx.add("rot+persp batch", shape, n, ours_ms, timeit(lambda: tv_t(xt), **rep), baseline="tv2-batch")
    per = dict(repeat=3, warmup=1) if ctx.quick else dict(repeat=5, warmup=1)
    ctx.add("rot+persp batch", shape, n, ours_ms, timeit(lambda: [tv_t(xt[i]) for i in range(n)], **per),
            baseline="tv2-per-image")
    r = A.RandomRotation(10)
    ctx.add("rotate batch", f"({n},1,28,28)", n, timeit(lambda: r(x, g), **rep),
            timeit(lambda: v2.functional.rotate(xt, 7.0, interpolation=InterpolationMode.BILINEAR), **rep),
            baseline="tv2-batch")


def run(ctx):
    _optim_rows(ctx)
    _augment_rows(ctx)
