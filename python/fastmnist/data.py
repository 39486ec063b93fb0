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
import json
import math
import os
import re
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ._io import atomic_write_json
from ._progress import progress

__all__ = ["MNISTError", "FILES", "CONTENT_MD5", "MAX_IDX_BYTES", "MIRRORS", "cache_dir", "default_root",
           "download_mnist", "load_idx", "load_mnist", "load_mnist_csv", "subsample", "verify_md5"]


class MNISTError(ValueError):
    """A data file is missing, corrupt, or not what it should be. The message names the file."""


# key -> (file name, md5 of the .gz, expected shape)
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", (60000, 28, 28)),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", (60000,)),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", (10000, 28, 28)),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", (10000,)),
}

# key -> md5 of the decompressed IDX content (= the md5 of the uncompressed file), computed once from the
# genuine .gz files above. Loading checks this one, so raw and re-compressed copies are verified too.
CONTENT_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}

# the most IDX data load_idx reads by default (EMNIST's largest file is ~550 MB): a header announcing
# more is refused before anything is decompressed
MAX_IDX_BYTES = 1 << 30

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def cache_dir() -> Path:
    """The per-user cache directory: ``$XDG_CACHE_HOME/fastmnist``, default ``~/.cache/fastmnist``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "fastmnist"


def default_root() -> Path:
    """``$FASTMNIST_DATA`` if set, else the per-user cache directory."""
    env = os.environ.get("FASTMNIST_DATA")
    if env:
        return Path(env).expanduser()
    return cache_dir() / "mnist"


def _open_idx(path: Path):
    """(stream of the IDX bytes of ``path``, decompressing gzip on the fly; the file; whether it is gzip)."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise MNISTError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        gz = f.read(2) == b"\x1f\x8b"
        f.seek(0)
    except OSError as e:
        f.close()
        raise MNISTError(f"{path}: cannot read ({e.strerror or e})") from e
    return (gzip.GzipFile(fileobj=f, mode="rb") if gz else f), f, gz


def load_idx(path, expect_ndim: int | None = None, expect_shape=None, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a numpy array, checking its header against its size.

    The header is read first; ``expect_shape`` (a tuple, None for any size along a dimension) and
    ``max_bytes`` are checked against it before any data is read, and a gzip stream is decompressed
    only up to the announced size (plus one byte to detect trailing data), so a gzip bomb costs no
    more memory than the array the header announces."""
    path = Path(path)
    if path.is_dir():
        raise MNISTError(f"{path}: is a directory, not an IDX file")
    stream, raw_file, gz = _open_idx(path)
    with raw_file, stream:
        try:
            return _parse_idx(path, stream, gz, expect_ndim, expect_shape, max_bytes)
        except MNISTError:
            raise
        except (EOFError, OSError, zlib.error) as e:
            raise MNISTError(f"{path}: corrupt or truncated {'gzip' if gz else 'IDX'} data ({e})") from e


def _parse_idx(path, stream, gz, expect_ndim, expect_shape, max_bytes):
    head = stream.read(4)
    if len(head) < 4:
        raise MNISTError(f"{path}: file too short for an IDX header ({len(head)} bytes)")
    zero, dtype_code, ndim = int.from_bytes(head[:2], "big"), head[2], head[3]
    magic = int.from_bytes(head, "big")
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise MNISTError(f"{path}: bad magic number {magic} (0x{magic:08x}); not an IDX file")
    if expect_ndim is not None and ndim != expect_ndim:
        want = {1: 2049, 3: 2051}.get(expect_ndim, "?")
        raise MNISTError(f"{path}: bad magic number {magic}, expected {want} ({expect_ndim}-d IDX)")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise MNISTError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(dims[4 * i: 4 + 4 * i], "big") for i in range(ndim))
    if expect_shape is not None and (len(shape) != len(expect_shape) or any(
            w is not None and w != s for s, w in zip(shape, expect_shape))):
        want = "(" + ", ".join("N" if w is None else str(w) for w in expect_shape) + ")"
        raise MNISTError(f"{path}: header announces shape {shape}, expected {want}")
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    header = 4 + 4 * ndim
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise MNISTError(f"{path}: header announces shape {shape} ({nbytes:,d} bytes), more than the "
                         f"{max_bytes:,d}-byte limit; not a plausible IDX file (raise max_bytes if it is)")
    if not gz:
        size = os.fstat(stream.fileno()).st_size
        if size != header + nbytes:
            raise MNISTError(f"{path}: wrong size: header says shape {shape} ({header + nbytes} bytes) but the "
                             f"file has {size} bytes")
    buf = np.empty(nbytes, np.uint8)
    view, got = memoryview(buf), 0
    while got < nbytes:
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    if got < nbytes or stream.read(1):
        has = f"{header + got} bytes" if got < nbytes else "more bytes"
        raise MNISTError(f"{path}: wrong size: header says shape {shape} ({header + nbytes} bytes) but the "
                         f"data has {has}")
    arr = buf.view(dtype).reshape(shape)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


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


_MD5_CACHE_ENTRIES = 64  # the most recently hashed files the cache remembers


def _md5_cache_path() -> Path:
    return cache_dir() / "verified-md5.json"


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _content_md5(key: str, arr: np.ndarray, cache: dict) -> str:
    """md5 of the uint8 IDX content (header + data) behind ``arr``, read from ``cache`` when the file
    (``key``: path, size and mtime, taken before reading it) was hashed before; else added to it."""
    if key not in cache:
        head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        h = hashlib.md5(head)
        h.update(np.ascontiguousarray(arr, np.uint8).data)
        cache[key] = h.hexdigest()
    return cache[key]


def _load_md5_cache() -> dict:
    try:
        d = json.loads(_md5_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _save_md5_cache(cache: dict) -> None:
    """Write the cache atomically; a cache that cannot be written (read-only home) is skipped."""
    path = _md5_cache_path()
    cache = dict(list(cache.items())[-_MD5_CACHE_ENTRIES:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cache)
    except OSError:
        pass


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


def load_mnist(root=None, download: bool = True, mirrors=None, quiet: bool = True, verify: bool = True):
    """The MNIST arrays ``(x_train, y_train, x_test, y_test)``: uint8 (60000,28,28), (60000,),
    (10000,28,28), (10000,).

    ``root`` is a directory holding the four IDX files (gzipped or raw); None means
    ``$FASTMNIST_DATA``, else the per-user cache. Missing files are downloaded when ``download``.
    With ``verify`` the md5 of each file's (decompressed) content must be that of the genuine MNIST
    file; the result is cached per file path, size and modification time in the user cache
    directory, so a file is hashed once.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    if root.exists() and not root.is_dir():
        raise MNISTError(f"{root} is not a directory (give the directory holding the MNIST files)")
    missing = [name for name, _, _ in FILES.values() if find_file(root, name) is None]
    if missing:
        if not download:
            raise MNISTError(f"MNIST files missing in {root}: {', '.join(missing)} (download=False)")
        download_mnist(root, mirrors=mirrors, quiet=quiet)
    out = []
    cache = _load_md5_cache() if verify else {}
    known = dict(cache)
    for key, (name, _, shape) in FILES.items():
        path = find_file(root, name)
        key_before = _file_key(path) if verify else None
        arr = load_idx(path, expect_ndim=len(shape), expect_shape=shape)
        if arr.dtype != np.uint8:
            raise MNISTError(f"{path}: expected {shape} uint8 for {key}, got {arr.shape} {arr.dtype}")
        if key.endswith("labels") and arr.max(initial=0) > 9:
            bad = int(np.argmax(arr > 9))
            raise MNISTError(f"{path}: label out of range 0-9 at index {bad}: {int(arr[bad])}")
        if verify:
            got = _content_md5(key_before, arr, cache)
            if got != CONTENT_MD5[key]:
                if cache != known:
                    _save_md5_cache(cache)
                raise MNISTError(f"{path}: md5 mismatch: the content's md5 is {got}, the genuine MNIST "
                                 f"file's is {CONTENT_MD5[key]}; the file is damaged or not MNIST (delete it to "
                                 "download it again, or pass verify=False for a modified copy)")
        out.append(arr)
    if cache != known:
        _save_md5_cache(cache)
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
