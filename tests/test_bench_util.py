"""bench/_util.py: the timing helpers behind every row of bench/compare.py."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_util", Path(__file__).resolve().parents[1] / "bench" / "_util.py")
bench_util = importlib.util.module_from_spec(_spec)
sys.modules["bench_util"] = bench_util  # dataclasses look their module up there
_spec.loader.exec_module(bench_util)


def test_timeit_pair_interleaves_the_two_sides():
    calls = []
    ms_a, ms_b = bench_util.timeit_pair(lambda: calls.append("a"), lambda: calls.append("b"),
                                        repeat=5, warmup=2, min_time=0.0, settle=3)
    # warm-up a b twice, then per sample 3 untimed calls and one timed (min_time 0): a b, b a, ...
    a, b = "a" * 4, "b" * 4
    assert "".join(calls) == "abab" + a + b + b + a + a + b + b + a + a + b
    assert ms_a > 0 and ms_b > 0


def test_timeit_pair_loops_each_sample_until_min_time():
    calls = {"a": 0, "b": 0}

    def fa():
        calls["a"] += 1

    def fb():
        calls["b"] += 1

    bench_util.timeit_pair(fa, fb, repeat=3, warmup=0, min_time=0.002)
    # 3 samples per side, each looping an empty function until 2 ms have passed: many calls each
    assert calls["a"] > 3 and calls["b"] > 3
