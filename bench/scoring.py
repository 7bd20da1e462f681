"""Batched scoring against scoring one sentence at a time, through the API, in one run.

Scores the first N lines of a text file with one `LanguageModel.score` call (charlm batches them: streams
sorted by length, 256 side by side for vocabularies up to 1,024 tokens, else 64; identical lines once),
then the first M of them one call per line, checks both give the same log-probabilities, and prints
sentences/s for each and their ratio. Optionally also times the CLI, `charlm score --file` on the N
lines, start-up included.
Usage: python bench/scoring.py MODEL TEXT [--lines 10000] [--single 1000] [--cli]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time

import charlm


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("text")
    p.add_argument("--lines", type=int, default=10000)
    p.add_argument("--single", type=int, default=1000)
    p.add_argument("--cli", action="store_true", help="also time `charlm score --file` on the lines")
    a = p.parse_args()
    with open(a.text, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for _, line in zip(range(a.lines), f)]
    lm = charlm.load(a.model)
    lm.score(lines[:64])                                     # compile and warm up both paths
    lm.score(lines[:1])
    t = time.perf_counter()
    batched = lm.score(lines)
    batched_s = time.perf_counter() - t
    single = lines[: a.single]
    t = time.perf_counter()
    one_by_one = [lm.score([line])[0] for line in single]
    single_s = time.perf_counter() - t
    worst = max(abs(x.logprob - y.logprob) / max(1.0, abs(y.logprob)) for x, y in zip(one_by_one, batched))
    out = {"model": a.model, "lines": len(lines), "tokens": sum(s.tokens for s in batched),
           "batched_sent_s": round(len(lines) / batched_s, 1), "single_lines": len(single),
           "single_sent_s": round(len(single) / single_s, 1), "max_rel_diff": worst}
    out["ratio"] = round(out["batched_sent_s"] / out["single_sent_s"], 2)
    if a.cli:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "charlm", "score", "-m", a.model, "--file", f.name],
                           check=True, stdout=subprocess.DEVNULL)
            out["cli_wall_s"] = round(time.perf_counter() - t, 2)
            out["cli_sent_s"] = round(len(lines) / out["cli_wall_s"], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
