"""The many-to-one classifier's math: forward, loss and backward for a batch of variable-length texts.

Each text enters as its token ids after one EOS (the LM's start of a line, so an encoder taken from a
language model reads a text as it learned to), x_b = (EOS, t_1, .., t_n). For B texts packed
(charlm.packed, sorted by length):
    X = embedding.weight[x] ⊙ m_0                                   # (N, E)
    out, final = stack(X; masks m_1..m_{L-1} between layers)         # (N, H*dirs), (L, dirs, 2, B, H)
    v_b = pool(out, final)_b ⊙ m_v                                   # (B, H*dirs)
        last: [final[L-1, 0, h]_b, final[L-1, 1, h]_b]   (each direction's final state)
        mean: Σ_t out[t, b] / L_b        max: max_t out[t, b] (per unit)
    z = v head.weight^T + head.bias                                  # (B, C)
    q_b = (1 - ε) onehot(y_b) + ε / C                                (label smoothing; ε = 0: one-hot)
    loss = Σ_b w_{y_b} (-q_b · log softmax(z_b)) / Σ_b w_{y_b}      (w = 1 unless class weights)
    dL/dz_b = w_{y_b} (softmax(z_b) - q_b) / Σ_b w_{y_b}
The masks m are inverted dropout (training only). The backward runs in exact reverse order.
Label smoothing (Szegedy et al. 2016) keeps the logits of a label that 52 % of the names carry from
growing without bound, which leaves the small labels more room.
"""
from __future__ import annotations

import numpy as np

from charlm import packed
from charlm.config import ClassifyConfig
from charlm.kernels.loss import scatter_add_rows


def init_params(cfg: ClassifyConfig, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for the cells, nn.Linear's U(-1/sqrt(in),
    1/sqrt(in)) for the head (zero bias), nn.Embedding's N(0, 1) for the embedding. The LM's U(-0.1, 0.1)
    embedding learned slower here: on names, a 2x128 bi-LSTM for 120 s reached validation accuracy 0.777
    with it and 0.807 with N(0, 1) (docs/classify.md)."""
    params = {}
    k = 1.0 / np.sqrt(cfg.hidden)
    for name, shape in cfg.param_shapes().items():
        if name == "embedding.weight":
            p = rng.normal(0.0, 1.0, shape)
        elif name == "head.weight":
            p = rng.uniform(-1.0, 1.0, shape) / np.sqrt(shape[1])
        elif name == "head.bias":
            p = np.zeros(shape)
        else:
            p = rng.uniform(-k, k, shape)
        params[name] = np.ascontiguousarray(p, dtype=dtype)
    return params


def inputs(seqs, eos_id: int):
    """Token id arrays (one per text, without the EOS) -> (Layout, packed ids (N,) int32)."""
    full = [np.concatenate(([eos_id], np.asarray(s, np.int32))).astype(np.int32) for s in seqs]
    layout = packed.Layout.from_lengths([len(s) for s in full])
    return layout, layout.pack(full)


def _groups(layout):
    """Packed rows grouped by sorted sequence: (rows in sequence order (N,), group starts (B,))."""
    by_seq = np.argsort(layout.seq_of_row, kind="stable")
    starts = np.concatenate(([0], np.cumsum(layout.lengths)[:-1]))
    return by_seq, starts


def pool(cfg: ClassifyConfig, out, final, layout):
    """v (B, H*dirs) in sorted order, and what `pool_backward` needs."""
    if cfg.pooling == "last":
        v = np.concatenate([final[cfg.layers - 1, d, 0] for d in range(cfg.directions)], axis=1)
        return v, None
    by_seq, starts = _groups(layout)
    rows = out[by_seq]                                                    # (N, Hd) grouped by sequence
    if cfg.pooling == "mean":
        v = np.add.reduceat(rows, starts, axis=0) / layout.lengths[:, None].astype(out.dtype)
        return v.astype(out.dtype), (by_seq,)
    arg = np.stack([rows[a:a + n].argmax(axis=0) + a                      # (B, Hd) the first maximum's
                    for a, n in zip(starts, layout.lengths)])             # grouped row, per unit
    return np.take_along_axis(rows, arg, axis=0), (by_seq, arg)


def pool_backward(cfg: ClassifyConfig, dv, saved, layout, N):
    """dv (B, H*dirs) -> (dout (N, H*dirs) or None, dfinal (L, dirs, 2, B, H) or None)."""
    H, dirs = cfg.hidden, cfg.directions
    if cfg.pooling == "last":
        dfinal = np.zeros((cfg.layers, dirs, 2, layout.B, H), dv.dtype)
        for d in range(dirs):
            dfinal[cfg.layers - 1, d, 0] = dv[:, d * H:(d + 1) * H]
        return None, dfinal
    by_seq = saved[0]
    if cfg.pooling == "mean":
        grouped = np.repeat(dv / layout.lengths[:, None].astype(dv.dtype), layout.lengths, axis=0)
    else:                                   # the gradient goes to the maximum of each unit
        grouped = np.zeros((N, dv.shape[1]), dv.dtype)
        np.put_along_axis(grouped, saved[1], dv, axis=0)
    dout = np.empty((N, dv.shape[1]), dv.dtype)
    dout[by_seq] = grouped
    return dout, None


def dropout_masks(cfg: ClassifyConfig, rng, layout, p: float, embed_p: float = 0.0, dtype=np.float32):
    """Inverted dropout masks: [m_0 (N, E) or None, m_1 .. m_{L-1} (N, H*dirs) or None], and m_v
    (B, H*dirs) or None for the pooled vector. Each element 0 with probability p, else 1/(1-p)."""
    def mask(q, shape):
        keep = 1.0 - q
        return ((rng.random(shape, dtype=np.float32) < keep) / keep).astype(dtype)

    width = cfg.hidden * cfg.directions
    layers = [mask(embed_p, (layout.N, cfg.embed)) if embed_p > 0 else None]
    layers += [mask(p, (layout.N, width)) if p > 0 else None for _ in range(cfg.layers - 1)]
    head = mask(p, (layout.B, width)) if p > 0 else None
    return (None if all(m is None for m in layers) else layers), head


def logits(cfg: ClassifyConfig, P, layout, ids, masks=None, head_mask=None, for_backward=False):
    """z (B, C) in sorted order (layout.unsort for the caller's), and the cache for `backward`."""
    X = P["embedding.weight"][ids]                                          # (N, E)
    out, final, cache = packed.forward(cfg, P, X, layout, masks=masks, for_backward=for_backward)
    v, saved = pool(cfg, out, final, layout)
    if head_mask is not None:
        v = v * head_mask
    z = v @ P["head.weight"].T + P["head.bias"]                             # (B, C)
    return z, (cache, v, saved, head_mask, ids, out.shape[0])


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def loss_and_grads(cfg: ClassifyConfig, P, layout, ids, y, weights=None, masks=None, head_mask=None,
                   smoothing: float = 0.0):
    """Weighted mean cross-entropy of labels y (B,) (caller's order) and its gradient for every parameter.

    weights: None or (C,) per-class weights w; smoothing: ε of the smoothed target q (module docstring)."""
    z, (cache, v, saved, head_mask, ids, N) = logits(cfg, P, layout, ids, masks, head_mask, for_backward=True)
    ys = y[layout.order]                                                    # labels in sorted order
    B = layout.B
    w = np.ones(B) if weights is None else np.asarray(weights, np.float64)[ys]
    logp = log_softmax(z.astype(np.float64))                                 # (B, C)
    q = np.full(logp.shape, smoothing / cfg.labels)                          # (B, C) the target
    q[np.arange(B), ys] += 1.0 - smoothing
    loss = float(-(w * (q * logp).sum(axis=1)).sum() / w.sum())
    dz = np.exp(logp) - q                                                    # softmax - q
    dz = (dz * (w / w.sum())[:, None]).astype(z.dtype)                      # dL/dz
    grads = {"head.weight": dz.T @ v, "head.bias": dz.sum(axis=0)}          # (C, Hd), (C,)
    dv = dz @ P["head.weight"]                                              # (B, Hd)
    if head_mask is not None:
        dv = dv * head_mask
    dout, dfinal = pool_backward(cfg, dv, saved, layout, N)
    dX, stack_grads, _ = packed.backward(cfg, P, cache, dout, dfinal)
    grads.update(stack_grads)
    dE = np.zeros_like(P["embedding.weight"])
    scatter_add_rows(dE, ids, np.ascontiguousarray(dX, dtype=dE.dtype))      # dE[x_n] += dX_n
    grads["embedding.weight"] = dE
    return loss, grads


def probabilities(cfg: ClassifyConfig, P, seqs, eos_id: int, batch: int = 256):
    """p(label | text) (S, C) float64 for token id arrays `seqs`, `batch` texts at a time, similar
    lengths together; rows in the order of `seqs`."""
    S = len(seqs)
    out = np.empty((S, cfg.labels), np.float64)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for i in range(0, S, batch):
        idx = order[i:i + batch]
        layout, ids = inputs([seqs[j] for j in idx], eos_id)
        z, _ = logits(cfg, P, layout, ids)
        out[idx] = np.exp(log_softmax(layout.unsort(z, axis=0).astype(np.float64)))
    return out


def correct_prior(prob, log_prior, tau: float):
    """p(label | text) with the training prior taken out to the power tau, renormalised (logit adjustment,
    Menon et al. 2021):
        p_tau(y | x) ∝ exp(log p(y | x) - tau log p(y))
    tau = 0 leaves prob as it is; tau = 1 divides out the prior entirely (a classifier for balanced
    labels: on names, where Russian is 52 % of training, it trades majority-label accuracy for recall of
    the small labels). prob (S, C), log_prior (C,); rows of zero probability stay zero."""
    if tau == 0:
        return prob
    with np.errstate(divide="ignore"):
        z = np.log(prob) - tau * np.asarray(log_prior, np.float64)
    return np.exp(log_softmax(z)) if len(z) else prob
