"""bench/compare.py's command line: bad arguments and missing MNIST stop it at once with a clear
message, before any timing (a full run takes minutes)."""
from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import fastmnist_path

COMPARE = Path(__file__).resolve().parents[1] / "bench" / "compare.py"


def _compare(*args, env=None, timeout=120):
    env = dict(os.environ if env is None else env, PYTHONPATH=fastmnist_path())
    return subprocess.run([sys.executable, str(COMPARE), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "argument --threads: expected a positive whole number, got 0"),
    (["--threads", "-3"], "argument --threads: expected a positive whole number, got -3"),
    (["--threads", "two"], "argument --threads: expected a positive whole number, got 'two'"),
    (["--only", "nn,foo"], "argument --only: unknown section(s) foo; choose from conv,extract,logreg,nn,train,"
                           "train_kernels"),
    (["--isa", "avx"], "argument --isa: invalid choice: 'avx'"),
])
def test_bad_arguments_are_refused_before_any_timing(args, message):
    r = _compare("--quick", *args, timeout=60)
    assert r.returncode == 2 and message in r.stderr and r.stdout == ""


def test_train_section_without_mnist_stops_before_the_kernel_sections(tmp_path):
    # a real HTTP server on 127.0.0.1 that has no MNIST files: every download answers 404
    (tmp_path / "www").mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if k != "FASTMNIST_DATA"}
        env.update(XDG_CACHE_HOME=str(tmp_path / "cache"),
                   FASTMNIST_MIRRORS=f"http://127.0.0.1:{server.server_address[1]}/")
        r = _compare("--quick", "--isa", "native", "--only", "nn,train", "--data", str(tmp_path / "empty"), env=env)
    finally:
        server.shutdown()
    assert r.returncode == 1
    assert ("the train section needs MNIST (--data DIR with the four IDX files, or leave it out with "
            "--only conv,extract,logreg,nn,train_kernels)") in r.stderr
    assert "404" in r.stderr and "Traceback" not in r.stderr
    assert "SGEMM peak" not in r.stdout  # nothing was timed
