"""Padding waste of padded (T_max, B) batches: random batches against bucketed ones (charlm.buckets).

Lengths: the surnames of the names corpus in characters, and the EWT training sentences in words.
Prints JSON lines: corpus, sequences, batch size, the waste of random and of bucketed batches (mean
over --epochs epochs of seed 0).
Usage: python bench/padding_waste.py [--corpora ../shared/corpora] [--epochs 5]
"""
import argparse
import json
from pathlib import Path

import numpy as np

from charlm import buckets


def names_lengths(path) -> np.ndarray:
    """Characters of the surname of each `LANGUAGE<TAB>NAME` line."""
    with open(path, encoding="utf-8") as f:
        return np.array([len(line.rstrip("\n").split("\t", 1)[1]) for line in f if line.strip()])


def conllu_lengths(path) -> np.ndarray:
    """Words of each CoNLL-U sentence: token lines with an integer ID (no `1-2` ranges, no `8.1`
    empty nodes, no comments)."""
    out, n = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                if n:
                    out.append(n)
                n = 0
            elif not line.startswith("#") and line.split("\t", 1)[0].isdigit():
                n += 1
    if n:
        out.append(n)
    return np.array(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpora", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpora"))
    p.add_argument("--epochs", type=int, default=5)
    a = p.parse_args()
    root = Path(a.corpora)
    data = {"names (chars)": names_lengths(root / "names" / "train.tsv"),
            "ud-ewt (words)": conllu_lengths(root / "ud-ewt" / "en_ewt-ud-train.conllu")}
    for name, L in data.items():
        for bs in (32, 64):
            row = {"corpus": name, "sequences": int(L.size), "tokens": int(L.sum()), "batch": bs}
            for mode in ("random", "bucketed"):
                w = [buckets.padding_waste(L, buckets.batches(L, bs, 0, e, bucketed=mode == "bucketed"))
                     for e in range(a.epochs)]
                row[f"{mode}_waste"] = round(float(np.mean(w)), 4)
            print(json.dumps(row))


if __name__ == "__main__":
    main()
