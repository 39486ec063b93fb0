"""fastmnist against PyTorch (and NumPy / scikit-learn) on this machine, in one run.

    python bench/compare.py [--quick] [--threads N] [--only SECTION,...] [--json PATH]

Every section is a module ``bench/bench_<name>.py`` with ``run(ctx)`` appending rows through
``ctx.add(...)``. Each row times the same work in fastmnist and in the baseline with the same
thread count (torch.set_num_threads and fastmnist.set_num_threads), as the median of repeated runs
after warm-up, and reports ratio = baseline time / fastmnist time (> 1: fastmnist is faster).
GFLOP/s are given as a percentage of the machine's SGEMM peak, measured at the start of the run
with a large torch matmul.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and shapes (under 2 minutes)")
    ap.add_argument("--threads", type=int, default=None, help="threads for both libraries (default: all cores)")
    ap.add_argument("--only", default=None, help=f"comma-separated sections: {','.join(sections())}")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the rows as a JSON list")
    ap.add_argument("--data", default=None, metavar="DIR",
                    help="MNIST IDX directory for the training sections (default: $FASTMNIST_DATA or the "
                         "download cache)")
    args = ap.parse_args(argv)
    if args.data:
        os.environ["FASTMNIST_DATA"] = str(Path(args.data).resolve())

    threads = args.threads or len(os.sched_getaffinity(0))
    import torch

    import fastmnist

    torch.set_num_threads(threads)
    fastmnist.set_num_threads(threads)
    peak = sgemm_peak(threads)
    print(f"threads={threads}  torch={torch.__version__}  fastmnist={fastmnist.__version__}  "
          f"build={fastmnist.build_info()['build_flags']}  SGEMM peak (torch 2048^3)={peak:.1f} GFLOP/s")
    ctx = Ctx(threads=threads, quick=args.quick, peak_gflops=peak)
    wanted = args.only.split(",") if args.only else sections()
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


if __name__ == "__main__":
    main()
