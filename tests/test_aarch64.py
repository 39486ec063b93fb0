"""ARM (aarch64) kernels: the C++ check program (tests/cpp/check_kernels.cpp) is cross-built with
g++-aarch64-linux-gnu from the kernel sources and run under qemu-aarch64-static. It checks every
kernel family (SGEMM, conv, max-pool, activations, losses, optimizers, linear, logistic
regression, warps) against the reference loops on the MNIST layer shapes and odd shapes, at each
level an aarch64 CPU has (generic and NEON). Run just this with `python -m pytest tests -k aarch64`.

The toolchain: `apt-get install -y g++-aarch64-linux-gnu qemu-user-static`. Under CI=true the test
installs it when missing (and fails if it cannot); elsewhere it skips, naming what is missing."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64-static"
PACKAGES = ["g++-aarch64-linux-gnu", "qemu-user-static"]


def _toolchain() -> tuple[str, str]:
    missing = [t for t in (CXX, QEMU) if shutil.which(t) is None]
    if missing and os.environ.get("CI", "").lower() == "true":
        apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
        subprocess.run(apt + ["update", "-q"], capture_output=True, timeout=600)
        r = subprocess.run(apt + ["install", "-y", "-q", *PACKAGES], capture_output=True, text=True, timeout=900)
        missing = [t for t in (CXX, QEMU) if shutil.which(t) is None]
        if missing:
            pytest.fail(f"CI: could not install {' '.join(PACKAGES)}: {r.stderr[-2000:]}")
    if missing:
        pytest.skip(f"{', '.join(missing)} not found (apt-get install -y {' '.join(PACKAGES)})")
    return shutil.which(CXX), shutil.which(QEMU)


def _kernel_sources() -> list[str]:
    # every kernel source; the pybind11 bindings and the module are not part of the C++ library
    return sorted(str(p) for p in (ROOT / "cpp").rglob("*.cpp")
                  if not p.name.startswith("bind_") and p.name != "module.cpp")


def test_aarch64_kernels_under_qemu(tmp_path):
    cxx, qemu = _toolchain()
    exe = tmp_path / "check_kernels_aarch64"
    cmd = [cxx, "-std=c++17", "-O2", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-static",
           f"-I{ROOT / 'cpp'}", *_kernel_sources(), str(ROOT / "tests" / "cpp" / "check_kernels.cpp"), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([qemu, str(exe)], capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, OMP_NUM_THREADS="2"))
    out = run.stdout
    failed = [line for line in out.splitlines() if " FAIL" in line]
    assert run.returncode == 0 and "ALL OK" in out, "\n".join(failed) or (out[-3000:] + run.stderr[-2000:])
    # the NEON kernels were compiled in and ran (not only the scalar ones)
    assert "== level neon" in out and "== level generic" in out
    assert "neon   sgemm" in out and "neon   max_pool2d" in out
