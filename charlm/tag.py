"""The tagger's math: forward, loss and backward for a batch of sentences, one tag per token.

A batch is B sentences (S_b tokens each), packed (charlm.packed) sorted by length: N = Σ_b S_b rows.
The char BiRNN reads each distinct word type of the batch once (U words, their letters packed as U
sequences, prefix "char_rnn."); its final states of both directions are the word's char vector.
    c_u = [final_fwd(u), final_bwd(u)]                   (char BiRNN over chars of word u)  # (U, 2Hc)
    X_n = [embedding.weight[w_n], c_{u_n}] ⊙ m_0         (word id w_n, type u_n of row n)  # (N, E+2Hc)
    Y = stack(X; masks m_1..m_{L-1} between layers)       (bidirectional, prefix "rnn.")   # (N, H*dirs)
    z = (Y ⊙ m_h) head.weight^T + head.bias                                                # (N, C)
    loss = Σ_n -log softmax(z_n)[y_n] / N                (mean over tokens)
Without char features X_n is the word embedding alone. The masks m are inverted dropout (training
only). The backward runs in exact reverse order; the char vectors' gradient gathers over the rows of
each type (dc_u = Σ_{n: u_n = u} dX_n[E:]) before it enters the char BiRNN as its final states'
gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm import packed
from charlm.config import TagConfig
from charlm.kernels.loss import scatter_add_rows


def init_params(cfg: TagConfig, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for each recurrent stack (its own H), the head's
    U(-1/sqrt(in), 1/sqrt(in)), U(-0.1, 0.1) for the embeddings, zero head bias."""
    params = {}
    for name, shape in cfg.param_shapes().items():
        if name.endswith("embedding.weight"):
            p = rng.uniform(-0.1, 0.1, shape)
        elif name == "head.weight":
            p = rng.uniform(-1.0, 1.0, shape) / np.sqrt(shape[1])
        elif name == "head.bias":
            p = np.zeros(shape)
        else:
            k = 1.0 / np.sqrt(cfg.char_hidden if name.startswith("char_rnn.") else cfg.hidden)
            p = rng.uniform(-k, k, shape)
        params[name] = np.ascontiguousarray(p, dtype=dtype)
    return params


@dataclass
class Batch:
    layout: packed.Layout         # the sentences
    perm: np.ndarray              # (N,) packed row -> index into the sentences' tokens laid end to end
    words: np.ndarray             # (N,) int32 word id of each packed row
    uid: np.ndarray | None        # (N,) the batch's word type of each row (index into the char layout)
    clayout: packed.Layout | None  # the U word types' letters
    cids: np.ndarray | None       # (Nc,) int32 packed char ids

    @property
    def N(self) -> int:
        return self.layout.N


def make_batch(cfg: TagConfig, word_ids, type_ids=None, type_chars=None) -> Batch:
    """word_ids: B arrays of word ids (one per sentence); type_ids: B arrays of word type ids into
    `type_chars` (a list of char id arrays, one per type), needed with char features."""
    layout = packed.Layout.from_lengths([len(s) for s in word_ids])
    starts = np.concatenate(([0], np.cumsum(layout.lengths[layout.inverse])[:-1]))       # caller order
    perm = starts[layout.order[layout.seq_of_row]] + layout.step_of_row                  # (N,)
    words = np.ascontiguousarray(np.concatenate(word_ids)[perm], dtype=np.int32)
    if not cfg.char_features:
        return Batch(layout, perm, words, None, None, None)
    types, uid = np.unique(np.concatenate(type_ids)[perm], return_inverse=True)
    chars = [type_chars[t] for t in types]
    lengths = np.array([len(c) for c in chars])
    clayout = packed.Layout.from_lengths(lengths)
    flat = np.concatenate(chars).astype(np.int32)
    cstart = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    rows = np.arange(clayout.N)
    cids = flat[cstart[clayout.order[clayout.seq_of_row[rows]]] + clayout.step_of_row[rows]]
    return Batch(layout, perm, words, uid.astype(np.int64), clayout, np.ascontiguousarray(cids, np.int32))


def dropout_masks(cfg: TagConfig, rng, batch: Batch, p: float, embed_p: float = 0.0, dtype=np.float32):
    """Inverted dropout masks: [m_0 (N, In_0) or None, m_1 .. m_{L-1} (N, H*dirs) or None] (None when all
    are), and m_h (N, H*dirs) or None before the head. Each element 0 with probability p, else 1/(1-p)."""
    def mask(q, shape):
        keep = 1.0 - q
        return ((rng.random(shape, dtype=np.float32) < keep) / keep).astype(dtype)

    N, width = batch.N, cfg.hidden * cfg.directions
    layers = [mask(embed_p, (N, cfg.layer_input(0))) if embed_p > 0 else None]
    layers += [mask(p, (N, width)) if p > 0 else None for _ in range(cfg.layers - 1)]
    head = mask(p, (N, width)) if p > 0 else None
    return (None if all(m is None for m in layers) else layers), head


def logits(cfg: TagConfig, P, batch: Batch, masks=None, head_mask=None, for_backward=False):
    """z (N, C) in packed order (batch.perm maps rows to tokens), and the cache for `backward`."""
    X = P["embedding.weight"][batch.words]                                             # (N, E)
    ccache = None
    if cfg.char_features:
        C = P["char_embedding.weight"][batch.cids]                                     # (Nc, Ec)
        _, cfinal, ccache = packed.forward(cfg.char_config(), P, C, batch.clayout, prefix="char_rnn.",
                                           for_backward=for_backward)
        cv = np.concatenate([cfinal[0, 0, 0], cfinal[0, 1, 0]], axis=1)[batch.clayout.inverse]   # (U, 2Hc)
        X = np.concatenate([X, cv[batch.uid]], axis=1)                                  # (N, E + 2Hc)
    Y, _, cache = packed.forward(cfg.stack_config(), P, X, batch.layout, masks=masks, prefix="rnn.",
                                 for_backward=for_backward)                            # (N, H*dirs)
    if head_mask is not None:
        Y = Y * head_mask
    z = Y @ P["head.weight"].T + P["head.bias"]                                        # (N, C)
    return z, (cache, ccache, Y)


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def loss_and_grads(cfg: TagConfig, P, batch: Batch, y, masks=None, head_mask=None):
    """Mean NLL of the tags y (N,) (packed order: y_tokens[batch.perm]) and its gradient for every
    parameter."""
    z, (cache, ccache, Y) = logits(cfg, P, batch, masks, head_mask, for_backward=True)
    N = batch.N
    logp = log_softmax(z.astype(np.float64))                                           # (N, C)
    loss = float(-logp[np.arange(N), y].sum() / N)
    dz = np.exp(logp)
    dz[np.arange(N), y] -= 1.0
    dz = (dz / N).astype(z.dtype)                                                      # dL/dz
    grads = {"head.weight": dz.T @ Y, "head.bias": dz.sum(axis=0)}                     # (C, Hd), (C,)
    dY = dz @ P["head.weight"]                                                         # (N, Hd)
    if head_mask is not None:
        dY = dY * head_mask
    dX, stack_grads, _ = packed.backward(cfg.stack_config(), P, cache, dY, None)       # (N, In_0)
    grads.update(stack_grads)
    E = cfg.embed
    dE = np.zeros_like(P["embedding.weight"])
    scatter_add_rows(dE, batch.words, np.ascontiguousarray(dX[:, :E], dtype=dE.dtype))  # dE[w_n] += dX_n
    grads["embedding.weight"] = dE
    if cfg.char_features:
        Hc = cfg.char_hidden
        dcv = np.zeros((batch.clayout.B, 2 * Hc), dX.dtype)
        scatter_add_rows(dcv, batch.uid, np.ascontiguousarray(dX[:, E:]))              # dc_u = Σ dX_n[E:]
        dcv = dcv[batch.clayout.order]                                                 # sorted order
        dfinal = np.zeros((1, 2, 2, batch.clayout.B, Hc), dX.dtype)
        dfinal[0, 0, 0], dfinal[0, 1, 0] = dcv[:, :Hc], dcv[:, Hc:]
        dC, char_grads, _ = packed.backward(cfg.char_config(), P, ccache, None, dfinal)  # (Nc, Ec)
        grads.update(char_grads)
        dCE = np.zeros_like(P["char_embedding.weight"])
        scatter_add_rows(dCE, batch.cids, np.ascontiguousarray(dC, dtype=dCE.dtype))
        grads["char_embedding.weight"] = dCE
    return loss, grads


def probabilities(cfg: TagConfig, P, word_ids, type_ids=None, type_chars=None, batch: int = 128):
    """p(tag | token) per sentence: a list of (S_b, C) float64 arrays in the order of `word_ids`,
    `batch` sentences at a time, similar lengths together (make_batch for the arguments)."""
    out = [None] * len(word_ids)
    order = np.argsort([len(s) for s in word_ids], kind="stable")
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        b = make_batch(cfg, [word_ids[j] for j in idx], None if type_ids is None else [type_ids[j] for j in idx],
                       type_chars)
        z, _ = logits(cfg, P, b)
        p = np.exp(log_softmax(z.astype(np.float64)))
        flat = np.empty_like(p)
        flat[b.perm] = p
        ends = np.cumsum([len(word_ids[j]) for j in idx])
        for j, part in zip(idx, np.split(flat, ends[:-1])):
            out[j] = part
    return out
