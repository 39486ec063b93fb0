"""Layers with explicit forward and backward passes on the C++ kernels.

Every layer works on float32 NCHW numpy arrays. ``forward`` caches what ``backward`` needs;
``backward(grad_y)`` accumulates the parameter gradients into ``Parameter.grad`` (as PyTorch does;
the optimizer's ``zero_grad`` clears them) and returns the gradient with respect to the input.

:class:`Sequential` chains layers and fuses neighbours: a ``Conv2d`` followed by a ``ReLU`` runs as
one ``conv2d_relu`` kernel, and ``Conv2d -> MaxPool2d -> ReLU`` (or ``Conv2d -> ReLU -> MaxPool2d``)
runs as ``conv2d_relu -> max_pool2d`` (max and ReLU commute exactly, so the result is bit-identical;
the ReLU mask is applied to the 4x smaller pooled gradient); ``Linear -> ReLU`` runs as
``linear_relu``. The input gradient of the first
layer with parameters is never computed.

Parameters are initialised as PyTorch initialises ``nn.Conv2d`` / ``nn.Linear`` by default
(``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases),
from a seed.

Example::

    from fastmnist import nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256, seed=0), nn.ReLU(), nn.Linear(256, 10, seed=1))
    logits = model(x)                       # x: (N, 1, 28, 28) float32
    loss, grad = nn.CrossEntropyLoss()(logits, y)
    model.backward(grad)                    # fills p.grad for p in model.parameters()
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np

from . import functional as F
from .parameter import Parameter

__all__ = ["Module", "Conv2d", "MaxPool2d", "ReLU", "Sigmoid", "Linear", "Flatten", "Dropout",
           "Sequential", "CrossEntropyLoss", "MSELoss", "get_loss", "Parameter"]


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


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


class Module:
    """Base class: ``forward``, ``backward``, parameters, train/eval mode."""

    training = True

    def __call__(self, x):
        return self.forward(x)

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

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def output_shape(self, input_shape):
        """Shape of the output for an input of ``input_shape`` (batch dimension included)."""
        return self.forward(np.zeros(input_shape, np.float32)).shape

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


# ---------------------------------------------------------------------------------------------
# layers with parameters
# ---------------------------------------------------------------------------------------------
class Conv2d(Module):
    """2-D convolution: x (N, C, H, W), weight (K, C, R, S), bias (K,) -> y (N, K, P, Q)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, seed=0):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding = int(stride), int(padding)
        rng = _rng(seed)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = Parameter(_uniform(rng, (self.out_channels, self.in_channels) + self.kernel_size, bound),
                                "weight")
        self.bias = Parameter(_uniform(rng, (self.out_channels,), bound), "bias") if bias else None
        self._x = self._y = None
        self._relu = False

    def forward(self, x, relu=False):
        """``relu``: False; True (fused conv2d_relu, masked in backward); or "deferred" (fused, and
        the following MaxPool2d applies the ReLU mask to its smaller output gradient instead)."""
        b = None if self.bias is None else self.bias.data
        if relu:
            y = F.conv2d_relu(x, self.weight.data, b, self.stride, self.padding)
            self._y = y if relu is True else None
        else:
            y = F.conv2d(x, self.weight.data, b, self.stride, self.padding)
            self._y = None
        self._x, self._relu = x, relu
        return y

    def backward(self, grad_y, input_grad=True):
        if self._x is None:
            raise RuntimeError("Conv2d.backward called before forward")
        if self._relu is True:
            grad_y = F.relu_backward(grad_y, self._y)
        gx, gw, gb = F.conv2d_backward(grad_y, self._x, self.weight.data, self.stride, self.padding,
                                       bias=self.bias is not None, input_grad=input_grad)
        _accumulate(self.weight, gw)
        if self.bias is not None:
            _accumulate(self.bias, gb)
        return gx

    def extra_repr(self):
        k = self.kernel_size
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={k[0]}x{k[1]}, stride={self.stride}, "
                f"padding={self.padding}")


class Linear(Module):
    """Fully connected layer: x (N, in), weight (out, in), bias (out,) -> y (N, out)."""

    def __init__(self, in_features, out_features, bias=True, seed=0):
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = _rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = Parameter(_uniform(rng, (self.out_features, self.in_features), bound), "weight")
        self.bias = Parameter(_uniform(rng, (self.out_features,), bound), "bias") if bias else None
        self._x = self._y = None
        self._relu = False

    def forward(self, x, relu=False):
        if x.ndim != 2:
            raise ValueError(f"Linear: x must be 2-D (N, {self.in_features}), got shape {x.shape}; "
                             "put a Flatten() before it")
        b = None if self.bias is None else self.bias.data
        self._x, self._relu = x, relu
        if relu:
            self._y = F.linear_relu(x, self.weight.data, b)
            return self._y
        self._y = None
        return F.linear(x, self.weight.data, b)

    def backward(self, grad_y, input_grad=True):
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        if self._relu:
            grad_y = F.relu_backward(grad_y, self._y)
        gx, gw, gb = F.linear_backward(grad_y, self._x, self.weight.data, bias=self.bias is not None,
                                       input_grad=input_grad)
        _accumulate(self.weight, gw)
        if self.bias is not None:
            _accumulate(self.bias, gb)
        return gx

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
        self.kernel_size = int(kernel_size)
        self.stride = None if stride is None else int(stride)
        self.padding = int(padding)
        self._argmax = self._shape = self._y = None

    def forward(self, x, relu_mask=False):
        """``relu_mask``: the input is a ReLU output (fused into the conv before): backward masks the
        output gradient where the pooled value is 0, which equals masking the (4x larger) input
        gradient, since each output gradient lands on its argmax."""
        y, self._argmax = F.max_pool2d_compact(x, self.kernel_size, self.stride, self.padding)
        self._shape = x.shape
        self._y = y if relu_mask else None
        return y

    def backward(self, grad_y, input_grad=True):
        if not input_grad:
            return None
        # with relu_mask the ReLU backward (grad_y where y > 0) is fused into the pool backward
        return F.max_pool2d_compact_backward(grad_y, self._argmax, self._shape, self.kernel_size, self.stride,
                                             self.padding, relu_y=self._y)

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


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def __init__(self):
        self._y = None

    def forward(self, x):
        self._y = F.sigmoid(x)
        return self._y

    def backward(self, grad_y, input_grad=True):
        return F.sigmoid_backward(grad_y, self._y) if input_grad else None


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def __init__(self):
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_y, input_grad=True):
        return grad_y.reshape(self._shape) if input_grad else None


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

    def extra_repr(self):
        return f"p={self.p}"


# ---------------------------------------------------------------------------------------------
# Sequential
# ---------------------------------------------------------------------------------------------
_PREFIX = {Conv2d: "conv", Linear: "fc", MaxPool2d: "pool", ReLU: "relu", Sigmoid: "sigmoid",
           Flatten: "flatten", Dropout: "dropout"}


class Sequential(Module):
    """A chain of layers. Layers are named by kind and position (``conv1``, ``relu1``, ``pool1``,
    ``fc1``, ...) unless given as ``(name, layer)`` pairs; parameter names are ``<layer>.weight``
    and ``<layer>.bias``."""

    def __init__(self, *layers):
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
        self.fuse = True
        self._build_plan()

    # -- plan: which kernels run, in which order ----------------------------------------------
    def _build_plan(self):
        """A list of (layer, mode) steps. Conv2d+ReLU -> one conv2d_relu step (Linear+ReLU ->
        linear_relu); Conv2d+ReLU+MaxPool2d and Conv2d+MaxPool2d+ReLU -> conv2d_relu then
        max_pool2d (ReLU and max commute), with the ReLU mask applied to the pooled gradient."""
        ls = list(self.layers.values())
        plan, i = [], 0
        while i < len(ls):
            layer = ls[i]
            if self.fuse and isinstance(layer, Linear) and i + 1 < len(ls) and isinstance(ls[i + 1], ReLU):
                plan.append((layer, True))
                i += 2
                continue
            if self.fuse and isinstance(layer, Conv2d):
                nxt = ls[i + 1:i + 3]
                kinds = [type(l) for l in nxt]
                if kinds in ([ReLU, MaxPool2d], [MaxPool2d, ReLU]):
                    pool = nxt[0] if kinds[0] is MaxPool2d else nxt[1]
                    if pool.padding == 0:
                        plan += [(layer, "deferred"), (pool, "mask")]
                        i += 3
                        continue
                if kinds[:1] == [ReLU]:
                    plan.append((layer, True))
                    i += 2
                    continue
            plan.append((layer, False))
            i += 1
        self._plan = plan
        first = next((k for k, (l, _) in enumerate(plan) if l.parameters()), len(plan))
        self._first_param_step = first

    def forward(self, x):
        for layer, mode in self._plan:
            if mode is False:
                x = layer.forward(x)
            elif mode == "mask":
                x = layer.forward(x, relu_mask=True)
            else:
                x = layer.forward(x, relu=mode)
        return x

    def backward(self, grad_y, input_grad=False):
        """Backpropagate ``grad_y`` (gradient of the loss w.r.t. the output). Parameter gradients are
        accumulated; the input gradient is returned only with ``input_grad=True`` (otherwise the
        backward pass stops at the first layer with parameters and returns None)."""
        g = grad_y
        stop = 0 if input_grad else self._first_param_step
        for k in range(len(self._plan) - 1, stop - 1, -1):
            layer, _ = self._plan[k]
            g = layer.backward(g, input_grad=input_grad or k > stop)
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

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter array, keyed ``<layer>.weight`` / ``<layer>.bias``."""
        return OrderedDict((n, p.data.copy()) for n, p in self.named_parameters())

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays from ``state`` into the parameters (shapes must match exactly).
        With ``strict`` every parameter must be present and no unknown key may appear."""
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
            v = np.asarray(state[k])
            if v.shape != p.data.shape:
                raise ValueError(f"load_state_dict: shape mismatch for {k!r}: checkpoint has {v.shape}, "
                                 f"model has {p.data.shape}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"load_state_dict: {k!r} holds NaN or infinite values")
            p.data[...] = v.astype(np.float32, copy=False)
        return self

    # -- inspection -----------------------------------------------------------------------------
    def feature_maps(self, x):
        """Run ``x`` layer by layer (unfused, eval mode) and return [(name, activation)] with names
        ``00_conv1``, ``01_relu1``, ... in layer order."""
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

    def summary(self, input_shape=(1, 28, 28), file=None) -> str:
        """A table of layer, output shape and parameter count with the total (like torchinfo),
        for an input of ``input_shape`` (without batch). Printed unless ``file`` is False; returned."""
        x = np.zeros((1,) + tuple(input_shape), np.float32)
        rows = [("Layer (type)", "Output shape", "Param #")]
        maps = self.feature_maps(x)
        for (name, layer), (_, a) in zip(self.layers.items(), maps):
            shape = "[" + ", ".join(["-1"] + [str(d) for d in a.shape[1:]]) + "]"
            rows.append((f"{name} ({type(layer).__name__})", shape, f"{layer.num_parameters():,}"))
        total = self.num_parameters()
        w = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "=" * sum(w)
        out = [line, "".join(rows[0][i].ljust(w[i]) if i < 2 else rows[0][i].rjust(w[i]) for i in range(3)), line]
        for r in rows[1:]:
            out.append("".join(r[i].ljust(w[i]) if i < 2 else r[i].rjust(w[i]) for i in range(3)))
        out += [line, f"Total params: {total:,}", f"Trainable params: {total:,}",
                f"Input shape: {list(input_shape)}", line]
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
# losses: (output, labels) -> (mean loss, gradient w.r.t. output)
# ---------------------------------------------------------------------------------------------
class CrossEntropyLoss:
    """Softmax cross-entropy on integer labels, averaged over the batch (torch's
    ``F.cross_entropy``)."""

    name = "cross_entropy"

    def __call__(self, logits, labels):
        return F.softmax_cross_entropy(logits, labels)

    def probabilities(self, logits):
        return F.softmax(logits)


class MSELoss:
    """Mean squared error between the output and the one-hot encoded labels, averaged over all
    N x classes elements (torch's ``F.mse_loss(out, one_hot(y))``)."""

    name = "mse"

    def __init__(self, num_classes=10):
        self.num_classes = int(num_classes)

    def __call__(self, output, labels):
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
