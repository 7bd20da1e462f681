"""charlm seq2seq beside the same encoder-decoder in PyTorch (CPU), training tokens/s in one run, and charlm's
greedy and beam-5 decoding speed in words/s.

Both train the same model (bidirectional LSTM encoder, tanh bridge, LSTM decoder, Luong attention, output
layer; the shapes of `make g2p`) on the same bucketed CMUdict batches with Adam, the same thread count,
alternating rounds of steps so the shared machine's load falls on both alike; the figure is target tokens
(EOS included) per second of forward + backward + update, median over rounds. PyTorch runs its idiomatic
fast path: packed sequences through nn.LSTM for encoder and decoder (cuDNN-style), attention as batched
matrix products on padded tensors.

Usage: python bench/seq2seq_g2p.py [--data ../shared/corpora/cmudict] [--hidden 128] [--attention general]
       [--rounds 5] [--steps 20] [--threads 1] [--decode 1000]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpora" / "cmudict"))
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--attention", default="general", choices=["none", "dot", "general", "additive"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--decode", type=int, default=1000, help="validation words decoded for words/s (0: skip)")
    a = ap.parse_args()

    import torch

    from charlm import buckets, seq2seq, seq2seq_search
    from charlm.config import Seq2SeqConfig
    from charlm.optim import make_optimizer
    from charlm.tasks.seq2seq import load_data
    from charlm.threads import compute_threads
    torch.set_num_threads(a.threads)

    d = load_data(Path(a.data) / "train.tsv", Path(a.data) / "valid.tsv")
    cfg = Seq2SeqConfig(level="char", vocab_size=len(d.source), target_vocab_size=len(d.target), hidden=a.hidden,
                        layers=1, embed=a.embed, decoder_hidden=2 * a.hidden, target_embed=a.embed, attention=a.attention)
    lengths = np.array([len(s) + len(t) + 1 for s, t in zip(d.train_src, d.train_tgt)])
    batches = buckets.batches(lengths, a.batch, 0, 0)
    rng = np.random.default_rng(0)
    P = seq2seq.init_params(cfg, rng)
    opt = make_optimizer("adam", P, 2e-3, 0.0)
    tm = TorchModel(torch, cfg, P)
    topt = torch.optim.Adam(tm.parameters(), lr=2e-3)

    def charlm_steps(k0, n):
        tokens = 0
        t = time.perf_counter()
        with compute_threads(a.threads):
            for k in range(k0, k0 + n):
                idx = batches[k]
                b = seq2seq.make_batch(cfg, [d.train_src[i] for i in idx], [d.train_tgt[i] for i in idx])
                _, g = seq2seq.loss_and_grads(cfg, P, b)
                opt.step(P, g)
                tokens += b.tgt.N
        return tokens / (time.perf_counter() - t)

    def torch_steps(k0, n):
        tokens = 0
        t = time.perf_counter()
        for k in range(k0, k0 + n):
            idx = batches[k]
            loss, nt = tm.loss([d.train_src[i] for i in idx], [d.train_tgt[i] for i in idx], cfg.target_eos_id)
            topt.zero_grad()
            loss.backward()
            topt.step()
            tokens += nt
        return tokens / (time.perf_counter() - t)

    charlm_steps(0, 2)                       # compile / warm up both
    torch_steps(0, 2)
    ours, theirs = [], []
    for r in range(a.rounds):
        k0 = 2 + r * a.steps
        ours.append(charlm_steps(k0, a.steps))
        theirs.append(torch_steps(k0, a.steps))
    result = {"model": cfg.describe(), "threads": a.threads, "batch": a.batch, "rounds": a.rounds, "steps": a.steps,
              "charlm_train_tok_s": round(statistics.median(ours)), "torch_train_tok_s": round(statistics.median(theirs)),
              "torch_version": torch.__version__}
    result["ratio"] = round(result["charlm_train_tok_s"] / result["torch_train_tok_s"], 2)
    if a.decode:
        words = d.valid_inputs[: a.decode]
        with compute_threads(a.threads):
            for name, beam in (("greedy_words_s", 1), ("beam5_words_s", 5)):
                t = time.perf_counter()
                for i in range(0, len(words), 256 // beam):
                    src = words[i:i + 256 // beam]
                    limits = [2 * len(s) + 10 for s in src]
                    if beam == 1:
                        seq2seq_search.greedy(cfg, P, src, limits)
                    else:
                        seq2seq_search.beam(cfg, P, src, limits, beam)
                result[name] = round(len(words) / (time.perf_counter() - t))
    print(json.dumps(result))


class TorchModel:
    """The same model from torch.nn modules, started from charlm's initial parameters."""

    def __init__(self, torch, cfg, P):
        nn = torch.nn
        self.torch, self.cfg = torch, cfg
        Hw, Hd = cfg.hidden * 2, cfg.decoder_hidden
        self.src_emb = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.tgt_emb = nn.Embedding(cfg.target_vocab_size, cfg.target_embed)
        self.encoder = nn.LSTM(cfg.embed, cfg.hidden, bidirectional=True)
        self.decoder = nn.LSTM(cfg.target_embed, Hd)
        self.bridge = nn.Linear(Hw, 2 * Hd)
        self.output = nn.Linear(Hd, cfg.target_vocab_size)
        self.modules = [self.src_emb, self.tgt_emb, self.encoder, self.decoder, self.bridge, self.output]
        if cfg.attention != "none":
            self.combine = nn.Linear(Hw + Hd, Hd, bias=False)
            self.att = nn.Linear(Hw, Hd, bias=False)
            self.modules += [self.combine, self.att]
        T = {k: torch.from_numpy(v.copy()) for k, v in P.items()}
        self.src_emb.load_state_dict({"weight": T["source_embedding.weight"]})
        self.tgt_emb.load_state_dict({"weight": T["target_embedding.weight"]})
        self.encoder.load_state_dict({k[8:]: v for k, v in T.items() if k.startswith("encoder.")})
        self.decoder.load_state_dict({k[8:]: v for k, v in T.items() if k.startswith("decoder.")})
        self.bridge.load_state_dict({"weight": T["bridge.weight"], "bias": T["bridge.bias"]})
        self.output.load_state_dict({"weight": T["output.weight"], "bias": T["output.bias"]})
        if cfg.attention != "none":
            self.combine.load_state_dict({"weight": T["combine.weight"]})
            self.att.load_state_dict({"weight": T["attention.weight"]})

    def parameters(self):
        return [p for m in self.modules for p in m.parameters()]

    def loss(self, src, tgt, eos):
        torch = self.torch
        rnn = torch.nn.utils.rnn
        S = [torch.from_numpy(s.astype(np.int64)) for s in src]
        Yi = [torch.from_numpy(np.concatenate(([eos], t)).astype(np.int64)) for t in tgt]
        Yo = [torch.from_numpy(np.concatenate((t, [eos])).astype(np.int64)) for t in tgt]
        sl, tl = torch.tensor([len(s) for s in S]), torch.tensor([len(y) for y in Yi])
        xs = rnn.pad_sequence(S)                                                 # (Ts, B)
        enc, (h, _) = self.encoder(rnn.pack_padded_sequence(self.src_emb(xs), sl, enforce_sorted=False))
        enc, _ = rnn.pad_packed_sequence(enc)                                    # (Ts, B, Hw)
        s0 = torch.tanh(self.bridge(torch.cat([h[-2], h[-1]], dim=1)))           # (B, 2Hd)
        Hd = self.cfg.decoder_hidden
        h0, c0 = s0[:, :Hd][None].contiguous(), s0[:, Hd:][None].contiguous()
        yi = rnn.pad_sequence(Yi)
        dec, _ = self.decoder(rnn.pack_padded_sequence(self.tgt_emb(yi), tl, enforce_sorted=False), (h0, c0))
        dec, _ = rnn.pad_packed_sequence(dec)                                    # (Tt, B, Hd)
        dec, enc = dec.transpose(0, 1), enc.transpose(0, 1)                      # (B, Tt, Hd), (B, Ts, Hw)
        if self.cfg.attention != "none":
            score = dec @ self.att(enc).transpose(1, 2)                          # (B, Tt, Ts)
            mask = torch.arange(enc.shape[1])[None, :] < sl[:, None]
            score = score.masked_fill(~mask[:, None, :], float("-inf"))
            c = torch.softmax(score, dim=2) @ enc
            dec = torch.tanh(self.combine(torch.cat([c, dec], dim=2)))
        z = self.output(dec)                                                     # (B, Tt, Vt)
        yo = rnn.pad_sequence(Yo, batch_first=True, padding_value=-100)
        return torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), yo.reshape(-1), ignore_index=-100), \
            int(tl.sum())


if __name__ == "__main__":
    sys.exit(main())
