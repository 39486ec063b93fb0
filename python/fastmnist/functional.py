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
@_export
def max_pool2d(x, kernel_size, stride=None, padding=0, return_indices=False):
    """2-D max pooling of ``x`` (N, C, H, W) (or (C, H, W)), as ``torch.nn.functional.max_pool2d``.

    ``kernel_size``, ``stride`` (default: ``kernel_size``) and ``padding`` are ints or pairs;
    padding counts as -inf and must be at most half the kernel. The output is
    (N, C, OH, OW) with OH = (H + 2*padding - kernel) // stride + 1. With ``return_indices`` also
    returns int64 indices of the maxima as flat positions ``ih * W + iw`` in each input plane,
    exactly as PyTorch's: the first maximum in row-major window order wins, NaN propagates.
    """
    return _core.max_pool2d(x, kernel_size, stride, padding, bool(return_indices))


@_export
def max_pool2d_backward(grad_y, indices, input_shape):
    """Gradient of :func:`max_pool2d`: ``grad_y`` (N, C, OH, OW) scattered to the positions
    ``indices`` (from ``max_pool2d(..., return_indices=True)``) of a zero (N, C, H, W) array
    (``input_shape``); overlapping windows add up. Indices outside [0, H*W) raise ValueError."""
    return _core.max_pool2d_backward(grad_y, indices, input_shape)


@_export
def max_pool2d_compact(x, kernel_size, stride=None, padding=0):
    """:func:`max_pool2d` returning ``(y, argmax)`` with a compact argmax for training loops:
    argmax is uint8 (N, C, OH, OW) holding the offset ``dh * kW + dw`` of each maximum inside its
    (unclipped, padded) window instead of PyTorch's int64 flat index. Same values, same ties
    (first maximum wins) and NaN rule as :func:`max_pool2d`; 8x less index memory, and the
    backward (:func:`max_pool2d_compact_backward`) needs no validation scatter. Needs
    kernel area <= 256.

    Convert to PyTorch's indices: ``(oh*sH - pH + a // kW) * W + (ow*sW - pW + a % kW)``.
    """
    return _core.max_pool2d_compact(x, kernel_size, stride, padding)


@_export
def max_pool2d_compact_backward(grad_y, argmax, input_shape, kernel_size, stride=None, padding=0, *, relu_y=None):
    """Gradient of :func:`max_pool2d_compact`: ``grad_y`` (N, C, OH, OW) placed at the window
    offsets ``argmax`` (uint8, from :func:`max_pool2d_compact` with the same ``kernel_size``,
    ``stride``, ``padding``) of a zero (N, C, H, W) array (``input_shape``); overlapping windows
    add up. An offset outside the window or inside the padding raises ValueError.

    ``relu_y``: the pooled output, when the pool's input is a ReLU output (or a ReLU follows the
    pool): ``grad_y`` then counts as 0 where ``relu_y <= 0``, the same as
    ``relu_backward(grad_y, relu_y)`` first, fused into the one pass.
    """
    return _core.max_pool2d_compact_backward(grad_y, argmax, input_shape, kernel_size, stride, padding, relu_y=relu_y)


@_export
def relu(x):
    """max(x, 0) elementwise, any shape; NaN propagates (``torch.relu``)."""
    return _core.relu(x)


@_export
def relu_backward(grad_y, x):
    """Gradient of :func:`relu` with respect to its input ``x``: ``grad_y`` where ``x > 0``, else 0
    (PyTorch's ``threshold_backward``)."""
    return _core.relu_backward(grad_y, x)


@_export
def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise, any shape."""
    return _core.sigmoid(x)


@_export
def sigmoid_backward(grad_y, y):
    """Gradient of :func:`sigmoid` given its OUTPUT ``y``: ``grad_y * (1 - y) * y``."""
    return _core.sigmoid_backward(grad_y, y)


@_export
def linear(x, weight, bias=None):
    """Dense layer ``x @ weight.T + bias``: x (N, in), weight (out, in) as in PyTorch, bias (out,)
    or None -> (N, out)."""
    return _core.linear(x, weight, bias, False)


@_export
def linear_relu(x, weight, bias=None):
    """``relu(linear(x, weight, bias))`` in one call (bias and ReLU fused after the GEMM).
    Backward: ``linear_backward(relu_backward(grad_y, y), x, weight)`` with y this output
    (y > 0 exactly where the pre-activation is)."""
    return _core.linear(x, weight, bias, True)


@_export
def linear_backward(grad_y, x, weight, bias=True, input_grad=True):
    """Gradients of :func:`linear`: grad_y (N, out), x (N, in), weight (out, in) ->
    ``(grad_x (N, in), grad_weight (out, in), grad_bias (out,))``; grad_x is None when
    ``input_grad`` is false, grad_bias None when ``bias`` is false (the layer has no bias)."""
    return _core.linear_backward(grad_y, x, weight, bool(bias), bool(input_grad))


@_export
def softmax(x):
    """Softmax over the last dimension of x (N, C), numerically stable."""
    return _core.softmax(x)


@_export
def softmax_backward(grad_y, y):
    """Gradient of :func:`softmax` given its output ``y``: ``y * (grad_y - sum(grad_y * y, -1))``."""
    return _core.softmax_backward(grad_y, y)


@_export
def log_softmax(x):
    """Log-softmax over the last dimension of x (N, C), numerically stable."""
    return _core.log_softmax(x)


@_export
def log_softmax_backward(grad_y, y):
    """Gradient of :func:`log_softmax` given its output ``y``: ``grad_y - exp(y) * sum(grad_y, -1)``."""
    return _core.log_softmax_backward(grad_y, y)


@_export
def softmax_cross_entropy(logits, labels, grad=True):
    """Mean softmax cross-entropy of ``logits`` (N, C) against integer ``labels`` (N,) (any integer
    dtype), as ``torch.nn.functional.cross_entropy`` with reduction='mean', fused with its gradient.

    Returns ``(loss, grad_logits)`` with loss a Python float and grad_logits (N, C) =
    (softmax(logits) - one_hot(labels)) / N (None when ``grad`` is false). Stable for huge logits.
    A label outside [0, C) (there is no ignore_index) raises ValueError naming it.
    """
    return _core.softmax_cross_entropy(logits, labels, bool(grad))


@_export
def mse_loss(pred, target, grad=True):
    """Mean squared error over all elements (``torch.nn.functional.mse_loss``, reduction='mean').
    ``pred`` and ``target`` have the same shape. Returns ``(loss, grad_pred)`` with
    grad_pred = 2 * (pred - target) / pred.size (None when ``grad`` is false)."""
    return _core.mse_loss(pred, target, bool(grad))


@_export
def one_hot(labels, num_classes=10):
    """float32 (N, num_classes) array with a 1 at each label (labels: integer array (N,) in
    [0, num_classes)), e.g. the MSE targets of the from-scratch MLP."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array (N,), got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have 1 dimension (N,), got shape {labels.shape}")
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels[{i}] = {labels[i]} is outside [0, {num_classes})")
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out
