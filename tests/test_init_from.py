"""charlm train NEW --init-from MODEL: a new run on new text from a trained model's architecture, tokenizer
and weights, with a fresh optimizer."""
import numpy as np
import pytest

import charlm
from charlm.checkpoint import load_model
from charlm.tasks.lm import LMTask
from charlm.train import load_corpus

from support import invoke, ok, one_line_error, play

SMALL = ["--hidden", 16, "--layers", 1, "--batch-size", 4, "--seq-len", 8, "--threads", 1, "-q"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("init")
    old, new = d / "old.txt", d / "new.txt"
    old.write_text(play(6000), encoding="utf-8")
    new.write_text(play(6000, start=20000) + "Zoë and Ñandú\n" * 3, encoding="utf-8")
    model = d / "old.safetensors"
    ok(invoke("train", old, *SMALL, "--max-steps", 4, "-o", model))
    return d, old, new, model


def test_the_first_step_starts_from_the_given_weights_exactly(base, monkeypatch):
    d, _, new, model = base
    seen = []
    real = LMTask.step

    def step(self, P, *args):
        if not seen:
            seen.append({k: v.copy() for k, v in P.items()})
        return real(self, P, *args)
    monkeypatch.setattr(LMTask, "step", step)
    out = d / "tuned.safetensors"
    ok(invoke("train", new, "--init-from", model, "--max-steps", 2, "--threads", 1, "-q", "-o", out))
    given = load_model(model).params
    assert seen and seen[0].keys() == given.keys()
    for name, value in given.items():
        assert seen[0][name].tobytes() == value.tobytes(), name
    tuned = load_model(out)
    assert any(not np.array_equal(tuned.params[k], given[k]) for k in given)     # and it did train


def test_the_result_is_a_normal_model_of_the_same_architecture(base):
    d, _, new, model = base
    out = d / "normal.safetensors"
    r = ok(invoke("train", new, "--init-from", model, "--max-steps", 2, "--batch-size", 2, "--threads", 1, "-o", out))
    assert "new to" in r.stderr and "read as <unk>" in r.stderr
    tuned, before = load_model(out), load_model(model)
    assert tuned.config == before.config and tuned.vocab == before.vocab
    lm = charlm.load(out)
    assert lm.perplexity([new])[0].tokens > 0 and lm.sample(length=5, seed=1)
    ok(invoke("info", "-m", out))


def test_new_tokens_are_counted(base):
    d, _, new, model = base
    lm = charlm.load(model)
    corpus = load_corpus([new], valid_fraction=0.05, model_vocab=lm.vocab)
    train_text = new.read_text(encoding="utf-8")
    new_chars = {c for c in train_text if c != "\n" and c not in lm.vocab.index}
    assert new_chars and set(corpus.unknown) <= new_chars
    assert sum(corpus.unknown.values()) == int((corpus.train == lm.vocab.unk_id).sum())
    r = ok(invoke("train", new, "--init-from", model, "--max-steps", 1, "--threads", 1, "-o", d / "count.safetensors"))
    n = sum(corpus.unknown.values())
    assert f"{len(corpus.unknown)} characters of the training text are new to {model}" in r.stderr
    assert f": {n:,} of {len(corpus.train):,} training tokens ({100 * n / len(corpus.train):.2f} %)" in r.stderr


def test_a_run_from_a_model_resumes(base):
    d, _, new, model = base
    out = d / "resumed.safetensors"
    ok(invoke("train", new, "--init-from", model, "--max-steps", 2, "--threads", 1, "-q", "-o", out))
    ok(invoke("train", new, "--resume", "--max-steps", 3, "-q", "-o", out))
    assert load_model(out).meta["step"] == "3"


def test_bad_uses(base):
    d, old, new, model = base
    one_line_error(invoke("train", new, "--init-from", model, "-o", model), "would overwrite the input")
    one_line_error(invoke("train", new, "--init-from", model, "--hidden", 64, "-o", d / "x.safetensors"),
                   "--hidden conflicts with the model", "hidden 16")
    one_line_error(invoke("train", new, "--init-from", model, "--min-count", 2, "-o", d / "x.safetensors"),
                   "the vocabulary comes from the model")
    one_line_error(invoke("train", new, "--init-from", d / "missing.safetensors", "-o", d / "x.safetensors"),
                   "no such file")
    one_line_error(invoke("train", new, "--resume", "-o", model, "-q"), "--init-from MODEL")


def test_unknown_characters_of_the_prime_are_reported(base):
    _, _, _, model = base
    r = ok(invoke("sample", "-m", model, "--prime", "Zoë ☃☃", "--length", 3, "--seed", 1))
    assert "note: --prime has 3 tokens the model does not know, read as <unk>: 'ë', '☃'" in r.stderr
    assert "--prime" not in ok(invoke("sample", "-m", model, "--prime", "the", "--length", 3, "--seed", 1)).stderr
