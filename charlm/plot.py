"""Training curves and history from the JSON-lines log that `charlm train` writes next to the model
(`-o run/model.safetensors` logs to `run/model.log.jsonl`, one record a line: step, epoch, tokens,
train_loss, valid_loss and valid_bpc (null except at validations), lr, grad_norm, tok_s, wall).

    from charlm.plot import plot_log, summarize_log
    plot_log(["run/model.log.jsonl"], "loss.png", x="tokens")
    print(summarize_log("run/model.log.jsonl")["best_valid_loss"])

matplotlib is an optional extra (`pip install 'charlm[plot]'`), imported only when a plot is drawn; this
module imports neither it nor NumPy at load time, so the CLI (charlm.commands.plot) still starts fast.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from charlm.errors import CharlmError

X_AXES = {"step": "step", "tokens": "tokens seen", "wall": "wall time (s)", "epoch": "epoch"}
FORMATS = (".png", ".svg", ".pdf")
MISSING_MATPLOTLIB = "charlm plot needs matplotlib: pip install 'charlm[plot]'"


def model_log_path(model_path) -> Path:
    """Where training logs for the model at `model_path` (as charlm.train does: model.safetensors →
    model.log.jsonl, any other name → name + .log.jsonl)."""
    s = str(model_path)
    return Path(s).with_suffix(".log.jsonl") if s.endswith(".safetensors") else Path(s + ".log.jsonl")


def read_log(path) -> list[dict]:
    """The records of a training log, in order. Blank lines are skipped, and so is a last line cut short
    without its newline (a run still writing, or killed mid-write); any other line that is not a JSON
    object with a numeric `step` is a CharlmError naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise CharlmError(f"{path}: no such log file")
    if not path.is_file():
        raise CharlmError(f"{path}: not a file")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise CharlmError(f"{path}: not a charlm training log (invalid UTF-8 at byte {e.start})") from None
    except OSError as e:
        raise CharlmError(f"{path}: cannot read the log: {e.strerror or e}") from None
    lines = text.split("\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        last_unterminated = n == len(lines)          # text after the final newline
        try:
            record = json.loads(line)
        except ValueError as e:
            if last_unterminated:
                break
            raise CharlmError(f"{path}, line {n}: not a JSON record ({getattr(e, 'msg', e)})") from None
        if not isinstance(record, dict):
            raise CharlmError(f"{path}, line {n}: not a training log record (a JSON object)")
        if not _is_number(record.get("step")):
            raise CharlmError(f"{path}, line {n}: the record has no step number")
        records.append(record)
    if not records:
        raise CharlmError(f"{path}: the log is empty (no training records yet)")
    return records


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _series(records, x, key):
    """(xs, ys) of the records that have both a numeric x value and a numeric `key`."""
    pts = [(r[x], r[key]) for r in records if _is_number(r.get(x)) and _is_number(r.get(key))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _labels(paths) -> list[str]:
    """Short names that tell the runs apart: the log's name without .log.jsonl, with as many parent
    folders as it takes to make them distinct (run1/model, run2/model)."""
    parts = []
    for p in paths:
        p = Path(os.path.abspath(p))
        name = p.name[: -len(".log.jsonl")] if p.name.endswith(".log.jsonl") else p.stem
        parts.append([name] + [q.name for q in p.parents if q.name])
    depth = 1
    while depth < max(len(q) for q in parts):
        labels = ["/".join(reversed(q[:depth])) for q in parts]
        if len(set(labels)) == len(labels):
            return labels
        depth += 1
    labels = ["/".join(reversed(q[:depth])) for q in parts]
    return labels if len(set(labels)) == len(labels) else [f"{lab} ({i + 1})" for i, lab in enumerate(labels)]


def plot_log(log_paths, out, x: str = "step", title: str | None = None) -> str:
    """Draw the loss curves of one or more training logs to `out` (.png, .svg or .pdf, by its suffix) and
    return `out`. Each log is one run: its train loss (the logged train_loss, a mean over the last 100
    steps) as a line and its validation loss as markers at the validations, in one colour per run; a
    dotted vertical line marks where a run was resumed.
    `x` is the horizontal axis: step, tokens, wall (seconds) or epoch. Loss is in nats per token."""
    if isinstance(log_paths, (str, os.PathLike)):
        log_paths = [log_paths]
    log_paths = [str(p) for p in log_paths]
    out = str(out)
    if not log_paths:
        raise CharlmError("no training log to plot")
    if x not in X_AXES:
        raise CharlmError(f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise CharlmError(f"-o {out}: the plot file must end in .png, .svg or .pdf")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise CharlmError(f"-o {out}: the folder {parent} does not exist")
    if os.path.isdir(out):
        raise CharlmError(f"-o {out} is a directory")

    runs = []
    for path in log_paths:
        records = read_log(path)
        train = _series(records, x, "train_loss")
        valid = _series(records, x, "valid_loss")
        if not train[0] and not valid[0]:
            if not any(_is_number(r.get(x)) for r in records):
                raise CharlmError(f"{path}: the log has no '{x}' values to plot against (try --x step)")
            raise CharlmError(f"{path}: no loss values to plot (no train_loss or valid_loss in the log)")
        resumed = [r[x] for r in records if r.get("event") == "resumed" and _is_number(r.get(x))]
        runs.append((train, valid, resumed))

    try:
        import matplotlib  # noqa: F401  (first: a missing or blocked top-level package fails here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import EngFormatter
    except ImportError:
        raise CharlmError(MISSING_MATPLOTLIB) from None

    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch and no window, even when the
    # caller uses matplotlib interactively. savefig picks the SVG/PDF writer from the suffix.
    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = _labels(log_paths)
    several = len(runs) > 1
    for i, ((tx, ty), (vx, vy), resumed) in enumerate(runs):
        color = f"C{i % 10}"
        name = f"{labels[i]} " if several else ""
        if tx:
            ax.plot(tx, ty, color=color, linewidth=1.5, marker="." if len(tx) < 3 else None,
                    label=f"{name}train")
        if vx:
            ax.plot(vx, vy, color=color, linestyle="--", linewidth=0.8, marker="o", markersize=5,
                    label=f"{name}valid")
        for j, rx in enumerate(resumed):
            ax.axvline(rx, color=color, linestyle=":", linewidth=0.8, label=f"{name}resumed" if j == 0 else None)
    ax.set_xlabel(X_AXES[x])
    ax.set_ylabel("loss (nats/token)")
    if x == "tokens":
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title is None:
        title = "training loss" if several else f"training loss: {labels[0]}"
    if title:
        ax.set_title(title)
    try:
        fig.savefig(out, format=suffix[1:])
    except OSError as e:
        raise CharlmError(f"-o {out}: cannot write the plot: {e.strerror or e}") from None
    return out


def plot_confusion(report: dict, out) -> str:
    """Draw a classifier's confusion matrix (charlm.metrics, rows gold, columns predicted) with its
    labels on both axes and each cell's count, to `out` (.png, .svg or .pdf)."""
    import numpy as np
    suffix = Path(out).suffix.lower()
    if suffix not in (".png", ".svg", ".pdf"):
        raise CharlmError(f"--plot {out}: give a .png, .svg or .pdf file name")
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CharlmError(MISSING_MATPLOTLIB.replace("charlm plot", "--plot")) from None
    m = np.asarray(report["confusion"])
    labels = report["labels"]
    size = max(5.0, 0.45 * len(labels) + 2)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = np.maximum(m.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(m / rows, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the gold label's texts")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] / rows[i, 0] > 0.5 else "black")
    ax.set_title(f"accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}")
    try:
        fig.savefig(out, format=suffix[1:])
    except OSError as e:
        raise CharlmError(f"--plot {out}: cannot write the plot: {e.strerror or e}") from None
    return str(out)


def summarize_log(path) -> dict:
    """A run's history from its log: steps, epochs, tokens, wall seconds, mean tokens/s (tokens over wall
    time, validations included), last train loss, best validation loss and its step, validations, and
    how many times the run was resumed (event records such as {"step": 400, "event": "resumed"} are not
    counted as records). Figures the log does not have are None."""
    records = read_log(path)
    resumes = sum(1 for r in records if r.get("event") == "resumed")
    records = [r for r in records if "event" not in r] or records

    def last(key):
        return next((r[key] for r in reversed(records) if _is_number(r.get(key))), None)

    valids = [(r["valid_loss"], r["step"]) for r in records if _is_number(r.get("valid_loss"))]
    best = min(valids, key=lambda v: v[0]) if valids else (None, None)
    steps = max(r["step"] for r in records)
    tokens, wall = last("tokens"), last("wall")
    tok_s = tokens / wall if tokens is not None and wall else last("tok_s")
    return {"path": str(path), "records": len(records), "steps": steps, "epochs": last("epoch"),
            "tokens": tokens, "wall_seconds": wall, "tok_s": tok_s, "last_train_loss": last("train_loss"),
            "best_valid_loss": best[0], "best_valid_step": best[1], "validations": len(valids),
            "resumes": resumes}


def summary_line(s: dict) -> str:
    """One human line from summarize_log: what `charlm info` prints under "training history"."""
    parts = [f"{s['steps']:,} steps"]
    if s["epochs"] is not None:
        parts.append(f"{s['epochs']:.2f} epochs")
    if s["tokens"] is not None:
        parts.append(f"{s['tokens']:,} tokens")
    if s["wall_seconds"] is not None:
        parts.append(f"{s['wall_seconds']:.1f} s")
    if s["tok_s"] is not None:
        parts.append(f"{s['tok_s']:,.0f} tok/s")
    if s["last_train_loss"] is not None:
        parts.append(f"last train loss {s['last_train_loss']:.4f}")
    if s["best_valid_loss"] is not None:
        parts.append(f"best validation loss {s['best_valid_loss']:.4f} at step {s['best_valid_step']:,}")
    return ", ".join(parts)
