"""Start-up cost: help and version never import NumPy, Numba or matplotlib; compiled kernels are cached on
disk, also when the installed package folder cannot be written (NUMBA_CACHE_DIR, or Numba's per-user
folder), so the second run of a command loads its kernels instead of compiling them.

Every check runs in a fresh interpreter (subprocess): the test process has long imported everything.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import charlm
from charlm.cli import main

HEAVY = ("numpy", "numba", "scipy", "matplotlib", "llvmlite", "safetensors", "tqdm")
PACKAGE = Path(charlm.__file__).resolve().parent


def python(code: str, *args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                         env=env, cwd=cwd, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res


# ------------------------------------------------------------------------------------------- help

HELP = """
import json, sys
from charlm.cli import main
code = main(sys.argv[1:], standalone_mode=False)
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def heavy_modules(modules) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY]


def help_args():
    cases = [["--help"], ["-h"], ["--version"]]
    cases += [[name, "--help"] for name in sorted(main.commands)]
    return cases


@pytest.mark.parametrize("args", help_args(), ids=" ".join)
def test_help_imports_nothing_heavy(args):
    """`charlm --help`, `charlm --version` and every `charlm COMMAND --help` (train among them)."""
    res = python(HELP, *args)
    out = res.stdout.strip().splitlines()
    report = json.loads(out[-1])
    assert report["code"] in (0, None)
    assert heavy_modules(report["modules"]) == []
    assert "Usage:" in res.stdout or "charlm, version" in res.stdout


def test_train_help_is_covered():
    assert ["train", "--help"] in help_args()


def test_plot_command_help_imports_nothing_heavy():
    """charlm.commands.plot is imported by cli.py to register `plot`: loading it and its help stay light."""
    code = """
import json, sys
import click
from charlm.commands.plot import plot_command
group = click.Group(commands={"plot": plot_command})
code = group.main(["plot", "--help"], standalone_mode=False)
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
    res = python(code)
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert "charlm plot" in res.stdout and "Examples:" in res.stdout
    assert heavy_modules(report["modules"]) == []


def test_entry_point_help_import_time():
    """The real entry point (`python -m charlm --help`), watched with -X importtime."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "charlm", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()
                if line.startswith("import time:") and "|" in line]
    assert "charlm.cli" in imported
    assert heavy_modules(imported) == []


# ------------------------------------------------------------------------------------ kernel cache

SAMPLE = """
import json, sys
import charlm
lm = charlm.load(sys.argv[1])
text = lm.sample(length=30, temp=0.8, seed=0, prime="ab")[0]
from numba.core.registry import CPUDispatcher
hits = misses = 0
paths = set()
for name, mod in list(sys.modules.items()):
    if not name.startswith("charlm"):
        continue
    for obj in list(vars(mod).values()):
        if isinstance(obj, CPUDispatcher):
            st = obj.stats
            hits += sum(st.cache_hits.values())
            misses += sum(st.cache_misses.values())
            if st.cache_hits or st.cache_misses:
                paths.add(st.cache_path)
print(json.dumps({"file": charlm.__file__, "text": text, "hits": hits, "misses": misses, "paths": sorted(paths)}))
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 1-layer LSTM with random weights (sampling needs no training)."""
    import numpy as np
    from charlm.checkpoint import save_model
    from charlm.config import ModelConfig
    from charlm.model import init_params
    tokens = ["<unk>", "<eos>"] + list("abcdefgh .")
    cfg = ModelConfig(cell="lstm", layers=1, hidden=8, embed=8, vocab_size=len(tokens))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, init_params(cfg, np.random.default_rng(0)), cfg, tokens)
    return path


@pytest.fixture
def readonly_package(tmp_path):
    """A copy of the charlm package that cannot be written: its folders are read-only, and each
    __pycache__ is a plain file, so neither Python nor Numba can cache next to the sources (the latter
    holds even for root, whom permissions do not stop)."""
    root = tmp_path / "site"
    shutil.copytree(PACKAGE, root / "charlm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dirs = [d for d in (root / "charlm").rglob("*") if d.is_dir()] + [root / "charlm"]
    for d in dirs:
        (d / "__pycache__").write_text("not a folder: this package copy is read-only\n")
    for p in [*dirs, *(root / "charlm").rglob("*.py")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield root
    for d in dirs:
        d.chmod(d.stat().st_mode | stat.S_IWUSR)


def clean_env(site: Path, home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_", "CHARLM_", "XDG_")) and k not in ("PYTHONPATH", "HOME")}
    env.update(PYTHONPATH=str(site), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               CHARLM_CACHE=str(home / ".cache" / "charlm"))
    env.update(extra)
    return env


def cache_files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")}


def run_sample(site, model, env, cwd):
    res = python(SAMPLE, model, env=env, cwd=cwd)
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().parent == (site / "charlm").resolve()   # the read-only copy ran
    assert report["text"].startswith("ab") and len(report["text"]) == 32
    return report


def check_cached_second_run(site, model, env, cwd, cache_root):
    first = run_sample(site, model, env, cwd)
    assert first["misses"] > 0 and first["hits"] == 0, first          # empty cache: compiled
    files = cache_files(cache_root)
    assert any(f.endswith(".nbi") for f in files) and any(f.endswith(".nbc") for f in files), files
    assert cache_files(site) == {}                                       # nothing written in the package
    second = run_sample(site, model, env, cwd)
    assert second["hits"] > 0 and second["misses"] == 0, second        # everything loaded from disk
    assert second["text"] == first["text"]
    assert cache_files(cache_root) == files                              # nothing recompiled or rewritten
    return first, second


def test_numba_cache_dir_with_readonly_package(readonly_package, tiny_model, tmp_path):
    cache = tmp_path / "numba-cache"
    env = clean_env(readonly_package, tmp_path / "home", NUMBA_CACHE_DIR=str(cache))
    first, _ = check_cached_second_run(readonly_package, tiny_model, env, tmp_path, cache)
    assert all(Path(p).resolve().is_relative_to(cache.resolve()) for p in first["paths"]), first["paths"]


def test_default_cache_with_readonly_package(readonly_package, tiny_model, tmp_path):
    """No NUMBA_CACHE_DIR: the kernels are still cached in a per-user folder (Numba's own fallback, or
    charlm's cache folder), here inside the test's HOME."""
    home = tmp_path / "home"
    env = clean_env(readonly_package, home)
    first, _ = check_cached_second_run(readonly_package, tiny_model, env, tmp_path, home)
    assert all(Path(p).resolve().is_relative_to(home.resolve()) for p in first["paths"]), first["paths"]
