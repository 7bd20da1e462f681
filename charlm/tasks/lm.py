"""The language model as a task of the training engine (charlm.engine): truncated BPTT over a token stream.

Batching as char-rnn and PyTorch's word_language_model: the training stream is cut into B contiguous
streams and read in windows of T steps (the batch at position p holds inputs streams[:, p:p+T] and
targets streams[:, p+1:p+1+T]); the hidden state carries from one window to the next and restarts
from zero at each epoch. The gradient stops at window boundaries (truncated BPTT). Validation is the
mean NLL per token of the held-out stream cut into VALID_STREAMS pieces; after the run, the exact
single-stream figure of the saved model.
"""
from __future__ import annotations

import math
import time

import numpy as np

from charlm import bpe, checkpoint, data, evaluate, model
from charlm.config import TrainConfig
from charlm.errors import CharlmError, ModelFileError
from charlm.resume import ids_digest

VALID_STREAMS = 16         # validation during training: the held-out stream cut into this many pieces
FINAL_PROBE = 2048         # tokens of the single-stream pass timed to foresee the final figure's time

# `charlm train` options that name a ModelConfig field (CLI name -> field), and the data options kept in
# the run config: all fixed for a run.
ARCH_OPTIONS = {"level": "level", "lowercase": "lowercase", "cell": "cell", "activation": "activation",
                "gru_variant": "gru_variant", "peephole": "peephole", "bidirectional": "bidirectional",
                "layers": "layers", "hidden": "hidden", "embed": "embed", "tie_weights": "tied",
                "tokenize": "tokenize"}
DATA_OPTIONS = ("min_count", "max_vocab", "encoding_errors")


HEADER_LIMIT = min(checkpoint.MAX_HEADER_BYTES, 100_000_000)   # the safetensors library refuses more
HEADER_MARGIN = 1 << 20    # room for the engine's metadata (train config, step, run id) and the tensor entries


def check_header_fits(cfg, vocab) -> None:
    """CharlmError before training when the model file's header (config and vocabulary as JSON) could not
    be saved: a word-level corpus with a 100 MB "word" would train, then fail at its first save."""
    size = len(cfg.to_json().encode()) + sum(len(t.encode("utf-8", "surrogatepass")) + 4 for t in vocab)
    if size + HEADER_MARGIN > HEADER_LIMIT:
        longest = max(vocab, key=len)
        raise CharlmError(f"the vocabulary takes about {size / 1e6:.0f} MB in the model file's header, more than "
                          f"a safetensors header can hold ({HEADER_LIMIT / 1e6:.0f} MB; the longest token has "
                          f"{len(longest):,} characters): use --max-vocab or --min-count, or --level char")


def tokenizer_metadata(vocab) -> dict[str, str]:
    """{"tokenizer": its JSON} for a BPE model's tables (docs/model-format.md), else {}."""
    return {"tokenizer": vocab.tokenizer} if isinstance(vocab, bpe.TokenList) else {}


class LMTask:
    kind = "lm"
    train_config_class = TrainConfig
    select, higher_is_better, metrics, label = "valid_loss", False, ("valid_loss", "valid_bpc"), "val"

    def __init__(self, corpus, cfg, tc: TrainConfig, init_params: dict | None = None):
        if cfg.bidirectional:
            raise CharlmError("--bidirectional: a language model predicts each token from the ones before it; "
                              "a backward direction would read the very token it must predict")
        data.check_enough(corpus.train, tc.batch_size, tc.seq_len,
                          f"the training text of {corpus.source}" if corpus.source else "the training text")
        if len(corpus.valid) == 0:
            raise CharlmError("no validation text: give --valid FILE or a larger --valid-fraction")
        self.corpus, self.config, self.tc = corpus, cfg, tc
        v = corpus.vocab                                         # a BPE model's tables carry its tokenizer
        self.vocab = v.tokens if v.tokenizer is None else bpe.TokenList(v.tokens, v.tokenizer)
        check_header_fits(cfg, self.vocab)
        self.streams = data.batchify(corpus.train, tc.batch_size)                  # (B, N)
        self.n = self.streams.shape[1]
        self.steps_per_epoch = math.ceil((self.n - 1) / tc.seq_len)
        self.valid_streams = evaluate.split_streams(corpus.valid, VALID_STREAMS)
        self.digests = {"train": ids_digest(corpus.train), "valid": ids_digest(corpus.valid)}
        self.carry = model.zero_state(cfg, tc.batch_size)                        # (L, 2, B, H)
        self.reference_loss = math.log(cfg.vocab_size)           # a uniform guess: the divergence rule's scale
        self.inputs = tuple(getattr(corpus, "paths", ()))        # no output may be one of these files
        self.init = init_params                                  # a trained model's weights (--init-from)

    # --------------------------------------------------------------------------- the engine's calls

    def init_params(self, rng):
        """A new run's weights: random (drawn from rng), or copies of the given ones, bit for bit."""
        if self.init is not None:
            return {k: np.array(v, dtype=np.float32, order="C", copy=True) for k, v in self.init.items()}
        return model.init_params(self.config, rng)

    def carried(self):
        return {"carry": self.carry}

    def restore(self, tensors):
        self.carry = tensors["carry"]

    def check_position(self, position):
        if position >= self.n - 1:
            raise CharlmError(f"--resume: the saved data position {position} is past the training text "
                              f"({self.n} tokens a stream)")

    def step(self, P, epoch, position, rng):
        """The window at `position`: x (t, B) inputs, y (t, B) the next tokens; the carried state in."""
        cfg, tc = self.config, self.tc
        p = position
        t = min(tc.seq_len, self.n - 1 - p)
        x = np.ascontiguousarray(self.streams[:, p:p + t].T)                  # (t, B)
        y = np.ascontiguousarray(self.streams[:, p + 1:p + 1 + t].T)          # (t, B)
        masks = model.dropout_masks(cfg, rng, t, tc.batch_size, tc.dropout, embed_p=tc.embed_dropout,
                                    locked=tc.locked_dropout)
        loss, grads, carry = model.loss_and_grads(cfg, P, x, y, self.carry, masks)

        def commit():
            self.carry = carry
        return loss, grads, x.size, commit

    def advance(self, position):
        position += self.tc.seq_len
        return position, position >= self.n - 1

    def new_epoch(self):
        self.carry = model.zero_state(self.config, self.tc.batch_size)   # each epoch starts from zero

    def evaluate(self, P):
        """valid_loss: nats per token; valid_bpc: bits per character of the same text, total NLL / ln 2 / chars."""
        sums, _ = evaluate.streams_nll(self.config, P, self.valid_streams)
        chars = self.corpus.valid_chars
        return {"valid_loss": float(sums.sum() / len(self.corpus.valid)),
                "valid_bpc": float(sums.sum() / math.log(2) / chars) if chars else None}

    def final_seconds(self, P) -> float:
        """final_metrics' time, foreseen: a single-stream pass over the first FINAL_PROBE validation tokens,
        timed and scaled to all of them (one token after another: the time grows with their number)."""
        valid = self.corpus.valid
        n = min(len(valid), FINAL_PROBE)
        began = time.perf_counter()
        evaluate.stream_nll(self.config, P, valid[:n])
        return (time.perf_counter() - began) * len(valid) / n

    def final_metrics(self, path):
        """The exact single-stream figures of the model saved at `path` (what `charlm perplexity` gives),
        also written into its metadata (valid_loss, valid_bpc), so that `charlm info` shows the figure the
        training summary gives rather than the fast estimate of training."""
        kept = checkpoint.load_model(path)
        valid = self.corpus.valid
        nll = evaluate.stream_nll(self.config, kept.params, valid)
        chars = self.corpus.valid_chars
        figures = {"valid_loss": nll / len(valid), "valid_bpc": nll / math.log(2) / chars if chars else None}
        meta = {**kept.meta, **{k: repr(v) for k, v in figures.items() if v is not None}}
        checkpoint.save_model(path, kept.params, kept.config, kept.vocab, meta)
        return figures

    def save_model(self, path, P, meta):
        checkpoint.save_model(path, P, self.config, self.vocab, {**meta, **tokenizer_metadata(self.vocab)})

    # ------------------------------------------------------------------------ run-state files

    @staticmethod
    def model_metadata(config, vocab) -> dict[str, str]:
        import json
        return {"config": config.to_json(), "vocab": json.dumps(list(vocab), ensure_ascii=False),
                **tokenizer_metadata(vocab)}

    @staticmethod
    def read_model_metadata(path, meta):
        config, vocab = checkpoint.check_config_and_vocab(path, meta)
        if config.level == "bpe":
            if not isinstance(meta.get("tokenizer"), str):
                raise ModelFileError(path, "a BPE model without its 'tokenizer' metadata")
            vocab = bpe.TokenList(vocab, meta["tokenizer"])
        return config, vocab

    @staticmethod
    def carried_shapes(config, train_config) -> dict[str, tuple]:
        return {"carry": (config.layers, 2, train_config["batch_size"], config.hidden)}

    @staticmethod
    def resume_fixed(st, values) -> dict:
        fixed = {name: getattr(st.config, key) for name, key in ARCH_OPTIONS.items()}
        fixed.update({name: st.run_config.get(name, values[name]) for name in DATA_OPTIONS})
        return fixed
