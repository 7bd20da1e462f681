"""The compute environment: charlm's own threads through Numba, BLAS at one thread per call, and freed
memory kept for reuse.

Threads: inside a kernel each thread calls BLAS on its own rows. A BLAS with a thread pool of its own
then fights Numba's threads for the cores (both spin while waiting), and training ran several times
slower (measured: bench/RESULTS.md, "Figures behind the code's design"). So:
- the `charlm` command sets OPENBLAS_NUM_THREADS=1 before NumPy loads (cli.py), so no BLAS pool exists;
- in a Python program that loaded NumPy first, `compute_threads` caps BLAS at one thread for the
  duration of charlm's work (threadpoolctl). The kernels' BLAS is SciPy's OpenBLAS (Numba calls it
  through scipy.linalg.cython_blas), a library of its own that loads on first use, so it is loaded
  before the cap: capped only afterwards, it kept its own threads and training ran an order of
  magnitude slower.
Numba's threading layer: with BLAS at one thread, TBB and OpenMP launch a parallel kernel some 40
times faster than the `workqueue` layer, and a training window launches some 30 kernels, so small
models train markedly faster on them (figures: bench/RESULTS.md). TBB comes first because it is
fork-safe: GNU OpenMP is not, so Numba terminates a forked child that runs a kernel, and a multiprocessing Pool (fork is
the default start method on Linux) then hangs. So Numba tries TBB (a dependency on x86-64), then
OpenMP (needs the system's libgomp), then workqueue, unless NUMBA_THREADING_LAYER is set. pip's tbb
wheel puts its library in the environment's lib folder, which the dynamic loader searches only for
Python's own prefix: inside a virtual environment Numba could not load it and fell back to OpenMP, so
`load_tbb` loads it by path first.

Memory: every window allocates megabytes of activations and frees them. glibc serves large blocks
with fresh mmap pages and returns them on free, so each window paid a page fault per 4 KB touched
(about a third of the evaluation time of a hidden-128 model). `reuse_freed_memory` raises glibc's mmap
and trim thresholds so freed blocks stay in the heap and the next window reuses them; peak memory is
unchanged. On other C libraries it does nothing.
Use `with compute_threads(n):` around work; n = None keeps Numba's count (all cores by default).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys

_M_TRIM_THRESHOLD = -1          # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30           # blocks up to 1 GiB come from the heap; up to 1 GiB of free top stays


@contextlib.contextmanager
def compute_threads(n: int | None = None):
    """Within the block: BLAS single-threaded, Numba's threads set to n (when given)."""
    import numba
    import scipy.linalg.cython_blas  # noqa: F401  (loads the kernels' BLAS, so the cap below reaches it)
    from threadpoolctl import threadpool_limits
    load_tbb()                                       # also for NUMBA_THREADING_LAYER=tbb
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "default"     # takes effect at the first parallel launch
        numba.config.THREADING_LAYER_PRIORITY = ["tbb", "omp", "workqueue"]
    reuse_freed_memory()
    old = numba.get_num_threads()
    if n:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old)


@functools.cache
def load_tbb() -> bool:
    """Load the TBB library of pip's tbb wheel (sys.prefix/lib/libtbb.so.12) globally, so that Numba's
    TBB layer, which asks the loader for the soname, finds it loaded. True if it is loaded now."""
    path = os.path.join(sys.prefix, "lib", "libtbb.so.12")
    try:
        ctypes.CDLL("libtbb.so.12", mode=ctypes.RTLD_GLOBAL)     # already on the loader's path
        return True
    except OSError:
        pass
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        return False


@functools.cache
def reuse_freed_memory() -> bool:
    """Keep freed large blocks in the heap for reuse (glibc only; once per process). True if set."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
