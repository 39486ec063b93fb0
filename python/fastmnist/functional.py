"""The functional API: float32 NCHW numpy arrays in and out, arguments as in ``torch.nn.functional``.

Every function validates its inputs in C++ (``ValueError``/``TypeError`` naming the argument) and
releases the GIL while the kernel runs. Non-contiguous inputs are copied to C order first.
"""
from __future__ import annotations

import numpy as np

from . import _core

__all__: list[str] = []


def _export(fn):
    __all__.append(fn.__name__)
    return fn


# ---------------------------------------------------------------------------------------------
# convolution (cpp/conv2d.cpp)
# ---------------------------------------------------------------------------------------------


def _int_or_pair(v, name):
    """Accept an int, a numpy integer or a pair of them (as torch does); other types are
    passed through so that the C++ layer raises its TypeError naming the argument."""
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(e, (int, np.integer)) for e in v):
        return (int(v[0]), int(v[1]))
    return v


@_export
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    x: float32 (N, C, H, W); weight: float32 (K, C, R, S); bias: float32 (K,) or None;
    stride, padding: int or (h, w) pair (zero padding). Returns y float32 (N, K, P, Q) with
    P = (H + 2*ph - R) // sh + 1, Q = (W + 2*pw - S) // sw + 1.
    """
    return _core.conv2d_forward(x, weight, bias, _int_or_pair(stride, "stride"),
                                _int_or_pair(padding, "padding"), False)


@_export
def conv2d_relu(x, weight, bias=None, stride=1, padding=0):
    """``relu(conv2d(x, weight, bias, stride, padding))`` computed in one pass (bias and ReLU are
    applied while the output tile is still in registers)."""
    return _core.conv2d_forward(x, weight, bias, _int_or_pair(stride, "stride"),
                                _int_or_pair(padding, "padding"), True)


@_export
def conv2d_backward(grad_y, x, weight, stride=1, padding=0, bias=True, input_grad=True):
    """Gradients of ``conv2d`` given grad_y = dL/dy (N, K, P, Q).

    Returns ``(grad_x, grad_weight, grad_bias)``: grad_x (N, C, H, W) or None when
    ``input_grad=False`` (a network's first layer never needs it), grad_weight (K, C, R, S),
    grad_bias (K,) or None when ``bias=False``. grad_weight and grad_bias are summed over the
    batch in a fixed order (the same inputs and thread count give the same bits).
    """
    return tuple(_core.conv2d_backward(grad_y, x, weight, _int_or_pair(stride, "stride"),
                                       _int_or_pair(padding, "padding"), bool(bias), bool(input_grad)))


# ---------------------------------------------------------------------------------------------
# pooling, activations, linear, losses (cpp/pool.cpp, activation.cpp, linear.cpp, loss.cpp)
# ---------------------------------------------------------------------------------------------
