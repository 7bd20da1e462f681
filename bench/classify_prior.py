"""Tune the prior correction of `charlm classify` on a validation file: accuracy and macro-F1 for each tau.

    python bench/classify_prior.py MODEL [MODEL ...] --valid valid.tsv [--taus 0,0.25,0.5,...] [--threads 1]

With several models, their probabilities are averaged first (an ensemble; their label lists must agree).
p_tau(y | x) ∝ p(y | x) / p(y)^tau (charlm.classify.correct_prior). The best tau by macro-F1 is the
one to pass as --prior-correction; choose it on validation data only, never on the test split.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from charlm import classify, labeled
from charlm.classifier import load_classifier
from charlm.metrics import classification_report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--valid", required=True)
    ap.add_argument("--taus", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    ex = labeled.read(args.valid)
    clfs = [load_classifier(m) for m in args.models]
    labels = clfs[0].labels
    if any(c.labels != labels for c in clfs):
        raise SystemExit("the models have different label lists")
    if any(c.log_prior is None for c in clfs):
        raise SystemExit("a model file has no label counts")
    index = {label: i for i, label in enumerate(labels)}
    keep = [i for i, label in enumerate(ex.labels) if label in index]
    texts, gold = [ex.texts[i] for i in keep], np.array([index[ex.labels[i]] for i in keep])
    prob = np.mean([c.probabilities(texts, args.threads) for c in clfs], axis=0)
    rows = []
    for tau in map(float, args.taus.split(",")):
        r = classification_report(gold, classify.correct_prior(prob, clfs[0].log_prior, tau).argmax(1), len(labels))
        rows.append({"tau": tau, "accuracy": r["accuracy"], "macro_f1": r["macro_f1"]})
        print(f"tau {tau:5.2f}  accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}")
    best = max(rows, key=lambda r: r["macro_f1"])
    print(json.dumps({"models": args.models, "best_by_macro_f1": best}))


if __name__ == "__main__":
    main()
