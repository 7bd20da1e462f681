"""charlm beside PyTorch on the same machine, in the same run: medians of alternating rounds.

Runs `charlm bench --json` and ../shared/bench/torch_baseline.py (PyTorch's own CPU kernels) one after
the other, several rounds, for the shapes of the speed issue, and prints a table of median tokens/s and
the ratios charlm / PyTorch. This machine is shared and noisy: only ratios measured together count.
Usage: python bench/compare_torch.py [--rounds 3] [--torch-baseline PATH] [--shapes char128,char512,word200]
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SHAPES = {   # name: (vocab, hidden, layers, batch, seq)
    "char128": (65, 128, 2, 32, 64),
    "char512": (65, 512, 2, 32, 64),
    "word200": (10000, 200, 2, 20, 35),
}
METRICS = ("train_tok_s", "eval_tok_s", "sample_tok_s")


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def run_charlm(v, h, layers, b, t, steps, sample):
    cmd = [sys.executable, "-m", "charlm", "bench", "--vocab", str(v), "--hidden", str(h), "--layers", str(layers),
           "--batch-size", str(b), "--seq-len", str(t), "--steps", str(steps), "--sample-tokens", str(sample), "--json"]
    return last_json(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def run_torch(script, v, h, layers, b, t, steps, sample):
    cmd = [sys.executable, script, "--cell", "lstm", "--vocab", str(v), "--hidden", str(h), "--layers", str(layers),
           "--batch", str(b), "--seq", str(t), "--steps", str(steps), "--sample", str(sample)]
    return last_json(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sample", type=int, default=500)
    p.add_argument("--torch-baseline", default=str(here.parent.parent / "shared" / "bench" / "torch_baseline.py"))
    p.add_argument("--shapes", default=",".join(SHAPES))
    a = p.parse_args()
    rows = []
    for name in a.shapes.split(","):
        shape = SHAPES[name]
        got = {"charlm": [], "torch": []}
        for _ in range(a.rounds):
            got["charlm"].append(run_charlm(*shape, a.steps, a.sample))
            got["torch"].append(run_torch(a.torch_baseline, *shape, a.steps, a.sample))
        med = {k: {m: statistics.median(r[m] for r in got[k]) for m in METRICS} for k in got}
        rows.append((name, shape, med))
        setup = {k: got["charlm"][0].get(k) for k in ("threads", "threading_layer")}
        print(json.dumps({"shape": name, "charlm": med["charlm"], "torch": med["torch"]}), file=sys.stderr)
    print("| shape (vocab, hidden, layers, batch, seq) | metric | charlm tok/s | PyTorch tok/s | ratio |")
    print("|---|---|---|---|---|")
    for name, shape, med in rows:
        for m in METRICS:
            c, t = med["charlm"][m], med["torch"][m]
            print(f"| {name} {shape} | {m} | {c:,.0f} | {t:,.0f} | {c / t:.2f} |")
    print(f"\ncharlm ran {setup['threads']} threads on Numba's {setup['threading_layer']} threading layer.")


if __name__ == "__main__":
    main()
