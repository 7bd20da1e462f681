"""A language model conditioned on a label (one-to-many): forward, loss and backward on packed lines,
log p(text | label), Bayes' rule over the labels, and the plain language model a fixed label gives.

A text s_1..s_n with label l is read as (EOS, s_1, .., s_n) and predicts (s_1, .., s_n, EOS):
    log p(s | l) = Σ_{t=1}^{n+1} log p(s_t | EOS, s_<t, l),   s_{n+1} = EOS.
With e_l = label_embedding.weight[l] (config.ConditionalConfig):
    condition "input":  layer 0 reads X_t = [E[x_t], e_l]                              # (E + Lab)
    condition "state":  h_0^k = tanh(init.weight_k e_l + init.bias_k), c_0^k = 0  for every layer k
then the LM's stack and decoder: Z = Y D^T + decoder.bias (D the decoder or, tied, the embedding).

For a fixed label both are a plain language model (`fold`): with "input", layer 0's input projection
W [E[x]; e_l] + b = W_E E[x] + (b + W_l e_l), so the label moves layer 0's bias; with "state", the label
gives the initial state. Sampling, beam search and scoring then run on the LM's own kernels.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from charlm import model, packed
from charlm.config import ConditionalConfig
from charlm.kernels import gemm
from charlm.kernels.loss import logsoftmax_nll, scatter_add_rows, softmax_xent


def init_params(cfg: ConditionalConfig, rng, dtype=np.float32):
    """The LM's initialisation (model.init_params); the label tensors as the cells, U(-1/sqrt(H), ..)."""
    return model.init_params(cfg, rng, dtype)


def stack_config(cfg: ConditionalConfig):
    """The recurrent stack as charlm.packed runs it: layer 0's input is (E + Lab) wide with "input"."""
    return dataclasses.replace(cfg.unconditional(), embed=cfg.layer_input(0), tied=False)


def inputs(seqs, labels, eos_id: int):
    """Token id arrays (without EOS) and their label ids -> (layout, packed inputs (N,), packed targets
    (N,), labels (B,) in sorted order)."""
    layout = packed.Layout.from_lengths([len(s) + 1 for s in seqs])
    x = layout.pack([np.concatenate(([eos_id], s)).astype(np.int32) for s in seqs])
    y = layout.pack([np.concatenate((s, [eos_id])).astype(np.int32) for s in seqs])
    return layout, x, y, np.asarray(labels, np.int64)[layout.order]


def _decoder(cfg, P):
    return P["embedding.weight"] if cfg.tied else P["decoder.weight"]


def forward(cfg: ConditionalConfig, P, layout, x, lab, masks=None, out_mask=None, for_backward=False):
    """Top-layer outputs Y (N, H) after the decoder dropout, and what `backward` needs."""
    E, Lemb = P["embedding.weight"], P["label_embedding.weight"]
    X = E[x]                                                                    # (N, E)
    if cfg.condition == "input":
        X = np.concatenate([X, Lemb[lab][layout.seq_of_row]], axis=1)           # (N, E + Lab)
    h0, init = None, None
    if cfg.condition == "state":
        B, H = layout.B, cfg.hidden
        init = np.tanh(Lemb[lab] @ P["init.weight"].T + P["init.bias"])         # (B, L*H)
        h0 = np.zeros((cfg.layers, 1, 2, B, H), X.dtype)
        for k in range(cfg.layers):
            h0[k, 0, 0] = init[:, k * H:(k + 1) * H]
    Y, _, cache = packed.forward(stack_config(cfg), P, X, layout, h0, masks, for_backward=for_backward)
    if out_mask is not None:
        Y = Y * out_mask
    return Y, (cache, init, out_mask)


def logits(cfg, P, Y) -> np.ndarray:
    Z = np.empty((Y.shape[0], cfg.vocab_size), Y.dtype)
    gemm.matmul_bias(Y, _decoder(cfg, P).T, P["decoder.bias"], Z)              # (N, V)
    return Z


def loss_and_grads(cfg: ConditionalConfig, P, layout, x, y, lab, masks=None, out_mask=None):
    """Mean NLL per predicted token and its gradient for every parameter."""
    Y, (cache, init, out_mask) = forward(cfg, P, layout, x, lab, masks, out_mask, for_backward=True)
    N = Y.shape[0]
    Z = logits(cfg, P, Y)
    nll = np.empty(N, np.float64)
    softmax_xent(Z, y, 1.0 / N, nll)                                            # Z := dL/dZ
    D = _decoder(cfg, P)
    dY = np.empty_like(Y)
    gemm.matmul(Z, D, dY)                                                       # dY = dZ D
    dD = Z.T @ Y                                                                # (V, H)
    grads_bias = Z.sum(axis=0)
    if out_mask is not None:
        dY = dY * out_mask
    dX, grads, dh0 = packed.backward(stack_config(cfg), P, cache, dout=dY)
    Ew = cfg.embed
    dE = np.zeros_like(P["embedding.weight"])
    scatter_add_rows(dE, x, np.ascontiguousarray(dX[:, :Ew]))                   # dE[x_n] += dX_n
    dL = np.zeros_like(P["label_embedding.weight"])
    if cfg.condition == "input":
        per_seq = np.zeros((layout.B, cfg.label_embed), dX.dtype)
        np.add.at(per_seq, layout.seq_of_row, dX[:, Ew:])                       # Σ over each text's rows
        np.add.at(dL, lab, per_seq)
    else:
        dinit = np.concatenate([dh0[k, 0, 0] for k in range(cfg.layers)], axis=1)   # (B, L*H)
        dpre = dinit * (1.0 - init * init)                                      # through tanh
        e = P["label_embedding.weight"][lab]
        grads["init.weight"] = dpre.T @ e
        grads["init.bias"] = dpre.sum(axis=0)
        np.add.at(dL, lab, dpre @ P["init.weight"])
    grads["embedding.weight"] = dE
    grads["label_embedding.weight"] = dL
    grads["decoder.bias"] = grads_bias
    if cfg.tied:
        grads["embedding.weight"] += dD
    else:
        grads["decoder.weight"] = dD
    return float(nll.mean()), grads


def dropout_masks(cfg: ConditionalConfig, rng, layout, p: float, embed_p: float = 0.0, dtype=np.float32):
    """Inverted dropout: [m_0 (N, In_0) or None, m_1.. (N, H) or None] between layers, and the decoder
    input's (N, H) or None. m_0 drops units of the token embedding only, never of the label's."""
    def mask(q, shape):
        keep = 1.0 - q
        return ((rng.random(shape, dtype=np.float32) < keep) / keep).astype(dtype)

    N = layout.N
    first = None
    if embed_p > 0:
        first = mask(embed_p, (N, cfg.embed))
        if cfg.condition == "input":
            first = np.concatenate([first, np.ones((N, cfg.label_embed), dtype)], axis=1)
    layers = [first] + [mask(p, (N, cfg.hidden)) if p > 0 else None for _ in range(cfg.layers - 1)]
    out = mask(p, (N, cfg.hidden)) if p > 0 else None
    return (None if all(m is None for m in layers) else layers), out


def text_nll(cfg: ConditionalConfig, P, seqs, labels, eos_id: int, batch: int = 256) -> np.ndarray:
    """-log p(text_i | label_i) (S,) float64, `batch` texts a pass, similar lengths together."""
    S = len(seqs)
    out = np.empty(S, np.float64)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for i in range(0, S, batch):
        idx = order[i:i + batch]
        layout, x, y, lab = inputs([seqs[j] for j in idx], [labels[j] for j in idx], eos_id)
        Y, _ = forward(cfg, P, layout, x, lab)
        nll = np.empty(layout.N, np.float64)
        logsoftmax_nll(logits(cfg, P, Y), y, nll)
        per = np.bincount(layout.seq_of_row, weights=nll, minlength=layout.B)    # sorted order
        out[idx] = per[layout.inverse]
    return out


def posteriors(cfg: ConditionalConfig, P, seqs, log_prior, eos_id: int) -> np.ndarray:
    """Bayes' rule over the labels, (S, C) float64 rows summing to 1:
        p(l | s) = p(s | l) p(l) / Σ_l' p(s | l') p(l'),
    every (text, label) pair scored in one batched pass."""
    S, C = len(seqs), cfg.labels
    nll = text_nll(cfg, P, [s for s in seqs for _ in range(C)], [c for _ in range(S) for c in range(C)], eos_id)
    joint = -nll.reshape(S, C) + np.asarray(log_prior)[None, :]
    joint -= joint.max(axis=1, keepdims=True)
    p = np.exp(joint)
    return p / p.sum(axis=1, keepdims=True)


def fold(cfg: ConditionalConfig, P, label: int):
    """(plain LM config, its parameters, initial state (L, 2, 1, H) or None) for a fixed label."""
    plain = cfg.unconditional()
    Q = {k: v for k, v in P.items() if k in plain.param_shapes()}
    e = P["label_embedding.weight"][label]
    if cfg.condition == "input":
        W = P["rnn.weight_ih_l0"]
        Q["rnn.weight_ih_l0"] = np.ascontiguousarray(W[:, :cfg.embed])
        Q["rnn.bias_ih_l0"] = (P["rnn.bias_ih_l0"] + W[:, cfg.embed:] @ e).astype(W.dtype)
        return plain, Q, None
    h = np.tanh(P["init.weight"] @ e + P["init.bias"]).astype(P["init.bias"].dtype)   # (L*H,)
    state = np.zeros((cfg.layers, 2, 1, cfg.hidden), h.dtype)
    state[:, 0, 0] = h.reshape(cfg.layers, cfg.hidden)
    return plain, Q, state
