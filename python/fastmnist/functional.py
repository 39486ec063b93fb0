"""The functional API: numpy arrays in and out, arguments as in ``torch.nn.functional``.

Every function validates its inputs in C++ (``ValueError``/``TypeError`` naming the argument) and
releases the GIL while the kernel runs. Non-contiguous inputs are copied to C order first.

What torch.nn.functional users pass is accepted, with these deviations:

- Arrays are computed in float32. The inputs of the forward functions that torch has (``conv2d``,
  ``max_pool2d``, ``relu``, ``sigmoid``, ``linear``, ``softmax``, ``log_softmax``, and the fused
  ``conv2d_relu``/``linear_relu``) may be float64/float16 numpy arrays or torch tensors (CPU or
  not): they are converted to float32 numpy arrays and the result is a float32 numpy array (torch
  would keep float64). Integer or boolean arrays raise TypeError (torch refuses them too). The
  explicit backward functions and the losses, which torch does not have in this form, take
  float32 only (TypeError otherwise), so that no gradient is silently rounded.
- ``conv2d`` and ``max_pool2d`` take unbatched (C, H, W) input and then return (K, P, Q).
- ``conv2d(padding="same" | "valid")`` as torch (``"same"`` needs stride 1; an even kernel puts the
  extra row/column of padding at the bottom/right, as torch does). ``dilation`` and ``groups``
  other than 1 raise ValueError.
- ``max_pool2d(ceil_mode=True)`` as torch; ``dilation`` other than 1 raises ValueError.
- ``softmax(x, dim=-1)`` / ``log_softmax(x, dim=-1)``: ``dim`` defaults to the last dimension
  (torch warns and guesses when ``dim`` is omitted); any dimension of any-rank input is allowed.
- Losses return ``(loss, grad)``: the forward value and its gradient in one fused pass (there is no
  autograd); :mod:`fastmnist.nn` losses give ``loss = crit(out, y)`` and ``crit.backward()``.
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


def untorch(a):
    """A torch tensor as a numpy array (detached, on the CPU); anything else unchanged. fastmnist
    never imports torch for this."""
    if type(a).__module__.startswith("torch") and hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return a


def _f32(a, name):
    """torch tensors -> numpy; float64/float16 -> float32; None and float32 arrays pass. Integer
    and boolean arrays raise TypeError (conversion would give them a meaning torch does not)."""
    if a is None:
        return None
    a = untorch(a)
    if not isinstance(a, np.ndarray):
        return a  # lists etc.: the C++ layer raises its TypeError naming the argument (as torch)
    if a.dtype == np.float32:
        return a
    if a.dtype.kind == "f":
        return a.astype(np.float32)
    raise TypeError(f"{name} must be float32 (float64/float16 arrays and torch tensors are converted), "
                    f"got dtype {a.dtype}")


def _nodil(dilation, groups=1):
    if dilation not in (1, (1, 1), [1, 1]):
        raise ValueError(f"dilation must be 1 (dilated kernels are not supported), got {dilation!r}")
    if groups != 1:
        raise ValueError(f"groups must be 1 (grouped convolution is not supported), got {groups!r}")


def _conv_padding(padding, weight, stride):
    """padding -> (symmetric padding for the kernel, extra (bottom, right) zero rows/columns)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, (0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if _int_or_pair(stride, "stride") not in (1, (1, 1)):
            raise ValueError(f"padding='same' needs stride 1 (as in torch), got stride={stride!r}")
        w = getattr(weight, "shape", ())
        if len(w) != 4:
            raise ValueError(f"weight must have 4 dimensions (K, C, R, S), got shape {tuple(w)}")
        tot = (w[2] - 1, w[3] - 1)
        lo = (tot[0] // 2, tot[1] // 2)
        return lo, (tot[0] - 2 * lo[0], tot[1] - 2 * lo[1])
    return _int_or_pair(padding, "padding"), (0, 0)


def _conv_call(x, weight, bias, stride, padding, relu, dilation, groups):
    _nodil(dilation, groups)
    x, weight, bias = _f32(x, "x"), _f32(weight, "weight"), _f32(bias, "bias")
    pad, extra = _conv_padding(padding, weight, stride)
    unbatched = getattr(x, "ndim", 0) == 3
    if unbatched:
        x = x[None]
    if extra != (0, 0):
        x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    y = _core.conv2d_forward(x, weight, bias, _int_or_pair(stride, "stride"), pad, relu)
    return y[0] if unbatched else y


@_export
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    x: (N, C, H, W) or unbatched (C, H, W); weight: (K, C, R, S); bias: (K,) or None (float32;
    float64 arrays and torch tensors are converted); stride: int or (h, w) pair; padding: int,
    (h, w) pair (zero padding), ``"valid"`` (0) or ``"same"`` (stride 1; output size = input
    size). Returns y float32 (N, K, P, Q) with P = (H + 2*ph - R) // sh + 1,
    Q = (W + 2*pw - S) // sw + 1 ((K, P, Q) for unbatched x). ``dilation``/``groups`` must be 1.
    """
    return _conv_call(x, weight, bias, stride, padding, False, dilation, groups)


@_export
def conv2d_relu(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``relu(conv2d(x, weight, bias, stride, padding))`` computed in one pass (bias and ReLU are
    applied while the output tile is still in registers). Arguments as :func:`conv2d`."""
    return _conv_call(x, weight, bias, stride, padding, True, dilation, groups)


@_export
def conv2d_backward(grad_y, x, weight, stride=1, padding=0, bias=True, input_grad=True):
    """Gradients of ``conv2d`` given grad_y = dL/dy (N, K, P, Q).

    Returns ``(grad_x, grad_weight, grad_bias)``: grad_x (N, C, H, W) or None when
    ``input_grad=False`` (a network's first layer never needs it), grad_weight (K, C, R, S),
    grad_bias (K,) or None when ``bias=False``. grad_weight and grad_bias are summed over the
    batch in a fixed order (the same inputs and thread count give the same bits). ``padding``
    and unbatched (C, H, W) ``x`` with (K, P, Q) ``grad_y`` as in :func:`conv2d`.
    """
    pad, extra = _conv_padding(padding, weight, stride)
    unbatched = getattr(x, "ndim", 0) == 3
    if unbatched:
        x = x[None]
        grad_y = grad_y[None] if getattr(grad_y, "ndim", 0) == 3 else grad_y
    if extra != (0, 0):
        x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    gx, gw, gb = _core.conv2d_backward(grad_y, x, weight, _int_or_pair(stride, "stride"), pad, bool(bias),
                                       bool(input_grad))
    if gx is not None:
        if extra != (0, 0):
            gx = np.ascontiguousarray(gx[:, :, :gx.shape[2] - extra[0], :gx.shape[3] - extra[1]])
        if unbatched:
            gx = gx[0]
    return gx, gw, gb


# ---------------------------------------------------------------------------------------------
# pooling, activations, linear, losses (cpp/pool.cpp, activation.cpp, linear.cpp, loss.cpp)
# ---------------------------------------------------------------------------------------------
def _ceil_extra(size, k, s, p):
    """Extra -inf rows at the end so that floor mode gives torch's ceil_mode output size."""
    span = size + 2 * p - k
    if span < 0:
        return 0
    out = -(-span // s) + 1
    if (out - 1) * s >= size + p:  # the last window must start inside the input or the left padding
        out -= 1
    return max(0, (out - 1) * s + k - (size + 2 * p))


@_export
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling of ``x`` (N, C, H, W) (or (C, H, W)), as ``torch.nn.functional.max_pool2d``.

    ``kernel_size``, ``stride`` (default: ``kernel_size``) and ``padding`` are ints or pairs;
    padding counts as -inf and must be at most half the kernel. The output is
    (N, C, OH, OW) with OH = (H + 2*padding - kernel) // stride + 1 (rounded up with
    ``ceil_mode``, as torch: windows may run past the bottom/right edge but start inside the input
    or the left padding). With ``return_indices`` also returns int64 indices of the maxima as flat
    positions ``ih * W + iw`` in each input plane, exactly as PyTorch's: the first maximum in
    row-major window order wins, NaN propagates. ``dilation`` must be 1.
    """
    if dilation not in (1, (1, 1), [1, 1]):
        raise ValueError(f"dilation must be 1 (dilated pooling is not supported), got {dilation!r}")
    x = _f32(x, "x")
    if not ceil_mode or getattr(x, "ndim", 0) not in (3, 4):
        return _core.max_pool2d(x, kernel_size, stride, padding, bool(return_indices))
    k = _int_or_pair(kernel_size, "kernel_size")
    s = k if stride is None else _int_or_pair(stride, "stride")
    p = _int_or_pair(padding, "padding")
    k, s, p = [(v, v) if isinstance(v, int) else v for v in (k, s, p)]
    if not all(isinstance(v, tuple) and len(v) == 2 for v in (k, s, p)) or min(k + s) < 1 or min(p) < 0:
        return _core.max_pool2d(x, kernel_size, stride, padding, bool(return_indices))  # its error
    H, W = x.shape[-2:]
    eh, ew = _ceil_extra(H, k[0], s[0], p[0]), _ceil_extra(W, k[1], s[1], p[1])
    if eh == 0 and ew == 0:
        return _core.max_pool2d(x, k, s, p, bool(return_indices))
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, eh), (0, ew)], constant_values=-np.inf)
    out = _core.max_pool2d(xp, k, s, p, bool(return_indices))
    if not return_indices:
        return out
    y, idx = out
    # flat positions in the padded plane (width W + ew) -> in the input plane (width W); a window
    # starts inside the input, so its first maximum never lies in the -inf extension
    return y, (idx // (W + ew)) * W + idx % (W + ew)


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
    return _core.relu(_f32(x, "x"))


@_export
def relu_backward(grad_y, x):
    """Gradient of :func:`relu` with respect to its input ``x``: ``grad_y`` where ``x > 0``, else 0
    (PyTorch's ``threshold_backward``)."""
    return _core.relu_backward(grad_y, x)


@_export
def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise, any shape."""
    return _core.sigmoid(_f32(x, "x"))


@_export
def sigmoid_backward(grad_y, y):
    """Gradient of :func:`sigmoid` given its OUTPUT ``y``: ``grad_y * (1 - y) * y``."""
    return _core.sigmoid_backward(grad_y, y)


@_export
def linear(x, weight, bias=None):
    """Dense layer ``x @ weight.T + bias``: x (N, in), weight (out, in) as in PyTorch, bias (out,)
    or None -> (N, out)."""
    return _core.linear(_f32(x, "x"), _f32(weight, "weight"), _f32(bias, "bias"), False)


@_export
def linear_relu(x, weight, bias=None):
    """``relu(linear(x, weight, bias))`` in one call (bias and ReLU fused after the GEMM).
    Backward: ``linear_backward(relu_backward(grad_y, y), x, weight)`` with y this output
    (y > 0 exactly where the pre-activation is)."""
    return _core.linear(_f32(x, "x"), _f32(weight, "weight"), _f32(bias, "bias"), True)


@_export
def linear_backward(grad_y, x, weight, bias=True, input_grad=True):
    """Gradients of :func:`linear`: grad_y (N, out), x (N, in), weight (out, in) ->
    ``(grad_x (N, in), grad_weight (out, in), grad_bias (out,))``; grad_x is None when
    ``input_grad`` is false, grad_bias None when ``bias`` is false (the layer has no bias)."""
    return _core.linear_backward(grad_y, x, weight, bool(bias), bool(input_grad))


def _along(fn, x, dim, name):
    """Apply a (N, C) row kernel along dimension ``dim`` of an array of any rank."""
    x = _f32(x, "x")
    if not isinstance(x, np.ndarray):
        return fn(x)  # the C++ layer names the bad argument
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{name}: dim must be an int, got {dim!r}")
    if x.ndim == 0:
        raise ValueError(f"{name}: x must have at least one dimension, got a scalar")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{name}: dim must be in [{-x.ndim}, {x.ndim - 1}] for x of shape {x.shape}, got {dim}")
    if x.ndim == 2 and dim in (-1, 1):
        return fn(x)
    moved = np.moveaxis(x, int(dim), -1)
    y = fn(np.ascontiguousarray(moved).reshape(-1, moved.shape[-1]))
    return np.ascontiguousarray(np.moveaxis(y.reshape(moved.shape), -1, int(dim)))


@_export
def softmax(x, dim=-1):
    """Softmax along ``dim`` (default: the last dimension), numerically stable (any rank)."""
    return _along(_core.softmax, x, dim, "softmax")


@_export
def softmax_backward(grad_y, y):
    """Gradient of :func:`softmax` given its output ``y``: ``y * (grad_y - sum(grad_y * y, -1))``."""
    return _core.softmax_backward(grad_y, y)


@_export
def log_softmax(x, dim=-1):
    """Log-softmax along ``dim`` (default: the last dimension), numerically stable (any rank)."""
    return _along(_core.log_softmax, x, dim, "log_softmax")


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
