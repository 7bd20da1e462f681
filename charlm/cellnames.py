"""The six cell variants by one name each, as `charlm diagnose` and the tests spell them.

No NumPy or click here: the CLI uses these names for its choices and stays fast to start.
"""
from __future__ import annotations

CELL_KINDS = {    # name -> ModelConfig keyword arguments
    "rnn-tanh": dict(cell="rnn", activation="tanh"),
    "rnn-relu": dict(cell="rnn", activation="relu"),
    "gru-minimal": dict(cell="gru", gru_variant="minimal"),
    "gru-full": dict(cell="gru", gru_variant="full"),
    "lstm": dict(cell="lstm"),
    "lstm-peephole": dict(cell="lstm", peephole=True),
}


def cell_name(cfg) -> str:
    """The CELL_KINDS name of a ModelConfig's cell."""
    if cfg.cell == "rnn":
        return f"rnn-{cfg.activation}"
    if cfg.cell == "gru":
        return f"gru-{cfg.gru_variant}"
    return "lstm-peephole" if cfg.peephole else "lstm"


def parse_cells(text: str) -> list[str]:
    """'rnn-tanh,lstm' -> ['rnn-tanh', 'lstm']; ValueError naming an unknown or repeated cell."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValueError("no cell given")
    for n in names:
        if n not in CELL_KINDS:
            raise ValueError(f"unknown cell {n!r} (one of {', '.join(CELL_KINDS)})")
    if len(set(names)) != len(names):
        raise ValueError(f"a cell is named twice in {text!r}")
    return names
