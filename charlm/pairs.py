"""Pair files for the encoder-decoder: one `SOURCE<TAB>TARGET` per line, and the figures scored on them.

Read through data.iter_text (UTF-8 checked with the byte offset and line of a bad byte, BOM dropped,
CRLF and CR made LF). Blank lines are skipped. A line without a tab, or whose source or target is empty
(after stripping surrounding whitespace), is a CharlmError naming the file and the line. The first tab
splits; a target may hold more tabs at char level (they are its characters).

Scoring (`score`): the lines are grouped by source (CMUdict lists some words with several
pronunciations); an input is right when the output equals any of its references. Word error rate
WER = wrong inputs / inputs; token error rate TER = Σ_inputs edit(output, closest reference) /
Σ_inputs len(that reference), the closest reference being the one at the smallest edit distance
(Levenshtein over tokens: insertions, deletions and substitutions cost 1).
"""
from __future__ import annotations

from dataclasses import dataclass

from charlm import data
from charlm.errors import CharlmError
from charlm.vocab import normalize


@dataclass(frozen=True)
class Pairs:
    sources: list[str]
    targets: list[str]
    lines: list[int]       # 1-based line of each pair
    path: str


def read(path, encoding_errors: str = "strict") -> Pairs:
    text = "".join(data.iter_text(path, encoding_errors))
    sources, targets, lines = [], [], []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise CharlmError(f"{path}:{n}: no tab: each line must be SOURCE<TAB>TARGET")
        src, tgt = (part.strip() for part in line.split("\t", 1))
        if not src:
            raise CharlmError(f"{path}:{n}: empty source before the tab")
        if not tgt:
            raise CharlmError(f"{path}:{n}: empty target after the tab (source {src!r})")
        sources.append(src)
        targets.append(tgt)
        lines.append(n)
    if not sources:
        raise CharlmError(f"{path}: no SOURCE<TAB>TARGET lines (the file is empty or blank)")
    return Pairs(sources, targets, lines, str(path))


def tokens(text: str, level: str, lowercase: bool = False) -> list[str]:
    """The tokens of one side: its characters, or its whitespace-separated words."""
    text = normalize(text).replace("\n", " ")
    if lowercase:
        text = text.lower()
    return list(text) if level == "char" else text.split()


def group(pairs: Pairs, level: str, lowercase: bool = False) -> tuple[list[str], list[list[tuple[str, ...]]]]:
    """The distinct sources in first-seen order, and the references (token tuples) of each."""
    refs: dict[str, list[tuple[str, ...]]] = {}
    for s, t in zip(pairs.sources, pairs.targets):
        r = tuple(tokens(t, level, lowercase))
        lst = refs.setdefault(s, [])
        if r not in lst:
            lst.append(r)
    return list(refs), list(refs.values())


def edit_distance(a, b) -> int:
    """Levenshtein distance between token sequences a and b."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def score(outputs, references) -> dict:
    """WER, TER and per-input details of outputs (token tuples) against references (lists of tuples)."""
    wrong = errors = length = 0
    details = []
    for out, refs in zip(outputs, references):
        out = tuple(out)
        right = out in refs
        d, ref = min((edit_distance(out, r), r) for r in refs) if not right else (0, out)
        wrong += not right
        errors += d
        length += len(ref)
        details.append({"right": right, "distance": d, "reference": ref})
    n = len(outputs)
    return {"wer": wrong / n if n else 0.0, "ter": errors / length if length else 0.0, "inputs": n,
            "wrong": wrong, "token_errors": errors, "reference_tokens": length, "details": details}
