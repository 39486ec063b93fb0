"""fastmnist against PyTorch (and NumPy / scikit-learn) on this machine, in one run.

    python bench/compare.py [--quick] [--threads N] [--only SECTION,...] [--json PATH] [--isa all|native|LEVEL]

Every section is a module ``bench/bench_<name>.py`` with ``run(ctx)`` appending rows through
``ctx.add(...)``. Each row times the same work in fastmnist and in the baseline with the same
thread count (torch.set_num_threads and fastmnist.set_num_threads), as the median of repeated runs
after warm-up, and reports ratio = baseline time / fastmnist time (> 1: fastmnist is faster). The
kernel rows (conv, nn) interleave the two sides' samples, each after a few untimed calls, so that
a drift in the machine's speed during a row reaches both alike.
GFLOP/s are given as a percentage of the machine's SGEMM peak, measured at the start of the run
with a large torch matmul.

By default (--isa all) the whole run repeats for each x86 SIMD level this CPU has from AVX2 up,
each in its own process, fastmnist lowered with FASTMNIST_ISA and PyTorch capped the same way
(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS; read at import). The tables print side by side and
every JSON row carries `isa` (the level) and `kernel` (the fastmnist kernels that ran for it, from
fastmnist.kernel_report()). --isa native runs the best level only, in this process.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _util import Ctx, timeit  # noqa: E402


def sgemm_peak(threads: int) -> float:
    import torch

    n = 2048
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    ms = timeit(lambda: torch.mm(a, b), repeat=5, warmup=2)
    return 2 * n**3 / (ms * 1e-3) / 1e9


def sections():
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))


def print_table(rows):
    cols = [("section", 8), ("name", 28), ("shape", 30), ("batch", 5), ("fastmnist_ms", 12),
            ("torch_ms", 10), ("baseline", 8), ("ratio", 7), ("gflops", 7), ("pct_peak", 8)]
    head = " ".join(f"{c:>{w}}" if i > 2 else f"{c:<{w}}" for i, (c, w) in enumerate(cols))
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = []
        for i, (c, w) in enumerate(cols):
            v = r.get(c)
            v = "" if v is None else (f"{v:.3f}" if isinstance(v, float) and c.endswith("_ms") else str(v))
            cells.append(f"{v:>{w}}" if i > 2 else f"{v:<{w}}")
        print(" ".join(cells))


# PyTorch's own caps for each fastmnist level: ATen's kernels, oneDNN's JIT, and MKL (torch.mm /
# linear on x86 wheels), all read when the library loads
TORCH_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
              "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
                         "MKL_ENABLE_INSTRUCTIONS": "AVX512"}}


def x86_levels() -> list[str]:
    """The x86 SIMD levels from AVX2 up that this CPU (and build) runs, in increasing order."""
    from fastmnist import _core

    return [lv for lv in _core.build_info().get("isa_levels", []) if lv in TORCH_CAPS]


def _key(r):
    return (r.get("section"), r.get("name"), r.get("shape"), r.get("batch"))


def print_side_by_side(runs: dict[str, list[dict]]):
    """One table, the levels' columns side by side (rows matched by section, name, shape, batch)."""
    levels = list(runs)
    order, by = [], {}
    for lv in levels:
        for r in runs[lv]:
            k = _key(r)
            if k not in by:
                by[k] = {}
                order.append(k)
            by[k][lv] = r
    head = f"{'section':<8} {'name':<28} {'shape':<30} {'batch':>5}"
    for lv in levels:
        head += f" | {lv + ' fm_ms':>14} {'base_ms':>9} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for k in order:
        sec, name, shape, batch = k
        line = f"{sec or '':<8} {name:<28} {shape or '':<30} {'' if batch is None else batch:>5}"
        for lv in levels:
            r = by[k].get(lv)
            if r is None:
                line += f" | {'':>14} {'':>9} {'':>7}"
                continue
            tm = r.get("torch_ms")
            line += (f" | {r['fastmnist_ms']:>14.3f} {'' if tm is None else f'{tm:.3f}':>9} "
                     f"{'' if r.get('ratio') is None else r['ratio']:>7}")
        print(line)


def run_levels(args, argv) -> int:
    """--isa all: one child process per level, then the side-by-side table and the merged JSON."""
    levels = x86_levels()
    if not levels:  # not x86, or no AVX2: the best level the CPU has, here
        return main(list(argv) + ["--isa", "native"])
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for lv in levels:
            out = Path(tmp) / f"{lv}.json"
            env = dict(os.environ, FASTMNIST_ISA=lv, **TORCH_CAPS[lv])
            print(f"===== level {lv}: FASTMNIST_ISA={lv} " + " ".join(f"{k}={v}" for k, v in TORCH_CAPS[lv].items()),
                  flush=True)
            rc = subprocess.call([sys.executable, str(Path(__file__).resolve()), *argv, "--isa", lv,
                                  "--json", str(out)], env=env)
            if rc != 0:
                print(f"level {lv}: the benchmark process failed (exit {rc})", file=sys.stderr)
                return rc
            runs[lv] = json.loads(out.read_text())
    print("\n===== side by side (ratio = baseline time / fastmnist time)")
    print_side_by_side(runs)
    if args.json:
        rows = [r for lv in levels for r in runs[lv]]
        Path(args.json).write_text(json.dumps(rows, indent=1))
        print(f"wrote {len(rows)} rows to {args.json}")
    return 0


def _strip_isa_json(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--isa", "--json"):
            skip = True
            continue
        if a.startswith("--isa=") or a.startswith("--json="):
            continue
        out.append(a)
    return out


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {n}")
    return n


def _section_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in sections()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown) or repr(text)}; "
                                         f"choose from {','.join(sections())}")
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and shapes (under 2 minutes)")
    ap.add_argument("--threads", type=_positive_int, default=None,
                    help="threads for both libraries (default: all cores)")
    ap.add_argument("--only", type=_section_list, default=None, metavar="SECTIONS",
                    help=f"comma-separated sections: {','.join(sections())}")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the rows as a JSON list")
    ap.add_argument("--isa", default="all", choices=["all", "native", "generic", "neon", "avx2", "avx512"],
                    help="all (default): each x86 level from avx2 up, one process each, tables side by side; "
                         "native: the best level only, in this process; or one level (generic, avx2, avx512; "
                         "neon on ARM)")
    ap.add_argument("--data", default=None, metavar="DIR",
                    help="MNIST IDX directory for the training sections (default: $FASTMNIST_DATA or the "
                         "download cache)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    if args.isa == "all":
        return run_levels(args, _strip_isa_json(argv))
    if args.isa != "native" and os.environ.get("FASTMNIST_ISA") != args.isa:
        # one level: its own process, fastmnist and PyTorch capped before they are imported
        env = dict(os.environ, FASTMNIST_ISA=args.isa, **TORCH_CAPS.get(args.isa, {}))
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *argv], env=env)
    if args.data:
        os.environ["FASTMNIST_DATA"] = str(Path(args.data).resolve())
    wanted = args.only or sections()
    if "train" in wanted:  # fail now, not after the kernel sections' minutes
        from fastmnist.data import MNISTError, load_mnist

        try:
            load_mnist()
        except MNISTError as e:
            print(f"the train section needs MNIST (--data DIR with the four IDX files, or leave it out with "
                  f"--only {','.join(s for s in sections() if s != 'train')}):\n{e}", file=sys.stderr)
            return 1

    threads = args.threads or len(os.sched_getaffinity(0))
    import torch

    import fastmnist

    torch.set_num_threads(threads)
    fastmnist.set_num_threads(threads)
    isa = fastmnist.build_info()["dispatch"]
    if args.isa not in ("native", isa):
        print(f"--isa {args.isa}: this CPU or build cannot run it (runs {isa})", file=sys.stderr)
        return 2
    peak = sgemm_peak(threads)
    print(f"isa={isa}  threads={threads}  torch={torch.__version__} ({torch.backends.cpu.get_cpu_capability()})  "
          f"fastmnist={fastmnist.__version__}  build={fastmnist.build_info()['build_flags']}  "
          f"SGEMM peak (torch 2048^3)={peak:.1f} GFLOP/s")
    ctx = Ctx(threads=threads, quick=args.quick, peak_gflops=peak, isa=isa)
    fastmnist._core._reset_kernel_report()
    for name in wanted:
        mod = importlib.import_module(f"bench_{name}")
        start = len(ctx.rows)
        mod.run(ctx)
        for r in ctx.rows[start:]:
            r["section"] = r["section"] or name
    print_table(ctx.rows)
    if args.json:
        Path(args.json).write_text(json.dumps(ctx.rows, indent=1))
        print(f"wrote {len(ctx.rows)} rows to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
