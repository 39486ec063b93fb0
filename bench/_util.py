"""Timing helpers shared by the bench sections: median of repeated runs after warm-up; a row's two
sides (fastmnist and its baseline) with their samples interleaved."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field


def _sample(fn, min_time: float) -> float:
    """One sample: milliseconds per call of ``fn()``, looping until ``min_time`` seconds have passed."""
    n = 0
    t0 = time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_time:
            return el / n * 1e3


def timeit(fn, *, repeat: int = 7, warmup: int = 2, min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` runs after ``warmup`` calls.
    With ``min_time`` > 0 each sample loops ``fn`` until that many seconds have passed."""
    for _ in range(warmup):
        fn()
    return statistics.median(_sample(fn, min_time) for _ in range(repeat))


def timeit_pair(fa, fb, *, repeat: int = 7, warmup: int = 2, min_time: float = 0.0,
                settle: int = 5) -> tuple[float, float]:
    """Median wall times (ms) of ``fa()`` and ``fb()`` as ``timeit`` takes them, with their samples
    interleaved (a b, b a, a b, ...): a change in the machine's speed during the measurement (other
    tenants of a shared host, clock changes) then reaches both sides alike instead of whichever side
    was timed second. Before each sample its function runs untimed ``settle`` times and for at least
    half of ``min_time``: the first calls after the other library's run slower, while each side's
    data comes back into the caches (batch 256, median of 12 switches: fastmnist's 0.37 ms uint8
    pool backward took 0.79, 0.67, 0.42 ms; PyTorch's 0.93 ms one 2.2, 2.0, 1.3, 1.2 ms), and that
    switch would otherwise be timed in every sample of both sides. The ratio of the two medians is
    what the bench rows report."""
    for _ in range(warmup):
        fa()
        fb()

    def settled(fn):
        t0 = time.perf_counter()
        for _ in range(settle):
            fn()
        while time.perf_counter() - t0 < min_time / 2:
            fn()
        return _sample(fn, min_time)

    sa, sb = [], []
    for r in range(repeat):
        if r % 2 == 0:
            sa.append(settled(fa))
            sb.append(settled(fb))
        else:
            sb.append(settled(fb))
            sa.append(settled(fa))
    return statistics.median(sa), statistics.median(sb)


@dataclass
class Ctx:
    """What every bench section gets: thread count, quick mode, the machine's SGEMM peak, and the
    list the section appends its rows to."""

    threads: int
    quick: bool
    peak_gflops: float
    isa: str = ""
    rows: list = field(default_factory=list)

    @staticmethod
    def kernels_since_last_row() -> str:
        """The fastmnist kernels that ran since the previous row ("op=kernel; ..."), then forgets them."""
        from fastmnist import _core

        ran = "; ".join(f"{op}={k}" for op, k in _core.kernel_report().items() if k != "-")
        _core._reset_kernel_report()
        return ran

    def add(self, name: str, shape: str, batch: int | None, fastmnist_ms: float, torch_ms: float | None,
            flops: float | None = None, baseline: str = "torch", **extra):
        row = {
            "section": extra.pop("section", None),
            "name": name,
            "shape": shape,
            "batch": batch,
            "threads": self.threads,
            "fastmnist_ms": round(fastmnist_ms, 4),
            "torch_ms": None if torch_ms is None else round(torch_ms, 4),
            "baseline": baseline,
            "ratio": None if not torch_ms else round(torch_ms / fastmnist_ms, 3),
            "isa": self.isa,
            "kernel": extra.pop("kernel", None) or self.kernels_since_last_row(),
        }
        if flops:
            gf = flops / (fastmnist_ms * 1e-3) / 1e9
            row["gflops"] = round(gf, 1)
            row["pct_peak"] = round(100 * gf / self.peak_gflops, 1) if self.peak_gflops else None
        row.update(extra)
        self.rows.append(row)
        return row
