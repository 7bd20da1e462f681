"""The Python API of a trained classifier: predict labels of texts, evaluate on a labeled file.

Two kinds, one interface: a discriminative classifier (`charlm classify train`), and a language model
conditioned on labels (`charlm train --labeled`) classifying by Bayes' rule (GenerativeClassifier);
`load_classifier` picks by what the file holds, and given several files makes an Ensemble of them.

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
    """prior_correction tau: every probability becomes p(y | x) / p(y)^tau, renormalised, with p(y) the
    training labels' shares (charlm.classify.correct_prior); 0 leaves the model's own."""

    def __init__(self, config, vocab: Vocab, labels: list[str], params, meta=None, log_prior=None):
        self.config, self.vocab, self.labels, self.params = config, vocab, labels, params
        self.meta = meta or {}
        self.log_prior = log_prior           # (C,) log of the training shares, None when the file lacks them
        self.prior_correction = 0.0

    def check_prior_correction(self, tau: float) -> None:
        """Refuse a correction tau != 0 when the file has no training label counts to correct by."""
        from charlm.errors import CharlmError
        if tau and self.log_prior is None:
            raise CharlmError("this classifier file has no training label counts (made before they were "
                              "saved): --prior-correction needs them; retrain it")

    def set_prior_correction(self, tau: float) -> "Classifier":
        self.check_prior_correction(tau)
        self.prior_correction = float(tau)
        return self

    @property
    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    @classmethod
    def load(cls, path) -> "Classifier":
        m = load_model(path, task="classify")
        vocab = Vocab(m.vocab, m.config.level, m.config.lowercase, m.config.unk_id, m.config.eos_id)
        labels = read_labels(path, m.meta, m.config)
        return cls(m.config, vocab, labels, m.params, m.meta, read_log_prior(path, m.meta, len(labels)))

    def probabilities(self, texts, threads: int | None = None) -> np.ndarray:
        """p(label | text), (len(texts), C) float64, columns in the order of `labels` (after the prior
        correction, when one is set)."""
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        with compute_threads(threads):
            prob = classify.probabilities(self.config, self.params, [encode(self.vocab, t) for t in texts],
                                          self.config.eos_id)
        return classify.correct_prior(prob, self.log_prior, self.prior_correction)

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
        return cls(m.config, vocab, labels, m.params, m.meta, np.log(np.asarray(counts, np.float64) / sum(counts)))

    def probabilities(self, texts, threads: int | None = None) -> np.ndarray:
        """Bayes' posteriors; with a prior correction tau, ∝ p(s | l) p(l)^(1 - tau)."""
        from charlm import conditional
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        with compute_threads(threads):
            prob = conditional.posteriors(self.config, self.params, [encode(self.vocab, t) for t in texts],
                                          self.log_prior, self.config.eos_id)
        return classify.correct_prior(prob, self.log_prior, self.prior_correction)


class Ensemble(Classifier):
    """Classifiers of the same labels as one, by the mean of their probabilities:
        p(y | x) = (1/M) Σ_m p_m(y | x)
    Members may differ in kind, architecture and tokenizer (each reads the texts its own way). The
    ensemble's prior is the mean of the members' log priors (the same when they were trained on the
    same file); a prior correction applies to the mean, not to each member."""

    def __init__(self, members: list[Classifier], paths=None):
        from charlm.errors import CharlmError
        paths = [str(p) for p in (paths or range(len(members)))]
        for m, path in zip(members[1:], paths[1:]):
            if m.labels != members[0].labels:
                raise CharlmError(f"{path}: its labels ({', '.join(m.labels[:4])}, ...) are not those of "
                                  f"{paths[0]} ({', '.join(members[0].labels[:4])}, ...): an ensemble needs "
                                  f"models of the same labels")
        priors = [m.log_prior for m in members]
        log_prior = None if any(p is None for p in priors) else np.mean(priors, axis=0)
        super().__init__(None, None, members[0].labels, {}, {}, log_prior)
        self.members = members

    @property
    def num_params(self) -> int:
        return sum(m.num_params for m in self.members)

    def probabilities(self, texts, threads: int | None = None) -> np.ndarray:
        """The members' mean p(label | text), (len(texts), C), after the ensemble's prior correction."""
        prob = np.mean([m.probabilities(texts, threads) for m in self.members], axis=0)
        return classify.correct_prior(prob, self.log_prior, self.prior_correction)


def read_log_prior(path, meta, C: int):
    """log of the training label shares from a classifier file's `label_counts`; None when absent."""
    import json
    from charlm.errors import ModelFileError
    if "label_counts" not in meta:
        return None
    try:
        counts = json.loads(meta["label_counts"])
    except (ValueError, RecursionError):
        counts = None
    if not (isinstance(counts, list) and len(counts) == C
            and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in counts)):
        raise ModelFileError(path, "label_counts metadata must be one positive count per label")
    return np.log(np.asarray(counts, np.float64) / sum(counts))


def load_classifier(path, prior_correction: float = 0.0) -> Classifier:
    """The classifier at `path`: discriminative, or generative when the file is a conditional LM; with
    its prior corrected by `prior_correction` (Classifier). A list of several paths gives their Ensemble."""
    from charlm.checkpoint import file_task, read_metadata
    if isinstance(path, (list, tuple)):
        if len(path) > 1:
            return Ensemble([load_classifier(p) for p in path], path).set_prior_correction(prior_correction)
        if not path:
            from charlm.errors import CharlmError
            raise CharlmError("no classifier file given")
        path = path[0]
    meta = read_metadata(path)
    if file_task(meta) == "lm" and "conditional" in meta:
        clf = GenerativeClassifier.load(path)
    else:
        clf = Classifier.load(path)
    return clf.set_prior_correction(prior_correction)
