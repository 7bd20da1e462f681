"""Command-line option groups, defined once and shared by every command that trains or reads a model.

Each group is a decorator adding its click options; its keyword arguments set the defaults that differ
between commands. Parameter names are the config dataclass fields they fill (charlm.config), so a
command builds its configs from the parsed values by name (`pick`). Only click is imported here:
`charlm --help` stays fast.

Every value is checked here, by its click type (ranges, choices, finite numbers), while the command line
is parsed: a bad value is one `charlm: error:` line and exit 1 (charlm.cli), like every other problem with
an option, before anything is read or written. The config dataclasses check again for callers of the
Python API.
"""
from __future__ import annotations

import contextlib
import math
import re

import click


class Finite(click.FloatRange):
    """A FloatRange that also refuses inf and nan (click's own ranges let them through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


class SamplingShare(click.ParamType):
    """--class-sampling: none, sqrt, balanced, or the power q itself, a number in [0, 1] (kept as text,
    the form the training config stores; charlm.buckets.sampling_power reads it)."""

    name = "none|sqrt|balanced|Q"

    def convert(self, value, param, ctx):
        from charlm.errors import CharlmError
        from charlm.buckets import sampling_power
        try:
            q = sampling_power(str(value))
        except CharlmError:
            self.fail(f"{value!r} is none, sqrt, balanced or a number from 0 to 1", param, ctx)
        return value if value in ("sqrt", "balanced") else "none" if q == 1.0 else f"{q:g}"


def class_sampling_option(items="texts", prefix=""):
    text = (f"draw each epoch's {items} with replacement so that labels with few {items} come up more often: "
             f"label c gets a share ∝ count_c^Q; balanced is Q = 0 (every label the same share), sqrt "
             f"Q = 0.5, none Q = 1 (the data as it is).")
    return click.option("--class-sampling", type=SamplingShare(), default="none", show_default=True,
                        help=prefix + text if prefix else text[0].upper() + text[1:])


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads for the kernels (default: all cores).")(f)


def _apply(options):
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def tokenizer_options(level="char", levels=("char", "word"),
                      level_help="Tokens: characters, or whitespace-separated words."):
    """How text becomes tokens: --level, --lowercase, --min-count, --max-vocab, --encoding-errors."""
    return _apply([
        click.option("--level", type=click.Choice(list(levels)), default=level, show_default=True,
                     help=level_help),
        click.option("--lowercase", is_flag=True, help="Lower-case the text before lookup."),
        click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Tokens seen fewer times become <unk>."),
        click.option("--max-vocab", type=click.IntRange(min=3), default=None,
                     help="Keep at most this many tokens (the two specials included)."),
        click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict",
                     show_default=True, help="What to do with invalid UTF-8."),
    ])


def model_options(hidden=256, layers=2, bidirectional=True):
    """The recurrent stack: --cell, --activation, --gru-variant, --peephole, --layers, --hidden, --embed
    and (when the command allows it) --bidirectional."""
    options = [
        click.option("--cell", type=click.Choice(["rnn", "gru", "lstm"]), default="lstm", show_default=True),
        click.option("--activation", type=click.Choice(["tanh", "relu"]), default="tanh", show_default=True,
                     help="Nonlinearity of the rnn cell."),
        click.option("--gru-variant", type=click.Choice(["full", "minimal"]), default="full", show_default=True,
                     help="GRU with reset and update gates, or the update gate only."),
        click.option("--peephole", is_flag=True, help="LSTM with peephole connections."),
        click.option("--layers", type=click.IntRange(min=1), default=layers, show_default=True),
        click.option("--hidden", type=click.IntRange(min=1), default=hidden, show_default=True,
                     help="Hidden units per layer and direction."),
        click.option("--embed", type=click.IntRange(min=1), default=None, help="Embedding size [default: hidden]."),
    ]
    if bidirectional:
        options.append(click.option("--bidirectional", is_flag=True,
                                    help="Every layer also reads right to left; the directions are concatenated."))
    return _apply(options)


def optimizer_options(batch_size=32, lr_help="Learning rate [default: 0.002 adam, 1.0 sgd].",
                      dropout_help="Dropout between layers and before the output layer."):
    """How the parameters move: --batch-size, --optimizer, --lr, --momentum, --lr-decay, --lr-schedule,
    --clip, --dropout, --embed-dropout."""
    return _apply([
        click.option("--batch-size", type=click.IntRange(min=1), default=batch_size, show_default=True),
        click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True),
        click.option("--lr", type=Finite(min=0, min_open=True), default=None, help=lr_help),
        click.option("--momentum", type=Finite(0, 1, max_open=True), default=0.0, show_default=True,
                     help="SGD momentum."),
        click.option("--lr-decay", type=Finite(min=1), default=1.0, show_default=True,
                     help="Divide the learning rate by this each time validation does not improve."),
        click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant",
                     show_default=True,
                     help="cosine: lr * (1 + cos(pi * f)) / 2, f the fraction of the run done (by --max-steps, "
                          "--epochs or --time-budget, whichever ends it first)."),
        click.option("--clip", type=Finite(min=0), default=5.0, show_default=True,
                     help="Global gradient-norm clip (0 = off)."),
        click.option("--dropout", type=Finite(0, 1, max_open=True), default=0.0, show_default=True,
                     help=dropout_help),
        click.option("--embed-dropout", type=Finite(0, 1, max_open=True), default=0.0,
                     show_default=True, help="Dropout on the embedding (the first layer's input)."),
    ])


def run_options(out="model.safetensors", data="data",
                resume_help="Continue the run saved at --out (OUT.state) exactly where it stopped; given limits "
                            "replace the run's."):
    """Run control, as every training command has it: -o, --epochs, --max-steps, --time-budget, --valid-every,
    --keep, --seed, --checkpoint-every, --resume, --on-nonfinite, -q, --json, --threads."""
    return _apply([
        click.option("-o", "--out", default=out, show_default=True, type=click.Path(dir_okay=False),
                     help="Where the model goes (the best on validation, or the last with --keep last); "
                          "the run state for --resume goes beside it, in OUT.state."),
        click.option("--epochs", type=Finite(min=0), default=0,
                     help=f"Passes over the training {data} (0 = no limit)."),
        click.option("--max-steps", type=click.IntRange(min=0), default=0,
                     help="Optimizer steps of the whole run, resumed sessions included (0 = no limit)."),
        click.option("--time-budget", type=Finite(min=0), default=0,
                     help="Seconds of training of the whole run, resumed sessions included (0 = no limit)."),
        click.option("--valid-every", type=click.IntRange(min=0), default=0,
                     help="Steps between validations (0 = each epoch and about every minute)."),
        click.option("--keep", type=click.Choice(["best", "last"]), default="best", show_default=True,
                     help="What --out holds at the end."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Also save the run state every N steps; it is always saved at each validation, "
                          "on Ctrl-C and at the end."),
        click.option("--resume", is_flag=True, help=resume_help),
        click.option("--on-nonfinite", type=click.Choice(["stop", "skip"]), default="stop", show_default=True,
                     help="A NaN or infinite loss or gradient: stop (exit 3, the last good state saved), or "
                          "skip that step and go on."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        json_option,
        threads_option,
    ])


def pick(cls, values: dict, **overrides):
    """An instance of dataclass `cls` from the parsed option values of the same names. The dataclass names
    its fields in what it refuses (`lr_decay must be >= 1`); here, where they came from the command line,
    the message names the options instead (`--lr-decay must be >= 1`)."""
    import dataclasses
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in values.items() if k in names}
    kwargs.update(overrides)
    with as_flags(names & values.keys()):
        return cls(**kwargs)


@contextlib.contextmanager
def as_flags(names):
    """Inside it, a CharlmError that names any of the Python parameters `names` (top_k) says the
    command-line options instead (--top-k): the library speaks of its arguments, a command of the options
    they came from. A name inside a path, a longer word or quotes (label.tsv, --labeled, 'label') is left
    alone."""
    from charlm.errors import CharlmError
    try:
        yield
    except CharlmError as e:
        given = sorted(names, key=len, reverse=True)
        if given:
            pattern = re.compile(r"(?<![\w./'-])(" + "|".join(map(re.escape, given)) + r")(?![\w/'-]|\.\w)")
            e.args = (pattern.sub(lambda m: "--" + m.group(1).replace("_", "-"), str(e)),)
        raise
