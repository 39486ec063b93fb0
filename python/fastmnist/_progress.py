"""Progress bars: tqdm on a terminal, silent when not a TTY or when quiet."""
from __future__ import annotations

import sys


def progress(iterable=None, *, total=None, desc=None, quiet=False, unit="it", **kw):
    """Wrap ``iterable`` in a tqdm bar unless ``quiet`` or stderr is not a terminal."""
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, unit=unit, leave=False,
                dynamic_ncols=True, **kw)
