"""The training loop: corpus → vocabulary → batches → truncated BPTT with Adam or SGD → best model on disk.

Batching as char-rnn and PyTorch's word_language_model: the training stream is cut into B contiguous
streams and read in windows of T steps; the hidden state carries from one window to the next and
restarts from zero at each epoch. The gradient stops at window boundaries (truncated BPTT).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from charlm import __version__, data, evaluate, model
from charlm.checkpoint import load_model, save_model
from charlm.config import ModelConfig, TrainConfig
from charlm.errors import CharlmError
from charlm.optim import clip_grads, make_optimizer
from charlm.threads import compute_threads
from charlm.vocab import Vocab

VALID_STREAMS = 16      # validation during training: the held-out stream cut into this many pieces


@dataclass
class Corpus:
    vocab: Vocab
    train: np.ndarray     # (N,) int32 training stream
    valid: np.ndarray     # (M,) int32 validation stream


@dataclass
class TrainResult:
    out: str
    steps: int
    epochs: float
    tokens: int
    seconds: float
    train_loss: float                  # mean over the last 100 steps, nats/token
    best_valid_loss: float             # during training (the stream cut into VALID_STREAMS pieces)
    best_step: int
    valid_loss: float | None = None    # exact single-stream figure of the saved model
    valid_tokens: int = 0
    stopped_by: str = ""
    history: list = field(default_factory=list)

    def as_dict(self):
        return asdict(self)


def load_corpus(paths, level="char", lowercase=False, min_count=1, max_vocab=None, valid_path=None,
                valid_fraction=0.05, encoding_errors="strict") -> Corpus:
    """Read the training files (and the validation file) into id streams with a vocabulary built from the
    training text only: when the validation text is the corpus' tail, it is left out of the counts."""
    counts = data.count_tokens(paths, level, lowercase, encoding_errors)
    if not counts and level == "char":
        raise CharlmError(f"{_names(paths)}: no text to train on (the corpus is empty)")
    if not counts and level == "word":
        raise CharlmError(f"{_names(paths)}: no words to train on (the corpus is empty or whitespace only)")
    full = Vocab.from_counts(counts, level, lowercase)
    ids = data.encode_files(paths, full, encoding_errors)
    if valid_path is None:
        train_ids, valid_ids = data.split_tail(ids, valid_fraction)
    else:
        train_ids, valid_ids = ids, None
    train_counts = np.bincount(train_ids, minlength=len(full))
    tokens = full.tokens
    vocab = Vocab.from_counts({tokens[i]: int(c) for i, c in enumerate(train_counts) if c and i > 1},
                              level, lowercase, min_count, max_vocab)
    if len(vocab) <= 2:
        raise CharlmError(f"{_names(paths)}: the training text has no token seen --min-count {min_count} times")
    remap = np.array([vocab.index.get(t, vocab.unk_id) for t in tokens], np.int32)
    remap[full.eos_id] = vocab.eos_id
    if valid_path is not None:
        valid_ids = data.encode_file(valid_path, vocab, encoding_errors)
        if len(valid_ids) == 0:
            raise CharlmError(f"{valid_path}: the validation file is empty")
    else:
        valid_ids = remap[valid_ids]
    return Corpus(vocab, remap[train_ids], valid_ids)


def _names(paths) -> str:
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return ", ".join(str(p) for p in paths)


def train(corpus: Corpus, out, cfg: ModelConfig, tc: TrainConfig, progress: bool = True,
          log=lambda msg: print(msg, file=sys.stderr)) -> TrainResult:
    """Train a new model on `corpus` and keep it at `out` (the best on validation, or the last)."""
    if cfg.bidirectional:
        raise CharlmError("--bidirectional: a language model predicts each token from the ones before it; "
                          "a backward direction would read the very token it must predict")
    data.check_enough(corpus.train, tc.batch_size, tc.seq_len, "the training text")
    if len(corpus.valid) == 0:
        raise CharlmError("no validation text: give --valid FILE or a larger --valid-fraction")
    with compute_threads():
        return _train(corpus, out, cfg, tc, progress, log)


def _train(corpus, out, cfg, tc, progress, log):
    out = str(out)
    log_path = Path(out).with_suffix(".log.jsonl") if out.endswith(".safetensors") else Path(out + ".log.jsonl")
    rng = np.random.default_rng(tc.seed)
    P = model.init_params(cfg, rng)
    opt = make_optimizer(tc.optimizer, P, tc.lr, tc.momentum)
    streams = data.batchify(corpus.train, tc.batch_size)                  # (B, N)
    steps_per_epoch = math.ceil((streams.shape[1] - 1) / tc.seq_len)
    limits = [s for s in (tc.max_steps, math.ceil(tc.epochs * steps_per_epoch) if tc.epochs else 0) if s]
    total = min(limits) if limits else None
    valid_streams = evaluate.split_streams(corpus.valid, VALID_STREAMS)
    meta_common = {"charlm_version": __version__, "train_config": json.dumps(asdict(tc))}

    bar = _progress_bar(total, progress)
    state = model.zero_state(cfg, tc.batch_size)
    step, tokens, epoch_pos = 0, 0, 0
    best, best_step, bad_valids = math.inf, 0, 0
    recent: list[float] = []
    history = []
    start = last_valid = time.perf_counter()
    valid_gap = max(30.0, 0.05 * tc.time_budget) if tc.time_budget else 60.0
    stopped_by = ""
    log_file = open(log_path, "w", encoding="utf-8")

    def validate(reason):
        nonlocal best, best_step, last_valid, bad_valids
        sums, _ = evaluate.streams_nll(cfg, P, valid_streams)
        vloss = float(sums.sum() / len(corpus.valid))
        last_valid = time.perf_counter()
        improved = vloss < best
        if improved:
            best, best_step, bad_valids = vloss, step, 0
            if tc.keep == "best":
                _save(out, P, cfg, corpus.vocab, meta_common, step, best)
        else:
            bad_valids += 1
            if tc.lr_decay > 1:
                opt.lr /= tc.lr_decay
        record = _record(step, step / steps_per_epoch, tokens, recent, vloss, opt.lr, None,
                         tokens / max(1e-9, time.perf_counter() - start), time.perf_counter() - start)
        history.append(record)
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        if bar is not None:
            bar.set_postfix_str(_postfix(recent, vloss, tokens, start, opt.lr))
        return improved

    signals = _StopSignals()
    try:
        while stopped_by == "":
            for pos, x, y in data.windows(streams, tc.seq_len, epoch_pos):
                masks = model.dropout_masks(cfg, rng, x.shape[0], tc.batch_size, tc.dropout)
                loss, grads, state = model.loss_and_grads(cfg, P, x, y, state, masks)
                norm = clip_grads(grads, tc.clip)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    raise CharlmError(f"training diverged at step {step + 1}: loss {loss}, gradient norm {norm}; "
                                      f"try a lower --lr or a --clip value (the saved model is unchanged)")
                opt.step(P, grads)
                step += 1
                tokens += x.size
                recent = (recent + [loss])[-100:]
                epoch_pos = pos + tc.seq_len
                if step % 50 == 0:
                    record = _record(step, step / steps_per_epoch, tokens, recent, None, opt.lr, norm,
                                     tokens / (time.perf_counter() - start), time.perf_counter() - start)
                    log_file.write(json.dumps(record) + "\n")
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0:
                        bar.set_postfix_str(_postfix(recent, best if best < math.inf else None, tokens, start, opt.lr))
                elapsed = time.perf_counter() - start
                if signals.received:
                    stopped_by = "interrupted"
                elif total is not None and step >= total:
                    stopped_by = "max-steps" if tc.max_steps and step >= tc.max_steps else "epochs"
                elif tc.time_budget and elapsed >= tc.time_budget:
                    stopped_by = "time-budget"
                if stopped_by:
                    break
                if (tc.valid_every and step % tc.valid_every == 0) or \
                        (not tc.valid_every and time.perf_counter() - last_valid >= valid_gap):
                    validate("interval")
            else:
                epoch_pos = 0
                state = model.zero_state(cfg, tc.batch_size)
                if not tc.valid_every:
                    validate("epoch")
    finally:
        signals.restore()
        if bar is not None:
            bar.close()
    validate("end")
    if tc.keep == "last":
        _save(out, P, cfg, corpus.vocab, meta_common, step, best)
    log_file.close()
    seconds = time.perf_counter() - start
    kept = load_model(out).params
    sums, _ = evaluate.streams_nll(cfg, kept, [corpus.valid], batch=1, window=256)
    return TrainResult(out=out, steps=step, epochs=step / steps_per_epoch, tokens=tokens, seconds=seconds,
                       train_loss=float(np.mean(recent)) if recent else math.nan, best_valid_loss=best,
                       best_step=best_step, valid_loss=float(sums[0] / len(corpus.valid)),
                       valid_tokens=len(corpus.valid), stopped_by=stopped_by, history=history)


class _StopSignals:
    """SIGINT and SIGTERM ask the loop to stop after the current step (the parameters are never left
    half-updated); a second Ctrl-C stops at once."""

    def __init__(self):
        self.received = None
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def restore(self):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _save(out, P, cfg, vocab, meta_common, step, best):
    meta = dict(meta_common, step=str(step), best_valid_loss=repr(best))
    save_model(out, P, cfg, vocab.tokens, meta)


def _record(step, epoch, tokens, recent, vloss, lr, norm, tok_s, wall):
    return {"step": step, "epoch": round(epoch, 4), "tokens": tokens,
            "train_loss": float(np.mean(recent)) if recent else None, "valid_loss": vloss, "lr": lr,
            "grad_norm": norm, "tok_s": round(tok_s, 1), "wall": round(wall, 3)}


def _postfix(recent, vloss, tokens, start, lr):
    parts = [f"loss {np.mean(recent[-20:]):.3f}" if recent else "loss -"]
    if vloss is not None:
        parts.append(f"val {vloss:.3f}")
    parts.append(f"{tokens / max(1e-9, time.perf_counter() - start):,.0f} tok/s")
    parts.append(f"lr {lr:.2g}")
    return ", ".join(parts)


def _progress_bar(total, enabled):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="step", dynamic_ncols=True, leave=True, file=sys.stderr)
