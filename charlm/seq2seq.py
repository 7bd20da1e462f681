"""The encoder-decoder's math: teacher-forced forward, loss and backward, and one decoder step.

A pair is a source x_1..x_n and a target y_1..y_m (token ids, no specials). For B pairs:

    Xs = source_embedding.weight[x] ⊙ m_0                            # (Ns, E)    packed by source length
    Enc, fin = encoder(Xs)                                          # (Ns, Hw), (Le, dirs, 2, B, He)
    u_b = [fin[Le-1, d, 0]_b for each direction d]                  # (B, Hw)    Hw = He * dirs
    s0 = tanh(u bridge.weight^T + bridge.bias)                      # (B, Ld*S*Hd): layer k, state s at
                                                                    #   columns (k*S+s)*Hd .. +Hd (S=2 LSTM: h, c)
    Xt = target_embedding.weight[(EOS, y_1..y_m)] ⊙ m'_0            # (Nt, Et)   packed by target length
    D, _ = decoder(Xt; h0 = s0)                                     # (Nt, Hd)   teacher forcing
  attention "none":   H~ = D
  attention (Luong, global, over the encoder outputs of the same pair, padding masked out):
    score(d, e) = d·e (dot) | d·(W_a e) (general) | v·tanh(W_q d + W_k e) (additive)
    α_t = softmax_j score(D_t, Enc_j)                               # (B, Tt, Ts)
    c_t = Σ_j α_tj Enc_j                                            # (B, Tt, Hw)
    H~_t = tanh(combine.weight [c_t; D_t])                          # (B, Tt, Hd)
    z = (H~ ⊙ m_out) output.weight^T + output.bias                  # (Nt, Vt)
    loss = mean over the Nt target positions of -log softmax(z)[(y_1..y_m, EOS)]

Why this attention: Luong's h~ uses the decoder's own output at t, not the previous step's context, so
the decoder's recurrence does not depend on attention and the whole teacher-forced decoder is one packed
pass of the same kernels as the encoder (charlm.packed); attention is then batched matrix products over
(B, Tt, Ts). Bahdanau's input feeding (the context of step t-1 as decoder input at t) would force a
step-by-step decoder in training. The additive score is Bahdanau's score function used Luong's way.

Inference (charlm.seq2seq_search) runs the same decoder one step at a time: packed.forward on a layout
of B sequences of length 1 started from the carried state, then the same attention and output layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm import packed
from charlm.config import Seq2SeqConfig
from charlm.kernels.loss import scatter_add_rows


def init_params(cfg: Seq2SeqConfig, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for each stack (its own H), nn.Linear's
    U(-1/sqrt(fan_in), ..) for the bridge, attention and output weights, zero biases there,
    U(-0.1, 0.1) for the embeddings."""
    params = {}
    for name, shape in cfg.param_shapes().items():
        if name.endswith("embedding.weight"):
            p = rng.uniform(-0.1, 0.1, shape)
        elif name.startswith("encoder."):
            p = rng.uniform(-1.0, 1.0, shape) / np.sqrt(cfg.hidden)
        elif name.startswith("decoder."):
            p = rng.uniform(-1.0, 1.0, shape) / np.sqrt(cfg.decoder_hidden)
        elif name.endswith(".bias"):
            p = np.zeros(shape)
        else:
            p = rng.uniform(-1.0, 1.0, shape) / np.sqrt(shape[1])
        params[name] = np.ascontiguousarray(p, dtype=dtype)
    return params


@dataclass(eq=False)
class Batch:
    src: packed.Layout          # the sources, packed
    src_ids: np.ndarray         # (Ns,) int32
    tgt: packed.Layout          # the decoder inputs (EOS, y_1..y_m), packed
    tgt_in: np.ndarray          # (Nt,) int32
    tgt_out: np.ndarray         # (Nt,) int32: (y_1..y_m, EOS) at the same rows

    @property
    def B(self) -> int:
        return self.src.B


def make_batch(cfg: Seq2SeqConfig, sources, targets) -> Batch:
    """Id arrays of sources (each >= 1 token) and targets (>= 0 tokens, without EOS), caller's order."""
    eos = cfg.target_eos_id
    src = packed.Layout.from_lengths([len(s) for s in sources])
    tgt = packed.Layout.from_lengths([len(t) + 1 for t in targets])
    tin = [np.concatenate(([eos], np.asarray(t, np.int32))).astype(np.int32) for t in targets]
    tout = [np.concatenate((np.asarray(t, np.int32), [eos])).astype(np.int32) for t in targets]
    return Batch(src, src.pack([np.asarray(s, np.int32) for s in sources]), tgt, tgt.pack(tin), tgt.pack(tout))


def dropout_masks(cfg: Seq2SeqConfig, rng, batch: Batch, p: float, embed_p: float = 0.0, dtype=np.float32):
    """Inverted dropout masks {"encoder": [m_0 (Ns, E) | None, m_k (Ns, Hw) | None ..] | None, "decoder": the
    same over (Nt, ..), "output": (Nt, Hd) | None}: embeddings with embed_p, between layers and before
    the output layer with p."""
    def mask(q, shape):
        keep = 1.0 - q
        return ((rng.random(shape, dtype=np.float32) < keep) / keep).astype(dtype)

    def stack(N, E, width, layers):
        ms = [mask(embed_p, (N, E)) if embed_p > 0 else None]
        ms += [mask(p, (N, width)) if p > 0 else None for _ in range(layers - 1)]
        return None if all(m is None for m in ms) else ms

    Ns, Nt = batch.src.N, batch.tgt.N
    return {"encoder": stack(Ns, cfg.embed, cfg.hidden * cfg.directions, cfg.layers),
            "decoder": stack(Nt, cfg.target_embed, cfg.decoder_hidden, cfg.decoder_layers),
            "output": mask(p, (Nt, cfg.decoder_hidden)) if p > 0 else None}


# ------------------------------------------------------------------------------------- encoder side

def encode(cfg: Seq2SeqConfig, P, src: packed.Layout, src_ids, masks=None, for_backward=False):
    """The encoder and bridge. Returns (Ep (B, Ts, Hw) the encoder outputs padded with zeros, valid (B, Ts)
    bool, h0 (Ld, 1, 2, B, Hd) the decoder's start state; all in the caller's order), and the cache."""
    ecfg = cfg.encoder_config()
    Xs = P["source_embedding.weight"][src_ids]                                   # (Ns, E)
    enc, fin, ecache = packed.forward(ecfg, P, Xs, src, masks=masks, prefix="encoder.", for_backward=for_backward)
    u = np.concatenate([fin[cfg.layers - 1, d, 0] for d in range(cfg.directions)], axis=1)   # (B, Hw) sorted
    u = src.unsort(u, axis=0)                                                    # caller's order
    s0 = np.tanh(u @ P["bridge.weight"].T + P["bridge.bias"])                    # (B, Ld*S*Hd)
    h0 = bridge_state(cfg, s0)
    Ep = src.pad(enc).transpose(1, 0, 2).copy()                                  # (B, Ts, Hw)
    valid = np.arange(src.T)[None, :] < src.unsort(src.lengths, axis=0)[:, None]   # (B, Ts)
    return Ep, valid, h0, (ecache, u, s0, Xs.shape[0])


def bridge_state(cfg: Seq2SeqConfig, s0):
    """s0 (B, Ld*S*Hd) -> h0 (Ld, 1, 2, B, Hd) (c = 0 unless the cell is an LSTM)."""
    B, Ld, S, Hd = s0.shape[0], cfg.decoder_layers, cfg.bridge_states, cfg.decoder_hidden
    h0 = np.zeros((Ld, 1, 2, B, Hd), s0.dtype)
    h0[:, 0, :S] = s0.reshape(B, Ld, S, Hd).transpose(1, 2, 0, 3)
    return h0


def bridge_state_backward(cfg: Seq2SeqConfig, dh0):
    """dh0 (Ld, 1, 2, B, Hd) -> ds0 (B, Ld*S*Hd): the transpose of bridge_state."""
    S = cfg.bridge_states
    B = dh0.shape[3]
    return np.ascontiguousarray(dh0[:, 0, :S].transpose(2, 0, 1, 3)).reshape(B, -1)


# ------------------------------------------------------------------------------------------ attention

def _lin(x, W):
    """x (..., In) W^T (Out, In) -> (..., Out) as one 2-D GEMM (NumPy's stacked 3-D @ 2-D is ~10x slower)."""
    return (x.reshape(-1, x.shape[-1]) @ W.T).reshape(x.shape[:-1] + (W.shape[0],))


def _tn(a, b):
    """Σ over all leading axes of a[..., i] b[..., j] -> (I, J): a^T b with the rows flattened."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def keys(cfg: Seq2SeqConfig, P, Ep):
    """What the score needs of the encoder outputs, computed once per batch: dot Ep, general Ep W_a^T,
    additive Ep W_k^T; (B, Ts, Hd)."""
    if cfg.attention == "dot":
        return Ep
    if cfg.attention == "general":
        return _lin(Ep, P["attention.weight"])
    return _lin(Ep, P["attention.key.weight"])


def attend(cfg: Seq2SeqConfig, P, Dp, Ep, K, valid):
    """Dp (B, Tt, Hd) decoder outputs, Ep (B, Ts, Hw), K = keys(...), valid (B, Ts) -> H~ (B, Tt, Hd), cache."""
    if cfg.attention == "additive":
        Qp = _lin(Dp, P["attention.query.weight"])                                 # (B, Tt, A)
        Tq = np.tanh(Qp[:, :, None, :] + K[:, None, :, :])                       # (B, Tt, Ts, A)
        S = _lin(Tq, P["attention.v.weight"])[..., 0]                              # (B, Tt, Ts)
    else:
        Tq = None
        S = Dp @ K.transpose(0, 2, 1)                                            # (B, Tt, Ts)
    S = np.where(valid[:, None, :], S, -np.inf)
    A = np.exp(S - S.max(axis=2, keepdims=True))
    A /= A.sum(axis=2, keepdims=True)                                            # α (B, Tt, Ts)
    C = A @ Ep                                                                   # (B, Tt, Hw)
    CD = np.concatenate([C, Dp], axis=2)                                         # (B, Tt, Hw+Hd)
    Ht = np.tanh(_lin(CD, P["combine.weight"]))                                 # (B, Tt, Hd)
    return Ht, (Dp, Ep, K, Tq, A, CD, Ht)


def attend_backward(cfg: Seq2SeqConfig, P, dHt, cache, grads):
    """dH~ (B, Tt, Hd) -> (dDp (B, Tt, Hd), dEp (B, Ts, Hw)); the attention's weight gradients into grads."""
    Dp, Ep, K, Tq, A, CD, Ht = cache
    Hw = Ep.shape[2]
    dpre = dHt * (1.0 - Ht * Ht)                                                 # tanh'
    grads["combine.weight"] = _tn(dpre, CD)                # dW_c = Σ dpre^T [c; d]
    dCD = _lin(dpre, P["combine.weight"].T)                                       # (B, Tt, Hw+Hd)
    dC, dDp = dCD[:, :, :Hw], dCD[:, :, Hw:].copy()
    dA = dC @ Ep.transpose(0, 2, 1)                                              # (B, Tt, Ts)
    dEp = A.transpose(0, 2, 1) @ dC                                              # (B, Ts, Hw)  from c = α Enc
    dS = A * (dA - (dA * A).sum(axis=2, keepdims=True))                          # softmax'
    if cfg.attention == "additive":
        v = P["attention.v.weight"][0]
        grads["attention.v.weight"] = _tn(dS[..., None], Tq)
        dpre2 = dS[..., None] * v * (1.0 - Tq * Tq)                              # (B, Tt, Ts, A)
        dQp, dK = dpre2.sum(axis=2), dpre2.sum(axis=1)                           # (B, Tt, A), (B, Ts, A)
        Wq = P["attention.query.weight"]
        grads["attention.query.weight"] = _tn(dQp, Dp)
        dDp += _lin(dQp, Wq.T)
    else:
        dDp += dS @ K                                                            # score = d·k
        dK = dS.transpose(0, 2, 1) @ Dp                                          # (B, Ts, Hd)
    if cfg.attention == "dot":
        dEp += dK
    else:
        name = "attention.weight" if cfg.attention == "general" else "attention.key.weight"
        grads[name] = _tn(dK, Ep)                          # K = Enc W^T
        dEp += _lin(dK, P[name].T)
    return dDp, dEp


# ---------------------------------------------------------------------------------- teacher forcing

def _rows(layout: packed.Layout):
    """(caller's sequence, step) of every packed row: where it sits in a (B, T, ...) padded array."""
    return layout.order[layout.seq_of_row], layout.step_of_row


def logits(cfg: Seq2SeqConfig, P, batch: Batch, masks=None, for_backward=False):
    """z (Nt, Vt) at the target layout's packed rows, and the cache for `backward`."""
    masks = masks or {}
    Ep, valid, h0, ecache = encode(cfg, P, batch.src, batch.src_ids, masks.get("encoder"), for_backward)
    tl = batch.tgt
    Xt = P["target_embedding.weight"][batch.tgt_in]                              # (Nt, Et)
    D, _, dcache = packed.forward(cfg.decoder_config(), P, Xt, tl, h0=tl.sort(h0, axis=-2), masks=masks.get("decoder"),
                                  prefix="decoder.", for_backward=for_backward)
    acache = None
    if cfg.attention == "none":
        Hout = D                                                                 # (Nt, Hd)
    else:
        b, t = _rows(tl)
        Dp = np.zeros((batch.B, tl.T, cfg.decoder_hidden), D.dtype)
        Dp[b, t] = D                                                             # (B, Tt, Hd)
        Ht, acache = attend(cfg, P, Dp, Ep, keys(cfg, P, Ep), valid)
        Hout = Ht[b, t]                                                          # (Nt, Hd)
    if masks.get("output") is not None:
        Hout = Hout * masks["output"]
    z = Hout @ P["output.weight"].T + P["output.bias"]                           # (Nt, Vt)
    return z, (ecache, dcache, acache, Hout, masks)


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def token_logprobs(cfg: Seq2SeqConfig, P, batch: Batch) -> np.ndarray:
    """log p(y_t | y_<t, x) (Nt,) float64 of every target token (EOS included) at the packed rows."""
    z, _ = logits(cfg, P, batch)
    return log_softmax(z.astype(np.float64))[np.arange(batch.tgt.N), batch.tgt_out]


def loss_and_grads(cfg: Seq2SeqConfig, P, batch: Batch, masks=None):
    """Mean NLL per target token (EOS included) and its gradient for every parameter."""
    z, (ecache, dcache, acache, Hout, masks) = logits(cfg, P, batch, masks, for_backward=True)
    Nt = batch.tgt.N
    logp = log_softmax(z.astype(np.float64))                                     # (Nt, Vt)
    loss = float(-logp[np.arange(Nt), batch.tgt_out].mean())
    dz = np.exp(logp)
    dz[np.arange(Nt), batch.tgt_out] -= 1.0
    dz = (dz / Nt).astype(z.dtype)                                               # dL/dz
    grads = {"output.weight": dz.T @ Hout, "output.bias": dz.sum(axis=0)}
    dH = dz @ P["output.weight"]                                                 # (Nt, Hd)
    if masks.get("output") is not None:
        dH = dH * masks["output"]
    tl, sl = batch.tgt, batch.src
    if acache is None:
        dD, dEnc = dH, None
    else:
        b, t = _rows(tl)
        dHt = np.zeros((batch.B, tl.T, cfg.decoder_hidden), dH.dtype)
        dHt[b, t] = dH
        dDp, dEp = attend_backward(cfg, P, dHt, acache, grads)
        dD = dDp[b, t]                                                           # (Nt, Hd)
        bs, ts = _rows(sl)
        dEnc = np.ascontiguousarray(dEp[bs, ts])                                 # (Ns, Hw)
    dXt, dgrads, dh0 = packed.backward(cfg.decoder_config(), P, dcache, np.ascontiguousarray(dD), None)
    grads.update(dgrads)
    dE = np.zeros_like(P["target_embedding.weight"])
    scatter_add_rows(dE, batch.tgt_in, np.ascontiguousarray(dXt, dtype=dE.dtype))
    grads["target_embedding.weight"] = dE
    # bridge: dh0 (sorted by target length) -> caller's order -> s0 -> u
    ecache_, u, s0, _ = ecache
    ds0 = bridge_state_backward(cfg, tl.unsort(dh0, axis=-2))                    # (B, Ld*S*Hd)
    da = ds0 * (1.0 - s0 * s0)                                                   # tanh'
    grads["bridge.weight"] = da.T @ u
    grads["bridge.bias"] = da.sum(axis=0)
    du = sl.sort(da @ P["bridge.weight"], axis=0)                                # (B, Hw) sorted by source
    He = cfg.hidden
    dfinal = np.zeros((cfg.layers, cfg.directions, 2, batch.B, He), du.dtype)
    for d in range(cfg.directions):
        dfinal[cfg.layers - 1, d, 0] = du[:, d * He:(d + 1) * He]
    dXs, egrads, _ = packed.backward(cfg.encoder_config(), P, ecache_, dEnc, dfinal)
    grads.update(egrads)
    dS = np.zeros_like(P["source_embedding.weight"])
    scatter_add_rows(dS, batch.src_ids, np.ascontiguousarray(dXs, dtype=dS.dtype))
    grads["source_embedding.weight"] = dS
    return loss, grads


# ------------------------------------------------------------------------------------ one decoder step

@dataclass(eq=False)
class Encoded:
    """The encoder's side of B inputs for step-wise decoding (rows may repeat an input: beams)."""
    Ep: np.ndarray      # (R, Ts, Hw)
    K: np.ndarray       # (R, Ts, Hd) keys(...)
    valid: np.ndarray   # (R, Ts) bool

    def take(self, rows) -> Encoded:
        return Encoded(self.Ep[rows], self.K[rows], self.valid[rows])


def start(cfg: Seq2SeqConfig, P, sources):
    """Encode id arrays `sources` (caller's order): (Encoded, h0 (Ld, 1, 2, B, Hd))."""
    src = packed.Layout.from_lengths([len(s) for s in sources])
    Ep, valid, h0, _ = encode(cfg, P, src, src.pack([np.asarray(s, np.int32) for s in sources]))
    K = keys(cfg, P, Ep) if cfg.attention != "none" else Ep[:, :, :0]
    return Encoded(Ep, K, valid), h0


def step(cfg: Seq2SeqConfig, P, enc: Encoded, state, prev):
    """Feed tokens prev (R,) from state (Ld, 1, 2, R, Hd): (log p (R, Vt) float64, the new state)."""
    R = len(prev)
    layout = packed.Layout.from_lengths(np.ones(R, np.int64))                    # identity order
    X = P["target_embedding.weight"][prev]                                       # (R, Et)
    D, final, _ = packed.forward(cfg.decoder_config(), P, X, layout, h0=state, prefix="decoder.", for_backward=False)
    if cfg.attention != "none":
        Ht, _ = attend(cfg, P, D[:, None, :], enc.Ep, enc.K, enc.valid)
        D = Ht[:, 0]
    z = D @ P["output.weight"].T + P["output.bias"]                              # (R, Vt)
    return log_softmax(z.astype(np.float64)), final
