"""`charlm diagnose`: vanishing and exploding gradients made visible, measured and compared across cells."""
from __future__ import annotations

import sys
import time

import click

from charlm.cellnames import CELL_KINDS
from charlm.options import threads_option

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
def diagnose():
    """How far back the gradient of a recurrent model reaches, per cell.

    \b
    Examples:
      charlm diagnose gradients -m model.safetensors input.txt --plot grads.png
      charlm diagnose gradients --init rnn-tanh input.txt
      charlm diagnose compare input.txt --time-budget 60 --plot compare.png
      charlm diagnose long-range --task adding --lengths 10,25,50,100 --cells rnn-tanh,gru-full,lstm
      charlm diagnose clipping model.safetensors --plot clip.png
    """


def _json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def _plot_option(f):
    return click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
                        help="Draw the figure to this .png, .svg or .pdf file (needs matplotlib).")(f)


def _measure_options(f):
    for option in reversed([
        click.option("--span", type=click.IntRange(min=1), default=100, show_default=True,
                     help="Largest d: the gradient is followed this many steps back."),
        click.option("--positions", type=click.IntRange(min=1), default=100, show_default=True,
                     help="End positions t averaged over (drawn from the text with --seed)."),
        click.option("--warmup", type=click.IntRange(min=0), default=100, show_default=True,
                     help="Tokens read before each window, so the state is the one text gives."),
    ]):
        f = option(f)
    return f


def _emit(obj):
    from charlm.cli import _dumps
    click.echo(_dumps(obj))


@diagnose.command(context_settings=CONTEXT)
@click.argument("text", type=click.Path())
@click.option("-m", "--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Model file to diagnose.")
@click.option("--init", "init_cell", type=click.Choice(list(CELL_KINDS)), default=None,
              help="Diagnose an untrained model of this cell instead (vocabulary from TEXT).")
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True, help="With --init.")
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True, help="With --init.")
@_measure_options
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Picks the end positions (and --init's weights).")
@_json_option
@_plot_option
@threads_option
@click.pass_context
def gradients(ctx, text, model_path, init_cell, hidden, layers, span, positions, warmup, seed, as_json,
              plot_path, threads):
    """‖∂L_t/∂h_(t−d)‖ for d = 0..span, per layer, over many end positions t of TEXT.

    Prints the ratio to d = 0 (geometric mean over positions), the fitted decay rate per step and the
    gradient horizon: the first d where the ratio falls below 1e-3.
    """
    from charlm.cli import _compile_notice, compute_threads, set_threads
    set_threads(threads)
    from charlm.errors import CharlmError
    if (model_path is None) == (init_cell is None):
        raise CharlmError("give -m MODEL or --init CELL (one of them)")
    for name in ("hidden", "layers"):
        src = ctx.get_parameter_source(name)
        if model_path and src is not None and src.name == "COMMANDLINE":
            raise CharlmError(f"--{name} is for --init: a model file has its own architecture")
    if plot_path:
        from charlm.diagnoseplot import check_plot_path
        check_plot_path(plot_path)
    from charlm import diagnose as dg
    t0 = time.perf_counter()
    if model_path:
        from charlm.lm import LanguageModel
        m = LanguageModel.load(model_path)           # its vocabulary cuts text as the model does (tokenizer, BPE)
        cfg, P, vocab = m.config, m.params, m.vocab
        ids, _ = dg.text_ids(text, vocab)
    else:
        ids, vocab = dg.text_ids(text)
        cfg, P = dg.init_model(init_cell, len(vocab), hidden, layers, seed=seed)
    _compile_notice(lambda msg: click.echo(msg, err=True))
    with compute_threads(threads):
        prof = dg.gradient_profile(cfg, P, ids, span, positions, warmup, seed)
    seconds = time.perf_counter() - t0
    if plot_path:
        from charlm.diagnoseplot import plot_gradients
        plot_gradients([prof], plot_path)
    if as_json:
        _emit(dict(prof.as_dict(), text=text, seconds=round(seconds, 3)))
    else:
        click.echo(dg.format_profile(prof))
        click.echo(f"({seconds:.1f} s)", err=True)
    if plot_path:
        click.echo(f"figure drawn to {plot_path}", err=True)


def _floats(text: str, what: str) -> list[float]:
    from charlm.errors import CharlmError
    try:
        values = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CharlmError(f"{what} takes numbers separated by commas, got {text!r}") from None
    if not values or any(not (v >= 0 and v != float("inf")) for v in values):
        raise CharlmError(f"{what} takes finite numbers >= 0 separated by commas, got {text!r}")
    return values


def _cells(text: str) -> list[str]:
    from charlm.cellnames import parse_cells
    from charlm.errors import CharlmError
    try:
        return parse_cells(text)
    except ValueError as e:
        raise CharlmError(f"--cells: {e}") from None


ALL_CELLS = ",".join(CELL_KINDS)


@diagnose.command(context_settings=CONTEXT)
@click.argument("text", type=click.Path())
@click.option("--cells", default=ALL_CELLS, show_default=True, help="Cells to train and compare, comma-separated.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True,
              help="Seconds of training per cell (and per --clip value).")
@click.option("--clip", "clips", default="5", show_default=True,
              help="Gradient-norm clip values, comma-separated (0 = off): each cell is trained once per value.")
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seq-len", type=click.IntRange(min=1), default=64, show_default=True, help="Truncated-BPTT window.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True, help="Adam's.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the models and their training logs here (default: a temporary folder, removed).")
@_measure_options
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
@_json_option
@_plot_option
@threads_option
def compare(text, cells, time_budget, clips, hidden, layers, batch_size, seq_len, lr, out_dir, span, positions,
            warmup, seed, quiet, as_json, plot_path, threads):
    """Train each cell on TEXT with the same size and budget, then compare their gradient curves.

    The validation text (the last 5 % of TEXT) gives each model's validation loss and the end positions
    of its gradient profile. All curves go on one figure (--plot), each cell's validation loss in the legend.
    """
    import os
    import tempfile
    from charlm.cli import _compile_notice, compute_threads, set_threads
    set_threads(threads)
    from charlm.errors import CharlmError
    names = _cells(cells)
    clip_values = _floats(clips, "--clip")
    if plot_path:
        from charlm.diagnoseplot import check_plot_path
        check_plot_path(plot_path)
    if out_dir is not None and not os.path.isdir(out_dir):
        parent = os.path.dirname(os.path.abspath(out_dir))
        if not os.path.isdir(parent):
            raise CharlmError(f"--out-dir {out_dir}: the folder {parent} does not exist")
        os.mkdir(out_dir)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    from charlm import diagnose as dg
    from charlm.train import load_corpus
    t0 = time.perf_counter()
    corpus = load_corpus([text])
    if len(corpus.valid) < span + 2:
        raise CharlmError(f"{text}: the validation text has {len(corpus.valid)} tokens, --span {span} needs "
                          f"{span + 2}: give a longer text or a smaller --span")
    _compile_notice(log)
    with tempfile.TemporaryDirectory(prefix="charlm-compare-") as tmp, compute_threads(threads):
        profiles, failed = dg.compare(corpus, names, out_dir or tmp, hidden, layers, clip_values, time_budget, span,
                              positions, warmup, seed, log, progress=not quiet and sys.stderr.isatty(),
                              threads=threads, batch_size=batch_size, seq_len=seq_len, lr=lr)
    seconds = time.perf_counter() - t0
    if not profiles:
        raise CharlmError(f"every run diverged: {failed[0]['diverged']}")
    if plot_path:
        from charlm.diagnoseplot import plot_gradients
        plot_gradients(profiles, plot_path, title=f"gradient reaching the state d steps back: "
                       f"{layers}x{hidden}, {time_budget:g} s each on {os.path.basename(text)}")
    if as_json:
        _emit({"text": text, "time_budget": time_budget, "hidden": hidden, "layers": layers, "seconds":
               round(seconds, 1), "cells": [p.as_dict() for p in profiles], "diverged": failed})
    else:
        click.echo(dg.format_compare(profiles))
        for f in failed:
            click.echo(f"{f['label']}: diverged ({f['diverged']})")
        log(f"({seconds:.0f} s)")
    if plot_path:
        log(f"figure drawn to {plot_path}")


def _lengths(text: str) -> list[int]:
    from charlm.errors import CharlmError
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CharlmError(f"--lengths takes integers separated by commas, got {text!r}") from None
    if not values:
        raise CharlmError("--lengths: give at least one length")
    if len(set(values)) != len(values):
        raise CharlmError(f"--lengths: a length is given twice in {text!r}")
    return values


@diagnose.command("long-range", context_settings=CONTEXT)
@click.option("--task", type=click.Choice(["adding", "temporal-order"]), default="adding", show_default=True,
              help="adding: regress the sum of the two marked numbers; temporal-order: classify the order of "
                   "two marked symbols (X/Y) among distractors.")
@click.option("--lengths", default="10,25,50,100,200", show_default=True, help="Sequence lengths, comma-separated.")
@click.option("--cells", default="rnn-tanh,gru-full,lstm", show_default=True, help="Cells, comma-separated.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=30, show_default=True,
              help="Seconds of training per cell and length.")
@click.option("--hidden", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2, show_default=True, help="Adam's.")
@click.option("--clip", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Global gradient-norm clip (0 = off).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the models and their training logs here (default: a temporary folder, removed).")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
@_json_option
@_plot_option
@threads_option
def long_range(task, lengths, cells, time_budget, hidden, batch_size, lr, clip, seed, out_dir, quiet, as_json,
               plot_path, threads):
    """Train each cell at each length on a task whose answer lies far back, and report success by length.

    Success: the kept model's validation error below the task's threshold (adding: MSE < 0.04, where
    answering 1 gets 0.167 and one number alone 0.083; temporal-order: error rate < 0.1, chance 0.75).
    """
    import os
    import tempfile
    from charlm.cli import _compile_notice, set_threads
    set_threads(threads)
    from charlm.errors import CharlmError
    names = _cells(cells)
    ns = _lengths(lengths)
    if plot_path:
        from charlm.diagnoseplot import check_plot_path
        check_plot_path(plot_path)
    if out_dir is not None and not os.path.isdir(out_dir):
        parent = os.path.dirname(os.path.abspath(out_dir))
        if not os.path.isdir(parent):
            raise CharlmError(f"--out-dir {out_dir}: the folder {parent} does not exist")
        os.mkdir(out_dir)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    from charlm import longrange
    t0 = time.perf_counter()
    _compile_notice(log)
    with tempfile.TemporaryDirectory(prefix="charlm-long-range-") as tmp:
        result = longrange.long_range(task, ns, names, out_dir or tmp, hidden, time_budget, batch_size, lr, clip,
                                      seed, log, threads)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if plot_path:
        from charlm.diagnoseplot import plot_long_range
        plot_long_range(result, plot_path)
    if as_json:
        _emit(result)
    else:
        click.echo(longrange.format_long_range(result))
        log(f"({result['seconds']:.0f} s)")
    if plot_path:
        log(f"figure drawn to {plot_path}")


@diagnose.command(context_settings=CONTEXT)
@click.argument("log_or_model", type=click.Path())
@click.option("--clip", type=click.FloatRange(min=0), default=None,
              help="The run's clip value [default: the model file's, beside the log].")
@click.option("--spikes", type=click.IntRange(min=0), default=5, show_default=True,
              help="Show the loss around this many of the largest norms.")
@_json_option
@_plot_option
def clipping(log_or_model, clip, spikes, as_json, plot_path):
    """Pre-clip gradient norms of a training run, from its log (MODEL.log.jsonl, or give the model).

    The distribution of the logged norms, the share above the clip value, and the training loss around
    the largest spikes. The engine logs grad_norm every 50th step: the figures are over those steps.
    """
    if plot_path:
        from charlm.diagnoseplot import check_plot_path
        check_plot_path(plot_path)
    from charlm import diagnose as dg
    report = dg.clipping_report(log_or_model, clip, spikes)
    if plot_path:
        from charlm.diagnoseplot import plot_clipping
        plot_clipping(report, plot_path)
    if as_json:
        _emit(report)
    else:
        click.echo(dg.format_clipping(report))
    if plot_path:
        click.echo(f"figure drawn to {plot_path}", err=True)
