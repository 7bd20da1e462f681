"""Reliability of `charlm train` from the command line: signals, kills, divergence, determinism, bad input.

- SIGINT / SIGTERM: a real `python -m charlm train` process finishes its step, saves, prints the command that
  resumes it and exits 130 / 143; resumed, it ends bit-identical to a run that never stopped.
- SIGKILL: a process checkpointing every step is killed at random moments; the model file and the run state
  always load, a later run removes the temp files a killed save left, and the run resumed after all the
  kills still ends bit-identical to an uninterrupted one.
- Divergence: a NaN or infinite loss or gradient (injected) stops the run with exit code 3, the model on disk
  untouched and the last good state saved; --on-nonfinite skip skips and counts such steps.
- A disk that fills up mid-run stops it with one line; the previous checkpoint is intact.
- Determinism: same seed, data and --threads, same bits (1 and 2 threads).
- Bad input: one line on stderr, non-zero exit, no traceback, nothing on disk changed.
"""
from __future__ import annotations

import errno
import glob
import json
import math
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import charlm.model
from charlm.checkpoint import load_model
from charlm.resume import load_state, state_path
from charlm.train import MAX_SKIPS_IN_A_ROW
from support import invoke, ok, one_line_error, shakespeare

TINY = ["--hidden", "16", "--layers", "2", "--batch-size", "4", "--seq-len", "8", "--threads", "1", "-q"]


# ------------------------------------------------------------------------------------------- helpers

def same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


def params(path) -> dict:
    return load_model(path).params


def temp_files(directory) -> list[str]:
    return sorted(glob.glob(os.path.join(directory, ".*.tmp")))


def charlm_process(*args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "charlm", *[str(a) for a in args]], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc, timeout=60.0):
    """Poll until condition() holds; fail if the process ends first or time runs out."""
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"charlm ended early ({proc.returncode}): {out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("timed out waiting for the training run")
        time.sleep(0.01)


def mtime(path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("reliability") / "corpus.txt"
    path.write_text(shakespeare(20000), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ SIGINT, SIGTERM

@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_prints_how_to_resume_and_resumes_exactly(sig, code, corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    args = [*TINY, "--keep", "last", "--valid-every", "10", "--dropout", "0.1"]
    proc = charlm_process("train", corpus, "-o", out, *args, "--max-steps", 10 ** 6, cwd=tmp_path)
    wait_for(lambda: os.path.exists(state_path(out)), proc)             # training is under way
    time.sleep(random.Random(sig).uniform(0.0, 0.2))
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, (stdout, stderr)
    assert "Traceback" not in stderr
    assert f"stopped by {signal.Signals(sig).name} after step" in stderr
    assert f"resume with: charlm train {corpus} --resume -o {out} --threads 1" in stderr
    assert stdout.startswith("interrupted:")
    st = load_state(state_path(out))
    k = st.progress["step"]
    assert k >= 10 and st.progress["stopped_by"] == "interrupted"
    assert same_bits(params(out), st.params)                              # --keep last: the model is step k
    assert not temp_files(tmp_path)
    # Resume (in this process) and compare with a run that never stopped.
    ok(invoke("train", corpus, "-o", out, "--resume", "--max-steps", k + 17))
    ref = tmp_path / "ref.safetensors"
    ok(invoke("train", corpus, "-o", ref, *args, "--max-steps", k + 17))
    assert same_bits(params(out), params(ref))
    assert same_bits(load_state(state_path(out)).opt_arrays, load_state(state_path(ref)).opt_arrays)


# -------------------------------------------------------------------------------------------- SIGKILL

KILLS = 10


def test_sigkill_at_random_moments_never_leaves_a_broken_file(corpus, tmp_path):
    """A run that checkpoints every step (model and run state, four fsyncs a step, so kills often land in
    the middle of a save: with -s the test prints how many left a temp file, 2 or 3 of 10 here) is killed
    KILLS times; each time both files load. Temp files a killed save left
    (`.NAME.*.tmp`) are accepted, and the next run removes them. Finally the run resumed after all the kills
    equals one that was never killed."""
    out = tmp_path / "m.safetensors"
    state = state_path(out)
    args = [*TINY, "--hidden", "48", "--keep", "last", "--valid-every", "25"]
    rng = random.Random(20261126)
    steps, left_temp, stale = [], 0, []
    for i in range(KILLS):
        before = mtime(state)
        cmd = ["train", corpus, "-o", out, "--max-steps", 10 ** 6]
        proc = charlm_process(*(cmd + (args + ["--checkpoint-every", "1"] if i == 0 else ["--resume"])),
                              cwd=tmp_path)
        wait_for(lambda: mtime(state) != before, proc)                   # this process has saved once
        assert not any(os.path.exists(t) for t in stale)                  # so it removed the old temp files
        time.sleep(rng.uniform(0.0, 0.25))
        proc.kill()
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        m = load_model(out)                                               # never raises: old or new, not half
        st = load_state(state)
        assert all(np.isfinite(p).all() for p in m.params.values())
        steps.append(st.progress["step"])
        stale = temp_files(tmp_path)
        left_temp += len(stale)
    assert steps == sorted(steps) and steps[-1] > steps[0]
    print(f"{KILLS} kills at steps {steps}; {left_temp} of them left a temp file from a save in progress")
    final = steps[-1] + 5
    ok(invoke("train", corpus, "-o", out, "--resume", "--max-steps", final))
    assert not temp_files(tmp_path)
    ref = tmp_path / "ref.safetensors"
    ok(invoke("train", corpus, "-o", ref, *args, "--max-steps", final))
    assert same_bits(params(out), params(ref))


# ----------------------------------------------------------------------------------------- divergence

def inject(monkeypatch, at, what="loss"):
    """Make model.loss_and_grads return a NaN loss (or an infinite gradient) at the given calls (1-based)."""
    real = charlm.model.loss_and_grads
    calls = [0]

    def fake(*args, **kwargs):
        loss, grads, new_state = real(*args, **kwargs)
        calls[0] += 1
        if at == "all" or calls[0] in at:
            if what == "loss":
                loss = float("nan")
            else:
                grads["rnn.weight_hh_l0"][0, 0] = np.inf
        return loss, grads, new_state

    monkeypatch.setattr(charlm.model, "loss_and_grads", fake)


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_divergence_stops_with_exit_code_3_and_keeps_the_last_good_state(what, monkeypatch, corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    args = [*TINY, "--keep", "last", "--checkpoint-every", "1", "--valid-every", "2", "--dropout", "0.1"]
    inject(monkeypatch, {4}, what)
    r = invoke("train", corpus, "-o", out, *args, "--max-steps", 12)
    err = one_line_error(r, "training diverged at step 4", "m.safetensors is unchanged", "--resume",
                         "nan" if what == "loss" else "gradient norm inf", code=3)
    assert "after step 3" in err
    model = load_model(out)                                            # the model of step 3, finite
    assert model.meta["step"] == "3" and all(np.isfinite(p).all() for p in model.params.values())
    st = load_state(state_path(out))
    assert st.progress["step"] == 3 and same_bits(st.params, model.params)
    assert not temp_files(tmp_path)
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "diverged" and log[-1]["step"] == 4
    # The saved state is exactly the run after step 3: resumed (no more NaN), it equals a clean run.
    monkeypatch.undo()
    ok(invoke("train", corpus, "-o", out, "--resume", "--max-steps", 12))
    ref = tmp_path / "ref.safetensors"
    ok(invoke("train", corpus, "-o", ref, *args, "--max-steps", 12))
    assert same_bits(params(out), params(ref))


def test_divergence_leaves_the_best_model_untouched(monkeypatch, corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    ok(invoke("train", corpus, "-o", out, *TINY, "--max-steps", 3))
    before = out.read_bytes()
    inject(monkeypatch, {2})
    one_line_error(invoke("train", corpus, "-o", out, *TINY, "--max-steps", 10, "--valid-every", "5"),
                   "diverged", code=3)
    assert out.read_bytes() == before


def test_non_finite_parameters_are_never_saved(monkeypatch, corpus, tmp_path):
    """An update that makes a parameter infinite (finite gradients, absurd step) ends the run as a
    divergence at the next save, with the previous checkpoint intact."""
    import charlm.optim
    real_step = charlm.optim.Adam.step

    def step(self, P, grads):
        real_step(self, P, grads)
        if self.t == 3:
            P["decoder.weight"][0, 0] = np.inf

    monkeypatch.setattr(charlm.optim.Adam, "step", step)
    out = tmp_path / "m.safetensors"
    r = invoke("train", corpus, "-o", out, *TINY, "--keep", "last", "--checkpoint-every", "1", "--max-steps", 6)
    one_line_error(r, "diverged by step 3", "decoder.weight", "non-finite", code=3)
    assert load_model(out).meta["step"] == "2" and load_state(state_path(out)).progress["step"] == 2


def test_skip_nonfinite_steps_counts_them(monkeypatch, corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    inject(monkeypatch, {3, 5})
    r = ok(invoke("train", corpus, "-o", out, *TINY, "--max-steps", 10, "--on-nonfinite", "skip", "--json"))
    res = json.loads(r.stdout)
    assert res["steps"] == 10 and res["skipped"] == 2 and math.isfinite(res["valid_loss"])
    st = load_state(state_path(out))
    assert st.progress["skipped"] == 2 and st.progress["opt_scalars"]["t"] == 8     # no update when skipped
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r.get("event") == "skipped"] == [3, 5]
    assert all(np.isfinite(p).all() for p in params(out).values())
    inject(monkeypatch, {2})
    r = ok(invoke("train", corpus, "-o", out, *TINY, "--max-steps", 4, "--on-nonfinite", "skip"))
    assert "1 non-finite step skipped" in r.stdout


def test_skip_gives_up_when_every_step_is_nonfinite(monkeypatch, corpus, tmp_path):
    inject(monkeypatch, "all")
    r = invoke("train", corpus, "-o", tmp_path / "m.safetensors", *TINY, "--max-steps", 100, "--on-nonfinite", "skip")
    one_line_error(r, "diverged", f"{MAX_SKIPS_IN_A_ROW} steps in a row", code=3)
    assert load_state(state_path(tmp_path / "m.safetensors")).progress["step"] == MAX_SKIPS_IN_A_ROW - 1


# ------------------------------------------------------------------------------------------ full disk

def test_full_disk_stops_the_run_and_keeps_the_previous_checkpoint(monkeypatch, corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    args = [*TINY, "--keep", "last", "--checkpoint-every", "1", "--valid-every", "50"]
    real_fsync = os.fsync
    files = [0]

    def fsync(fd):
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            files[0] += 1
            if files[0] > 8:                     # steps 1-4 save model and state; step 5's first save fails
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    r = invoke("train", corpus, "-o", out, *args, "--max-steps", 12)
    monkeypatch.undo()
    one_line_error(r, "No space left on device", "the previous file there is unchanged")
    assert load_state(state_path(out)).progress["step"] == 4 and load_model(out).meta["step"] == "4"
    assert not temp_files(tmp_path)
    ok(invoke("train", corpus, "-o", out, "--resume", "--max-steps", 12))
    ref = tmp_path / "ref.safetensors"
    ok(invoke("train", corpus, "-o", ref, *args, "--max-steps", 12))
    assert same_bits(params(out), params(ref))


# ---------------------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_same_threads_same_bits(threads, corpus, tmp_path):
    import numba
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"this machine runs at most {numba.config.NUMBA_NUM_THREADS} Numba threads")
    # batch 32: the cell kernels split the batch rows and the GEMMs their rows between 2 threads
    args = [*TINY, "--batch-size", "32", "--threads", str(threads), "--max-steps", "8", "--dropout", "0.2",
            "--keep", "last", "--valid-every", "4"]
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ok(invoke("train", corpus, "-o", a, *args))
    ok(invoke("train", corpus, "-o", b, *args))
    assert same_bits(params(a), params(b))
    assert load_state(state_path(a)).progress["threads"] == threads
    c = tmp_path / "c.safetensors"
    ok(invoke("train", corpus, "-o", c, *args, "--seed", "1"))            # the comparison can fail
    assert not same_bits(params(a), params(c))


# ------------------------------------------------------------------------------------------ bad input

@pytest.fixture(scope="module")
def existing(corpus, tmp_path_factory):
    """A model and run state already on disk, which failed runs must leave byte-identical."""
    d = tmp_path_factory.mktemp("existing")
    out = d / "m.safetensors"
    ok(invoke("train", corpus, "-o", out, *TINY, "--max-steps", 3))
    return out


def files_of(out) -> dict:
    return {p: Path(p).read_bytes() for p in (str(out), state_path(out))}


BAD_FILES = {
    "missing": (None, "no such file"),
    "directory": ("DIR", "is a directory"),
    "empty": (b"", "empty"),
    "whitespace-char": (b"  \n\t\n   \n", "whitespace only"),
    "too-short": (b"abc\n", "too short for one batch"),
    "binary": (b"hello\x00world\n" * 50, "looks binary (NUL byte at byte offset 5, line 1)"),
    "invalid-utf8": (b"line one\nline two \xff\xfe here\n" * 40, "invalid UTF-8 at byte offset 18, line 2"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_corpus_is_one_line_and_damages_nothing(kind, existing, tmp_path):
    content, fragment = BAD_FILES[kind]
    path = tmp_path / "bad.txt"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    before = files_of(existing)
    one_line_error(invoke("train", path, "-o", existing, *TINY, "--max-steps", 2), fragment, "bad.txt")
    assert files_of(existing) == before
    if kind == "whitespace-char":
        one_line_error(invoke("train", path, "-o", existing, *TINY, "--level", "word"), "bad.txt")
    if kind == "too-short":
        err = one_line_error(invoke("train", path, "-o", existing, *TINY, "--valid", path), "--seq-len")
        assert "needs 36" in err
    assert files_of(existing) == before


def test_invalid_utf8_with_encoding_errors_replace_trains(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(BAD_FILES["invalid-utf8"][0])
    out = tmp_path / "m.safetensors"
    r = ok(invoke("train", path, "-o", out, *TINY, "--max-steps", 2, "--encoding-errors", "replace", "--json"))
    assert json.loads(r.stdout)["steps"] == 2
    assert "\ufffd" in load_model(out).vocab


@pytest.mark.parametrize("args,fragment", [
    (["--batch-size", "-1"], "'--batch-size': -1 is not in the range"), (["--seq-len", "-3"], "'--seq-len'"),
    (["--hidden", "-1"], "'--hidden'"), (["--layers", "-1"], "'--layers'"), (["--embed", "-2"], "'--embed'"),
    (["--max-steps", "-5"], "'--max-steps'"), (["--checkpoint-every", "-1"], "'--checkpoint-every'"),
    (["--dropout", "1.5"], "'--dropout'"), (["--lr", "-1"], "'--lr'"), (["--time-budget", "-1"], "'--time-budget'"),
    (["--tie-weights", "--embed", "8"], "--tie-weights needs --embed equal to --hidden"),
    (["--on-nonfinite", "ignore"], "'--on-nonfinite'"),
])
def test_bad_training_option_is_an_error_and_damages_nothing(args, fragment, corpus, existing):
    """Every problem with an option is one line and exit 1: a value outside its range or choice (checked by
    the option's type, before the command runs) as much as options that cannot go together."""
    before = files_of(existing)
    r = invoke("train", corpus, "-o", existing, *TINY, "--max-steps", 2, *args)
    one_line_error(r, fragment)
    assert files_of(existing) == before


@pytest.mark.parametrize("args,fragment", [(["--temp", "0"], "--temp"), (["--temp", "-0.5"], "--temp"),
                                           (["--top-p", "0"], "--top-p"), (["--top-p", "1.01"], "--top-p")])
def test_bad_sampling_option_is_one_line(args, fragment, existing):
    before = files_of(existing)
    one_line_error(invoke("sample", "-m", existing, *args), fragment)
    assert files_of(existing) == before


def test_out_that_is_a_directory_is_an_error(corpus, tmp_path):
    r = invoke("train", corpus, "-o", tmp_path, *TINY, "--max-steps", 2)     # click's Path(dir_okay=False)
    one_line_error(r, "is a directory")
    assert os.listdir(tmp_path) == []


def test_new_run_over_an_existing_model_says_it_replaces_it(corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    ok(invoke("train", corpus, "-o", out, *TINY, "--max-steps", 2))
    r = ok(invoke("train", corpus, "-o", out, *[a for a in TINY if a != "-q"], "--max-steps", 3))
    assert f"{out} exists: this new run replaces it at its first save (add --resume" in r.stderr
    assert load_state(state_path(out)).progress["step"] == 3
