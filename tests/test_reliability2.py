"""Reliability, round two (issue 20): a hostile or careless user never loses a file.

- An output (model, run state, log, lock, temp files) that is the same file as an input (same name,
  symlink, hard link) is refused before anything is written.
- The log belongs to the model beside it: a symlink at its path is replaced, not followed; a new run
  killed before its first save leaves the old model's log as it was.
- One writer per model: a second run on the same -o is refused naming the first run's pid; the lock of
  a killed run blocks nobody.
- A FIFO or `<(cat file)` corpus is read once and trains exactly as the regular file does.

Every corpus is generated here, in tmp_path.
"""
from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from charlm.checkpoint import load_model
from support import invoke, ok, one_line_error

TINY = ["--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "8", "--threads", "1", "-q"]
REPO = Path(__file__).resolve().parents[1]


def make_corpus(path, lines=400, seed=0) -> Path:
    r = random.Random(seed)
    words = "the quick brown fox jumps over a lazy dog and the cat sat on its mat".split()
    Path(path).write_text("\n".join(" ".join(r.choice(words) for _ in range(8)) for _ in range(lines)) + "\n",
                          encoding="utf-8")
    return Path(path)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def charlm(*args, cwd, **kw) -> subprocess.Popen:
    """charlm in a child process whose Ctrl-C is Python's KeyboardInterrupt even when the suite itself runs
    in the background (`make test &`): a shell starts background commands with SIGINT ignored, and a child
    inherits that."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "charlm", *[str(a) for a in args]], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **kw)


def wait_until(condition, proc, timeout=60.0):
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"charlm ended early ({proc.returncode}): {out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("timed out")
        time.sleep(0.02)


def snapshot(directory) -> dict:
    """name -> bytes (or link target) of every entry of a folder."""
    out = {}
    for name in sorted(os.listdir(directory)):
        p = os.path.join(directory, name)
        out[name] = ("link", os.readlink(p)) if os.path.islink(p) else Path(p).read_bytes()
    return out


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "c.txt")


# ------------------------------------------------------------------------ 1. outputs that are inputs

SAME_FILE_CASES = {
    "model is the corpus": (["c.txt"], "c.txt", "--out c.txt", None),
    "model is --valid": (["c.txt", "--valid", "v.txt"], "v.txt", "--out v.txt", None),
    "model is a hard link to the corpus": (["c.txt"], "hard.txt", "--out hard.txt", "hard"),
    "model is a symlink to the corpus": (["c.txt"], "sym.txt", "--out sym.txt", "sym"),
    "log is the corpus": (["run.log.jsonl"], "run.safetensors", "training log", "log-corpus"),
    "state is the corpus": (["m.safetensors.state"], "m.safetensors", "run state", "state-corpus"),
    "log is a symlink to --valid": (["c.txt", "--valid", "v.txt"], "m.safetensors", "training log", "log-link"),
    "temp file is the corpus": ([".m.safetensors.x1.tmp"], "m.safetensors", "--out", "tmp-corpus"),
    "lock file is the corpus": ([".m.safetensors.lock"], "m.safetensors", "lock file", "lock-corpus"),
}


@pytest.mark.parametrize("case", SAME_FILE_CASES)
def test_output_that_is_an_input_is_refused_and_nothing_changes(case, tmp_path, monkeypatch):
    args, out, fragment, setup = SAME_FILE_CASES[case]
    monkeypatch.chdir(tmp_path)
    make_corpus("c.txt")
    make_corpus("v.txt", lines=60, seed=1)
    if setup == "hard":
        os.link("c.txt", "hard.txt")
    elif setup == "sym":
        os.symlink("c.txt", "sym.txt")
    elif setup == "log-corpus":
        shutil.copy("c.txt", "run.log.jsonl")
    elif setup == "state-corpus":
        shutil.copy("c.txt", "m.safetensors.state")
    elif setup == "log-link":
        os.symlink("v.txt", "m.log.jsonl")
    elif setup == "tmp-corpus":
        shutil.copy("c.txt", ".m.safetensors.x1.tmp")
    elif setup == "lock-corpus":
        shutil.copy("c.txt", ".m.safetensors.lock")
    before = snapshot(tmp_path)
    line = one_line_error(invoke("train", *args, *TINY, "--max-steps", 3, "-o", out), fragment, "same file")
    assert "overwrite the input" in line
    assert snapshot(tmp_path) == before


def test_the_engine_refuses_too_for_any_task(corpus, tmp_path):
    """engine.run itself checks (tasks other than the LM get it): through the library API."""
    from charlm.config import ModelConfig, TrainConfig
    from charlm.errors import CharlmError
    from charlm.train import load_corpus, train
    data = load_corpus([corpus])
    cfg = ModelConfig(hidden=8, embed=8, layers=1, vocab_size=len(data.vocab))
    with pytest.raises(CharlmError, match="same file"):
        train(data, corpus, cfg, TrainConfig(batch_size=4, seq_len=8, max_steps=2), progress=False, log=lambda m: None)
    assert corpus.read_bytes() == make_corpus(tmp_path / "again.txt").read_bytes()


# --------------------------------------------------------------------------- 2. the log and its model

def test_symlink_at_the_log_path_is_replaced_not_followed(corpus, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / "m.log.jsonl")
    ok(invoke("train", corpus, *TINY, "--max-steps", 3, "-o", tmp_path / "m.safetensors"))
    assert victim.read_text() == "precious\n"
    log = tmp_path / "m.log.jsonl"
    assert not log.is_symlink()
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [3]


def test_new_run_killed_before_its_first_save_leaves_the_old_log_and_lock_blocks_nobody(corpus, tmp_path):
    out, log = tmp_path / "m.safetensors", tmp_path / "m.log.jsonl"
    ok(invoke("train", corpus, *TINY, "--max-steps", 60, "-o", out))
    old_model, old_log = out.read_bytes(), log.read_bytes()
    # A new run that validates (and so saves) only at step 10**6: kill it while it logs.
    proc = charlm("train", corpus, *TINY, "--max-steps", 10 ** 6, "--valid-every", 10 ** 6, "-o", out, cwd=tmp_path)
    temp_logs = lambda: [p for p in glob.glob(str(tmp_path / ".m.log.jsonl.*.tmp")) if os.path.getsize(p) > 0]
    wait_until(lambda: temp_logs(), proc)
    assert os.path.exists(tmp_path / ".m.safetensors.lock")
    proc.kill()
    proc.wait(timeout=30)
    assert out.read_bytes() == old_model and log.read_bytes() == old_log      # info and plot still agree
    # The killed run's lock file and temp log are left; the next run is not blocked and removes them.
    result = ok(invoke("train", corpus, *TINY, "--max-steps", 3, "-o", out, "-q"))
    assert glob.glob(str(tmp_path / ".*.tmp")) == [] and not os.path.exists(tmp_path / ".m.safetensors.lock")
    assert load_model(out).meta["step"] == "3", result.output
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [3]


# ------------------------------------------------------------------------------ 3. one writer per model

def test_second_writer_is_refused_naming_the_first_runs_pid(corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    first = charlm("train", corpus, *TINY, "--max-steps", 10 ** 6, "--valid-every", 20, "-o", out, cwd=tmp_path)
    try:
        wait_until(lambda: out.exists(), first)                    # it has saved at least once
        line = one_line_error(invoke("train", corpus, *TINY, "--max-steps", 3, "-o", out), "in use",
                              f"pid {first.pid}")
        assert str(out) in line
        # the refused run left the first run's temp files alone: the first run goes on and stops cleanly
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
        assert first.returncode == 130, err
    finally:
        if first.poll() is None:
            first.kill()
    assert load_model(out).meta["run_id"]
    records = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "valid_loss" in r] == sorted(r["step"] for r in records if "valid_loss" in r)


# ------------------------------------------------------------------------------- 4. FIFO, <(cat file)

def test_fifo_corpus_and_valid_are_read_once_and_train_like_the_file(corpus, tmp_path):
    valid = make_corpus(tmp_path / "v.txt", lines=60, seed=1)
    ok(invoke("train", corpus, "--valid", valid, *TINY, "--max-steps", 5, "-o", tmp_path / "ref.safetensors"))
    fifo, vfifo = tmp_path / "corpus.fifo", tmp_path / "valid.fifo"
    os.mkfifo(fifo)
    os.mkfifo(vfifo)
    writers = [threading.Thread(target=lambda src=src, dst=dst: Path(dst).write_bytes(Path(src).read_bytes()),
                                daemon=True) for src, dst in ((corpus, fifo), (valid, vfifo))]
    for w in writers:
        w.start()
    proc = charlm("train", fifo, "--valid", vfifo, *TINY, "--max-steps", 5, "-o", "f.safetensors", cwd=tmp_path)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    ref, got = load_model(tmp_path / "ref.safetensors").params, load_model(tmp_path / "f.safetensors").params
    assert all(ref[k].tobytes() == got[k].tobytes() for k in ref)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for <(...)")
def test_process_substitution_corpus_trains_like_the_file(corpus, tmp_path):
    ok(invoke("train", corpus, *TINY, "--max-steps", 5, "-o", tmp_path / "ref.safetensors"))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = f'"{sys.executable}" -m charlm train <(cat c.txt) {" ".join(TINY)} --max-steps 5 -o p.safetensors'
    proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    ref, got = load_model(tmp_path / "ref.safetensors").params, load_model(tmp_path / "p.safetensors").params
    assert all(ref[k].tobytes() == got[k].tobytes() for k in ref)


def test_endless_binary_stream_is_refused(tmp_path):
    one_line_error(invoke("train", "/dev/zero", *TINY, "--max-steps", 3, "-o", tmp_path / "z.safetensors"),
                   "looks binary")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------ 5. divergence that is not NaN

@pytest.mark.parametrize("lr", ["10000", "1e30"])
def test_loss_far_above_a_uniform_guess_stops_with_exit_3_and_saves_nothing(lr, corpus, tmp_path):
    """The issue's case: sgd, no clip, an absurd --lr: finite losses of 10^4 nats and more."""
    out = tmp_path / "d.safetensors"
    line = one_line_error(invoke("train", corpus, "--hidden", 32, "--optimizer", "sgd", "--lr", lr, "--clip", 0,
                                 "--max-steps", 300, "--threads", 1, "-q", "-o", out),
                          "training diverged", "uniform guess", "--lr", "--clip", code=3)
    assert "nothing was saved" in line
    assert sorted(os.listdir(tmp_path)) == ["c.txt"]


def test_divergence_keeps_an_earlier_good_model(corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    ok(invoke("train", corpus, *TINY, "--max-steps", 20, "-o", out))
    good = out.read_bytes()
    one_line_error(invoke("train", corpus, *TINY, "--optimizer", "sgd", "--lr", "1e4", "--clip", 0,
                          "--max-steps", 300, "-o", out), "diverged", f"{out} is unchanged", code=3)
    assert out.read_bytes() == good


def test_normal_training_never_trips_the_divergence_rule(tmp_path):
    """Negative control: a high but sane learning rate trains on (the rule's threshold is 3 ln V)."""
    corpus = make_corpus(tmp_path / "c.txt")
    ok(invoke("train", corpus, *TINY, "--lr", "0.05", "--max-steps", 200, "-o", tmp_path / "m.safetensors"))


def test_divergence_rule_uses_the_tasks_reference_loss(corpus):
    from charlm import engine
    from charlm.config import ModelConfig, TrainConfig
    from charlm.tasks.lm import LMTask
    from charlm.train import load_corpus
    data = load_corpus([corpus])
    task = LMTask(data, ModelConfig(hidden=8, embed=8, layers=1, vocab_size=len(data.vocab)),
                  TrainConfig(batch_size=4, seq_len=8))
    assert task.reference_loss == pytest.approx(np.log(len(data.vocab)))
    assert engine.DIVERGE_FACTOR * task.reference_loss < 20


# --------------------------------------------------------------- 6. huge figures print, JSON is strict

def strict_json(line: str):
    def refuse(constant):
        raise ValueError(f"not JSON (RFC 8259): {constant}")
    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A sane tiny model, one with huge but finite losses, one whose logits overflow float32."""
    from charlm.checkpoint import save_model
    d = tmp_path_factory.mktemp("hostile_models")
    corpus = make_corpus(d / "c.txt")
    ok(invoke("train", corpus, *TINY, "--max-steps", 5, "-o", d / "sane.safetensors"))
    m = load_model(d / "sane.safetensors")
    signs = np.sign(np.random.default_rng(0).standard_normal(m.params["decoder.weight"].shape))
    saturated = {k: np.full_like(v, 50.0 if "bias" in k else 0.0) for k, v in m.params.items() if k.startswith("rnn.")}
    for name, weights in (("huge", signs * 1e35), ("overflow", np.full_like(signs, 3e38))):
        # every gate saturated: each of the 16 units of h is about 0.76 or more, so the logits are
        # about 12 x the decoder weights: +-1e36 (finite), or above float32's 3.4e38 (inf)
        P = dict(m.params, **saturated, **{"decoder.weight": weights.astype(np.float32)})
        save_model(d / f"{name}.safetensors", P, m.config, m.vocab, m.meta)
    return d, corpus


JSON_COMMANDS = [["score", "to be or not", "--per-token"], ["score", "-f", "CORPUS"], ["perplexity", "CORPUS"],
                 ["perplexity", "CORPUS", "CORPUS"], ["sample", "--length", 10, "--seed", 1], ["info"]]


@pytest.mark.parametrize("kind", ["sane", "huge"])
@pytest.mark.parametrize("command", JSON_COMMANDS, ids=lambda c: " ".join(map(str, c)))
def test_every_json_output_is_strict_json_for_every_model(kind, command, models):
    d, corpus = models
    args = [corpus if a == "CORPUS" else a for a in command]
    result = ok(invoke(*args, "-m", d / f"{kind}.safetensors", "--json"))
    lines = result.stdout.splitlines()
    assert lines and all(strict_json(line) is not None for line in lines)


def test_huge_losses_print_as_inf_perplexity(models):
    d, corpus = models
    text = ok(invoke("perplexity", corpus, "-m", d / "huge.safetensors")).stdout
    assert "perplexity inf" in text
    row = ok(invoke("score", "to be", "-m", d / "huge.safetensors")).stdout.split("\t")
    assert float(row[0]) < -1e30 and row[2] == "inf"
    record = strict_json(ok(invoke("score", "to be", "-m", d / "huge.safetensors", "--json")).stdout)
    assert record["perplexity"] is None and record["logprob"] < -1e30


@pytest.mark.parametrize("command", [["score", "to be"], ["score", "to be", "--json"], ["perplexity", "CORPUS"],
                                     ["perplexity", "CORPUS", "--json"]], ids=" ".join)
def test_overflowing_model_is_one_line_not_nan(command, models):
    d, corpus = models
    args = [corpus if a == "CORPUS" else a for a in command]
    one_line_error(invoke(*args, "-m", d / "overflow.safetensors"), "NaN log-probabilities", "--lr")


def test_train_json_is_strict(corpus, tmp_path):
    result = ok(invoke("train", corpus, *TINY, "--max-steps", 3, "-o", tmp_path / "m.safetensors", "--json"))
    assert strict_json(result.stdout.splitlines()[-1])["steps"] == 3
    for line in (tmp_path / "m.log.jsonl").read_text().splitlines():
        strict_json(line)


# --------------------------------------------------------------- 13-14. up-front checks, one line each

UP_FRONT = {   # (arguments, fragment of the one line)
    "train --seed -1": (["train", "CORPUS", "--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    "train --epochs inf": (["train", "CORPUS", "--epochs", "inf"], "'--epochs': 'inf' is not a finite number"),
    "train --time-budget inf": (["train", "CORPUS", "--time-budget", "inf"], "'--time-budget': 'inf' is not a finite"),
    "train --lr inf": (["train", "CORPUS", "--lr", "inf"], "'--lr': 'inf' is not a finite number"),
    "train --lr nan": (["train", "CORPUS", "--lr", "nan"], "'--lr': 'nan' is not a finite number"),
    "train -o sub/": (["train", "CORPUS", "-o", "sub/"], "names a folder"),
    "train -o ''": (["train", "CORPUS", "-o", ""], "--out is empty"),
    "train -o missing/m": (["train", "CORPUS", "-o", "missing/m.safetensors"], "does not exist"),
    "sample --seed -1": (["sample", "-m", "MODEL", "--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
}


@pytest.mark.parametrize("case", UP_FRONT)
def test_bad_values_are_one_line_up_front_and_nothing_is_written(case, models, tmp_path, monkeypatch):
    d, corpus = models
    args, fragment = UP_FRONT[case]
    monkeypatch.chdir(tmp_path)
    args = [{"CORPUS": corpus, "MODEL": d / "sane.safetensors"}.get(a, a) for a in args]
    if args[0] == "train":
        args += TINY
    one_line_error(invoke(*args), fragment)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any folder")
def test_out_in_an_unwritable_folder_is_one_line(corpus, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        one_line_error(invoke("train", corpus, *TINY, "-o", ro / "m.safetensors"), "not writable")
    finally:
        ro.chmod(0o755)


def test_score_from_a_closed_stdin_is_one_line(models):
    d, _ = models
    script = ("import sys; from charlm.cli import main; sys.argv = ['charlm', 'score', '-m', sys.argv[1], '-f', '-']; "
              "main()")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script, str(d / "sane.safetensors")], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, env=env,
                          preexec_fn=lambda: os.close(0))
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("charlm: error: --file -: "
                                                                                    "standard input is closed"), proc.stderr


def test_score_stdin_with_invalid_utf8_is_one_line(models):
    d, _ = models
    result = invoke("score", "-m", d / "sane.safetensors", "-f", "-", input=b"ab\xff\n")
    one_line_error(result, "invalid UTF-8", "byte offset 2")


def test_demo_with_an_unwritable_cache_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("CHARLM_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/proc/self/nonexistent")
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke("demo", "--time-budget", 1), "cache folder", "CHARLM_CACHE")
    assert os.listdir(tmp_path) == []


def test_a_word_too_long_for_the_model_header_is_refused_before_training(monkeypatch, tmp_path):
    import charlm.tasks.lm
    monkeypatch.setattr(charlm.tasks.lm, "HEADER_LIMIT", 3 << 20)        # a 101 MB word, scaled down
    corpus = tmp_path / "w.txt"
    corpus.write_text("x" * (3 << 20) + "\n" + "the cat sat on the mat\n" * 300, encoding="utf-8")
    one_line_error(invoke("train", corpus, "--level", "word", *TINY, "-o", tmp_path / "m.safetensors"),
                   "header", "--max-vocab")
    assert sorted(os.listdir(tmp_path)) == ["w.txt"]


# ------------------------------------------------------------- 7-9. model files read from anywhere

def rewrite_header(src, dst, change, extra=b"", size=None):
    """Copy a model file with its header JSON changed by change(header) (and bytes appended)."""
    import struct
    raw = Path(src).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    change(header)
    body = json.dumps(header).encode()
    Path(dst).write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n:] + extra)
    if size is not None:
        os.truncate(dst, size)
    return Path(dst)


def test_lone_surrogate_token_is_a_model_file_error(models, tmp_path):
    d, _ = models

    def surrogate(h):
        vocab = json.loads(h["__metadata__"]["vocab"])
        vocab[5] = "\ud800"
        h["__metadata__"]["vocab"] = json.dumps(vocab)
    bad = rewrite_header(d / "sane.safetensors", tmp_path / "s.safetensors", surrogate)
    for command in (["sample"], ["score", "hi"], ["info"]):
        one_line_error(invoke(*command, "-m", bad), str(bad), "not a usable charlm model", "lone surrogate")


def test_info_escapes_control_characters_from_the_file(models, tmp_path):
    d, _ = models

    def evil(h):
        h["__metadata__"]["note"] = "x\x1b]0;pwned\x07\nforged: line\r\u202e"
        h["__metadata__"]["\x1b[2Jkey"] = "v"
    path = rewrite_header(d / "sane.safetensors", tmp_path / "e.safetensors", evil)
    out = ok(invoke("info", "-m", path)).stdout
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\u202e" not in out
    assert "  note: x\\x1b]0;pwned\\x07\\nforged: line\\r\\u202e\n" in out
    assert not any(line.startswith("forged") for line in out.splitlines())
    record = strict_json(ok(invoke("info", "-m", path, "--json")).stdout)
    assert record["meta"]["note"].startswith("x\x1b]0;pwned")


def test_bad_header_of_a_huge_file_is_refused_without_reading_it(models, tmp_path):
    """The tensor offsets are checked against the file size first: a sparse 2 GB file costs nothing."""
    d, _ = models

    def stretch(h):
        name = next(k for k in h if k != "__metadata__")
        h[name]["data_offsets"][1] += 10 ** 9
    path = rewrite_header(d / "sane.safetensors", tmp_path / "big.safetensors", stretch, size=2 * 10 ** 9)
    import tracemalloc
    tracemalloc.start()
    try:
        one_line_error(invoke("sample", "-m", path), "not a usable charlm model", "data bytes")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 10 ** 6


@pytest.mark.parametrize("command", [["sample"], ["info"], ["score", "hi"], ["perplexity", "CORPUS"]], ids=" ".join)
def test_model_that_is_not_a_regular_file_is_refused(command, models, tmp_path):
    d, corpus = models
    fifo = tmp_path / "m.fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        args = [corpus if a == "CORPUS" else a for a in command]
        one_line_error(invoke(*args, "-m", path), "not a regular file")


# ---------------------------------------------------------- 11-12. Ctrl-C in compiled loops, bad stdout

@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """A 2 x 256 LSTM (random weights): sampling takes about 0.2 ms a token, a 300,000-token sample a minute."""
    from charlm.checkpoint import save_model
    from charlm.config import ModelConfig
    from charlm.model import init_params
    cfg = ModelConfig(hidden=256, embed=256, layers=2, vocab_size=30)
    path = tmp_path_factory.mktemp("slow") / "m.safetensors"
    save_model(path, init_params(cfg, np.random.default_rng(0)), cfg, ["<unk>", "<eos>"] + [chr(97 + i) for i in range(28)])
    return path


@pytest.mark.parametrize("args", [["--length", 300000], ["--length", 20000, "--beam", 8]], ids=["sample", "beam"])
def test_ctrl_c_stops_a_long_sample_at_once(args, slow_model, tmp_path):
    proc = charlm("sample", "-m", slow_model, "--seed", 1, *args, cwd=tmp_path)
    try:
        time.sleep(4)                        # started, inside the compiled loop (it would run for minutes)
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and out == "" and err.strip() == "charlm: interrupted", (proc.returncode, err)
    assert took < 1.5, took


def run_with_stdout(args, stdout, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "charlm", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=60, env=env, **kw)


@pytest.mark.parametrize("command", [["info"], ["sample", "--length", 5000], ["score", "to be"]], ids=lambda c: " ".join(map(str, c)))
def test_output_to_a_full_device_or_a_closed_stdout_is_one_line_and_fails(command, models):
    d, _ = models
    args = [*command, "-m", d / "sane.safetensors"]
    with open("/dev/full", "w") as full:
        proc = run_with_stdout(args, full)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "charlm: error: cannot write the output: No space left on device"], proc.stderr
    proc = run_with_stdout(args, subprocess.DEVNULL, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "charlm: error: standard output is closed: nowhere to print the results"], proc.stderr


def test_closed_pipe_stays_quiet(models):
    d, _ = models
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "charlm", "sample", "-m", str(d / "sane.safetensors"), "--length",
                             "200000", "--num-samples", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 141 and err == b""


# ------------------------------------------------------------------------------------------ 15. minor

def test_carriage_return_and_controls_in_a_scored_text_stay_in_their_tsv_field(models):
    d, _ = models
    out = ok(invoke("score", "a\rb\x1bc\u2028d", "-m", d / "sane.safetensors")).stdout
    assert out.count("\n") == 1 and "\r" not in out and "\x1b" not in out and "\u2028" not in out
    assert out.rstrip("\n").split("\t")[3] == "a\\rb\\x1bc\\u2028d"


def test_vocab_size_of_the_wrong_type_says_so(models, tmp_path):
    d, _ = models

    def as_string(h):
        config = json.loads(h["__metadata__"]["config"])
        config["vocab_size"] = str(config["vocab_size"])
        h["__metadata__"]["config"] = json.dumps(config)
    bad = rewrite_header(d / "sane.safetensors", tmp_path / "v.safetensors", as_string)
    one_line_error(invoke("sample", "-m", bad), "vocab_size must be an integer", '"')


def test_per_token_scores_of_one_long_line_are_linear(models, tmp_path, monkeypatch):
    """token_repr once per vocabulary entry, not once per token; the TSV written in blocks."""
    import charlm.vocab
    d, _ = models
    calls = [0]
    real = charlm.vocab.Vocab.token_repr

    def counting(self, i):
        calls[0] += 1
        return real(self, i)
    monkeypatch.setattr(charlm.vocab.Vocab, "token_repr", counting)
    line = tmp_path / "line.txt"
    line.write_text("the cat sat on the mat " * 2000 + "\n")
    out = ok(invoke("score", "-f", line, "--per-token", "-m", d / "sane.safetensors")).stdout.splitlines()
    assert len(out) == 1 + 2000 * 23 + 1 and calls[0] <= 20


# ----------------------------------------------------------------- 10. a damaged compiled-kernel cache

def test_damaged_kernel_cache_entry_is_recompiled_with_a_note(tmp_path, monkeypatch, capsys):
    import importlib.util
    import numba
    import charlm.kernels  # noqa: F401  (installs charlm.jit.tolerate_damaged_cache)
    source = tmp_path / "tiny_kernel.py"
    source.write_text("from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))

    def fresh(n):
        spec = importlib.util.spec_from_file_location(f"tiny_kernel_{n}", source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.twice

    assert fresh(0)(21) == 42                                  # compiled and cached
    files = sorted(glob.glob(str(tmp_path / "cache" / "**" / "*.nb*"), recursive=True))
    assert any(f.endswith(".nbi") for f in files) and any(f.endswith(".nbc") for f in files)
    for kind, n in ((".nbc", 1), (".nbi", 2)):               # a truncated data file, then index
        for f in files:
            if f.endswith(kind):
                os.truncate(f, 5)
        capsys.readouterr()
        assert fresh(n)(21) == 42
        err = capsys.readouterr().err
        assert "compiled-kernel cache entry" in err and "compiling the kernel again" in err, (kind, err)
    assert fresh(3)(21) == 42 and capsys.readouterr().err == ""   # rewritten: a clean hit again
