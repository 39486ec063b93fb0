"""Draw a run's figures in a second Python process, started before the data are read.

Importing matplotlib and drawing the first figure of a process (fonts, text layout caches, the
matplotlib modules that load on first use) costs more than drawing the run's figures. A
``FigureWorker`` pays for that in a child process while this process reads the data on one core (the
other one is idle then), and sleeps while training uses both cores. After training, the run's writer
``submit``s each figure as soon as its files are written (the training curves and the label
distribution need history.json and label_counts.json, the confusion matrix and the image grids
predictions.npz): the child draws them while this process still writes the other files. ``finish``
then has it draw every figure not drawn yet and returns all the paths.

This module imports no matplotlib. The child is a plain ``python -c`` subprocess (not
multiprocessing: nothing of the parent is pickled or re-imported, and no fork after OpenMP has run);
it talks JSON lines over its stdin/stdout, ignores Ctrl-C (the parent decides what an interrupt
means), exits when its stdin closes, and on Linux dies with the parent (``PR_SET_PDEATHSIG``). If the
child fails in any way (cannot start, dies, answers garbage), ``finish`` draws every figure in this
process instead: the figures are the same either way.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# the child imports this very fastmnist (a source tree, a developer build or site-packages), whose
# parent directory is its argv[1]
_CHILD = ("import sys\nif sys.argv[1] not in sys.path: sys.path.insert(0, sys.argv[1])\n"
          "from fastmnist._figworker import _serve\n_serve()\n")


class FigureWorker:
    """A child process that has matplotlib and ``fastmnist.plots`` imported and warmed up, and draws a
    run directory's figures on request. Use as a context manager (or call ``close()``). ``argv``
    replaces the child's command line (tests use it to make the child fail)."""

    def __init__(self, argv=None):
        env = dict(os.environ)
        env["MPLBACKEND"] = "Agg"
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
        env["FASTMNIST_FIGWORKER_PARENT"] = str(os.getpid())
        try:
            argv = argv or [sys.executable, "-c", _CHILD, str(Path(__file__).resolve().parent.parent)]
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                                         bufsize=1)
        except OSError:
            self.proc = None
        self._pending = 0
        self._failed = self.proc is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def submit(self, run_dir, *, only=None, skip=(), dpi: int = 100) -> None:
        """Ask the child to draw the figures of ``run_dir`` named in ``only`` (file names, as in
        ``fastmnist.plots.run_figure_jobs``; default: all) but not in ``skip``, from the files there
        now. Returns at once."""
        if self._failed:
            return
        req = {"run_dir": str(run_dir), "dpi": dpi, "only": None if only is None else list(only),
               "skip": sorted(skip)}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            self._pending += 1
        except (OSError, ValueError):
            self._failed = True

    def _collect(self) -> list[Path]:
        """The paths of every pending request (marks the worker failed if it does not answer)."""
        paths, error = [], None
        while self._pending and not self._failed:
            self._pending -= 1
            try:
                answer = json.loads(self.proc.stdout.readline())
            except (OSError, ValueError):
                answer = None
            if not isinstance(answer, dict):
                self._failed = True
            elif "paths" in answer:
                paths += [Path(p) for p in answer["paths"]]
            elif error is None:
                error = _ERRORS.get(answer.get("type"), RuntimeError)(answer.get("error", "figure worker failed"))
        self._pending = 0
        if error is not None:
            raise error
        return paths

    def finish(self, run_dir, *, dpi: int = 100) -> list[Path]:
        """Wait for the figures submitted so far, have the child draw every other figure of ``run_dir``
        and return the paths written. An error drawing a figure is raised here, as
        ``write_run_figures`` raises it; if the child failed, every figure is drawn in this process."""
        done = self._collect()
        self.submit(run_dir, skip={p.name for p in done}, dpi=dpi)
        done += self._collect()
        if self._failed:
            from .plots import write_run_figures

            return write_run_figures(run_dir, dpi=dpi)
        return list(dict.fromkeys(done))  # a figure submitted twice is listed once

    def close(self):
        """Stop the child (at once: it holds no unfinished work once ``finish`` has returned; after an
        error between ``submit`` and ``finish`` a figure it was writing stays a temporary file, which
        the next run into that directory removes)."""
        if self.proc is None:
            return
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None


_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "OSError": OSError}


def _die_with_parent():
    """Linux: SIGKILL this process when its parent dies (a killed ``fastmnist train`` leaves no child
    drawing into its run directory)."""
    parent = int(os.environ.get("FASTMNIST_FIGWORKER_PARENT", "0") or 0)
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def _serve():
    """The child: import and warm up, then answer requests until stdin closes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    # answers go to the original stdout; anything else printed goes to stderr
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from . import plots

    try:
        plots.warm_up()
    except Exception:  # noqa: BLE001, S110 -- only a head start; the real figures report their own errors
        pass
    for line in sys.stdin:
        try:
            req = json.loads(line)
            jobs = plots.run_figure_jobs(req["run_dir"], dpi=int(req.get("dpi", 100)))
            only, skip = req.get("only"), set(req.get("skip") or ())
            jobs = [j for j in jobs if (only is None or j[0] in only) and j[0] not in skip]
            answer = {"paths": [str(p) for p in plots.draw_figure_jobs(jobs)]}
        except Exception as e:  # noqa: BLE001 -- reported to the parent, which raises it
            answer = {"error": str(e), "type": type(e).__name__}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
