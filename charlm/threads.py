"""Threads: charlm runs its own threads through Numba and keeps BLAS at one thread per call.

Use `with compute_threads(n):` around work; n = None keeps Numba's count (all cores by default).
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def compute_threads(n: int | None = None):
    """Within the block: BLAS single-threaded, Numba's threads set to n (when given)."""
    import numba
    from threadpoolctl import threadpool_limits
    old = numba.get_num_threads()
    if n:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old)
