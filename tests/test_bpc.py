"""Bits per character at every level: total NLL / ln 2 / characters of the text, newlines included.

The characters below are counted by hand, and the NLL comes from the float64 reference
(tests/reference.py), so the figure is checked from outside the code that computes it.
"""
import json
import math

import pytest

import reference as ref
from charlm.checkpoint import load_model
from charlm.lm import LanguageModel

from support import invoke, ok, play

TEXT = "ab cd\nef.\n"        # 6 + 4 = 10 characters, each newline one
LINE = "To be, or not"      # 13 characters and the end of its line: 14
LEVELS = {"char": [], "word": ["--level", "word"], "words": ["--level", "word", "--tokenize", "words"],
          "bpe": ["--level", "bpe", "--vocab-size", 300]}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpc")
    corpus, valid = d / "corpus.txt", d / "valid.txt"
    corpus.write_text(play(12000) + "ab cd\nef.\n", encoding="utf-8")
    valid.write_text("ab cd\r\nef.", encoding="utf-8")          # 10 characters: "\r\n" is one, the last line's end one
    out = {}
    for name, flags in LEVELS.items():
        path = d / f"{name}.safetensors"
        r = ok(invoke("train", corpus, "--valid", valid, *flags, "--hidden", 8, "--layers", 1, "--batch-size", 4,
                      "--seq-len", 8, "--max-steps", 3, "--threads", 1, "-o", path, "-q", "--json"))
        out[name] = (path, json.loads(r.stdout.splitlines()[-1]))
    return d, out


def reference_nll(path, text):
    m = load_model(path)
    lm = LanguageModel.load(path)
    nll, n = ref.stream_nll(m.config, m.params, lm.vocab.encode(text))
    return nll, n


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_perplexity_bits_per_char(models, level):
    d, out = models
    path, _ = out[level]
    f = d / "text.txt"
    f.write_text(TEXT, encoding="utf-8")
    r = json.loads(ok(invoke("perplexity", "-m", path, f, "--json")).stdout)
    nll, n = reference_nll(path, TEXT)
    assert r["characters"] == 10 and r["tokens"] == n
    assert r["bits_per_char"] == pytest.approx(nll / math.log(2) / 10, rel=1e-5)
    if level == "char":
        assert r["bits_per_char"] == pytest.approx(r["bits_per_token"], rel=1e-12)
    text = ok(invoke("perplexity", "-m", path, f)).stdout
    assert f"{r['bits_per_char']:.4f} bits/char" in text


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_score_bits_per_char(models, level):
    _, out = models
    path, _ = out[level]
    (s,) = [json.loads(x) for x in ok(invoke("score", "-m", path, LINE, "--json")).stdout.splitlines()]
    nll, _ = reference_nll(path, LINE + "\n")
    assert s["characters"] == 14
    assert s["bits_per_char"] == pytest.approx(nll / math.log(2) / 14, rel=1e-5)
    row = ok(invoke("score", "-m", path, LINE)).stdout.rstrip("\n").split("\t")
    assert row[3] == LINE and float(row[4]) == pytest.approx(s["bits_per_char"], abs=1e-4)


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_train_summary_and_log_bits_per_char(models, level):
    d, out = models
    path, summary = out[level]
    nll, n = reference_nll(path, "ab cd\nef.\n")
    assert summary["valid_chars"] == 10 and summary["valid_tokens"] == n
    assert summary["valid_bpc"] == pytest.approx(nll / math.log(2) / 10, rel=1e-5)
    records = [json.loads(x) for x in path.with_suffix(".log.jsonl").read_text().splitlines()]
    valid = [r for r in records if r.get("valid_loss") is not None]
    assert valid and all(r["valid_bpc"] == pytest.approx(r["valid_loss"] * n / math.log(2) / 10, rel=1e-9)
                         for r in valid)


def test_held_out_tail_counts_its_characters(tmp_path):
    """--valid-fraction at word level: the tail's characters are those of its tokens, one space between."""
    from charlm.train import load_corpus
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b\n" * 90 + "cc  dd\n" * 10, encoding="utf-8")    # the last 30 tokens: "cc dd\n" x 10
    c = load_corpus([corpus], "word", valid_fraction=0.1)
    assert len(c.valid) == 30 and c.valid_chars == 60
    c = load_corpus([corpus], "char", valid_fraction=0.1)
    assert c.valid_chars == len(c.valid)
