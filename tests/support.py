"""Helpers shared by the test modules: the shared corpora and running the CLI in-process."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from charlm.cli import main


def corpora_dir() -> Path:
    """../shared/corpora seen from the repository root, or $CHARLM_SHARED_CORPORA."""
    env = os.environ.get("CHARLM_SHARED_CORPORA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "corpora"


def corpus_text(rel: str, start: int, size: int) -> str:
    """About `size` characters of a shared corpus from `start`, cut to whole lines; skips the test when
    the corpus is absent."""
    path = corpora_dir() / rel
    if not path.is_file():
        pytest.skip(f"shared corpus {path} is absent")
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read(start + size + 2000)
    if start:
        text = text[text.index("\n", start) + 1:]
    return text[: text.rindex("\n", 0, size) + 1]


def shakespeare(size: int, start: int = 0) -> str:
    return corpus_text("tinyshakespeare/input.txt", start, size)


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


def one_line_error(result, *fragments, code=1):
    """The run failed with `code`, no traceback, and one 'charlm: error:' line last on stderr holding
    every fragment. Returns that line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exc_info)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("charlm: error:")]
    assert len(errors) == 1 and result.stderr.rstrip("\n").endswith(errors[0]), result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


CELLS = {    # every cell variant, as ModelConfig keyword arguments
    "rnn-tanh": dict(cell="rnn", activation="tanh"),
    "rnn-relu": dict(cell="rnn", activation="relu"),
    "gru-full": dict(cell="gru", gru_variant="full"),
    "gru-minimal": dict(cell="gru", gru_variant="minimal"),
    "lstm": dict(cell="lstm"),
    "lstm-peephole": dict(cell="lstm", peephole=True),
}


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
