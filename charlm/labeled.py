"""Labeled text files: one example per line, `LABEL<TAB>TEXT` or fastText's `__label__LABEL TEXT`.

Read through data.iter_text (UTF-8 checked with the byte offset and line of a bad byte, BOM dropped,
CRLF and CR made LF). Blank lines are skipped. Every malformed line is a CharlmError naming the file
and the line: no tab (tsv), no `__label__` prefix (fasttext), an empty label or an empty text.
fastText lines may carry several labels (`__label__a __label__b text`); a classifier takes one, so
that is an error too.
"""
from __future__ import annotations

from dataclasses import dataclass

from charlm import data
from charlm.errors import CharlmError

FORMATS = ("auto", "tsv", "fasttext")
FASTTEXT_PREFIX = "__label__"


@dataclass(frozen=True)
class Examples:
    labels: list[str]      # one per example
    texts: list[str]       # one per example
    lines: list[int]       # the 1-based line each came from
    source: str            # the file, for messages
    format: str            # "tsv" | "fasttext"


def detect_format(first_line: str) -> str:
    """fasttext when the first non-blank line starts with __label__, else tsv."""
    return "fasttext" if first_line.startswith(FASTTEXT_PREFIX) else "tsv"


def read(path, format: str = "auto", encoding_errors: str = "strict") -> Examples:
    """Every example of a labeled file. CharlmError on a malformed line, an empty file, bad UTF-8."""
    if format not in FORMATS:
        raise CharlmError(f"--format must be one of {FORMATS}, got {format!r}")
    text = "".join(data.iter_text(path, encoding_errors))
    labels, texts, lines = [], [], []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if format == "auto":
            format = detect_format(line)
        label, body = _split(path, n, line, format)
        labels.append(label)
        texts.append(body)
        lines.append(n)
    if not labels:
        raise CharlmError(f"{path}: no labeled lines (the file is empty or blank)")
    return Examples(labels, texts, lines, str(path), format)


def _split(path, n, line, format):
    if format == "tsv":
        if "\t" not in line:
            raise CharlmError(f"{path}:{n}: no tab: each line must be LABEL<TAB>TEXT (or give --format fasttext)")
        label, body = line.split("\t", 1)
        label = label.strip()
    else:
        if not line.startswith(FASTTEXT_PREFIX):
            raise CharlmError(f"{path}:{n}: no {FASTTEXT_PREFIX} prefix: each line must be "
                              f"{FASTTEXT_PREFIX}LABEL TEXT (or give --format tsv)")
        head, _, body = line.partition(" ")
        label = head[len(FASTTEXT_PREFIX):]
        if body.lstrip().startswith(FASTTEXT_PREFIX):
            raise CharlmError(f"{path}:{n}: more than one label; a classifier takes one label per line")
    if not label:
        raise CharlmError(f"{path}:{n}: empty label")
    if not body.strip():
        raise CharlmError(f"{path}:{n}: empty text after the label {label!r}")
    return label, body.strip()
