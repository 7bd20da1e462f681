"""Matrix products split across Numba's threads, each part one single-threaded BLAS call.

charlm keeps BLAS itself at one thread (see `charlm.threads`) and runs its own threads: OpenBLAS
threads that spin while Numba's threads also run fight for the cores, and that made training several
times slower (bench/RESULTS.md). Rows of the output are split evenly; a product summed over
rows (A^T B) gives each thread a partial sum of its rows, added at the end.
The thread count is read in Python (`parts`) and passed in, so the compiled kernels can be cached.
"""
import numba
import numpy as np
from numba import njit, prange

from charlm.kernels import PARALLEL

MIN_ROWS = 16     # fewer rows per thread than this are not worth a thread


def parts(rows: int, min_rows: int = MIN_ROWS) -> int:
    """How many threads share `rows` rows, each taking at least min_rows."""
    return max(1, min(numba.get_num_threads(), rows // min_rows))


def matmul(A, B, out):
    """out = A @ B.  A (M, K), B (K, N) (C or F order), out (M, N)."""
    _matmul(A, B, out, parts(A.shape[0]))


def matmul_bias(A, B, bias, out):
    """out = A @ B + bias.  A (M, K), B (K, N), bias (N,), out (M, N)."""
    _matmul_bias(A, B, bias, out, parts(A.shape[0]))


def matmul_tn_add(A, B, out):
    """out += A^T @ B, summed over the M rows.  A (M, K), B (M, N), out (K, N)."""
    _matmul_tn_add(A, B, out, parts(A.shape[0]))


@njit(**PARALLEL)
def _matmul(A, B, out, n):
    M = A.shape[0]
    for c in prange(n):
        r0, r1 = M * c // n, M * (c + 1) // n
        np.dot(A[r0:r1], B, out[r0:r1])


@njit(**PARALLEL)
def _matmul_bias(A, B, bias, out, n):
    M, N = out.shape
    for c in prange(n):
        r0, r1 = M * c // n, M * (c + 1) // n
        np.dot(A[r0:r1], B, out[r0:r1])
        for r in range(r0, r1):
            row = out[r]
            for j in range(N):
                row[j] += bias[j]


@njit(**PARALLEL)
def _matmul_tn_add(A, B, out, n):
    M = A.shape[0]
    K, N = out.shape
    partial = np.empty((n, K, N), out.dtype)
    for c in prange(n):
        r0, r1 = M * c // n, M * (c + 1) // n
        np.dot(A[r0:r1].T, B[r0:r1], partial[c])
    for c in range(n):
        out += partial[c]
