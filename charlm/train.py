"""The training loop: corpus → vocabulary → batches → truncated BPTT with Adam or SGD → best model on disk.

Batching as char-rnn and PyTorch's word_language_model: the training stream is cut into B contiguous
streams and read in windows of T steps; the hidden state carries from one window to the next and
restarts from zero at each epoch. The gradient stops at window boundaries (truncated BPTT).

Reliability (what a long run can count on):
- The run state (latest parameters, optimizer moments and scalars, step, data position, carried hidden
  state, the NumPy generator that draws dropout masks, the validation and learning-rate schedule) is
  saved to OUT.state (charlm.resume) at every scheduled validation, every `checkpoint_every` steps, on
  SIGINT/SIGTERM and at the end. `train(..., resume=load_state(...))` continues the run bit for bit:
  with the same thread count, a run stopped at any step and resumed ends with the same parameters as
  one that never stopped.
- Everything that happens at step k (the step, the epoch rollover, a scheduled validation and its
  learning-rate decay, a checkpoint) happens before a stop is considered, so a stop at k leaves the run
  exactly as the uninterrupted run is after k. The extra validation of a stopped run is not scheduled:
  it may keep a better model (--keep best) but never touches the learning-rate schedule.
- SIGINT or SIGTERM finishes the current step, saves, and returns with stopped_by "interrupted" and the
  signal number; a second Ctrl-C stops at once (KeyboardInterrupt).
- A non-finite loss or gradient norm raises TrainingDiverged (CLI exit code 3) after saving the run state
  of the last good step; the model file is not touched. With on_nonfinite="skip" the step is skipped
  (no update, the previous carried state kept) and counted, up to MAX_SKIPS_IN_A_ROW in a row.
  Nothing non-finite is ever saved: save_model and save_state refuse it.
- Saves are atomic (checkpoint.write_atomic). A kill during a save leaves the previous file intact and
  possibly a `.NAME.*.tmp` file beside it; the next run on the same --out removes those.
"""
from __future__ import annotations

import glob
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from charlm import __version__, data, evaluate, model
from charlm.checkpoint import load_model, read_metadata, save_model, write_atomic
from charlm.config import ModelConfig, TrainConfig
from charlm.errors import CharlmError
from charlm.optim import clip_grads, make_optimizer
from charlm.resume import RunState, ids_digest, make_rng, save_state, state_path
from charlm.threads import compute_threads
from charlm.vocab import Vocab

VALID_STREAMS = 16         # validation during training: the held-out stream cut into this many pieces
NONFINITE_POLICIES = ("stop", "skip")
MAX_SKIPS_IN_A_ROW = 20    # --on-nonfinite skip: this many non-finite steps in a row stop the run anyway


class TrainingDiverged(CharlmError):
    """The loss or the gradient norm became NaN or infinite. The CLI exits with this code."""
    exit_code = 3


@dataclass
class Corpus:
    vocab: Vocab
    train: np.ndarray     # (N,) int32 training stream
    valid: np.ndarray     # (M,) int32 validation stream
    source: str = ""      # the files it was read from, for messages


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
    stopped_by: str = ""               # max-steps | epochs | time-budget | interrupted
    signal: int = 0                    # the signal that interrupted the run (SIGINT, SIGTERM), else 0
    skipped: int = 0                   # steps skipped for a non-finite loss (on_nonfinite="skip")
    resumed_from: int | None = None    # the step this session resumed at (None: a new run)
    state_path: str = ""               # the run state, for --resume
    valid_exact: bool = True           # valid_loss is the exact single-stream figure (not after a signal)
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
    if all(c.isspace() for c in counts):
        raise CharlmError(f"{_names(paths)}: no text to train on (the corpus is whitespace only)")
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
    return Corpus(vocab, remap[train_ids], valid_ids, _names(paths))


def _names(paths) -> str:
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return ", ".join(str(p) for p in paths)


def train(corpus: Corpus, out, cfg: ModelConfig, tc: TrainConfig, progress: bool = True,
          log=lambda msg: print(msg, file=sys.stderr), *, resume: RunState | None = None,
          checkpoint_every: int = 0, on_nonfinite: str = "stop", threads: int | None = None,
          run_config: dict | None = None) -> TrainResult:
    """Train a model on `corpus` and keep it at `out` (the best on validation, or the last).

    resume: a RunState (charlm.resume.load_state) of the run to continue; corpus, cfg and the fixed
    parts of tc (batch size, window, optimizer, seed) must be the run's. tc's limits (epochs, max_steps,
    time_budget: totals of the whole run), lr (a new value replaces the current, possibly decayed, one),
    clip, the dropouts, momentum, lr_decay, lr_schedule, valid_every and keep may differ.
    checkpoint_every: also save the run state (and with keep="last" the model) every N steps (0 = no).
    on_nonfinite: "stop" raises TrainingDiverged; "skip" skips the step and counts it.
    threads: Numba threads for this run (None: the current count). Same threads, same bits.
    run_config: JSON-able facts about how the run was started, stored in the run state for --resume.
    """
    if cfg.bidirectional:
        raise CharlmError("--bidirectional: a language model predicts each token from the ones before it; "
                          "a backward direction would read the very token it must predict")
    if on_nonfinite not in NONFINITE_POLICIES:
        raise CharlmError(f"--on-nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}")
    if isinstance(checkpoint_every, bool) or not (isinstance(checkpoint_every, int) and checkpoint_every >= 0):
        raise CharlmError(f"--checkpoint-every must be an integer >= 0, got {checkpoint_every!r}")
    data.check_enough(corpus.train, tc.batch_size, tc.seq_len,
                      f"the training text of {corpus.source}" if corpus.source else "the training text")
    if len(corpus.valid) == 0:
        raise CharlmError("no validation text: give --valid FILE or a larger --valid-fraction")
    if resume is not None:
        check_resume(resume, corpus, cfg, tc, state_path(out))
    with compute_threads(threads):
        run = _Run(corpus, str(out), cfg, tc, progress, log, resume, checkpoint_every, on_nonfinite,
                   run_config or {})
        return run.run()


FIXED_ON_RESUME = ("batch_size", "seq_len", "optimizer", "seed")   # TrainConfig fields a run keeps


def check_resume(st: RunState, corpus: Corpus, cfg: ModelConfig, tc: TrainConfig, where) -> None:
    """CharlmError unless corpus, cfg and tc can continue the run saved in `st` (read from `where`)."""
    if cfg != st.config:
        diff = [f"{k} {getattr(cfg, k)!r} (the run has {getattr(st.config, k)!r})"
                for k in cfg.__dataclass_fields__ if getattr(cfg, k) != getattr(st.config, k)]
        raise CharlmError(f"--resume: the model does not match the run saved in {where}: {', '.join(diff)}")
    if corpus.vocab.tokens != st.vocab:
        raise CharlmError(f"--resume: the corpus gives another vocabulary than the run saved in {where}; "
                          f"resume with the same files and options, or start a new run without --resume")
    for part, ids in (("training", corpus.train), ("validation", corpus.valid)):
        if ids_digest(ids) != st.corpus_sha256["train" if part == "training" else "valid"]:
            raise CharlmError(f"--resume: the {part} text is not the one of the run saved in {where} "
                              f"(its token ids differ); resume with the same files and options, or start "
                              f"a new run without --resume")
    for k in FIXED_ON_RESUME:
        if getattr(tc, k) != st.train_config[k]:
            raise CharlmError(f"--resume: --{k.replace('_', '-')} {getattr(tc, k)} conflicts with the run saved "
                              f"in {where} ({st.train_config[k]}); it is fixed for a run")


class _Run:
    """One training session: a new run, or a resumed one. Holds everything the run state saves."""

    def __init__(self, corpus, out, cfg, tc, progress, log, resume, checkpoint_every, on_nonfinite, run_config):
        import numba
        self.corpus, self.out, self.cfg, self.tc, self.log = corpus, out, cfg, tc, log
        self.progress_enabled = progress
        self.checkpoint_every, self.on_nonfinite = checkpoint_every, on_nonfinite
        self.run_config = dict(run_config, checkpoint_every=checkpoint_every, on_nonfinite=on_nonfinite)
        self.state_path = state_path(out)
        self.log_path = _log_path(out)
        self.streams = data.batchify(corpus.train, tc.batch_size)                  # (B, N)
        self.n = self.streams.shape[1]
        self.steps_per_epoch = math.ceil((self.n - 1) / tc.seq_len)
        self.valid_streams = evaluate.split_streams(corpus.valid, VALID_STREAMS)
        self.digests = {"train": ids_digest(corpus.train), "valid": ids_digest(corpus.valid)}
        self.threads = numba.get_num_threads()
        self.history = []
        self.last_valid_step, self.last_vloss = None, None
        self.stopped_by, self.signal = "", 0
        if resume is None:
            self._start()
        else:
            self._restore(resume)
        self.t0 = self.last_valid = time.perf_counter()
        self.valid_gap = max(30.0, 0.05 * tc.time_budget) if tc.time_budget else 60.0

    # ----------------------------------------------------------------------------- run state

    def _start(self):
        cfg, tc = self.cfg, self.tc
        self.rng = np.random.default_rng(tc.seed)
        self.P = model.init_params(cfg, self.rng)
        self.opt = make_optimizer(tc.optimizer, self.P, tc.lr, tc.momentum)
        self.carry = model.zero_state(cfg, tc.batch_size)                        # (L, 2, B, H)
        self.step = self.epoch = self.epoch_pos = self.tokens = 0
        self.elapsed0 = 0.0
        self.best = self.sched_best = math.inf
        self.best_step = self.bad_valids = self.skipped = self.skips_in_row = 0
        self.recent: list[float] = []
        self.run_id = uuid.uuid4().hex
        self.resumed_from = None

    def _restore(self, st: RunState):
        tc, p = self.tc, st.progress
        self.rng = make_rng(st.rng_state)
        self.P = {k: np.array(v, np.float32, order="C") for k, v in st.params.items()}
        self.opt = make_optimizer(tc.optimizer, self.P, tc.lr, tc.momentum)
        self.opt.load_state(st.opt_arrays, p["opt_scalars"])
        if tc.lr != st.train_config["lr"]:
            self.log(f"--lr {tc.lr:g} replaces the run's learning rate {self.opt.lr:g} from step {p['step']} on")
            self.opt.lr = tc.lr
        self.carry = np.array(st.carry, np.float32, order="C")
        for k in ("step", "epoch", "epoch_pos", "tokens", "best", "best_step", "sched_best", "bad_valids",
                  "skipped", "skips_in_row", "run_id"):
            setattr(self, k, p[k])
        self.elapsed0 = float(p["elapsed"])
        self.recent = [float(v) for v in p["recent"]]
        self.resumed_from = self.step
        if self.epoch_pos >= self.n - 1:
            raise CharlmError(f"--resume: the saved data position {self.epoch_pos} is past the training text "
                              f"({self.n} tokens a stream)")
        if p["threads"] != self.threads:
            self.log(f"note: the run used {p['threads']} threads and this session {self.threads}: it continues, "
                     f"but not bit for bit as the run would have (give --threads {p['threads']} for that)")
        if tc.keep == "best":
            self.best, self.best_step = self._kept_best()

    def _kept_best(self):
        """What the model file at --out holds of this run: (best validation loss, its step), else (inf, 0)."""
        try:
            meta = read_metadata(self.out)
            if meta.get("run_id") == self.run_id and meta.get("keep") == "best":
                return float(meta["best_valid_loss"]), int(meta["step"])
        except (CharlmError, KeyError, ValueError):
            pass
        if os.path.exists(self.out):
            self.log(f"note: {self.out} does not hold a model of this run: the next validation replaces it")
        return math.inf, 0

    def _progress_record(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "epoch_pos": self.epoch_pos, "tokens": self.tokens,
                "elapsed": self.elapsed(), "best": self.best, "best_step": self.best_step,
                "sched_best": self.sched_best, "bad_valids": self.bad_valids, "recent": list(self.recent),
                "skipped": self.skipped, "skips_in_row": self.skips_in_row, "optimizer": self.opt.name,
                "opt_scalars": self.opt.state_scalars(), "threads": self.threads, "run_id": self.run_id,
                "stopped_by": self.stopped_by, "charlm_version": __version__}

    def _check_finite(self):
        """Non-finite parameters or moments (an absurd learning rate can get there from finite gradients)
        end the run as a divergence; they are never saved."""
        for what, arrays in (("parameter", self.P), ("optimizer moment", self.opt.state_arrays())):
            for name, a in arrays.items():
                if not np.isfinite(a).all():
                    raise TrainingDiverged(f"training diverged by step {self.step}: {what} {name} holds non-finite "
                                           f"values; nothing was saved: try a lower --lr or a --clip value")

    def save_state(self):
        self._check_finite()
        save_state(self.state_path, RunState(
            config=self.cfg, vocab=self.corpus.vocab.tokens, train_config=asdict(self.tc),
            run_config=self.run_config, corpus_sha256=self.digests, params=self.P,
            opt_arrays=self.opt.state_arrays(), carry=self.carry, rng_state=self.rng.bit_generator.state,
            progress=self._progress_record()))

    def save_model(self):
        meta = {"charlm_version": __version__, "train_config": json.dumps(asdict(self.tc)),
                "step": str(self.step), "best_valid_loss": repr(self.best), "run_id": self.run_id,
                "keep": self.tc.keep}
        self._check_finite()
        save_model(self.out, self.P, self.cfg, self.corpus.vocab.tokens, meta)

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    # ---------------------------------------------------------------------------------- loop

    def run(self) -> TrainResult:
        self._clean_stale_temp_files()
        self.log_file = self._open_log()
        total = self.total = self._total_steps()
        self.bar = _progress_bar(total, self.step, self.progress_enabled)
        signals = _StopSignals()
        try:
            while True:
                self.stopped_by = self._stop_reason(signals, total)
                if self.stopped_by:
                    break
                self._step()
            self.signal = signals.received or 0
            self._finish()
        finally:
            signals.restore()
            if self.bar is not None:
                self.bar.close()
            self.log_file.close()
        return self._result()

    def _total_steps(self):
        tc = self.tc
        limits = [s for s in (tc.max_steps, math.ceil(tc.epochs * self.steps_per_epoch) if tc.epochs else 0) if s]
        return min(limits) if limits else None

    def _done(self) -> float:
        """The fraction of the run done, by whichever limit ends it first (steps, epochs, time)."""
        tc = self.tc
        parts = [self.step / self.total] if self.total else []
        if tc.time_budget:
            parts.append(self.elapsed() / tc.time_budget)
        return min(1.0, max(parts, default=0.0))

    def _stop_reason(self, signals, total) -> str:
        tc = self.tc
        if signals.received:
            return "interrupted"
        if total is not None and self.step >= total:
            return "max-steps" if tc.max_steps and self.step >= tc.max_steps else "epochs"
        if tc.time_budget and self.elapsed() >= tc.time_budget:
            return "time-budget"
        return ""

    def _step(self):
        """One window: forward, backward, clip, update; then what belongs to this step (epoch rollover,
        log, scheduled validation, checkpoint)."""
        cfg, tc = self.cfg, self.tc
        p = self.epoch_pos
        t = min(tc.seq_len, self.n - 1 - p)
        x = np.ascontiguousarray(self.streams[:, p:p + t].T)                  # (t, B)
        y = np.ascontiguousarray(self.streams[:, p + 1:p + 1 + t].T)          # (t, B)
        rng_before = self.rng.bit_generator.state
        masks = model.dropout_masks(cfg, self.rng, t, tc.batch_size, tc.dropout, embed_p=tc.embed_dropout,
                                    locked=tc.locked_dropout)
        if tc.lr_schedule == "cosine":
            self.opt.lr = tc.lr * 0.5 * (1.0 + math.cos(math.pi * self._done()))
        loss, grads, carry = model.loss_and_grads(cfg, self.P, x, y, self.carry, masks)
        with np.errstate(invalid="ignore", over="ignore"):           # a non-finite norm is handled below
            norm = clip_grads(grads, tc.clip)
        if math.isfinite(loss) and math.isfinite(norm):
            self.opt.step(self.P, grads)
            self.carry = carry
            self.tokens += x.size
            self.recent = (self.recent + [loss])[-100:]
            self.skips_in_row = 0
        else:
            self._nonfinite(loss, norm, rng_before)
        self.step += 1
        self.epoch_pos = p + tc.seq_len
        epoch_end = self.epoch_pos >= self.n - 1
        if epoch_end:                                          # the next epoch restarts from a zero state
            self.epoch += 1
            self.epoch_pos = 0
            self.carry = model.zero_state(cfg, tc.batch_size)
        if self.step % 50 == 0:
            self._write_log(self._record(None, norm))
        if self.bar is not None:
            self.bar.update(1)
            if self.step % 10 == 0:
                self.bar.set_postfix_str(self._postfix())
        if (tc.valid_every and self.step % tc.valid_every == 0) or (not tc.valid_every and (
                epoch_end or time.perf_counter() - self.last_valid >= self.valid_gap)):
            self._validate(scheduled=True)
            self.save_state()
        elif self.checkpoint_every and self.step % self.checkpoint_every == 0:
            self.save_state()
        if self.checkpoint_every and self.step % self.checkpoint_every == 0 and tc.keep == "last":
            self.save_model()

    def _nonfinite(self, loss, norm, rng_before):
        what = f"loss {loss}, gradient norm {norm}"
        if self.on_nonfinite == "skip" and self.skips_in_row + 1 < MAX_SKIPS_IN_A_ROW:
            self.skipped += 1
            self.skips_in_row += 1
            self._write_log({"step": self.step + 1, "event": "skipped", "loss": str(loss), "grad_norm": str(norm)})
            self.log(f"step {self.step + 1}: non-finite {what}: step skipped ({self.skipped} so far)")
            return
        # Stop: leave the run exactly as it was after the last good step, and save that.
        self.rng.bit_generator.state = rng_before
        self._write_log({"step": self.step + 1, "event": "diverged", "loss": str(loss), "grad_norm": str(norm)})
        kept = f"{self.out} is unchanged" if os.path.exists(self.out) else f"nothing was saved to {self.out}"
        try:
            self.save_state()
            saved = (f"the run state after step {self.step} is saved to {self.state_path}: continue it with "
                     f"--resume and a lower --lr, a --clip value or --on-nonfinite skip")
        except CharlmError as e:
            saved = f"the run state could not be saved ({e})"
        in_row = f" ({self.skips_in_row + 1} steps in a row)" if self.on_nonfinite == "skip" else ""
        raise TrainingDiverged(f"training diverged at step {self.step + 1}: non-finite {what}{in_row}; "
                               f"{kept}; {saved}")

    def _validate(self, scheduled: bool):
        """Validation loss on the held-out streams (no randomness used). A scheduled validation drives the
        learning-rate decay; any validation may keep a better model (keep="best")."""
        tc = self.tc
        sums, _ = evaluate.streams_nll(self.cfg, self.P, self.valid_streams)
        vloss = float(sums.sum() / len(self.corpus.valid))
        self.last_valid = time.perf_counter()
        self.last_valid_step, self.last_vloss = self.step, vloss
        if scheduled:
            if vloss < self.sched_best:
                self.sched_best, self.bad_valids = vloss, 0
            else:
                self.bad_valids += 1
                if tc.lr_decay > 1:
                    self.opt.lr /= tc.lr_decay
        if vloss < self.best:
            self.best, self.best_step = vloss, self.step
            if tc.keep == "best":
                self.save_model()
        record = self._record(vloss, None)
        self.history.append(record)
        self._write_log(record)
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(vloss))

    def _finish(self):
        """After the last step: a final validation unless one just ran, then the model and run state."""
        if self.last_valid_step != self.step:
            self._validate(scheduled=False)
        if self.tc.keep == "last" or not os.path.exists(self.out):   # e.g. keep best, but no finite loss
            self.save_model()
        self.save_state()

    def _result(self) -> TrainResult:
        tc = self.tc
        interrupted = self.stopped_by == "interrupted"
        if interrupted:              # be quick after Ctrl-C: the fast figure of the kept model
            vloss = self.best if tc.keep == "best" and math.isfinite(self.best) else self.last_vloss
        else:
            kept = load_model(self.out).params
            vloss = evaluate.stream_nll(self.cfg, kept, self.corpus.valid) / len(self.corpus.valid)
        return TrainResult(out=self.out, steps=self.step, epochs=self.step / self.steps_per_epoch,
                           tokens=self.tokens, seconds=self.elapsed(),
                           train_loss=float(np.mean(self.recent)) if self.recent else math.nan,
                           best_valid_loss=self.best, best_step=self.best_step, valid_loss=vloss,
                           valid_tokens=len(self.corpus.valid), stopped_by=self.stopped_by, signal=self.signal,
                           skipped=self.skipped, resumed_from=self.resumed_from, state_path=self.state_path,
                           valid_exact=not interrupted, history=self.history)

    # ------------------------------------------------------------------------------ files, log

    def _clean_stale_temp_files(self):
        """Remove temp files that a killed save of this --out left behind (`.NAME.*.tmp`, see write_atomic)."""
        directory = os.path.dirname(os.path.abspath(self.out))
        removed = 0
        for name in (os.path.basename(self.out), os.path.basename(self.state_path), self.log_path.name):
            for tmp in glob.glob(os.path.join(glob.escape(directory), "." + glob.escape(name) + ".*.tmp")):
                try:
                    os.unlink(tmp)
                    removed += 1
                except OSError:
                    pass
        if removed:
            self.log(f"removed {removed} temp file(s) left by an interrupted save")

    def _open_log(self):
        """A new run starts a new log; a resumed one keeps the records up to its step and appends."""
        if self.resumed_from is None:
            return open(self.log_path, "w", encoding="utf-8")
        kept = []
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:                 # a line cut short by a kill
                        continue
                    if isinstance(record, dict) and isinstance(record.get("step"), (int, float)) \
                            and record["step"] <= self.step:
                        kept.append(line if line.endswith("\n") else line + "\n")
        except OSError:
            pass
        kept.append(json.dumps({"step": self.step, "event": "resumed", "wall": round(self.elapsed0, 3)}) + "\n")
        write_atomic(self.log_path, "".join(kept).encode("utf-8"), what="training log")
        return open(self.log_path, "a", encoding="utf-8")

    def _write_log(self, record):
        self.log_file.write(json.dumps(record) + "\n")
        self.log_file.flush()

    def _record(self, vloss, norm):
        elapsed = self.elapsed()
        return {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "tokens": self.tokens,
                "train_loss": float(np.mean(self.recent)) if self.recent else None, "valid_loss": vloss,
                "lr": self.opt.lr, "grad_norm": norm, "tok_s": round(self.tokens / max(1e-9, elapsed), 1),
                "wall": round(elapsed, 3)}

    def _postfix(self, vloss=None):
        vloss = vloss if vloss is not None else (self.best if self.best < math.inf else None)
        parts = [f"loss {np.mean(self.recent[-20:]):.3f}" if self.recent else "loss -"]
        if vloss is not None:
            parts.append(f"val {vloss:.3f}")
        parts.append(f"{self.tokens / max(1e-9, self.elapsed()):,.0f} tok/s")
        parts.append(f"lr {self.opt.lr:.2g}")
        if self.tc.time_budget:                    # the bar has no total then: say what is left
            left = max(0, int(self.tc.time_budget - self.elapsed()))
            parts.append(f"{left // 60}:{left % 60:02d} left")
        return ", ".join(parts)


def _log_path(out: str) -> Path:
    return Path(out).with_suffix(".log.jsonl") if out.endswith(".safetensors") else Path(out + ".log.jsonl")


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


def _progress_bar(total, initial, enabled):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True, file=sys.stderr)
