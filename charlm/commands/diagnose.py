"""`charlm diagnose`: vanishing and exploding gradients made visible, measured and compared across cells."""
from __future__ import annotations

import json
import sys
import time

import click

from charlm.cellnames import CELL_KINDS

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


def _threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads for the kernels (default: all cores).")(f)


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
@_threads_option
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
        from charlm.checkpoint import load_model
        from charlm.vocab import Vocab
        m = load_model(model_path)
        cfg, P = m.config, m.params
        vocab = Vocab(m.vocab, cfg.level, cfg.lowercase, cfg.unk_id, cfg.eos_id)
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
