"""Progress bars: tqdm on a terminal and in Jupyter (tqdm.auto), silent otherwise or when quiet."""
from __future__ import annotations

import sys


def _in_jupyter() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def progress(iterable=None, *, total=None, desc=None, quiet=False, unit="it", **kw):
    """Wrap ``iterable`` in a tqdm bar unless ``quiet``, or stderr is not a terminal outside Jupyter
    (in a notebook tqdm.auto draws a widget when ipywidgets is installed, else a text bar)."""
    from tqdm.auto import tqdm

    disable = quiet or not (sys.stderr.isatty() or _in_jupyter())
    return tqdm(iterable, total=total, desc=desc, disable=disable, unit=unit, leave=False,
                dynamic_ncols=True, **kw)
