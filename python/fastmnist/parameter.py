"""``Parameter``: a trainable float32 array with its gradient, what the optimizers update."""
from __future__ import annotations

import numpy as np


class Parameter:
    """A trainable tensor.

    ``data`` is a float32 C-contiguous ndarray that optimizers update **in place** (layers may keep
    references to it); ``grad`` is an array of the same shape or ``None`` (no gradient: the optimizer
    skips the parameter, as torch does). ``Parameter(data)`` copies ``data`` to float32 C order.
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name: str = ""):
        arr = np.array(data, dtype=np.float32, order="C", copy=True)
        if arr.ndim == 0:
            raise ValueError(f"Parameter {name!r}: data must have at least one dimension, got a scalar")
        self.data: np.ndarray = arr
        self.grad: np.ndarray | None = None
        self.name: str = str(name)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def size(self) -> int:
        return int(self.data.size)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradient: ``grad = None`` (torch's default), or fill it with zeros in place when
        ``set_to_none=False`` and a gradient exists."""
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad.fill(0.0)

    def __repr__(self) -> str:
        g = "None" if self.grad is None else f"{self.grad.shape}"
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, grad={g})"
