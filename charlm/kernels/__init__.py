"""Numba kernels: contiguous arrays and ints in, preallocated arrays out; no I/O, no Python objects.

JIT policy
- Every kernel is `njit(**SERIAL)` or `njit(**PARALLEL)` (below; `cache=True`): compiled once per dtype signature (float32 for training, float64
  for the gradient checks) and cached on disk. The cache folder is NUMBA_CACHE_DIR when set, otherwise
  charlm points Numba at a per-user cache folder (see `charlm.jit`), so a read-only install still caches.
- Never `fastmath=True`: it lets `np.isnan` / `np.isfinite` fold to constants. A test rejects it.
- No random numbers inside kernels: callers draw them from a seeded `numpy.random.Generator` and pass
  them in, so runs reproduce and the generator state can be saved.
- Matrix products inside kernels go through `np.dot(a, b, out)`, which Numba hands to BLAS (SciPy's).
"""
from charlm.jit import tolerate_damaged_cache

# The one set of compile flags: cached on disk, NumPy's error model (no zero-division branch inside loops).
SERIAL = dict(cache=True, error_model="numpy")
PARALLEL = dict(SERIAL, parallel=True)   # loops over prange: Numba's threading layer (charlm.threads)

tolerate_damaged_cache()   # before any kernel is defined: a damaged cache entry is recompiled, not fatal
