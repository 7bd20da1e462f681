"""Speed of variable-length batches: a bidirectional tagger trained over ragged and fixed-length batches.

The model: word embedding -> a cfg.layers-deep (bidirectional) recurrent encoder -> a per-position
linear layer over `classes` tags -> mean cross-entropy over the batch's real tokens; one training step
is forward, backward, clip 5 and an Adam step. Batches draw B sentence lengths from `lengths` (e.g. the
EWT training sentences); random word ids and tags. Modes:
    ragged  the packed path (charlm.packed) on those batches
    fixed   the packed path on batches of the same B and about the same tokens, all of one length
            round(N / B) (the same total work without ragged ends)
    model   the fixed-length batches through model.forward / model.backward (the language models' path)
Tokens/s count real tokens. Compilation is excluded (two warm-up steps).
"""
from __future__ import annotations

import time

import numba
import numpy as np

from charlm import model, packed
from charlm.config import ModelConfig
from charlm.kernels import gemm
from charlm.kernels.loss import logsoftmax_nll, scatter_add_rows, softmax_xent
from charlm.optim import Adam, clip_grads
from charlm.threads import compute_threads

MODES = ("ragged", "fixed", "model")


def make_batches(lengths, batch: int, steps: int, vocab: int, classes: int, seed: int = 0, fixed: bool = False):
    """`steps` batches of `batch` sentences with lengths drawn from `lengths` (seeded), as lists of
    (word ids, tags) per sentence. fixed: every sentence of a batch has length round(N / batch) instead."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        lens = rng.choice(np.asarray(lengths), batch)
        if fixed:
            lens = np.full(batch, max(1, int(round(lens.sum() / batch))))
        out.append([(rng.integers(0, vocab, n).astype(np.int32), rng.integers(0, classes, n).astype(np.int32))
                    for n in lens])
    return out


def init_tagger(cfg: ModelConfig, classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The encoder's and embedding's parameters (model.init_params, no decoder) and the tag layer
    head.weight (classes, H*dirs), head.bias, float32."""
    rng = np.random.default_rng(seed)
    P = {k: v for k, v in model.init_params(cfg, rng).items() if not k.startswith("decoder.")}
    k = 1.0 / np.sqrt(cfg.hidden * cfg.directions)
    P["head.weight"] = rng.uniform(-k, k, (classes, cfg.hidden * cfg.directions)).astype(np.float32)
    P["head.bias"] = np.zeros(classes, np.float32)
    return P


def _head(P, out, y, grads_of_out: bool):
    """Logits Z = out head.weight^T + head.bias (N, C); mean NLL of tags y; with grads_of_out, also
    (dout (N, Hd), dW, db) where dZ = (softmax(Z) - onehot(y)) / N, dout = dZ W, dW = dZ^T out."""
    N = out.shape[0]
    W = P["head.weight"]
    Z = np.empty((N, W.shape[0]), out.dtype)
    gemm.matmul_bias(out, W.T, P["head.bias"], Z)
    nll = np.empty(N, np.float64)
    if not grads_of_out:
        logsoftmax_nll(Z, y, nll)
        return float(nll.mean())
    softmax_xent(Z, y, 1.0 / N, nll)                            # Z := dZ
    dout = np.empty_like(out)
    gemm.matmul(Z, W, dout)                                     # (N, Hd)
    dW = np.zeros_like(W)
    gemm.matmul_tn_add(Z, out, dW)                              # (C, Hd)
    return float(nll.mean()), dout, dW, Z.sum(axis=0)


def train_step(cfg, P, opt, batch, mode: str) -> float:
    """One step on a batch (list of (ids, tags)); returns the loss."""
    if mode == "model":
        x = np.stack([ids for ids, _ in batch], axis=1)         # (T, B) equal lengths
        y = np.stack([tags for _, tags in batch], axis=1)
        T, B = x.shape
        Y, caches, _ = model.forward(cfg, P, x)
        out = Y.reshape(T * B, -1)
        loss, dout, dW, db = _head(P, out, y.reshape(-1), True)
        grads = model.backward(cfg, P, x, caches, dout.reshape(Y.shape))
    else:
        lay = packed.Layout.from_lengths([len(ids) for ids, _ in batch])
        ids = lay.pack([s for s, _ in batch])                   # (N,) packed
        y = lay.pack([t for _, t in batch])
        E = P["embedding.weight"]
        out, _, cache = packed.forward(cfg, P, E[ids], lay)
        loss, dout, dW, db = _head(P, out, y, True)
        dX, grads, _ = packed.backward(cfg, P, cache, dout)
        dE = np.zeros_like(E)
        scatter_add_rows(dE, ids, dX)                           # dE[ids[n]] += dX[n]
        grads["embedding.weight"] = dE
    grads["head.weight"], grads["head.bias"] = dW, db
    clip_grads(grads, 5.0)
    opt.step(P, grads)
    return loss


def eval_step(cfg, P, batch, mode: str) -> float:
    if mode == "model":
        x = np.stack([ids for ids, _ in batch], axis=1)
        y = np.stack([tags for _, tags in batch], axis=1)
        Y, _, _ = model.forward(cfg, P, x, for_backward=False)
        return _head(P, Y.reshape(x.size, -1), y.reshape(-1), False)
    lay = packed.Layout.from_lengths([len(ids) for ids, _ in batch])
    ids, y = lay.pack([s for s, _ in batch]), lay.pack([t for _, t in batch])
    out, _, _ = packed.forward(cfg, P, P["embedding.weight"][ids], lay, for_backward=False)
    return _head(P, out, y, False)


def run_ragged(cfg: ModelConfig, lengths, batch: int = 32, steps: int = 10, mode: str = "ragged",
               classes: int = 17, seed: int = 0) -> dict:
    """Train and evaluation tokens/s of the tagger over `steps` batches in one mode (module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    with compute_threads():
        batches = make_batches(lengths, batch, steps, cfg.vocab_size, classes, seed, fixed=mode != "ragged")
        P = init_tagger(cfg, classes, seed)
        opt = Adam(P, lr=1e-3)
        for b in batches[:2]:
            train_step(cfg, P, opt, b, mode)                    # compile and warm up
        eval_step(cfg, P, batches[0], mode)
        tokens = sum(len(ids) for b in batches for ids, _ in b)
        t = time.perf_counter()
        losses = [train_step(cfg, P, opt, b, mode) for b in batches]
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        for b in batches:
            eval_step(cfg, P, b, mode)
        eval_s = time.perf_counter() - t
    return {"mode": mode, "cell": cfg.describe(), "threads": numba.get_num_threads(),
            "threading_layer": numba.threading_layer(), "batch": batch, "steps": steps, "tokens": tokens,
            "train_tok_s": round(tokens / train_s), "eval_tok_s": round(tokens / eval_s),
            "last_loss": round(losses[-1], 4)}


def lengths_of(path) -> list[int]:
    """Sequence lengths of a file: words per sentence of a CoNLL-U file (token lines whose ID is an
    integer), else words per non-blank line."""
    from charlm.data import iter_text
    from charlm.errors import CharlmError
    text = "".join(iter_text(path))
    if str(path).endswith(".conllu"):
        lengths, n = [], 0
        for line in text.split("\n"):
            if not line.strip():
                if n:
                    lengths.append(n)
                n = 0
            elif not line.startswith("#") and line.split("\t", 1)[0].isdigit():
                n += 1
        if n:
            lengths.append(n)
    else:
        lengths = [len(line.split()) for line in text.split("\n") if line.strip()]
    if not lengths:
        raise CharlmError(f"--ragged {path}: no sentences to take lengths from")
    return lengths

