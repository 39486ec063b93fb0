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
        f"kernel paths: {b.get('dispatch', 'n/a')}",
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
