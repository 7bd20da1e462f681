"""Lets test modules import the shared helpers beside them (support.py, reference.py), and makes a
missing test dependency or corpus a failure under CI.

Under CI (CI=true) every skip whose reason says something is missing (pytest.importorskip's "could not
import ...", a corpus that "is absent" or "not found") is reported as a failure instead: CI has the
test extra and the shared corpora, so such a skip means the set-up is broken. Other skips (a test that
needs a non-root user, a second Numba thread, bash) stay skips there too.
"""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import STRICT  # noqa: E402

MISSING = re.compile(r"could not import|is absent|not found|no module named", re.IGNORECASE)


def _missing(report) -> str | None:
    if report.skipped and isinstance(report.longrepr, tuple) and MISSING.search(str(report.longrepr[2])):
        return str(report.longrepr[2])
    return None


def _fail(report, reason: str) -> None:
    report.outcome = "failed"
    report.longrepr = f"CI=true, so a missing dependency or corpus is a failure, not a skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and (reason := _missing(report)):
        _fail(report, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if STRICT and (reason := _missing(report)):
        _fail(report, reason)
