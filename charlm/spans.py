"""BIO/IOB2 spans and their precision, recall and F1, exactly as the CoNLL evaluation script (conlleval).

A tag is `O`, or `B-TYPE` / `I-TYPE`. A span starts at a B-, and also at an I- whose previous tag is O or of
another type (conlleval's rule: an I- without a B- opens a span); it ends before an O, a B-, or a tag of
another type, and at the end of the sentence. A predicted span is correct only when a gold span has the
same type and both boundaries. P = correct / predicted, R = correct / gold, F1 = 2PR / (P + R) (0 when
P + R = 0), overall and per type.
"""
from __future__ import annotations

import re

_BIO = re.compile(r"^[BI]-.+$")


def is_bio(tags) -> bool:
    """Every tag is O or B-/I-TYPE, and at least one is not O."""
    seen = False
    for t in tags:
        if t == "O":
            continue
        if not _BIO.match(t):
            return False
        seen = True
    return seen


def _split(t: str):
    if t == "O" or len(t) < 2 or t[1] != "-" or t[0] not in "BI":
        return "O", ""
    return t[0], t[2:]


def spans(tags) -> list[tuple[int, int, str]]:
    """(start, end exclusive, type) of every span in one sentence's tags."""
    out, start, kind = [], None, ""
    prev, prev_kind = "O", ""
    for i, t in enumerate(list(tags) + ["O"]):
        tag, typ = _split(t)
        if start is not None and (tag in ("B", "O") or typ != prev_kind):
            out.append((start, i, kind))
            start = None
        if tag == "B" or (tag == "I" and (prev == "O" or typ != prev_kind)):
            start, kind = i, typ
        prev, prev_kind = tag, typ
    return out


def span_report(gold_sentences, pred_sentences) -> dict:
    """Span figures over sentences of gold and predicted tags (lists of tag strings)."""
    gold, pred = set(), set()
    for n, (g, p) in enumerate(zip(gold_sentences, pred_sentences, strict=True)):
        gold.update((n,) + s for s in spans(g))
        pred.update((n,) + s for s in spans(p))
    correct = gold & pred
    out = _prf(len(correct), len(pred), len(gold))
    types = sorted({s[3] for s in gold | pred})
    out["per_type"] = {t: _prf(sum(s[3] == t for s in correct), sum(s[3] == t for s in pred),
                               sum(s[3] == t for s in gold)) for t in types}
    for t in types:
        out["per_type"][t]["support"] = out["per_type"][t].pop("gold")
    return out


def _prf(correct: int, predicted: int, gold: int) -> dict:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "correct": correct, "predicted": predicted, "gold": gold}
