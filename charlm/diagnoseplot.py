"""The figures of `charlm diagnose`: matplotlib on the Agg canvas (no pyplot), PNG/SVG/PDF by the suffix.

matplotlib is imported only when a figure is drawn (charlm.plot's rule), NumPy too.
"""
from __future__ import annotations

import os
from pathlib import Path

from charlm.errors import CharlmError
from charlm.plot import FORMATS, MISSING_MATPLOTLIB

STYLES = ("-", "--", ":", "-.")


def check_plot_path(out) -> str:
    """CharlmError unless `out` can take a figure: a .png, .svg or .pdf name in an existing folder."""
    out = str(out)
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise CharlmError(f"--plot {out}: give a .png, .svg or .pdf file name")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise CharlmError(f"--plot {out}: the folder {parent} does not exist")
    if os.path.isdir(out):
        raise CharlmError(f"--plot {out} is a directory")
    return out


def _figure(size=(8, 5)):
    try:
        import matplotlib  # noqa: F401  (first: a missing package fails here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CharlmError(MISSING_MATPLOTLIB.replace("charlm plot", "--plot")) from None
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out):
    try:
        fig.savefig(out, format=Path(out).suffix.lower()[1:])
    except OSError as e:
        raise CharlmError(f"--plot {out}: cannot write the plot: {e.strerror or e}") from None
    return out


def gradients_figure(profiles, title: str | None = None):
    """Ratio ‖∂L_t/∂h_(t-d)‖ / ‖∂L_t/∂h_t‖ against d on a log scale: one colour per profile (a cell),
    one line style per layer; a single profile also gets its quartile band. The legend gives each
    cell's decay rate and horizon, and its validation loss when known."""
    import numpy as np
    from charlm.diagnose import HORIZON
    fig = _figure()
    ax = fig.add_subplot()
    single = len(profiles) == 1
    for i, p in enumerate(profiles):
        color = f"C{i % 10}"
        d = np.arange(p.span + 1)
        for k in range(p.layers):
            name = p.label or p.cell
            label = name if p.layers == 1 else f"{name} layer {k}"
            if p.horizon[k] is not None:
                label += f": ρ {p.decay[k]:.3f}, horizon {p.horizon[k]}"
            else:
                label += f": ρ {p.decay[k]:.3f}, horizon > {p.span}"
            if k == p.layers - 1 and p.valid_loss is not None:
                label += f", valid {p.valid_loss:.3f}"
            ax.plot(d, np.maximum(p.ratio[k], 1e-300), color=color if not single else f"C{k}",
                    linestyle=STYLES[k % len(STYLES)] if not single else "-", linewidth=1.5, label=label)
            if single:
                ax.fill_between(d, np.maximum(p.q25[k], 1e-300), np.maximum(p.q75[k], 1e-300), color=f"C{k}",
                                alpha=0.2, linewidth=0)
    ax.axhline(HORIZON, color="grey", linestyle=":", linewidth=1, label=f"horizon threshold {HORIZON:g}")
    ax.set_yscale("log")
    ax.set_xlabel("d (steps back)")
    ax.set_ylabel("‖∂L_t/∂h_(t−d)‖ / ‖∂L_t/∂h_t‖ (geometric mean)")
    ax.grid(True, alpha=0.3, which="both")
    lo = min(float(np.min(np.maximum(p.ratio, 1e-300))) for p in profiles)
    ax.set_ylim(max(lo / 3, 1e-60), None)
    ax.legend(fontsize=8)
    ax.set_title(title if title is not None else
                 (f"gradient reaching the state d steps back: {profiles[0].describe}" if single
                  else "gradient reaching the state d steps back, per cell"))
    return fig


def long_range_figure(result: dict, title: str | None = None):
    """Success (1) or failure (0) and the final error against sequence length, one line per cell."""
    fig = _figure()
    ax = fig.add_subplot()
    lengths = result["lengths"]
    for i, (cell, rows) in enumerate(result["cells"].items()):
        ys = [r["error"] for r in rows]
        ax.plot(lengths, ys, color=f"C{i % 10}", marker="o", label=cell)
        for x, r in zip(lengths, rows):
            if r["success"]:
                ax.plot([x], [r["error"]], color=f"C{i % 10}", marker="*", markersize=14)
    ax.axhline(result["threshold"], color="grey", linestyle=":", label=f"success threshold {result['threshold']:g}")
    ax.axhline(result["chance"], color="black", linestyle="--", linewidth=0.8, label=f"chance {result['chance']:.3g}")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(lengths, [str(x) for x in lengths])
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(result["error_name"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title if title is not None else
                 f"{result['task']} problem: validation error by length (★ = success)")
    return fig


def clipping_figure(report: dict, title: str | None = None):
    """The pre-clip gradient norms of a training log: against step (left, log scale, the clip line), and
    their histogram (right)."""
    import numpy as np
    fig = _figure((11, 4.5))
    ax, hx = fig.subplots(1, 2, width_ratios=[2, 1])
    steps, norms = np.asarray(report["steps"]), np.asarray(report["norms"], float)
    ax.plot(steps, norms, color="C0", linewidth=0.8, marker="." if len(steps) < 200 else None, label="grad_norm")
    if report.get("clip"):
        ax.axhline(report["clip"], color="C3", linestyle="--", label=f"clip {report['clip']:g}")
        hx.axvline(report["clip"], color="C3", linestyle="--")
    for s in report.get("spikes", []):
        ax.axvline(s["step"], color="grey", alpha=0.3, linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm before clipping")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    pos = norms[np.isfinite(norms) & (norms > 0)]
    if pos.size:
        bins = np.logspace(np.log10(pos.min()), np.log10(pos.max()) + 1e-9, 30)
        hx.hist(pos, bins=bins, color="C0")
        hx.set_xscale("log")
    hx.set_xlabel("gradient norm before clipping")
    hx.set_ylabel("logged steps")
    fig.suptitle(title if title is not None else f"gradient norms: {report['source']}")
    return fig


def plot_gradients(profiles, out, title: str | None = None) -> str:
    """`gradients_figure` drawn to `out` (.png, .svg or .pdf); returns `out`."""
    return _save(gradients_figure(profiles, title), check_plot_path(out))


def plot_long_range(result: dict, out, title: str | None = None) -> str:
    """`long_range_figure` drawn to `out`; returns `out`."""
    return _save(long_range_figure(result, title), check_plot_path(out))


def plot_clipping(report: dict, out, title: str | None = None) -> str:
    """`clipping_figure` drawn to `out`; returns `out`."""
    return _save(clipping_figure(report, title), check_plot_path(out))
