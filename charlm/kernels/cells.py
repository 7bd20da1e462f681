"""Recurrent cells over a whole window: forward and backward time loops with fused gate math.

The input projections of all T steps arrive precomputed (one GEMM by the caller):
    XP[t] = x_t W_ih^T + b_ih + b_hh                         # (B, G*H)
Inside the time loop only the recurrent product h W_hh^T runs, then one fused pass over the gates.
Cells and gate blocks (model-format.md; σ logistic):
    RNN   (G=1):        h' = act(XP + h W_h^T),  act = tanh | relu
    LSTM  (G=4: i f g o): i = σ(.. + p_i*c)  f = σ(.. + p_f*c)  g = tanh(..)  c' = f*c + i*g
                          o = σ(.. + p_o*c')  h' = o*tanh(c')          (p = 0 without peepholes)
    GRU full (G=3: r z n): r = σ(XP_r + h W_hr^T)  z = σ(XP_z + h W_hz^T)
                           n = tanh(XP_n + (r*h) W_hn^T)  h' = z*n + (1-z)*h
    GRU minimal (G=2: z n): z = σ(XP_z + h W_hz^T)  n = tanh(XP_n + h W_hn^T)  h' = z*n + (1-z)*h
The backward returns dP, the gradient of the gate pre-activations (T, B, G*H). The caller turns it into
the weight gradients with one GEMM each over all steps:
    dW_ih = dP^T X,  db_ih = db_hh = Σ dP,  dW_hh = dP^T H_prev  (for GRU full, the n block uses R*H_prev).
"""
import numpy as np
from numba import njit

RNN_TANH = 0
RNN_RELU = 1
LSTM = 2
GRU_FULL = 3
GRU_MINIMAL = 4


def cell_code(cfg) -> int:
    """The kernel's integer code for a ModelConfig's cell."""
    if cfg.cell == "rnn":
        return RNN_TANH if cfg.activation == "tanh" else RNN_RELU
    if cfg.cell == "lstm":
        return LSTM
    return GRU_FULL if cfg.gru_variant == "full" else GRU_MINIMAL


@njit(cache=True, inline="always")
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@njit(cache=True)
def forward_step(cell, xp, Whh, peep, h, c, a, h_out, c_out, rh, tmp):
    """One step for a batch: state (h, c) -> (h_out, c_out).

    xp (B, GH) input projection with both biases; Whh (GH, H); peep (3, H) or (0, H);
    h, c (B, H) previous state; a (B, GH) out: activated gates; rh (B, H) out: r*h (GRU full only);
    tmp (>= B*H*max(2G, 4),) flat scratch for the recurrent products.
    """
    B, H = h.shape
    GH = Whh.shape[0]
    if cell == GRU_FULL:
        hr = tmp[: B * 2 * H].reshape(B, 2 * H)
        np.dot(h, Whh[: 2 * H].T, hr)                                # (B, 2H) h W_{r,z}^T
        for b in range(B):
            for j in range(H):
                r = _sigmoid(xp[b, j] + hr[b, j])
                z = _sigmoid(xp[b, H + j] + hr[b, H + j])
                a[b, j] = r
                a[b, H + j] = z
                rh[b, j] = r * h[b, j]
        hn = tmp[: B * H].reshape(B, H)
        np.dot(rh, Whh[2 * H:].T, hn)                                # (B, H) (r*h) W_hn^T
        for b in range(B):
            for j in range(H):
                n = np.tanh(xp[b, 2 * H + j] + hn[b, j])
                a[b, 2 * H + j] = n
                z = a[b, H + j]
                h_out[b, j] = z * n + (1.0 - z) * h[b, j]
        return
    hw = tmp[: B * GH].reshape(B, GH)
    np.dot(h, Whh.T, hw)                                             # (B, GH) h W_hh^T
    if cell == LSTM:
        has_peep = peep.shape[0] > 0
        for b in range(B):
            for j in range(H):
                cp = c[b, j]
                gi = xp[b, j] + hw[b, j]
                gf = xp[b, H + j] + hw[b, H + j]
                gg = xp[b, 2 * H + j] + hw[b, 2 * H + j]
                go = xp[b, 3 * H + j] + hw[b, 3 * H + j]
                if has_peep:
                    gi += peep[0, j] * cp
                    gf += peep[1, j] * cp
                i = _sigmoid(gi)
                f = _sigmoid(gf)
                g = np.tanh(gg)
                cn = f * cp + i * g
                if has_peep:
                    go += peep[2, j] * cn
                o = _sigmoid(go)
                a[b, j] = i
                a[b, H + j] = f
                a[b, 2 * H + j] = g
                a[b, 3 * H + j] = o
                c_out[b, j] = cn
                h_out[b, j] = o * np.tanh(cn)
    elif cell == GRU_MINIMAL:
        for b in range(B):
            for j in range(H):
                z = _sigmoid(xp[b, j] + hw[b, j])
                n = np.tanh(xp[b, H + j] + hw[b, H + j])
                a[b, j] = z
                a[b, H + j] = n
                h_out[b, j] = z * n + (1.0 - z) * h[b, j]
    else:
        relu = cell == RNN_RELU
        for b in range(B):
            for j in range(H):
                v = xp[b, j] + hw[b, j]
                if relu:
                    v = v if v > 0.0 else 0.0
                else:
                    v = np.tanh(v)
                a[b, j] = v
                h_out[b, j] = v


@njit(cache=True)
def layer_forward(cell, XP, Whh, peep, Hs, Cs, A, RH, tmp):
    """The time loop. Hs[0], Cs[0] hold the initial state; Hs[t+1], Cs[t+1] receive step t's state.

    XP (T, B, GH); Hs, Cs (T+1, B, H); A (T, B, GH) activated gates; RH (T, B, H) r*h for GRU full
    (any shape otherwise: only RH[0] is touched); tmp (>= B*H*max(2G, 4),) flat scratch.
    """
    T = XP.shape[0]
    for t in range(T):
        forward_step(cell, XP[t], Whh, peep, Hs[t], Cs[t], A[t], Hs[t + 1], Cs[t + 1],
                     RH[t] if cell == GRU_FULL else RH[0], tmp)


@njit(cache=True)
def layer_backward(cell, Whh, peep, Hs, Cs, A, RH, dY, dhT, dcT, dP, dpeep, dh, dc, tmp):
    """Backpropagation through the window, in exact reverse order of `layer_forward`.

    dY (T, B, H) gradient of the layer's outputs; dhT, dcT (B, H) gradient of the final state (from the
    next window: zero in truncated BPTT). Writes dP (T, B, GH) pre-activation gradients, accumulates
    dpeep (3, H) for peepholes, and leaves dh, dc (B, H) holding the gradient of the initial state.
    tmp (>= B*H*max(2G, 4),) flat scratch.
    """
    T, B, H = dY.shape
    dn = tmp[: B * H].reshape(B, H)                   # GRU full: n-block pre-activation gradient
    drz = tmp[B * H: 3 * B * H].reshape(B, 2 * H)     # GRU full: r,z-block pre-activation gradients
    dx = tmp[3 * B * H: 4 * B * H].reshape(B, H)      # GRU: gradient through a recurrent product
    has_peep = cell == LSTM and peep.shape[0] > 0
    dh[:] = dhT
    dc[:] = dcT
    for t in range(T - 1, -1, -1):
        a = A[t]
        d = dP[t]
        h = Hs[t]
        for b in range(B):
            for j in range(H):
                dh[b, j] += dY[t, b, j]
        if cell == LSTM:
            for b in range(B):
                for j in range(H):
                    i = a[b, j]
                    f = a[b, H + j]
                    g = a[b, 2 * H + j]
                    o = a[b, 3 * H + j]
                    cp = Cs[t, b, j]
                    cn = Cs[t + 1, b, j]
                    tc = np.tanh(cn)
                    dgo = dh[b, j] * tc * o * (1.0 - o)          # h' = o tanh(c'),  do/dgo = o(1-o)
                    dcn = dc[b, j] + dh[b, j] * o * (1.0 - tc * tc)  # d tanh(c') = 1 - tanh²
                    if has_peep:
                        dcn += dgo * peep[2, j]                   # go += p_o c'
                    dgi = dcn * g * i * (1.0 - i)                 # c' = f c + i g
                    dgf = dcn * cp * f * (1.0 - f)
                    dgg = dcn * i * (1.0 - g * g)
                    dcp = dcn * f
                    if has_peep:
                        dcp += dgi * peep[0, j] + dgf * peep[1, j]
                        dpeep[0, j] += dgi * cp
                        dpeep[1, j] += dgf * cp
                        dpeep[2, j] += dgo * cn
                    d[b, j] = dgi
                    d[b, H + j] = dgf
                    d[b, 2 * H + j] = dgg
                    d[b, 3 * H + j] = dgo
                    dc[b, j] = dcp
            np.dot(d, Whh, dh)                                    # dh_prev = dP W_hh
        elif cell == GRU_FULL:
            for b in range(B):
                for j in range(H):
                    z = a[b, H + j]
                    n = a[b, 2 * H + j]
                    drz[b, H + j] = dh[b, j] * (n - h[b, j]) * z * (1.0 - z)  # h' = z n + (1-z) h
                    dn[b, j] = dh[b, j] * z * (1.0 - n * n)               # n = tanh(..)
                    dh[b, j] = dh[b, j] * (1.0 - z)                       # direct path (1-z) h
            np.dot(dn, Whh[2 * H:], dx)                                   # d(r*h) = dn_pre W_hn
            for b in range(B):
                for j in range(H):
                    r = a[b, j]
                    drz[b, j] = dx[b, j] * h[b, j] * r * (1.0 - r)       # r_pre: d(r h)/dr = h
                    dh[b, j] += dx[b, j] * r
            np.dot(drz, Whh[: 2 * H], dx)                                 # through W_hr, W_hz
            for b in range(B):
                for j in range(H):
                    dh[b, j] += dx[b, j]
                    d[b, j] = drz[b, j]
                    d[b, H + j] = drz[b, H + j]
                    d[b, 2 * H + j] = dn[b, j]
        elif cell == GRU_MINIMAL:
            for b in range(B):
                for j in range(H):
                    z = a[b, j]
                    n = a[b, H + j]
                    d[b, j] = dh[b, j] * (n - h[b, j]) * z * (1.0 - z)
                    d[b, H + j] = dh[b, j] * z * (1.0 - n * n)
                    dh[b, j] = dh[b, j] * (1.0 - z)
            np.dot(d, Whh, dx)
            for b in range(B):
                for j in range(H):
                    dh[b, j] += dx[b, j]
        else:
            relu = cell == RNN_RELU
            for b in range(B):
                for j in range(H):
                    v = a[b, j]
                    if relu:
                        d[b, j] = dh[b, j] if v > 0.0 else 0.0
                    else:
                        d[b, j] = dh[b, j] * (1.0 - v * v)
            np.dot(d, Whh, dh)
