"""Log-probabilities of token streams, exactly as docs/model-format.md defines them.

A stream s_1..s_n is read from a zero state with EOS as the first input; token s_t is predicted after
EOS, s_1, .., s_{t-1}:   NLL(s) = -Σ_t log p(s_t | EOS, s_<t).
Many streams run side by side as the columns of a batch (sorted by length to limit padding); each
column starts from its own zero state, so batching never changes a stream's figures. Identical streams
are scored once (the first 10,000 lines of Tiny Shakespeare hold 3,664 repeats, 8 % of the tokens:
blank lines and speakers' names), and many short streams that share much of their prefixes (n-best
lists) go through `prefixes`, which computes each shared prefix once.
"""
from __future__ import annotations

import numpy as np

from charlm import model, prefixes


def streams_nll(cfg, P, streams, batch: int | None = None, window: int = 128, per_token: bool = False,
                progress=None):
    """NLL of each stream in `streams` (1-D int arrays of ids, without the leading EOS), `batch` of them
    side by side (default: 256 for vocabularies up to 1,024 tokens, 64 above, where the (window x batch,
    V) logits grow large; 256 was faster than 64 for a character model and equal for a 10,000-word
    one, bench/RESULTS.md).

    Returns (sums (S,) float64, per) where per[i] is stream i's (n_i,) float64 token NLLs when
    per_token, else None. progress(k) is called with the number of tokens just scored.
    """
    first = {}                                                       # stream bytes -> index scored
    same = [first.setdefault((np.asarray(s).dtype.str, np.asarray(s).tobytes()), i) for i, s in enumerate(streams)]
    if len(first) < len(streams):
        unique = sorted(first.values())
        if progress is not None:
            progress(sum(len(s) for i, s in enumerate(streams) if same[i] != i))
        u_sums, u_per = streams_nll(cfg, P, [streams[i] for i in unique], batch, window, per_token, progress)
        at = {i: j for j, i in enumerate(unique)}
        sums = u_sums[[at[i] for i in same]]
        per = [u_per[at[i]].copy() if per_token else None for i in same]
        return sums, per
    short = [] if cfg.bidirectional else [i for i, s in enumerate(streams) if 1 <= len(s) <= prefixes.MAX_LEN]
    if len(short) < 2 or not prefixes.worth_it([streams[i] for i in short]):
        return _windowed(cfg, P, streams, batch, window, per_token, progress)
    sums = np.zeros(len(streams), np.float64)
    per = [None] * len(streams)
    rest = sorted(set(range(len(streams))) - set(short))
    for part, (p_sums, p_per) in ((short, prefixes.streams_nll(cfg, P, [streams[i] for i in short], per_token,
                                                               progress)),
                                  (rest, _windowed(cfg, P, [streams[i] for i in rest], batch, window, per_token,
                                                   progress))):
        sums[part] = p_sums
        for i, v in zip(part, p_per):
            per[i] = v
    return sums, per


def _windowed(cfg, P, streams, batch, window, per_token, progress):
    """streams_nll by windows of `batch` streams side by side (arguments as there)."""
    S = len(streams)
    if batch is None:
        batch = 256 if cfg.vocab_size <= 1024 else 64
    sums = np.zeros(S, np.float64)
    per = [None] * S
    order = sorted(range(S), key=lambda i: len(streams[i]))
    dtype = P["embedding.weight"].dtype
    for g0 in range(0, S, batch):
        group = order[g0:g0 + batch]
        lens = np.array([len(streams[i]) for i in group])
        Tmax = int(lens.max(initial=0))
        if Tmax == 0:
            continue
        B = len(group)
        X = np.full((Tmax, B), cfg.eos_id, np.int32)                 # inputs: EOS, s_1, .., s_{n-1}
        Y = np.zeros((Tmax, B), np.int32)                            # targets: s_1, .., s_n (0-padded)
        for j, i in enumerate(group):
            s = streams[i]
            X[1:len(s), j] = s[:-1]
            Y[:len(s), j] = s
        valid = np.arange(Tmax)[:, None] < lens[None, :]             # (Tmax, B) real tokens
        nll = np.empty((Tmax, B), np.float64) if per_token else None
        state = model.zero_state(cfg, B, dtype)
        for t0 in range(0, Tmax, window):
            t1 = min(Tmax, t0 + window)
            w, state = model.token_nll(cfg, P, X[t0:t1], Y[t0:t1], state)
            w = np.where(valid[t0:t1], w, 0.0)
            sums_g = w.sum(axis=0)
            for j, i in enumerate(group):
                sums[i] += sums_g[j]
            if per_token:
                nll[t0:t1] = w
            if progress is not None:
                progress(int(valid[t0:t1].sum()))
        if per_token:
            for j, i in enumerate(group):
                per[i] = nll[: lens[j], j].copy()
    return sums, per


def stream_nll(cfg, P, ids, progress=None) -> float:
    """Total NLL of one long stream read whole (state carried across lines): `charlm perplexity`."""
    sums, _ = streams_nll(cfg, P, [ids], batch=1, window=256, progress=progress)
    return float(sums[0])


def split_streams(ids: np.ndarray, parts: int) -> list[np.ndarray]:
    """Cut one long stream into `parts` contiguous pieces (for fast, approximate validation: each piece
    restarts from a zero state, so only the first tokens of each piece lose their context)."""
    parts = max(1, min(parts, len(ids) // 64 or 1))
    return np.array_split(ids, parts)
