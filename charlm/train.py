"""Training a language model: corpus → vocabulary → id streams → the LM task on the training engine.

The run loop and everything a long run can count on (checkpoints, exact resume, Ctrl-C, divergence
stops, the log) are the engine's (charlm.engine); the batching and the math are the LM task's
(charlm.tasks.lm). This module reads the corpus and turns the engine's result into the LM's figures.
"""
from __future__ import annotations

import math
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from charlm import bpe, data, engine
from charlm.config import ModelConfig, TrainConfig
from charlm.engine import MAX_SKIPS_IN_A_ROW, TrainingDiverged  # noqa: F401  (part of this module's API)
from charlm.errors import CharlmError
from charlm.resume import RunState
from charlm.tasks.lm import LMTask
from charlm.vocab import Vocab, characters


@dataclass
class Corpus:
    vocab: Vocab
    train: np.ndarray     # (N,) int32 training stream
    valid: np.ndarray     # (M,) int32 validation stream
    source: str = ""      # the files it was read from, for messages
    paths: tuple = ()     # the files read (training, then validation): no output may be one of them
    valid_chars: int = 0  # characters of the validation text (charlm.vocab.characters): bits per character
    unknown: Counter = field(default_factory=Counter)   # training tokens the vocabulary lacks (read as UNK)


@dataclass
class TrainResult:
    out: str
    steps: int
    epochs: float
    tokens: int
    seconds: float
    train_loss: float                  # mean over the last 100 steps, nats/token
    best_valid_loss: float             # during training (tasks.lm.VALID_STREAMS pieces)
    best_step: int
    valid_loss: float | None = None    # exact single-stream figure of the saved model
    valid_tokens: int = 0
    valid_bpc: float | None = None     # bits per character of the validation text: valid_loss * tokens / ln 2 / chars
    valid_chars: int = 0
    stopped_by: str = ""               # max-steps | epochs | time-budget | interrupted
    signal: int = 0                    # the signal that interrupted the run (SIGINT, SIGTERM), else 0
    skipped: int = 0                   # steps skipped for a non-finite loss (on_nonfinite="skip")
    resumed_from: int | None = None    # the step this session resumed at (None: a new run)
    state_path: str = ""               # the run state, for --resume
    valid_exact: bool = True           # valid_loss is the exact single-stream figure (not after a signal)
    history: list = field(default_factory=list)

    def as_dict(self):
        return asdict(self)


def load_corpus(paths, level="char", lowercase=False, min_count=1, max_vocab=None, valid_path=None,
                valid_fraction=0.05, encoding_errors="strict", tokenize="whitespace",
                model_vocab: Vocab | None = None, bpe_vocab_size: int = bpe.DEFAULT_VOCAB_SIZE) -> Corpus:
    """Read the training files (and the validation file) into id streams with a vocabulary built from the
    training text only: when the validation text is the corpus' tail, it is left out of the counts.
    Each file is read once from disk (a FIFO or `<(cmd)` too: data.read_once).

    model_vocab: the vocabulary of a model to train further (--init-from) instead of a new one; its level,
    lower-casing and tokenizer are used, tokens it lacks read as UNK, and Corpus.unknown counts them.
    bpe_vocab_size: level "bpe", the size of the tokenizer learned from the training text (charlm.bpe)."""
    if model_vocab is not None:
        level, lowercase, tokenize = model_vocab.level, model_vocab.lowercase, model_vocab.tokenize
    names = data._path_list(paths) + ([valid_path] if valid_path is not None else [])
    paths = data.read_once(data._path_list(paths))
    if level == "bpe":
        return _bpe_corpus(paths, names, lowercase, valid_path, valid_fraction, encoding_errors, model_vocab,
                           bpe_vocab_size)
    counts = data.count_tokens(paths, level, lowercase, encoding_errors, tokenize=tokenize)
    if not counts and level == "char":
        raise CharlmError(f"{_names(paths)}: no text to train on (the corpus is empty)")
    if not counts and level == "word":
        raise CharlmError(f"{_names(paths)}: no words to train on (the corpus is empty or whitespace only)")
    if all(c.isspace() for c in counts):
        raise CharlmError(f"{_names(paths)}: no text to train on (the corpus is whitespace only)")
    full = Vocab.from_counts(counts, level, lowercase, tokenize=tokenize)
    ids = data.encode_files(paths, full, encoding_errors)
    if valid_path is None:
        train_ids, valid_ids = data.split_tail(ids, valid_fraction)
        valid_chars = characters(full.decode(valid_ids))     # the held-out tokens' text, as they spell it
    else:
        train_ids, valid_ids = ids, None
    train_counts = np.bincount(train_ids, minlength=len(full))
    tokens = full.tokens
    seen = {tokens[i]: int(c) for i, c in enumerate(train_counts) if c and i > 1}
    vocab = model_vocab if model_vocab is not None else Vocab.from_counts(seen, level, lowercase, min_count,
                                                                          max_vocab, tokenize)
    unknown = Counter({t: c for t, c in seen.items() if t not in vocab.index})
    if len(vocab) <= 2:
        raise CharlmError(f"{_names(paths)}: the training text has no token seen --min-count {min_count} times")
    remap = np.array([vocab.index.get(t, vocab.unk_id) for t in tokens], np.int32)
    remap[full.eos_id] = vocab.eos_id
    if valid_path is not None:
        valid_ids, valid_chars = data.encode_file_counted(data.read_once([valid_path])[0], vocab, encoding_errors)
        if len(valid_ids) == 0:
            raise CharlmError(f"{valid_path}: the validation file is empty")
    else:
        valid_ids = remap[valid_ids]
    return Corpus(vocab, remap[train_ids], valid_ids, _names(paths), tuple(os.fspath(p) for p in names), valid_chars,
                  unknown)


def _bpe_corpus(paths, names, lowercase, valid_path, valid_fraction, encoding_errors, model_vocab,
                vocab_size) -> Corpus:
    """load_corpus at level "bpe". The tokenizer is learned from the training lines only: without a
    validation file, the held-out tail is the last lines holding `valid_fraction` of the characters (cut at
    a line's end, so that no line is tokenized in two halves), not the last tokens as at the other levels."""
    lines = data.read_lines(paths, lowercase, encoding_errors)
    if not any(line.strip() for line in lines):
        raise CharlmError(f"{_names(paths)}: no text to train on (the corpus is empty or whitespace only)")
    cut = len(lines)
    if valid_path is None:
        if isinstance(valid_fraction, bool) or not (isinstance(valid_fraction, (int, float)) and 0 <= valid_fraction < 1):
            raise CharlmError(f"validation fraction must be at least 0 and below 1, got {valid_fraction!r}")
        sizes = np.cumsum([len(line) + 1 for line in lines])                  # characters up to each line's end
        cut = int(np.searchsorted(sizes, sizes[-1] * (1 - valid_fraction), side="right"))   # lines within it
    head, tail = lines[:cut], lines[cut:]
    vocab = model_vocab
    if vocab is None:
        tokenizer = bpe.train(head, vocab_size)
        tokens = bpe.tokens_of(bpe.load(tokenizer))
        vocab = Vocab(tokens, "bpe", lowercase, tokens.index("<unk>"), tokens.index("<eos>"), tokenizer=tokenizer)
    train_ids = vocab.encode_normalized("".join(line + "\n" for line in head))
    if valid_path is not None:
        valid_ids, valid_chars = data.encode_file_counted(data.read_once([valid_path])[0], vocab, encoding_errors)
        if len(valid_ids) == 0:
            raise CharlmError(f"{valid_path}: the validation file is empty")
    else:
        text = "".join(line + "\n" for line in tail)
        valid_ids, valid_chars = vocab.encode_normalized(text), characters(text)
    unknown = Counter({"<unk>": int((train_ids == vocab.unk_id).sum())}) if vocab.unk_id in train_ids else Counter()
    return Corpus(vocab, train_ids, valid_ids, _names(paths), tuple(os.fspath(p) for p in names), valid_chars,
                  unknown)


def _names(paths) -> str:
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return ", ".join(str(p) for p in paths)


def train(corpus: Corpus, out, cfg: ModelConfig, tc: TrainConfig, progress: bool = True,
          log=lambda msg: print(msg, file=sys.stderr), *, resume: RunState | None = None,
          checkpoint_every: int = 0, on_nonfinite: str = "stop", threads: int | None = None,
          run_config: dict | None = None, init_params: dict | None = None) -> TrainResult:
    """Train a language model on `corpus` and keep it at `out` (the best on validation, or the last).

    resume: a RunState (charlm.resume.load_state) of the run to continue; corpus, cfg and the FIXED
    options of tc (charlm.config) must be the run's. tc's limits (epochs, max_steps, time_budget: totals
    of the whole run) and its CHANGEABLE options (a new lr replaces the current, possibly decayed, one)
    may differ. init_params: the weights a new run starts from (--init-from: a trained model's, for cfg and
    corpus.vocab), instead of a random initialisation. The other arguments are charlm.engine.run's.
    """
    res = engine.run(LMTask(corpus, cfg, tc, init_params), out, progress=progress, log=log, resume=resume,
                     checkpoint_every=checkpoint_every, on_nonfinite=on_nonfinite, threads=threads,
                     run_config=run_config)
    if res.final is None:            # after Ctrl-C, be quick: the fast figure of the kept model
        vloss = res.best if tc.keep == "best" and math.isfinite(res.best) else res.last.get("valid_loss")
    else:
        vloss = res.final["valid_loss"]
    chars = corpus.valid_chars
    bpc = vloss * len(corpus.valid) / math.log(2) / chars if vloss is not None and chars else None
    return TrainResult(out=res.out, steps=res.steps, epochs=res.epochs, tokens=res.tokens, seconds=res.seconds,
                       train_loss=res.train_loss, best_valid_loss=res.best, best_step=res.best_step,
                       valid_loss=vloss, valid_tokens=len(corpus.valid), valid_bpc=bpc, valid_chars=chars,
                       stopped_by=res.stopped_by,
                       signal=res.signal, skipped=res.skipped, resumed_from=res.resumed_from,
                       state_path=res.state_path, valid_exact=res.final is not None, history=res.history)
