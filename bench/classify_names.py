"""charlm classify beside PyTorch on the names data: the same architecture, data, batches and time budget.

Both sides train a bidirectional LSTM classifier (embedding, L layers, each direction's final state into
a linear head, cross-entropy) with Adam, gradient clipping at 5, dropout between layers and before the
head, a cosine learning-rate schedule over the time budget, on the same bucketed batches
(charlm.buckets, from (seed, epoch)); each keeps the model with the best validation accuracy, checked
every --valid-every steps. PyTorch runs on its CPU kernels with pack_padded_sequence. One process at
a time, charlm first, then PyTorch, with the same thread count. Prints one JSON line per side and a
summary. Usage:
    python bench/classify_names.py --data ../shared/corpora/names --time-budget 300 --threads 2
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_charlm(a, out):
    cmd = [sys.executable, "-m", "charlm", "classify", "train", f"{a.data}/train.tsv", "--valid",
           f"{a.data}/valid.tsv", "-o", str(out), "--bidirectional", "--layers", str(a.layers), "--hidden",
           str(a.hidden), "--embed", str(a.embed), "--dropout", str(a.dropout), "--lr", str(a.lr),
           "--lr-schedule", "cosine", "--batch-size", str(a.batch_size), "--time-budget", str(a.time_budget),
           "--valid-every", str(a.valid_every), "--threads", str(a.threads), "--seed", str(a.seed), "-q", "--json"]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    return {"side": "charlm", "steps": res["steps"], "epochs": round(res["epochs"], 2), "seconds": round(res["seconds"], 1),
            "s_per_epoch": round(res["seconds"] / res["epochs"], 2),
            "valid_accuracy": res["valid"]["valid_accuracy"], "valid_macro_f1": res["valid"]["valid_macro_f1"]}


def run_torch(a):
    import numpy as np
    import torch
    import torch.nn as nn
    from charlm import buckets
    from charlm.metrics import classification_report
    from charlm.tasks.classify import load_data

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    d = load_data(f"{a.data}/train.tsv", f"{a.data}/valid.tsv")
    V, C = len(d.vocab), len(d.labels)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, a.embed)
            self.rnn = nn.LSTM(a.embed, a.hidden, num_layers=a.layers, bidirectional=True,
                               dropout=a.dropout if a.layers > 1 else 0.0)
            self.drop = nn.Dropout(a.dropout)
            self.head = nn.Linear(2 * a.hidden, C)

        def forward(self, seqs):
            ids = [torch.from_numpy(np.concatenate(([d.vocab.eos_id], s)).astype(np.int64)) for s in seqs]
            lengths = torch.tensor([len(i) for i in ids])
            x = self.emb(nn.utils.rnn.pad_sequence(ids))
            _, (h, _) = self.rnn(nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False))
            return self.head(self.drop(torch.cat([h[-2], h[-1]], dim=1)))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    lengths = [len(s) + 1 for s in d.train]
    y = torch.from_numpy(d.train_y)

    def evaluate():
        net.eval()
        with torch.no_grad():
            order = np.argsort([len(s) for s in d.valid], kind="stable")
            pred = np.empty(len(d.valid), np.int64)
            for i in range(0, len(order), 256):
                idx = order[i:i + 256]
                pred[idx] = net([d.valid[j] for j in idx]).argmax(dim=1).numpy()
        net.train()
        return classification_report(d.valid_y, pred, C)

    t0, step, epoch, best = time.perf_counter(), 0, 0, None
    while True:
        for idx in buckets.batches(lengths, a.batch_size, a.seed, epoch):
            elapsed = time.perf_counter() - t0
            if elapsed >= a.time_budget:
                break
            for g in opt.param_groups:
                g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * elapsed / a.time_budget))
            loss = nn.functional.cross_entropy(net([d.train[i] for i in idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            step += 1
            if step % a.valid_every == 0:
                r = evaluate()
                if best is None or r["accuracy"] > best["accuracy"]:
                    best = r
        else:
            epoch += 1
            continue
        break
    seconds = time.perf_counter() - t0
    r = evaluate()
    if best is None or r["accuracy"] > best["accuracy"]:
        best = r
    epochs = step / len(buckets.batches(lengths, a.batch_size, a.seed, 0))
    return {"side": "pytorch", "steps": step, "epochs": round(epochs, 2), "seconds": round(seconds, 1),
            "s_per_epoch": round(seconds / epochs, 2), "valid_accuracy": best["accuracy"],
            "valid_macro_f1": best["macro_f1"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpora" / "names"))
    p.add_argument("--time-budget", type=float, default=300)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--valid-every", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_charlm(a, Path(tmp) / "c.safetensors"), run_torch(a)]
    for r in rows:
        print(json.dumps(r))
    c, t = rows
    print(f"charlm / PyTorch: {t['s_per_epoch'] / c['s_per_epoch']:.2f}x faster per epoch; accuracy "
          f"{c['valid_accuracy']:.4f} vs {t['valid_accuracy']:.4f}, macro-F1 {c['valid_macro_f1']:.4f} vs "
          f"{t['valid_macro_f1']:.4f}")


if __name__ == "__main__":
    main()
