"""Recurrent cells over a whole window: forward and backward time loops with fused gate math.

The input projections of all T steps arrive precomputed (one GEMM by the caller):
    XP[t] = x_t W_ih^T + b_ih + b_hh                         # (B, G*H)
Inside the time loop only the recurrent product h W_hh^T runs, then one fused pass over the gates.
Cells and gate blocks (docs/model-format.md; σ logistic):
    RNN   (G=1):        h' = act(XP + h W_h^T),  act = tanh | relu
    LSTM  (G=4: i f g o): i = σ(.. + p_i*c)  f = σ(.. + p_f*c)  g = tanh(..)  c' = f*c + i*g
                          o = σ(.. + p_o*c')  h' = o*tanh(c')          (p = 0 without peepholes)
    GRU full (G=3: r z n): r = σ(XP_r + h W_hr^T)  z = σ(XP_z + h W_hz^T)
                           n = tanh(XP_n + (r*h) W_hn^T)  h' = z*n + (1-z)*h
    GRU minimal (G=2: z n): z = σ(XP_z + h W_hz^T)  n = tanh(XP_n + h W_hn^T)  h' = z*n + (1-z)*h
The backward returns dP, the gradient of the gate pre-activations (T, B, G*H). The caller turns it into
the weight gradients with one GEMM each over all steps:
    dW_ih = dP^T X,  db_ih = db_hh = Σ dP,  dW_hh = dP^T H_prev  (for GRU full, the n block uses R*H_prev).

Speed: the recurrent products are a few rows (a thread's share of the batch) times a weight matrix.
For such shapes OpenBLAS has kernels that skip packing the weight matrix, used when M*N*K <= 10^6
(SMALL_MNK); packing 4 MB of W_hh per step otherwise halved the speed. So the weights arrive cut into
column chunks (`column_chunks`, once per window) sized to stay under that limit, which about doubles
the product's speed (measured: bench/RESULTS.md, "Figures behind the code's design").
The elementwise math runs in small row functions over 1-D contiguous slices (one batch row, one
gate block). In that form LLVM vectorizes them (with the arithmetic tanh/σ of `activations` in float32);
one big loop touching many 2-D arrays did not vectorize and cost 20x more.
"""
import numpy as np
from numba import njit, prange

from charlm.kernels import PARALLEL, SERIAL
from charlm.kernels.activations import sigmoid, tanh

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


SMALL_MNK = 1_000_000    # OpenBLAS multiplies M x K by K x N without packing when M*N*K is at most this


def column_chunks(W, rows: int, transpose: bool = False) -> np.ndarray:
    """W (K, N), or W^T when `transpose` (W then (N, K)), as nc column chunks (nc, K, cw), the last one
    zero-padded, so that a product of `rows` rows by one chunk stays within SMALL_MNK. cw is a multiple
    of 16 (AVX-512 holds 16 floats; 8 when 16 columns are too many) chosen for the least padding, then
    the fewest chunks: 16 x 512 x 2048 takes 32 chunks of 64 columns rather than 19 of 112 (the faster
    of the two, bench/RESULTS.md). When the matrix fits whole, or not even 8 columns fit, the result is
    one chunk: the matrix itself."""
    K, N = W.shape[::-1] if transpose else W.shape
    fit = SMALL_MNK // max(1, rows * K)                  # widest chunk within the limit
    if fit >= N or fit < 8:
        return np.ascontiguousarray(W.T if transpose else W)[None]
    step = 16 if fit >= 16 else 8
    cw = min(range(step, fit // step * step + 1, step), key=lambda w: (-(-N // w) * w, -w))
    out = np.empty((-(-N // cw), K, cw), W.dtype)
    _fill_chunks(W, transpose, out)
    return out


@njit(**PARALLEL)
def _fill_chunks(W, transpose, out):
    """out[c, k, j] = M[k, c*cw + j] for M = W, or W^T when transpose; 0 past M's last column.
    Transposing reads 16 elements of a W row at a time, so the 16 output rows they go to stay in L1
    (about 8x faster than NumPy's strided copy of W^T: bench/RESULTS.md)."""
    nc, K, cw = out.shape
    N = W.shape[0] if transpose else W.shape[1]
    for c in prange(nc):
        oc = out[c]
        w = min(cw, N - c * cw)
        if transpose:
            for k0 in range(0, K, 16):
                for j in range(w):
                    src = W[c * cw + j]
                    for k in range(k0, min(K, k0 + 16)):
                        oc[k, j] = src[k]
        else:
            for k in range(K):
                for j in range(w):
                    oc[k, j] = W[k, c * cw + j]
        for k in range(K):
            for j in range(w, cw):
                oc[k, j] = 0.0


def pack_forward(cell: int, Whh, rows: int):
    """The recurrent weights (GH, H) as the forward step takes them, for products of `rows` rows:
    (chunks of W_hh^T, chunks of W_hn^T) for GRU full (its two products), else (chunks of W_hh^T, none)."""
    H = Whh.shape[1]
    if cell == GRU_FULL:
        return column_chunks(Whh[: 2 * H], rows, True), column_chunks(Whh[2 * H:], rows, True)
    return column_chunks(Whh, rows, True), np.zeros((1, 0, 0), Whh.dtype)


def pack_backward(cell: int, Whh, rows: int):
    """As `pack_forward` for the backward products d W_hh: (chunks of W_{r,z}, chunks of W_hn) for GRU
    full, else (chunks of W_hh, none)."""
    H = Whh.shape[1]
    if cell == GRU_FULL:
        return column_chunks(Whh[: 2 * H], rows), column_chunks(Whh[2 * H:], rows)
    return column_chunks(Whh, rows), np.zeros((1, 0, 0), Whh.dtype)


@njit(**SERIAL)
def scratch_size(rows, H, G, W1, W2):
    """Scratch length a step of `rows` rows needs with packed weights W1, W2: the products' results,
    then room for their chunks."""
    return rows * (H * max(2 * G, 4) + max(W1.shape[0] * W1.shape[2], W2.shape[0] * W2.shape[2]))


@njit(**SERIAL)
def _dot(A, Wc, out, tmp):
    """out (M, N) = A (M, K) @ W, W (K, N) given as column chunks Wc (nc, K, cw) (`column_chunks`);
    tmp holds the chunks' results (>= nc*M*cw)."""
    M, N = out.shape
    nc, K, cw = Wc.shape
    if nc == 1 and cw == N:
        np.dot(A, Wc[0], out)
        return
    S = tmp[: nc * M * cw].reshape(nc, M, cw)
    for c in range(nc):
        np.dot(A, Wc[c], S[c])
    for c in range(nc):
        j0 = c * cw
        w = min(cw, N - j0)
        for m in range(M):
            out[m, j0: j0 + w] = S[c, m, :w]


# ----------------------------------------------------------------------------- row functions (1-D)

@njit(**SERIAL)
def _add(out, x, y):
    for j in range(out.shape[0]):
        out[j] = x[j] + y[j]


@njit(**SERIAL)
def _iadd(out, x):
    for j in range(out.shape[0]):
        out[j] += x[j]


@njit(**SERIAL)
def _sigmoid_(x):
    for j in range(x.shape[0]):
        x[j] = sigmoid(x[j])


@njit(**SERIAL)
def _tanh_(x):
    for j in range(x.shape[0]):
        x[j] = tanh(x[j])


@njit(**SERIAL)
def _relu_(x):
    for j in range(x.shape[0]):
        x[j] = max(x[j], 0.0)


@njit(**SERIAL)
def _mul(out, x, y):
    for j in range(out.shape[0]):
        out[j] = x[j] * y[j]


@njit(**SERIAL)
def _lstm(xp, hw, c, a, c_out, h_out):
    """One batch row, one pass: pre-activations xp + hw (GH,) -> gates a = (i, f, g, o) (GH,),
    c' = f*c + i*g,  h' = o*tanh(c')."""
    H = c.shape[0]
    for j in range(H):
        i = sigmoid(xp[j] + hw[j])
        f = sigmoid(xp[H + j] + hw[H + j])
        g = tanh(xp[2 * H + j] + hw[2 * H + j])
        o = sigmoid(xp[3 * H + j] + hw[3 * H + j])
        a[j], a[H + j], a[2 * H + j], a[3 * H + j] = i, f, g, o
        cn = f * c[j] + i * g
        c_out[j] = cn
        h_out[j] = o * tanh(cn)


@njit(**SERIAL)
def _lstm_peephole(i, f, g, o, p, c, c_out, h_out):
    """Pre-activations i, f, g, o in, gates out: i = σ(i + p_i c), f = σ(f + p_f c), g = tanh(g),
    c' = f c + i g, o = σ(o + p_o c'), h' = o tanh(c')."""
    for j in range(c.shape[0]):
        cp = c[j]
        ij = sigmoid(i[j] + p[0, j] * cp)
        fj = sigmoid(f[j] + p[1, j] * cp)
        gj = tanh(g[j])
        cn = fj * cp + ij * gj
        oj = sigmoid(o[j] + p[2, j] * cn)
        i[j], f[j], g[j], o[j] = ij, fj, gj, oj
        c_out[j] = cn
        h_out[j] = oj * tanh(cn)


@njit(**SERIAL)
def _interpolate(z, n, h, h_out):
    """h' = z*n + (1-z)*h."""
    for j in range(h.shape[0]):
        h_out[j] = z[j] * n[j] + (1.0 - z[j]) * h[j]


@njit(**SERIAL)
def _lstm_backward(i, f, g, o, c, cn, dh, dc, di, df, dg, do):
    """From dh (of h') and dc (of c') to the gate pre-activation gradients; dc becomes d c_prev.

    h' = o tanh(c'): do = dh tanh(c') o(1-o),  dc' = dc + dh o (1 - tanh²(c'))
    c' = f c + i g:  di = dc' g i(1-i),  df = dc' c f(1-f),  dg = dc' i (1-g²),  dc_prev = dc' f
    """
    for j in range(c.shape[0]):
        tc = tanh(cn[j])
        do[j] = dh[j] * tc * o[j] * (1.0 - o[j])
        dcn = dc[j] + dh[j] * o[j] * (1.0 - tc * tc)
        di[j] = dcn * g[j] * i[j] * (1.0 - i[j])
        df[j] = dcn * c[j] * f[j] * (1.0 - f[j])
        dg[j] = dcn * i[j] * (1.0 - g[j] * g[j])
        dc[j] = dcn * f[j]


@njit(**SERIAL)
def _lstm_peephole_backward(i, f, g, o, p, c, cn, dh, dc, di, df, dg, do, dp):
    """As `_lstm_backward`, plus the peephole paths: o_pre += p_o c', i_pre += p_i c, f_pre += p_f c;
    dp (3, H) accumulates dp_i += di c, dp_f += df c, dp_o += do c'."""
    for j in range(c.shape[0]):
        tc = tanh(cn[j])
        doj = dh[j] * tc * o[j] * (1.0 - o[j])
        dcn = dc[j] + dh[j] * o[j] * (1.0 - tc * tc) + doj * p[2, j]
        dij = dcn * g[j] * i[j] * (1.0 - i[j])
        dfj = dcn * c[j] * f[j] * (1.0 - f[j])
        dg[j] = dcn * i[j] * (1.0 - g[j] * g[j])
        dc[j] = dcn * f[j] + dij * p[0, j] + dfj * p[1, j]
        dp[0, j] += dij * c[j]
        dp[1, j] += dfj * c[j]
        dp[2, j] += doj * cn[j]
        di[j], df[j], do[j] = dij, dfj, doj


@njit(**SERIAL)
def _interpolate_backward(z, n, h, dh, dz, dn):
    """h' = z n + (1-z) h with z = σ(.), n = tanh(.): dz = dh (n-h) z(1-z), dn = dh z (1-n²);
    dh becomes the direct part of d h_prev, dh (1-z)."""
    for j in range(h.shape[0]):
        dz[j] = dh[j] * (n[j] - h[j]) * z[j] * (1.0 - z[j])
        dn[j] = dh[j] * z[j] * (1.0 - n[j] * n[j])
        dh[j] = dh[j] * (1.0 - z[j])


@njit(**SERIAL)
def _reset_backward(r, h, drh, dr, dh):
    """rh = r*h with r = σ(.): dr = drh h r(1-r), dh += drh r."""
    for j in range(h.shape[0]):
        dr[j] = drh[j] * h[j] * r[j] * (1.0 - r[j])
        dh[j] += drh[j] * r[j]


@njit(**SERIAL)
def _act_backward(v, dh, d, relu):
    """h' = act(pre): d = dh (1-h'²) for tanh, dh [h' > 0] for relu."""
    for j in range(v.shape[0]):
        if relu:
            d[j] = dh[j] if v[j] > 0.0 else 0.0
        else:
            d[j] = dh[j] * (1.0 - v[j] * v[j])


# ----------------------------------------------------------------------------- steps and windows

@njit(**SERIAL)
def forward_step(cell, xp, ix, Wf, Wf2, peep, h, c, a, h_out, c_out, rh, tmp):
    """One step for a batch: state (h, c) -> (h_out, c_out).

    xp (R, GH) input projections with both biases, batch row b's being xp[ix[b]] (ix (B,): the rows in
    order, or token ids when xp is layer 0's table of every token); Wf, Wf2 the recurrent weights from
    `pack_forward`; peep (3, H) or (0, H); h, c (B, H) previous state; a (B, GH) out: activated gates;
    rh (B, H) out: r*h (GRU full only); tmp (>= scratch_size(B, ..),) flat scratch for the recurrent
    products.
    """
    B, H = h.shape
    GH = a.shape[1]
    chunks = tmp[B * H * max(2 * (GH // H), 4):]
    if cell == GRU_FULL:
        hr = tmp[: B * 2 * H].reshape(B, 2 * H)
        _dot(h, Wf, hr, chunks)                                      # (B, 2H) h W_{r,z}^T
        for b in range(B):
            _add(a[b, : 2 * H], xp[ix[b], : 2 * H], hr[b])
            _sigmoid_(a[b, : 2 * H])                                 # r, z
            _mul(rh[b], a[b, :H], h[b])                              # r*h
        hn = tmp[: B * H].reshape(B, H)
        _dot(rh, Wf2, hn, chunks)                                    # (B, H) (r*h) W_hn^T
        for b in range(B):
            _add(a[b, 2 * H:], xp[ix[b], 2 * H:], hn[b])
            _tanh_(a[b, 2 * H:])                                     # n
            _interpolate(a[b, H: 2 * H], a[b, 2 * H:], h[b], h_out[b])
        return
    hw = tmp[: B * GH].reshape(B, GH)
    _dot(h, Wf, hw, chunks)                                          # (B, GH) h W_hh^T
    for b in range(B):
        ab = a[b]
        if cell == LSTM and peep.shape[0] == 0:
            _lstm(xp[ix[b]], hw[b], c[b], ab, c_out[b], h_out[b])
            continue
        _add(ab, xp[ix[b]], hw[b])                                   # pre-activations
        if cell == LSTM:
            _lstm_peephole(ab[:H], ab[H: 2 * H], ab[2 * H: 3 * H], ab[3 * H:], peep, c[b], c_out[b], h_out[b])
        elif cell == GRU_MINIMAL:
            _sigmoid_(ab[:H])                                        # z
            _tanh_(ab[H:])                                           # n
            _interpolate(ab[:H], ab[H:], h[b], h_out[b])
        else:
            if cell == RNN_RELU:
                _relu_(ab)
            else:
                _tanh_(ab)
            h_out[b, :] = ab


@njit(**PARALLEL)
def layer_forward(cell, XP, ids, Wf, Wf2, peep, Hs, Cs, A, RH, tmp):
    """The time loop. Hs[0], Cs[0] hold the initial state; Hs[t+1], Cs[t+1] receive step t's state.

    XP (T, B, GH) the input projections, ids (0, 0); or for layer 0 by the vocabulary, XP (1, V, GH) the
    projection of every token and ids (T, B) the tokens, whose rows are read in place. Wf, Wf2 from
    `pack_forward` for ceil(B/n) rows; Hs, Cs (T+1, B, H) (Cs (T+1, 1, 1) unless LSTM); A (T, B, GH)
    activated gates and RH (T, B, H) r*h for GRU full, as the backward needs them, or (1, B, ..) each:
    scratch overwritten at every step (evaluation; RH of other cells); tmp (n, >= scratch_size(ceil(B/n), ..)) scratch.
    The batch rows are independent for the whole window, so n threads each run the time loop over
    their own rows: no synchronisation between steps.
    """
    T, B = Hs.shape[0] - 1, Hs.shape[1]
    n = tmp.shape[0]
    rows = np.arange(B).astype(ids.dtype)
    for ch in prange(n):
        b0, b1 = B * ch // n, B * (ch + 1) // n
        for t in range(T):
            ta = t if A.shape[0] == T else 0
            tr = t if RH.shape[0] == T else 0
            if ids.shape[0] == 0:
                xp, ix = XP[t, b0:b1], rows[: b1 - b0]
            else:
                xp, ix = XP[0], ids[t, b0:b1]
            forward_step(cell, xp, ix, Wf, Wf2, peep, Hs[t, b0:b1], Cs[t, b0:b1], A[ta, b0:b1],
                         Hs[t + 1, b0:b1], Cs[t + 1, b0:b1], RH[tr, b0:b1], tmp[ch])


@njit(**PARALLEL)
def layer_backward(cell, Wb, Wb2, peep, Hs, Cs, A, dY, dP, dpeep, dbias, dh, dc, tmp):
    """Backpropagation through the window, in exact reverse order of `layer_forward`, n threads each on
    their own batch rows.

    Wb, Wb2 from `pack_backward` for ceil(B/n) rows; dY (T, B, H) gradient of the layer's outputs;
    dh, dc (B, H) in: gradient of the final state (zero in truncated BPTT), out: gradient of the
    initial state. Writes dP (T, B, GH) pre-activation gradients; dpeep (n, 3, H) receives each thread's peephole gradient and dbias (n, GH) each
    thread's Σ_t Σ_b dP[t, b] (the bias gradient, summed while the rows are in cache).
    tmp (n, >= scratch_size(ceil(B/n), ..)) scratch.
    """
    B = dY.shape[1]
    n = tmp.shape[0]
    dpeep[:] = 0.0
    dbias[:] = 0.0
    for ch in prange(n):
        _window_backward(cell, Wb, Wb2, peep, Hs, Cs, A, dY, dP, dpeep[ch], dbias[ch], dh, dc, tmp[ch],
                         B * ch // n, B * (ch + 1) // n)


@njit(**SERIAL)
def _window_backward(cell, Wb, Wb2, peep, Hs, Cs, A, dY, dP, dpeep, dbias, dh_all, dc_all, tmp, b0, b1):
    """The backward time loop for batch rows b0..b1-1 (arguments as in `layer_backward`)."""
    T = dY.shape[0]
    H = dY.shape[2]
    B = b1 - b0
    dh = dh_all[b0:b1]                                # (B, H) d h_t, flowing back in time
    dc = dc_all[b0:b1]                                # (B, H) d c_t (LSTM)
    dx = tmp[: B * H].reshape(B, H)                   # gradient through a recurrent product (GRU)
    chunks = tmp[B * H * max(2 * (dP.shape[2] // H), 4):]
    has_peep = cell == LSTM and peep.shape[0] > 0
    for t in range(T - 1, -1, -1):
        a = A[t, b0:b1]
        d = dP[t, b0:b1]
        h = Hs[t, b0:b1]
        dy = dY[t, b0:b1]
        for b in range(B):
            _iadd(dh[b], dy[b])
        if cell == LSTM:
            cp = Cs[t, b0:b1]
            cn = Cs[t + 1, b0:b1]
            for b in range(B):
                ab, db = a[b], d[b]
                if has_peep:
                    _lstm_peephole_backward(ab[:H], ab[H: 2 * H], ab[2 * H: 3 * H], ab[3 * H:], peep, cp[b], cn[b],
                                            dh[b], dc[b], db[:H], db[H: 2 * H], db[2 * H: 3 * H], db[3 * H:], dpeep)
                else:
                    _lstm_backward(ab[:H], ab[H: 2 * H], ab[2 * H: 3 * H], ab[3 * H:], cp[b], cn[b],
                                   dh[b], dc[b], db[:H], db[H: 2 * H], db[2 * H: 3 * H], db[3 * H:])
            _dot(d, Wb, dh, chunks)                                   # dh_prev = dP W_hh
        elif cell == GRU_FULL:
            dn = tmp[B * H: 2 * B * H].reshape(B, H)                  # n-block pre-activation gradient
            for b in range(B):
                _interpolate_backward(a[b, H: 2 * H], a[b, 2 * H:], h[b], dh[b], d[b, H: 2 * H], dn[b])
                d[b, 2 * H:] = dn[b]
            _dot(dn, Wb2, dx, chunks)                                 # d(r*h) = dn_pre W_hn
            drz = tmp[B * H: 3 * B * H].reshape(B, 2 * H)             # r,z-block gradients (dn is done)
            for b in range(B):
                _reset_backward(a[b, :H], h[b], dx[b], d[b, :H], dh[b])
                drz[b] = d[b, : 2 * H]
            _dot(drz, Wb, dx, chunks)                                 # through W_hr, W_hz
            for b in range(B):
                _iadd(dh[b], dx[b])
        elif cell == GRU_MINIMAL:
            for b in range(B):
                _interpolate_backward(a[b, :H], a[b, H:], h[b], dh[b], d[b, :H], d[b, H:])
            _dot(d, Wb, dx, chunks)
            for b in range(B):
                _iadd(dh[b], dx[b])
        else:
            for b in range(B):
                _act_backward(a[b], dh[b], d[b], cell == RNN_RELU)
            _dot(d, Wb, dh, chunks)
        for b in range(B):
            _iadd(dbias, d[b])                                        # db = Σ dP
