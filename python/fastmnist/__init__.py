"""fastmnist: fast, trustworthy CPU training and study of the classic MNIST models.

The hot kernels are C++17 + OpenMP (``fastmnist._core``); this package wires them into a
functional API that mirrors ``torch.nn.functional``, layers and optimizers, trainers for the
classic MNIST models, metrics and figures.

Public names are imported lazily (``fastmnist.conv2d`` loads only the kernels, not matplotlib).
"""
from __future__ import annotations

import importlib
import warnings

from . import _core

_build = _core.build_info()
__version__ = _build["version"]
if _build["isa_env_note"]:  # FASTMNIST_ISA named no level this CPU runs
    warnings.warn(_build["isa_env_note"], RuntimeWarning, stacklevel=2)
del _build


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads the kernels use (``OMP_NUM_THREADS`` is the default)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of OpenMP threads the kernels use."""
    return int(_core.get_num_threads())


def empty_cache() -> None:
    """Free the memory of released kernel outputs that fastmnist keeps for reuse.

    Kernel outputs of 2 MiB or more come from 2 MiB-aligned blocks marked for transparent huge
    pages; when such an array is freed its block is kept (up to 256 MiB in all) for the next output
    of about the same size, so a training loop does not map fresh pages every step. This hands the
    kept blocks back to the allocator; arrays still in use are untouched."""
    _core.empty_cache()


def build_info() -> dict:
    """Version, compiler, build flags, instruction sets and OpenMP details of the extension."""
    return dict(_core.build_info())


# name -> submodule that defines it. Add a line when a module gains a public name.
_LAZY = {
    # data.py
    "load_mnist": "data",
    "load_mnist_csv": "data",
    "load_idx": "data",
    "subsample": "data",
    "MNISTError": "data",
    # logreg.py / roc (issue: ResNet features + logistic regression)
    "LogisticRegression": "logreg",
    "roc_curve": "logreg",
    "roc_curve_ovr": "logreg",
    "auc": "logreg",
    # metrics.py (issue: figures, metrics and reports)
    "confusion_matrix": "metrics",
    "accuracy": "metrics",
    "accuracy_score": "metrics",
    "precision_recall_fscore_support": "metrics",
    "classification_report": "metrics",
    # parameter.py / optim.py
    "Parameter": "parameter",
    "SGD": "optim",
    "Adam": "optim",
    "AdamW": "optim",
    # train.py / nn
    "Trainer": "train",
    "History": "train",
    "fit": "train",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
}

_SUBMODULES = {"data", "functional", "nn", "optim", "parameter", "augment", "models", "train", "logreg",
               "roc", "features", "metrics", "plots", "report", "cli"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    mod = _LAZY.get(name)
    if mod is None:
        functional = importlib.import_module(".functional", __name__)
        if name in functional.__all__:
            return getattr(functional, name)
        raise AttributeError(f"module 'fastmnist' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)


def __dir__():
    functional = importlib.import_module(".functional", __name__)
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES | set(functional.__all__))
