"""The Python API of a trained classifier: predict labels of texts, evaluate on a labeled file.

Two kinds, one interface: a discriminative classifier (`charlm classify train`), and a language model
conditioned on labels (`charlm train --labeled`) classifying by Bayes' rule (GenerativeClassifier);
`load_classifier` picks by what the file holds.

    import charlm
    clf = charlm.load("names.safetensors")            # a classifier file gives a Classifier
    print(clf.predict(["Nahmanovich", "Tadhgan"])[0].label)
    print(clf.evaluate("valid.tsv")["macro_f1"])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm import classify, labeled
from charlm.checkpoint import load_model
from charlm.metrics import classification_report
from charlm.tasks.classify import encode, read_labels
from charlm.threads import compute_threads
from charlm.vocab import Vocab


@dataclass
class Prediction:
    text: str
    label: str
    probability: float
    top: list                     # [(label, probability)], best first

    def as_dict(self) -> dict:
        return {"text": self.text, "label": self.label, "probability": self.probability,
                "top": [[label, p] for label, p in self.top]}


class Classifier:
    def __init__(self, config, vocab: Vocab, labels: list[str], params, meta=None):
        self.config, self.vocab, self.labels, self.params = config, vocab, labels, params
        self.meta = meta or {}

    @property
    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    @classmethod
    def load(cls, path) -> "Classifier":
        m = load_model(path, task="classify")
        vocab = Vocab(m.vocab, m.config.level, m.config.lowercase, m.config.unk_id, m.config.eos_id)
        return cls(m.config, vocab, read_labels(path, m.meta, m.config), m.params, m.meta)

    def probabilities(self, texts, threads: int | None = None) -> np.ndarray:
        """p(label | text), (len(texts), C) float64, columns in the order of `labels`."""
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        with compute_threads(threads):
            return classify.probabilities(self.config, self.params, [encode(self.vocab, t) for t in texts],
                                          self.config.eos_id)

    def predict(self, texts, top_k: int = 1, threads: int | None = None) -> list[Prediction]:
        prob = self.probabilities(texts, threads)
        k = max(1, min(top_k, len(self.labels)))
        best = np.argsort(-prob, axis=1, kind="stable")[:, :k]
        return [Prediction(t, self.labels[b[0]], float(p[b[0]]), [(self.labels[j], float(p[j])) for j in b])
                for t, p, b in zip(texts, prob, best)]

    def evaluate(self, path, format: str = "auto", encoding_errors: str = "strict",
                 threads: int | None = None) -> dict:
        """Accuracy, macro-F1, per-label figures and the confusion matrix on a labeled file. Lines whose
        label the model does not know are counted (`unknown_labels`), not scored."""
        ex = labeled.read(path, format, encoding_errors)
        index = {label: i for i, label in enumerate(self.labels)}
        keep = [i for i, label in enumerate(ex.labels) if label in index]
        unknown = sorted({label for label in ex.labels if label not in index})
        prob = self.probabilities([ex.texts[i] for i in keep], threads)
        gold = np.array([index[ex.labels[i]] for i in keep], np.int64)
        report = classification_report(gold, prob.argmax(axis=1), len(self.labels))
        report["labels"] = list(self.labels)
        report["unknown_labels"] = {"lines": len(ex.labels) - len(keep), "labels": unknown}
        report["loss"] = float(-np.log(np.maximum(prob[np.arange(len(gold)), gold], 1e-300)).mean()) \
            if len(gold) else None
        return report


class GenerativeClassifier(Classifier):
    """A conditional language model as a classifier, by Bayes' rule:
        label(s) = argmax_l log p(s | l) + log p(l),   p(l) = the label's share of the training lines,
    every label of every text scored in one batched pass (charlm.conditional.posteriors)."""

    @classmethod
    def load(cls, path) -> "GenerativeClassifier":
        from charlm.tasks.conditional import read_labels
        m = load_model(path)
        vocab = Vocab(m.vocab, m.config.level, m.config.lowercase, m.config.unk_id, m.config.eos_id)
        labels, counts = read_labels(path, m.meta, m.config)
        clf = cls(m.config, vocab, labels, m.params, m.meta)
        clf.log_prior = np.log(np.asarray(counts, np.float64) / sum(counts))
        return clf

    def probabilities(self, texts, threads: int | None = None) -> np.ndarray:
        from charlm import conditional
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        with compute_threads(threads):
            return conditional.posteriors(self.config, self.params, [encode(self.vocab, t) for t in texts],
                                          self.log_prior, self.config.eos_id)


def load_classifier(path) -> Classifier:
    """The classifier at `path`: discriminative, or generative when the file is a conditional LM."""
    from charlm.checkpoint import file_task, read_metadata
    meta = read_metadata(path)
    if file_task(meta) == "lm" and "conditional" in meta:
        return GenerativeClassifier.load(path)
    return Classifier.load(path)

