"""`charlm plot`: loss curves from training logs (charlm.plot draws them; matplotlib loads only then)."""
from __future__ import annotations

import os

import click

from charlm.plot import X_AXES, model_log_path, plot_log


def _default_out(log_path) -> str:
    s = str(log_path)
    base = s[: -len(".log.jsonl")] if s.endswith(".log.jsonl") else os.path.splitext(s)[0]
    return base + ".loss.png"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("logs", nargs=-1, required=True, metavar="LOG...", type=click.Path(dir_okay=False))
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False),
              help="Image to write: .png, .svg or .pdf [default: the first log's name + .loss.png].")
@click.option("--x", "x", type=click.Choice(list(X_AXES)), default="step", show_default=True,
              help="Horizontal axis: optimizer steps, tokens seen, wall-clock seconds or epochs.")
@click.option("--title", default=None, help="Plot title [default: the run's name].")
def plot_command(logs, out, x, title):
    """Draw training and validation loss curves from training logs.

    Each LOG is the JSON-lines file `charlm train` writes next to the model (for -o model.safetensors,
    model.log.jsonl); a model file stands for its log. Several logs are drawn as labelled runs on one plot.
    Needs matplotlib: pip install 'charlm[plot]'.

    \b
    Examples:
      charlm plot model.log.jsonl
      charlm plot run1/model.log.jsonl run2/model.log.jsonl -o compare.svg --x tokens
      charlm plot model.safetensors -o loss.pdf --x wall --title "LSTM 256 on tinyshakespeare"
    """
    logs = [str(model_log_path(p)) if str(p).endswith(".safetensors") else p for p in logs]
    out = out or _default_out(logs[0])
    click.echo(plot_log(logs, out, x=x, title=title))
