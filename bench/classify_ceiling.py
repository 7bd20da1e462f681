"""How far a decision rule can take a classifier's macro-F1 on a validation file.

    python bench/classify_ceiling.py MODEL [MODEL ...] --valid valid.tsv [--folds 5] [--threads 1]

Prints, on the validation file:
- the labels' own arithmetic: an oracle that predicts, for every distinct text, the rarest (or the
  commonest) of the labels the file itself gives it. A text with k labels has k lines and one
  prediction, so no classifier gets more than one of them right;
- the models' macro-F1 as they predict (the mean of their probabilities when there are several);
- per-label biases b added to the log-probabilities, y = argmax_c log p(c | x) + b_c, fitted to maximise
  macro-F1 by coordinate ascent on a grid: once on the whole file (in-sample: an upper bound for any
  per-label threshold or prior correction of these probabilities, since it sees the answers) and by
  k-fold cross-validation over the file (each fold predicted with biases fitted on the others: what such
  a rule would honestly gain on unseen names).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict

import numpy as np

from charlm import labeled
from charlm.classifier import load_classifier
from charlm.metrics import classification_report

GRID = np.linspace(-3.0, 3.0, 25)


def macro_f1(gold, pred, n_labels: int) -> float:
    return classification_report(gold, pred, n_labels)["macro_f1"]


def oracle(texts, labels, pick) -> tuple[float, float]:
    """(accuracy, macro-F1) of predicting pick(labels of the text) for every line of a text."""
    names = sorted(set(labels))
    index = {label: i for i, label in enumerate(names)}
    count = Counter(labels)
    given = defaultdict(set)
    for text, label in zip(texts, labels):
        given[text].add(label)
    gold = np.array([index[label] for label in labels])
    pred = np.array([index[pick(given[text], count)] for text in texts])
    r = classification_report(gold, pred, len(names))
    return r["accuracy"], r["macro_f1"]


def fit_biases(logp, gold, rounds: int = 3) -> np.ndarray:
    """(C,) biases maximising the macro-F1 of argmax(logp + b), one label at a time over GRID."""
    n_labels = logp.shape[1]
    b = np.zeros(n_labels)
    for _ in range(rounds):
        for c in range(n_labels):
            scores = []
            for g in GRID:
                b[c] = g
                scores.append(macro_f1(gold, (logp + b).argmax(1), n_labels))
            b[c] = GRID[int(np.argmax(scores))]
    return b


def cross_validated(logp, gold, folds: int, seed: int = 0) -> np.ndarray:
    """Predictions of every line with biases fitted on the other folds."""
    fold = np.random.default_rng(seed).integers(0, folds, len(gold))
    pred = np.empty_like(gold)
    for k in range(folds):
        held = fold == k
        b = fit_biases(logp[~held], gold[~held])
        pred[held] = (logp[held] + b).argmax(1)
    return pred


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--valid", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    ex = labeled.read(args.valid)
    rows = {}
    rows["oracle_rarest"] = oracle(ex.texts, ex.labels, lambda ls, n: min(ls, key=lambda label: (n[label], label)))
    rows["oracle_commonest"] = oracle(ex.texts, ex.labels, lambda ls, n: max(ls, key=lambda label: (n[label], label)))

    clf = load_classifier(args.models if len(args.models) > 1 else args.models[0])
    index = {label: i for i, label in enumerate(clf.labels)}
    keep = [i for i, label in enumerate(ex.labels) if label in index]
    texts = [ex.texts[i] for i in keep]
    gold = np.array([index[ex.labels[i]] for i in keep])
    logp = np.log(np.maximum(clf.probabilities(texts, args.threads), 1e-30))
    C = len(clf.labels)

    def figures(pred):
        r = classification_report(gold, pred, C)
        return r["accuracy"], r["macro_f1"]

    rows["model"] = figures(logp.argmax(1))
    b = fit_biases(logp, gold)
    rows["biases_in_sample"] = figures((logp + b).argmax(1))
    rows[f"biases_{args.folds}_fold"] = figures(cross_validated(logp, gold, args.folds))
    for name, (acc, f1) in rows.items():
        print(f"{name:20s} accuracy {acc:.4f}  macro-F1 {f1:.4f}")
    print(json.dumps({"models": args.models, "valid": args.valid,
                      **{name: {"accuracy": acc, "macro_f1": f1} for name, (acc, f1) in rows.items()},
                      "in_sample_biases": dict(zip(clf.labels, b.round(2).tolist()))}))


if __name__ == "__main__":
    main()
