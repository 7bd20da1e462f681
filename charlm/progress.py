"""Progress bars: tqdm on stderr, as wide as the terminal, or FALLBACK_COLUMNS wide where the terminal
reports no width (`script`, some CI log capture say 0 columns, and tqdm then drew nothing at all)."""
from __future__ import annotations

import os
import sys

FALLBACK_COLUMNS = 80


def terminal_columns(stream=None) -> int:
    """Columns of the terminal behind `stream` (stderr by default); 0 when it has none or reports none."""
    try:
        return os.get_terminal_size((stream or sys.stderr).fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def progress_bar(**kwargs):
    """A tqdm bar on stderr: it follows the terminal's width, or is FALLBACK_COLUMNS wide without one."""
    from tqdm import tqdm
    kwargs.setdefault("file", sys.stderr)
    if terminal_columns(kwargs["file"]) > 0:
        return tqdm(dynamic_ncols=True, **kwargs)
    return tqdm(ncols=FALLBACK_COLUMNS, **kwargs)
