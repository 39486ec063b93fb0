"""MNIST loading, the verified downloader (against a real HTTP server on 127.0.0.1) and bad files."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from fastmnist.data import FILES, MNISTError, load_idx, load_mnist, load_mnist_csv, subsample

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_genuine_arrays(mnist):
    xtr, ytr, xte, yte = mnist
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert ytr.shape == (60000,) and yte.shape == (10000,)
    assert all(a.dtype == np.uint8 for a in mnist)
    assert np.bincount(ytr, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(yte, minlength=10).tolist() == TEST_COUNTS
    assert ytr[0] == 5 and int(xtr[0].sum(dtype=np.int64)) == 27525


def test_idx_matches_independent_parse(mnist_dir, mnist):
    # an independent reader: gunzip + fixed 16-byte header, as the MNIST page describes the format
    raw = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert int.from_bytes(raw[:4], "big") == 2051
    ref = np.frombuffer(raw, np.uint8, offset=16).reshape(10000, 28, 28)
    np.testing.assert_array_equal(mnist[2], ref)


def test_env_var_and_raw_files(tmp_path, mnist_dir, mnist, monkeypatch):
    # uncompressed copies are read the same; root=None means $FASTMNIST_DATA
    for name, _, _ in FILES.values():
        (tmp_path / name[:-3]).write_bytes(gzip.decompress((mnist_dir / name).read_bytes()))
    monkeypatch.setenv("FASTMNIST_DATA", str(tmp_path))
    got = load_mnist(download=False)
    for a, b in zip(got, mnist):
        np.testing.assert_array_equal(a, b)


def test_missing_without_download(tmp_path):
    with pytest.raises(MNISTError, match="missing"):
        load_mnist(tmp_path, download=False)


# ----------------------------------------------------------------------------------- downloader


class _Server:
    """A real HTTP server on 127.0.0.1 serving a directory; `cut` names files it cuts mid-way."""

    def __init__(self, directory: Path, cut=()):
        cut = set(cut)

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(directory), **kw)

            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                if name in cut:
                    data = (directory / name).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path, mnist_dir):
    d = tmp_path / "mirror"
    d.mkdir()
    for name, _, _ in FILES.values():
        shutil.copy(mnist_dir / name, d / name)
    return d


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    return f"http://127.0.0.1:{port}/"


def _leftovers(root: Path):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_good(tmp_path, served, mnist):
    root = tmp_path / "cache"
    with _Server(served) as srv:
        got = load_mnist(root, mirrors=[srv.url])
    for a, b in zip(got, mnist):
        np.testing.assert_array_equal(a, b)
    assert _leftovers(root) == sorted(name for name, _, _ in FILES.values())
    for name, md5, _ in FILES.values():
        assert hashlib.md5((root / name).read_bytes()).hexdigest() == md5


def test_download_md5_mismatch_leaves_nothing(tmp_path, served):
    p = served / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    root = tmp_path / "cache"
    with _Server(served) as srv, pytest.raises(MNISTError, match="md5 mismatch"):
        load_mnist(root, mirrors=[srv.url])
    assert "t10k-labels-idx1-ubyte.gz" not in _leftovers(root)
    assert not [n for n in _leftovers(root) if n.endswith(".part")]


def test_download_dead_mirror_then_good(tmp_path, served, mnist):
    root = tmp_path / "cache"
    with _Server(served) as srv:
        got = load_mnist(root, mirrors=[_dead_url(), srv.url])
    np.testing.assert_array_equal(got[3], mnist[3])


def test_download_cut_mid_file(tmp_path, served, mnist):
    root = tmp_path / "cache"
    with _Server(served, cut={"train-images-idx3-ubyte.gz"}) as bad:
        with pytest.raises(MNISTError, match="train-images"):
            load_mnist(root, mirrors=[bad.url])
        assert "train-images-idx3-ubyte.gz" not in _leftovers(root)
        assert not [n for n in _leftovers(root) if n.endswith(".part")]
        # a second mirror that works completes the set
        with _Server(served) as good:
            got = load_mnist(root, mirrors=[bad.url, good.url])
    np.testing.assert_array_equal(got[0], mnist[0])


def test_cli_data_downloads(tmp_path, served, monkeypatch, capsys):
    from fastmnist.cli import main

    with _Server(served) as srv:
        monkeypatch.setenv("FASTMNIST_MIRRORS", srv.url)
        assert main(["data", "--data", str(tmp_path / "c"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("md5 ok") == 4 and str(TEST_COUNTS) in out


# ----------------------------------------------------------------------------------- bad files


def _copy_set(src: Path, dst: Path) -> Path:
    dst.mkdir(exist_ok=True)
    for name, _, _ in FILES.values():
        shutil.copy(src / name, dst / name)
    return dst


def test_truncated_gzip(tmp_path, mnist_dir):
    d = _copy_set(mnist_dir, tmp_path / "d")
    p = d / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(MNISTError, match=r"t10k-images.*(corrupt|truncated)"):
        load_mnist(d, download=False)


def test_bad_magic(tmp_path, mnist_dir):
    raw = bytearray(gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[3] = 3  # claims 3 dimensions: magic 2051 where labels need 2049
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(bytes(raw))
    with pytest.raises(MNISTError, match="bad magic number 2051"):
        load_idx(p, expect_ndim=1)
    raw[0] = 7
    p.write_bytes(bytes(raw))
    with pytest.raises(MNISTError, match="bad magic"):
        load_idx(p)


def test_wrong_size(tmp_path, mnist_dir):
    raw = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(raw[:-100])
    with pytest.raises(MNISTError, match="wrong size"):
        load_idx(p)


def test_label_out_of_range(tmp_path, mnist_dir):
    d = _copy_set(mnist_dir, tmp_path / "d")
    raw = bytearray(gzip.decompress((d / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[8 + 17] = 12
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    (d / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(MNISTError, match="label out of range.*index 17: 12"):
        load_mnist(d, download=False)


# ----------------------------------------------------------------------------------- CSV


def _write_csv(path, x, y, header=True):
    rows = np.concatenate([y[:, None], x.reshape(len(x), -1)], axis=1).astype(int)
    head = "label," + ",".join(f"pixel{i}" for i in range(784)) + "\n" if header else ""
    path.write_text(head + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


@pytest.mark.parametrize("header", [True, False])
def test_csv_roundtrip(tmp_path, mnist, header):
    x, y = mnist[2][:50], mnist[3][:50]
    p = tmp_path / "m.csv"
    _write_csv(p, x, y, header)
    gx, gy = load_mnist_csv(p)
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)


def test_csv_bad_width_and_label(tmp_path, mnist):
    x, y = mnist[2][:5], mnist[3][:5].copy()
    p = tmp_path / "m.csv"
    _write_csv(p, x, y)
    lines = p.read_text().splitlines()
    lines[3] = lines[3] + ",0"
    p.write_text("\n".join(lines))
    with pytest.raises(MNISTError, match="row 4 has 786 columns"):
        load_mnist_csv(p)
    y[2] = 11
    _write_csv(p, x, y)
    with pytest.raises(MNISTError, match="label out of range.*row 4"):
        load_mnist_csv(p)
    bad = x.astype(int)
    bad[1, 5, 5] = 300
    _write_csv(p, bad, mnist[3][:5])
    with pytest.raises(MNISTError, match="pixel outside 0-255 in row 3"):
        load_mnist_csv(p)


# ----------------------------------------------------------------------------------- subsample


def test_subsample_stratified(mnist):
    xtr, ytr = mnist[0], mnist[1]
    xs, ys = subsample(xtr, ytr, 30000, seed=1)
    assert len(xs) == 30000
    expected = np.array(TRAIN_COUNTS) * 0.5
    assert np.all(np.abs(np.bincount(ys, minlength=10) - expected) <= 1)
    # rows are genuine rows with their own labels
    idx = [int(np.flatnonzero((xtr == xs[i]).all(axis=(1, 2)))[0]) for i in (0, 777, 29999)]
    assert [ytr[i] for i in idx] == [ys[0], ys[777], ys[29999]]
    xs2, ys2 = subsample(xtr, ytr, 30000, seed=1)
    np.testing.assert_array_equal(ys, ys2)
    _, ys3 = subsample(xtr, ytr, 30000, seed=2)
    assert not np.array_equal(ys, ys3)
    with pytest.raises(ValueError, match="n must be"):
        subsample(xtr, ytr, 70000)


# ----------------------------------------------------------------------------------- content md5


def _tamper(src: Path, dst: Path, at: int = 5000) -> Path:
    """A well-formed gzip IDX file whose content differs from src's in one byte."""
    raw = bytearray(gzip.decompress(src.read_bytes()))
    raw[at] ^= 0x10
    dst.write_bytes(gzip.compress(bytes(raw), 1))
    return dst


def test_wrong_content_rejected_and_cli_exits_1(tmp_path, mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = _copy_set(mnist_dir, tmp_path / "d")
    _tamper(mnist_dir / "t10k-images-idx3-ubyte.gz", d / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(MNISTError, match=r"t10k-images-idx3-ubyte.gz: md5 mismatch.*2646ac647ad5339dbf082846283269ea"):
        load_mnist(d, download=False)
    from fastmnist.cli import main

    assert main(["data", "--data", str(d), "--no-download", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "md5 mismatch" in err and "Traceback" not in err


def test_raw_and_recompressed_copies_verified_by_content(tmp_path, mnist_dir, monkeypatch, capsys):
    # the expected content md5s are those of the decompressed genuine files, computed here with hashlib
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = tmp_path / "d"
    d.mkdir()
    want = {}
    for i, (name, _, _) in enumerate(FILES.values()):
        raw = gzip.decompress((mnist_dir / name).read_bytes())
        want[name] = hashlib.md5(raw).hexdigest()
        if i % 2:
            (d / name[:-3]).write_bytes(raw)                     # raw file
        else:
            (d / name).write_bytes(gzip.compress(raw, 1))        # re-compressed: another .gz md5
    load_mnist(d, download=False)
    from fastmnist.cli import main

    assert main(["data", "--data", str(d), "--no-download", "--quiet"]) == 0
    assert capsys.readouterr().out.count("md5 ok") == 4
    # a raw file with one byte changed is caught too
    raw_labels = d / "train-labels-idx1-ubyte"
    b = bytearray(raw_labels.read_bytes())
    b[100] = (b[100] + 1) % 10
    raw_labels.write_bytes(bytes(b))
    with pytest.raises(MNISTError, match="train-labels-idx1-ubyte: md5 mismatch"):
        load_mnist(d, download=False)
    # the cache (written atomically, keyed by path + size + mtime) holds the md5 hashlib gives
    import json

    cache = json.loads((tmp_path / "cache" / "fastmnist" / "verified-md5.json").read_text())
    by_name = {k.split("|")[0].rsplit("/", 1)[-1]: v for k, v in cache.items()}
    assert by_name["t10k-images-idx3-ubyte.gz"] == want["t10k-images-idx3-ubyte.gz"]
    assert by_name["train-labels-idx1-ubyte"] == hashlib.md5(bytes(b)).hexdigest()
    assert not list((tmp_path / "cache" / "fastmnist").glob("*.tmp"))


def test_md5_cache_is_used(tmp_path, mnist_dir, monkeypatch):
    # a cached result for this exact (path, size, mtime) is trusted without hashing again: a wrong
    # cached value makes a genuine file fail, and touching the file invalidates the entry
    import json
    import os

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = _copy_set(mnist_dir, tmp_path / "d")
    load_mnist(d, download=False)
    cpath = tmp_path / "cache" / "fastmnist" / "verified-md5.json"
    cache = json.loads(cpath.read_text())
    assert len(cache) == 4
    key = next(k for k in cache if "t10k-labels" in k)
    cache[key] = "0" * 32
    cpath.write_text(json.dumps(cache))
    with pytest.raises(MNISTError, match="md5 is 0000"):
        load_mnist(d, download=False)
    p = d / "t10k-labels-idx1-ubyte.gz"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    load_mnist(d, download=False)


# ----------------------------------------------------------------------------------- bounded reads


def _idx_header(shape, code=0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(int(s).to_bytes(4, "big") for s in shape)


def test_gzip_trailing_data_and_absurd_sizes(tmp_path):
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    p = tmp_path / "imgs-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_header(x.shape) + x.tobytes()))
    np.testing.assert_array_equal(load_idx(p), x)
    p.write_bytes(gzip.compress(_idx_header(x.shape) + x.tobytes() + b"\0"))
    with pytest.raises(MNISTError, match=r"wrong size.*more bytes"):
        load_idx(p)
    p.write_bytes(gzip.compress(_idx_header(x.shape) + x.tobytes()[:-1]))
    with pytest.raises(MNISTError, match=r"wrong size.*1583 bytes"):
        load_idx(p)
    # 2^32-1 images announced by a 16-byte header: refused before any allocation
    p.write_bytes(gzip.compress(_idx_header((2**32 - 1, 28, 28))))
    with pytest.raises(MNISTError, match="more than the 1,073,741,824-byte limit"):
        load_idx(p)
    with pytest.raises(MNISTError, match=r"announces shape \(2, 28, 28\), expected \(N, 32, 32\)"):
        p.write_bytes(gzip.compress(_idx_header(x.shape) + x.tobytes()))
        load_idx(p, expect_shape=(None, 32, 32))
    with pytest.raises(MNISTError, match="is a directory"):
        load_idx(tmp_path)
    # int16 big-endian data is returned in native order
    v = np.array([[1, -2], [300, -400]], ">i2")
    p.write_bytes(_idx_header(v.shape, 0x0B) + v.tobytes())
    np.testing.assert_array_equal(load_idx(p), v.astype(np.int16))
