"""Compiled kernels of the tracker's per-frame bookkeeping: numba's ``njit`` with the project's options, in one place.

The bookkeeping works on a working map of a few ten thousand pixels and a few dozen tracks; done as NumPy calls it
is ~150 calls of a few microseconds each per frame. A kernel written as a plain loop does one pass instead.

- ``cache=True``: compiled code is stored next to the module (or in numba's user cache when that is read-only), so
  only the first run after an install pays the compilation (seconds); later processes load it.
- ``nogil=True``: a kernel releases the GIL, so the node's pipeline stages and the matcher thread keep running.
- no ``fastmath``: results are those of the same arithmetic in NumPy.
"""

from __future__ import annotations

import numba


def kernel(fn):
    """``fn`` compiled (nopython mode, cached, GIL released); called like the Python function."""
    return numba.njit(cache=True, nogil=True)(fn)
