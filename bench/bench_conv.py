"""conv2d (forward, input gradient, weight + bias gradient) and SGEMM against PyTorch.

Rows are the conv layers of the models as they train: `cnn` (3x3, padding 1: 1->16 at 28x28,
16->32 at 14x14), `cnn5` (5x5, padding 0: 1->16 at 28x28, 16->32 at 12x12) and `fast` (1->24 5x5
at 28x28, 24->32 3x3 at 12x12, padding 0), batch 64 and 256. The PyTorch side is
torch.nn.functional.conv2d (forward) and torch.ops.aten.convolution_backward with the output
mask of the gradient being timed (input only; weight + bias). Each row's `kernel` names the
fastmnist kernel that ran (kernel_report()). No input gradient for the 1-channel first layers
(training never asks for it).
"""
from __future__ import annotations

import numpy as np
import torch

from _util import timeit_pair

from fastmnist import _core

LAYERS = [  # (model, C, H, K, R, pad)
    ("cnn", 1, 28, 16, 3, 1),
    ("cnn", 16, 14, 32, 3, 1),
    ("cnn5", 1, 28, 16, 5, 0),
    ("cnn5", 16, 12, 32, 5, 0),
    ("fast", 1, 28, 24, 5, 0),
    ("fast", 24, 12, 32, 3, 0),
]


def run(ctx):
    rep = dict(repeat=5, warmup=2, min_time=0.01) if ctx.quick else dict(repeat=11, warmup=3, min_time=0.05)
    rng = np.random.default_rng(0)
    batches = [64, 256]
    for model, C, H, K, R, pad in LAYERS:
        P = H + 2 * pad - R + 1
        for N in batches:
            x = rng.standard_normal((N, C, H, H), dtype=np.float32)
            w = (rng.standard_normal((K, C, R, R), dtype=np.float32) / np.sqrt(C * R * R)).astype(np.float32)
            b = rng.standard_normal(K, dtype=np.float32)
            g = rng.standard_normal((N, K, P, P), dtype=np.float32)
            xt, wt, bt, gt = (torch.from_numpy(a) for a in (x, w, b, g))
            flops = 2.0 * N * K * C * R * R * P * P
            shape = f"{model} {C}->{K} {R}x{R} p{pad} @{H}x{H}"

            def kernel(op):
                return _core.kernel_report()[op]

            fm_ms, th_ms = timeit_pair(lambda: _core.conv2d_forward(x, w, b, 1, pad),
                                       lambda: torch.nn.functional.conv2d(xt, wt, bt, 1, pad), **rep)
            ctx.add("conv2d forward", shape, N, fm_ms, th_ms, flops=flops, kernel=kernel("conv2d_forward"))

            def th_bwd(mask):
                return lambda: torch.ops.aten.convolution_backward(
                    gt, xt, wt, [K], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)

            if C > 1:
                fm_ms, th_ms = timeit_pair(lambda: _core.conv2d_backward(g, x, w, 1, pad, False, True, "fast", False),
                                           th_bwd([True, False, False]), **rep)
                ctx.add("conv2d backward_input", shape, N, fm_ms, th_ms, flops=flops,
                        kernel=kernel("conv2d_backward_input"))

            fm_ms, th_ms = timeit_pair(lambda: _core.conv2d_backward(g, x, w, 1, pad, True, False),
                                       th_bwd([False, True, True]), **rep)
            ctx.add("conv2d backward_weight+bias", shape, N, fm_ms, th_ms, flops=flops,
                    kernel=kernel("conv2d_backward_weight"))

    # both sizes of issue 10's SGEMM bar in every mode (1024^3 takes about 6 ms)
    for n in (512, 1024):
        a = rng.standard_normal((n, n), dtype=np.float32)
        bb = rng.standard_normal((n, n), dtype=np.float32)
        at, bt2 = torch.from_numpy(a), torch.from_numpy(bb)
        fm_ms, th_ms = timeit_pair(lambda: _core._sgemm(a, bb), lambda: torch.mm(at, bt2), **rep)
        ctx.add(f"sgemm ({_core.gemm_isa()})", f"{n}x{n}x{n}", None, fm_ms, th_ms, flops=2.0 * n**3)
