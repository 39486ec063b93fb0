"""Checkpoint I/O: a model's parameters (and optionally its optimizer state) in one ``.npz`` file with
a JSON ``__info__`` entry holding the model's build spec; written atomically.

Loading validates before it allocates: the zip directory and every ``.npy`` header are read first, the
spec is checked (known model, option names, types and ranges), the parameter shapes the spec implies are
derived without building the model (:func:`fastmnist.nn.parameter_shapes`) and compared with the stored
headers, and only then are the arrays read and the model built. Anything wrong raises
:class:`CheckpointError` naming the file and the problem.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._io import atomic_savez

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "MAX_CHECKPOINT_BYTES"]

FORMAT = "fastmnist-checkpoint-1"
# the most array data a checkpoint may declare (the largest named model is ~1.7 MB of parameters)
MAX_CHECKPOINT_BYTES = 1 << 30
_MAX_INFO_BYTES = 16 << 20
_MAX_LIST = 64


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, or does not describe a model fastmnist can build."""


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


def _is_path(x) -> bool:
    return isinstance(x, (str, bytes, os.PathLike))


def save_checkpoint(model, path, optimizer=None, meta=None) -> Path:
    """Write ``model``'s parameters (and ``optimizer.state_dict()`` when given) to a ``.npz`` file,
    atomically (temporary file + ``os.replace``), in ``torch.save(obj, path)`` order. ``meta``
    (JSON-serialisable) is stored too, with the model's build spec so that :func:`load_checkpoint`
    can rebuild it. The older order ``save_checkpoint(path, model, ...)`` is still accepted."""
    if _is_path(model) and not _is_path(path):
        model, path = path, model
    if not hasattr(model, "state_dict"):
        raise TypeError(f"save_checkpoint: model must be a fastmnist model (with state_dict()), got "
                        f"{type(model).__name__}")
    if not _is_path(path):
        raise TypeError(f"save_checkpoint: path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    info = {"format": FORMAT, "spec": getattr(model, "spec", None), "meta": meta or {}}
    if optimizer is not None and hasattr(optimizer, "state_dict"):
        info["optimizer"] = _flatten_state("optim", optimizer.state_dict(), arrays, {})
        info["optimizer_type"] = type(optimizer).__name__
    arrays["__info__"] = np.array(json.dumps(info))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savez(path, compressed=False, **arrays)
    return path


# ------------------------------------------------------------------------------------------- loading
class _Archive:
    """The entries of an ``.npz`` file: name -> (ZipInfo, shape, dtype, header bytes), read from the
    zip directory and the ``.npy`` headers only; :meth:`read` reads one array's data."""

    def __init__(self, path: Path):
        self.path = path
        self.zf = zipfile.ZipFile(path)
        self.entries = {}
        try:
            self._scan(path.stat().st_size)
        except BaseException:
            self.zf.close()
            raise

    def _scan(self, size: int):
        stored = 0
        for zi in self.zf.infolist():
            if not zi.filename.endswith(".npy"):
                raise self.error(f"unexpected entry {zi.filename!r} (a checkpoint holds only .npy arrays)")
            name = zi.filename[:-4]
            if zi.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or zi.flag_bits & 0x1:
                raise self.error(f"entry {name!r}: compression method {zi.compress_type}"
                                 f"{' (encrypted)' if zi.flag_bits & 0x1 else ''} is not stored or deflate")
            shape, dtype, header = self._header(zi, name)
            if dtype.hasobject:
                raise self.error(f"entry {name!r} holds Python objects (dtype {dtype}); refused")
            nbytes = math.prod(shape) * dtype.itemsize
            if zi.file_size != header + nbytes:
                raise self.error(f"entry {name!r}: its header announces {shape} {dtype} ({nbytes} bytes) but the "
                                 f"zip directory says {zi.file_size - header} bytes")
            if zi.compress_type == zipfile.ZIP_STORED:
                stored += zi.compress_size
            self.entries[name] = (zi, tuple(shape), dtype)
        total = sum(zi.file_size for zi, _, _ in self.entries.values())
        if total > MAX_CHECKPOINT_BYTES:
            raise self.error(f"its arrays declare {total:,d} bytes, more than the {MAX_CHECKPOINT_BYTES:,d}-byte "
                             "limit")
        if stored > size:
            raise self.error(f"its zip directory declares {stored:,d} stored bytes in a {size:,d}-byte file "
                             "(truncated?)")

    def _header(self, zi, name):
        """(shape, dtype, header length) of one ``.npy`` entry, from its header alone."""
        with self.zf.open(zi) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise self.error(f"entry {name!r}: unsupported .npy version {version}")
            except CheckpointError:
                raise
            except MemoryError:
                raise
            except Exception as e:  # noqa: BLE001 -- numpy's header parser raises many types on garbage
                raise self.error(f"entry {name!r}: unreadable .npy header ({type(e).__name__}: {e})") from None
            return tuple(shape), dtype, f.tell()

    def error(self, msg) -> "CheckpointError":
        return CheckpointError(f"{str(self.path)!r} is not a fastmnist checkpoint: {msg}")

    def read(self, name) -> np.ndarray:
        with self.zf.open(self.entries[name][0]) as f:
            return np.lib.format.read_array(f, allow_pickle=False)


def _size_ok(v) -> bool:
    """A layer size as the builders accept it: an integer (or integral float) in [1, 2**31)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v) and v == int(v) and 1 <= v < 2**31


def _check_type(where, value, default):
    """``value`` of a build option whose default is ``default``: same kind, sane range (sizes as
    ``fastmnist train --option`` writes them: ``hidden=128``, ``sizes=784,100,10``, ``channels=8``)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = _size_ok(value)
    elif isinstance(default, float):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and 0 <= value < 1)
    elif isinstance(default, str):
        ok = isinstance(value, str) and len(value) <= 64
    elif default is None:
        ok = value is None or (isinstance(value, str) and len(value) <= 64)
    elif isinstance(default, (tuple, list)):
        ok = _size_ok(value) or (isinstance(value, list) and 1 <= len(value) <= _MAX_LIST
                                 and all(_size_ok(v) for v in value))
    else:
        ok = False
    if not ok:
        raise CheckpointError(f"{where}: {value!r:.100} is not a valid value (default {default!r})")


def _check_spec(path, spec):
    """Validate a stored build spec; returns (model name, seed, options)."""
    from . import models

    where = f"{str(path)!r}: spec"
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise CheckpointError(f"{where} must be an object with a model name, got {spec!r:.200}")
    if spec["name"] not in models.MODELS:
        raise CheckpointError(f"{where}: unknown model {spec['name']!r:.100} (known: {', '.join(models.MODELS)})")
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**62:
        raise CheckpointError(f"{where}: seed must be an integer in [0, 2**62), got {seed!r:.100}")
    options = spec.get("options", {})
    if not isinstance(options, dict):
        raise CheckpointError(f"{where}: options must be an object, got {options!r:.200}")
    params = inspect.signature(models.MODELS[spec["name"]][0]).parameters
    for k, v in options.items():
        if k == "seed" or k not in params:
            allowed = [p for p in params if p != "seed"]
            raise CheckpointError(f"{where}: model {spec['name']!r} has no option {k!r:.100} (options: {allowed})")
        _check_type(f"{where}: option {k!r}", v, params[k].default)
    return spec["name"], seed, options


def _unflatten_state(spec, arrays, depth=0):
    if depth > 32:
        raise ValueError("optimizer state nested too deeply")
    if isinstance(spec, dict):
        if "__dict__" in spec and isinstance(spec["__dict__"], dict):
            return {k: _unflatten_state(v, arrays, depth + 1) for k, v in spec["__dict__"].items()}
        if "__list__" in spec and isinstance(spec["__list__"], list):
            return [_unflatten_state(v, arrays, depth + 1) for v in spec["__list__"]]
        if "__array__" in spec:
            if spec["__array__"] not in arrays:
                raise ValueError(f"optimizer state names a missing array {spec['__array__']!r:.100}")
            return arrays[spec["__array__"]]
        raise ValueError(f"unexpected optimizer state entry {spec!r:.100}")
    if spec is None or isinstance(spec, (int, float, str, bool)):
        return spec
    raise ValueError(f"unexpected optimizer state value {spec!r:.100}")


def _read_info(arc) -> dict:
    if "__info__" not in arc.entries:
        raise arc.error("no __info__ entry")
    zi, shape, dtype = arc.entries["__info__"]
    if shape != () or dtype.kind != "U" or zi.file_size > _MAX_INFO_BYTES:
        raise arc.error(f"__info__ must be a text scalar of at most {_MAX_INFO_BYTES:,d} bytes, got "
                        f"{shape} {dtype} ({zi.file_size:,d} bytes)")
    try:
        info = json.loads(str(arc.read("__info__")))
    except (ValueError, RecursionError) as e:
        raise arc.error(f"__info__ is not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise arc.error(f"__info__ must be an object with format {FORMAT!r}")
    return info


def load_checkpoint(path, model=None):
    """Read a checkpoint written by :func:`save_checkpoint`. Returns ``(model, info)`` where
    ``model`` is the given one (loaded in place) or rebuilt from the stored spec, and ``info`` holds
    ``meta``, ``spec`` and, when saved, ``optimizer_state``. Raises :class:`CheckpointError` (a
    ``ValueError``) for a file that is not a valid checkpoint, ``FileNotFoundError`` for a missing one.
    Nothing is allocated before the stored shapes are checked against the model's."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, not a .npz file")
    try:
        return _load(path, model)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, OSError, RecursionError,
            NotImplementedError, struct.error) as e:
        if isinstance(e, PermissionError):
            raise
        raise CheckpointError(f"{str(path)!r} is not a fastmnist checkpoint (.npz): "
                              f"{type(e).__name__}: {e}") from None


def _load(path: Path, model):
    from . import models, nn

    arc = _Archive(path)
    with arc.zf:
        info = _read_info(arc)
        params = {k[len("param/"):]: k for k in arc.entries if k.startswith("param/")}
        if model is None:
            spec = info.get("spec")
            if not spec:
                raise CheckpointError(f"{str(path)!r} does not record which model it holds; pass model=")
            name, seed, options = _check_spec(path, spec)
            try:
                expected = nn.parameter_shapes(lambda: models.build(name, seed=seed, **options))
            except (ValueError, TypeError, ArithmeticError) as e:
                raise CheckpointError(f"{str(path)!r}: spec {spec!r:.200} does not build: {e}") from None
        else:
            expected = {k: p.data.shape for k, p in model.named_parameters()}
        missing = [k for k in expected if k not in params]
        unexpected = [k for k in params if k not in expected]
        if missing or unexpected:
            raise arc.error(f"its parameters do not match the model: missing {missing}, unexpected {unexpected}")
        for k, shape in expected.items():
            _, got, dtype = arc.entries[params[k]]
            if got != tuple(shape) or dtype.kind != "f":
                raise arc.error(f"shape mismatch for {k!r}: checkpoint has {got} {dtype}, model has "
                                f"{tuple(shape)} float32")
        # every declared size is now known to be the model's: read the arrays, then build
        state = {k: arc.read(params[k]) for k in expected}
        others = {k: arc.read(k) for k in arc.entries if k != "__info__" and not k.startswith("param/")}
    if model is None:
        model = models.build(name, seed=seed, **options)
    model.load_state_dict(state)
    model.eval()
    out = {"meta": info.get("meta", {}), "spec": info.get("spec")}
    if "optimizer" in info:
        out["optimizer_state"] = _unflatten_state(info["optimizer"], others)
        out["optimizer_type"] = info.get("optimizer_type")
    return model, out
