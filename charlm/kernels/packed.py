"""Recurrent time loops over packed variable-length batches (PyTorch's PackedSequence layout).

Layout: the B sequences are sorted by length, longest first; packed arrays are time-major, step t holding
the bs[t] sequences still running (a prefix of the sorted batch) at rows offsets[t] .. offsets[t]+bs[t]:
    row(t, b) = offsets[t] + b,   0 <= b < bs[t],   N = offsets[T] = Σ_b L_b real tokens, no padding.
Since bs is non-increasing, the rows of sorted sequences b0..b0+m-1 at step t are one contiguous block,
and their previous states are a contiguous prefix of the block at step t-1:
    h_{t-1}[b0 : b0+m] = Hs[offsets[t-1]+b0 : offsets[t-1]+b0+m]        (h0[b0 : b0+m] at t = 0)
So each step is `cells.forward_step` on slices, over a batch that shrinks as sequences end.

Threads: the sorted batch is cut into contiguous row blocks blocks[ch] .. blocks[ch+1] (the caller
balances their tokens, so thread 0 takes fewer, longer sequences). Rows are independent for the whole
batch, so each thread runs the full time loop over its block with no synchronisation between steps,
as `cells.layer_forward` does.

The backward step is the per-step body of `cells._window_backward` on a block's slices (same row
functions, same order). The gradient of each sequence's final state enters at its own last step for
free: dh (B, H) starts as the final-state gradient and a sorted row is first touched at the step where
its sequence ends (rows past bs[t] are not read), so on return dh, dc hold the initial-state gradient.
"""
import numpy as np
from numba import njit, prange

from charlm.kernels import PARALLEL, SERIAL
from charlm.kernels.cells import (GRU_FULL, GRU_MINIMAL, LSTM, RNN_RELU, _act_backward, _dot, _iadd,
                                  _interpolate_backward, _lstm_backward, _lstm_peephole_backward,
                                  _reset_backward, forward_step)


@njit(**PARALLEL)
def packed_forward(cell, XP, offsets, sizes, blocks, Wf, Wf2, peep, h0, c0, Hs, Cs, A, RH, keep, tmp):
    """The time loop over a packed batch.

    XP (N, GH) input projections with both biases; offsets (T+1,), sizes (T,) the layout; blocks (n+1,)
    the threads' row blocks of the sorted batch; Wf, Wf2 from `cells.pack_forward` for the largest
    block's rows; peep (3, H) or (0, H); h0, c0 (B, H) initial states (c0 (1, 1) unless LSTM).
    Out: Hs (N, H) h at every row, Cs (N, H) c (LSTM; else (1, 1)), A the activated gates and RH r*h
    (GRU full): (N, ..) when `keep` (for the backward), else (B, ..) scratch indexed by sorted row
    (RH is (B, H) scratch also when kept by cells other than GRU full). tmp (n, >= scratch_size(rows, ..)).
    """
    T = sizes.shape[0]
    n = blocks.shape[0] - 1
    rows = np.arange(h0.shape[0])
    keep_rh = keep and cell == GRU_FULL
    for ch in prange(n):
        b0, b1 = blocks[ch], blocks[ch + 1]
        for t in range(T):
            m = min(sizes[t], b1) - b0                 # this block's sequences still running
            if m <= 0:
                break                                  # sizes never grow again
            r = offsets[t] + b0
            if t == 0:
                hp, cp = h0[b0: b0 + m], c0[b0: b0 + m]
            else:
                rp = offsets[t - 1] + b0
                hp, cp = Hs[rp: rp + m], Cs[rp: rp + m]
            a = A[r: r + m] if keep else A[b0: b0 + m]
            rh = RH[r: r + m] if keep_rh else RH[b0: b0 + m]
            forward_step(cell, XP[r: r + m], rows[:m], Wf, Wf2, peep, hp, cp, a, Hs[r: r + m], Cs[r: r + m],
                         rh, tmp[ch])


@njit(**PARALLEL)
def packed_backward(cell, Wb, Wb2, peep, offsets, sizes, blocks, h0, c0, Hs, Cs, A, dY, dP, dpeep, dbias,
                    dh, dc, tmp):
    """Backpropagation through a packed batch, in exact reverse order of `packed_forward`.

    Wb, Wb2 from `cells.pack_backward` for the largest block's rows; h0, c0, Hs, Cs, A as the forward
    kept them; dY (N, H) gradient of the outputs. dh, dc (B, H) in: gradient of each sequence's final
    state (entering at its last step), out: gradient of its initial state (dc zero unless LSTM).
    Writes dP (N, GH) pre-activation gradients, dpeep (n, 3, H) each thread's peephole gradient and
    dbias (n, GH) each thread's Σ dP. tmp (n, >= scratch_size(rows, ..)).
    """
    T = sizes.shape[0]
    n = blocks.shape[0] - 1
    dpeep[:] = 0.0
    dbias[:] = 0.0
    for ch in prange(n):
        b0, b1 = blocks[ch], blocks[ch + 1]
        for t in range(T - 1, -1, -1):
            m = min(sizes[t], b1) - b0
            if m <= 0:
                continue                               # this block's sequences have not started yet
            r = offsets[t] + b0
            if t == 0:
                hp, cp = h0[b0: b0 + m], c0[b0: b0 + m]
            else:
                rp = offsets[t - 1] + b0
                hp, cp = Hs[rp: rp + m], Cs[rp: rp + m]
            backward_step(cell, Wb, Wb2, peep, hp, cp, Cs[r: r + m], A[r: r + m], dY[r: r + m], dP[r: r + m],
                          dpeep[ch], dbias[ch], dh[b0: b0 + m], dc[b0: b0 + m], tmp[ch])


@njit(**SERIAL)
def backward_step(cell, Wb, Wb2, peep, h, cp, cn, a, dy, d, dpeep, dbias, dh, dc, tmp):
    """One step back for a batch of B rows (the body of `cells._window_backward`'s time loop).

    h, cp (B, H) previous state; cn (B, H) this step's c (LSTM); a (B, GH) activated gates; dy (B, H)
    gradient of this step's output; d (B, GH) out: pre-activation gradients; dh, dc (B, H) in: gradient
    of this step's state, out: of the previous one; dpeep (3, H) and dbias (GH,) accumulate.
    """
    B, H = dh.shape
    dx = tmp[: B * H].reshape(B, H)                   # gradient through a recurrent product (GRU)
    chunks = tmp[B * H * max(2 * (d.shape[1] // H), 4):]
    for b in range(B):
        _iadd(dh[b], dy[b])
    if cell == LSTM:
        has_peep = peep.shape[0] > 0
        for b in range(B):
            ab, db = a[b], d[b]
            if has_peep:
                _lstm_peephole_backward(ab[:H], ab[H: 2 * H], ab[2 * H: 3 * H], ab[3 * H:], peep, cp[b], cn[b],
                                        dh[b], dc[b], db[:H], db[H: 2 * H], db[2 * H: 3 * H], db[3 * H:], dpeep)
            else:
                _lstm_backward(ab[:H], ab[H: 2 * H], ab[2 * H: 3 * H], ab[3 * H:], cp[b], cn[b],
                               dh[b], dc[b], db[:H], db[H: 2 * H], db[2 * H: 3 * H], db[3 * H:])
        _dot(d, Wb, dh, chunks)                                       # dh_prev = dP W_hh
    elif cell == GRU_FULL:
        dn = tmp[B * H: 2 * B * H].reshape(B, H)                      # n-block pre-activation gradient
        for b in range(B):
            _interpolate_backward(a[b, H: 2 * H], a[b, 2 * H:], h[b], dh[b], d[b, H: 2 * H], dn[b])
            d[b, 2 * H:] = dn[b]
        _dot(dn, Wb2, dx, chunks)                                     # d(r*h) = dn_pre W_hn
        drz = tmp[B * H: 3 * B * H].reshape(B, 2 * H)                 # r,z-block gradients (dn is done)
        for b in range(B):
            _reset_backward(a[b, :H], h[b], dx[b], d[b, :H], dh[b])
            drz[b] = d[b, : 2 * H]
        _dot(drz, Wb, dx, chunks)                                     # through W_hr, W_hz
        for b in range(B):
            _iadd(dh[b], dx[b])
    elif cell == GRU_MINIMAL:
        for b in range(B):
            _interpolate_backward(a[b, :H], a[b, H:], h[b], dh[b], d[b, :H], d[b, H:])
        _dot(d, Wb, dx, chunks)                                       # through W_hz, W_hn
        for b in range(B):
            _iadd(dh[b], dx[b])
    else:
        for b in range(B):
            _act_backward(a[b], dh[b], d[b], cell == RNN_RELU)
        _dot(d, Wb, dh, chunks)                                       # dh_prev = dP W_hh
    for b in range(B):
        _iadd(dbias, d[b])                                            # db = Σ dP
