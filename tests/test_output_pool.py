"""Kernel outputs of 2 MiB or more come from fastmnist's pool of 2 MiB-aligned blocks (cpp/buffers.*):
right values, reuse after release, the cap on kept memory, empty_cache, huge page advice and use
from several Python threads."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import fastmnist
from fastmnist import _core

MIN = _core._output_pool_stats()["min_bytes"]
CAP = _core._output_pool_stats()["cap_bytes"]


def _floats(nbytes):
    return np.random.default_rng(0).standard_normal(nbytes // 4, dtype=np.float32)


def test_large_output_is_pooled_aligned_and_right():
    x = _floats(3 * MIN)
    y = _core.relu(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert y.ctypes.data % MIN == 0
    assert not y.flags.owndata and y.flags.writeable and y.flags.c_contiguous
    # a small output stays numpy's own
    s = _core.relu(x[:1000])
    assert s.flags.owndata
    np.testing.assert_array_equal(s, np.maximum(x[:1000], 0))


def test_released_block_is_reused_for_the_next_output_of_its_size():
    fastmnist.empty_cache()
    x = _floats(3 * MIN)
    y = _core.relu(x)
    addr = y.ctypes.data
    live = _core._output_pool_stats()["live_blocks"]
    del y
    st = _core._output_pool_stats()
    assert st["live_blocks"] == live - 1 and st["cached_blocks"] == 1 and st["cached_bytes"] >= 3 * MIN
    y2 = _core.relu(-x)  # same size: the kept block, whose old values are all overwritten
    assert y2.ctypes.data == addr
    np.testing.assert_array_equal(y2, np.maximum(-x, 0))
    assert _core._output_pool_stats()["cached_blocks"] == 0
    # a much smaller output does not take a block more than half again the size it would get
    del y2
    z = _core.relu(x[: x.size // 3])  # 2 MiB: a 2 MiB block of its own, not the kept 6 MiB one
    assert z.ctypes.data != addr
    np.testing.assert_array_equal(z, np.maximum(x[: x.size // 3], 0))


def test_output_just_over_a_block_step_reuses_its_block():
    # conv `cnn5` 1->16 at batch 64: 2.36 MB outputs live in 4 MiB blocks; each call must get the
    # released block back, not map a fresh one (a fresh mapping every call: 50x slower, and the
    # kept blocks piling up to the cap)
    fastmnist.empty_cache()
    x = _floats(MIN + MIN // 5)
    addrs = set()
    for _ in range(5):
        y = _core.relu(x)
        addrs.add(y.ctypes.data)
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        del y
    assert len(addrs) == 1
    assert _core._output_pool_stats()["cached_blocks"] == 1


def test_kept_memory_is_capped_and_empty_cache_frees_it():
    fastmnist.empty_cache()
    x = _floats(18 * MIN)
    released = 0
    for k in range(1, 18):  # growing sizes, 2 .. 34 MiB: no kept block ever fits the next one
        n = k * MIN // 4
        y = _core.relu(x[:n])
        assert y[n - 1] == max(x[n - 1], 0)
        released += y.nbytes
        del y
    assert released > CAP  # 306 MiB released in all
    st = _core._output_pool_stats()
    assert CAP - 34 * 2**20 < st["cached_bytes"] <= CAP  # the oldest freed first, the newest kept
    fastmnist.empty_cache()
    st = _core._output_pool_stats()
    assert st["cached_bytes"] == 0 and st["cached_blocks"] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/sys/kernel/mm/transparent_hugepage").exists(),
                    reason="transparent huge pages are a Linux kernel feature, not built into this kernel")
def test_large_output_memory_is_advised_for_huge_pages():
    y = _core.relu(_floats(4 * MIN))
    addr = y.ctypes.data
    flags = None
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.startswith("VmFlags:"):
            flags = line.split()[1:]
            break
    assert flags is not None, "the output's mapping was not found in /proc/self/smaps"
    assert "hg" in flags  # madvise(MADV_HUGEPAGE) on the block
    assert "2 MiB-aligned" in fastmnist.build_info()["output_pool"]


def test_outputs_made_and_released_on_several_threads():
    fastmnist.empty_cache()
    base = _core._output_pool_stats()["live_blocks"]
    xs = [_floats(3 * MIN) * (i + 1) for i in range(4)]

    def work(i):
        for _ in range(20):
            y = _core.relu(xs[i])
            if not np.array_equal(y, np.maximum(xs[i], 0)):
                return False
            del y
        return True

    with ThreadPoolExecutor(4) as ex:
        assert all(ex.map(work, range(4)))
    assert _core._output_pool_stats()["live_blocks"] == base


def test_pool_off_with_environment_variable():
    import os
    import subprocess

    code = ("import numpy as np, fastmnist; from fastmnist import _core\n"
            "y = _core.relu(np.ones(2**20, np.float32))\n"
            "print(y.flags.owndata, fastmnist.build_info()['output_pool'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, FASTMNIST_OUTPUT_POOL="0")).stdout
    assert out.startswith("True off (FASTMNIST_OUTPUT_POOL=0)"), out


def test_pooled_arrays_work_with_pickle_copy_and_torch():
    import pickle

    torch = pytest.importorskip("torch")
    x = _floats(3 * MIN)
    y = _core.relu(x)
    back = pickle.loads(pickle.dumps(y))
    np.testing.assert_array_equal(back, y)
    assert back.ctypes.data != y.ctypes.data  # a copy of the values, not the block
    c = y.copy()
    assert c.flags.owndata
    np.testing.assert_array_equal(c, y)
    t = torch.from_numpy(y)  # shares the block: keeps it alive after y is gone
    addr = y.ctypes.data
    del y
    assert t.data_ptr() == addr
    np.testing.assert_array_equal(t.numpy(), np.maximum(x, 0))
    with pytest.raises(ValueError):
        _core.relu(x).resize(10)  # in place: refused, the array does not own its memory
