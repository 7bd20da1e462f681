"""Rescoring n-best lists: scoring through shared prefixes against scoring through windows, in one run.

Builds K hypotheses for each of the first N lines of a text file that have more than 4 words (the
line with its last two words replaced by words drawn from the text, seeded), then scores them all
with `LanguageModel.score` twice in alternation: as charlm chooses (the trie of `charlm.prefixes`,
since the hypotheses share most of their prefixes) and with the trie switched off (windows of
streams side by side); then the first M hypotheses one call each. Prints hypotheses/s for each, and
the largest difference of a total.
Usage: python bench/nbest.py MODEL TEXT [--lines 1000] [--k 10] [--rounds 2] [--single 500]
"""
import argparse
import json
import random
import time

import charlm
from charlm import prefixes


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("text")
    p.add_argument("--lines", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--single", type=int, default=500)
    a = p.parse_args()
    with open(a.text, encoding="utf-8") as f:
        base = [line.split() for _, line in zip(range(a.lines), f)]
    base = [b for b in base if len(b) > 4]
    words = [w for b in base for w in b]
    rng = random.Random(0)
    hyps = [" ".join(b[:-2] + rng.sample(words, 2)) for b in base for _ in range(a.k)]
    lm = charlm.load(a.model)
    lm.score(hyps[:64])                                       # compile and warm up
    share = prefixes.SHARE
    got = {"trie": [], "windows": []}
    totals = {}
    for _ in range(a.rounds):
        for mode in got:
            prefixes.SHARE = share if mode == "trie" else -1.0
            t = time.perf_counter()
            scores = lm.score(hyps)
            got[mode].append(round(len(hyps) / (time.perf_counter() - t), 1))
            totals[mode] = [s.logprob for s in scores]
    prefixes.SHARE = share
    lm.score(hyps[:1])
    t = time.perf_counter()
    for h in hyps[: a.single]:
        lm.score([h])
    single = round(min(a.single, len(hyps)) / (time.perf_counter() - t), 1)
    worst = max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(totals["trie"], totals["windows"]))
    print(json.dumps({"model": a.model, "hypotheses": len(hyps), "trie_hyp_s": got["trie"],
                      "windows_hyp_s": got["windows"], "single_hyp_s": single, "max_rel_diff": worst}))


if __name__ == "__main__":
    main()
