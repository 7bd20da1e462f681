"""Naive float64 NumPy reference for charlm's models (format "charlm/1").

Written from docs/model-format.md, section "Cells" and "Probabilities", to be read, not to be
fast: one time step at a time, no numba, no charlm code except ModelConfig (for the tensor names and
shapes). The tests compare charlm's kernels, trainer and CLI numbers against these functions.

Conventions
- W: dict tensor name -> array, names exactly as in the spec (`embedding.weight`, `rnn.weight_ih_l0`, ...).
  Arrays of any float dtype (or CPU torch tensors) are accepted; everything is computed in float64.
- Batched shapes: inputs X are (T, B, In), hidden states h and c are (B, H), token ids are (T, B).
- A gate pre-activation of block j is `x @ W_i[j].T + h @ W_h[j].T + b_ih[j] + b_hh[j]`, i.e. the spec's
  `W_i x + b_i + W_h h + b_h` for each row x of the batch.
- state: a list with one (h, c) pair per layer for unidirectional models, None meaning all zeros.
  c is carried for every cell so that the state has one shape; it stays zero except for the LSTM.
  Bidirectional layers have no carried state: they always start from zero (rnn_forward returns None).
"""
from __future__ import annotations

import numpy as np

from charlm.config import ModelConfig

__all__ = [
    "sigmoid", "cell_step", "layer_forward", "rnn_forward", "logits", "log_softmax",
    "lm_token_logprobs", "lm_nll", "stream_nll", "random_params", "torch_stream_nll",
]


def sigmoid(x):
    """The logistic function 1 / (1 + exp(-x)), elementwise, without overflow warnings."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _get(W, name):
    return np.asarray(W[name], dtype=np.float64)


def _blocks(W, k, suffix, G):
    """The G gate blocks of layer k: lists of W_i (H, In), W_h (H, H), b_i (H,), b_h (H,)."""
    Wi = _get(W, f"rnn.weight_ih_l{k}{suffix}")
    Wh = _get(W, f"rnn.weight_hh_l{k}{suffix}")
    bi = _get(W, f"rnn.bias_ih_l{k}{suffix}")
    bh = _get(W, f"rnn.bias_hh_l{k}{suffix}")
    H = Wh.shape[1]
    assert Wi.shape[0] == G * H and Wh.shape == (G * H, H) and bi.shape == bh.shape == (G * H,)
    rows = [slice(j * H, (j + 1) * H) for j in range(G)]
    return [Wi[r] for r in rows], [Wh[r] for r in rows], [bi[r] for r in rows], [bh[r] for r in rows]


def cell_step(cfg: ModelConfig, W, k: int, suffix: str, x, h, c):
    """One time step of layer k (suffix "" or "_reverse") for a batch.

    x (B, In), h (B, H), c (B, H) or None -> (h', c'), both (B, H). For cells other than the LSTM, c is
    ignored and c' is zeros.
    """
    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    c = np.zeros_like(h) if c is None else np.asarray(c, dtype=np.float64)
    Wi, Wh, bi, bh = _blocks(W, k, suffix, cfg.gates)

    def ix(j):  # input part of block j: W_i x + b_i
        return x @ Wi[j].T + bi[j]

    def hh(j, v):  # hidden part of block j applied to v: W_h v + b_h
        return v @ Wh[j].T + bh[j]

    if cfg.cell == "rnn":
        a = ix(0) + hh(0, h)
        if cfg.activation == "tanh":
            h_new = np.tanh(a)
        elif cfg.activation == "relu":
            h_new = np.maximum(a, 0.0)
        else:
            raise ValueError(f"unknown activation {cfg.activation!r}")
        return h_new, np.zeros_like(h)

    if cfg.cell == "lstm":
        # blocks i, f, g, o
        a_i = ix(0) + hh(0, h)
        a_f = ix(1) + hh(1, h)
        a_g = ix(2) + hh(2, h)
        a_o = ix(3) + hh(3, h)
        if cfg.peephole:
            P = _get(W, f"rnn.weight_peep_l{k}{suffix}")  # rows p_i, p_f, p_o
            a_i = a_i + P[0] * c
            a_f = a_f + P[1] * c
        i = sigmoid(a_i)
        f = sigmoid(a_f)
        g = np.tanh(a_g)
        c_new = f * c + i * g
        if cfg.peephole:
            a_o = a_o + P[2] * c_new  # the output gate looks at the new cell
        o = sigmoid(a_o)
        return o * np.tanh(c_new), c_new

    if cfg.cell == "gru":
        if cfg.gru_variant == "full":
            # blocks r, z, n; r multiplies h BEFORE the matrix, z weights the candidate
            r = sigmoid(ix(0) + hh(0, h))
            z = sigmoid(ix(1) + hh(1, h))
            n = np.tanh(ix(2) + hh(2, r * h))
        elif cfg.gru_variant == "minimal":
            # blocks z, n
            z = sigmoid(ix(0) + hh(0, h))
            n = np.tanh(ix(1) + hh(1, h))
        else:
            raise ValueError(f"unknown gru_variant {cfg.gru_variant!r}")
        return z * n + (1.0 - z) * h, np.zeros_like(h)

    raise ValueError(f"unknown cell {cfg.cell!r}")


def layer_forward(cfg: ModelConfig, W, k: int, X, h0=None, c0=None, reverse: bool = False):
    """Run layer k over X (T, B, In) from (h0, c0) (None = zeros).

    reverse=False: t = 0..T-1 with the plain weights. reverse=True: t = T-1..0 with the `_reverse`
    weights; Y[t] is still the output at original position t.
    Returns (Y (T, B, H), h_T, c_T), where h_T, c_T is the state after the last processed step.
    """
    X = np.asarray(X, dtype=np.float64)
    T, B, _ = X.shape
    H = cfg.hidden
    h = np.zeros((B, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    c = np.zeros((B, H)) if c0 is None else np.asarray(c0, dtype=np.float64)
    suffix = "_reverse" if reverse else ""
    Y = np.zeros((T, B, H))
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        h, c = cell_step(cfg, W, k, suffix, X[t], h, c)
        Y[t] = h
    return Y, h, c


def rnn_forward(cfg: ModelConfig, W, X, state=None):
    """Stack the layers over X (T, B, E): layer k's output is layer k+1's input.

    Unidirectional: state is a list of (h, c) per layer (None = zeros); returns (Y_top (T, B, H),
    new_state). Bidirectional: every layer outputs concat([forward, reverse], axis=-1) (T, B, 2H), both
    directions start from zero, state must be None and the returned state is None.
    """
    X = np.asarray(X, dtype=np.float64)
    T, B, _ = X.shape
    if cfg.bidirectional:
        if state is not None:
            raise ValueError("bidirectional models carry no state")
        inp = X
        for k in range(cfg.layers):
            Yf, _, _ = layer_forward(cfg, W, k, inp, reverse=False)
            Yr, _, _ = layer_forward(cfg, W, k, inp, reverse=True)
            inp = np.concatenate([Yf, Yr], axis=-1)
        return inp, None

    if state is None:
        state = [(None, None)] * cfg.layers
    assert len(state) == cfg.layers
    new_state = []
    inp = X
    for k in range(cfg.layers):
        h0, c0 = state[k]
        inp, hT, cT = layer_forward(cfg, W, k, inp, h0, c0)
        new_state.append((hT, cT))
    return inp, new_state


def logits(cfg: ModelConfig, W, Y):
    """decoder.weight @ h + decoder.bias for every h in Y (..., H*dirs) -> (..., V).

    With tied weights the decoder is embedding.weight.
    """
    D = _get(W, "embedding.weight" if cfg.tied else "decoder.weight")
    return np.asarray(Y, dtype=np.float64) @ D.T + _get(W, "decoder.bias")


def log_softmax(z):
    """Log-softmax over the last axis, with the maximum subtracted first."""
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _lm_forward(cfg, W, x, y, state):
    x = np.asarray(x)
    y = np.asarray(y)
    assert x.ndim == 2 and x.shape == y.shape, "x and y are (T, B) token ids"
    E = _get(W, "embedding.weight")
    X = E[x]  # (T, B, E)
    Y, new_state = rnn_forward(cfg, W, X, state)
    lp = log_softmax(logits(cfg, W, Y))  # (T, B, V)
    T, B = y.shape
    tok = lp[np.arange(T)[:, None], np.arange(B)[None, :], y]  # tok[t, b] = lp[t, b, y[t, b]]
    return tok, new_state


def lm_token_logprobs(cfg: ModelConfig, W, x, y, state=None):
    """log p(y[t, b] | x[0..t, b], state) for inputs x (T, B) and targets y (T, B) -> (T, B)."""
    return _lm_forward(cfg, W, x, y, state)[0]


def lm_nll(cfg: ModelConfig, W, x, y, state=None):
    """Total negative log-likelihood of the targets y (T, B) given inputs x (T, B) -> (nll, new_state)."""
    tok, new_state = _lm_forward(cfg, W, x, y, state)
    return float(-tok.sum()), new_state


def _stream_xy(cfg, ids):
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    x = np.concatenate([[cfg.eos_id], ids[:-1]]).astype(np.int64)
    return x[:, None], ids[:, None]


def stream_nll(cfg: ModelConfig, W, ids):
    """The spec's stream semantics: ids (1-D, without a leading EOS) read from a zero state with EOS as
    the first input; every id is predicted. Returns (total nll, n = len(ids))."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        return 0.0, 0
    x, y = _stream_xy(cfg, ids)
    nll, _ = lm_nll(cfg, W, x, y)
    return nll, len(ids)


def random_params(cfg: ModelConfig, rng, scale: float = 0.5):
    """Every tensor of cfg.param_shapes(), float64, uniform in [-scale, scale]. rng: Generator or seed."""
    rng = np.random.default_rng(rng)
    return {name: rng.uniform(-scale, scale, size=shape) for name, shape in cfg.param_shapes().items()}


def torch_stream_nll(cfg: ModelConfig, W, ids):
    """stream_nll computed by PyTorch's nn.RNN / nn.LSTM in float64 (rnn, and lstm without peepholes,
    unidirectional). The rnn.* tensors are loaded with a strict load_state_dict. Returns None when torch
    is not importable; raises ValueError for configurations nn.RNN / nn.LSTM do not implement."""
    try:
        import torch
    except ImportError:
        return None
    if cfg.cell not in ("rnn", "lstm") or (cfg.cell == "lstm" and cfg.peephole) or cfg.bidirectional:
        raise ValueError(f"torch has no equivalent of {cfg.describe()}")
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        return 0.0
    if cfg.cell == "lstm":
        mod = torch.nn.LSTM(cfg.embed, cfg.hidden, cfg.layers)
    else:
        mod = torch.nn.RNN(cfg.embed, cfg.hidden, cfg.layers, nonlinearity=cfg.activation)
    mod = mod.double()
    sd = {name[len("rnn."):]: torch.as_tensor(np.asarray(v, dtype=np.float64))
          for name, v in W.items() if name.startswith("rnn.")}
    mod.load_state_dict(sd, strict=True)
    E = torch.as_tensor(_get(W, "embedding.weight"))
    D = E if cfg.tied else torch.as_tensor(_get(W, "decoder.weight"))
    b = torch.as_tensor(_get(W, "decoder.bias"))
    x, y = _stream_xy(cfg, ids)
    with torch.no_grad():
        out, _ = mod(E[torch.as_tensor(x)])  # (T, 1, H), zero initial state
        z = out[:, 0] @ D.T + b
        nll = torch.nn.functional.cross_entropy(z, torch.as_tensor(y[:, 0]), reduction="sum")
    return float(nll)
