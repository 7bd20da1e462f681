"""Decoding the encoder-decoder: greedy and beam search, batched over inputs, in NumPy.

The LM's compiled beam (charlm.kernels.beam) decodes one prefix with the LM's stack; here every step also
attends over each input's own encoder outputs, so the step is charlm.seq2seq.step (the decoder's packed
kernels on B*W rows of length 1, then batched attention) and the bookkeeping is vectorised NumPy.

Scores. An output y = y_1..y_n is scored with its end: s(y) = log p(y_1..y_n, EOS | x) (natural log).
<unk> is never emitted. An output that reaches max_length tokens is ended there: EOS is forced as its
next token (its score still includes log p(EOS | ...)) and it is marked truncated. Length
normalisation ranks finished outputs by s(y) / (n + 1)^alpha (alpha 0: raw log-probability).

Beam (width W, per input): rows b*W .. b*W+W-1 hold the live hypotheses, only row 0 live at step 0.
At each step every live row r proposes its V extensions with s_r + log p(v | r); the W best raw scores
(ties: the lower flat index r*V + v) take the W slots. Those ending in EOS are finished: they go to the
input's finished list and leave their slot empty; the others stay live. An input stops when it has W
finished hypotheses, or when no
live hypothesis can still beat its K-th best finished one: a continuation of a live score s ends with a
score <= s and at most max_length + 1 tokens, so its normalised score is at most s / (max_length + 1)^alpha
(s <= 0, alpha >= 0). The greedy output of the same input is added to the finished list, so the best
beam output never ranks below greedy. The result: the K best finished outputs by normalised score.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm import seq2seq


@dataclass
class Hypothesis:
    tokens: list[int]       # target ids, without EOS
    score: float            # log p(tokens, EOS | input)
    normalized: float       # score / (len + 1)^alpha
    truncated: bool         # ended by max_length


def _norm(score, n, alpha):
    return score / (n + 1) ** alpha


def greedy(cfg, P, sources, max_lengths, alpha: float = 1.0) -> list[Hypothesis]:
    """The most likely token at each step, for id arrays `sources`, each at most max_lengths[b] tokens."""
    B = len(sources)
    enc, state = seq2seq.start(cfg, P, sources)
    eos, unk = cfg.target_eos_id, cfg.target_unk_id
    max_lengths = np.asarray(max_lengths, np.int64)
    out = [[] for _ in range(B)]
    score = np.zeros(B)
    active = np.arange(B)
    prev = np.full(B, eos, np.int32)
    t = 0
    while active.size:
        logp, state = seq2seq.step(cfg, P, enc, state, prev)
        logp[:, unk] = -np.inf
        forced = max_lengths[active] <= t
        logp[forced, :eos] = -np.inf
        logp[forced, eos + 1:] = -np.inf
        tok = logp.argmax(axis=1)
        score[active] += logp[np.arange(active.size), tok]
        going = tok != eos
        for b, v in zip(active[going], tok[going]):
            out[b].append(int(v))
        if not going.all():
            keep = np.flatnonzero(going)
            active, enc, state, tok = active[keep], enc.take(keep), state[:, :, :, keep], tok[keep]
        prev = tok.astype(np.int32)
        t += 1
    return [Hypothesis(out[b], float(score[b]), float(_norm(score[b], len(out[b]), alpha)),
                       bool(len(out[b]) >= max_lengths[b])) for b in range(B)]


def beam(cfg, P, sources, max_lengths, width: int = 5, num_outputs: int = 1,
         alpha: float = 1.0) -> list[list[Hypothesis]]:
    """The num_outputs best outputs of each input by beam search of `width` (module docstring)."""
    B, W = len(sources), width
    K = min(num_outputs, W)
    max_lengths = np.asarray(max_lengths, np.int64)
    found = [[h] for h in greedy(cfg, P, sources, max_lengths, alpha)]
    enc, state = seq2seq.start(cfg, P, sources)
    V, eos, unk = cfg.target_vocab_size, cfg.target_eos_id, cfg.target_unk_id
    rows = np.repeat(np.arange(B), W)                                  # input of each row
    enc = enc.take(rows)
    state = state[:, :, :, rows]
    score = np.full((B, W), -np.inf)
    score[:, 0] = 0.0
    hist = np.zeros((B, W, 0), np.int64)
    prev = np.full(B * W, eos, np.int32)
    done = np.zeros(B, bool)
    ended_count = np.zeros(B, np.int64)                                # finished hypotheses of the beam
    bound_len = (max_lengths + 1.0) ** alpha
    t = 0
    while True:
        logp, state = seq2seq.step(cfg, P, enc, state, prev)
        logp = logp.reshape(B, W, V)
        logp[:, :, unk] = -np.inf
        forced = max_lengths <= t
        logp[forced, :, :eos] = -np.inf
        logp[forced, :, eos + 1:] = -np.inf
        cand = score[:, :, None] + logp                                # (B, W, V)
        cand[done] = -np.inf
        flat = cand.reshape(B, W * V)
        best = np.argsort(-flat, axis=1, kind="stable")[:, :W]         # (B, W) ties: lower flat index
        score = np.take_along_axis(flat, best, axis=1)
        parent, tok = best // V, best % V
        ended = (tok == eos) & np.isfinite(score)                      # finished hypotheses in the top W
        ended_count += ended.sum(axis=1)
        for b, w in zip(*np.nonzero(ended)):
            s, toks = float(score[b, w]), hist[b, parent[b, w]].tolist()
            if toks != found[b][0].tokens:                             # greedy's own output is there already
                found[b].append(Hypothesis(toks, s, _norm(s, t, alpha), bool(forced[b])))
        score[ended] = -np.inf                                         # their slots stay empty
        hist = np.concatenate([hist[np.arange(B)[:, None], parent], tok[:, :, None]], axis=2)   # (B, W, t+1)
        t += 1
        for b in np.flatnonzero(~done):
            live = score[b].max()
            fins = sorted((h.normalized for h in found[b]), reverse=True)
            if not np.isfinite(live) or ended_count[b] >= W or \
                    (len(fins) >= K and fins[K - 1] >= live / bound_len[b]):
                done[b] = True
        if done.all():
            break
        score[done] = -np.inf
        src_rows = (np.arange(B)[:, None] * W + parent).reshape(-1)
        state = state[:, :, :, src_rows]
        prev = tok.reshape(-1).astype(np.int32)
    results = []
    for b in range(B):
        results.append(sorted(found[b], key=lambda h: -h.normalized)[:K])   # distinct: a beam never repeats
    return results
