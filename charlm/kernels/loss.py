"""Fused softmax cross-entropy, log-softmax NLL and the embedding-gradient scatter.

For logits z (N, V) and targets y (N,):
    log p_y = z_y - m - log Σ_v exp(z_v - m),   m = max_v z_v
    dL/dz   = scale * (softmax(z) - onehot(y))   for L = scale * Σ_n -log p_{y_n}

Speed: a row's maximum and its sum of exponentials are taken in LANES partial results (lane l takes
entries v ≡ l mod LANES, then the lanes are combined). That fixed order is what lets LLVM vectorize the
reductions without licence to reorder sums; with the float32 `exp` of `activations` a row costs about
a sixth of what it does with libm's exp (bench/RESULTS.md). The sums are float64 in every case.
"""
import numba
import numpy as np
from numba import njit, prange

from charlm.kernels import PARALLEL, SERIAL
from charlm.kernels.activations import exp

LANES = 16


@njit(**SERIAL)
def _row_max(row, lanes):
    """max_v row[v]; lanes (LANES,) of row's dtype is scratch."""
    V = row.shape[0]
    whole = V - V % LANES
    m = row[0]
    if whole:
        lanes[:] = row[:LANES]
        for v0 in range(LANES, whole, LANES):
            for l in range(LANES):
                lanes[l] = max(lanes[l], row[v0 + l])
        for l in range(LANES):
            m = max(m, lanes[l])
    for v in range(whole, V):
        m = max(m, row[v])
    return m


@njit(**SERIAL)
def _sum_exp(row, m, acc):
    """Σ_v exp(row[v] - m) in float64. acc (LANES,) float64 is scratch."""
    V = row.shape[0]
    whole = V - V % LANES
    acc[:] = 0.0
    for v0 in range(0, whole, LANES):
        for l in range(LANES):
            acc[l] += exp(row[v0 + l] - m)
    s = 0.0
    for v in range(whole, V):
        s += exp(row[v] - m)
    for l in range(LANES):
        s += acc[l]
    return s


@njit(**SERIAL)
def _exp_sum(row, m, acc):
    """row[v] := exp(row[v] - m); returns their sum in float64. acc (LANES,) float64 is scratch.

    `_sum_exp` with a store. Kept apart on purpose: one function with a store flag, or with an output
    array that may be the row itself, stopped LLVM vectorizing the in-place case (4x slower: measured in
    bench/RESULTS.md)."""
    V = row.shape[0]
    whole = V - V % LANES
    acc[:] = 0.0
    for v0 in range(0, whole, LANES):
        for l in range(LANES):
            e = exp(row[v0 + l] - m)
            row[v0 + l] = e
            acc[l] += e
    s = 0.0
    for v in range(whole, V):
        e = exp(row[v] - m)
        row[v] = e
        s += e
    for l in range(LANES):
        s += acc[l]
    return s


def softmax_xent(Z, y, scale, nll):
    """Per-row NLL into nll (N,) float64 and Z overwritten by the scaled gradient dL/dZ. Z (N, V)."""
    _softmax_xent(Z, y, scale, nll, _threads(Z.shape[0]))


def logsoftmax_nll(Z, y, nll):
    """nll[n] = -log softmax(Z[n])[y[n]], summed in float64; Z (N, V) is left unchanged."""
    _logsoftmax_nll(Z, y, nll, _threads(Z.shape[0]))


def _threads(rows):
    """Threads for `rows` rows, read in Python so the kernels can be cached."""
    return max(1, min(numba.get_num_threads(), rows))


@njit(**PARALLEL)
def _softmax_xent(Z, y, scale, nll, n):
    N, V = Z.shape
    for c in prange(n):
        lanes = np.empty(LANES, Z.dtype)
        acc = np.empty(LANES, np.float64)
        for r in range(N * c // n, N * (c + 1) // n):
            row = Z[r]
            m = _row_max(row, lanes)
            zy = row[y[r]]
            s = _exp_sum(row, m, acc)                         # row := exp(row - m)
            nll[r] = np.log(s) + m - zy
            inv = scale / s
            for v in range(V):
                row[v] *= inv
            row[y[r]] -= scale


@njit(**PARALLEL)
def _logsoftmax_nll(Z, y, nll, n):
    N = Z.shape[0]
    for c in prange(n):
        lanes = np.empty(LANES, Z.dtype)
        acc = np.empty(LANES, np.float64)
        for r in range(N * c // n, N * (c + 1) // n):
            row = Z[r]
            m = _row_max(row, lanes)
            nll[r] = np.log(_sum_exp(row, m, acc)) + np.float64(m) - row[y[r]]


@njit(**SERIAL)
def scatter_add_rows(dE, ids, dX):
    """dE[ids[n]] += dX[n] for n in 0..N-1 (the embedding gradient). dE (V, E), ids (N,), dX (N, E)."""
    N, E = dX.shape
    for n in range(N):
        r = ids[n]
        for e in range(E):
            dE[r, e] += dX[n, e]
