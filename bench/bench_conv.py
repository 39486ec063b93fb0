"""conv2d (forward, input gradient, weight + bias gradient) and SGEMM against PyTorch.

Rows are the classic MNIST conv layers: `cnn` (3x3, padding 1) and `cnn5` (5x5, padding 2),
1->16 channels at 28x28 and 16->32 at 14x14, batch 64 and 256. The PyTorch side is
torch.nn.functional.conv2d (forward) and torch.ops.aten.convolution_backward with the output
mask of the gradient being timed (input only; weight + bias).
"""
from __future__ import annotations

import numpy as np
import torch

from _util import timeit

from fastmnist import _core

LAYERS = [  # (model, C, H, K, R, pad)
    ("cnn", 1, 28, 16, 3, 1),
    ("cnn", 16, 14, 32, 3, 1),
    ("cnn5", 1, 28, 16, 5, 2),
    ("cnn5", 16, 14, 32, 5, 2),
]


def run(ctx):
    rep = dict(repeat=5, warmup=2, min_time=0.01) if ctx.quick else dict(repeat=11, warmup=3, min_time=0.05)
    rng = np.random.default_rng(0)
    batches = [64, 256]
    for model, C, H, K, R, pad in LAYERS:
        for N in batches:
            x = rng.standard_normal((N, C, H, H), dtype=np.float32)
            w = (rng.standard_normal((K, C, R, R), dtype=np.float32) / np.sqrt(C * R * R)).astype(np.float32)
            b = rng.standard_normal(K, dtype=np.float32)
            g = rng.standard_normal((N, K, H, H), dtype=np.float32)
            xt, wt, bt, gt = (torch.from_numpy(a) for a in (x, w, b, g))
            flops = 2.0 * N * K * C * R * R * H * H
            shape = f"{model} {C}->{K} {R}x{R} p{pad} @{H}x{H}"

            fm_ms = timeit(lambda: _core.conv2d_forward(x, w, b, 1, pad), **rep)
            th_ms = timeit(lambda: torch.nn.functional.conv2d(xt, wt, bt, 1, pad), **rep)
            ctx.add("conv2d forward", shape, N, fm_ms, th_ms, flops=flops)

            def th_bwd(mask):
                return lambda: torch.ops.aten.convolution_backward(
                    gt, xt, wt, [K], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)

            if C > 1:
                fm_ms = timeit(lambda: _core.conv2d_backward(g, x, w, 1, pad, False, True, "fast", False), **rep)
                th_ms = timeit(th_bwd([True, False, False]), **rep)
                ctx.add("conv2d backward_input", shape, N, fm_ms, th_ms, flops=flops)

            fm_ms = timeit(lambda: _core.conv2d_backward(g, x, w, 1, pad, True, False), **rep)
            th_ms = timeit(th_bwd([False, True, True]), **rep)
            ctx.add("conv2d backward_weight+bias", shape, N, fm_ms, th_ms, flops=flops)

    n = 512 if ctx.quick else 1024
    a = rng.standard_normal((n, n), dtype=np.float32)
    bb = rng.standard_normal((n, n), dtype=np.float32)
    at, bt2 = torch.from_numpy(a), torch.from_numpy(bb)
    fm_ms = timeit(lambda: _core._sgemm(a, bb), **rep)
    th_ms = timeit(lambda: torch.mm(at, bt2), **rep)
    ctx.add(f"sgemm ({_core.gemm_isa()})", f"{n}x{n}x{n}", None, fm_ms, th_ms, flops=2.0 * n**3)
