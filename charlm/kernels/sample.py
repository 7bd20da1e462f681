"""Compiled generation: the whole token loop runs in Numba, B independent samples side by side.

Each step feeds the current token of every row through the stack and draws the next token from
    p_v ∝ exp((z_v − max z) / temp)
restricted to the k most likely tokens (top_k > 0) and to the smallest most-likely set whose mass
reaches top_p (top_p < 1), renormalised; greedy takes argmax z. Draws use the uniforms U (n, B), drawn
by the caller from a seeded numpy Generator: the inverse CDF at U picks the token.
"""
import numpy as np
from numba import njit

from charlm.kernels import SERIAL
from charlm.kernels.cells import forward_step, scratch_size


@njit(**SERIAL)
def _pick(z, temp, top_k, top_p, greedy, u, p, order):
    """Choose a token from logits z (V,) with uniform u; p (V,) and order (V,) are scratch."""
    V = z.shape[0]
    m = z[0]
    best = 0
    for v in range(1, V):
        if z[v] > m:
            m = z[v]
            best = v
    if greedy or top_k == 1:
        return best
    s = 0.0
    for v in range(V):
        p[v] = np.exp((z[v] - m) / temp)
        s += p[v]
    if top_k <= 0 and top_p >= 1.0:
        target = u * s
        acc = 0.0
        for v in range(V):
            acc += p[v]
            if acc > target:
                return v
        return best
    order[:] = np.argsort(-p, kind="mergesort")    # most likely first, ties by id
    keep = V if top_k <= 0 or top_k > V else top_k
    if top_p < 1.0:
        acc = 0.0
        for r in range(keep):
            acc += p[order[r]]
            if acc >= top_p * s:
                keep = r + 1
                break
    mass = 0.0
    for r in range(keep):
        mass += p[order[r]]
    target = u * mass
    acc = 0.0
    for r in range(keep):
        acc += p[order[r]]
        if acc > target:
            return order[r]
    return order[keep - 1]


@njit(**SERIAL)
def feed(cell, emb, table0, Wih, Wf, Wf2, bias, peep, tok, rows, state, xe, xp, a, hn, cn, rh, tmp):
    """One step of the whole stack for B rows: input tokens tok (B,), state (L, 2, B, H) updated in place.

    table0 (V, GH): layer 0's input projection of every token, emb W_ih0^T + b (then layer 0 reads its
    row instead of multiplying), or (0, GH) to multiply.

    rows (>= B,) holds 0, 1, 2, .. (batch row b reads row rows[b] of xp).
    Scratch (as in `generate`): xe (B, E), xp (B, GH), a (B, GH), hn (B, H), cn (B, H) zero for
    non-LSTM cells, rh (B, H), tmp (>= scratch_size(B, ..),). The top layer's new h is state[L-1, 0].
    """
    L = state.shape[0]
    B = tok.shape[0]
    E = emb.shape[1]
    GH = xp.shape[1]
    if table0.shape[0] == 0:
        for b in range(B):
            for e in range(E):
                xe[b, e] = emb[tok[b], e]                            # (B, E) embedding rows
    for k in range(L):
        if k == 0 and table0.shape[0] > 0:
            forward_step(cell, table0, tok, Wf[k], Wf2[k], peep[k], state[k, 0], state[k, 1], a, hn, cn, rh, tmp)
        else:
            if k == 0:
                np.dot(xe, Wih[k].T, xp)                             # (B, GH)
            else:
                np.dot(hn, Wih[k].T, xp)                             # (B, GH) layer k-1's new h
            for b in range(B):
                for g in range(GH):
                    xp[b, g] += bias[k][g]
            forward_step(cell, xp, rows[:B], Wf[k], Wf2[k], peep[k], state[k, 0], state[k, 1], a, hn, cn, rh, tmp)
        state[k, 0, :, :] = hn
        state[k, 1, :, :] = cn


@njit(**SERIAL, nogil=True)   # nogil: the caller waits in Python, so Ctrl-C works
def generate(cell, emb, table0, Wih, Wf, Wf2, bias, peep, dec, dec_b, state, prefix, n, temp, top_k, top_p, greedy,
             U, eos_id, stop_at_eos, out, lengths):
    """Feed prefix (P >= 1 tokens, the same for every row), then sample n tokens per row.

    emb (V, E); table0 as in `feed`; Wih, bias, peep: tuples of L arrays (GH, In), (GH,) both biases summed, (3, H) or (0, H);
    Wf, Wf2: tuples of L recurrent weights from `cells.pack_forward` for B rows; dec (V, H), dec_b (V,);
    state (L, 2, B, H) in/out; U (n, B) uniforms;
    out (B, n) int32 sampled ids; lengths (B,) tokens generated per row (with stop_at_eos, up to and
    including the first EOS).
    """
    L, _, B, H = state.shape
    V = emb.shape[0]
    GH = bias[0].shape[0]
    E = emb.shape[1]
    tok = np.empty(B, np.int32)
    rows = np.arange(B).astype(np.int32)
    tok[:] = prefix[0]
    xe = np.empty((B, E), emb.dtype)                 # layer 0 input: embedding rows
    xp = np.empty((B, GH), emb.dtype)                # input projection of one layer
    a = np.empty((B, GH), emb.dtype)
    hn = np.empty((B, H), emb.dtype)                 # new h of the current layer: next layer's input
    cn = np.zeros((B, H), emb.dtype)
    rh = np.empty((B, H), emb.dtype)
    tmp = np.empty(scratch_size(B, H, GH // H, Wf[0], Wf2[0]), emb.dtype)
    z = np.empty((B, V), emb.dtype)
    p = np.empty(V, np.float64)
    order = np.empty(V, np.int64)
    done = np.zeros(B, np.bool_)
    lengths[:] = 0
    P = prefix.shape[0]
    for step in range(P - 1 + n):
        feed(cell, emb, table0, Wih, Wf, Wf2, bias, peep, tok, rows, state, xe, xp, a, hn, cn, rh, tmp)
        if step < P - 1:
            tok[:] = prefix[step + 1]
            continue
        i = step - (P - 1)
        np.dot(hn, dec.T, z)                                         # (B, V)
        for b in range(B):
            if done[b]:
                continue
            for v in range(V):
                z[b, v] += dec_b[v]
            t = _pick(z[b], temp, top_k, top_p, greedy, U[i, b], p, order)
            out[b, i] = t
            lengths[b] = i + 1
            tok[b] = t
            if stop_at_eos and t == eos_id:
                done[b] = True
        if stop_at_eos and done.all():
            break
