"""Helpers shared by the test modules: the text fixtures, the real corpora, running the CLI in-process,
the cell table and the one-line-error check.

Texts: the suite runs on the generated fixtures in tests/data/ (`play`, `news`), so it needs nothing
outside the repository. The real corpora (../shared/corpora beside the repository, or
$CHARLM_SHARED_CORPORA) add a further layer of tests when present (`real_corpus`); absent, those tests
skip with the reason. Under CI (CI=true) a missing corpus or test dependency fails instead (conftest.py).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from charlm.cli import main

DATA = Path(__file__).resolve().parent / "data"
STRICT = os.environ.get("CI", "").lower() in ("true", "1")   # CI: a missing corpus or dependency fails


def corpora_dir() -> Path:
    """../shared/corpora seen from the repository root, or $CHARLM_SHARED_CORPORA."""
    env = os.environ.get("CHARLM_SHARED_CORPORA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "corpora"


def real_corpus(rel: str) -> Path:
    """The path of a real corpus file or folder under corpora_dir(); skips the test when it is absent
    (fails under CI)."""
    path = corpora_dir() / rel
    if not path.exists():
        (pytest.fail if STRICT else pytest.skip)(f"shared corpus {path} is absent (a real-corpus test)")
    return path


def _slice(path: Path, start: int, size: int) -> str:
    """About `size` characters of the file at `path` from `start`, cut to whole lines."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read(start + size + 2000)
    if start:
        text = text[text.index("\n", start) + 1:]
    return text[: text.rindex("\n", 0, size) + 1]


def corpus_text(rel: str, start: int, size: int) -> str:
    """About `size` characters of a real corpus from `start`, cut to whole lines (see real_corpus)."""
    return _slice(real_corpus(rel), start, size)


def fixture_text(name: str, start: int, size: int) -> str:
    """About `size` characters of tests/data/NAME from `start`, cut to whole lines."""
    return _slice(DATA / name, start, size)


def play(size: int, start: int = 0) -> str:
    """Character-level text: a generated play (tests/data/play.txt, 120 KB), Tiny Shakespeare's layout."""
    return fixture_text("play.txt", start, size)


shakespeare = play   # the name the older modules use


def news(size: int, start: int = 0, split: str = "train") -> str:
    """Word-level text: generated newswire sentences (tests/data/news.{train,valid}.txt), PTB's layout
    (lower case, N for numbers, <unk>); the valid split has words the train split lacks."""
    return fixture_text(f"news.{split}.txt", start, size)


def runner() -> CliRunner:
    """stdout and stderr kept apart: the default from click 8.2 on, mix_stderr=False before."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def invoke(*args, input=None):
    return runner().invoke(main, [str(a) for a in args], input=input)


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.exc_info)
    return result


def one_line_error(result, *fragments, code=1, no_stdout=False):
    """The run failed with `code` (any non-zero code when None), no traceback, and one 'charlm: error:'
    line last on stderr holding every fragment; with no_stdout, nothing on stdout. Returns that line."""
    if code is None:
        assert result.exit_code != 0, (result.exit_code, result.output)
    else:
        assert result.exit_code == code, (result.exit_code, result.output, result.exc_info)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output, result.exc_info
    errors = [line for line in result.stderr.splitlines() if line.startswith("charlm: error:")]
    assert len(errors) == 1 and result.stderr.rstrip("\n").endswith(errors[0]), result.stderr
    if no_stdout:
        assert result.stdout == "", result.stdout
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


CELLS = {    # every cell variant, as ModelConfig keyword arguments: the one table the tests share
    "rnn-tanh": dict(cell="rnn", activation="tanh"),
    "rnn-relu": dict(cell="rnn", activation="relu"),
    "gru-full": dict(cell="gru", gru_variant="full"),
    "gru-minimal": dict(cell="gru", gru_variant="minimal"),
    "lstm": dict(cell="lstm"),
    "lstm-peephole": dict(cell="lstm", peephole=True),
}


def cell_flags(variant: str) -> list[str]:
    """The command-line options that select CELLS[variant]: ["--cell", "rnn", "--activation", "tanh"]."""
    flags = []
    for key, value in CELLS[variant].items():
        if value is True:
            flags.append(f"--{key}")
        else:
            flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def mutate(data: bytes, ops) -> bytes:
    """Damage a safetensors file's bytes for the fuzz tests. ops: (op, where in [0, 1), arg) with op one of
    flip (xor a byte with arg), truncate, insert (arg bytes), header / text (overwrite header bytes with
    arg), length (replace the 8-byte header length with `where`, an integer)."""
    b = bytearray(data)
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    for op, where, arg in ops:
        if op == "flip" and b:
            b[int(where * len(b))] ^= arg
        elif op == "truncate":
            del b[int(where * len(b)):]
        elif op == "insert":
            i = int(where * len(b))
            b[i:i] = arg
        elif op in ("header", "text"):
            i = 8 + int(where * (header_end - 8))
            b[i:i + len(arg)] = arg
        elif op == "length" and len(b) >= 8:
            b[:8] = struct.pack("<Q", where)
    return bytes(b)
