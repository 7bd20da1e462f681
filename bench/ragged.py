"""Ragged batches: charlm's packed path beside its fixed-length paths and PyTorch, in one run.

A tagger (embedding -> 2-layer bidirectional LSTM -> per-position linear over 17 tags -> mean
cross-entropy; forward, backward, clip 5, Adam) trained and evaluated over batches of --batch sentences
whose lengths are drawn from the EWT training sentences (charlm.bench_ragged). Modes:
    charlm-ragged  charlm.packed on the ragged batches
    charlm-fixed   charlm.packed on batches of the same size and tokens, every sentence one length
    charlm-model   those fixed batches through model.forward / model.backward
    torch-ragged   pack_padded_sequence(enforce_sorted=False) + nn.LSTM(bidirectional=True), the same
                   batches (ids, tags and lengths), the head on the packed data
    torch-fixed    nn.LSTM on the fixed batches, unpacked
Each measurement is a fresh process (no thread pools of one framework spinning beside the other),
modes alternate within a round; prints JSON lines per measurement on stderr, then one JSON object with
the medians over the rounds and the ratios.
Usage: python bench/ragged.py [--rounds 3] [--batch 32] [--steps 10] [--hidden 256] [--embed 256]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("charlm-ragged", "charlm-fixed", "charlm-model", "torch-ragged", "torch-fixed")


def ewt_lengths(corpora):
    sys.path.insert(0, str(HERE))
    from padding_waste import conllu_lengths
    return conllu_lengths(Path(corpora) / "ud-ewt" / "en_ewt-ud-train.conllu")


def run_torch(a, lengths, ragged):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

    from charlm.bench_ragged import make_batches
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    batches = make_batches(lengths, a.batch, a.steps, a.vocab, a.classes, a.seed, fixed=not ragged)
    emb = torch.nn.Embedding(a.vocab, a.embed)
    rnn = torch.nn.LSTM(a.embed, a.hidden, a.layers, bidirectional=True)
    head = torch.nn.Linear(2 * a.hidden, a.classes)
    params = list(emb.parameters()) + list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)

    def logits(b):
        x = pad_sequence([torch.from_numpy(ids).long() for ids, _ in b])          # (T, B)
        y = pad_sequence([torch.from_numpy(t).long() for _, t in b])
        if ragged:
            lens = torch.tensor([len(ids) for ids, _ in b])
            out, _ = rnn(pack_padded_sequence(emb(x), lens, enforce_sorted=False))
            return head(out.data), pack_padded_sequence(y, lens, enforce_sorted=False).data
        out, _ = rnn(emb(x))                                                       # (T, B, 2H)
        return head(out.reshape(-1, out.shape[-1])), y.reshape(-1)

    def train(b):
        z, y = logits(b)
        loss = F.cross_entropy(z, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return loss.item()

    def evaluate(b):
        with torch.no_grad():
            z, y = logits(b)
            return float(F.cross_entropy(z, y))

    for b in batches[:2]:
        train(b)
    evaluate(batches[0])
    tokens = sum(len(ids) for b in batches for ids, _ in b)
    t = time.perf_counter()
    losses = [train(b) for b in batches]
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    for b in batches:
        evaluate(b)
    eval_s = time.perf_counter() - t
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "tokens": tokens,
            "train_tok_s": round(tokens / train_s), "eval_tok_s": round(tokens / eval_s),
            "last_loss": round(losses[-1], 4), "mean_len": float(np.mean([len(i) for b in batches for i, _ in b]))}


def run_charlm(a, lengths, mode):
    from charlm.bench_ragged import run_ragged
    from charlm.config import ModelConfig
    cfg = ModelConfig(level="word", cell="lstm", layers=a.layers, hidden=a.hidden, embed=a.embed,
                      vocab_size=a.vocab, bidirectional=True)
    return run_ragged(cfg, lengths, a.batch, a.steps, mode, a.classes, a.seed)


def worker(a):
    lengths = ewt_lengths(a.corpora)
    fw, mode = a.worker.split("-")
    r = run_torch(a, lengths, mode == "ragged") if fw == "torch" else run_charlm(a, lengths, mode)
    r["mode"] = a.worker
    print(json.dumps(r))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=5000)
    p.add_argument("--classes", type=int, default=17)
    p.add_argument("--threads", type=int, default=2, help="PyTorch's intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--corpora", default=str(HERE.parent.parent / "shared" / "corpora"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a)
    modes = a.modes.split(",")
    args, skip = [], False                 # the worker gets every option but --rounds and --modes
    for arg in sys.argv[1:]:
        if skip or arg.split("=")[0] in ("--rounds", "--modes"):
            skip = not skip and "=" not in arg
            continue
        args.append(arg)
    got = {m: [] for m in modes}
    for _ in range(a.rounds):
        for m in modes:
            out = subprocess.run([sys.executable, __file__, "--worker", m, *args], check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(json.dumps(r), file=sys.stderr)
            got[m].append(r)
    med = {m: {k: statistics.median(r[k] for r in got[m]) for k in ("train_tok_s", "eval_tok_s")} for m in modes}
    ratios = {}
    for num, den in (("charlm-ragged", "charlm-fixed"), ("charlm-ragged", "charlm-model"),
                     ("charlm-ragged", "torch-ragged"), ("charlm-fixed", "torch-fixed"),
                     ("torch-ragged", "torch-fixed")):
        if num in med and den in med:
            ratios[f"{num} / {den}"] = {k: round(med[num][k] / med[den][k], 3) for k in med[num]}
    print(json.dumps({"batch": a.batch, "steps": a.steps, "hidden": a.hidden, "embed": a.embed, "layers": a.layers,
                      "vocab": a.vocab, "rounds": a.rounds, "median": med, "ratios": ratios,
                      "per_round": {m: [(r["train_tok_s"], r["eval_tok_s"]) for r in got[m]] for m in modes}},
                     indent=1))


if __name__ == "__main__":
    main()
