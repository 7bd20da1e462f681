"""A language model conditioned on labels (`charlm train --labeled`) as a task of the training engine.

Data: labeled lines (charlm.labeled), the vocabulary from the training texts, label ids in sorted label
order; each text is its own sequence (charlm.conditional: EOS first, EOS predicted last), batched by
length (charlm.buckets) and packed; with --class-sampling the epoch's lines are first drawn with
replacement so that small labels come up more often (buckets.sampled_batches, from (seed, epoch)), which
fits the generator to the labels with few lines, the ones a 52 %-Russian corpus otherwise under-trains.
Validation: the mean NLL per predicted token of the validation
lines, each given its own label. The model file is a language model's (task "lm") with the metadata
`conditional` (the label list) and `label_counts` (the training counts, the priors of Bayes' rule).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from charlm import buckets, checkpoint, conditional
from charlm.config import FIXED, ConditionalConfig, TrainConfig, _opt
from charlm.errors import CharlmError, ModelFileError
from charlm.buckets import sampling_power
from charlm.tasks.classify import ARCH_OPTIONS as CLASSIFY_ARCH, LabeledData, _digest

ARCH_OPTIONS = {k: v for k, v in CLASSIFY_ARCH.items() if k != "pooling"}
ARCH_OPTIONS.update(tie_weights="tied", condition="condition", label_embed="label_embed")
DATA_OPTIONS = ("min_count", "max_vocab", "encoding_errors", "format")


@dataclass(frozen=True)
class ConditionalTrainConfig(TrainConfig):
    """A language model's training options, and how the labeled lines are drawn."""
    class_sampling: str = _opt("none", FIXED)      # draw lines so label c gets a share ∝ count_c^q (sampling_power)

    def __post_init__(self):
        super().__post_init__()
        sampling_power(self.class_sampling)


class ConditionalLMTask:
    kind = "conditional-lm"
    train_config_class = ConditionalTrainConfig
    select, higher_is_better, metrics, label = "valid_loss", False, ("valid_loss",), "val"

    def __init__(self, data: LabeledData, cfg: ConditionalConfig, tc: TrainConfig):
        if cfg.labels != len(data.labels):
            raise CharlmError(f"the config has {cfg.labels} labels, the data {len(data.labels)}")
        self.data, self.config, self.tc = data, cfg, tc
        counts = np.bincount(data.train_y, minlength=cfg.labels)
        self.vocab = {"tokens": data.vocab.tokens, "labels": list(data.labels), "counts": counts.tolist()}
        self.lengths = np.array([len(s) + 1 for s in data.train])
        self.steps_per_epoch = len(buckets.batches(self.lengths, tc.batch_size, tc.seed, 0))
        self.digests = {"train": _digest(data.train, data.train_y), "valid": _digest(data.valid, data.valid_y)}
        self.reference_loss = math.log(cfg.vocab_size)              # a uniform guess, for the divergence rule
        self.valid_tokens = int(sum(len(s) + 1 for s in data.valid))
        self._epoch_batches = (None, None)

    def init_params(self, rng):
        return conditional.init_params(self.config, rng)

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
            sampling = getattr(tc, "class_sampling", "none")
            self._epoch_batches = (epoch, buckets.labeled_batches(self.lengths, self.data.train_y, sampling,
                                                                  tc.batch_size, tc.seed, epoch))
        return self._epoch_batches[1]

    def step(self, P, epoch, position, rng):
        idx = self._batches(epoch)[position]
        cfg, tc = self.config, self.tc
        layout, x, y, lab = conditional.inputs([self.data.train[i] for i in idx], self.data.train_y[idx], cfg.eos_id)
        masks, out_mask = conditional.dropout_masks(cfg, rng, layout, tc.dropout, tc.embed_dropout)
        loss, grads = conditional.loss_and_grads(cfg, P, layout, x, y, lab, masks, out_mask)
        return loss, grads, layout.N, lambda: None

    def advance(self, position):
        return position + 1, position + 1 >= self.steps_per_epoch

    def new_epoch(self):
        pass

    def evaluate(self, P):
        nll = conditional.text_nll(self.config, P, self.data.valid, self.data.valid_y, self.config.eos_id)
        return {"valid_loss": float(nll.sum() / self.valid_tokens)}

    def final_metrics(self, path):
        return self.evaluate(checkpoint.load_model(path).params)

    def save_model(self, path, P, meta):
        meta = dict(meta, task="lm", conditional=json.dumps(self.data.labels, ensure_ascii=False),
                    label_counts=json.dumps(self.vocab["counts"]))
        checkpoint.save_model(path, P, self.config, self.data.vocab.tokens, meta)

    # ------------------------------------------------------------------------ run-state files

    @staticmethod
    def model_metadata(config, vocab) -> dict[str, str]:
        return {"config": config.to_json(), "vocab": json.dumps(list(vocab["tokens"]), ensure_ascii=False),
                "conditional": json.dumps(list(vocab["labels"]), ensure_ascii=False),
                "label_counts": json.dumps(list(vocab["counts"]))}

    @staticmethod
    def read_model_metadata(path, meta):
        config, tokens = checkpoint.check_config_and_vocab(path, meta, ConditionalConfig)
        labels, counts = read_labels(path, meta, config)
        return config, {"tokens": tokens, "labels": labels, "counts": counts}

    @staticmethod
    def carried_shapes(config, train_config) -> dict[str, tuple]:
        return {}

    @staticmethod
    def resume_fixed(st, values) -> dict:
        fixed = {name: getattr(st.config, key) for name, key in ARCH_OPTIONS.items()}
        fixed.update({name: st.run_config.get(name, values[name]) for name in DATA_OPTIONS if name in values})
        return fixed


def read_labels(path, meta, config) -> tuple[list[str], list[int]]:
    """The `conditional` label list and `label_counts` of a conditional LM file."""
    try:
        labels = json.loads(meta["conditional"])
        counts = json.loads(meta.get("label_counts", "null"))
    except KeyError:
        raise ModelFileError(path, "metadata has no 'conditional' key") from None
    except (ValueError, RecursionError) as e:
        raise ModelFileError(path, f"conditional metadata is not valid JSON: {checkpoint.one_line(e)}") from None
    if not (isinstance(labels, list) and all(isinstance(x, str) and x for x in labels)
            and len(set(labels)) == len(labels) == config.labels):
        raise ModelFileError(path, f"conditional metadata must list {config.labels} distinct non-empty labels")
    if counts is None:
        counts = [1] * len(labels)
    if not (isinstance(counts, list) and len(counts) == len(labels)
            and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in counts)):
        raise ModelFileError(path, "label_counts metadata must be one positive count per label")
    return labels, counts
