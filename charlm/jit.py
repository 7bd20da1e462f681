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


_told: set = set()


def tolerate_damaged_cache() -> None:
    """A damaged entry of Numba's on-disk cache (a truncated index or data file: a full disk, a killed
    write) is a cache miss, not an error: the kernel is compiled again, the entry rewritten, and stderr
    says so once per file. Numba itself lets the UnpicklingError through (charlm showed an internal error)."""
    from numba.core import caching
    cls = caching.IndexDataCacheFile
    if getattr(cls, "_charlm_tolerant", False):
        return
    load_index, load = cls._load_index, cls.load

    def _load_index(self):
        try:
            return load_index(self)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:                     # UnpicklingError, EOFError, ValueError, ...
            _damaged(self._index_path, "index", e)
            return {}

    def _load(self, key):
        try:
            return load(self, key)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            _damaged(self._index_path, "data", e)
            return None

    cls._load_index, cls.load, cls._charlm_tolerant = _load_index, _load, True


def _damaged(index_path, part, e) -> None:
    if (index_path, part) not in _told:
        _told.add((index_path, part))
        what = index_path if part == "index" else f"{index_path} (its data file)"
        print(f"charlm: the compiled-kernel cache entry {what} is damaged ({type(e).__name__}): compiling the "
              f"kernel again", file=sys.stderr)
