"""The many-to-one classifier as a task of the training engine (charlm.engine).

Data: labeled lines (charlm.labeled) become token ids with a vocabulary built from the training texts
(or taken from the language model given to --init-from) and label ids in sorted label order. Batches
are bucketed by length (charlm.buckets): texts of similar lengths together, the batch order shuffled
each epoch, all drawn from (seed, epoch), so the engine's position is simply the batch index; with
--class-sampling the epoch's texts are first drawn with replacement so that small labels come up more
often (buckets.sampled_batches, also from (seed, epoch)). Nothing is carried between batches. Validation reports loss, accuracy and macro-F1; --select decides which of
accuracy and macro-F1 keeps the best model.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from charlm import buckets, checkpoint, classify, labeled
from charlm.buckets import sampling_power
from charlm.config import CHANGEABLE, FIXED, ClassifyConfig, RunConfig, _opt
from charlm.errors import CharlmError, ModelFileError
from charlm.metrics import classification_report
from charlm.vocab import Vocab, normalize

SELECTS = ("accuracy", "macro_f1")
CLASS_WEIGHTS = ("none", "balanced", "sqrt")


@dataclass(frozen=True)
class ClassifyTrainConfig(RunConfig):
    """The classifier's training options: the engine's, and how its batches and loss are made."""
    embed_dropout: float = _opt(0.0, CHANGEABLE)   # p of dropping a unit of the embedding
    class_weights: str = _opt("none", FIXED)       # "balanced": class c weighs S / (C count_c); "sqrt": its root
    class_sampling: str = _opt("none", FIXED)      # draw texts so label c gets a share ∝ count_c^q (sampling_power)
    label_smoothing: float = _opt(0.0, CHANGEABLE)  # ε: the target is (1 - ε) one-hot + ε / C
    select: str = _opt("accuracy", FIXED)          # the validation metric that keeps the best model
    freeze_encoder: bool = _opt(False, CHANGEABLE)  # train the head only (embedding and stack fixed)

    def __post_init__(self):
        super().__post_init__()
        sampling_power(self.class_sampling)
        checks = [
            (0 <= self.embed_dropout < 1, f"embed_dropout must be in [0, 1), got {self.embed_dropout!r}"),
            (self.class_weights in CLASS_WEIGHTS, f"class_weights must be one of {CLASS_WEIGHTS}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}"),
            (self.select in SELECTS, f"select must be one of {SELECTS}, got {self.select!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharlmError(message)


@dataclass
class LabeledData:
    vocab: Vocab
    labels: list[str]            # label strings; index = label id
    train: list[np.ndarray]      # token ids of each training text (without the leading EOS)
    train_y: np.ndarray          # (S,) int64 label ids
    valid: list[np.ndarray]
    valid_y: np.ndarray
    dropped: int = 0             # validation lines whose label the training data lacks
    source: str = ""


def encode(vocab: Vocab, text: str) -> np.ndarray:
    """Token ids of one text (one line), without EOS."""
    text = normalize(text).replace("\n", " ")
    return vocab.encode_normalized(text.lower() if vocab.lowercase else text)


def load_data(train_path, valid_path, level="char", lowercase=False, min_count=1, max_vocab=None,
              format="auto", encoding_errors="strict", vocab: Vocab | None = None) -> LabeledData:
    """Read the training and validation files; the vocabulary from the training texts unless given."""
    tr = labeled.read(train_path, format, encoding_errors)
    va = labeled.read(valid_path, format, encoding_errors)
    labels = sorted(set(tr.labels))
    if len(labels) < 2:
        raise CharlmError(f"{train_path}: every line has the label {labels[0]!r}; a classifier or a language "
                          f"model conditioned on labels needs at least two")
    if vocab is None:
        counts = Counter()
        for text in tr.texts:
            t = normalize(text)
            t = t.lower() if lowercase else t
            counts.update(t if level == "char" else t.split())
        vocab = Vocab.from_counts(counts, level, lowercase, min_count, max_vocab)
        if len(vocab) <= 2:
            raise CharlmError(f"{train_path}: no token seen --min-count {min_count} times")
    index = {label: i for i, label in enumerate(labels)}
    known = [i for i, label in enumerate(va.labels) if label in index]
    if not known:
        raise CharlmError(f"{valid_path}: none of its labels occurs in {train_path}")
    return LabeledData(vocab=vocab, labels=labels,
                       train=[encode(vocab, t) for t in tr.texts],
                       train_y=np.array([index[label] for label in tr.labels], np.int64),
                       valid=[encode(vocab, va.texts[i]) for i in known],
                       valid_y=np.array([index[va.labels[i]] for i in known], np.int64),
                       dropped=len(va.labels) - len(known), source=str(train_path))


def _digest(seqs, y) -> str:
    h = hashlib.sha256(np.asarray(y, "<i8").tobytes())
    for s in seqs:
        h.update(np.asarray(len(s), "<i8").tobytes())
        h.update(np.asarray(s, "<i4").tobytes())
    return h.hexdigest()


ARCH_OPTIONS = {"level": "level", "lowercase": "lowercase", "cell": "cell", "activation": "activation",
                "gru_variant": "gru_variant", "peephole": "peephole", "bidirectional": "bidirectional",
                "layers": "layers", "hidden": "hidden", "embed": "embed", "pooling": "pooling"}
DATA_OPTIONS = ("min_count", "max_vocab", "encoding_errors", "format", "init_from")


class ClassifyTask:
    kind = "classify"
    train_config_class = ClassifyTrainConfig
    higher_is_better = True
    metrics = ("valid_loss", "valid_accuracy", "valid_macro_f1")

    def __init__(self, data: LabeledData, cfg: ClassifyConfig, tc: ClassifyTrainConfig, init: dict | None = None):
        if cfg.labels != len(data.labels):
            raise CharlmError(f"the config has {cfg.labels} labels, the data {len(data.labels)}")
        self.data, self.config, self.tc, self.init = data, cfg, tc, init
        self.select = "valid_" + tc.select
        self.label = "acc" if tc.select == "accuracy" else "F1"
        self.vocab = {"tokens": data.vocab.tokens, "labels": list(data.labels)}
        self.lengths = np.array([len(s) + 1 for s in data.train])           # with the leading EOS
        self.steps_per_epoch = len(buckets.batches(self.lengths, tc.batch_size, tc.seed, 0))
        self.digests = {"train": _digest(data.train, data.train_y), "valid": _digest(data.valid, data.valid_y)}
        counts = np.bincount(data.train_y, minlength=cfg.labels)
        self.counts = counts.tolist()                                      # saved as the file's label_counts
        if tc.class_weights != "none":
            if (counts == 0).any():
                raise CharlmError(f"--class-weights {tc.class_weights}: a label has no training line")
            self.weights = len(data.train_y) / (cfg.labels * counts)       # (C,)
            if tc.class_weights == "sqrt":
                self.weights = np.sqrt(self.weights)
        else:
            self.weights = None
        self._epoch_batches = (None, None)

    def init_params(self, rng):
        P = classify.init_params(self.config, rng)
        for name, value in (self.init or {}).items():
            P[name] = np.array(value, np.float32, order="C")
        return P

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
            tc = self.tc
            self._epoch_batches = (epoch, buckets.labeled_batches(self.lengths, self.data.train_y, tc.class_sampling,
                                                                  tc.batch_size, tc.seed, epoch))
        return self._epoch_batches[1]

    def step(self, P, epoch, position, rng):
        idx = self._batches(epoch)[position]
        layout, ids = classify.inputs([self.data.train[i] for i in idx], self.config.eos_id)
        masks, head_mask = classify.dropout_masks(self.config, rng, layout, self.tc.dropout, self.tc.embed_dropout)
        loss, grads = classify.loss_and_grads(self.config, P, layout, ids, self.data.train_y[idx], self.weights,
                                              masks, head_mask, self.tc.label_smoothing)
        if self.tc.freeze_encoder:
            for name in grads:
                if not name.startswith("head."):
                    grads[name][...] = 0.0
        return loss, grads, layout.N, lambda: None

    def advance(self, position):
        return position + 1, position + 1 >= self.steps_per_epoch

    def new_epoch(self):
        pass

    def evaluate(self, P):
        prob = classify.probabilities(self.config, P, self.data.valid, self.config.eos_id)
        y = self.data.valid_y
        report = classification_report(y, prob.argmax(axis=1), len(self.data.labels))
        loss = float(-np.log(np.maximum(prob[np.arange(len(y)), y], 1e-300)).mean())
        return {"valid_loss": loss, "valid_accuracy": report["accuracy"], "valid_macro_f1": report["macro_f1"]}

    def final_metrics(self, path):
        return self.evaluate(checkpoint.load_model(path, task="classify").params)

    def save_model(self, path, P, meta):
        meta = dict(meta, task=self.kind, labels=json.dumps(self.data.labels, ensure_ascii=False),
                    label_counts=json.dumps(self.counts))
        checkpoint.save_model(path, P, self.config, self.data.vocab.tokens, meta)

    # ------------------------------------------------------------------------ run-state files

    @staticmethod
    def model_metadata(config, vocab) -> dict[str, str]:
        return {"config": config.to_json(), "vocab": json.dumps(list(vocab["tokens"]), ensure_ascii=False),
                "labels": json.dumps(list(vocab["labels"]), ensure_ascii=False)}

    @staticmethod
    def read_model_metadata(path, meta):
        config, tokens = checkpoint.check_config_and_vocab(path, meta, ClassifyConfig)
        return config, {"tokens": tokens, "labels": read_labels(path, meta, config)}

    @staticmethod
    def carried_shapes(config, train_config) -> dict[str, tuple]:
        return {}

    @staticmethod
    def resume_fixed(st, values) -> dict:
        fixed = {name: getattr(st.config, key) for name, key in ARCH_OPTIONS.items()}
        fixed.update({name: st.run_config.get(name, values[name]) for name in DATA_OPTIONS})
        return fixed


def read_labels(path, meta, config) -> list[str]:
    """The `labels` metadata of a classifier file: a JSON list of config.labels distinct strings."""
    try:
        labels = json.loads(meta["labels"])
    except KeyError:
        raise ModelFileError(path, "metadata has no 'labels' key") from None
    except (ValueError, RecursionError) as e:
        raise ModelFileError(path, f"labels metadata is not valid JSON: {checkpoint.one_line(e)}") from None
    if not (isinstance(labels, list) and all(isinstance(x, str) and x for x in labels)
            and len(set(labels)) == len(labels)):
        raise ModelFileError(path, "labels metadata must be a list of distinct non-empty strings")
    if len(labels) != config.labels:
        raise ModelFileError(path, f"config says {config.labels} labels but the labels metadata has {len(labels)}")
    return labels


def encoder_from_lm(path, cfg: ClassifyConfig) -> tuple[dict, Vocab]:
    """The embedding and recurrent stack of the language model at `path` (--init-from), and its
    vocabulary; CharlmError when its architecture differs from cfg's."""
    lm = checkpoint.load_model(path)
    keys = ("cell", "activation", "gru_variant", "peephole", "layers", "hidden", "embed", "level", "lowercase")
    diff = [f"{k} {getattr(cfg, k)!r} (the model has {getattr(lm.config, k)!r})"
            for k in keys if getattr(cfg, k) != getattr(lm.config, k)]
    if diff:
        raise CharlmError(f"--init-from {path}: the classifier must have the language model's architecture: "
                          f"{', '.join(diff)}")
    if cfg.bidirectional:
        raise CharlmError(f"--init-from {path}: a language model has no right-to-left layers to start a "
                          f"bidirectional encoder from: drop --bidirectional")
    if lm.config.tokenize != "whitespace":     # the classifier would split its texts otherwise than the LM did
        raise CharlmError(f"--init-from {path}: the language model splits words with --tokenize "
                          f"{lm.config.tokenize}; a classifier splits at whitespace only: start from a model "
                          f"trained with --tokenize whitespace")
    vocab = Vocab(lm.vocab, lm.config.level, lm.config.lowercase, lm.config.unk_id, lm.config.eos_id)
    init = {k: v for k, v in lm.params.items() if k == "embedding.weight" or k.startswith("rnn.")}
    return init, vocab
