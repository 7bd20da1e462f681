"""The Python API of a trained encoder-decoder (`charlm seq2seq train`): convert inputs, evaluate on pairs.

    import charlm
    g2p = charlm.load("g2p.safetensors")             # a seq2seq file gives a Transducer
    print(g2p.predict(["thought"])[0].output)        # 'TH AO T'
    print(g2p.predict(["read"], beam=5, num_outputs=3)[0].outputs)
    print(g2p.evaluate("valid.tsv")["wer"])

Inputs are tokenized like the training sources; a symbol the source vocabulary lacks becomes <unk> and is
counted (`unknown`). max_length=None lets each output grow to 2 x its input's tokens + 10; a given
max_length caps every output, and an input with more tokens than it is an error (its output would be cut
short), raised before anything is decoded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from charlm import pairs, seq2seq_search
from charlm.checkpoint import load_model, one_line
from charlm.errors import CharlmError, ModelFileError
from charlm.threads import compute_threads
from charlm.vocab import Vocab


@dataclass
class Conversion:
    input: str
    outputs: list            # [(output string, log p(output, EOS), normalised score, truncated)], best first
    unknown: int             # source tokens of the input that are <unk>

    @property
    def output(self) -> str:
        return self.outputs[0][0]

    def as_dict(self) -> dict:
        return {"input": self.input, "output": self.output, "unknown": self.unknown,
                "outputs": [{"output": o, "score": s, "normalized": n, "truncated": t} for o, s, n, t in self.outputs]}


def auto_max_length(n: int) -> int:
    return 2 * n + 10


def read_target_vocab(path, meta, config) -> list[str]:
    """The `target_vocab` metadata: a JSON list of config.target_vocab_size distinct tokens, specials at
    their ids."""
    try:
        tokens = json.loads(meta["target_vocab"])
    except KeyError:
        raise ModelFileError(path, "metadata has no 'target_vocab' key") from None
    except (ValueError, RecursionError) as e:
        raise ModelFileError(path, f"target_vocab metadata is not valid JSON: {one_line(e)}") from None
    if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
        raise ModelFileError(path, "target_vocab metadata must be a list of strings")
    if len(tokens) != config.target_vocab_size:
        raise ModelFileError(path, f"config says target_vocab_size {config.target_vocab_size} but target_vocab has "
                                   f"{len(tokens)} tokens")
    try:
        Vocab(tokens, config.target_level, False, config.target_unk_id, config.target_eos_id)
    except CharlmError as e:
        raise ModelFileError(path, f"bad target_vocab metadata: {e}") from None
    return tokens


class Transducer:
    def __init__(self, config, source: Vocab, target: Vocab, params, meta=None):
        self.config, self.source, self.target, self.params = config, source, target, params
        self.meta = meta or {}

    @classmethod
    def load(cls, path) -> Transducer:
        m = load_model(path, task="seq2seq")
        c = m.config
        source = Vocab(m.vocab, c.level, c.lowercase, c.unk_id, c.eos_id)
        target = Vocab(read_target_vocab(path, m.meta, c), c.target_level, False, c.target_unk_id, c.target_eos_id)
        return cls(c, source, target, m.params, m.meta)

    @property
    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def encode(self, text: str) -> np.ndarray:
        toks = pairs.tokens(text, self.config.level, self.config.lowercase)
        index, unk = self.source.index, self.source.unk_id
        return np.array([index.get(t, unk) for t in toks] or [unk], np.int32)      # as the training sources

    def detok(self, ids) -> str:
        toks = [self.target.tokens[i] for i in ids]
        return " ".join(toks) if self.config.target_level == "word" else "".join(toks)

    def decode_ids(self, seqs, beam: int = 1, num_outputs: int = 1, max_length: int | None = None,
                   alpha: float = 1.0, batch_size: int = 256, threads: int | None = None):
        """Id arrays -> per input a list of seq2seq_search.Hypothesis, best first."""
        if beam < 1 or num_outputs < 1 or (max_length is not None and max_length < 1) or alpha < 0:
            raise CharlmError("beam, num_outputs and max_length must be >= 1, the length penalty >= 0")
        if num_outputs > beam:
            raise CharlmError(f"--num-outputs {num_outputs} needs --beam of at least {num_outputs}")
        lengths = np.array([len(s) for s in seqs], np.int64)
        if max_length is not None and (lengths > max_length).any():
            i = int(np.argmax(lengths > max_length))
            raise CharlmError(f"input {i + 1} has {lengths[i]} tokens, more than --max-length {max_length}: its output "
                              f"would be cut short; raise --max-length or leave it out (default: 2 x the input + 10)")
        limits = np.full(len(seqs), max_length) if max_length else np.array([auto_max_length(n) for n in lengths])
        out = [None] * len(seqs)
        order = np.argsort(lengths, kind="stable")
        step = max(1, batch_size // beam) if beam > 1 else batch_size
        with compute_threads(threads):
            for i in range(0, len(seqs), step):
                idx = order[i:i + step]
                src = [seqs[j] for j in idx]
                if beam == 1:
                    res = [[h] for h in seq2seq_search.greedy(self.config, self.params, src, limits[idx], alpha)]
                else:
                    res = seq2seq_search.beam(self.config, self.params, src, limits[idx], beam, num_outputs, alpha)
                for j, r in zip(idx, res):
                    out[j] = r
        return out

    def predict(self, inputs, beam: int = 1, num_outputs: int = 1, max_length: int | None = None,
                alpha: float = 1.0, batch_size: int = 256, threads: int | None = None) -> list[Conversion]:
        """The output(s) of each input string: greedy (beam 1) or beam search, num_outputs best each."""
        inputs = list(inputs)
        if not inputs:
            return []
        for i, text in enumerate(inputs):
            if not pairs.tokens(text, self.config.level):
                raise CharlmError(f"input {i + 1} is empty: nothing to convert")
        seqs = [self.encode(t) for t in inputs]
        hyps = self.decode_ids(seqs, beam, num_outputs, max_length, alpha, batch_size, threads)
        unk = self.source.unk_id
        return [Conversion(text, [(self.detok(h.tokens), h.score, h.normalized, h.truncated) for h in hs],
                           int((s == unk).sum())) for text, s, hs in zip(inputs, seqs, hyps)]

    def evaluate(self, path, beam: int = 1, max_length: int | None = None, alpha: float = 1.0,
                 encoding_errors: str = "strict", batch_size: int = 256, threads: int | None = None) -> dict:
        """WER, TER (charlm.pairs.score), WER by input length, the unknown source tokens, and the
        wrong inputs on a pair file."""
        pr = pairs.read(path, encoding_errors)
        sources, refs = pairs.group(pr, self.config.target_level)
        convs = self.predict(sources, beam, 1, max_length, alpha, batch_size, threads)
        outs = [tuple(pairs.tokens(c.output, self.config.target_level)) for c in convs]
        report = pairs.score(outs, refs)
        details = report.pop("details")
        lengths = [len(self.encode(s)) for s in sources]
        by_length = {}
        for n, d in zip(lengths, details):
            row = by_length.setdefault(n, [0, 0])
            row[0] += 1
            row[1] += not d["right"]
        report["by_length"] = [{"length": n, "inputs": c, "wer": w / c} for n, (c, w) in sorted(by_length.items())]
        report["pairs"] = len(pr.sources)
        report["unknown_tokens"] = sum(c.unknown for c in convs)
        report["inputs_with_unknown"] = sum(c.unknown > 0 for c in convs)
        report["truncated"] = sum(c.outputs[0][3] for c in convs)
        report["beam"] = beam
        report["errors"] = [{"input": s, "output": c.output, "references": [" ".join(r) if self.config.target_level ==
                                                                           "word" else "".join(r) for r in rs],
                             "distance": d["distance"]}
                            for s, c, rs, d in zip(sources, convs, refs, details) if not d["right"]]
        return report
