"""Model configuration: the architecture keys stored in a model file's `config` metadata.

The JSON form and the tensor names follow docs/model-format.md (format "charlm/1").
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from charlm.errors import CharlmError

FORMAT = "charlm/1"
LEVELS = ("char", "word", "bpe")   # bpe: byte-level BPE subwords (charlm.bpe)
TOKENIZERS = ("whitespace", "words")   # word level: line.split() (charlm/1) | charlm.vocab.split_words
CELLS = ("rnn", "gru", "lstm")
ACTIVATIONS = ("tanh", "relu")
GRU_VARIANTS = ("full", "minimal")


@dataclass(frozen=True)
class ModelConfig:
    level: str = "char"          # "char": one token per code point; "word": words; "bpe": subwords (charlm.bpe)
    cell: str = "lstm"           # recurrent cell: "rnn" | "gru" | "lstm"
    layers: int = 2              # stacked recurrent layers, each feeding the next
    hidden: int = 256            # H: hidden units per layer and direction
    embed: int = 256             # E: embedding size (the input size of layer 0)
    vocab_size: int = 2          # V: tokens in the vocabulary, specials included
    unk_id: int = 0              # id of <unk>
    eos_id: int = 1              # id of <eos>
    lowercase: bool = False      # text is lower-cased before lookup
    tied: bool = False           # decoder.weight is embedding.weight (needs embed == hidden)
    activation: str = "tanh"     # rnn only: "tanh" | "relu"
    gru_variant: str = "full"    # gru only: "full" (r, z, n) | "minimal" (z, n)
    peephole: bool = False       # lstm only: diagonal peephole weights p_i, p_f, p_o
    bidirectional: bool = False  # every layer also runs right to left (not for language models)
    tokenize: str = "whitespace"  # word level: "whitespace" (line.split()) | "words" (punctuation split off)

    def __post_init__(self):
        checks = [
            (self.level in LEVELS, f"level must be one of {LEVELS}, got {self.level!r}"),
            (self.tokenize in TOKENIZERS, f"tokenize must be one of {TOKENIZERS}, got {self.tokenize!r}"),
            (self.tokenize == "whitespace" or self.level == "word",
             f"tokenize {self.tokenize!r} is for level 'word', got level {self.level!r}"),
            (self.cell in CELLS, f"cell must be one of {CELLS}, got {self.cell!r}"),
            (self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}, got {self.activation!r}"),
            (self.gru_variant in GRU_VARIANTS, f"gru_variant must be one of {GRU_VARIANTS}, got {self.gru_variant!r}"),
            (_posint(self.layers), f"layers must be a positive integer, got {self.layers!r}"),
            (_posint(self.hidden), f"hidden must be a positive integer, got {self.hidden!r}"),
            (_posint(self.embed), f"embed must be a positive integer, got {self.embed!r}"),
            (_posint(self.vocab_size) and self.vocab_size >= 2,
             f"vocab_size must be an integer >= 2, got {self.vocab_size!r}"),
            (_id_ok(self.unk_id, self.vocab_size) and _id_ok(self.eos_id, self.vocab_size)
             and self.unk_id != self.eos_id, f"unk_id {self.unk_id!r} and eos_id {self.eos_id!r} must be distinct ids below vocab_size"),
            (not self.tied or self.embed == self.hidden,
             f"tied weights need embed == hidden, got embed {self.embed} and hidden {self.hidden}"),
            (not (self.tied and self.bidirectional), "tied weights need a unidirectional model"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharlmError(message)
        for name in ("lowercase", "tied", "peephole", "bidirectional"):
            if not isinstance(getattr(self, name), bool):
                raise CharlmError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def gates(self) -> int:
        """G: gate blocks stacked in weight_ih / weight_hh."""
        if self.cell == "lstm":
            return 4
        if self.cell == "gru":
            return 3 if self.gru_variant == "full" else 2
        return 1

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_input(self, k: int) -> int:
        """In: the input size of layer k."""
        return self.embed if k == 0 else self.hidden * self.directions

    def tensor_count(self) -> int:
        """len(param_shapes()), computed without listing them (a damaged config may ask for 10**9 layers)."""
        per_layer = 5 if self.cell == "lstm" and self.peephole else 4
        return 1 + self.layers * self.directions * per_layer + (0 if self.tied else 1) + 1

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of a model file with its shape, in a stable order."""
        V, E, H, G = self.vocab_size, self.embed, self.hidden, self.gates
        shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (V, E)}
        for k in range(self.layers):
            for suffix in ("", "_reverse")[: self.directions]:
                shapes[f"rnn.weight_ih_l{k}{suffix}"] = (G * H, self.layer_input(k))
                shapes[f"rnn.weight_hh_l{k}{suffix}"] = (G * H, H)
                shapes[f"rnn.bias_ih_l{k}{suffix}"] = (G * H,)
                shapes[f"rnn.bias_hh_l{k}{suffix}"] = (G * H,)
                if self.cell == "lstm" and self.peephole:
                    shapes[f"rnn.weight_peep_l{k}{suffix}"] = (3, H)
        if not self.tied:
            shapes["decoder.weight"] = (V, H * self.directions)
        shapes["decoder.bias"] = (V,)
        return shapes

    def to_json(self) -> str:
        """The spec's `config` metadata: only the keys that apply to this cell are written, and `tokenize`
        only when it is not the charlm/1 rule ("whitespace"), so such files stay byte for byte as before."""
        d = dataclasses.asdict(self)
        if self.tokenize == "whitespace":
            del d["tokenize"]
        if self.cell != "rnn":
            del d["activation"]
        if self.cell != "gru":
            del d["gru_variant"]
        if self.cell != "lstm":
            del d["peephole"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, vocab_size: int) -> "ModelConfig":
        """Parse `config` metadata; unknown keys are ignored, missing required ones are an error."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise CharlmError("config metadata is not a JSON object")
        required = ("level", "cell", "layers", "hidden", "embed", "unk_id", "eos_id", "lowercase", "tied")
        missing = [k for k in required if k not in d]
        if missing:
            raise CharlmError(f"config metadata lacks {', '.join(missing)}")
        if "vocab_size" in d and d["vocab_size"] != vocab_size:
            raise CharlmError(f"config says vocab_size {d['vocab_size']} but the vocabulary has {vocab_size} tokens")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        kwargs["vocab_size"] = vocab_size
        return cls(**kwargs)

    def describe(self) -> str:
        """A short human name such as 'lstm 2x256 (char)'."""
        name = self.cell
        if self.cell == "rnn":
            name += f"-{self.activation}"
        elif self.cell == "gru":
            name += f"-{self.gru_variant}"
        elif self.peephole:
            name += "-peephole"
        if self.bidirectional:
            name = "bi" + name
        how = self.level if self.tokenize == "whitespace" else f"{self.level}, {self.tokenize}"
        return f"{name} {self.layers}x{self.hidden} ({how})"


POOLINGS = ("last", "mean", "max")


@dataclass(frozen=True)
class ClassifyConfig(ModelConfig):
    """A many-to-one classifier: the LM's embedding and recurrent stack, pooled, then a linear head.

    Tensors: embedding.weight and rnn.* as ModelConfig's (nn.Embedding, nn.LSTM/GRU/RNN), then
    head.weight (C, H*dirs) and head.bias (C,) (nn.Linear); no decoder.
    """
    labels: int = 2              # C: classes
    pooling: str = "last"        # "last": final state of each direction | "mean" | "max" over positions

    def __post_init__(self):
        super().__post_init__()
        if self.tied:
            raise CharlmError("a classifier has no decoder to tie to the embedding")
        if not (_posint(self.labels) and self.labels >= 2):
            raise CharlmError(f"labels must be an integer >= 2, got {self.labels!r}")
        if self.pooling not in POOLINGS:
            raise CharlmError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {k: v for k, v in super().param_shapes().items() if not k.startswith("decoder.")}
        shapes["head.weight"] = (self.labels, self.hidden * self.directions)
        shapes["head.bias"] = (self.labels,)
        return shapes

    def describe(self) -> str:
        return f"{super().describe()}, {self.pooling} pooling, {self.labels} labels"


@dataclass(frozen=True)
class TagConfig(ModelConfig):
    """A many-to-many tagger: per token, a word embedding and (char_features) the final states of a
    character BiRNN over the word's letters, into a stack of recurrent layers, then a linear head.

    Tensors: embedding.weight (V, E) (nn.Embedding); char_embedding.weight (chars, char_embed) and
    char_rnn.* (one bidirectional layer of `cell`, nn.LSTM/GRU/RNN names) when char_features; rnn.* whose
    layer 0 reads embed + 2 char_hidden inputs; head.weight (C, H*dirs), head.bias (C,) (nn.Linear).
    """
    level: str = "word"          # the word vocabulary is word level
    bidirectional: bool = True   # the word stack reads both ways (a tagger sees the words after a word)
    tags: int = 2                # C: tags
    chars: int = 2               # characters in the char vocabulary, <unk> included
    char_embed: int = 32         # size of a character's embedding
    char_hidden: int = 64        # hidden units of the char BiRNN per direction
    char_features: bool = True   # False: words only (--no-char)

    def __post_init__(self):
        super().__post_init__()
        checks = [
            (self.level == "word", f"a tagger's vocabulary is word level, got level {self.level!r}"),
            (not self.tied, "a tagger has no decoder to tie to the embedding"),
            (_posint(self.tags) and self.tags >= 2, f"tags must be an integer >= 2, got {self.tags!r}"),
            (_posint(self.chars), f"chars must be a positive integer, got {self.chars!r}"),
            (_posint(self.char_embed), f"char_embed must be a positive integer, got {self.char_embed!r}"),
            (_posint(self.char_hidden), f"char_hidden must be a positive integer, got {self.char_hidden!r}"),
            (isinstance(self.char_features, bool), f"char_features must be true or false, got {self.char_features!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharlmError(message)

    def layer_input(self, k: int) -> int:
        return self.embed + (2 * self.char_hidden if self.char_features else 0) if k == 0 else super().layer_input(k)

    def stack_config(self) -> ModelConfig:
        """The word stack as charlm.packed sees it: its layer 0 reads layer_input(0) values."""
        return ModelConfig(level="word", cell=self.cell, layers=self.layers, hidden=self.hidden,
                           embed=self.layer_input(0), activation=self.activation, gru_variant=self.gru_variant,
                           peephole=self.peephole, bidirectional=self.bidirectional)

    def char_config(self) -> ModelConfig:
        """The char BiRNN: one bidirectional layer of the same cell over char_embed inputs."""
        return ModelConfig(level="char", cell=self.cell, layers=1, hidden=self.char_hidden, embed=self.char_embed,
                           activation=self.activation, gru_variant=self.gru_variant, peephole=self.peephole,
                           bidirectional=True)

    def tensor_count(self) -> int:
        per_layer = 5 if self.cell == "lstm" and self.peephole else 4
        return 1 + self.layers * self.directions * per_layer + 2 + (1 + 2 * per_layer if self.char_features else 0)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"embedding.weight": (self.vocab_size, self.embed)}
        if self.char_features:
            shapes["char_embedding.weight"] = (self.chars, self.char_embed)
            shapes.update({"char_" + k: v for k, v in self.char_config().param_shapes().items()
                           if k.startswith("rnn.")})
        shapes.update({k: v for k, v in super().param_shapes().items() if k.startswith("rnn.")})
        shapes["head.weight"] = (self.tags, self.hidden * self.directions)
        shapes["head.bias"] = (self.tags,)
        return shapes

    def describe(self) -> str:
        chars = f" + char bi{self.cell} {self.char_hidden}" if self.char_features else " (no char)"
        return f"{super().describe()}{chars}, {self.tags} tags"


CONDITIONS = ("input", "state")


@dataclass(frozen=True)
class ConditionalConfig(ModelConfig):
    """A language model conditioned on a label l (one-to-many): a learned label embedding e_l (C, Lab)
    enters either every step of layer 0 (condition "input": its input is [E[x_t], e_l]) or the initial
    state of every layer (condition "state": h_0^k = tanh(init.weight_k e_l + init.bias_k), c_0 = 0).

    Tensors beyond the language model's: label_embedding.weight (C, Lab); for "input", rnn.weight_ih_l0
    is (G*H, E + Lab); for "state", init.weight (L*H, Lab) and init.bias (L*H,), layer k's rows k*H..(k+1)*H.
    """
    condition: str = "input"     # "input" | "state"
    labels: int = 2              # C: the labels it is conditioned on
    label_embed: int = 16        # Lab: size of the label embedding

    def __post_init__(self):
        super().__post_init__()
        if self.condition not in CONDITIONS:
            raise CharlmError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if not (_posint(self.labels) and self.labels >= 2):
            raise CharlmError(f"labels must be an integer >= 2, got {self.labels!r}")
        if not _posint(self.label_embed):
            raise CharlmError(f"label_embed must be a positive integer, got {self.label_embed!r}")
        if self.bidirectional:
            raise CharlmError("a conditional language model is unidirectional")

    def layer_input(self, k: int) -> int:
        extra = self.label_embed if k == 0 and self.condition == "input" else 0
        return super().layer_input(k) + extra

    def tensor_count(self) -> int:
        return super().tensor_count() + (1 if self.condition == "input" else 3)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().param_shapes()
        shapes["label_embedding.weight"] = (self.labels, self.label_embed)
        if self.condition == "state":
            shapes["init.weight"] = (self.layers * self.hidden, self.label_embed)
            shapes["init.bias"] = (self.layers * self.hidden,)
        return shapes

    def unconditional(self) -> ModelConfig:
        """The plain language model that this one is for a fixed label (charlm.conditional.fold)."""
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in fields})

    def describe(self) -> str:
        return f"{super().describe()}, conditioned on {self.labels} labels ({self.condition})"


ATTENTIONS = ("none", "dot", "general", "additive")


@dataclass(frozen=True)
class Seq2SeqConfig(ModelConfig):
    """An encoder-decoder (charlm.seq2seq): the inherited keys describe the encoder and the source side
    (level, vocab_size, unk_id, eos_id, lowercase, cell, layers, hidden, embed, bidirectional); the
    decoder is a unidirectional stack of the same cell over the target vocabulary.

    Tensors (docs/seq2seq.md): source_embedding.weight, encoder.* (nn.LSTM/GRU/RNN names), target_embedding
    .weight, decoder.*, bridge.weight/bias, attention.* and combine.weight with attention, output.weight/bias.
    """
    bidirectional: bool = True   # the encoder reads both ways
    target_level: str = "word"   # "word": space-separated target tokens (phonemes) | "char"
    target_vocab_size: int = 2   # Vt: target tokens, specials included (the `target_vocab` metadata)
    target_unk_id: int = 0       # id of <unk> in the target vocabulary
    target_eos_id: int = 1       # id of <eos> there: the decoder's start and end token
    decoder_layers: int = 1      # Ld: stacked decoder layers
    decoder_hidden: int = 256    # Hd: decoder hidden units (dot attention: = hidden * directions)
    target_embed: int = 256      # Et: target embedding size
    attention: str = "general"   # "none" | "dot" | "general" | "additive" (Luong scores over encoder outputs)

    def __post_init__(self):
        super().__post_init__()
        checks = [
            (not self.tied, "an encoder-decoder has no LM decoder to tie"),
            (self.target_level in LEVELS, f"target_level must be one of {LEVELS}, got {self.target_level!r}"),
            (_posint(self.target_vocab_size) and self.target_vocab_size >= 3,
             f"target_vocab_size must be an integer >= 3, got {self.target_vocab_size!r}"),
            (_id_ok(self.target_unk_id, self.target_vocab_size) and _id_ok(self.target_eos_id, self.target_vocab_size)
             and self.target_unk_id != self.target_eos_id, "target_unk_id and target_eos_id must be distinct ids"),
            (_posint(self.decoder_layers), f"decoder_layers must be a positive integer, got {self.decoder_layers!r}"),
            (_posint(self.decoder_hidden), f"decoder_hidden must be a positive integer, got {self.decoder_hidden!r}"),
            (_posint(self.target_embed), f"target_embed must be a positive integer, got {self.target_embed!r}"),
            (self.attention in ATTENTIONS, f"attention must be one of {ATTENTIONS}, got {self.attention!r}"),
            (self.attention != "dot" or self.decoder_hidden == self.hidden * self.directions,
             f"dot attention needs decoder_hidden == hidden * directions ({self.hidden * self.directions}), "
             f"got {self.decoder_hidden}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharlmError(message)

    def encoder_config(self) -> ModelConfig:
        return ModelConfig(level=self.level, cell=self.cell, layers=self.layers, hidden=self.hidden, embed=self.embed,
                           activation=self.activation, gru_variant=self.gru_variant, peephole=self.peephole,
                           bidirectional=self.bidirectional)

    def decoder_config(self) -> ModelConfig:
        return ModelConfig(level=self.target_level, cell=self.cell, layers=self.decoder_layers,
                           hidden=self.decoder_hidden, embed=self.target_embed, activation=self.activation,
                           gru_variant=self.gru_variant, peephole=self.peephole)

    @property
    def bridge_states(self) -> int:
        """S: states per decoder layer the bridge makes (h and c for an LSTM, h otherwise)."""
        return 2 if self.cell == "lstm" else 1

    def tensor_count(self) -> int:
        per_layer = 5 if self.cell == "lstm" and self.peephole else 4
        extra = {"none": 0, "dot": 1, "general": 2, "additive": 4}[self.attention]
        return 2 + (self.layers * self.directions + self.decoder_layers) * per_layer + 4 + extra

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        Hw, Hd = self.hidden * self.directions, self.decoder_hidden
        shapes = {"source_embedding.weight": (self.vocab_size, self.embed)}
        shapes.update({"encoder." + k[4:]: v for k, v in self.encoder_config().param_shapes().items()
                       if k.startswith("rnn.")})
        shapes["target_embedding.weight"] = (self.target_vocab_size, self.target_embed)
        shapes.update({"decoder." + k[4:]: v for k, v in self.decoder_config().param_shapes().items()
                       if k.startswith("rnn.")})
        shapes["bridge.weight"] = (self.decoder_layers * self.bridge_states * Hd, Hw)
        shapes["bridge.bias"] = (self.decoder_layers * self.bridge_states * Hd,)
        if self.attention == "general":
            shapes["attention.weight"] = (Hd, Hw)
        elif self.attention == "additive":
            shapes["attention.query.weight"] = (Hd, Hd)
            shapes["attention.key.weight"] = (Hd, Hw)
            shapes["attention.v.weight"] = (1, Hd)
        if self.attention != "none":
            shapes["combine.weight"] = (Hd, Hw + Hd)
        shapes["output.weight"] = (self.target_vocab_size, Hd)
        shapes["output.bias"] = (self.target_vocab_size,)
        return shapes

    def describe(self) -> str:
        return (f"{super().describe()} encoder, {self.cell} {self.decoder_layers}x{self.decoder_hidden} "
                f"({self.target_level}) decoder, attention {self.attention}")


# The config class of each task's model files (metadata `task`; absent = "lm").
TASK_CONFIGS = {"lm": ModelConfig, "classify": ClassifyConfig, "tag": TagConfig,
                "seq2seq": Seq2SeqConfig}


def _posint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _id_ok(v, n) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n


# How `--resume` treats a run option: "fixed" (the run keeps it; a different value is an error), "changeable"
# (a given value replaces the run's from the resumed step on), "limit" (given limits replace all of the run's).
FIXED, CHANGEABLE, LIMIT = "fixed", "changeable", "limit"


def _opt(default, resume):
    return field(default=default, metadata={"resume": resume})


@dataclass(frozen=True)
class RunConfig:
    """The training engine's options, shared by every task (charlm.engine)."""
    batch_size: int = _opt(32, FIXED)          # B: sequences (or streams) in a batch
    optimizer: str = _opt("adam", FIXED)       # "adam" | "sgd"
    lr: float = _opt(2e-3, CHANGEABLE)         # learning rate
    momentum: float = _opt(0.0, CHANGEABLE)    # sgd only
    lr_decay: float = _opt(1.0, CHANGEABLE)    # divide lr by this when validation stops improving (1 = never)
    clip: float = _opt(5.0, CHANGEABLE)        # global gradient-norm clip; 0 turns it off
    dropout: float = _opt(0.0, CHANGEABLE)     # p of dropping a unit between layers and before the output
    lr_schedule: str = _opt("constant", CHANGEABLE)  # "constant" | "cosine": lr · ½(1 + cos(π · fraction done))
    epochs: float = _opt(0, LIMIT)             # passes over the training data (0 = no limit)
    max_steps: int = _opt(0, LIMIT)            # optimizer steps of the whole run (0 = no limit)
    time_budget: float = _opt(0, LIMIT)        # seconds of training (0 = no limit)
    valid_every: int = _opt(0, CHANGEABLE)     # steps between validations (0: about every 2 % of the run, each epoch)
    seed: int = _opt(0, FIXED)                 # seeds initialisation, dropout and the data order
    keep: str = _opt("best", CHANGEABLE)       # what --out holds at the end: "best" on validation | "last"

    def __post_init__(self):
        checks = [
            (_posint(self.batch_size), f"batch_size must be a positive integer, got {self.batch_size!r}"),
            (self.optimizer in ("adam", "sgd"), f"optimizer must be adam or sgd, got {self.optimizer!r}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr!r}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum!r}"),
            (self.lr_decay >= 1, f"lr_decay must be >= 1, got {self.lr_decay!r}"),
            (self.clip >= 0, f"clip must be >= 0 (0 = off), got {self.clip!r}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}"),
            (self.lr_schedule in ("constant", "cosine"),
             f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}"),
            (self.lr_schedule == "constant" or self.lr_decay == 1,
             f"lr_schedule cosine sets the learning rate itself: drop lr_decay {self.lr_decay!r}"),
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs!r}"),
            (self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps!r}"),
            (self.time_budget >= 0, f"time_budget must be >= 0, got {self.time_budget!r}"),
            (self.valid_every >= 0, f"valid_every must be >= 0, got {self.valid_every!r}"),
            (self.keep in ("best", "last"), f"keep must be best or last, got {self.keep!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharlmError(message)

    @classmethod
    def options(cls, resume: str) -> tuple[str, ...]:
        """The fields that --resume treats as `resume` (FIXED, CHANGEABLE or LIMIT), in field order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resume") == resume)


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """The language model's training options: the engine's, and how the token stream is read."""
    seq_len: int = _opt(64, FIXED)             # T: truncated-BPTT window; the state carries across windows
    embed_dropout: float = _opt(0.0, CHANGEABLE)   # p of dropping a unit of the embedding (layer 0's input)
    locked_dropout: bool = _opt(False, CHANGEABLE)  # one mask per window for all time steps (variational dropout)
    valid_fraction: float = _opt(0.05, FIXED)  # tail of the corpus held out when no --valid file is given

    def __post_init__(self):
        super().__post_init__()
        checks = [
            (_posint(self.seq_len), f"seq_len must be a positive integer, got {self.seq_len!r}"),
            (0 <= self.embed_dropout < 1, f"embed_dropout must be in [0, 1), got {self.embed_dropout!r}"),
            (0 < self.valid_fraction < 1, f"valid_fraction must be in (0, 1), got {self.valid_fraction!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharlmError(message)
