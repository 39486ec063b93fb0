"""MNIST data: the four IDX files (gzipped or not), a verified downloader with mirrors, CSV, subsampling.

``load_mnist(root=None, download=True)`` looks in ``root``, else ``$FASTMNIST_DATA``, else a per-user
cache directory (``$XDG_CACHE_HOME/fastmnist/mnist``, default ``~/.cache/fastmnist/mnist``). Missing
files are fetched from the public mirrors in turn (``$FASTMNIST_MIRRORS``, comma-separated, overrides
the list), md5-verified, and written atomically: a partial or corrupt download never lands where the
loader would read it.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ._progress import progress

__all__ = ["MNISTError", "FILES", "MIRRORS", "default_root", "download_mnist", "load_idx", "load_mnist",
           "load_mnist_csv", "subsample", "verify_md5"]


class MNISTError(ValueError):
    """A data file is missing, corrupt, or not what it should be. The message names the file."""


# key -> (file name, md5 of the .gz, expected shape)
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", (60000, 28, 28)),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", (60000,)),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", (10000, 28, 28)),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", (10000,)),
}

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def default_root() -> Path:
    """``$FASTMNIST_DATA`` if set, else the per-user cache directory."""
    env = os.environ.get("FASTMNIST_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "fastmnist" / "mnist"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MNISTError(f"{path}: cannot read ({e.strerror or e})") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise MNISTError(f"{path}: corrupt or truncated gzip data ({e})") from e
    return raw


def load_idx(path, expect_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a numpy array, checking its header against its size."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise MNISTError(f"{path}: file too short for an IDX header ({len(data)} bytes)")
    zero, dtype_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise MNISTError(f"{path}: bad magic number {magic} (0x{magic:08x}); not an IDX file")
    if expect_ndim is not None and ndim != expect_ndim:
        want = {1: 2049, 3: 2051}.get(expect_ndim, "?")
        raise MNISTError(f"{path}: bad magic number {magic}, expected {want} ({expect_ndim}-d IDX)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    want = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != want:
        raise MNISTError(f"{path}: wrong size: header says shape {shape} ({want} bytes) but the data has "
                         f"{len(data)} bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def find_file(root: Path, gz_name: str) -> Path | None:
    raw_name = gz_name[:-3]
    for name in (raw_name, gz_name, raw_name.replace("-idx", ".idx")):
        p = root / name
        if p.exists():
            return p
    return None


def verify_md5(path, md5: str) -> bool:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == md5


def _mirrors(mirrors) -> list[str]:
    if mirrors is None:
        env = os.environ.get("FASTMNIST_MIRRORS")
        mirrors = [m for m in env.split(",") if m.strip()] if env else MIRRORS
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _fetch(url: str, dest: Path, md5: str, timeout: float, quiet: bool) -> None:
    """Download url to dest through a temporary file in dest's directory; md5 checked before rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            got = 0
            with progress(total=total, desc=dest.name, quiet=quiet, unit="B", unit_scale=True) as bar:
                while True:
                    chunk = resp.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            if total is not None and got != total:
                raise MNISTError(f"{url}: connection closed after {got} of {total} bytes")
        if h.hexdigest() != md5:
            raise MNISTError(f"{url}: md5 mismatch (got {h.hexdigest()}, expected {md5}); file discarded")
        os.replace(tmp, dest)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def download_mnist(root=None, mirrors=None, quiet: bool = False, timeout: float = 30.0) -> Path:
    """Fetch whichever of the four .gz files are missing from ``root``; verify md5; write atomically.
    Each mirror is tried in turn; if all fail the error lists why each one failed."""
    root = Path(root) if root is not None else default_root()
    root.mkdir(parents=True, exist_ok=True)
    for name, md5, _ in FILES.values():
        if find_file(root, name) is not None:
            continue
        errors = []
        for base in _mirrors(mirrors):
            try:
                _fetch(base + name, root / name, md5, timeout, quiet)
                break
            except Exception as e:  # noqa: BLE001 -- any failure (HTTP, cut connection, md5): next mirror
                errors.append(f"{base}: {type(e).__name__}: {e}")
        else:
            raise MNISTError(f"could not download {name} into {root}:\n  " + "\n  ".join(errors))
    return root


def load_mnist(root=None, download: bool = True, mirrors=None, quiet: bool = True):
    """The MNIST arrays ``(x_train, y_train, x_test, y_test)``: uint8 (60000,28,28), (60000,),
    (10000,28,28), (10000,).

    ``root`` is a directory holding the four IDX files (gzipped or raw); None means
    ``$FASTMNIST_DATA``, else the per-user cache. Missing files are downloaded when ``download``.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    missing = [name for name, _, _ in FILES.values() if find_file(root, name) is None]
    if missing:
        if not download:
            raise MNISTError(f"MNIST files missing in {root}: {', '.join(missing)} (download=False)")
        download_mnist(root, mirrors=mirrors, quiet=quiet)
    out = []
    for key, (name, _, shape) in FILES.items():
        path = find_file(root, name)
        arr = load_idx(path, expect_ndim=len(shape))
        if arr.shape != shape or arr.dtype != np.uint8:
            raise MNISTError(f"{path}: expected {shape} uint8 for {key}, got {arr.shape} {arr.dtype}")
        if key.endswith("labels") and arr.max(initial=0) > 9:
            bad = int(np.argmax(arr > 9))
            raise MNISTError(f"{path}: label out of range 0-9 at index {bad}: {int(arr[bad])}")
        out.append(arr)
    return tuple(out)


def _read_text(path: Path) -> str:
    """A text file, gunzipped when it starts with the gzip magic (``.csv.gz``)."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise MNISTError(f"{path}: cannot read ({e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MNISTError(f"{path}: not a text file ({e})") from None


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _is_header(cells) -> bool:
    """A header row holds names (``label,pixel0,...``) or the column numbers (``0,1,...,783``);
    a row of numbers with a bad cell (``nan``, ``5e0``, ``abc``) is a data row, and fails as one."""
    numeric = [c for c in cells if _is_number(c)]
    if 2 * len(numeric) < len(cells):
        return True
    try:
        ints = [int(c) for c in numeric]
    except ValueError:
        return False
    return len(ints) > 256 and ints == list(range(ints[0], ints[0] + len(ints)))


_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
_NOT_INTEGER = re.compile(r"[^0-9,\s+-]|[0-9]\s+[0-9]|[+-]\s*[,+-]|[+-]\s*$|,\s*,|^\s*,|,\s*$")


def _csv_cell_error(path, row, col, names, value, what):
    name = f" ({names[col]!r})" if names else ""
    return MNISTError(f"{path}: {what} in row {row}, column {col + 1}{name}: {value!r}")


def load_mnist_csv(path, has_header: bool | None = None):
    """Read an MNIST CSV (plain or ``.csv.gz``): Kaggle's ``train.csv`` (a ``label`` column and 784
    pixel columns), Kaggle's unlabelled ``test.csv`` (784 pixel columns), or the same without a
    header row. Returns ``(x uint8 (N, 28, 28), y uint8 (N,))``, with ``y`` None for an unlabelled file.

    The header is recognised by its names (or column numbers); ``has_header`` forces the choice.
    Every cell must be an integer value (pixels 0-255, labels 0-9): a bad cell raises
    :class:`MNISTError` naming its row (the line of the file, the header being row 1) and column.
    """
    path = Path(path)
    lines = _read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise MNISTError(f"{path}: empty CSV")
    first = [c.strip().strip('"') for c in lines[0].split(",")]
    if has_header is None:
        has_header = _is_header(first)
    names = [c.lower() for c in first] if has_header else None
    if has_header:
        lines = lines[1:]
    width = len(first)
    if names is not None and "label" in names:
        label_col = names.index("label")
    elif width == 785:
        label_col = 0
    elif width == 784:
        label_col = None
    else:
        raise MNISTError(f"{path}: the first row has {width} columns; expected 785 (a label and 784 pixels) "
                         "or 784 (pixels only, as in Kaggle's test.csv)")
    if width not in (784, 785) or (label_col is not None and width != 785):
        raise MNISTError(f"{path}: the header has {width} columns; expected 785 with a 'label' column or 784 "
                         "pixel columns")
    skip = 1 + int(has_header)  # the file line (row number) of the first data row
    for i, line in enumerate(lines):
        n = line.count(",") + 1
        if n != width:
            raise MNISTError(f"{path}: row {i + skip} has {n} columns, expected {width}"
                             + (" (a label and 784 pixels)" if width == 785 else " (784 pixels)"))
    if not lines:
        raise MNISTError(f"{path}: no data rows")
    body = ",".join(lines)
    values = None
    if _NOT_INTEGER.search(body) is None:
        try:
            values = np.fromstring(body, dtype=np.float64, sep=",")
        except ValueError:
            values = None
    if values is None or values.size != len(lines) * width:
        for i, line in enumerate(lines):  # find the first cell that is not an integer
            for j, tok in enumerate(line.split(",")):
                if not _INTEGER.fullmatch(tok):
                    what = "non-numeric value" if not _is_number(tok) else "non-integer value"
                    raise _csv_cell_error(path, i + skip, j, names, tok.strip(), what)
        raise MNISTError(f"{path}: could not parse the CSV")  # pragma: no cover
    values = values.reshape(len(lines), width)
    lo = np.zeros(width)
    hi = np.full(width, 255.0)
    if label_col is not None:
        hi[label_col] = 9
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < lo) | (values > hi)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        tok = lines[i].split(",")[j].strip()
        v = values[i, j]
        if not np.isfinite(v) or v != np.round(v):
            what = "non-integer value"
        else:
            what = "label out of range 0-9" if j == label_col else "pixel outside 0-255"
        raise _csv_cell_error(path, i + skip, j, names, tok, what)
    if label_col is None:
        return values.astype(np.uint8).reshape(-1, 28, 28), None
    y = values[:, label_col].astype(np.uint8)
    x = np.delete(values, label_col, axis=1).astype(np.uint8)
    return x.reshape(-1, 28, 28), y


def _is_csv(path: Path) -> bool:
    n = path.name.lower()
    return n.endswith((".csv", ".csv.gz"))


def _find_csv(root: Path, stem: str):
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (root / name).is_file():
            return root / name
    return None


def load_dataset(data=None, download: bool = True, seed=0, holdout: float = 0.1, quiet: bool = True):
    """The training and test sets that ``--data`` names, and a description of where they come from:
    ``(x_train, y_train, x_test, y_test, info)``.

    ``data`` is a directory of the four IDX files (None: ``$FASTMNIST_DATA`` or the download cache,
    downloading what is missing), a directory holding Kaggle's ``train.csv`` (and ``test.csv``), or a
    labelled CSV file. Kaggle's ``test.csv`` has no labels, so the test set of a CSV source is its
    ``test.csv`` when that one is labelled, else a random ``holdout`` fraction of the training CSV
    (``info["test_source"]`` says which); predict an unlabelled ``test.csv`` with ``fastmnist predict``.
    """
    root = Path(data).expanduser() if data is not None else None
    train_csv = test_csv = None
    if root is not None and root.is_file():
        if not _is_csv(root):
            raise MNISTError(f"--data {root}: a file must be a CSV (.csv or .csv.gz); a directory of IDX "
                             "files or of Kaggle's train.csv/test.csv also works")
        train_csv = root
    elif root is not None and root.is_dir() and _find_csv(root, "train") is not None \
            and find_file(root, FILES["train_images"][0]) is None:
        train_csv, test_csv = _find_csv(root, "train"), _find_csv(root, "test")
    elif root is not None and not root.exists() and _is_csv(root):
        raise MNISTError(f"--data {root}: no such file")
    if train_csv is None:
        x_tr, y_tr, x_te, y_te = load_mnist(root, download=download, quiet=quiet)
        where = str(root if root is not None else default_root())
        return x_tr, y_tr, x_te, y_te, {"format": "idx", "source": where, "test_source": "t10k (MNIST test set)"}
    x_tr, y_tr = load_mnist_csv(train_csv)
    if y_tr is None:
        raise MNISTError(f"{train_csv}: the training CSV has no label column")
    info = {"format": "csv", "source": str(train_csv)}
    if test_csv is not None:
        x_te, y_te = load_mnist_csv(test_csv)
        if y_te is not None:
            info["test_source"] = str(test_csv)
            return x_tr, y_tr, x_te, y_te, info
        info["unlabelled_test"] = str(test_csv)
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    n_test = max(1, round(len(y_tr) * holdout))
    if len(y_tr) - n_test < 1:
        raise MNISTError(f"{train_csv}: {len(y_tr)} rows are too few to hold out a test set")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y_tr))
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    info["test_source"] = f"{holdout:g} of {train_csv.name} held out ({n_test} rows; seed {seed})"
    return x_tr[tr], y_tr[tr], x_tr[te], y_tr[te], info


def subsample(x, y, n: int, seed=0, stratified: bool = True):
    """``n`` examples of ``(x, y)`` drawn without replacement; with ``stratified`` every class keeps its
    share (largest-remainder rounding). Rows keep their original order. Returns ``(x_sub, y_sub)``."""
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"subsample: x has {len(x)} rows but y has {len(y)}")
    if not 0 < n <= len(y):
        raise ValueError(f"subsample: n must be in 1..{len(y)}, got {n}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if not stratified:
        idx = np.sort(rng.choice(len(y), size=n, replace=False))
        return x[idx], y[idx]
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n / len(y))
    take = np.floor(exact).astype(int)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: n - take.sum()]] += 1
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), size=k, replace=False)
                          for c, k in zip(classes, take)])
    idx.sort()
    return x[idx], y[idx]
