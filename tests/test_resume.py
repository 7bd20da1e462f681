"""Exact resume (charlm.resume, `charlm train --resume`): a run stopped at step k and resumed ends with the
same bits as the run that never stopped, for every parameter, optimizer moment, the carried state and the
random generator. Negative controls show the comparison catches a difference.

Runs are tiny (2x16 LSTM, batch 4, window 8) on a 2,000-character slice of tinyshakespeare, so an epoch is
about 60 steps and a test can stop mid-epoch, just before, at and just after an epoch boundary. They train
in-process through click's CliRunner with --threads 1. Validation runs every 5 steps (--valid-every: a
time-based schedule would not be reproducible) on a validation text the training text never shows (all
<unk>), so the loss only worsens and --lr-decay 1.1 lowers the learning rate at nearly every validation:
the schedule's state has to resume too. Dropout 0.1 makes every step draw from the random generator.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from charlm.checkpoint import load_model
from charlm.errors import CharlmError
from charlm.resume import (STATE_FORMAT, StateFileError, load_state, rng_state_from_json, rng_state_to_json,
                           save_state, state_path)
from charlm.train import load_corpus
from support import invoke, mutate, ok, one_line_error, shakespeare

B, T = 4, 8
RUN = ["--hidden", "16", "--layers", "2", "--batch-size", str(B), "--seq-len", str(T), "--threads", "1", "-q",
       "--keep", "last", "--valid-every", "5", "--dropout", "0.1", "--lr-decay", "1.1", "--seed", "3"]


# ------------------------------------------------------------------------------------------- helpers

def train(data, out, *extra):
    return ok(invoke("train", data["corpus"], "-o", out, "--valid", data["valid"], *RUN, *extra))


def resume(data, out, *extra):
    return ok(invoke("train", data["corpus"], "-o", out, "--resume", *extra))


def same_bits(a: dict, b: dict) -> bool:
    """Every array equal byte for byte (so -0.0 != 0.0 and NaN payloads count)."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


PROGRESS_KEYS = ("step", "epoch", "epoch_pos", "tokens", "sched_best", "bad_valids", "recent", "skipped",
                 "opt_scalars")


def run_state(path):
    """(every tensor of the run state, the progress that must resume, the generator state)."""
    st = load_state(state_path(path))
    tensors = {f"param/{k}": v for k, v in st.params.items()}
    tensors.update({f"opt/{k}": v for k, v in st.opt_arrays.items()})
    tensors["carry"] = st.carry
    return tensors, {k: st.progress[k] for k in PROGRESS_KEYS}, st.rng_state


def assert_identical(a, b):
    """Runs a and b ended the same: model file bits, run-state tensors, progress and generator."""
    assert same_bits(load_model(a).params, load_model(b).params), "model parameters differ"
    ta, pa, ra = run_state(a)
    tb, pb, rb = run_state(b)
    assert same_bits(ta, tb), [k for k in ta if ta[k].tobytes() != tb[k].tobytes()]
    assert pa == pb
    assert ra == rb


def differs(a, b) -> bool:
    return not same_bits(load_model(a).params, load_model(b).params)


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume_data")
    corpus = d / "corpus.txt"
    corpus.write_text(shakespeare(2000), encoding="utf-8")
    valid = d / "unk.txt"
    valid.write_text("☃☃☃☃☃☃☃☃\n" * 20, encoding="utf-8")          # characters training never shows
    c = load_corpus([corpus], valid_path=valid)
    n = len(c.train) // B
    spe = math.ceil((n - 1) / T)                                     # steps per epoch
    return {"corpus": corpus, "valid": valid, "spe": spe, "total": 2 * spe + 7}


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run of `total` steps."""
    out = tmp_path_factory.mktemp("resume_ref") / "ref.safetensors"
    train(data, out, "--max-steps", data["total"])
    return out


# -------------------------------------------------------------------------------------- exact resume

def test_the_schedule_has_state_to_resume(data, reference):
    """Preconditions of the comparison: epochs roll over, the learning rate decays, dropout draws."""
    st = load_state(state_path(reference))
    assert st.progress["step"] == data["total"] and st.progress["epoch"] == 2
    assert st.progress["opt_scalars"]["lr"] < 0.002 / 1.1 ** 10
    assert st.train_config["dropout"] == 0.1 and st.progress["bad_valids"] > 10
    assert np.abs(st.carry).max() > 0


@pytest.mark.parametrize("where", ["first-step", "mid-epoch", "before-epoch-end", "epoch-end", "after-epoch-end",
                                   "second-epoch-end"])
def test_resume_is_bit_identical(where, data, reference, tmp_path):
    spe = data["spe"]
    k = {"first-step": 1, "mid-epoch": spe // 2 + 1, "before-epoch-end": spe - 1, "epoch-end": spe,
         "after-epoch-end": spe + 1, "second-epoch-end": 2 * spe}[where]
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", k)
    assert load_state(state_path(out)).progress["step"] == k
    r = resume(data, out, "--max-steps", data["total"], "--threads", "1")
    assert f"resuming the run at step {k}" in r.stderr
    assert_identical(out, reference)


def test_resume_several_times(data, reference, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 7)
    for k in (8, 23, data["spe"], data["spe"] + 2, data["total"]):
        resume(data, out, "--max-steps", k, "--threads", "1")
    assert_identical(out, reference)


@pytest.mark.parametrize("extra", [
    ["--cell", "gru", "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.9"],
    ["--cell", "rnn", "--activation", "relu", "--tie-weights", "--layers", "1", "--clip", "0"],
    ["--peephole", "--gru-variant", "minimal", "--keep", "best"],
    ["--cell", "gru", "--gru-variant", "minimal", "--level", "word", "--lowercase"],
], ids=["gru-sgd-momentum", "rnn-relu-tied-noclip", "lstm-peephole-keep-best", "gru-minimal-word"])
def test_resume_other_models(extra, data, tmp_path):
    n = data["spe"] + 4
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train(data, a, "--max-steps", n, *extra)
    train(data, b, "--max-steps", data["spe"] // 2, *extra)
    resume(data, b, "--max-steps", n, "--threads", "1")
    ta, pa, ra = run_state(a)
    tb, pb, rb = run_state(b)
    assert same_bits(ta, tb) and pa == pb and ra == rb         # --keep best: the latest parameters are here
    if "--keep" not in extra:
        assert same_bits(load_model(a).params, load_model(b).params)


def test_interrupted_run_resumes_without_any_option_but_limits(data, reference, tmp_path):
    """Only the corpus and --out: every other option comes from the run state (here even --threads)."""
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 11)
    ok(invoke("train", data["corpus"], "-o", out, "--resume", "--max-steps", data["total"]))
    assert_identical(out, reference)


# ---------------------------------------------------------------------------------- negative controls

def test_comparison_sees_one_flipped_bit(reference, tmp_path):
    m = load_model(reference)
    flipped = {k: v.copy() for k, v in m.params.items()}
    flipped["decoder.bias"].view(np.uint32)[0] ^= 1
    assert same_bits(m.params, m.params) and not same_bits(m.params, flipped)


def test_negative_control_other_seed(data, reference, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", data["total"], "--seed", "4")
    assert differs(out, reference)


@pytest.mark.parametrize("damage", ["rng", "carry", "adam-moment", "lr"])
def test_negative_control_perturbed_state(damage, data, reference, tmp_path):
    """Resuming from a state with one thing changed (a generator one draw ahead, a zeroed carried state, one
    Adam moment tensor nudged by one ulp, the decayed learning rate reset) ends with other bits: each part of the
    state matters, and the comparison would notice if resume lost it."""
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", data["spe"] // 2)
    path = state_path(out)
    st = load_state(path)
    if damage == "rng":
        rng = np.random.default_rng()
        rng.bit_generator.state = st.rng_state
        rng.random()
        st.rng_state = rng.bit_generator.state
    elif damage == "carry":
        st.carry[...] = 0.0
    elif damage == "adam-moment":
        v = st.opt_arrays["v.rnn.weight_hh_l0"]
        v.view(np.uint32)[...] += 1                    # every element of one moment tensor, by one ulp
    else:
        st.progress["opt_scalars"]["lr"] = st.train_config["lr"]
    save_state(path, st)
    resume(data, out, "--max-steps", data["total"], "--threads", "1")
    assert differs(out, reference)


# --------------------------------------------------------------------------- what --resume accepts

def test_resume_of_a_finished_run_with_no_new_limit_does_nothing(data, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 9)
    before = load_model(out).params
    r = resume(data, out)
    assert "9 steps" in r.stdout
    assert same_bits(before, load_model(out).params)
    assert load_state(state_path(out)).progress["step"] == 9


@pytest.mark.parametrize("args,option", [
    (["--hidden", "32"], "--hidden 32"), (["--layers", "1"], "--layers 1"), (["--cell", "gru"], "--cell gru"),
    (["--tie-weights"], "--tie-weights"), (["--embed", "8"], "--embed 8"), (["--level", "word"], "--level word"),
    (["--batch-size", "8"], "--batch-size 8"), (["--seq-len", "16"], "--seq-len 16"),
    (["--optimizer", "sgd"], "--optimizer sgd"), (["--seed", "1"], "--seed 1"), (["--min-count", "2"], "--min-count 2"),
    (["--lowercase"], "--lowercase"), (["--valid-fraction", "0.1"], "--valid-fraction 0.1"),
])
def test_resume_refuses_conflicting_options(args, option, data, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 3)
    before = out.read_bytes(), Path(state_path(out)).read_bytes()
    err = one_line_error(invoke("train", data["corpus"], "-o", out, "--resume", "--max-steps", 6, *args), option)
    assert "fixed for a run" in err
    assert (out.read_bytes(), Path(state_path(out)).read_bytes()) == before


def test_resume_accepts_options_equal_to_the_run(data, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 3)
    r = resume(data, out, "--max-steps", 5, "--hidden", "16", "--batch-size", str(B), "--seed", "3")
    assert load_state(state_path(out)).progress["step"] == 5 and "5 steps" in r.stdout


def test_resume_on_other_text_is_an_error(data, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 3)
    before = out.read_bytes()
    other = tmp_path / "other.txt"
    other.write_text(data["corpus"].read_text(encoding="utf-8").replace("the", "teh"), encoding="utf-8")
    one_line_error(invoke("train", other, "-o", out, "--resume", "--max-steps", 6), "training text is not the one")
    other.write_text(shakespeare(2000, start=50000), encoding="utf-8")           # other characters, too
    one_line_error(invoke("train", other, "-o", out, "--resume", "--max-steps", 6), "--resume")
    assert out.read_bytes() == before


def test_resume_without_a_state_is_an_error(data, tmp_path):
    out = tmp_path / "m.safetensors"
    one_line_error(invoke("train", data["corpus"], "-o", out, "--resume"), "no run state", "m.safetensors.state")


@pytest.mark.parametrize("kind", ["truncated", "random-bytes", "model-file", "empty", "nan-moment", "bad-rng"])
def test_resume_from_a_damaged_state_is_one_clear_error(kind, data, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 3)
    path = Path(state_path(out))
    raw = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "model-file":
        shutil.copy(out, path)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len])
        if kind == "nan-moment":
            start = header["opt/m.decoder.bias"]["data_offsets"][0] + 8 + header_len
            raw = raw[:start] + np.float32(np.nan).tobytes() + raw[start + 4:]
        else:
            rng = json.loads(header["__metadata__"]["rng"])
            rng["state"]["state"] = str(2 ** 130)                              # PCG64's state has 128 bits
            header["__metadata__"]["rng"] = json.dumps(rng)
            text = json.dumps(header).encode()
            text += b" " * (-len(text) % 8)
            raw = len(text).to_bytes(8, "little") + text + raw[8 + header_len:]
        path.write_bytes(raw)
    with pytest.raises(StateFileError):
        load_state(path)
    one_line_error(invoke("train", data["corpus"], "-o", out, "--resume", "--max-steps", 6), "run state")


def test_lr_given_on_resume_replaces_the_decayed_rate(data, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 30)
    assert load_state(state_path(out)).progress["opt_scalars"]["lr"] < 0.002
    r = resume(data, out, "--max-steps", 30, "--lr", "0.01")                  # no new step: just the change
    assert "changed on resume: --lr 0.01 (the run had 0.002)" in r.stderr
    st = load_state(state_path(out))
    assert st.progress["opt_scalars"]["lr"] == 0.01 and st.train_config["lr"] == 0.01


def test_limits_given_on_resume_replace_the_runs(data, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 4)
    resume(data, out, "--epochs", "0.25")                          # --max-steps 4 no longer applies
    st = load_state(state_path(out))
    assert st.progress["step"] == math.ceil(0.25 * data["spe"]) and st.train_config["max_steps"] == 0


# ------------------------------------------------------------------------------------ the state file

def test_state_file_is_plain_safetensors_with_json_metadata(data, reference):
    raw = Path(state_path(reference)).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8:8 + header_len])["__metadata__"]
    assert meta["format"] == STATE_FORMAT
    for key in ("config", "vocab", "train_config", "run_config", "corpus_sha256", "progress", "rng"):
        json.loads(meta[key])
    rng = json.loads(meta["rng"])
    assert rng["bit_generator"] == "PCG64" and isinstance(rng["state"]["state"], str)
    assert rng_state_from_json(meta["rng"]) == load_state(state_path(reference)).rng_state
    assert b"pickle" not in raw and not raw.startswith(b"\x80")


def test_rng_state_round_trips_beyond_64_bits():
    rng = np.random.default_rng(12345)
    rng.random(3, dtype=np.float32)                           # leaves a buffered uint32 half
    state = rng.bit_generator.state
    assert state["state"]["state"] > 2 ** 64
    again = np.random.default_rng()
    again.bit_generator.state = rng_state_from_json(rng_state_to_json(state))
    assert np.array_equal(rng.random(5, dtype=np.float32), again.random(5, dtype=np.float32))


def test_state_refuses_non_finite_values(reference, tmp_path):
    st = load_state(state_path(reference))
    st.opt_arrays["v.decoder.bias"][0] = np.inf
    with pytest.raises(CharlmError, match="non-finite"):
        save_state(tmp_path / "x.state", st)
    assert not (tmp_path / "x.state").exists()


def test_log_after_resume_has_each_step_once(data, tmp_path):
    out = tmp_path / "m.safetensors"
    train(data, out, "--max-steps", 23)
    with open(tmp_path / "m.log.jsonl", "a", encoding="utf-8") as f:       # what a killed later session left
        f.write(json.dumps({"step": 40, "valid_loss": 1.0}) + "\n" + '{"step": 45, "val')
    resume(data, out, "--max-steps", 30)
    records = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r.get("valid_loss") is not None]
    assert steps == sorted(set(steps)) and steps[-1] == 30 and 40 not in steps
    assert [r["step"] for r in records if r.get("event") == "resumed"] == [23]


# ------------------------------------------------------------------------------ fuzzing the loader

def rewrite_header(raw: bytes, edit) -> bytes:
    """The file with edit(header dict) applied to its JSON header, tensor data unchanged."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n:]


@pytest.fixture(scope="module")
def fuzz_base(reference, tmp_path_factory):
    return Path(state_path(reference)).read_bytes(), tmp_path_factory.mktemp("state_fuzz") / "x.state"


def loads_or_state_file_error(path):
    try:
        st = load_state(path)
    except StateFileError as e:
        assert str(path) in str(e)
    else:
        assert all(np.isfinite(a).all() for a in [*st.params.values(), *st.opt_arrays.values(), st.carry])


byte_edit = hs.one_of(
    hs.tuples(hs.just("flip"), hs.floats(0, 1, exclude_max=True), hs.integers(1, 255)),
    hs.tuples(hs.just("truncate"), hs.floats(0, 1, exclude_max=True), hs.just(0)),
    hs.tuples(hs.just("insert"), hs.floats(0, 1), hs.binary(min_size=1, max_size=16)),
    hs.tuples(hs.just("header"), hs.floats(0, 1, exclude_max=True),
              hs.sampled_from([b'"', b"}", b"{", b",", b"1", b"-", b"null", b"NaN", b"[]", b"F64", b"9999999999"])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=hs.lists(byte_edit, min_size=1, max_size=3))
def test_fuzz_damaged_state_bytes_only_raise_state_file_error(fuzz_base, edits):
    raw, path = fuzz_base
    path.write_bytes(mutate(raw, edits))
    loads_or_state_file_error(path)


json_value = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.floats() | hs.text(max_size=6),
    lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(hs.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
METADATA_FIELDS = [("progress", k) for k in ("step", "epoch", "epoch_pos", "tokens", "elapsed", "best", "sched_best",
                                             "bad_valids", "recent", "opt_scalars", "optimizer", "threads", "run_id")]
METADATA_FIELDS += [("train_config", k) for k in ("batch_size", "seq_len", "optimizer", "lr", "keep", "seed")]
METADATA_FIELDS += [("rng", k) for k in ("bit_generator", "state", "has_uint32", "uinteger")]
METADATA_FIELDS += [("corpus_sha256", "train"), ("run_config", "corpus")]


@settings(max_examples=150, deadline=None)
@given(changes=hs.lists(hs.tuples(hs.sampled_from(METADATA_FIELDS), json_value), min_size=1, max_size=3))
def test_fuzz_state_metadata_values_only_raise_state_file_error(fuzz_base, changes):
    raw, path = fuzz_base

    def edit(header):
        meta = header["__metadata__"]
        for (key, field), value in changes:
            d = json.loads(meta[key])
            d[field] = value
            meta[key] = json.dumps(d)

    path.write_bytes(rewrite_header(raw, edit))
    loads_or_state_file_error(path)
