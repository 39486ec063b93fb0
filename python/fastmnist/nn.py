"""Layers with explicit forward and backward passes on the C++ kernels.

Every layer works on float32 NCHW numpy arrays. ``forward`` caches what ``backward`` needs;
``backward(grad_y)`` accumulates the parameter gradients into ``Parameter.grad`` (as PyTorch does;
``zero_grad`` clears them) and returns the gradient with respect to the input.

Every :class:`Module` has ``parameters()``/``named_parameters()``, ``state_dict()``/
``load_state_dict()``, ``zero_grad()`` and ``train()``/``eval()``. Calling a module (``model(x)``)
also accepts float64 arrays, torch tensors and uint8 images (see :meth:`Module.__call__`);
``forward`` is the float32 fast path.

Fusion is an explicit pass, :func:`fuse` (as ``torch.nn.utils.fusion`` / ``torch.ao`` fusion): it
returns a :class:`Sequential` in which ``Conv2d -> ReLU`` became :class:`ConvReLU2d` (one
``conv2d_relu`` kernel), ``Conv2d -> ReLU -> MaxPool2d`` and ``Conv2d -> MaxPool2d -> ReLU`` became
:class:`ConvReLUPool2d` (``conv2d_relu`` then the pool; max and ReLU commute exactly, so the result
is bit-identical, and the ReLU mask is applied to the 4x smaller pooled gradient) and
``Linear -> ReLU`` became :class:`LinearReLU`. Fused layers share the original layers' Parameters,
so an optimizer over either model trains both. :class:`Sequential` runs its forward and backward on
``fuse(self)`` (``Sequential(..., fuse=False)`` runs the layers one by one); its ``layers`` stay the
unfused ones (for ``feature_maps``, ``summary`` and :meth:`Sequential.to_torch`). The input gradient
of the first layer with parameters is never computed.

Parameters are initialised as PyTorch initialises ``nn.Conv2d`` / ``nn.Linear`` by default
(``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases),
from a seed.

Example::

    from fastmnist import nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256, seed=0), nn.ReLU(), nn.Linear(256, 10, seed=1))
    crit = nn.CrossEntropyLoss()
    loss = crit(model(x), y)                # x: (N, 1, 28, 28) float32; loss: a Python float
    model.zero_grad()
    model.backward(crit.backward())         # fills p.grad for p in model.parameters()
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np

from . import functional as F
from .parameter import Parameter

__all__ = ["Module", "Conv2d", "MaxPool2d", "ReLU", "Sigmoid", "Linear", "Flatten", "Dropout",
           "Sequential", "ConvReLU2d", "ConvReLUPool2d", "LinearReLU", "fuse", "from_torch",
           "CrossEntropyLoss", "MSELoss", "get_loss", "Parameter"]


def _rng(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


_probe = threading.local()


def _uniform(rng, shape, bound):
    shapes = getattr(_probe, "shapes", None)
    if shapes is not None:  # inside parameter_shapes(): record the shape, allocate one tagged element
        shapes.append(tuple(int(s) for s in shape))
        return np.full((1,) * len(shape), len(shapes) - 1, np.float32)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def parameter_shapes(build) -> "OrderedDict[str, tuple]":
    """``{name: shape}`` of the parameters of the model ``build()`` returns, without allocating them:
    while ``build`` runs (in this thread) every layer gets one-element placeholder parameters tagged
    with the index of the real shape. Used to check a checkpoint's arrays before building its model."""
    _probe.shapes = shapes = []
    try:
        model = build()
    finally:
        _probe.shapes = None
    out = OrderedDict()
    for name, p in model.named_parameters():
        if p.data.size != 1 or not 0 <= int(p.data.flat[0]) < len(shapes):
            raise RuntimeError(f"parameter_shapes: {name!r} was not created through the layer initialiser")
        out[name] = shapes[int(p.data.flat[0])]
    return out


def _accumulate(p, g):
    """p.grad += g, taking ownership of the fresh kernel output when there is no gradient yet."""
    if p.grad is None:
        p.grad = g
    else:
        p.grad += g


def _pair(v, name="kernel_size"):
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2 or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in t):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def _count(v, name, lo=0):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _int_or_pair(v, name):
    """An int stays an int, a pair of ints a tuple (as torch keeps them)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    return _pair(v, name)


def _as_input(x, module):
    """What ``model(x)`` accepts -> the float32 array ``forward`` takes.

    torch tensors become numpy arrays; float arrays of any precision become float32 (values kept);
    uint8 images (N, 28, 28), (N, 784) or (N, 1, 28, 28) are prepared as the Trainer prepares them
    (scaled to [0, 1], then the MNIST mean/std normalisation unless ``module.input_normalize`` is
    False). Other dtypes raise TypeError."""
    x = np.asarray(F.untorch(x))
    if x.dtype == np.float32:
        return x
    if x.dtype == np.uint8:
        from .train import prepare

        return prepare(x, normalize=getattr(module, "input_normalize", True))
    if x.dtype.kind == "f":
        return x.astype(np.float32)
    raise TypeError(f"{type(module).__name__}: x must be a float array, a torch tensor or uint8 images, "
                    f"got dtype {x.dtype}")


class Module:
    """Base class: ``forward``, ``backward``, parameters, state, train/eval mode.

    Subclasses keep their :class:`Parameter` s as attributes (``self.weight``); ``named_parameters``
    finds them. ``input_normalize`` (default True) tells ``model(x)`` whether uint8 images get the
    MNIST mean/std normalisation (the Trainer's ``normalize``)."""

    training = True
    input_normalize = True

    def __call__(self, x):
        """``forward`` on ``x`` converted by the rules of :func:`_as_input` (torch tensors, float64,
        uint8 images accepted); returns a float32 numpy array."""
        return self.forward(_as_input(x, self))

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_y, input_grad=True):  # pragma: no cover - abstract
        raise NotImplementedError

    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs of this layer, e.g. ("weight", p)."""
        return [(prefix + k, v) for k, v in self.__dict__.items() if isinstance(v, Parameter)]

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.parameters()))

    def zero_grad(self, set_to_none: bool = True):
        """Clear every parameter's gradient (``grad = None``, torch's default)."""
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter array, keyed by parameter name (``weight``, ``conv1.weight``)."""
        return OrderedDict((n, p.data.copy()) for n, p in self.named_parameters())

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays from ``state`` into the parameters (shapes must match exactly; NaN or infinite
        values are refused). With ``strict`` every parameter must be present and no unknown key may
        appear."""
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise ValueError("load_state_dict: " + "; ".join(parts) + f" (model has {list(own)})")
        for k, p in own.items():
            if k not in state:
                continue
            v = np.asarray(F.untorch(state[k]))
            if v.shape != p.data.shape:
                raise ValueError(f"load_state_dict: shape mismatch for {k!r}: checkpoint has {v.shape}, "
                                 f"model has {p.data.shape}")
            if v.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: {k!r} must hold real numbers, got dtype {v.dtype}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"load_state_dict: {k!r} holds NaN or infinite values")
            p.data[...] = v.astype(np.float32, copy=False)
        return self

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def output_shape(self, input_shape):
        """Shape of the output for an input of ``input_shape`` (batch dimension included)."""
        return self.forward(np.zeros(input_shape, np.float32)).shape

    def to_torch(self):
        """The equivalent ``torch.nn`` module, weights copied (see :meth:`Sequential.to_torch`)."""
        raise TypeError(f"{type(self).__name__} has no PyTorch equivalent")

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


def _copy_params_to_torch(layer, m):
    import torch

    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(layer.weight.data))
        if layer.bias is not None:
            m.bias.copy_(torch.from_numpy(layer.bias.data))
    return m


# ---------------------------------------------------------------------------------------------
# layers with parameters
# ---------------------------------------------------------------------------------------------
class Conv2d(Module):
    """2-D convolution: x (N, C, H, W), weight (K, C, R, S), bias (K,) -> y (N, K, P, Q).
    ``stride`` and ``padding`` are ints or (h, w) pairs (zero padding)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, seed=0):
        self.in_channels = _count(in_channels, "Conv2d: in_channels", 1)
        self.out_channels = _count(out_channels, "Conv2d: out_channels", 1)
        self.kernel_size = _pair(kernel_size, "Conv2d: kernel_size")
        if min(self.kernel_size) < 1:
            raise ValueError(f"Conv2d: kernel_size must be >= 1, got {kernel_size!r}")
        self.stride = _int_or_pair(stride, "Conv2d: stride")
        self.padding = _int_or_pair(padding, "Conv2d: padding")
        rng = _rng(seed)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = Parameter(_uniform(rng, (self.out_channels, self.in_channels) + self.kernel_size, bound),
                                "weight")
        self.bias = Parameter(_uniform(rng, (self.out_channels,), bound), "bias") if bias else None
        self._x = None

    def _b(self):
        return None if self.bias is None else self.bias.data

    def forward(self, x):
        self._x = x
        return F.conv2d(x, self.weight.data, self._b(), self.stride, self.padding)

    def _grads(self, grad_y, x, input_grad):
        gx, gw, gb = F.conv2d_backward(grad_y, x, self.weight.data, self.stride, self.padding,
                                       bias=self.bias is not None, input_grad=input_grad)
        _accumulate(self.weight, gw)
        if self.bias is not None:
            _accumulate(self.bias, gb)
        return gx

    def backward(self, grad_y, input_grad=True):
        if self._x is None:
            raise RuntimeError("Conv2d.backward called before forward")
        return self._grads(grad_y, self._x, input_grad)

    def to_torch(self):
        import torch

        return _copy_params_to_torch(self, torch.nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                                                           self.stride, self.padding, bias=self.bias is not None))

    def extra_repr(self):
        k = self.kernel_size
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={k[0]}x{k[1]}, stride={self.stride}, "
                f"padding={self.padding}")


class Linear(Module):
    """Fully connected layer: x (N, in), weight (out, in), bias (out,) -> y (N, out).
    ``in_features=0`` is allowed, as in PyTorch (the output is the bias, which starts at 0)."""

    def __init__(self, in_features, out_features, bias=True, seed=0):
        self.in_features = _count(in_features, "Linear: in_features")
        self.out_features = _count(out_features, "Linear: out_features")
        rng = _rng(seed)
        # torch: kaiming_uniform_ is a no-op on a zero-element weight and the bias bound is 0 for fan_in 0
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        self.weight = Parameter(_uniform(rng, (self.out_features, self.in_features), bound), "weight")
        self.bias = Parameter(_uniform(rng, (self.out_features,), bound), "bias") if bias else None
        self._x = None

    def _b(self):
        return None if self.bias is None else self.bias.data

    def _check(self, x):
        if x.ndim != 2:
            raise ValueError(f"Linear: x must be 2-D (N, {self.in_features}), got shape {x.shape}; "
                             "put a Flatten() before it")

    def forward(self, x):
        self._check(x)
        self._x = x
        return F.linear(x, self.weight.data, self._b())

    def _grads(self, grad_y, x, input_grad):
        gx, gw, gb = F.linear_backward(grad_y, x, self.weight.data, bias=self.bias is not None,
                                       input_grad=input_grad)
        _accumulate(self.weight, gw)
        if self.bias is not None:
            _accumulate(self.bias, gb)
        return gx

    def backward(self, grad_y, input_grad=True):
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        return self._grads(grad_y, self._x, input_grad)

    def to_torch(self):
        import torch

        return _copy_params_to_torch(self, torch.nn.Linear(self.in_features, self.out_features,
                                                           bias=self.bias is not None))

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


# ---------------------------------------------------------------------------------------------
# layers without parameters
# ---------------------------------------------------------------------------------------------
class MaxPool2d(Module):
    """Max pooling: x (N, C, H, W) -> y (N, C, P, Q). The argmax is kept for backward as the compact
    uint8 window offset (:func:`fastmnist.functional.max_pool2d_compact`): 8x less memory than
    int64 indices and the fastest backward (a 2x2 / stride 2 pool tiling the input writes grad_x
    in one streaming pass). Ties and NaN follow PyTorch exactly, as with int64 indices."""

    def __init__(self, kernel_size=2, stride=None, padding=0):
        self.kernel_size = _count(kernel_size, "MaxPool2d: kernel_size", 1)
        self.stride = None if stride is None else _count(stride, "MaxPool2d: stride", 1)
        self.padding = _count(padding, "MaxPool2d: padding")
        self._argmax = self._shape = None

    def forward(self, x):
        y, self._argmax = F.max_pool2d_compact(x, self.kernel_size, self.stride, self.padding)
        self._shape = x.shape
        return y

    def _grad(self, grad_y, relu_y=None):
        return F.max_pool2d_compact_backward(grad_y, self._argmax, self._shape, self.kernel_size, self.stride,
                                             self.padding, relu_y=relu_y)

    def backward(self, grad_y, input_grad=True):
        if self._argmax is None:
            raise RuntimeError("MaxPool2d.backward called before forward")
        return self._grad(grad_y) if input_grad else None

    def to_torch(self):
        import torch

        return torch.nn.MaxPool2d(self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}"


class ReLU(Module):
    """max(x, 0)."""

    def __init__(self):
        self._x = None

    def forward(self, x):
        self._x = x
        return F.relu(x)

    def backward(self, grad_y, input_grad=True):
        return F.relu_backward(grad_y, self._x) if input_grad else None

    def to_torch(self):
        import torch

        return torch.nn.ReLU()


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def __init__(self):
        self._y = None

    def forward(self, x):
        self._y = F.sigmoid(x)
        return self._y

    def backward(self, grad_y, input_grad=True):
        return F.sigmoid_backward(grad_y, self._y) if input_grad else None

    def to_torch(self):
        import torch

        return torch.nn.Sigmoid()


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def __init__(self):
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_y, input_grad=True):
        return grad_y.reshape(self._shape) if input_grad else None

    def to_torch(self):
        import torch

        return torch.nn.Flatten()


class Dropout(Module):
    """Inverted dropout: in training mode zero each element with probability ``p`` and scale the
    rest by 1/(1-p); the identity in eval mode. The mask stream comes from ``seed``."""

    def __init__(self, p=0.5, seed=0):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = _rng(seed)
        self._mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        keep = 1.0 - self.p
        self._mask = (self.rng.random(x.shape, dtype=np.float32) < keep).astype(np.float32)
        self._mask *= np.float32(1.0 / keep)
        return x * self._mask

    def backward(self, grad_y, input_grad=True):
        if not input_grad:
            return None
        return grad_y if self._mask is None else grad_y * self._mask

    def to_torch(self):
        import torch

        return torch.nn.Dropout(self.p)

    def extra_repr(self):
        return f"p={self.p}"


# ---------------------------------------------------------------------------------------------
# fused layers (made by fuse(); they share the Parameters of the layers they fuse)
# ---------------------------------------------------------------------------------------------
class _Fused(Module):
    """Base of the fused layers: parameters are those of ``self.base`` (a Conv2d or Linear)."""

    base: Module

    def named_parameters(self, prefix=""):
        return self.base.named_parameters(prefix)

    def train(self, mode: bool = True):
        self.training = bool(mode)
        self.base.train(mode)
        return self


class _FusedReLU(_Fused):
    """A Conv2d or Linear with the ReLU after it in one kernel (``_kernel``); backward masks grad_y
    where the output is 0, then runs the base layer's backward."""

    def __init__(self, base):
        self.base = base
        self._x = self._y = None

    def forward(self, x):
        self._x = x
        self._y = self._kernel(x)
        return self._y

    def backward(self, grad_y, input_grad=True):
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self.base._grads(F.relu_backward(grad_y, self._y), self._x, input_grad)

    def to_torch(self):
        import torch

        return torch.nn.Sequential(self.base.to_torch(), torch.nn.ReLU())

    def extra_repr(self):
        return self.base.extra_repr()


class ConvReLU2d(_FusedReLU):
    """``relu(conv(x))`` as one ``conv2d_relu`` kernel."""

    def __init__(self, conv: Conv2d):
        super().__init__(conv)

    def _kernel(self, x):
        c = self.base
        return F.conv2d_relu(x, c.weight.data, c._b(), c.stride, c.padding)


class LinearReLU(_FusedReLU):
    """``relu(linear(x))`` as one ``linear_relu`` kernel."""

    def __init__(self, linear: Linear):
        super().__init__(linear)

    def _kernel(self, x):
        lin = self.base
        lin._check(x)
        return F.linear_relu(x, lin.weight.data, lin._b())


class ConvReLUPool2d(_Fused):
    """``max_pool(relu(conv(x)))`` (equal to ``relu(max_pool(conv(x)))``: max and ReLU commute):
    ``conv2d_relu`` then the compact max-pool; backward applies the ReLU mask to the pooled
    gradient inside the pool backward (``relu_y``), then runs the convolution's backward."""

    def __init__(self, conv: Conv2d, pool: MaxPool2d, relu_first: bool = True):
        self.base, self.pool, self.relu_first = conv, pool, bool(relu_first)
        self._x = self._y = None

    def forward(self, x):
        c = self.base
        self._x = x
        z = F.conv2d_relu(x, c.weight.data, c._b(), c.stride, c.padding)
        self._y = self.pool.forward(z)
        return self._y

    def backward(self, grad_y, input_grad=True):
        if self._x is None:
            raise RuntimeError("ConvReLUPool2d.backward called before forward")
        return self.base._grads(self.pool._grad(grad_y, relu_y=self._y), self._x, input_grad)

    def to_torch(self):
        import torch

        parts = [torch.nn.ReLU(), self.pool.to_torch()]
        return torch.nn.Sequential(self.base.to_torch(), *(parts if self.relu_first else parts[::-1]))

    def extra_repr(self):
        return f"{self.base.extra_repr()}, pool={self.pool.extra_repr()}"


def _fuse_layers(named):
    """[(name, layer)] -> [(name, fused layer)]; a fused layer takes the name of its Conv2d/Linear."""
    items = list(named)
    out, i = [], 0
    while i < len(items):
        name, layer = items[i]
        kinds = [type(l) for _, l in items[i + 1:i + 3]]
        if type(layer) is Linear and kinds[:1] == [ReLU]:
            out.append((name, LinearReLU(layer)))
            i += 2
            continue
        if type(layer) is Conv2d:
            if kinds in ([ReLU, MaxPool2d], [MaxPool2d, ReLU]):
                pool = items[i + 1][1] if kinds[0] is MaxPool2d else items[i + 2][1]
                if pool.padding == 0:  # a padded pool sees -inf padding, which ReLU does not commute with
                    out.append((name, ConvReLUPool2d(layer, pool, relu_first=kinds[0] is ReLU)))
                    i += 3
                    continue
            if kinds[:1] == [ReLU]:
                out.append((name, ConvReLU2d(layer)))
                i += 2
                continue
        out.append((name, layer))
        i += 1
    return out


def fuse(model):
    """The fusion pass: a new :class:`Sequential` in which ``Conv2d -> ReLU`` runs as
    :class:`ConvReLU2d`, ``Conv2d -> ReLU -> MaxPool2d`` / ``Conv2d -> MaxPool2d -> ReLU`` as
    :class:`ConvReLUPool2d` and ``Linear -> ReLU`` as :class:`LinearReLU`; other layers are kept.

    The fused layers share their Parameters with ``model`` (training one trains the other) and keep
    the parameter names (``conv1.weight``), so state dicts are interchangeable. Forward and backward
    give the same results as the unfused layers (bit-identical forward; the same gradients)."""
    if not isinstance(model, Sequential):
        raise TypeError(f"fuse: model must be a fastmnist.nn.Sequential, got {type(model).__name__}")
    fused = Sequential(*_fuse_layers(model.layers.items()), fuse=False)
    fused.training = model.training
    fused.input_normalize = model.input_normalize
    if hasattr(model, "spec"):
        fused.spec = model.spec
    return fused


# ---------------------------------------------------------------------------------------------
# Sequential
# ---------------------------------------------------------------------------------------------
_PREFIX = {Conv2d: "conv", Linear: "fc", MaxPool2d: "pool", ReLU: "relu", Sigmoid: "sigmoid",
           Flatten: "flatten", Dropout: "dropout"}


class Sequential(Module):
    """A chain of layers. Layers are named by kind and position (``conv1``, ``relu1``, ``pool1``,
    ``fc1``, ...) unless given as ``(name, layer)`` pairs; parameter names are ``<layer>.weight``
    and ``<layer>.bias``.

    ``forward``/``backward`` run the layers of :func:`fuse` (the fused kernels) unless
    ``fuse=False``; ``layers`` holds the layers as given."""

    def __init__(self, *layers, fuse: bool = True):
        named = OrderedDict()
        counts: dict[str, int] = {}
        for item in layers:
            if isinstance(item, tuple):
                name, layer = item
            else:
                layer = item
                pre = _PREFIX.get(type(layer), type(layer).__name__.lower())
                counts[pre] = counts.get(pre, 0) + 1
                name = f"{pre}{counts[pre]}"
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: {name!r} is not a Module: {type(layer).__name__}")
            if name in named:
                raise ValueError(f"Sequential: duplicate layer name {name!r}")
            named[name] = layer
        self.layers = named
        self._fuse = bool(fuse)
        self._steps = None

    @property
    def fuse(self) -> bool:
        """Whether forward/backward run the fused layers of :func:`fuse` (settable)."""
        return self._fuse

    @fuse.setter
    def fuse(self, value: bool):
        self._fuse = bool(value)
        self._steps = None

    def _run(self):
        """The layers forward/backward execute, built once (the fusion pass when ``fuse``)."""
        if self._steps is None:
            steps = [l for _, l in _fuse_layers(self.layers.items())] if self._fuse else list(self.layers.values())
            first = next((k for k, l in enumerate(steps) if l.parameters()), len(steps))
            self._steps, self._first_param_step = steps, first
        return self._steps

    def forward(self, x):
        for layer in self._run():
            x = layer.forward(x)
        return x

    def backward(self, grad_y, input_grad=False):
        """Backpropagate ``grad_y`` (gradient of the loss w.r.t. the output). Parameter gradients are
        accumulated; the input gradient is returned only with ``input_grad=True`` (otherwise the
        backward pass stops at the first layer with parameters and returns None)."""
        steps = self._run()
        g = grad_y
        stop = 0 if input_grad else self._first_param_step
        for k in range(len(steps) - 1, stop - 1, -1):
            g = steps[k].backward(g, input_grad=input_grad or k > stop)
        return g if input_grad else None

    # -- parameters and state -----------------------------------------------------------------
    def named_parameters(self, prefix=""):
        out = []
        for name, layer in self.layers.items():
            out += layer.named_parameters(prefix + name + ".")
        return [(n, p) for n, p in out if p is not None]

    def train(self, mode: bool = True):
        self.training = bool(mode)
        for layer in self.layers.values():
            layer.train(mode)
        return self

    # -- interop --------------------------------------------------------------------------------
    def to_torch(self):
        """An equivalent ``torch.nn.Sequential`` (weights copied; outputs equal within float32
        rounding), in the same train/eval mode. Fused layers become their unfused parts."""
        import torch

        tm = torch.nn.Sequential(OrderedDict((name, layer.to_torch()) for name, layer in self.layers.items()))
        tm.train(self.training)
        return tm

    def to_onnx(self, path, input_shape=None, opset: int = 17):
        """Write the model as an ONNX file (through :meth:`to_torch` and PyTorch's TorchScript ONNX
        exporter, which needs no extra package), atomically. The graph has one input ``input``
        (float32, batch dimension dynamic) and one output ``logits``. ``input_shape``: one
        sample's shape (default (1, 28, 28), or (in_features,) when the first layer is a Linear).
        Needs ``torch`` and ``onnx``. Returns the path."""
        import io
        import warnings
        from pathlib import Path

        import torch

        from ._io import atomic_write

        if input_shape is None:
            first = next(iter(self.layers.values()), None)
            input_shape = (first.in_features,) if isinstance(first, Linear) else (1, 28, 28)
        try:
            shape = (1,) + tuple(int(d) for d in input_shape)
        except (TypeError, ValueError):
            raise TypeError(f"to_onnx: input_shape must be a tuple of ints, got {input_shape!r}") from None
        tm = self.to_torch().eval()
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(tm, (torch.zeros(shape),), buf, dynamo=False, opset_version=int(opset),
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(buf.getvalue()), "wb")
        return path

    # -- inspection -----------------------------------------------------------------------------
    def feature_maps(self, x):
        """Run ``x`` layer by layer (unfused, eval mode) and return [(name, activation)] with names
        ``00_conv1``, ``01_relu1``, ... in layer order. ``x`` as for ``model(x)``."""
        x = _as_input(x, self)
        was = self.training
        self.eval()
        try:
            out = []
            for i, (name, layer) in enumerate(self.layers.items()):
                x = layer.forward(x)
                out.append((f"{i:02d}_{name}", x))
            return out
        finally:
            self.train(was)

    def summary(self, input_size=(1, 1, 28, 28), file=None) -> str:
        """A table of layer, output shape and parameter count with the total (like torchinfo),
        for an input of ``input_size``: with the batch dimension as torchinfo's ``input_size``
        ((N, C, H, W) or (N, features)); a 3-D (C, H, W) or 1-D (features,) shape is taken as one
        sample (torchsummary's convention). Printed unless ``file`` is False; returned."""
        try:
            shape = tuple(int(d) for d in input_size)
        except (TypeError, ValueError):
            raise TypeError(f"summary: input_size must be a tuple of ints, got {input_size!r}") from None
        if len(shape) in (1, 3):
            shape = (1,) + shape
        if len(shape) not in (2, 4) or min(shape) < 1:
            raise ValueError(f"summary: input_size must be (N, C, H, W), (N, features), (C, H, W) or "
                             f"(features,) with positive sizes, got {input_size!r}")
        x = np.zeros(shape, np.float32)
        rows = [("Layer (type)", "Output shape", "Param #")]
        maps = self.feature_maps(x)
        for (name, layer), (_, a) in zip(self.layers.items(), maps):
            shp = "[" + ", ".join(["-1"] + [str(d) for d in a.shape[1:]]) + "]"
            rows.append((f"{name} ({type(layer).__name__})", shp, f"{layer.num_parameters():,}"))
        total = self.num_parameters()
        w = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "=" * sum(w)
        out = [line, "".join(rows[0][i].ljust(w[i]) if i < 2 else rows[0][i].rjust(w[i]) for i in range(3)), line]
        for r in rows[1:]:
            out.append("".join(r[i].ljust(w[i]) if i < 2 else r[i].rjust(w[i]) for i in range(3)))
        out += [line, f"Total params: {total:,}", f"Trainable params: {total:,}",
                f"Input shape: {list(shape)}", line]
        text = "\n".join(out)
        if file is not False:
            print(text, file=file)
        return text

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self.layers.values())[key]
        return self.layers[key]

    def __repr__(self):
        body = "\n".join(f"  ({n}): {l!r}" for n, l in self.layers.items())
        return f"Sequential(\n{body}\n)"


# ---------------------------------------------------------------------------------------------
# PyTorch -> fastmnist
# ---------------------------------------------------------------------------------------------
def _layer_from_torch(name, m):
    import torch

    tnn = torch.nn
    if isinstance(m, tnn.Conv2d):
        if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ValueError(f"from_torch: {name!r}: only Conv2d with groups=1, dilation=1, zero padding given "
                             f"as ints is supported, got {m!r}")
        layer = Conv2d(m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), tuple(m.padding),
                       bias=m.bias is not None)
    elif isinstance(m, tnn.Linear):
        layer = Linear(m.in_features, m.out_features, bias=m.bias is not None)
    elif isinstance(m, tnn.MaxPool2d):
        ks, st, pd = (m.kernel_size, m.stride, m.padding)
        if m.ceil_mode or m.dilation != 1 or m.return_indices or any(isinstance(v, tuple) for v in (ks, st, pd)):
            raise ValueError(f"from_torch: {name!r}: only MaxPool2d with square int kernel/stride/padding, "
                             f"dilation=1 and ceil_mode=False is supported, got {m!r}")
        return MaxPool2d(ks, st, pd)
    elif isinstance(m, tnn.ReLU):
        return ReLU()
    elif isinstance(m, tnn.Sigmoid):
        return Sigmoid()
    elif isinstance(m, tnn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ValueError(f"from_torch: {name!r}: only Flatten(1, -1) is supported, got {m!r}")
        return Flatten()
    elif isinstance(m, tnn.Dropout):
        return Dropout(m.p)
    else:
        raise TypeError(f"from_torch: {name!r}: {type(m).__name__} is not supported (supported: Conv2d, Linear, "
                        "MaxPool2d, ReLU, Sigmoid, Flatten, Dropout, nested Sequential)")
    layer.load_state_dict({k: v for k, v in m.state_dict().items()})
    return layer


def from_torch(module) -> Sequential:
    """A :class:`Sequential` equivalent to the PyTorch model ``module`` (a ``torch.nn.Sequential``,
    possibly nested (flattened into one chain), of Conv2d, Linear, MaxPool2d, ReLU, Sigmoid, Flatten
    and Dropout), weights copied, in the same train/eval mode. Layers get our usual names
    (``conv1``, ``relu1``, ...). Anything else raises TypeError/ValueError naming the torch layer."""
    import torch

    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch: module must be a torch.nn.Sequential, got {type(module).__name__}")
    layers = []

    def walk(seq, prefix):
        for name, m in seq.named_children():
            full = f"{prefix}{name}"
            if isinstance(m, torch.nn.Sequential):
                walk(m, full + "_")
            else:
                layers.append(_layer_from_torch(full, m))

    walk(module, "")
    model = Sequential(*layers)
    model.train(module.training)
    return model


# ---------------------------------------------------------------------------------------------
# losses: crit(output, labels) -> mean loss (float); crit.backward() -> gradient w.r.t. output
# ---------------------------------------------------------------------------------------------
class _Loss:
    """``loss = crit(output, labels)`` returns the mean loss as a Python float and keeps the
    gradient, which ``crit.backward()`` returns (dL/doutput, the array to pass to
    ``model.backward``). ``crit.loss_and_grad(output, labels)`` gives both at once."""

    name = ""

    def __init__(self):
        self._grad = None

    def loss_and_grad(self, output, labels):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, output, labels) -> float:
        loss, self._grad = self.loss_and_grad(output, labels)
        return float(loss)

    def backward(self) -> np.ndarray:
        """dL/doutput of the last call."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss was computed")
        return self._grad


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on integer labels, averaged over the batch (torch's
    ``F.cross_entropy``). ``label_smoothing`` in [0, 1] is torch's: the target is
    ``(1 - label_smoothing) * one_hot + label_smoothing / classes``."""

    name = "cross_entropy"

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        try:
            ls = float(label_smoothing)
        except (TypeError, ValueError):
            raise TypeError(f"label_smoothing must be a number, got {label_smoothing!r}") from None
        if not 0.0 <= ls <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = ls

    def loss_and_grad(self, logits, labels):
        loss, grad = F.softmax_cross_entropy(logits, labels)
        eps = self.label_smoothing
        if not eps:
            return loss, grad
        # (1-eps)*CE + eps*mean_c(logsumexp - logit_c) = CE + eps*(logit_y - mean_c logit_c), averaged
        # over the batch; the gradient gains eps/N * (one_hot - 1/classes)
        x = np.ascontiguousarray(logits, np.float32)
        n, k = x.shape
        at_label = np.arange(0, n * k, k) + np.asarray(labels, np.int64)  # flat indices of the labels' logits
        loss = float(loss) + eps * (float(x.ravel()[at_label].sum(dtype=np.float64)) -
                                    float(x.sum(dtype=np.float64)) / k) / n
        grad -= np.float32(eps / (n * k))
        grad.ravel()[at_label] += np.float32(eps / n)  # grad is the kernel's new C-contiguous array
        return loss, grad

    def probabilities(self, logits):
        return F.softmax(logits)


class MSELoss(_Loss):
    """Mean squared error between the output and the one-hot encoded labels, averaged over all
    N x classes elements (torch's ``F.mse_loss(out, one_hot(y))``)."""

    name = "mse"

    def __init__(self, num_classes=10):
        super().__init__()
        self.num_classes = int(num_classes)

    def loss_and_grad(self, output, labels):
        return F.mse_loss(output, F.one_hot(labels, self.num_classes))

    def probabilities(self, output):
        # outputs of an MSE-trained net are scores, not probabilities: normalise them with softmax
        return F.softmax(output)


def get_loss(name):
    """``"cross_entropy"`` / ``"ce"`` or ``"mse"`` -> a loss object; loss objects pass through."""
    if not isinstance(name, str):
        return name
    key = name.lower().replace("-", "_")
    if key in ("cross_entropy", "ce", "crossentropy"):
        return CrossEntropyLoss()
    if key in ("mse", "mse_loss"):
        return MSELoss()
    raise ValueError(f"unknown loss {name!r}: use 'cross_entropy' or 'mse'")
