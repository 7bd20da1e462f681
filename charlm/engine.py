"""The training engine: one run loop for every task (language model, classifier, tagger, seq2seq).

The engine knows nothing about what is learned. It owns the optimizer (Adam or SGD), gradient clipping,
the learning-rate schedules, validation and best-model keeping, the time budget and step limits,
atomic checkpoints, Ctrl-C/SIGTERM, bit-identical resume, divergence stops, the JSON-lines log and the
progress bar. A task (below) owns its data, its math and its files.

The task interface (duck-typed; charlm.tasks.lm.LMTask is the reference implementation):

    kind: str                    the task's name in run-state files ("lm"); charlm.tasks maps it back
    config                       the model config (frozen dataclass with to_json), saved in every file
    vocab                        the task's token/label tables, saved beside the config
    tc                           its training config: a charlm.config.RunConfig subclass
    select: str                  the metric that decides "best" (e.g. "valid_loss", "valid_accuracy")
    higher_is_better: bool       its direction
    metrics: tuple[str, ...]     the names evaluate() returns, in log order (select among them)
    label: str                   short name of `select` for the progress bar ("val", "acc")
    steps_per_epoch: int         optimizer steps in one pass over the training data
    digests: dict                {"train": hex, "valid": hex} of the data, checked on resume

    init_params(rng) -> dict     the parameters of a new run (float32, C-contiguous)
    carried() -> dict            tensors the task carries from batch to batch (the LM's hidden state),
                                 saved in the run state; {} for tasks whose batches are independent
    restore(tensors)             puts carried tensors back on resume
    check_position(position)     CharlmError if a saved position cannot belong to this data
    step(P, epoch, position, rng) -> (loss, grads, tokens, commit)
                                 forward, loss and backward on the batch at `position` of `epoch`,
                                 dropout masks drawn from `rng` (the engine's saved generator);
                                 `commit()` is called only when the step is applied (finite loss and
                                 gradient norm), to keep what the step carries forward
    advance(position) -> (position, epoch_end)    the next batch; at an epoch's end the engine calls
    new_epoch()                  (the LM's state restarts from zero)
    evaluate(P) -> dict          the validation metrics (no randomness)
    reference_loss: float        optional: the training loss of a uniform guess (the LM: ln V); with it
                                 the engine stops a run whose loss explodes far above it (divergence)
    inputs: tuple[str, ...]      optional: the files the task reads; no output of the run may be one of
                                 them (the engine also takes the paths under run_config's "corpus",
                                 "data", "valid" and "init_from" keys)
    final_metrics(path) -> dict  the exact figures of the model saved at `path`, after the run
    final_seconds(P) -> float    optional: an estimate of final_metrics' time, measured now (a time budget
                                 keeps room for it)
    save_model(path, P, meta)    writes the model file with the engine's metadata strings added

A time budget covers the whole command: the loop stops early enough to leave room for what follows it
(a last validation, the saves, the task's final figures), as long as the last validation and save took,
plus the task's final_seconds. A timed run that has not validated by a tenth of its budget validates
then (unscheduled: it leaves the learning-rate schedule alone) to have that measure. Both are measured
while the run goes, so they follow the machine's load (a 300 s budget once ran 444 s on a busy
machine: the exact single-stream figure after the loop was not counted).

A step k does everything that belongs to it (update, epoch rollover, a scheduled validation and its
learning-rate decay, a checkpoint) before a stop is considered, so a stop at k leaves the run exactly as
the uninterrupted run is after k, and a resumed run continues bit for bit (same thread count). The extra
validation of a stopped run is not scheduled: it may keep a better model but never touches the
learning-rate schedule.

Reliability:
- The run state (charlm.resume) is saved at every scheduled validation, every `checkpoint_every` steps,
  on SIGINT/SIGTERM and at the end. SIGINT or SIGTERM finishes the current step, saves and returns with
  stopped_by "interrupted"; a second Ctrl-C stops at once (KeyboardInterrupt).
- A non-finite loss or gradient norm raises TrainingDiverged (CLI exit code 3) after saving the run
  state of the last good step; the model file is not touched. With on_nonfinite="skip" the step is
  skipped (no update, nothing committed) and counted, up to MAX_SKIPS_IN_A_ROW in a row. Nothing
  non-finite is ever saved.
- Divergence that is not NaN: once DIVERGE_MIN_STEPS steps are applied, if the mean training loss of
  the last DIVERGE_WINDOW steps exceeds DIVERGE_FACTOR x the task's reference_loss (a uniform guess),
  the run raises TrainingDiverged too, before that step's validation or saves; nothing more is saved.
  A model is never saved while that mean (over however many steps there are) is that high.
- Saves are atomic (checkpoint.write_atomic). A kill during a save leaves the previous file intact and
  possibly a `.NAME.*.tmp` file beside it; the next run on the same output removes those.
- Files (charlm.runfiles): before anything is written, every output (model, run state, log, lock and
  temp files) is compared with the inputs by device and inode: the same file, a symlink or a hard link
  to an input is an error. One writer per output: a run holds an flock on `.NAME.lock` from start to
  end, a second run on the same output is refused naming the first one's pid. The log is written to a
  temp file until the run's first model save and renamed over the old log then (a symlink there is
  replaced, never followed), so the log beside a model is the log of that model's run.
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

from charlm import __version__
from charlm import runfiles
from charlm.checkpoint import read_metadata
from charlm.config import FIXED
from charlm.errors import CharlmError
from charlm.optim import clip_grads, make_optimizer
from charlm.resume import RunState, make_rng, save_state, state_path
from charlm.threads import compute_threads

NONFINITE_POLICIES = ("stop", "skip")
MAX_SKIPS_IN_A_ROW = 20    # --on-nonfinite skip: this many non-finite steps in a row stop the run anyway
LOG_EVERY = 50             # steps between training records in the log
DIVERGE_WINDOW = 50        # divergence: the mean training loss of this many recent steps ...
DIVERGE_FACTOR = 3.0       # ... above this many times the task's reference_loss (the LM: ln V) ...
DIVERGE_MIN_STEPS = 5      # ... once at least this many steps are in the window (any number before a save)


class TrainingDiverged(CharlmError):
    """The loss or the gradient norm became NaN or infinite. The CLI exits with this code."""
    exit_code = 3


@dataclass
class RunResult:
    out: str
    steps: int
    epochs: float
    tokens: int
    seconds: float
    train_loss: float                  # mean over the last 100 steps
    best: float                        # the best value of the task's deciding metric during training
    best_step: int
    last: dict                         # the metrics of the last validation
    final: dict | None                 # task.final_metrics of the saved model (None after a signal)
    stopped_by: str = ""               # max-steps | epochs | time-budget | interrupted
    signal: int = 0                    # the signal that interrupted the run (SIGINT, SIGTERM), else 0
    skipped: int = 0                   # steps skipped for a non-finite loss (on_nonfinite="skip")
    resumed_from: int | None = None    # the step this session resumed at (None: a new run)
    state_path: str = ""               # the run state, for --resume
    history: list = field(default_factory=list)


def run(task, out, *, progress: bool = True, log=lambda msg: print(msg, file=sys.stderr),
        resume: RunState | None = None, checkpoint_every: int = 0, on_nonfinite: str = "stop",
        threads: int | None = None, run_config: dict | None = None) -> RunResult:
    """Train `task` and keep its model at `out` (the best on validation, or the last).

    resume: the RunState (charlm.resume.load_state) of the run to continue; the task's data, config and
    the FIXED options of its training config must be the run's (check_resume).
    checkpoint_every: also save the run state (and with keep="last" the model) every N steps (0 = no).
    on_nonfinite: "stop" raises TrainingDiverged; "skip" skips the step and counts it.
    threads: Numba threads for this run (None: the current count). Same threads, same bits.
    run_config: JSON-able facts about how the run was started, stored in the run state for --resume.
    """
    if on_nonfinite not in NONFINITE_POLICIES:
        raise CharlmError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}")
    if isinstance(checkpoint_every, bool) or not (isinstance(checkpoint_every, int) and checkpoint_every >= 0):
        raise CharlmError(f"checkpoint_every must be an integer >= 0, got {checkpoint_every!r}")
    check_run_options(task.tc)
    runfiles.check_out_path(out)
    if resume is not None:
        check_resume(resume, task, state_path(out))
    check_outputs(out, run_inputs(task, run_config))
    with runfiles.RunLock(out), compute_threads(threads):
        check_outputs(out, run_inputs(task, run_config))        # again, now that no other run can write
        return _Run(task, str(out), progress, log, resume, checkpoint_every, on_nonfinite, run_config or {}).run()


def check_run_options(tc) -> None:
    """One-line CharlmError for training options the loop cannot use (its config checks the rest):
    limits and rates must be finite, the seed an integer >= 0."""
    for name in ("lr", "epochs", "time_budget", "max_steps", "clip", "momentum", "lr_decay"):
        v = getattr(tc, name, 0)
        if isinstance(v, float) and not math.isfinite(v):
            what = " (0 = no limit)" if name in ("epochs", "time_budget") else ""
            raise CharlmError(f"{name} must be a finite number{what}, got {v}")
    seed = getattr(tc, "seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CharlmError(f"seed must be an integer >= 0, got {seed!r}")


def run_outputs(out) -> list[tuple[str, str]]:
    """(path, what) of every file a run on `out` writes (temp files are found beside each)."""
    out = os.fspath(out)
    return [(out, "--out"), (state_path(out), "the run state"), (str(log_path(out)), "the training log"),
            (runfiles.lock_path(out), "the lock file")]


def run_inputs(task, run_config=None) -> list[str]:
    """The files a run reads: the task's `inputs` and run_config's corpus, data, valid, init_from."""
    paths = list(getattr(task, "inputs", ()) or ())
    for key in ("corpus", "data", "valid", "init_from"):
        v = (run_config or {}).get(key)
        paths += [v] if isinstance(v, str) else [p for p in v if isinstance(p, str)] if isinstance(v, list) else []
    return paths


def check_outputs(out, inputs) -> None:
    """CharlmError if a file the run on `out` writes is one of `inputs` (same device and inode: same name,
    symlink or hard link). A resumed run reads its own run state: that one may be rewritten."""
    outputs = run_outputs(out)
    runfiles.check_inputs(outputs, inputs)
    runfiles.check_inputs([o for o in outputs if o[0] != state_path(out)], [state_path(out)])


def check_resume(st: RunState, task, where) -> None:
    """CharlmError unless `task` (its config, tables, data and FIXED training options) can continue the
    run saved in `st` (read from `where`)."""
    if st.task != task.kind:
        raise CharlmError(f"--resume: {where} holds a {st.task} run, not a {task.kind} run")
    # --resume continues one run on its own text; a language model goes on to other text as a new run
    new_text = "; to train its model on other text, start a new run with --init-from MODEL" if task.kind == "lm" else ""
    cfg = task.config
    if cfg != st.config:
        diff = [f"{k} {getattr(cfg, k)!r} (the run has {getattr(st.config, k)!r})"
                for k in cfg.__dataclass_fields__ if getattr(cfg, k) != getattr(st.config, k)]
        other_vocab = getattr(cfg, "vocab_size", None) != getattr(st.config, "vocab_size", None)
        raise CharlmError(f"--resume: the model does not match the run saved in {where}: {', '.join(diff)}"
                          f"{new_text if other_vocab else ''}")
    if task.vocab != st.vocab:
        raise CharlmError(f"--resume: the data give another vocabulary than the run saved in {where}; "
                          f"resume with the same files and options, or start a new run without --resume{new_text}")
    for part, key in (("training", "train"), ("validation", "valid")):
        if task.digests[key] != st.corpus_sha256[key]:
            raise CharlmError(f"--resume: the {part} text is not the one of the run saved in {where} "
                              f"(its token ids differ); resume with the same files and options, or start "
                              f"a new run without --resume{new_text}")
    for k in type(task.tc).options(FIXED):
        if getattr(task.tc, k) != st.train_config[k]:
            raise CharlmError(f"--resume: --{k.replace('_', '-')} {getattr(task.tc, k)} conflicts with the run saved "
                              f"in {where} ({st.train_config[k]}); it is fixed for a run")


class _Run:
    """One training session: a new run, or a resumed one. Holds everything the run state saves."""

    def __init__(self, task, out, progress, log, resume, checkpoint_every, on_nonfinite, run_config):
        import numba
        self.task, self.tc, self.out, self.log = task, task.tc, out, log
        self.progress_enabled = progress
        self.checkpoint_every, self.on_nonfinite = checkpoint_every, on_nonfinite
        self.run_config = dict(run_config, checkpoint_every=checkpoint_every, on_nonfinite=on_nonfinite)
        self.state_path = state_path(out)
        self.log_path = log_path(out)
        self.sign = -1.0 if task.higher_is_better else 1.0      # compare sign * metric: lower is better
        self.threads = numba.get_num_threads()
        self.history = []
        self.last_valid_step, self.last_metrics = None, {}
        self.stopped_by, self.signal = "", 0
        if resume is None:
            self._start()
        else:
            self._restore(resume)
        self.reserve = 0.0          # seconds kept for the end of a timed run (measured at each validation)
        self.t0 = self.last_valid = time.perf_counter()
        self.valid_gap = max(30.0, 0.05 * self.tc.time_budget) if self.tc.time_budget else 60.0

    # ----------------------------------------------------------------------------- run state

    def _start(self):
        tc = self.tc
        self.rng = np.random.default_rng(tc.seed)
        self.P = self.task.init_params(self.rng)
        self.opt = make_optimizer(tc.optimizer, self.P, tc.lr, tc.momentum)
        self.step = self.epoch = self.position = self.tokens = 0
        self.elapsed0 = 0.0
        self.best = self.sched_best = self.sign * math.inf      # nothing validated yet
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
        self.task.restore({k: np.array(v, np.float32, order="C") for k, v in st.tensors.items()})
        for k in ("step", "epoch", "tokens", "best_step", "bad_valids", "skipped", "skips_in_row", "run_id"):
            setattr(self, k, p[k])
        self.position = p["epoch_pos"]
        for k in ("best", "sched_best"):          # saved as null before the first validation
            setattr(self, k, self.sign * math.inf if math.isinf(p[k]) else p[k])
        self.elapsed0 = float(p["elapsed"])
        self.recent = [float(v) for v in p["recent"]]
        self.resumed_from = self.step
        self.task.check_position(self.position)
        if p["threads"] != self.threads:
            self.log(f"note: the run used {p['threads']} threads and this session {self.threads}: it continues, "
                     f"but not bit for bit as the run would have (give --threads {p['threads']} for that)")
        if tc.keep == "best":
            self.best, self.best_step = self._kept_best()

    def _kept_best(self):
        """What the model file at `out` holds of this run: (best metric, its step), else (worst, 0)."""
        try:
            meta = read_metadata(self.out)
            if meta.get("run_id") == self.run_id and meta.get("keep") == "best":
                return float(meta["best_" + self.task.select]), int(meta["step"])
        except (CharlmError, KeyError, ValueError):
            pass
        if os.path.exists(self.out):
            self.log(f"note: {self.out} does not hold a model of this run: the next validation replaces it")
        return self.sign * math.inf, 0

    def _better(self, value, than) -> bool:
        return self.sign * value < self.sign * than

    def _progress_record(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "epoch_pos": self.position, "tokens": self.tokens,
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
        task = self.task
        save_state(self.state_path, RunState(
            config=task.config, vocab=task.vocab, train_config=asdict(self.tc), run_config=self.run_config,
            corpus_sha256=task.digests, params=self.P, opt_arrays=self.opt.state_arrays(),
            tensors=task.carried(), rng_state=self.rng.bit_generator.state, progress=self._progress_record(),
            task=task.kind))

    def save_model(self):
        meta = {"charlm_version": __version__, "train_config": json.dumps(asdict(self.tc)),
                "step": str(self.step), "best_" + self.task.select: repr(self.best), "run_id": self.run_id,
                "keep": self.tc.keep}
        self._check_finite()
        self._check_exploded(min_steps=1)
        self.task.save_model(self.out, self.P, meta)
        self.log_file.publish()               # the log beside the model is now this run's

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    # ---------------------------------------------------------------------------------- loop

    def run(self) -> RunResult:
        self._clean_stale_temp_files()
        self.log_file = self._open_log()
        self.total = self._total_steps()
        self.bar = _progress_bar(self.total, self.step, self.progress_enabled)
        signals = _StopSignals()
        try:
            while True:
                self.stopped_by = self._stop_reason(signals)
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
        by_epochs = math.ceil(tc.epochs * self.task.steps_per_epoch) if tc.epochs else 0
        limits = [s for s in (tc.max_steps, by_epochs) if s]
        return min(limits) if limits else None

    def _done(self) -> float:
        """The fraction of the run done, by whichever limit ends it first (steps, epochs, time)."""
        tc = self.tc
        parts = [self.step / self.total] if self.total else []
        if tc.time_budget:
            parts.append(self.elapsed() / tc.time_budget)
        return min(1.0, max(parts, default=0.0))

    def _stop_reason(self, signals) -> str:
        tc = self.tc
        if signals.received:
            return "interrupted"
        if self.total is not None and self.step >= self.total:
            return "max-steps" if tc.max_steps and self.step >= tc.max_steps else "epochs"
        if tc.time_budget and self.elapsed() + self.reserve >= tc.time_budget:
            return "time-budget"
        return ""

    def _step(self):
        """One batch: forward, backward, clip, update; then what belongs to this step (epoch rollover,
        log, scheduled validation, checkpoint)."""
        tc, task = self.tc, self.task
        rng_before = self.rng.bit_generator.state
        if tc.lr_schedule == "cosine":
            self.opt.lr = tc.lr * 0.5 * (1.0 + math.cos(math.pi * self._done()))
        loss, grads, tokens, commit = task.step(self.P, self.epoch, self.position, self.rng)
        with np.errstate(invalid="ignore", over="ignore"):           # a non-finite norm is handled below
            norm = clip_grads(grads, tc.clip)
        if math.isfinite(loss) and math.isfinite(norm):
            self.opt.step(self.P, grads)
            commit()
            self.tokens += tokens
            self.recent = (self.recent + [loss])[-100:]
            self.skips_in_row = 0
            self._check_exploded()
        else:
            self._nonfinite(loss, norm, rng_before)
        self.step += 1
        self.position, epoch_end = task.advance(self.position)
        if epoch_end:
            self.epoch += 1
            self.position = 0
            task.new_epoch()
        if self.step % LOG_EVERY == 0:
            self._write_log(self._record({}, norm))
        if self.bar is not None:
            self.bar.update(1)
            if self.step % 10 == 0:
                self.bar.set_postfix_str(self._postfix())
        if (tc.valid_every and self.step % tc.valid_every == 0) or (not tc.valid_every and (
                epoch_end or time.perf_counter() - self.last_valid >= self.valid_gap)):
            self._validate_and_save(scheduled=True)
        elif tc.time_budget and not self.reserve and self.elapsed() >= tc.time_budget / 10:
            self._validate_and_save(scheduled=False)    # no validation yet to time the end of the run by
        elif self.checkpoint_every and self.step % self.checkpoint_every == 0:
            self.save_state()
        if self.checkpoint_every and self.step % self.checkpoint_every == 0 and tc.keep == "last":
            self.save_model()

    def _validate_and_save(self, scheduled: bool):
        """A validation and the run state; with a time budget, `reserve` is then what the end of the run
        will take at the machine's present speed: as long as these took, plus the task's final_seconds."""
        began = time.perf_counter()
        self._validate(scheduled=scheduled)
        self.save_state()
        if self.tc.time_budget:
            final = getattr(self.task, "final_seconds", None)
            self.reserve = time.perf_counter() - began + (final(self.P) if final else 0.0)

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

    def _check_exploded(self, min_steps=DIVERGE_MIN_STEPS):
        """Divergence without NaN: the recent training loss far above the task's uniform-guess loss."""
        ref = getattr(self.task, "reference_loss", None)
        window = self.recent[-DIVERGE_WINDOW:]
        if ref is None or len(window) < max(1, min_steps):
            return
        mean = float(np.mean(window))
        if not mean > DIVERGE_FACTOR * ref:
            return
        self._write_log({"step": self.step + 1, "event": "diverged", "loss": mean})
        kept = f"{self.out} is unchanged" if os.path.exists(self.out) else f"nothing was saved to {self.out}"
        raise TrainingDiverged(f"training diverged at step {self.step + 1}: the mean training loss of the last "
                               f"{len(window)} steps is {mean:.4g}, more than {DIVERGE_FACTOR:g} x {ref:.4g} (the "
                               f"loss of a uniform guess); {kept}; start again with a lower --lr or a --clip value")

    def _validate(self, scheduled: bool):
        """The task's validation metrics (no randomness used). A scheduled validation drives the
        learning-rate decay; any validation may keep a better model (keep="best")."""
        tc = self.tc
        metrics = self.task.evaluate(self.P)
        value = metrics[self.task.select]
        self.last_valid = time.perf_counter()
        self.last_valid_step, self.last_metrics = self.step, metrics
        if scheduled:
            if self._better(value, self.sched_best):
                self.sched_best, self.bad_valids = value, 0
            else:
                self.bad_valids += 1
                if tc.lr_decay > 1:
                    self.opt.lr /= tc.lr_decay
        if self._better(value, self.best):
            self.best, self.best_step = value, self.step
            if tc.keep == "best":
                self.save_model()
        record = self._record(metrics, None)
        self.history.append(record)
        self._write_log(record)
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(value))

    def _finish(self):
        """After the last step: a final validation unless one just ran, then the model and run state."""
        if self.last_valid_step != self.step:
            self._validate(scheduled=False)
        if self.tc.keep == "last" or not os.path.exists(self.out):   # e.g. keep best, but no finite loss
            self.save_model()
        self.save_state()

    def _result(self) -> RunResult:
        final = None if self.stopped_by == "interrupted" else self.task.final_metrics(self.out)
        return RunResult(out=self.out, steps=self.step, epochs=self.step / self.task.steps_per_epoch,
                         tokens=self.tokens, seconds=self.elapsed(),
                         train_loss=float(np.mean(self.recent)) if self.recent else math.nan,
                         best=self.best, best_step=self.best_step, last=self.last_metrics, final=final,
                         stopped_by=self.stopped_by, signal=self.signal, skipped=self.skipped,
                         resumed_from=self.resumed_from, state_path=self.state_path, history=self.history)

    # ------------------------------------------------------------------------------ files, log

    def _clean_stale_temp_files(self):
        """Remove temp files that a killed save of this output left behind (`.NAME.*.tmp`, see write_atomic).
        The run holds the output's lock, so no other run is writing them."""
        removed = 0
        for path in (self.out, self.state_path, self.log_path):
            for tmp in glob.glob(runfiles.temp_pattern(path)):
                try:
                    os.unlink(tmp)
                    removed += 1
                except OSError:
                    pass
        if removed:
            self.log(f"removed {removed} temp file(s) left by an interrupted save")

    def _open_log(self):
        """A new run starts a new log, which replaces the old one at its first model save (runfiles.RunLog);
        a resumed one keeps the records up to its step and appends."""
        if self.resumed_from is None:
            return runfiles.RunLog(self.log_path)
        kept = []
        for line in runfiles.read_own_log(self.log_path):
            try:
                record = json.loads(line)
            except ValueError:                 # a line cut short by a kill
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), (int, float)) \
                    and record["step"] <= self.step:
                kept.append(line if line.endswith("\n") else line + "\n")
        kept.append(json.dumps({"step": self.step, "event": "resumed", "wall": round(self.elapsed0, 3)}) + "\n")
        log = runfiles.RunLog(self.log_path, "".join(kept))
        log.publish()                          # the model beside it is this run's
        return log

    def _write_log(self, record):
        self.log_file.write(json.dumps(_json_safe(record), allow_nan=False) + "\n")

    def _record(self, metrics, norm):
        elapsed = self.elapsed()
        record = {"step": self.step, "epoch": round(self.step / self.task.steps_per_epoch, 4), "tokens": self.tokens,
                  "train_loss": float(np.mean(self.recent)) if self.recent else None}
        record.update({name: metrics.get(name) for name in self.task.metrics})
        record.update({"lr": self.opt.lr, "grad_norm": norm, "tok_s": round(self.tokens / max(1e-9, elapsed), 1),
                       "wall": round(elapsed, 3)})
        return record

    def _postfix(self, value=None):
        if value is None and math.isfinite(self.best):
            value = self.best
        parts = [f"loss {np.mean(self.recent[-20:]):.3f}" if self.recent else "loss -"]
        if value is not None:
            parts.append(f"{self.task.label} {value:.3f}")
        parts.append(f"{self.tokens / max(1e-9, self.elapsed()):,.0f} tok/s")
        parts.append(f"lr {self.opt.lr:.2g}")
        if self.tc.time_budget:                    # the bar has no total then: say what is left
            left = max(0, int(self.tc.time_budget - self.elapsed()))
            parts.append(f"{left // 60}:{left % 60:02d} left")
        return ", ".join(parts)


def _json_safe(v):
    """A record with every non-finite float as null: the log is strict JSON (RFC 8259)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def log_path(out: str) -> Path:
    """The JSON-lines training log beside the model at `out`."""
    out = str(out)
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
    from charlm.progress import progress_bar
    return progress_bar(total=total, initial=initial, unit="step", leave=True)
