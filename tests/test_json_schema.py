"""Every command's --json output has the keys docs/json.md documents (section "Keys").

That page is the contract; this test reads the key lists from it, so the two cannot drift apart.
"""
import json
import re
from pathlib import Path

import pytest

from support import invoke, ok, shakespeare

JSON_DOC = Path(__file__).resolve().parents[1] / "docs" / "json.md"


def documented_keys() -> dict[str, set[str]]:
    """command -> keys, from docs/json.md lines like "- `charlm score --json`: `logprob`, `tokens`, ..."."""
    section = JSON_DOC.read_text(encoding="utf-8").split("## Keys", 1)[1].split("\n## ", 1)[0]
    keys = {}
    for line in section.splitlines():
        m = re.match(r"- `charlm (\w+)[^`]*`: (.*)", line)
        if m:
            keys[m.group(1)] = set(re.findall(r"`(\w+)`", m.group(2).split("(")[0]))  # not the nested keys
    return keys


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("json")
    corpus = d / "corpus.txt"
    corpus.write_text(shakespeare(8000), encoding="utf-8")
    out = d / "model.safetensors"
    result = ok(invoke("train", corpus, "--hidden", 16, "--layers", 1, "--batch-size", 4, "--seq-len", 16,
                       "--max-steps", 5, "-o", out, "-q", "--json"))
    return out, corpus, json.loads(result.stdout.strip().splitlines()[-1])


def test_readme_documents_every_command():
    assert set(documented_keys()) == {"train", "sample", "score", "perplexity", "info", "bench"}


def test_train(model):
    _, _, train = model
    assert documented_keys()["train"] <= set(train)


@pytest.mark.parametrize("command, args", [
    ("sample", ["--length", 10, "--seed", 1]),
    ("score", ["to be or not", "--per-token"]),
    ("perplexity", ["CORPUS"]),
    ("info", []),
    ("bench", ["--hidden", 8, "--layers", 1, "--vocab", 11, "--batch-size", 2, "--seq-len", 4, "--steps", 1,
               "--sample-tokens", 5]),
])
def test_command(model, command, args):
    out, corpus, _ = model
    args = [corpus if a == "CORPUS" else a for a in args]
    model_args = [] if command == "bench" else ["-m", out]
    result = ok(invoke(command, *args, *model_args, "--json"))
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert documented_keys()[command] <= set(record), (command, record)
