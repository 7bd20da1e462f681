"""The built-in default corpus: the English reference text that ships inside every CPython (pydoc_data).

`pydoc_data.topics.topics` maps help topics ("if", "for", "string-methods", ...) to their text from the
Python Language Reference: about 465 thousand characters of edited English prose with code, available
offline on any machine that has Python. It is written once to a cache file, topics in sorted order.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from charlm.errors import CharlmError


def cache_dir() -> Path:
    """charlm's cache folder: $CHARLM_CACHE, else $XDG_CACHE_HOME/charlm, else ~/.cache/charlm."""
    if os.environ.get("CHARLM_CACHE"):
        return Path(os.environ["CHARLM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "charlm"


def pydoc_text() -> str:
    """The built-in corpus as one string: every pydoc topic, sorted by name, separated by a blank line."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # some distributions strip pydoc_data
        raise CharlmError("this Python has no pydoc_data module, so the built-in corpus is unavailable: "
                          "give a text file instead") from e
    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


def pydoc_path() -> Path:
    """A UTF-8 file holding `pydoc_text()`, written on first use (named by its content hash)."""
    text = pydoc_text()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    path = cache_dir() / f"pydoc-{digest}.txt"
    if not path.exists():
        from charlm.checkpoint import write_atomic
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CharlmError(f"cannot create charlm's cache folder {path.parent} ({e.strerror or e}): set "
                              f"CHARLM_CACHE to a writable folder") from None
        write_atomic(path, text.encode("utf-8"), what="corpus")
    return path
