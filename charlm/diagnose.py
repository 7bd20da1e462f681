"""Vanishing and exploding gradients, measured: how much of the loss at step t reaches the state d steps back.

For a language model and an end position t of a text, with L_t = -log p(x_{t+1} | x_{<=t}) the loss at
step t alone and h^k_s the output of layer k at step s,
    g^k_d(t) = ‖∂L_t / ∂h^k_{t-d}‖,        d = 0 .. span,
the total derivative: every path from h^k_{t-d} to L_t counts (through layer k's recurrence, and up
through the layers above at every step). Over many end positions t (`gradient_profile`):
    geomean^k_d = exp(mean_t log g^k_d(t)),     ratio^k_d = geomean^k_d / geomean^k_0
(the ratio of geometric means is the geometric mean of the per-position ratios g_d(t) / g_0(t), whose
quartiles are reported too). The decay rate ρ^k is exp of the least-squares slope of log ratio^k_d over
d = 1 .. span (a vanilla RNN's ratio falls like ρ^d; W_hh = λI with identity activation gives exactly
λ^d), and the gradient horizon the first d whose ratio is below HORIZON (1e-3).

How the gradients are had (`state_gradients`), on the existing kernels only: the model's forward over the
window, then its backward time loop (kernels.cells.layer_backward) run one step at a time from the last
step down, with the loss gradient entering at the last step only. Before step s is taken back, the
gradient arriving at layer k's output h^k_s is complete: what came back through the recurrence from
s+1 (the kernel's dh) plus what came down from layer k+1 at s (its dX = dP W_ih, as model.backward).
That sum is g^k at d = t - s; then the kernel takes step s back. The same arithmetic as training's
backward, in the same order, read between steps. Everything runs in float64 by default: a vanilla RNN's
ratio reaches 1e-40 within 100 steps, below float32's range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from charlm import model
from charlm.cellnames import cell_name
from charlm.config import ModelConfig
from charlm.errors import CharlmError
from charlm.kernels.cells import LSTM, cell_code, layer_backward, pack_backward, scratch_size
from charlm.kernels.loss import softmax_xent

HORIZON = 1e-3       # the gradient horizon: the first d whose ratio to d = 0 is below this
FLOOR = 1e-300       # a norm that is exactly 0 (a dead relu unit, an underflow) counts as this in the logs


def state_gradients(cfg: ModelConfig, P, x, y, state=None, span: int | None = None) -> np.ndarray:
    """∂L/∂h^k_{T-1-d} for the loss at the window's last step only: (L, D+1, B, H).

    x (T, B) input ids, y (B,) the target after the last step, state the carried state (model.forward's)
    or None; D = min(span, T-1) (None: T-1). L = Σ_b -log softmax(z_{T-1, b})[y_b], so each batch row b is
    its own L_t. The float dtype is P's (use float64 to follow long spans).
    """
    if cfg.bidirectional:
        raise CharlmError("gradient diagnosis is for language models (left to right), not bidirectional ones")
    T, B = x.shape
    D = T - 1 if span is None else max(0, min(span, T - 1))
    H, GH, L = cfg.hidden, cfg.gates * cfg.hidden, cfg.layers
    Y, caches, _ = model.forward(cfg, P, x, state)                      # (T, B, H)
    dtype = Y.dtype
    Z = model.logits(cfg, P, np.ascontiguousarray(Y[-1:]))              # (B, V)
    nll = np.empty(B, np.float64)
    softmax_xent(Z, np.ascontiguousarray(y, np.int32), 1.0, nll)        # Z := dL/dZ = softmax - onehot
    dY = np.zeros((T, B, H), dtype)
    dY[-1] = Z @ model._decoder(cfg, P)                                 # dL/dh^{L-1}_{T-1} (B, H)
    code = cell_code(cfg)
    n, rows = model._split(B)
    zero = np.zeros((1, B, H), dtype)                                   # dY of a step: added to dh by hand
    lo = T - 1 - D                                                      # the earliest step measured
    G = np.empty((L, D + 1, B, H), dtype)
    for k in range(L - 1, -1, -1):
        _, Hs, Cs, A, _ = caches[k]
        Wb, Wb2 = pack_backward(code, P[f"rnn.weight_hh_l{k}"], rows)
        tmp = np.empty((n, scratch_size(rows, H, cfg.gates, Wb, Wb2)), dtype)
        peep = model._peep(cfg, P, k, "", dtype)
        dpeep, dbias = np.empty((n,) + peep.shape, dtype), np.empty((n, GH), dtype)
        dP = np.zeros((T, B, GH), dtype)
        dh, dc = np.zeros((B, H), dtype), np.zeros((B, H), dtype)        # from after the window: nothing
        lstm = code == LSTM
        for s in range(T - 1, lo - 1, -1):
            dh += dY[s]                                                  # + from layer k+1 at step s
            G[k, T - 1 - s] = dh                                         # dL/dh^k_s, complete
            if k == 0 and s == lo:
                break                                                    # nothing below needs step lo
            layer_backward(code, Wb, Wb2, peep, Hs[s:s + 2], Cs[s:s + 2] if lstm else Cs[:2], A[s:s + 1],
                           zero, dP[s:s + 1], dpeep, dbias, dh, dc, tmp)  # dh := dL/dh^k_{s-1} via step s
        if k:
            Wih = P[f"rnn.weight_ih_l{k}"]
            dY = np.zeros((T, B, H), dtype)
            dY[lo:] = (dP[lo:].reshape(-1, GH) @ Wih).reshape(T - lo, B, H)   # dX = dP W_ih
    return G


@dataclass
class GradientProfile:
    """How ‖∂L_t/∂h^k_{t-d}‖ falls with d, per layer k (module docstring). Arrays are (L, span+1)."""
    cell: str                      # rnn-tanh, ..., lstm-peephole
    describe: str                  # the model's short description
    span: int
    positions: int                 # end positions t averaged over
    geomean: np.ndarray            # geometric mean over t of ‖∂L_t/∂h^k_{t-d}‖
    ratio: np.ndarray              # geomean / geomean at d = 0
    q25: np.ndarray                # quartiles over t of the per-position ratio
    q50: np.ndarray
    q75: np.ndarray
    decay: list = field(default_factory=list)          # per layer: ρ, the fitted ratio per step
    horizon: list = field(default_factory=list)        # per layer: first d with ratio < HORIZON, None: beyond span
    horizon_fit: list = field(default_factory=list)    # per layer: log(HORIZON) / log ρ (None unless ρ < 1)
    valid_loss: float | None = None                    # set by `compare`
    label: str = ""                                    # the name in a figure's legend (compare: cell, clip)
    run: dict = field(default_factory=dict)            # compare: how the model was trained

    @property
    def layers(self) -> int:
        return int(self.ratio.shape[0])

    def as_dict(self) -> dict:
        def arr(a):
            return [[_num(v) for v in row] for row in a]
        return {"cell": self.cell, "model": self.describe, "span": self.span, "positions": self.positions,
                "horizon_threshold": HORIZON,
                "layers": [{"layer": k, "decay": _num(self.decay[k]), "horizon": self.horizon[k],
                            "horizon_fit": _num(self.horizon_fit[k])} for k in range(self.layers)],
                "decay": _num(self.decay[-1]), "horizon": self.horizon[-1],
                "horizon_fit": _num(self.horizon_fit[-1]), "valid_loss": _num(self.valid_loss),
                "label": self.label or self.cell, "run": self.run,
                "d": list(range(self.span + 1)), "ratio": arr(self.ratio), "geomean": arr(self.geomean),
                "q25": arr(self.q25), "q50": arr(self.q50), "q75": arr(self.q75)}


def _num(v):
    """A JSON-safe number: None for None, NaN and infinities."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def fit_decay(ratio) -> float:
    """ρ = exp(slope) of the least-squares line through log ratio_d, d = 1 .. D (ratios at the FLOOR
    left out); NaN with fewer than two points."""
    r = np.asarray(ratio, np.float64)
    d = np.arange(r.size)
    keep = (d >= 1) & np.isfinite(r) & (r > 1e10 * FLOOR)
    if keep.sum() < 2:
        return math.nan
    slope = np.polyfit(d[keep], np.log(r[keep]), 1)[0]
    return float(math.exp(slope))


def horizon(ratio, threshold: float = HORIZON) -> int | None:
    """The first d >= 1 with ratio_d < threshold; None when the ratio stays above it."""
    below = np.nonzero(np.asarray(ratio)[1:] < threshold)[0]
    return int(below[0]) + 1 if below.size else None


def profile_from_norms(norms, cfg: ModelConfig) -> GradientProfile:
    """The profile of norms (L, D+1, N): ‖∂L_t/∂h^k_{t-d}‖ for N end positions."""
    norms = np.asarray(norms, np.float64)
    L, D1, N = norms.shape
    logn = np.log(np.maximum(norms, FLOOR))
    geomean = np.exp(logn.mean(axis=2))                                  # (L, D+1)
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.exp(logn.mean(axis=2) - logn[:, :1].mean(axis=2))
        per = np.exp(logn - logn[:, :1])                                 # per-position ratios
    q25, q50, q75 = np.quantile(per, [0.25, 0.5, 0.75], axis=2)
    decay = [fit_decay(ratio[k]) for k in range(L)]
    fit = [math.log(HORIZON) / math.log(r) if math.isfinite(r) and 0 < r < 1 else None for r in decay]
    return GradientProfile(cell=cell_name(cfg), describe=cfg.describe(), span=D1 - 1, positions=N,
                           geomean=geomean, ratio=ratio, q25=q25, q50=q50, q75=q75, decay=decay,
                           horizon=[horizon(ratio[k]) for k in range(L)], horizon_fit=fit)


def end_positions(n_ids: int, span: int, positions: int, warmup: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """(end positions t, sorted; the warm-up actually used) for a text of n_ids tokens: each t has a target
    t+1, a window t-span .. t, and up to `warmup` tokens before it. Drawn without replacement from
    default_rng(seed), or all of them when there are fewer."""
    if n_ids < span + 2:
        raise CharlmError(f"the text has {n_ids} tokens: --span {span} needs at least {span + 2}")
    warmup = max(0, min(warmup, n_ids - span - 2))
    first, last = warmup + span, n_ids - 2                               # t in [first, last]
    count = last - first + 1
    rng = np.random.default_rng(seed)
    t = np.arange(first, last + 1) if count <= positions else rng.choice(np.arange(first, last + 1), positions,
                                                                          replace=False)
    return np.sort(t), warmup


def gradient_profile(cfg: ModelConfig, P, ids, span: int = 100, positions: int = 100, warmup: int = 100,
                     seed: int = 0, chunk: int = 64, dtype=np.float64) -> GradientProfile:
    """Measure the profile of a language model (cfg, P) on a token stream ids (N,) (module docstring).

    Each end position t gets its state from `warmup` tokens before its window (from a zero state),
    then the window ids[t-span .. t] with target ids[t+1]. Positions run `chunk` at a time as batch rows.
    """
    if span < 1:
        raise CharlmError(f"--span must be at least 1, got {span}")
    if positions < 1:
        raise CharlmError(f"--positions must be at least 1, got {positions}")
    ids = np.asarray(ids, np.int32)
    P = {k: np.ascontiguousarray(v, dtype) for k, v in P.items()}
    ends, warmup = end_positions(ids.size, span, positions, warmup, seed)
    norms = []
    for i in range(0, ends.size, chunk):
        t = ends[i:i + chunk]
        start = t - span                                                 # first input of each window
        state = None
        if warmup:
            xw = ids[(start - warmup)[None, :] + np.arange(warmup)[:, None]]        # (warmup, B)
            _, _, state = model.forward(cfg, P, xw, None, for_backward=False)
        x = ids[start[None, :] + np.arange(span + 1)[:, None]]                      # (span+1, B)
        G = state_gradients(cfg, P, x, ids[t + 1], state, span)                     # (L, D+1, B, H)
        norms.append(np.linalg.norm(G.astype(np.float64), axis=3))
    return profile_from_norms(np.concatenate(norms, axis=2), cfg)


def init_model(cell: str, vocab_size: int, hidden: int = 128, layers: int = 1, embed: int | None = None,
               seed: int = 0):
    """An untrained language model of a CELL_KINDS cell (PyTorch's initialisation): (cfg, P)."""
    from charlm.cellnames import CELL_KINDS
    if cell not in CELL_KINDS:
        raise CharlmError(f"unknown cell {cell!r} (one of {', '.join(CELL_KINDS)})")
    cfg = ModelConfig(level="char", layers=layers, hidden=hidden, embed=embed or hidden, vocab_size=vocab_size,
                      **CELL_KINDS[cell])
    return cfg, model.init_params(cfg, np.random.default_rng(seed))


def text_ids(path, vocab=None, encoding_errors: str = "strict"):
    """(ids, Vocab) of a text file: with the given Vocab, or one built from the file's characters."""
    from charlm import data
    from charlm.vocab import Vocab
    if vocab is None:
        counts = data.count_tokens([path], "char", False, encoding_errors)
        if not counts:
            raise CharlmError(f"{path}: no text (the file is empty)")
        vocab = Vocab.from_counts(counts, "char", False)
    return data.encode_file(path, vocab, encoding_errors), vocab


def table_rows(span: int) -> list[int]:
    """The d shown in the text table: 0..10, then every 10th, then span."""
    ds = list(range(min(span, 10) + 1)) + list(range(20, span + 1, 10))
    if ds[-1] != span:
        ds.append(span)
    return ds


def format_profile(p: GradientProfile) -> str:
    """The text report: a table of ratios per layer, then decay rate and horizon per layer."""
    head = "     d" + "".join(f"  {'layer ' + str(k):>10}" for k in range(p.layers))
    lines = [f"{p.describe}: ‖∂L_t/∂h_(t-d)‖ over {p.positions} end positions, ratio to d = 0 "
             f"(geometric mean)", head]
    for d in table_rows(p.span):
        lines.append(f"{d:6d}" + "".join(f"  {p.ratio[k, d]:10.3e}" for k in range(p.layers)))
    for k in range(p.layers):
        h = p.horizon[k]
        hz = f"{h}" if h is not None else f"> {p.span}"
        fit = f" (fit: {p.horizon_fit[k]:.0f})" if p.horizon_fit[k] is not None else ""
        lines.append(f"layer {k}: decay rate {p.decay[k]:.4f} per step, gradient horizon (ratio < {HORIZON:g}) "
                     f"{hz}{fit}")
    return "\n".join(lines)


def compare(corpus, cells, out_dir, hidden: int = 128, layers: int = 1, clips=(5.0,), time_budget: float = 60.0,
            span: int = 100, positions: int = 100, warmup: int = 100, seed: int = 0, log=lambda msg: None,
            progress: bool = False, threads: int | None = None, **train_options) -> list[GradientProfile]:
    """Train one language model per cell and clip value on `corpus` (charlm.train.load_corpus), each with
    the same size, data, seed and `time_budget` seconds, into out_dir/CELL[-clipC].safetensors (its
    log beside it), then measure each kept model's gradient profile on the validation stream.
    train_options: other TrainConfig fields (batch_size, seq_len, lr, ...). Returns one profile per
    run, cells outer, clips inner, with valid_loss, label and run filled in, and the runs that diverged
    (TrainingDiverged: no model to measure) as [{label, cell, clip, diverged: the message}]."""
    import os
    from charlm import checkpoint, train
    from charlm.cellnames import CELL_KINDS
    from charlm.config import TrainConfig
    profiles, failed = [], []
    several = len(clips) > 1
    for cell in cells:
        for clip in clips:
            label = f"{cell} clip {clip:g}" if several else cell
            name = f"{cell}-clip{clip:g}" if several else cell
            out = os.path.join(out_dir, f"{name}.safetensors")
            cfg = ModelConfig(level=corpus.vocab.level, layers=layers, hidden=hidden, embed=hidden,
                              vocab_size=len(corpus.vocab), unk_id=corpus.vocab.unk_id, eos_id=corpus.vocab.eos_id,
                              lowercase=corpus.vocab.lowercase, **CELL_KINDS[cell])
            tc = TrainConfig(time_budget=time_budget, clip=clip, seed=seed, keep="best", **train_options)
            log(f"{label}: training {cfg.describe()} for {time_budget:g} s -> {out}")
            try:
                res = train.train(corpus, out, cfg, tc, progress=progress, log=log, threads=threads)
            except train.TrainingDiverged as e:                      # one run's failure is a result too
                log(f"{label}: {e}")
                failed.append({"label": label, "cell": cell, "clip": clip, "diverged": str(e)})
                continue
            m = checkpoint.load_model(out)
            log(f"{label}: {res.steps:,} steps, validation loss {res.valid_loss:.4f}; measuring gradients")
            prof = gradient_profile(m.config, m.params, corpus.valid, span, positions, warmup, seed)
            prof.valid_loss, prof.label = res.valid_loss, label
            prof.run = {"model": out, "clip": clip, "steps": res.steps, "seconds": round(res.seconds, 1),
                        "tokens": res.tokens, "train_loss": res.train_loss, "stopped_by": res.stopped_by}
            profiles.append(prof)
    return profiles, failed


def format_compare(profiles) -> str:
    """One line per run: validation loss, decay rate and horizon of the top layer."""
    w = max(len(p.label or p.cell) for p in profiles)
    lines = [f"{'cell':<{w}}  valid loss  decay/step  horizon  horizon (fit)  steps"]
    for p in profiles:
        h = str(p.horizon[-1]) if p.horizon[-1] is not None else f">{p.span}"
        fit = f"{p.horizon_fit[-1]:.0f}" if p.horizon_fit[-1] is not None else "-"
        vl = f"{p.valid_loss:.4f}" if p.valid_loss is not None else "-"
        lines.append(f"{p.label or p.cell:<{w}}  {vl:>10}  {p.decay[-1]:10.4f}  {h:>7}  {fit:>13}  "
                     f"{p.run.get('steps', 0):,}")
    return "\n".join(lines)


def clipping_report(path, clip: float | None = None, spikes: int = 5, around: int = 3) -> dict:
    """The pre-clip gradient norms of a training run, from its JSON-lines log (`path` is the log, or the
    model file beside which it lies). The engine logs grad_norm every LOG_EVERY steps, so the figures
    are over those logged steps. clip: the run's clip value (None: the model file's train_config).
    Returns {source, clip, logged, steps, norms, quantiles, mean, share_clipped, spikes: the `spikes`
    largest norms with the logged train_loss of the `around` records either side}."""
    import json as _json
    import os
    from charlm.plot import model_log_path, read_log
    path = str(path)
    model_path = None
    if path.endswith(".safetensors"):
        model_path, log = path, str(model_log_path(path))
        if not os.path.exists(log):
            raise CharlmError(f"{path}: no training log beside it ({log})")
    else:
        log = path
        guess = log[: -len(".log.jsonl")] + ".safetensors" if log.endswith(".log.jsonl") else None
        model_path = guess if guess and os.path.exists(guess) else None
    records = [r for r in read_log(log) if isinstance(r.get("grad_norm"), (int, float))
               and not isinstance(r.get("grad_norm"), bool) and "event" not in r]
    if not records:
        raise CharlmError(f"{log}: no logged gradient norms (grad_norm) in this log")
    if clip is None and model_path is not None:
        from charlm.checkpoint import read_metadata
        try:
            clip = float(_json.loads(read_metadata(model_path).get("train_config", "{}")).get("clip"))
        except (TypeError, ValueError, CharlmError):
            clip = None
    if clip is None:
        raise CharlmError(f"{log}: the run's clip value is unknown (no model file with it beside the log): "
                          f"give --clip")
    steps = [int(r["step"]) for r in records]
    norms = np.array([float(r["grad_norm"]) for r in records])
    q = np.quantile(norms, [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0])
    order = np.argsort(-norms, kind="stable")[:spikes]
    all_records = [r for r in read_log(log) if "event" not in r and isinstance(r.get("train_loss"), (int, float))]
    by_step = [int(r["step"]) for r in all_records]
    spike_rows = []
    for i in sorted(order, key=lambda i: -norms[i]):
        j = int(np.searchsorted(by_step, steps[i]))
        near = all_records[max(0, j - around): j + around + 1]
        spike_rows.append({"step": steps[i], "grad_norm": float(norms[i]),
                           "loss_around": [{"step": int(r["step"]), "train_loss": float(r["train_loss"])}
                                           for r in near]})
    return {"source": log, "model": model_path, "clip": clip, "logged": len(records), "steps": steps,
            "norms": norms.tolist(),
            "quantiles": dict(zip(("min", "q25", "median", "q75", "q90", "q99", "max"), map(float, q))),
            "mean": float(norms.mean()),
            "share_clipped": float(np.mean(norms > clip)) if clip > 0 else 0.0, "spikes": spike_rows}


def format_clipping(r: dict) -> str:
    q = r["quantiles"]
    clip = f"clip {r['clip']:g}" if r["clip"] else "no clipping (clip 0)"
    lines = [f"{r['source']}: {r['logged']} logged steps (every {r['steps'][1] - r['steps'][0] if r['logged'] > 1 else 1}"
             f"th), {clip}",
             "gradient norm before clipping: " + ", ".join(f"{k} {v:.4g}" for k, v in q.items())
             + f", mean {r['mean']:.4g}",
             f"share of logged steps clipped: {r['share_clipped']:.1%}",
             "largest norms (train loss of the logged steps around):"]
    for s in r["spikes"]:
        around = " ".join(f"{a['step']}:{a['train_loss']:.3f}" for a in s["loss_around"])
        lines.append(f"  step {s['step']:>7,}  norm {s['grad_norm']:.4g}   {around}")
    return "\n".join(lines)
