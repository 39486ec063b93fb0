"""Atomic file writes: every file fastmnist writes goes through :func:`atomic_write`, so a reader
(or a run killed mid-write) sees the old file or the complete new one, never a torn one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _default_mode(path):
    """mkstemp creates 0600 files; give the final file the usual umask-based mode."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write(path: Path, write, mode: str = "w"):
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it over
    ``path``: readers see the old file or the complete new one, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str):
    atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path, obj, **kw):
    kw.setdefault("indent", 1)
    atomic_write_text(path, json.dumps(obj, **kw) + "\n")


def atomic_savez(path, compressed: bool = True, **arrays):
    """``np.savez[_compressed](path, **arrays)`` through :func:`atomic_write`."""
    save = np.savez_compressed if compressed else np.savez
    atomic_write(path, lambda f: save(f, **arrays), "wb")


def atomic_savefig(fig, path, **savefig_kw):
    """``fig.savefig(path, **savefig_kw)`` through :func:`atomic_write` (PNG unless ``format`` says)."""
    savefig_kw.setdefault("format", "png")
    atomic_write(path, lambda f: fig.savefig(f, **savefig_kw), "wb")


def remove_stale_temps(directory, recursive: bool = True) -> list:
    """Delete the temporary files (``.<name>*.tmp``) that a killed writer left in ``directory`` (and
    its sub-directories); returns the paths removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in (directory.rglob(".*.tmp") if recursive else directory.glob(".*.tmp")):
        if p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
