"""The encoder-decoder as a task of the training engine (charlm.engine).

Data: pair files (charlm.pairs) become source and target token ids with one vocabulary per side built
from the training pairs. Batches are bucketed by source + target length (charlm.buckets), drawn from
(seed, epoch), so the engine's position is the batch index; nothing is carried between batches. The
loss is the mean NLL per target token (EOS included). Validation decodes the distinct validation sources
greedily and reports the word error rate (which keeps the best model, lower is better), the token
error rate and the teacher-forced loss.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from charlm import buckets, checkpoint, pairs, seq2seq
from charlm.config import CHANGEABLE, FIXED, RunConfig, Seq2SeqConfig, _opt
from charlm.errors import CharlmError
from charlm.vocab import Vocab


@dataclass(frozen=True)
class Seq2SeqTrainConfig(RunConfig):
    """The encoder-decoder's training options: the engine's, and its embedding dropout."""
    batch_size: int = _opt(64, FIXED)
    embed_dropout: float = _opt(0.0, CHANGEABLE)   # p of dropping a unit of either embedding

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.embed_dropout < 1:
            raise CharlmError(f"--embed-dropout must be in [0, 1), got {self.embed_dropout!r}")


@dataclass
class PairData:
    source: Vocab
    target: Vocab
    train_src: list[np.ndarray]
    train_tgt: list[np.ndarray]
    valid_src: list[np.ndarray]        # every validation pair (the loss)
    valid_tgt: list[np.ndarray]
    valid_inputs: list[np.ndarray]     # the distinct validation sources (WER, TER)
    valid_refs: list[list[tuple]]      # their references, target id tuples
    unknown: dict                      # {"source": n, "target": n} validation tokens that are <unk>


def _ids(vocab: Vocab, toks) -> np.ndarray:
    index, unk = vocab.index, vocab.unk_id
    return np.array([index.get(t, unk) for t in toks], np.int32)


def load_data(train_path, valid_path, source_level="char", target_level="word", lowercase=False, min_count=1,
              max_vocab=None, encoding_errors="strict") -> PairData:
    tr = pairs.read(train_path, encoding_errors)
    va = pairs.read(valid_path, encoding_errors)
    tr_s = [pairs.tokens(s, source_level, lowercase) for s in tr.sources]
    tr_t = [pairs.tokens(t, target_level) for t in tr.targets]
    sc, tc = Counter(), Counter()
    for s, t in zip(tr_s, tr_t):
        sc.update(s)
        tc.update(t)
    source = Vocab.from_counts(sc, source_level, lowercase, min_count, max_vocab)
    target = Vocab.from_counts(tc, target_level, False, min_count, max_vocab)
    if len(target) < 3:
        raise CharlmError(f"{train_path}: no target token seen --min-count {min_count} times")
    va_s = [_ids(source, pairs.tokens(s, source_level, lowercase)) for s in va.sources]
    va_t = [_ids(target, pairs.tokens(t, target_level)) for t in va.targets]
    inputs, refs = {}, {}
    for text, s, t in zip(va.sources, va_s, va_t):
        inputs.setdefault(text, s)
        r = refs.setdefault(text, [])
        if tuple(t.tolist()) not in r:
            r.append(tuple(t.tolist()))
    return PairData(source, target, [_ids(source, s) for s in tr_s], [_ids(target, t) for t in tr_t], va_s, va_t,
                    list(inputs.values()), list(refs.values()),
                    {"source": int(sum((s == source.unk_id).sum() for s in va_s)),
                     "target": int(sum((t == target.unk_id).sum() for t in va_t))})


def _digest(src, tgt) -> str:
    h = hashlib.sha256()
    for s, t in zip(src, tgt):
        for a in (s, t):
            h.update(np.asarray(len(a), "<i8").tobytes())
            h.update(np.asarray(a, "<i4").tobytes())
    return h.hexdigest()


ARCH_OPTIONS = {"source_level": "level", "target_level": "target_level", "lowercase": "lowercase", "cell": "cell",
                "activation": "activation", "gru_variant": "gru_variant", "peephole": "peephole",
                "bidirectional": "bidirectional", "layers": "layers", "hidden": "hidden", "embed": "embed",
                "decoder_layers": "decoder_layers", "decoder_hidden": "decoder_hidden",
                "target_embed": "target_embed", "attention": "attention"}
DATA_OPTIONS = ("min_count", "max_vocab", "encoding_errors")
VALID_BATCH = 512


class Seq2SeqTask:
    kind = "seq2seq"
    train_config_class = Seq2SeqTrainConfig
    higher_is_better = False
    select = "valid_wer"
    label = "WER"
    metrics = ("valid_loss", "valid_wer", "valid_ter")

    def __init__(self, data: PairData, cfg: Seq2SeqConfig, tc: Seq2SeqTrainConfig, inputs=()):
        if cfg.vocab_size != len(data.source) or cfg.target_vocab_size != len(data.target):
            raise CharlmError("the config's vocabulary sizes do not match the data's")
        self.data, self.config, self.tc, self.inputs = data, cfg, tc, tuple(inputs)
        self.vocab = {"tokens": data.source.tokens, "target_tokens": data.target.tokens}
        self.lengths = np.array([len(s) + len(t) + 1 for s, t in zip(data.train_src, data.train_tgt)])
        self.steps_per_epoch = len(buckets.batches(self.lengths, tc.batch_size, tc.seed, 0))
        self.digests = {"train": _digest(data.train_src, data.train_tgt),
                        "valid": _digest(data.valid_src, data.valid_tgt)}
        self.reference_loss = math.log(cfg.target_vocab_size)
        self._epoch_batches = (None, None)

    def init_params(self, rng):
        return seq2seq.init_params(self.config, rng)

    def carried(self):
        return {}

    def restore(self, tensors):
        pass

    def check_position(self, position):
        if position >= self.steps_per_epoch:
            raise CharlmError(f"--resume: the saved batch {position} is past the epoch ({self.steps_per_epoch} batches)")

    def _batches(self, epoch):
        if self._epoch_batches[0] != epoch:
            self._epoch_batches = (epoch, buckets.batches(self.lengths, self.tc.batch_size, self.tc.seed, epoch))
        return self._epoch_batches[1]

    def step(self, P, epoch, position, rng):
        idx = self._batches(epoch)[position]
        d = self.data
        batch = seq2seq.make_batch(self.config, [d.train_src[i] for i in idx], [d.train_tgt[i] for i in idx])
        masks = seq2seq.dropout_masks(self.config, rng, batch, self.tc.dropout, self.tc.embed_dropout)
        loss, grads = seq2seq.loss_and_grads(self.config, P, batch, masks)
        return loss, grads, batch.tgt.N, lambda: None

    def advance(self, position):
        return position + 1, position + 1 >= self.steps_per_epoch

    def new_epoch(self):
        pass

    def evaluate(self, P):
        return evaluate(self.config, P, self.data)

    def final_metrics(self, path):
        return self.evaluate(checkpoint.load_model(path, task="seq2seq").params)

    def save_model(self, path, P, meta):
        meta = dict(meta, task=self.kind, target_vocab=json.dumps(self.data.target.tokens, ensure_ascii=False))
        checkpoint.save_model(path, P, self.config, self.data.source.tokens, meta)

    # ------------------------------------------------------------------------ run-state files

    @staticmethod
    def model_metadata(config, vocab) -> dict[str, str]:
        return {"config": config.to_json(), "vocab": json.dumps(list(vocab["tokens"]), ensure_ascii=False),
                "target_vocab": json.dumps(list(vocab["target_tokens"]), ensure_ascii=False)}

    @staticmethod
    def read_model_metadata(path, meta):
        from charlm.transducer import read_target_vocab
        config, tokens = checkpoint.check_config_and_vocab(path, meta, Seq2SeqConfig)
        return config, {"tokens": tokens, "target_tokens": read_target_vocab(path, meta, config)}

    @staticmethod
    def carried_shapes(config, train_config) -> dict[str, tuple]:
        return {}

    @staticmethod
    def resume_fixed(st, values) -> dict:
        fixed = {name: getattr(st.config, key) for name, key in ARCH_OPTIONS.items()}
        fixed.update({name: st.run_config.get(name, values[name]) for name in DATA_OPTIONS})
        return fixed


def evaluate(cfg: Seq2SeqConfig, P, data: PairData) -> dict:
    """valid_loss (teacher forced, per target token), valid_wer and valid_ter (greedy) on the validation data."""
    from charlm import seq2seq_search
    total, count = 0.0, 0
    order = np.argsort([len(s) for s in data.valid_src], kind="stable")
    for i in range(0, len(order), VALID_BATCH):
        idx = order[i:i + VALID_BATCH]
        batch = seq2seq.make_batch(cfg, [data.valid_src[j] for j in idx], [data.valid_tgt[j] for j in idx])
        lp = seq2seq.token_logprobs(cfg, P, batch)
        total, count = total - float(lp.sum()), count + lp.size
    outs = [None] * len(data.valid_inputs)
    order = np.argsort([len(s) for s in data.valid_inputs], kind="stable")
    for i in range(0, len(order), VALID_BATCH):
        idx = order[i:i + VALID_BATCH]
        src = [data.valid_inputs[j] for j in idx]
        hyps = seq2seq_search.greedy(cfg, P, src, [2 * len(s) + 10 for s in src])
        for j, h in zip(idx, hyps):
            outs[j] = tuple(h.tokens)
    r = pairs.score(outs, data.valid_refs)
    return {"valid_loss": total / count, "valid_wer": r["wer"], "valid_ter": r["ter"]}
