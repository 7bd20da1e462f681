"""Progress bars keep a width where the terminal reports none (`script`, CI log capture: 0 columns)."""
import io
import os

from charlm import progress


class _Stream(io.StringIO):
    def fileno(self):
        return 2


def test_a_terminal_of_zero_columns_gets_the_fallback_width(monkeypatch):
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
    out = _Stream()
    bar = progress.progress_bar(total=10, file=out, unit="step", mininterval=0)
    bar.update(5)
    bar.close()
    assert bar.ncols == progress.FALLBACK_COLUMNS and not bar.dynamic_ncols
    assert "5/10" in out.getvalue()


def test_a_real_terminal_width_is_followed(monkeypatch):
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((132, 40)))
    bar = progress.progress_bar(total=10, file=_Stream())
    assert bar.dynamic_ncols
    bar.close()


def test_no_terminal_at_all_counts_as_zero_columns():
    assert progress.terminal_columns(io.StringIO()) == 0
