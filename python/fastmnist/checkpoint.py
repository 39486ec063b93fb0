"""Checkpoint I/O: a model's parameters (and optionally its optimizer state) in one ``.npz`` file with
a JSON ``__info__`` entry holding the model's build spec; written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._io import atomic_savez

__all__ = ["save_checkpoint", "load_checkpoint"]


def _flatten_state(prefix, obj, out, meta):
    """Arrays of a (nested) optimizer state dict -> npz entries; everything else -> JSON meta."""
    if isinstance(obj, dict):
        m = {}
        for k, v in obj.items():
            sub = _flatten_state(f"{prefix}/{k}", v, out, {})
            m[str(k)] = sub
        return {"__dict__": m}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten_state(f"{prefix}/{i}", v, out, {}) for i, v in enumerate(obj)]}
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
        return {"__array__": prefix}
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if obj is None or isinstance(obj, (int, float, str, bool)):
        return obj
    return repr(obj)


def _unflatten_state(spec, arrays):
    if isinstance(spec, dict):
        if "__dict__" in spec:
            return {k: _unflatten_state(v, arrays) for k, v in spec["__dict__"].items()}
        if "__list__" in spec:
            return [_unflatten_state(v, arrays) for v in spec["__list__"]]
        if "__array__" in spec:
            return arrays[spec["__array__"]]
    return spec


def save_checkpoint(path, model, optimizer=None, meta=None) -> Path:
    """Write ``model``'s parameters (and ``optimizer.state_dict()`` when given) to a ``.npz`` file,
    atomically (temporary file + ``os.replace``). ``meta`` (JSON-serialisable) is stored too, with
    the model's build spec so that :func:`load_checkpoint` can rebuild it."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    info = {"format": "fastmnist-checkpoint-1", "spec": getattr(model, "spec", None), "meta": meta or {}}
    if optimizer is not None and hasattr(optimizer, "state_dict"):
        info["optimizer"] = _flatten_state("optim", optimizer.state_dict(), arrays, {})
        info["optimizer_type"] = type(optimizer).__name__
    arrays["__info__"] = np.array(json.dumps(info))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savez(path, compressed=False, **arrays)
    return path


def load_checkpoint(path, model=None):
    """Read a checkpoint written by :func:`save_checkpoint`. Returns ``(model, info)`` where
    ``model`` is the given one (loaded in place) or rebuilt from the stored spec, and ``info`` holds
    ``meta``, ``spec`` and, when saved, ``optimizer_state``."""
    path = Path(path)
    if not path.exists():
        raise OSError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{str(path)!r} is not a fastmnist checkpoint (.npz): {e}") from None
    if "__info__" not in arrays:
        raise ValueError(f"{str(path)!r} is not a fastmnist checkpoint (no __info__ entry)")
    info = json.loads(str(arrays.pop("__info__")))
    state = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    if model is None:
        spec = info.get("spec")
        if not spec:
            raise ValueError(f"{str(path)!r} does not record which model it holds; pass model=")
        from . import models

        model = models.build(spec["name"], seed=spec.get("seed", 0), **spec.get("options", {}))
    model.load_state_dict(state)
    model.eval()
    out = {"meta": info.get("meta", {}), "spec": info.get("spec")}
    if "optimizer" in info:
        out["optimizer_state"] = _unflatten_state(info["optimizer"], arrays)
        out["optimizer_type"] = info.get("optimizer_type")
    return model, out
