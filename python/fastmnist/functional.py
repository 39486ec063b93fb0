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




# ---------------------------------------------------------------------------------------------
# pooling, activations, linear, losses (cpp/pool.cpp, activation.cpp, linear.cpp, loss.cpp)
# ---------------------------------------------------------------------------------------------
