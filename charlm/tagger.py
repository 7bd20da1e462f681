"""The Python API of a trained tagger: tag tokenized sentences, evaluate on a tagged file.

    import charlm
    tagger = charlm.load("upos.safetensors")          # a tagger file gives a Tagger
    print(tagger.tag([["I", "saw", "her", "duck", "."]]))
    print(tagger.evaluate("en_ewt-ud-dev.conllu")["accuracy"])
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from charlm import conllu, spans, tag
from charlm.checkpoint import load_model
from charlm.tasks.tag import encode, read_tables
from charlm.threads import compute_threads
from charlm.vocab import Vocab


class Tagger:
    def __init__(self, config, vocab: Vocab, chars: list[str], tags: list[str], params, meta=None):
        self.config, self.vocab, self.chars, self.tags, self.params = config, vocab, chars, tags, params
        self.meta = meta or {}
        self._char_index = {c: i for i, c in enumerate(chars) if i}

    @property
    def conllu_column(self) -> str:
        """The CoNLL-U column the model was trained on (1-based), upos for a model trained on CoNLL files."""
        return self.meta.get("column", "4") if self.meta.get("input_format") == "conllu" else "upos"

    @property
    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    @classmethod
    def load(cls, path) -> "Tagger":
        m = load_model(path, task="tag")
        vocab = Vocab(m.vocab, "word", m.config.lowercase, m.config.unk_id, m.config.eos_id)
        chars, tags = read_tables(path, m.meta, m.config)
        return cls(m.config, vocab, chars, tags, m.params, m.meta)

    def probabilities(self, sentences, batch_size: int = 128, threads: int | None = None) -> list[np.ndarray]:
        """p(tag | token): one (S_b, C) float64 array per sentence (a list of words), columns in the order
        of `tags`. An empty sentence gives a (0, C) array."""
        keep = [i for i, s in enumerate(sentences) if len(s)]
        out = [np.zeros((0, len(self.tags)))] * len(sentences)
        if not keep:
            return out
        enc = encode([sentences[i] for i in keep], self.vocab, self._char_index)
        with compute_threads(threads):
            prob = tag.probabilities(self.config, self.params, enc.words, enc.types, enc.type_chars, batch_size)
        for i, p in zip(keep, prob):
            out[i] = p
        return out

    def tag(self, sentences, batch_size: int = 128, threads: int | None = None) -> list[list[str]]:
        """The most probable tag of every token: one list of tag strings per sentence."""
        return [[self.tags[j] for j in p.argmax(axis=1)] for p in self.probabilities(sentences, batch_size, threads)]

    def evaluate(self, path, format: str = "auto", column="auto", span_mode: str = "auto",
                 encoding_errors: str = "strict", threads: int | None = None, confusions: int = 10) -> dict:
        """Token accuracy overall and for words seen / unseen in training (seen: in the word vocabulary),
        per-tag precision/recall/F1, the most frequent confusions, and with BIO tags the span figures of
        conlleval. Gold tags the model does not know are counted as errors and reported (`unknown_tags`)."""
        text = conllu.read_text(path, encoding_errors)
        if format == "auto":
            format = conllu.detect_format(conllu.split_lines(text.removeprefix(conllu.BOM)))
        if column == "auto" and format == "conllu":
            column = self.conllu_column
        doc = conllu.read(path, format, column, encoding_errors, text=text)
        sents = [s.words for s in doc.sentences]
        gold = [s.tags for s in doc.sentences]
        pred = self.tag(sents, threads=threads)
        g = [t for s in gold for t in s]
        p = [t for s in pred for t in s]
        seen = np.concatenate([np.array([self.vocab.index.get(w.lower() if self.vocab.lowercase else w,
                                                               self.vocab.unk_id) != self.vocab.unk_id for w in s])
                               for s in sents])
        right = np.array([a == b for a, b in zip(g, p)])
        known = set(self.tags)
        unknown = Counter(t for t in g if t not in known)
        report = {"accuracy": float(right.mean()), "tokens": len(g), "sentences": len(sents),
                  "seen": _part(right[seen]), "unseen": _part(right[~seen]),
                  "per_tag": _per_tag(g, p), "confusions": _confusions(g, p, confusions),
                  "unknown_tags": {"tokens": sum(unknown.values()), "tags": dict(sorted(unknown.items()))},
                  "format": doc.format, "column": doc.column + 1}
        if span_mode == "yes" or (span_mode == "auto" and spans.is_bio(g)):
            report["spans"] = spans.span_report(gold, pred)
        else:
            report["spans"] = None
        return report


def _part(right) -> dict:
    return {"accuracy": float(right.mean()) if right.size else None, "tokens": int(right.size)}


def _per_tag(gold, pred) -> dict:
    tp, support, predicted = Counter(), Counter(gold), Counter(pred)
    for a, b in zip(gold, pred):
        if a == b:
            tp[a] += 1
    out = {}
    for t in sorted(set(support) | set(predicted)):
        prec = tp[t] / predicted[t] if predicted[t] else 0.0
        rec = tp[t] / support[t] if support[t] else 0.0
        out[t] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                  "support": support[t], "predicted": predicted[t]}
    return out


def _confusions(gold, pred, k) -> list[dict]:
    c = Counter((a, b) for a, b in zip(gold, pred) if a != b)
    return [{"gold": a, "predicted": b, "count": n} for (a, b), n in
            sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
