"""Compilation notice: Numba compiles charlm's kernels on first use and caches them on disk
(`cache=True`, next to the package or, where that is read-only, in Numba's per-user cache folder).
The first run on a machine says so, since it takes a while longer.
"""
from __future__ import annotations

import sys

from charlm import __version__
from charlm.corpus import cache_dir


def first_run() -> bool:
    """True the first time this charlm and Python version run on this machine (a marker file says so)."""
    marker = cache_dir() / f"kernels-compiled-{__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    if marker.exists():
        return False
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass
    return True
