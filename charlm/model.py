"""The language model's math over one window: forward, loss and backward for B streams of T steps.

Parameters live in a dict keyed by the model file's tensor names (docs/model-format.md). The network:
    X_0 = embedding.weight[x]                                    # (T, B, E)
    X_{k+1} = layer_k(X_k ⊙ m_k)  (both directions concatenated)  # (T, B, H*dirs)
    Z = (X_L ⊙ m_L) decoder.weight^T + decoder.bias              # (T*B, V)
    loss = mean_n -log softmax(Z_n)[y_n]
m_k are dropout masks (training only; None means no dropout). The state carried between windows is one
array S (L, 2, B, H): S[k, 0] = h and S[k, 1] = c of layer k (c unused except by the LSTM).
Bidirectional layers always start from a zero state and carry none.

Layer 0 by the vocabulary (`_by_vocabulary`): when the vocabulary is smaller than the window (char
level) and the embedding is not dropped, layer 0's products over the T*B positions are done over the
V vocabulary rows instead, since X_0 = onehot(x) E:
    X_0 W_ih^T = (E W_ih^T)[x]                     (forward: a (V, GH) table, gathered)
    dW_ih = dP^T X_0 = S^T E,  dE = onehot^T dP W_ih = S W_ih,   S = onehot(x)^T dP  (V, GH)
That is the same sum in another order, and it removes 3 of the 10 large products of a 2-layer step.
"""
from __future__ import annotations

import numpy as np

from charlm.config import ModelConfig
from charlm.kernels import gemm
from charlm.kernels.cells import (GRU_FULL, LSTM, cell_code, layer_backward, layer_forward, pack_backward,
                                  pack_forward, scratch_size)
from charlm.kernels.loss import logsoftmax_nll, scatter_add_rows, softmax_xent

CELL_MIN_ROWS = 8   # a time loop's thread gets at least this many batch rows
NO_IDS = np.zeros((0, 0), np.int32)   # layer_forward's ids when the input projections are per position


def init_params(cfg: ModelConfig, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch's initialisation for the cells, U(-1/sqrt(H), 1/sqrt(H)); the embedding and the decoder
    start at U(-0.1, 0.1) (the word-language-model example's), the decoder bias at zero.
    """
    params = {}
    k = 1.0 / np.sqrt(cfg.hidden)
    for name, shape in cfg.param_shapes().items():
        if name == "embedding.weight":
            p = rng.uniform(-0.1, 0.1, shape)
        elif name == "decoder.weight":
            p = rng.uniform(-0.1, 0.1, shape)
        elif name == "decoder.bias":
            p = np.zeros(shape)
        else:
            p = rng.uniform(-k, k, shape)
        params[name] = np.ascontiguousarray(p, dtype=dtype)
    return params


def zero_state(cfg: ModelConfig, batch: int, dtype=np.float32) -> np.ndarray:
    return np.zeros((cfg.layers, 2, batch, cfg.hidden), dtype=dtype)


def _suffixes(cfg):
    return ("", "_reverse")[: cfg.directions]


def _decoder(cfg, P):
    return P["embedding.weight"] if cfg.tied else P["decoder.weight"]


def forward(cfg: ModelConfig, P, x, state=None, masks=None, for_backward=True):
    """Run the recurrent stack over x (T, B) token ids.

    Returns (Y (T, B, H*dirs) top outputs after the decoder dropout, caches for `backward` (None unless
    for_backward: then the gates are not kept), new state).
    masks: None, or a list of L+1 arrays (or None each) multiplying layer k's input (k < L) and the
    decoder's input (k = L).
    """
    T, B = x.shape
    H, G = cfg.hidden, cfg.gates
    if cfg.bidirectional and state is not None:
        raise ValueError("a bidirectional model starts every sequence from a zero state: pass state=None")
    dtype = P["embedding.weight"].dtype
    code = cell_code(cfg)
    n, rows = _split(B)
    new_state = None if cfg.bidirectional else zero_state(cfg, B, dtype)
    caches = []
    by_vocab = _by_vocabulary(cfg, x, masks)
    E = P["embedding.weight"]
    X = None if by_vocab else E[x]                                   # (T, B, E)
    for k in range(cfg.layers):
        if masks is not None and masks[k] is not None:
            X = X * masks[k]
        outs = []
        for s in _suffixes(cfg):
            b = P[f"rnn.bias_ih_l{k}{s}"] + P[f"rnn.bias_hh_l{k}{s}"]
            Wih = P[f"rnn.weight_ih_l{k}{s}"]
            if k == 0 and by_vocab:
                Xs = np.ascontiguousarray(x[::-1]) if s else x       # (T, B) ids, in processing order
                XP = input_table(E, Wih, b)[None]                    # (1, V, GH), read at the ids
                ids = Xs
            else:
                Xs = np.ascontiguousarray(X[::-1]) if s else X
                XP = np.empty((T, B, G * H), dtype)                  # x W_ih^T + b for all steps
                gemm.matmul_bias(Xs.reshape(T * B, -1), Wih.T, b, XP.reshape(T * B, G * H))
                ids = NO_IDS
            Hs = np.empty((T + 1, B, H), dtype)
            Cs = np.empty((T + 1, B, H), dtype) if cfg.cell == "lstm" else np.zeros((T + 1, 1, 1), dtype)
            if state is None or s:
                Hs[0] = 0.0
                Cs[0] = 0.0
            else:
                Hs[0] = state[k, 0]
                if cfg.cell == "lstm":
                    Cs[0] = state[k, 1]
            A = np.empty((T if for_backward else 1, B, G * H), dtype)
            RH = np.empty((T if code == GRU_FULL and for_backward else 1, B, H), dtype)
            Wf, Wf2 = pack_forward(code, P[f"rnn.weight_hh_l{k}{s}"], rows)
            tmp = np.empty((n, scratch_size(rows, H, G, Wf, Wf2)), dtype)
            layer_forward(code, XP, ids, Wf, Wf2, _peep(cfg, P, k, s, dtype), Hs, Cs, A, RH, tmp)
            outs.append(np.ascontiguousarray(Hs[:0:-1]) if s else Hs[1:])
            if for_backward:
                caches.append((Xs, Hs, Cs, A, RH))
            if new_state is not None:
                new_state[k, 0] = Hs[T]
                if cfg.cell == "lstm":
                    new_state[k, 1] = Cs[T]
        X = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
    if masks is not None and masks[cfg.layers] is not None:
        X = X * masks[cfg.layers]
    return X, caches if for_backward else None, new_state


def backward(cfg: ModelConfig, P, x, caches, dY, masks=None) -> dict[str, np.ndarray]:
    """Gradients of every recurrent and embedding parameter from dY (T, B, H*dirs), the gradient of
    `forward`'s output. The gradient of the initial state is dropped (truncated BPTT)."""
    T, B = x.shape
    H, G = cfg.hidden, cfg.gates
    dtype = dY.dtype
    code = cell_code(cfg)
    grads = {name: np.zeros_like(P[name]) for name in P}
    n, rows = _split(B)
    dh, dc = np.empty((B, H), dtype), np.empty((B, H), dtype)
    if masks is not None and masks[cfg.layers] is not None:
        dY = dY * masks[cfg.layers]                                   # dropout: d(X m) = dX m
    caches = list(caches)
    for k in range(cfg.layers - 1, -1, -1):
        dX = None
        for d, s in reversed(list(enumerate(_suffixes(cfg)))):
            Xs, Hs, Cs, A, RH = caches.pop()
            Whh = P[f"rnn.weight_hh_l{k}{s}"]
            dYs = dY[:, :, d * H:(d + 1) * H]
            dYs = np.ascontiguousarray(dYs[::-1] if s else dYs)       # (T, B, H) in processing order
            dP = np.empty((T, B, G * H), dtype)
            peep = _peep(cfg, P, k, s, dtype)
            dpeep = np.empty((n,) + peep.shape, dtype)               # one per thread
            dbias = np.empty((n, G * H), dtype)                      # one per thread
            dh[:] = 0.0                                               # truncated BPTT: no gradient
            dc[:] = 0.0                                               # from beyond the window
            Wb, Wb2 = pack_backward(code, Whh, rows)
            tmp = np.empty((n, scratch_size(rows, H, G, Wb, Wb2)), dtype)
            layer_backward(code, Wb, Wb2, peep, Hs, Cs, A, dYs, dP, dpeep, dbias, dh, dc, tmp)
            dP2 = dP.reshape(T * B, G * H)
            Wih, dWih = P[f"rnn.weight_ih_l{k}{s}"], grads[f"rnn.weight_ih_l{k}{s}"]
            if Xs.ndim == 2:                                                 # layer 0 by the vocabulary
                S = np.zeros((cfg.vocab_size, G * H), dtype)                 # S = onehot(x)^T dP
                scatter_add_rows(S, Xs.reshape(-1), dP2)
                gemm.matmul_tn_add(S, P["embedding.weight"], dWih)           # dW_ih = S^T E
                dE = np.empty((cfg.vocab_size, Wih.shape[1]), dtype)
                gemm.matmul(S, Wih, dE)                                      # dE = S W_ih
                grads["embedding.weight"] += dE
            else:
                gemm.matmul_tn_add(dP2, Xs.reshape(T * B, -1), dWih)         # dW_ih = dP^T X
            Hprev = Hs[:-1].reshape(T * B, H)
            dWhh = grads[f"rnn.weight_hh_l{k}{s}"]
            if code == GRU_FULL:                                              # n block sees r*h
                dWhh[: 2 * H] += dP2[:, : 2 * H].T @ Hprev
                dWhh[2 * H:] += dP2[:, 2 * H:].T @ RH.reshape(T * B, H)
            else:
                gemm.matmul_tn_add(dP2, Hprev, dWhh)                         # dW_hh = dP^T H_prev
            db = dbias.sum(axis=0)
            grads[f"rnn.bias_ih_l{k}{s}"] += db
            grads[f"rnn.bias_hh_l{k}{s}"] += db
            if code == LSTM and cfg.peephole:
                grads[f"rnn.weight_peep_l{k}{s}"] += dpeep.sum(axis=0)
            if Xs.ndim == 2:
                continue                                                     # dE is done
            dXs = np.empty((T, B, Wih.shape[1]), dtype)
            gemm.matmul(dP2, Wih, dXs.reshape(T * B, -1))                    # dX = dP W_ih
            if s:
                dXs = dXs[::-1]
            dX = dXs if dX is None else dX + dXs
        if dX is None:
            return grads
        if masks is not None and masks[k] is not None:
            dX = dX * masks[k]
        dY = dX
    scatter_add_rows(grads["embedding.weight"], x.reshape(-1), np.ascontiguousarray(dY).reshape(T * B, -1))
    return grads


def input_table(E, Wih, b) -> np.ndarray:
    """Layer 0's input projection of every token: E W_ih^T + b, (V, GH) for E (V, In), W_ih (GH, In)."""
    table = np.empty((E.shape[0], Wih.shape[0]), E.dtype)
    gemm.matmul_bias(E, Wih.T, b, table)
    return table


def _by_vocabulary(cfg, x, masks) -> bool:
    """Whether layer 0 runs by the vocabulary (module docstring): V at most half the T*B positions, and
    no dropout on the embedding."""
    return 2 * cfg.vocab_size <= x.size and (masks is None or masks[0] is None)


def _split(B):
    """(threads, rows per thread) for the cell kernels' time loops over B batch rows."""
    n = gemm.parts(B, CELL_MIN_ROWS)
    return n, -(-B // n)


def _peep(cfg, P, k, s, dtype):
    if cfg.cell == "lstm" and cfg.peephole:
        return P[f"rnn.weight_peep_l{k}{s}"]
    return np.zeros((0, cfg.hidden), dtype)


def logits(cfg: ModelConfig, P, Y) -> np.ndarray:
    """Z = Y decoder.weight^T + decoder.bias, (T*B, V) for Y (T, B, H*dirs)."""
    T, B, Hd = Y.shape
    Z = np.empty((T * B, cfg.vocab_size), Y.dtype)
    gemm.matmul_bias(Y.reshape(T * B, Hd), _decoder(cfg, P).T, P["decoder.bias"], Z)
    return Z


def loss_and_grads(cfg: ModelConfig, P, x, y, state=None, masks=None):
    """Mean NLL of targets y (T, B) after inputs x (T, B), its gradient for every parameter, new state."""
    T, B = x.shape
    N = T * B
    Y, caches, new_state = forward(cfg, P, x, state, masks)
    Z = logits(cfg, P, Y)                                             # (N, V)
    nll = np.empty(N, np.float64)
    softmax_xent(Z, y.reshape(-1), 1.0 / N, nll)                      # Z := dL/dZ
    Yf = Y.reshape(N, -1)
    dY = np.empty(Y.shape, Y.dtype)                                   # (T, B, H*dirs)
    gemm.matmul(Z, _decoder(cfg, P), dY.reshape(N, -1))               # dY = dZ D
    grads = backward(cfg, P, x, caches, dY, masks)
    dD = grads["embedding.weight"] if cfg.tied else grads["decoder.weight"]
    gemm.matmul_tn_add(Z, Yf, dD)                                     # dD += dZ^T Y   (V, H*dirs)
    grads["decoder.bias"] = Z.sum(axis=0)
    return float(nll.mean()), grads, new_state


def token_nll(cfg: ModelConfig, P, x, y, state=None):
    """-log p(y[t, b]) as (T, B) float64 after inputs x (T, B), and the new state. No dropout."""
    Y, _, new_state = forward(cfg, P, x, state, for_backward=False)
    Z = logits(cfg, P, Y)
    nll = np.empty(Z.shape[0], np.float64)
    logsoftmax_nll(Z, y.reshape(-1), nll)
    return nll.reshape(x.shape), new_state


def dropout_masks(cfg: ModelConfig, rng: np.random.Generator, T: int, B: int, p: float, dtype=np.float32,
                  embed_p: float = 0.0, locked: bool = False):
    """Inverted dropout masks: masks[0] for the embedding (layer 0's input; None unless embed_p > 0),
    masks[1..L] for the inputs of layers 1..L-1 and of the decoder (None unless p > 0). Each element is
    0 with probability p, else 1/(1-p). Masks are (T, B, width), one per time step, or with `locked`
    (1, B, width): one per window, the same units dropped at every step (variational dropout).
    Returns None when nothing is dropped."""
    if p <= 0.0 and embed_p <= 0.0:
        return None
    t = 1 if locked else T

    def mask(q, width):
        keep = 1.0 - q
        return ((rng.random((t, B, width), dtype=np.float32) < keep) / keep).astype(dtype)

    masks = [mask(embed_p, cfg.embed) if embed_p > 0.0 else None]
    width = cfg.hidden * cfg.directions
    for _ in range(cfg.layers):
        masks.append(mask(p, width) if p > 0.0 else None)
    return masks
