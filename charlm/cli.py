"""The command line: parse options, call the library, print. Nothing here imports NumPy or Numba at
module level, so `charlm --help` starts fast; each command imports what it needs when it runs.

Errors the user can fix (CharlmError) print one line on stderr and exit 1 (or the error's own
`exit_code`: 3 when training diverged); a training run stopped by Ctrl-C (SIGINT) or SIGTERM saves a
resumable checkpoint and exits 130 or 143; anything unexpected prints one line and exits 2 (`--debug`
shows the traceback).
"""
from __future__ import annotations

import json
import math
import os
import sys

import click

from charlm import __version__
from charlm.options import (Finite, as_flags, class_sampling_option, json_option, model_options, optimizer_options,
                            pick, run_options, threads_option, tokenizer_options)

EXIT_ERROR = 1
EXIT_INTERNAL = 2
EXIT_INTERRUPTED = 130     # 128 + SIGINT
EXIT_TERMINATED = 143      # 128 + SIGTERM
EXIT_BROKEN_PIPE = 141     # 128 + SIGPIPE: stdout closed early (`charlm ... | head`)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# charlm's kernels run their own threads and call BLAS from each: a BLAS thread pool would fight them
# for the cores (see charlm.threads). Set before NumPy loads; a user's explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class CharlmGroup(click.Group):
    """Maps charlm's errors to one line on stderr and a non-zero exit."""

    def invoke(self, ctx):
        if sys.stdout is None:               # `charlm ... >&-`: click would drop every line silently
            click.echo("charlm: error: standard output is closed: nowhere to print the results", err=True)
            sys.exit(EXIT_ERROR)
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.UsageError as e:        # a bad value, a missing argument, an unknown option: one line and
            if ctx.obj and ctx.obj.get("debug"):    # exit 1 like every other problem with an option (2 is
                raise                               # an internal error)
            where = e.ctx.command_path if e.ctx else ctx.command_path
            click.echo(f"charlm: error: {e.format_message().rstrip('.')} (see '{where} -h')", err=True)
            sys.exit(EXIT_ERROR)
        except click.ClickException:
            raise
        except BrokenPipeError:              # `charlm ... | head`: the reader left; stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
        except (click.Abort, KeyboardInterrupt):
            click.echo("charlm: interrupted", err=True)
            if sys.stdout is sys.__stdout__:  # a real process, not a test runner: exit now. A compiled loop
                for stream in (sys.stdout, sys.stderr):   # may still run (generate.interruptible) and freeing
                    try:                                  # a large result takes seconds; every file was
                        stream.flush()                    # closed or removed on the way here
                    except (OSError, ValueError):
                        pass
                os._exit(EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)
        except OSError as e:                 # files are CharlmErrors: this is the output (`>/dev/full`)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _drop_stdout()
            click.echo(f"charlm: error: cannot write the output: {e.strerror or e}", err=True)
            sys.exit(EXIT_ERROR)
        except Exception as e:
            from charlm.errors import CharlmError
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(e, CharlmError):
                click.echo(f"charlm: error: {e}", err=True)
                sys.exit(getattr(e, "exit_code", EXIT_ERROR))
            if isinstance(e, MemoryError):
                click.echo("charlm: error: out of memory: try a smaller --batch-size, --hidden or corpus", err=True)
                sys.exit(EXIT_ERROR)
            click.echo(f"charlm: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                       err=True)
            sys.exit(EXIT_INTERNAL)


def _drop_stdout():
    """Point stdout at /dev/null so that the exit's flush of what is left cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def model_option(f):
    return click.option("-m", "--model", "model_path", envvar="CHARLM_MODEL", default="model.safetensors",
                        show_default=True, type=click.Path(dir_okay=False),
                        help="Model file (else $CHARLM_MODEL, else ./model.safetensors).")(f)


def set_threads(n):
    """Size Numba's thread pool to n, if Numba has not loaded yet (BLAS runs single-threaded inside
    charlm's calls). Each command also runs its work inside compute_threads(n), which sets how many of the
    pool's threads work, for that command only (a second command in one process, as in tests)."""
    if not n:
        return
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(n)


def compute_threads(n):
    """The library's thread scope (loaded only when a command runs: it imports Numba)."""
    from charlm.threads import compute_threads as scope
    return scope(n)


def _load_lm(path):
    """The language model at `path` (charlm.lm.LanguageModel); another task's file is a one-line error."""
    from charlm.lm import LanguageModel
    return LanguageModel.load(path)


@click.group(cls=CharlmGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="charlm")
@click.option("--debug", is_flag=True, help="Show the Python traceback on errors.")
@click.pass_context
def main(ctx, debug):
    """charlm: character- and word-level recurrent language models.

    Train on plain text, sample novel text, score sentences, measure perplexity.

    \b
    Examples:
      charlm train input.txt --hidden 256 --time-budget 600
      charlm sample --temp 0.8 --prime "ROMEO:"
      charlm score "To be, or not to be"
      charlm perplexity valid.txt
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@main.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, type=click.Path())
@tokenizer_options(levels=("char", "word", "bpe"),
                   level_help="Tokens: characters, words, or byte-pair-encoding subwords learned from the text.")
@click.option("--vocab-size", "bpe_vocab_size", type=click.IntRange(min=258), default=None,
              help="--level bpe: tokens of the byte-pair encoding learned from the training text [default: 4000].")
@click.option("--tokenize", type=click.Choice(["whitespace", "words"]), default="whitespace", show_default=True,
              help="--level word: split at whitespace only (pre-tokenized text), or also split punctuation and "
                   "symbols from words (raw text; docs/language-model.md).")
@model_options(hidden=256, layers=2, bidirectional=False)
@click.option("--bidirectional", is_flag=True, hidden=True)
@click.option("--tie-weights", is_flag=True, help="Decoder shares the embedding (needs embed == hidden).")
@optimizer_options(batch_size=32, dropout_help="Dropout between layers and before the decoder.")
@click.option("--locked-dropout", is_flag=True,
              help="Drop the same units at every step of a window (variational dropout) instead of new "
                   "ones at each step.")
@click.option("--seq-len", type=click.IntRange(min=1), default=64, show_default=True, help="Truncated-BPTT window.")
@click.option("--valid", "valid_path", type=click.Path(), default=None, help="Validation text file.")
@click.option("--valid-fraction", type=Finite(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Without --valid: the corpus' tail held out for validation.")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None,
              help="Start a new run from this model's architecture, tokenizer and weights (fine-tuning on new "
                   "text), with a fresh optimizer; characters or words it does not know read as <unk>.")
@click.option("--labeled", is_flag=True,
              help="CORPUS holds LABEL<TAB>TEXT lines: train a language model conditioned on the label "
                   "(needs --valid in the same format); sample, score and perplexity then take --label.")
@click.option("--condition", type=click.Choice(["input", "state"]), default="input", show_default=True,
              help="With --labeled: the label embedding enters layer 0 at every step, or gives every "
                   "layer's initial state.")
@click.option("--label-embed", type=click.IntRange(min=1), default=16, show_default=True,
              help="With --labeled: size of the label embedding.")
@class_sampling_option("lines", prefix="With --labeled: ")
@run_options(out="model.safetensors", data="text",
             resume_help="Continue the run saved at --out (OUT.state) exactly where it stopped. Model, data and "
                         "batching options come from the run; given limits replace the run's (they count the "
                         "whole run); --lr, --lr-schedule, --lr-decay, --clip, the dropouts, --valid-every, --keep "
                         "may change.")
@click.pass_context
def train(ctx, corpus, **options):
    """Train a language model on UTF-8 text files.

    Without --epochs, --max-steps or --time-budget, training runs one epoch. Ctrl-C (or SIGTERM) finishes
    the current step, saves, and prints the command that resumes the run (exit code 130, or 143); a
    diverged run (NaN or infinite loss) exits 3. Same seed, data and --threads: the same model, bit for
    bit, whether or not the run was interrupted and resumed.

    \b
    Examples:
      charlm train input.txt --time-budget 300
      charlm train ptb.train.txt --valid ptb.valid.txt --level word --hidden 200 --epochs 6
      charlm train input.txt --resume --max-steps 20000
      charlm train novel.txt --level word --tokenize words --time-budget 900
      charlm train poems.txt --level bpe --vocab-size 8000 --time-budget 900
      charlm train new.txt --init-from model.safetensors -o tuned.safetensors --time-budget 300
    """
    params = {"corpus": corpus, **options}                                        # every option, by name
    out, threads, quiet, as_json, lr = (options[k] for k in ("out", "threads", "quiet", "as_json", "lr"))
    set_threads(threads)
    if options["labeled"]:
        from charlm.commands.conditional import train_labeled
        return train_labeled(ctx, params)
    from charlm.config import ModelConfig, TrainConfig
    from charlm.errors import CharlmError
    if options["class_sampling"] != "none":
        raise CharlmError("--class-sampling needs --labeled (labels to balance)")
    from charlm.bpe import DEFAULT_VOCAB_SIZE
    from charlm.train import load_corpus, train as run_training

    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    state = None
    if options["bidirectional"]:
        raise CharlmError("--bidirectional: a language model predicts each token from the ones before it, and "
                          "a backward direction would read the very token it must predict")
    _check_out(out)
    if options["resume"]:
        from charlm.resume import load_state, resume_options, state_path
        where = state_path(out)
        if not os.path.exists(where):
            raise CharlmError(f"--resume: no run state at {where} (a run saves it at each validation, each "
                              f"--checkpoint-every, on Ctrl-C and at the end); start without --resume")
        state = load_state(where)
        explicit = {name for name in params if _given(ctx, name)}
        params, notes = resume_options(state, params, explicit, where)
        for note in notes:
            log(f"changed on resume: {note}")
        lr = params["lr"]
        if threads is None:                  # the run's thread count: the same bits as if it never stopped
            threads = min(state.progress["threads"], os.cpu_count() or 1)
            set_threads(threads)
    p = params
    if p["tokenize"] != "whitespace" and p["level"] != "word":
        raise CharlmError(f"--tokenize {p['tokenize']} is for --level word (the level is {p['level']})")
    if p["level"] == "bpe" and (_given(ctx, "min_count") or _given(ctx, "max_vocab")):
        raise CharlmError("--level bpe: the vocabulary is the learned subwords, sized by --vocab-size; drop "
                          "--min-count and --max-vocab")
    if p["bpe_vocab_size"] is not None and p["level"] != "bpe":
        raise CharlmError(f"--vocab-size is for --level bpe (the level is {p['level']}; --max-vocab limits it)")
    init = _init_from(ctx, p, state)                         # None, or (config, vocab, weights or None)
    from charlm.engine import check_outputs
    check_outputs(out, [*corpus, p["valid_path"], p["init_from"]])   # before reading: no output may be an input
    if not (p["epochs"] or p["max_steps"] or p["time_budget"]):
        p["epochs"] = 1
    p["embed"] = p["embed"] or p["hidden"]
    if p["tie_weights"] and p["embed"] != p["hidden"]:
        raise CharlmError(f"--tie-weights needs --embed equal to --hidden, got embed {p['embed']} and "
                          f"hidden {p['hidden']}")
    if lr is None:
        lr = 2e-3 if p["optimizer"] == "adam" else 1.0
    tc = pick(TrainConfig, p, lr=lr)
    if state is None and os.path.exists(out):
        from charlm.resume import state_path
        hint = " (add --resume to continue the run saved there)" if os.path.exists(state_path(out)) else ""
        log(f"note: {out} exists: this new run replaces it at its first save{hint}")
    log(f"reading {', '.join(corpus)}")
    valid_path = p["valid_path"]
    data = load_corpus(corpus, p["level"], p["lowercase"], p["min_count"], p["max_vocab"], valid_path,
                       p["valid_fraction"], p["encoding_errors"], p["tokenize"], init and init[1],
                       p["bpe_vocab_size"] or DEFAULT_VOCAB_SIZE)
    if init is not None:
        cfg = init[0]
        if init[2] is not None:
            _report_unknown(log, data, p["init_from"])
    else:
        cfg = pick(ModelConfig, p, vocab_size=len(data.vocab), unk_id=data.vocab.unk_id, eos_id=data.vocab.eos_id,
                   tied=p["tie_weights"])
    log(f"{len(data.train):,} training and {len(data.valid):,} validation tokens, vocabulary {len(data.vocab):,}; "
        f"model {cfg.describe()}")
    if state is not None:
        pr = state.progress
        log(f"resuming the run at step {pr['step']:,} (epoch {pr['epoch']}, {pr['tokens']:,} tokens, "
            f"{pr['elapsed']:.0f} s trained) from {state_path(out)}")
    _compile_notice(log)
    run_config = {"corpus": [os.path.abspath(c) for c in corpus], "level": p["level"],
                  "lowercase": p["lowercase"], "min_count": p["min_count"], "max_vocab": p["max_vocab"],
                  "valid": os.path.abspath(valid_path) if valid_path else None,
                  "encoding_errors": p["encoding_errors"]}
    if p["init_from"]:
        run_config["init_from"] = os.path.abspath(p["init_from"])
    res = run_training(data, out, cfg, tc, progress=not quiet and sys.stderr.isatty(), log=log, resume=state,
                       checkpoint_every=p["checkpoint_every"], on_nonfinite=p["on_nonfinite"], threads=threads,
                       run_config=run_config, init_params=init and init[2])
    unit = "char" if p["level"] == "char" else "token"
    if as_json:
        d = res.as_dict()
        d.pop("history")
        d["valid_perplexity"] = _exp(res.valid_loss)
        click.echo(_dumps(d))
    else:
        how = {"interrupted": "interrupted", "time-budget": "time budget reached"}.get(res.stopped_by, "done")
        skipped = f"; {res.skipped:,} non-finite step{'s' if res.skipped > 1 else ''} skipped" if res.skipped else ""
        click.echo(f"{how}: {res.steps:,} steps ({res.epochs:.2f} epochs, {res.tokens:,} tokens) in {res.seconds:.0f} s, "
                   f"{res.tokens / max(res.seconds, 1e-9):,.0f} tok/s; train loss {res.train_loss:.4f}{skipped}")
        kind = "" if res.valid_exact else ", fast estimate"
        per_char, chars = ("", "") if unit == "char" else (f", {res.valid_bpc:.4f} bits/char",
                                                            f", {res.valid_chars:,} chars")
        click.echo(f"validation: {res.valid_loss:.4f} nats/{unit}, {res.valid_loss / math.log(2):.4f} bits/{unit}, "
                   f"perplexity {_exp(res.valid_loss):.3f}{per_char} ({res.valid_tokens:,} tokens{chars}, "
                   f"{'best at step ' + format(res.best_step, ',') if tc.keep == 'best' else 'last step'}{kind}); "
                   f"saved {out}")
    if res.stopped_by == "interrupted":
        import shlex
        import signal
        command = ["charlm", "train", *corpus, "--resume", "-o", out] + (["--threads", str(threads)] if threads else [])
        name = signal.Signals(res.signal).name if res.signal else "a signal"
        click.echo(f"charlm: stopped by {name} after step {res.steps:,}; the model is at {out} and the run state at "
                   f"{res.state_path}; resume with: {shlex.join(command)}", err=True)
        sys.exit(EXIT_TERMINATED if res.signal == signal.SIGTERM else EXIT_INTERRUPTED)


def _init_from(ctx, p, state):
    """(config, vocabulary, weights) of the model a new run starts from (--init-from), or (config,
    vocabulary, None) when resuming such a run (the run state holds the weights), else None. The model's
    architecture and tokenizer options are fixed: one given on the command line that differs is an error.
    On resume p["init_from"] is set from the run, so the run state keeps naming the model."""
    from charlm.errors import CharlmError
    from charlm.tasks.lm import ARCH_OPTIONS
    from charlm.vocab import Vocab
    if state is not None:
        if p["init_from"]:
            raise CharlmError("--init-from starts a new run from a model, --resume continues the run saved at --out: "
                              "give one of them")
        p["init_from"] = state.run_config.get("init_from")
        c = state.config
        if not p["init_from"] and c.level != "bpe":      # the run's vocabulary is rebuilt from the same text
            return None
        return c, Vocab(state.vocab, c.level, c.lowercase, c.unk_id, c.eos_id, c.tokenize,
                        getattr(state.vocab, "tokenizer", None)), None
    if p["init_from"] is None:
        return None
    from charlm.config import ConditionalConfig
    lm = _load_lm(p["init_from"])
    cfg = lm.config
    if isinstance(cfg, ConditionalConfig):
        raise CharlmError(f"--init-from {p['init_from']}: a model conditioned on labels; train it further with "
                          f"--labeled")
    for name, key in [*ARCH_OPTIONS.items(), ("min_count", None), ("max_vocab", None)]:
        if _given(ctx, name) and (key is None or p[name] != getattr(cfg, key)):
            what = "the vocabulary comes from the model" if key is None else \
                f"the model has {key.replace('_', ' ')} {getattr(cfg, key)}"
            raise CharlmError(f"--init-from {p['init_from']}: --{name.replace('_', '-')} conflicts with the model: "
                              f"{what}; drop the option")
        if key is not None:
            p[name] = getattr(cfg, key)
    return cfg, lm.vocab, lm.params


def _report_unknown(log, data, model_path):
    """--init-from: how many training tokens the model's vocabulary lacks (they read as <unk>)."""
    unknown = data.unknown
    if not unknown:
        log(f"every training token is in the vocabulary of {model_path}")
        return
    n = sum(unknown.values())
    unit = "characters" if data.vocab.level == "char" else "tokens"
    shown = ", ".join(repr(t) for t, _ in unknown.most_common(8)) + (", ..." if len(unknown) > 8 else "")
    log(f"{len(unknown):,} {unit} of the training text are new to {model_path} and read as <unk>: {n:,} of "
        f"{len(data.train):,} training tokens ({100 * n / max(len(data.train), 1):.2f} %): {shown}")


def _float_or_none(text):
    """A metadata figure as a float, None when absent or not a finite number."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _given(ctx, name) -> bool:
    """Did the user set this parameter (command line or environment), rather than leave its default?"""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _exp(x):
    """exp(x), inf where it overflows (a diverged model's loss), None/NaN passed through as NaN."""
    if x is None or x != x:
        return math.nan
    return math.exp(x) if x < 700 else math.inf


def _finite_or_null(v):
    """v with every non-finite float (inf, NaN) as None: JSON (RFC 8259) has no such numbers."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_null(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_or_null(x) for x in v]
    return v


def _dumps(obj) -> str:
    """One --json line: strict JSON, an infinite or undefined figure as null; \\u escapes where the text
    is not valid UTF-8 (a lone surrogate read from a file)."""
    text = json.dumps(_finite_or_null(obj), ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(_finite_or_null(obj), allow_nan=False)
    return text


@main.command(context_settings=CONTEXT)
@click.option("-o", "--out", default="model.safetensors", show_default=True, type=click.Path(dir_okay=False))
@click.option("--time-budget", type=float, default=180, show_default=True, help="Seconds of training.")
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True)
@threads_option
@click.pass_context
def demo(ctx, out, time_budget, hidden, threads):
    """Train on the built-in corpus (Python's reference docs, shipped with every Python), then sample.

    \b
    Example:
      charlm demo --time-budget 60
    """
    from charlm.corpus import pydoc_path
    path = str(pydoc_path())
    click.echo(f"built-in corpus: Python's reference documentation ({path})", err=True)
    try:
        ctx.invoke(train, corpus=(path,), out=out, hidden=hidden, time_budget=time_budget, epochs=0,
                   valid_fraction=0.05, threads=threads)
    except SystemExit as e:
        if e.code:
            raise
    for i, text in enumerate(_load_lm(out).sample(length=300, temp=0.7, num_samples=3, seed=0, prime="The ")):
        click.echo(f"--- sample {i + 1} (--temp 0.7) ---")
        click.echo(text)


def _check_out(out):
    from charlm.runfiles import check_out_path
    check_out_path(out)


def _compile_notice(log):
    from charlm.jit import first_run
    if first_run():
        log("compiling kernels (first run only)...")


@main.command(context_settings=CONTEXT)
@model_option
@click.option("--temp", type=Finite(min=0, min_open=True), default=1.0, show_default=True, help="Temperature (> 0).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, help="Sample among the k most likely tokens (0 = off).")
@click.option("--top-p", type=Finite(0, 1, min_open=True), default=1.0, show_default=True,
              help="Nucleus: smallest set with this mass.")
@click.option("--greedy", is_flag=True, help="Always take the most likely token.")
@click.option("--beam", type=click.IntRange(min=0), default=0,
              help="Beam search of this width for the most likely continuation (0 = off).")
@click.option("--prime", default="", help="Text the output starts with; the model reads it first.")
@click.option("--length", type=click.IntRange(min=0), default=200, show_default=True, help="Tokens to generate.")
@click.option("--stop-at-eos", is_flag=True, help="End a sample at its first end of line.")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Same seed, same output.")
@click.option("--label", default=None, help="The label to generate for (a model trained with --labeled).")
@json_option
@threads_option
def sample(model_path, temp, top_k, top_p, greedy, beam, prime, length, stop_at_eos, num_samples, seed, label,
           as_json, threads):
    """Sample novel text from a model.

    \b
    Examples:
      charlm sample --temp 0.8 --length 500
      charlm sample --prime "ROMEO:" --top-p 0.9 --seed 1 --num-samples 3
      charlm sample --beam 5 --length 40 --stop-at-eos
    """
    set_threads(threads)
    from charlm.generate import check_sampling_options, check_seed
    given = {"temp", "top_k", "top_p", "length", "num_samples", "beam", "seed", "label"}
    with as_flags(given):
        check_sampling_options(temp, top_k, top_p, length, num_samples, beam)
        check_seed(seed)
    lm = _load_lm(model_path)
    from charlm.generate import unknown_in_prime
    unknown = unknown_in_prime(lm.vocab, prime)
    if unknown:
        shown = ", ".join(repr(t) for t in dict.fromkeys(unknown))
        click.echo(f"note: --prime has {len(unknown)} token{'s' if len(unknown) > 1 else ''} the model does not "
                   f"know, read as <unk>: {_printable(shown)}", err=True)
    _compile_notice(lambda m: click.echo(m, err=True))
    with compute_threads(threads), as_flags(given):
        texts = lm.sample(length=length, temp=temp, top_k=top_k, top_p=top_p, greedy=greedy, prime=prime,
                          stop_at_eos=stop_at_eos, num_samples=num_samples, seed=seed, beam=beam, label=label)
    for i, text in enumerate(texts):
        if as_json:
            click.echo(_dumps({"text": text, "index": i, "seed": seed}))
        else:
            if i:
                click.echo()
            click.echo(text)


@main.command(context_settings=CONTEXT)
@click.argument("texts", nargs=-1)
@model_option
@click.option("--file", "-f", "file", type=click.Path(allow_dash=True), default=None,
              help="Score each line of this file ('-' = stdin).")
@click.option("--per-token", is_flag=True, help="Also give each token's log-probability.")
@click.option("--label", default=None, help="Score p(text | label) (a model trained with --labeled).")
@json_option
@threads_option
def score(texts, model_path, file, per_token, label, as_json, threads):
    """Score each TEXT (or each line of --file) as a stream of its own.

    Prints, tab-separated: natural-log probability, tokens, perplexity, text, bits per character.

    \b
    Examples:
      charlm score "To be, or not to be"
      charlm score --file sentences.txt --json
    """
    set_threads(threads)
    from charlm.errors import CharlmError
    texts = list(texts)
    if file is not None:
        texts += _read_lines(file)
    if not texts:
        raise CharlmError("nothing to score: give TEXT arguments or --file")
    lm = _load_lm(model_path)
    _compile_notice(lambda m: click.echo(m, err=True))
    with compute_threads(threads), as_flags({"per_token", "label"}):
        scores = lm.score(texts, per_token=per_token, label=label)
    for s in scores:
        if as_json:
            click.echo(_dumps(s.as_dict()))
            continue
        click.echo(f"{s.logprob:.4f}\t{s.tokens}\t{s.perplexity:.4f}\t{_tsv_field(s.text)}\t{s.bits_per_char:.4f}")
        rows = s.per_token or []
        unknown = s.unk_texts or {}
        for k in range(0, len(rows), 10000):              # one write per 10,000 tokens, not one per token
            click.echo("".join(f"\t{tok}\t{lp:.4f}" + (f"\t<unk>\t{_tsv_field(unknown[j])}\n" if unk else "\n")
                               for j, (tok, lp, unk) in enumerate(rows[k:k + 10000], k)), nl=False)


def _read_lines(file):
    from charlm.data import iter_text
    if file == "-":
        from charlm.errors import CharlmError
        from charlm.vocab import normalize
        if sys.stdin is None:
            raise CharlmError("--file -: standard input is closed, there is nothing to read")
        try:
            raw = sys.stdin.buffer.read()
        except OSError as e:
            raise CharlmError(f"--file -: cannot read standard input ({e.strerror or e})") from None
        if b"\0" in raw:
            raise CharlmError(f"--file -: standard input looks binary (NUL byte at byte offset {raw.index(0)})")
        try:
            text = normalize(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise CharlmError(f"--file -: invalid UTF-8 on standard input at byte offset {e.start}") from None
    else:
        text = "".join(iter_text(file))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _printable(text) -> str:
    """Text read from a file, safe to show on a terminal: control and format characters, lone surrogates
    and line separators (escape sequences, forged lines) shown as Python escapes."""
    import unicodedata
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " or unicodedata.category(c) in ("Zs",)
                   else c.encode("unicode_escape", "backslashreplace").decode("ascii") if ord(c) < 0xD800 or
                   ord(c) > 0xDFFF else f"\\u{ord(c):04x}" for c in text)


def _tsv_field(text):
    """A text as one TSV field: newlines, tabs, carriage returns and other control characters escaped."""
    text = text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if text.isprintable():
        return text
    import unicodedata
    return "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in ("Cc", "Zl", "Zp")
                   else c for c in text)


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path())
@model_option
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@json_option
@threads_option
def perplexity(files, model_path, encoding_errors, quiet, as_json, threads):
    """Perplexity of whole files (each one stream, state carried across lines).

    \b
    Examples:
      charlm perplexity valid.txt
      charlm perplexity a.txt b.txt --json
    """
    set_threads(threads)
    lm = _load_lm(model_path)
    _compile_notice(lambda m: click.echo(m, err=True))
    bar = None
    if not quiet and sys.stderr.isatty():
        from charlm.progress import progress_bar
        bar = progress_bar(unit="tok", unit_scale=True, leave=False)
    try:
        with compute_threads(threads):
            results = lm.perplexity(files, encoding_errors, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    unit = "char" if lm.config.level == "char" else "token"
    if as_json:
        total = results[-1].as_dict()
        total["files"] = [r.as_dict() for r in (results[:-1] if len(results) > 1 else results)]
        click.echo(_dumps(total))
        return
    for r in results:                    # at char level bits/token is bits/char already
        per_char = "" if unit == "char" else f"{r.bits_per_char:.4f} bits/char, "
        chars = "" if unit == "char" else f"{r.characters:,} chars, "
        click.echo(f"{r.name}: perplexity {r.perplexity:.4f}, {r.bits_per_token:.4f} bits/{unit}, "
                   f"{r.nll / max(r.tokens, 1):.4f} nats/{unit}, {per_char}{r.tokens:,} tokens, {chars}"
                   f"{r.oov:,} OOV ({100 * r.oov_rate:.2f}%)")


@main.command(context_settings=CONTEXT)
@model_option
@json_option
def info(model_path, as_json):
    """Show a model's configuration, vocabulary and size.

    \b
    Example:
      charlm info -m model.safetensors
    """
    from charlm.errors import CharlmError
    from charlm.lm import load as load_any_task
    from charlm.plot import model_log_path, summarize_log, summary_line
    lm = load_any_task(model_path)                # a language model or a classifier (its meta: task, labels)
    cfg = lm.config
    d = {"path": model_path, "model": cfg.describe(), "config": json.loads(cfg.to_json()),
         "vocab_size": len(lm.vocab), "parameters": lm.num_params, "meta": lm.meta, "history": None}
    log = model_log_path(model_path)
    if log.is_file():
        try:
            d["history"] = summarize_log(log)
        except CharlmError:
            pass                     # a damaged log does not stop `info`
    if as_json:
        click.echo(_dumps(d))
        return
    click.echo(f"{_printable(model_path)}: {cfg.describe()}, {lm.num_params:,} parameters, "
               f"vocabulary {len(lm.vocab):,}")
    for k, v in d["config"].items():
        click.echo(f"  {k}: {_printable(v)}")
    for k, v in sorted(lm.meta.items()):
        if k == "tokenizer" and cfg.level == "bpe":           # a JSON document of the merges: its size only
            v = f"byte-level BPE, {len(lm.vocab):,} tokens ({len(v):,} characters of JSON)"
        click.echo(f"  {_printable(k)}: {_printable(v)}")
    if d["history"]:
        click.echo(f"  training history: {_printable(summary_line(d['history']))}")
    exact = _float_or_none(lm.meta.get("valid_loss"))
    if exact is not None:                 # written by the LM's training at the end: the summary's figure
        bpc = _float_or_none(lm.meta.get("valid_bpc"))
        per_char = f", {bpc:.4f} bits/char" if bpc is not None else ""
        unit = "char" if cfg.level == "char" else "token"
        click.echo(f"  validation of this model (as the training summary gives it): {exact:.4f} nats/{unit}"
                   f"{per_char}")


@main.command(context_settings=CONTEXT)
@model_options(hidden=512, layers=2, bidirectional=False)
@click.option("--vocab", type=click.IntRange(min=2), default=65, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seq-len", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Timed windows.")
@click.option("--sample-tokens", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--ragged", "ragged_from", type=click.Path(dir_okay=False), default=None,
              help="Instead: a bidirectional tagger on batches of --batch-size sentences with the lengths of "
                   "this file's sentences (CoNLL-U, or words per line), packed, beside the same tokens in "
                   "equal-length batches.")
@json_option
@threads_option
def bench(cell, activation, gru_variant, peephole, layers, hidden, embed, vocab, batch_size, seq_len, steps,
          sample_tokens, ragged_from, as_json, threads):
    """Measure training, evaluation and sampling speed for a model shape on random data.

    The last line is one JSON object with train_tok_s, eval_tok_s and sample_tok_s.

    \b
    Example:
      charlm bench --hidden 512 --layers 2 --batch-size 32 --seq-len 64 --json
    """
    set_threads(threads)
    from charlm.bench import run
    from charlm.config import ModelConfig
    cfg = ModelConfig(cell=cell, activation=activation, gru_variant=gru_variant, peephole=peephole, layers=layers,
                      hidden=hidden, embed=embed or hidden, vocab_size=vocab)
    _compile_notice(lambda m: click.echo(m, err=True))
    if ragged_from:
        from dataclasses import replace
        from charlm.bench_ragged import lengths_of, run_ragged
        lengths = lengths_of(ragged_from)
        cfg = replace(cfg, bidirectional=True)
        with compute_threads(threads):
            rows = [run_ragged(cfg, lengths, batch_size, steps, mode) for mode in ("ragged", "fixed")]
        r = {"ragged": rows[0], "fixed": rows[1],
             "ragged_over_fixed": {k: round(rows[0][k] / rows[1][k], 3) for k in ("train_tok_s", "eval_tok_s")}}
        if not as_json:
            for row in rows:
                click.echo(f"{row['cell']}, {row['mode']} batches of {batch_size}: train {row['train_tok_s']:,} "
                           f"tok/s, eval {row['eval_tok_s']:,} tok/s")
        click.echo(_dumps(r))
        return
    with compute_threads(threads):
        r = run(cfg, batch_size, seq_len, steps, sample_tokens)
    if not as_json:
        click.echo(f"{r['cell']}, vocab {vocab}, batch {batch_size}, seq {seq_len}: "
                   f"train {r['train_tok_s']:,} tok/s, eval {r['eval_tok_s']:,} tok/s, "
                   f"sample (batch 1) {r['sample_tok_s']:,} tok/s")
    click.echo(_dumps(r))


from charlm.commands.plot import plot_command  # noqa: E402  (click only: matplotlib loads when a plot is drawn)

main.add_command(plot_command, "plot")

from charlm.commands.corpus import corpus_group  # noqa: E402  (click and the standard library only)

main.add_command(corpus_group, "corpus")

from charlm.commands.classify import classify as classify_group  # noqa: E402  (click only)

main.add_command(classify_group, "classify")

from charlm.commands.tag import tag as tag_group  # noqa: E402  (click only)

main.add_command(tag_group, "tag")

from charlm.commands.seq2seq import seq2seq as seq2seq_group  # noqa: E402  (click only)

main.add_command(seq2seq_group, "seq2seq")

from charlm.commands.diagnose import diagnose as diagnose_group  # noqa: E402  (click only)

main.add_command(diagnose_group, "diagnose")


if __name__ == "__main__":
    main()
