#!/usr/bin/env bash
# ASan + UBSan run of the kernel tests.
#
#   tools/sanitize.sh [pytest args...]      (default: the kernel test files)
#
# Builds fastmnist._core with -fsanitize=address,undefined (-fno-sanitize-recover=undefined: any
# undefined behaviour aborts the test run) into build/sanitize, next to symlinks to the Python
# sources (the regular module in python/fastmnist is left alone), then runs pytest against it with
# libasan (and libstdc++) preloaded (pybind11 modules are loaded by an uninstrumented python, so
# the ASan runtime must come first). Leak detection is off (CPython's own allocations would be reported);
# allocator_may_return_null lets numpy see a failed huge allocation as MemoryError, as in a
# normal build. Environment: PYTHON (default python3), CXX, BUILD_DIR, FASTMNIST_FUZZ_CALLS (1000 here).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build/sanitize}"
py="${PYTHON:-python3}"
pkg="$build/pkg/fastmnist"

mkdir -p "$pkg"
for f in "$root"/python/fastmnist/*; do  # the Python sources, not the regular build's module
  case "$f" in *.so|*.pyd|*/__pycache__) continue ;; esac
  ln -sfn "$f" "$pkg/$(basename "$f")"
done

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTMNIST_SANITIZE=ON \
  -DFASTMNIST_MODULE_DIR="$pkg" -DPython_EXECUTABLE="$(command -v "$py")" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build"

libasan="$(${CXX:-c++} -print-file-name=libasan.so)"
[ -f "$libasan" ] || { echo "sanitize.sh: libasan.so not found (got '$libasan')" >&2; exit 1; }

if [ $# -eq 0 ]; then
  set -- tests/test_robust_kernels.py tests/test_fuzz.py tests/test_conv2d.py tests/test_pool.py \
    tests/test_activation.py tests/test_linear.py tests/test_loss.py tests/test_optim.py \
    tests/test_augment.py tests/test_roc.py tests/test_gemm.py tests/test_logreg.py -q
fi
# triton's bundled LLVM aborts when loaded under the ASan runtime (torchvision -> torch._dynamo
# imports it when present): a stub package that fails to import makes torch treat it as absent.
mkdir -p "$build/shim/triton"
echo 'raise ImportError("triton is disabled under the sanitizers (tools/sanitize.sh)")' > "$build/shim/triton/__init__.py"

cd "$root"
export PYTHONPATH="$build/pkg:$build/shim${PYTHONPATH:+:$PYTHONPATH}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export FASTMNIST_FUZZ_CALLS="${FASTMNIST_FUZZ_CALLS:-1000}"
export MPLBACKEND=Agg
export FASTMNIST_SANITIZED=1  # tests skip calls into torch that only probe torch's own huge allocations
# libstdc++ preloaded too: python does not link it, and ASan's __cxa_throw interceptor must find
# it at start-up ("CHECK failed: real___cxa_throw != 0" on the first C++ exception otherwise)
libstdcxx="$(${CXX:-c++} -print-file-name=libstdc++.so)"
# --capture=sys: pytest captures Python's output only, so a sanitizer report (written to file
# descriptor 2 just before the run stops) reaches the terminal
LD_PRELOAD="$libasan $libstdcxx" exec "$py" -m pytest --capture=sys "$@"
