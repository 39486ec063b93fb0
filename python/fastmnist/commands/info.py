"""``fastmnist info``: version, build and runtime details."""
from __future__ import annotations

import importlib.util
import platform


def add_parser(sub):
    p = sub.add_parser("info", help="print version, build flags, instruction sets, threads, torch/CUDA",
                       description="Print the fastmnist version, the compiler and flags the extension "
                                   "was built with, the instruction sets it uses, the OpenMP thread "
                                   "count, and whether PyTorch and CUDA are available.")
    p.add_argument("--threads", type=int, help="set the OpenMP thread count first")
    p.set_defaults(func=run)


def kernel_lines() -> list[str]:
    """The kernel each op runs at the MNIST layer shapes: one small call of each, then the report."""
    import numpy as np

    import fastmnist
    from fastmnist import _core, augment

    _core._reset_kernel_report()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28), dtype=np.float32)
    w = rng.standard_normal((16, 1, 3, 3), dtype=np.float32)
    y = fastmnist.conv2d_relu(x, w, np.zeros(16, np.float32), padding=1)
    fastmnist.conv2d_backward(y, x, w, padding=1, input_grad=False)
    h = rng.standard_normal((64, 16, 14, 14), dtype=np.float32)
    fastmnist.conv2d_backward(rng.standard_normal((64, 32, 14, 14), dtype=np.float32), h,
                              rng.standard_normal((32, 16, 3, 3), dtype=np.float32), padding=1)
    p, code = _core.max_pool2d_compact(y, 2)
    _core.max_pool2d_compact_backward(p, code, y.shape, 2)
    fastmnist.relu(p)
    fastmnist.linear(p.reshape(64, -1), rng.standard_normal((10, 16 * 14 * 14), dtype=np.float32))
    fastmnist.softmax_cross_entropy(rng.standard_normal((64, 10), dtype=np.float32), np.arange(64) % 10)
    q = np.zeros(1000, np.float32)
    _core.adam_step(q, q.copy(), q.copy(), q.copy(), 1, 1e-3)
    _core.logreg_forward(x.reshape(64, -1), rng.standard_normal((10, 784), dtype=np.float32),
                         np.zeros(10, np.float32), None, None, False)
    augment.rotate(x[:4], 10.0)
    ran = {op: k for op, k in _core.kernel_report().items() if k != "-"}
    _core._reset_kernel_report()
    return ["kernels (MNIST shapes): " + "; ".join(f"{op}: {k}" for op, k in ran.items())]


def info_lines() -> list[str]:
    import fastmnist

    b = fastmnist.build_info()
    cpu = ", ".join(k for k, v in sorted(b.get("cpu_features", {}).items()) if v) or "none detected"
    lines = [
        f"fastmnist {b['version']}",
        f"python: {platform.python_version()} ({platform.machine()})",
        f"compiler: {b['compiler']}",
        f"build flags: {b['build_flags']}",
        f"native build (FASTMNIST_NATIVE): {'yes' if b['native_build'] else 'no (portable; SIMD kernels chosen at run time)'}",
        f"compiled for: {b['compiled_isa']}; this CPU has: {cpu}",
        f"kernel paths: {b.get('dispatch', 'n/a')} (levels this CPU runs: {', '.join(b.get('isa_levels', []))}; "
        "FASTMNIST_ISA lowers it)",
        *([f"warning: {b['isa_env_note']}"] if b.get("isa_env_note") else []),
        *kernel_lines(),
        f"OpenMP: {'yes' if b['openmp'] else 'no (serial build)'}, threads: {fastmnist.get_num_threads()}",
    ]
    if importlib.util.find_spec("torch") is None:
        lines.append("torch: not installed (pip install 'fastmnist[torch]')")
    else:
        import torch

        cuda = torch.cuda.is_available()
        dev = f", device: {torch.cuda.get_device_name(0)}" if cuda else ""
        lines.append(f"torch: {torch.__version__}, CUDA available: {'yes' if cuda else 'no'}{dev}")
    return lines


def run(args) -> int:
    print("\n".join(info_lines()))
    return 0
