"""Pooling, activations, linear and losses: fastmnist against PyTorch (and NumPy) at batch 64 and 256.

Max-pool rows time the training path on both sides: forward WITH indices (what autograd needs)
and the backward from those indices (torch: the aten kernels directly, no autograd overhead,
always with torch's int64 indices). "[int64 idx]" rows run fastmnist's PyTorch-compatible API
(max_pool2d(..., return_indices=True) / max_pool2d_backward); "[uint8 compact]" rows run
max_pool2d_compact / max_pool2d_compact_backward (the path nn.MaxPool2d and the fused
nn.Sequential plan use) against the same torch rows; "compact/autograd" is a whole
forward+backward against torch autograd."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import fastmnist.functional as fm
from _util import timeit_pair


def run(ctx):
    rng = np.random.default_rng(0)
    rep = dict(repeat=5 if ctx.quick else 11, warmup=1 if ctx.quick else 2, min_time=0.01 if ctx.quick else 0.05)
    batches = [64, 256]

    # torch ops used directly (aten) so that no autograd bookkeeping is timed
    t_pool_bwd = torch.ops.aten.max_pool2d_with_indices_backward
    for N in batches:
        for C, H in [(16, 28), (32, 14)]:
            x = rng.standard_normal((N, C, H, H)).astype(np.float32)
            xt = torch.from_numpy(x)
            shape = f"({N},{C},{H},{H}) 2x2"
            def torch_pool_fwd():
                return F.max_pool2d(xt, 2, return_indices=True)

            ctx.add("max_pool2d fwd [int64 idx]", shape, N,
                    *timeit_pair(lambda: fm.max_pool2d(x, 2, return_indices=True), torch_pool_fwd, **rep))
            y, idx = fm.max_pool2d(x, 2, return_indices=True)
            gy = rng.standard_normal(y.shape).astype(np.float32)
            ty, ti = F.max_pool2d(xt, 2, return_indices=True)
            gyt = torch.from_numpy(gy)
            def torch_pool_bwd():
                return t_pool_bwd(gyt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, ti)

            ctx.add("max_pool2d bwd [int64 idx]", shape, N,
                    *timeit_pair(lambda: fm.max_pool2d_backward(gy, idx, x.shape), torch_pool_bwd, **rep))
            # the same two steps with the compact uint8 argmax (max_pool2d_compact)
            _, a = fm.max_pool2d_compact(x, 2)
            ctx.add("max_pool2d fwd [uint8 compact]", shape, N,
                    *timeit_pair(lambda: fm.max_pool2d_compact(x, 2), torch_pool_fwd, **rep))
            ctx.add("max_pool2d bwd [uint8 compact]", shape, N,
                    *timeit_pair(lambda: fm.max_pool2d_compact_backward(gy, a, x.shape, 2), torch_pool_bwd, **rep))
            if C == 16:  # the training step as autograd runs it: forward with indices + backward
                xr = xt.clone().requires_grad_(True)

                def t_step():
                    return torch.autograd.grad(F.max_pool2d(xr, 2), xr, gyt)

                def f_step():
                    _, i = fm.max_pool2d_compact(x, 2)
                    return fm.max_pool2d_compact_backward(gy, i, x.shape, 2)

                ctx.add("max_pool2d fwd+bwd compact/autograd", shape, N, *timeit_pair(f_step, t_step, **rep))
                ctx.add("max_pool2d fwd (values)", shape, N,
                        *timeit_pair(lambda: fm.max_pool2d(x, 2),
                                     lambda: x.reshape(N, C, H // 2, 2, H // 2, 2).max(axis=(3, 5)), **rep),
                        baseline="numpy")

    for N in batches:
        x = rng.standard_normal((N, 16, 28, 28)).astype(np.float32)
        gy = rng.standard_normal(x.shape).astype(np.float32)
        xt, gyt = torch.from_numpy(x), torch.from_numpy(gy)
        shape = f"({N},16,28,28)"
        ctx.add("relu fwd", shape, N, *timeit_pair(lambda: fm.relu(x), lambda: torch.relu(xt), **rep))
        ctx.add("relu bwd", shape, N, *timeit_pair(lambda: fm.relu_backward(gy, x),
                                                    lambda: torch.ops.aten.threshold_backward(gyt, xt, 0), **rep))
        if N == 256:
            ctx.add("relu fwd", shape, N, *timeit_pair(lambda: fm.relu(x), lambda: np.maximum(x, 0), **rep),
                    baseline="numpy")

    for N in batches:
        for fin, fout in [(784, 256), (1568, 128), (128, 10)]:
            x = rng.standard_normal((N, fin)).astype(np.float32)
            w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
            b = rng.standard_normal(fout).astype(np.float32)
            gy = rng.standard_normal((N, fout)).astype(np.float32)
            xt, wt, bt, gyt = map(torch.from_numpy, (x, w, b, gy))
            shape = f"{fin}->{fout}"
            flops = 2 * N * fin * fout
            ctx.add("linear fwd", shape, N, *timeit_pair(lambda: fm.linear(x, w, b), lambda: F.linear(xt, wt, bt), **rep),
                    flops=flops)

            def t_bwd():  # what autograd's addmm backward does: grad_x, grad_w, grad_b
                return gyt.mm(wt), gyt.t().mm(xt), gyt.sum(0)

            ctx.add("linear bwd", shape, N, *timeit_pair(lambda: fm.linear_backward(gy, x, w), t_bwd, **rep),
                    flops=2 * flops)

    for N in batches:
        logits = rng.standard_normal((N, 10)).astype(np.float32)
        labels = rng.integers(0, 10, N)
        lt, yt = torch.from_numpy(logits), torch.from_numpy(labels)

        def t_ce():  # forward and gradient, as in training
            l = lt.detach().requires_grad_(True)
            loss = F.cross_entropy(l, yt)
            loss.backward()
            return loss.item(), l.grad

        ctx.add("softmax_cross_entropy f+g", f"({N},10)", N,
                *timeit_pair(lambda: fm.softmax_cross_entropy(logits, labels), t_ce, **rep))
