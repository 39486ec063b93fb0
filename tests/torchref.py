"""Reference computations in PyTorch shared by several test files."""
from __future__ import annotations

import torch


def autograd(fn, x, gy):
    """``fn`` applied by PyTorch to ``x`` and the gradient of ``sum(fn(x) * gy)`` with respect to
    ``x``, both as numpy arrays."""
    xt = torch.from_numpy(x).requires_grad_(True)
    y = fn(xt)
    y.backward(torch.from_numpy(gy))
    return y.detach().numpy(), xt.grad.numpy()
