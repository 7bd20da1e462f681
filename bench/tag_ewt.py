"""charlm tag prediction speed beside the same tagger in PyTorch (CPU), in one run.

The charlm model file's tensors load into nn.Embedding (words, chars), the char nn.LSTM/GRU/RNN
(bidirectional) and the word stack (bidirectional) and nn.Linear as they are. Both sides tag the same
sentences the same way: sorted by length, `--batch` sentences at a time, each batch's distinct words
through the char BiRNN once (PyTorch: pack_padded_sequence), the sentences as a packed batch, softmax
per token. Rounds alternate charlm / PyTorch after a warm-up of each; the medians are reported and the
tags of both are compared. Usage:
    python bench/tag_ewt.py MODEL DEV.conllu [--threads 2] [--rounds 5] [--batch 128] [--json]

charlm is imported from this checkout, not from an installed copy: an older installed charlm (before
threads.load_tbb) ran its kernels on Numba's OpenMP layer, which raised PyTorch's OpenMP threads from
--threads 1 to 2 in the same process and made PyTorch's rounds about 40 times slower on a loaded
machine. PyTorch's thread count is set again before each of its rounds and reported.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from charlm import conllu  # noqa: E402
from charlm.tagger import Tagger  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("data")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--json", action="store_true")
a = p.parse_args()

torch.set_num_threads(a.threads)
tagger = Tagger.load(a.model)
cfg, P = tagger.config, {k: torch.from_numpy(v) for k, v in tagger.params.items()}
sentences = [s.words for s in conllu.read(a.data).sentences]
words = sum(len(s) for s in sentences)
RNN = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.cell]
if cfg.peephole or (cfg.cell == "gru" and cfg.gru_variant != "full"):
    raise SystemExit("PyTorch has no peephole LSTM or minimal GRU")
extra = {"nonlinearity": cfg.activation} if cfg.cell == "rnn" else {}
emb = torch.nn.Embedding(cfg.vocab_size, cfg.embed)
emb.load_state_dict({"weight": P["embedding.weight"]})
rnn = RNN(cfg.layer_input(0), cfg.hidden, num_layers=cfg.layers, bidirectional=True, **extra)
rnn.load_state_dict({k[4:]: v for k, v in P.items() if k.startswith("rnn.")})
head = torch.nn.Linear(2 * cfg.hidden, cfg.tags)
head.load_state_dict({"weight": P["head.weight"], "bias": P["head.bias"]})
if cfg.char_features:
    cemb = torch.nn.Embedding(cfg.chars, cfg.char_embed)
    cemb.load_state_dict({"weight": P["char_embedding.weight"]})
    crnn = RNN(cfg.char_embed, cfg.char_hidden, bidirectional=True, **extra)
    crnn.load_state_dict({k[9:]: v for k, v in P.items() if k.startswith("char_rnn.")})
index, unk = tagger.vocab.index, cfg.unk_id
cindex = tagger._char_index
pad = torch.nn.utils.rnn


def torch_tag(sents):
    """The tag ids of every sentence, batched as charlm batches them."""
    torch.set_num_threads(a.threads)
    torch_threads.add(torch.get_num_threads())
    out = [None] * len(sents)
    order = np.argsort([len(s) for s in sents], kind="stable")
    with torch.inference_mode():
        for i in range(0, len(order), a.batch):
            idx = order[i:i + a.batch]
            batch = [sents[j] for j in idx]
            lengths = torch.tensor([len(s) for s in batch])
            ids = pad.pad_sequence([torch.tensor([index.get(w.lower() if cfg.lowercase else w, unk) for w in s])
                                    for s in batch])                                      # (T, B)
            x = emb(ids)
            if cfg.char_features:
                types = {}
                tid = pad.pad_sequence([torch.tensor([types.setdefault(w, len(types)) for w in s]) for s in batch])
                chars = [torch.tensor([cindex.get(c, 0) for c in w]) for w in types]
                clen = torch.tensor([len(c) for c in chars])
                packed = pad.pack_padded_sequence(cemb(pad.pad_sequence(chars)), clen, enforce_sorted=False)
                _, h = crnn(packed)
                h = h[0] if cfg.cell == "lstm" else h
                cv = torch.cat([h[0], h[1]], dim=1)                                       # (U, 2Hc)
                x = torch.cat([x, cv[tid]], dim=2)                                        # (T, B, In)
            y, _ = rnn(pad.pack_padded_sequence(x, lengths, enforce_sorted=False))
            y, _ = pad.pad_packed_sequence(y)                                             # (T, B, 2H)
            prob = torch.softmax(head(y), dim=2)
            best = prob.argmax(dim=2).numpy()
            for b, j in enumerate(idx):
                out[j] = best[: len(sents[j]), b]
    return out


def charlm_tag(sents):
    return [p.argmax(axis=1) for p in tagger.probabilities(sents, batch_size=a.batch, threads=a.threads)]


torch_threads = set()
runs = {"charlm": [], "pytorch": []}
results = {}
for name, f in (("charlm", charlm_tag), ("pytorch", torch_tag)):
    f(sentences[:300])                                                                    # warm-up, compile
for _ in range(a.rounds):
    for name, f in (("charlm", charlm_tag), ("pytorch", torch_tag)):
        t = time.perf_counter()
        results[name] = f(sentences)
        runs[name].append(time.perf_counter() - t)
agree = float(np.mean(np.concatenate([x == y for x, y in zip(results["charlm"], results["pytorch"])])))
med = {k: statistics.median(v) for k, v in runs.items()}
report = {"model": a.model, "describe": cfg.describe(), "sentences": len(sentences), "words": words,
          "threads": a.threads, "torch_threads": sorted(torch_threads), "numba_layer": numba.threading_layer(),
          "batch": a.batch, "rounds": a.rounds, "torch": torch.__version__,
          "seconds": runs, "words_per_s": {k: words / v for k, v in med.items()},
          "charlm_over_pytorch": med["pytorch"] / med["charlm"], "same_tags": agree}
if a.json:
    print(json.dumps(report))
else:
    print(f"{cfg.describe()}; {len(sentences):,} sentences, {words:,} words, batch {a.batch}, {a.threads} threads, "
          f"median of {a.rounds} alternating rounds (PyTorch threads {sorted(torch_threads)}, Numba layer "
          f"{report['numba_layer']})")
    for k in ("charlm", "pytorch"):
        print(f"  {k:<8} {words / med[k]:>9,.0f} words/s  ({', '.join(f'{s:.2f}' for s in runs[k])} s)")
    print(f"  charlm / PyTorch: {report['charlm_over_pytorch']:.2f}x; same tags on {agree:.2%} of the words")
