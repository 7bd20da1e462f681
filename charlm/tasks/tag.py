"""The tagger (one tag per token) as a task of the training engine (charlm.engine).

Data: tagged sentences (charlm.conllu) become word ids with a word vocabulary from the training data
(--min-count, --max-vocab; forms with whitespace are <unk>), the letters of each word type as char ids
(the char vocabulary is every character of the training words, <unk> for the rest), and tag ids in
sorted tag order. Batches are bucketed by sentence length (charlm.buckets), drawn from (seed, epoch),
so the engine's position is the batch index. Word dropout: a training token whose word occurs once in
the training data becomes <unk> with probability --word-dropout, drawn from the engine's generator, so
<unk> learns what an unseen word looks like (its char vector stays the word's own); with
--word-dropout-alpha a > 0 instead, every token does with probability a / (a + count of its word). Nothing is carried
between batches. Validation reports the token loss and accuracy; accuracy keeps the best model.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from charlm import buckets, checkpoint, conllu, tag
from charlm.config import CHANGEABLE, RunConfig, TagConfig, _opt
from charlm.errors import CharlmError, ModelFileError
from charlm.vocab import UNK, Vocab


@dataclass(frozen=True)
class TagTrainConfig(RunConfig):
    """The tagger's training options: the engine's, and its input dropouts."""
    embed_dropout: float = _opt(0.0, CHANGEABLE)   # p of dropping a unit of the word stack's input
    word_dropout: float = _opt(0.25, CHANGEABLE)   # p of a once-seen training word becoming <unk>
    word_dropout_alpha: float = _opt(0.0, CHANGEABLE)  # > 0: every word becomes <unk> with p alpha/(alpha+count)

    def __post_init__(self):
        super().__post_init__()
        for name in ("embed_dropout", "word_dropout"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise CharlmError(f"--{name.replace('_', '-')} must be in [0, 1), got {v!r}")
        if not self.word_dropout_alpha >= 0:
            raise CharlmError(f"--word-dropout-alpha must be >= 0, got {self.word_dropout_alpha!r}")


@dataclass
class Encoded:
    """Sentences as ids: per sentence word ids, word type ids (into type_chars), tag ids (-1: a tag the
    model does not know) and whether each word is in the training vocabulary."""
    words: list[np.ndarray]
    types: list[np.ndarray]
    type_chars: list[np.ndarray]
    tags: list[np.ndarray]
    seen: list[np.ndarray]

    @property
    def tokens(self) -> int:
        return int(sum(len(w) for w in self.words))


def encode(sentences, vocab: Vocab, chars: dict, tags: dict | None = None) -> Encoded:
    """Word, type, tag ids of `sentences` (lists of words, or charlm.conllu.Sentence)."""
    types, type_chars = {}, []
    enc = Encoded([], [], type_chars, [], [])
    index, unk = vocab.index, vocab.unk_id
    for s in sentences:
        words = s.words if hasattr(s, "words") else s
        ids = np.array([index.get(w.lower() if vocab.lowercase else w, unk) for w in words], np.int32)
        enc.words.append(ids)
        enc.seen.append(ids != unk)
        t = np.empty(len(words), np.int64)
        for i, w in enumerate(words):
            u = types.get(w)
            if u is None:
                u = types[w] = len(type_chars)
                type_chars.append(np.array([chars.get(c, 0) for c in w], np.int32))
            t[i] = u
        enc.types.append(t)
        if tags is not None:
            enc.tags.append(np.array([tags.get(x, -1) for x in s.tags], np.int64))
    return enc


@dataclass
class TagData:
    vocab: Vocab                  # words
    chars: list[str]              # index = char id; chars[0] is <unk>
    tags: list[str]               # index = tag id
    train: Encoded
    valid: Encoded
    counts: list[np.ndarray]      # per training sentence: how often each token's word occurs in training
    column: int                   # 0-based tag column read
    format: str
    unknown_valid: dict           # validation tags the training data lacks -> token count


def build_tables(sentences, lowercase=False, min_count=1, max_vocab=None):
    """(word Vocab, char list, tag list, word counts) from training sentences."""
    counts, char_counts, tag_set = Counter(), Counter(), set()
    for s in sentences:
        counts.update(w.lower() if lowercase else w for w in s.words)
        for w in s.words:
            char_counts.update(w)
        tag_set.update(s.tags)
    usable = Counter({w: c for w, c in counts.items() if w.split() == [w]})
    vocab = Vocab.from_counts(usable, "word", lowercase, min_count, max_vocab)
    chars = [UNK] + [c for c, _ in sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return vocab, chars, sorted(tag_set), counts


def load_data(train_path, valid_path, format="auto", column="upos", lowercase=False, min_count=1, max_vocab=None,
              encoding_errors="strict") -> TagData:
    tr = conllu.read(train_path, format, column, encoding_errors)
    va = conllu.read(valid_path, format if format != "auto" else tr.format, column, encoding_errors)
    if tr.format != va.format:
        raise CharlmError(f"{valid_path} is {va.format}, {train_path} is {tr.format}")
    vocab, chars, tags, counts = build_tables(tr.sentences, lowercase, min_count, max_vocab)
    if len(tags) < 2:
        raise CharlmError(f"{train_path}: every token has the tag {tags[0]!r} in column {tr.column + 1}; a "
                          f"tagger needs at least two tags (wrong --column?)")
    tag_index = {t: i for i, t in enumerate(tags)}
    char_index = {c: i for i, c in enumerate(chars) if i}
    train = encode(tr.sentences, vocab, char_index, tag_index)
    valid = encode(va.sentences, vocab, char_index, tag_index)
    freq = [np.array([counts[w.lower() if lowercase else w] for w in s.words], np.int64) for s in tr.sentences]
    unknown = Counter(t for s in va.sentences for t in s.tags if t not in tag_index)
    return TagData(vocab, chars, tags, train, valid, freq, tr.column, tr.format, dict(unknown))


def _digest(enc: Encoded) -> str:
    h = hashlib.sha256()
    for w, t, y in zip(enc.words, enc.types, enc.tags):
        h.update(np.asarray(len(w), "<i8").tobytes())
        h.update(np.asarray(w, "<i4").tobytes())
        h.update(np.asarray(y, "<i8").tobytes())
        for u in t:
            h.update(np.asarray(enc.type_chars[u], "<i4").tobytes())
            h.update(b"\xff\xff\xff\xff")
    return h.hexdigest()


ARCH_OPTIONS = {"lowercase": "lowercase", "cell": "cell", "activation": "activation", "gru_variant": "gru_variant",
                "peephole": "peephole", "layers": "layers", "hidden": "hidden", "embed": "embed",
                "char_embed": "char_embed", "char_hidden": "char_hidden", "char": "char_features"}
DATA_OPTIONS = ("min_count", "max_vocab", "encoding_errors", "format", "column")


class TagTask:
    kind = "tag"
    train_config_class = TagTrainConfig
    higher_is_better = True
    metrics = ("valid_loss", "valid_accuracy")
    select = "valid_accuracy"
    label = "acc"

    def __init__(self, data: TagData, cfg: TagConfig, tc: TagTrainConfig):
        if cfg.tags != len(data.tags) or cfg.vocab_size != len(data.vocab) or cfg.chars != len(data.chars):
            raise CharlmError("the config's tags, words or chars do not match the data's")
        self.data, self.config, self.tc = data, cfg, tc
        self.vocab = {"tokens": data.vocab.tokens, "chars": list(data.chars), "tags": list(data.tags)}
        self.lengths = np.array([len(s) for s in data.train.words])
        self.steps_per_epoch = len(buckets.batches(self.lengths, tc.batch_size, tc.seed, 0))
        self.digests = {"train": _digest(data.train), "valid": _digest(data.valid)}
        self.reference_loss = float(np.log(cfg.tags))
        self._epoch_batches = (None, None)

    def init_params(self, rng):
        return tag.init_params(self.config, rng)

    def carried(self):
        return {}

    def restore(self, tensors):
        pass

    def check_position(self, position):
        if position >= self.steps_per_epoch:
            raise CharlmError(f"--resume: the saved batch {position} is past the epoch "
                              f"({self.steps_per_epoch} batches)")

    def _batches(self, epoch):
        if self._epoch_batches[0] != epoch:
            self._epoch_batches = (epoch, buckets.batches(self.lengths, self.tc.batch_size, self.tc.seed, epoch))
        return self._epoch_batches[1]

    def step(self, P, epoch, position, rng):
        d, tc, cfg = self.data.train, self.tc, self.config
        idx = self._batches(epoch)[position]
        words = [d.words[i] for i in idx]
        if tc.word_dropout > 0 or tc.word_dropout_alpha > 0:
            count = np.concatenate([self.data.counts[i] for i in idx])
            if tc.word_dropout_alpha > 0:                         # alpha / (alpha + count) for every word
                p = tc.word_dropout_alpha / (tc.word_dropout_alpha + count)
            else:                                                 # words seen once only
                p = np.where(count == 1, tc.word_dropout, 0.0)
            drop = rng.random(count.size) < p
            if drop.any():
                flat = np.concatenate(words)
                flat[drop] = cfg.unk_id
                words = np.split(flat, np.cumsum([len(w) for w in words])[:-1])
        batch = tag.make_batch(cfg, words, [d.types[i] for i in idx], d.type_chars)
        y = np.concatenate([d.tags[i] for i in idx])[batch.perm]
        masks, head_mask = tag.dropout_masks(cfg, rng, batch, tc.dropout, tc.embed_dropout)
        loss, grads = tag.loss_and_grads(cfg, P, batch, y, masks, head_mask)
        return loss, grads, batch.N, lambda: None

    def advance(self, position):
        return position + 1, position + 1 >= self.steps_per_epoch

    def new_epoch(self):
        pass

    def evaluate(self, P):
        v = self.data.valid
        prob = tag.probabilities(self.config, P, v.words, v.types, v.type_chars)
        p, y = np.concatenate(prob), np.concatenate(v.tags)
        known = y >= 0
        loss = float(-np.log(np.maximum(p[known, y[known]], 1e-300)).mean()) if known.any() else float("nan")
        return {"valid_loss": loss, "valid_accuracy": float((p.argmax(axis=1) == y).mean())}

    def final_metrics(self, path):
        return self.evaluate(checkpoint.load_model(path, task="tag").params)

    def save_model(self, path, P, meta):
        meta = dict(meta, task=self.kind, **{k: v for k, v in self.model_metadata(self.config, self.vocab).items()
                                             if k in ("chars", "tags")},
                    column=str(self.data.column + 1), input_format=self.data.format)
        checkpoint.save_model(path, P, self.config, self.data.vocab.tokens, meta)

    # ------------------------------------------------------------------------ run-state files

    @staticmethod
    def model_metadata(config, vocab) -> dict[str, str]:
        return {"config": config.to_json(), "vocab": json.dumps(list(vocab["tokens"]), ensure_ascii=False),
                "chars": json.dumps(list(vocab["chars"]), ensure_ascii=False),
                "tags": json.dumps(list(vocab["tags"]), ensure_ascii=False)}

    @staticmethod
    def read_model_metadata(path, meta):
        config, tokens = checkpoint.check_config_and_vocab(path, meta, TagConfig)
        chars, tags = read_tables(path, meta, config)
        return config, {"tokens": tokens, "chars": chars, "tags": tags}

    @staticmethod
    def carried_shapes(config, train_config) -> dict[str, tuple]:
        return {}

    @staticmethod
    def resume_fixed(st, values) -> dict:
        fixed = {name: getattr(st.config, key) for name, key in ARCH_OPTIONS.items()}
        fixed.update({name: st.run_config.get(name, values[name]) for name in DATA_OPTIONS})
        return fixed


def read_tables(path, meta, config) -> tuple[list[str], list[str]]:
    """The `chars` and `tags` metadata of a tagger file: JSON lists of distinct strings, config.chars
    characters (the first "<unk>", the others one character each) and config.tags non-empty tags."""
    out = []
    for key, n in (("chars", config.chars), ("tags", config.tags)):
        try:
            items = json.loads(meta[key])
        except KeyError:
            raise ModelFileError(path, f"metadata has no {key!r} key") from None
        except (ValueError, RecursionError) as e:
            raise ModelFileError(path, f"{key} metadata is not valid JSON: {checkpoint.one_line(e)}") from None
        if not (isinstance(items, list) and all(isinstance(x, str) and x for x in items)
                and len(set(items)) == len(items)):
            raise ModelFileError(path, f"{key} metadata must be a list of distinct non-empty strings")
        if len(items) != n:
            raise ModelFileError(path, f"config says {n} {key} but the {key} metadata has {len(items)}")
        if key == "chars" and not (items[0] == UNK and all(len(c) == 1 for c in items[1:])):
            raise ModelFileError(path, "chars metadata must be <unk> then single characters")
        out.append(items)
    return out[0], out[1]
