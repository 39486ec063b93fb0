"""The figure worker (a second process that draws a run's figures, see fastmnist._figworker): it
draws exactly the figures write_run_figures draws in this process, pixel for pixel; errors come back
as the same exceptions; a failed worker is replaced by drawing here; it dies with its parent."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from fastmnist import plots
from fastmnist._figworker import FigureWorker
from test_plots import build_run_dir, read_png

EARLY = ["training_curves.png", "confusion_matrix.png", "samples.png"]


@pytest.fixture(scope="module")
def run_dir(mnist, tmp_path_factory):
    d = build_run_dir(tmp_path_factory.mktemp("wk") / "run", mnist)[0]
    s = json.loads((d / "summary.json").read_text())
    s["settings"]["recipe"] = {"augment": "rotate:10,noise:0.2"}  # the augmentation preview too
    (d / "summary.json").write_text(json.dumps(s))
    return d


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_worker_draws_the_figures_of_write_run_figures(run_dir, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(run_dir, here)
    shutil.copytree(run_dir, there)
    want = plots.write_run_figures(here)
    # as train does: figures submitted as their files appear; one (the confusion matrix) is submitted
    # before its predictions.npz exists and must still be drawn in the end
    (there / "predictions.npz").rename(tmp_path / "predictions.npz")
    with FigureWorker() as w:
        assert w.proc.pid != os.getpid()
        w.submit(there, only=EARLY)
        drawn = w._collect()  # (waits for that request)
        assert sorted(p.name for p in drawn) == ["training_curves.png"]
        (tmp_path / "predictions.npz").rename(there / "predictions.npz")
        w.submit(there, only=["samples.png", "training_curves.png"])  # drawn again: listed once
        got = w.finish(there)
        assert not w._failed, "the worker failed and the figures were drawn in this process"
    assert sorted(p.name for p in got) == sorted(p.name for p in want)  # each once
    assert len(want) == 7 and "augmentation.png" in {p.name for p in want}
    for p in want:
        q = there / "figures" / p.name
        assert q in got and q.is_file()
        np.testing.assert_array_equal(read_png(q), read_png(p), err_msg=p.name)


def test_worker_errors_are_raised_here(run_dir, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(run_dir, d)
    (d / "history.json").write_text("{not json")
    with FigureWorker() as w, pytest.raises(ValueError, match="not valid JSON"):
        w.finish(d)


def test_a_failed_worker_is_replaced_by_drawing_here(run_dir, tmp_path):
    for k, argv in enumerate(([sys.executable, "-c", "import sys; sys.exit(3)"],  # dies at once
                              [sys.executable, "-c", "import sys; sys.stdin.readline(); print('garbage')"],
                              ["/nonexistent/python"])):  # cannot start
        d = tmp_path / f"fallback{k}"
        d.mkdir()
        names = ["training_curves.png"]
        shutil.copy(run_dir / "history.json", d)
        if k == 0:  # one full run directory
            shutil.copytree(run_dir, d, dirs_exist_ok=True)
            names = [n for n, _ in plots.run_figure_jobs(d)]
        with FigureWorker(argv=argv) as w:
            w.submit(d, only=EARLY)
            got = w.finish(d)
            assert w._failed
        assert sorted(p.name for p in got) == sorted(names)
        assert all(read_png(p).std() > 10 for p in got)


def test_worker_dies_with_its_parent(tmp_path):
    code = ("import time\nfrom fastmnist._figworker import FigureWorker\nw = FigureWorker()\n"
            "print(w.proc.pid, flush=True)\ntime.sleep(120)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the figure worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()
