"""Every cell side by side: `charlm bench` speed and Tiny Shakespeare validation after the same budget.

For each cell variant, at hidden 256 and 2 layers: train tokens/s from `charlm bench` (random data,
batch 32, seq 64) and its tokens/s per parameter relative to the LSTM, then `charlm train` on the first
90 % of Tiny Shakespeare for --budget seconds and the exact validation loss (nats/char) on the last 10 %.
Usage: python bench/cells.py [--budget 120] [--data ../shared/corpora/tinyshakespeare/input.txt]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CELLS = {
    "lstm": ["--cell", "lstm"],
    "lstm-peephole": ["--cell", "lstm", "--peephole"],
    "gru-full": ["--cell", "gru", "--gru-variant", "full"],
    "gru-minimal": ["--cell", "gru", "--gru-variant", "minimal"],
    "rnn-tanh": ["--cell", "rnn", "--activation", "tanh"],
    "rnn-relu": ["--cell", "rnn", "--activation", "relu"],
}
GATES = {"lstm": 4, "lstm-peephole": 4, "gru-full": 3, "gru-minimal": 2, "rnn-tanh": 1, "rnn-relu": 1}


def charlm(*args):
    out = subprocess.run([sys.executable, "-m", "charlm", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=120)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--data", default=str(here.parent.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"))
    p.add_argument("--no-train", action="store_true", help="only the speed columns")
    a = p.parse_args()
    H, V = a.hidden, 65
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in CELLS.items():
            b = charlm("bench", *opts, "--hidden", str(H), "--layers", "2", "--vocab", str(V), "--json")
            G = GATES[name]
            params = V * H + 2 * (G * H * (2 * H) + 2 * G * H) + (3 * H * 2 if "peephole" in name else 0) + V * H + V
            row = {"cell": name, "params": params, "train_tok_s": b["train_tok_s"], "eval_tok_s": b["eval_tok_s"],
                   "sample_tok_s": b["sample_tok_s"]}
            if not a.no_train:
                t = charlm("train", a.data, *opts, "--hidden", str(H), "--layers", "2", "--valid-fraction", "0.1",
                           "--time-budget", str(a.budget), "-o", f"{tmp}/{name}.safetensors", "-q", "--json")
                row.update(valid_loss=t["valid_loss"], steps=t["steps"], seconds=t["seconds"])
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    lstm = rows[0]
    print("| cell | parameters | train tok/s | tok/s x params vs LSTM | eval tok/s | sample tok/s |"
          + ("" if a.no_train else f" valid nats/char after {a.budget:.0f} s | steps |"))
    print("|---|---|---|---|---|---|" + ("" if a.no_train else "---|---|"))
    for r in rows:
        rel = r["train_tok_s"] * r["params"] / (lstm["train_tok_s"] * lstm["params"])
        line = (f"| {r['cell']} | {r['params']:,} | {r['train_tok_s']:,} | {rel:.2f} | {r['eval_tok_s']:,} | "
                f"{r['sample_tok_s']:,} |")
        if not a.no_train:
            line += f" {r['valid_loss']:.4f} | {r['steps']:,} |"
        print(line)


if __name__ == "__main__":
    main()
