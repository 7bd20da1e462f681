"""A non-recurrent baseline for `charlm classify`: linear models on character n-grams (scikit-learn).

    pip install -e '.[baselines]'
    python bench/classify_ngram.py --train train.tsv --valid valid.tsv [--ngrams 1-5] [--json]

TF-IDF of character 1- to 5-grams within word boundaries (lower-cased, sublinear term frequency), then
a logistic regression and a linear SVM, each without and with class weights inversely proportional to the
label counts, over a range of regularisation strengths C. Accuracy and macro-F1 on the validation file
come from charlm.metrics, the figures `charlm classify evaluate` prints. This is the standard strong
baseline for short-text classification, the yardstick for what the names themselves give away.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from charlm import labeled
from charlm.metrics import classification_report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--ngrams", default="1-5", help="the smallest and largest n, as LO-HI")
    ap.add_argument("--cs", default="0.3,1,3,10,30,100")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC
    except ImportError:
        raise SystemExit("classify_ngram: needs scikit-learn: pip install -e '.[baselines]'")
    lo, hi = map(int, args.ngrams.split("-"))
    train, valid = labeled.read(args.train), labeled.read(args.valid)
    labels = sorted(set(train.labels))
    index = {label: i for i, label in enumerate(labels)}
    keep = [i for i, label in enumerate(valid.labels) if label in index]
    gold = np.array([index[valid.labels[i]] for i in keep])
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(lo, hi), lowercase=True, sublinear_tf=True)
    x_train = vec.fit_transform(train.texts)
    x_valid = vec.transform([valid.texts[i] for i in keep])
    y_train = np.array([index[label] for label in train.labels])
    rows = []
    for weights in (None, "balanced"):
        for c in map(float, args.cs.split(",")):
            for name, model in (("logistic", LogisticRegression(C=c, class_weight=weights, max_iter=3000)),
                                ("linear-svm", LinearSVC(C=c, class_weight=weights, max_iter=20000))):
                start = time.perf_counter()
                model.fit(x_train, y_train)
                seconds = time.perf_counter() - start
                r = classification_report(gold, model.predict(x_valid), len(labels))
                rows.append({"model": name, "class_weight": weights or "none", "C": c, "seconds": round(seconds, 1),
                             "accuracy": r["accuracy"], "macro_f1": r["macro_f1"]})
                if not args.json:
                    print(f"{name:10s} class weights {weights or 'none':8s} C {c:5g}  accuracy {r['accuracy']:.4f}"
                          f"  macro-F1 {r['macro_f1']:.4f}  ({seconds:.1f} s)")
    best = max(rows, key=lambda row: row["macro_f1"])
    if args.json:
        print(json.dumps({"features": x_train.shape[1], "runs": rows, "best_by_macro_f1": best}))
    else:
        print(f"{x_train.shape[1]:,} n-gram features; best by macro-F1: {json.dumps(best)}")


if __name__ == "__main__":
    main()
