"""Fused softmax cross-entropy, log-softmax NLL and the embedding-gradient scatter.

For logits z (N, V) and targets y (N,):
    log p_y = z_y - m - log Σ_v exp(z_v - m),   m = max_v z_v
    dL/dz   = scale * (softmax(z) - onehot(y))   for L = scale * Σ_n -log p_{y_n}
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, error_model="numpy")
def softmax_xent(Z, y, scale, nll):
    """Per-row NLL into nll (N,) float64 and Z overwritten by the scaled gradient dL/dZ. Z (N, V)."""
    N, V = Z.shape
    for n in prange(N):
        row = Z[n]
        m = row[0]
        for v in range(1, V):
            if row[v] > m:
                m = row[v]
        zy = row[y[n]]
        s = 0.0
        for v in range(V):
            e = np.exp(row[v] - m)
            row[v] = e
            s += e
        nll[n] = np.log(s) + m - zy
        inv = scale / s
        for v in range(V):
            row[v] *= inv
        row[y[n]] -= scale


@njit(cache=True, parallel=True, error_model="numpy")
def logsoftmax_nll(Z, y, nll):
    """nll[n] = -log softmax(Z[n])[y[n]] in float64 precision; Z (N, V) is left unchanged."""
    N, V = Z.shape
    for n in prange(N):
        row = Z[n]
        m = row[0]
        for v in range(1, V):
            if row[v] > m:
                m = row[v]
        s = 0.0
        for v in range(V):
            s += np.exp(np.float64(row[v]) - m)
        nll[n] = np.log(s) + m - row[y[n]]


@njit(cache=True, error_model="numpy")
def scatter_add_rows(dE, ids, dX):
    """dE[ids[n]] += dX[n] for n in 0..N-1 (the embedding gradient). dE (V, E), ids (N,), dX (N, E)."""
    N, E = dX.shape
    for n in range(N):
        r = ids[n]
        for e in range(E):
            dE[r, e] += dX[n, e]
