"""Threads: charlm runs its own threads through Numba and keeps BLAS at one thread per call.

Why: inside a kernel each thread calls BLAS on its own rows. A BLAS with a thread pool of its own then
fights Numba's threads for the cores (both spin while waiting); on this 2-core machine that made
training 6x slower. So:
- the `charlm` command sets OPENBLAS_NUM_THREADS=1 before NumPy loads (cli.py), so no BLAS pool exists;
- in a Python program that loaded NumPy first, `compute_threads` caps BLAS at one thread for the
  duration of charlm's work (threadpoolctl), and Numba uses its `workqueue` threading layer (unless
  NUMBA_THREADING_LAYER says otherwise), whose idle threads sleep instead of spinning.
Use `with compute_threads(n):` around work; n = None keeps Numba's count (all cores by default).
"""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def compute_threads(n: int | None = None):
    """Within the block: BLAS single-threaded, Numba's threads set to n (when given)."""
    import numba
    from threadpoolctl import threadpool_limits
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"   # takes effect at the first parallel launch
    old = numba.get_num_threads()
    if n:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old)
