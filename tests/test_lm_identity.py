"""The language model trains as it did before the training engine (charlm.engine) took over the loop.

GOLDEN holds what commit 8b87561 (the last one with the loop inside train.py) produced for the run below:
the sha256 of every parameter's float32 bytes and every figure of the training log. The engine must give
the same bits. Bits depend on the BLAS kernels and the CPU the products ran on, so the digest is compared
where the golden run was made (OpenBLAS's SkylakeX kernels); elsewhere the logged figures must still agree
to float32 rounding.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

RUN = ["--cell", "lstm", "--layers", "2", "--hidden", "16", "--embed", "12", "--batch-size", "8", "--seq-len", "12",
       "--dropout", "0.2", "--lr-schedule", "cosine", "--max-steps", "50", "--valid-every", "10",
       "--checkpoint-every", "7", "--seed", "11", "--threads", "1", "-q"]
FIGURES = ("step", "epoch", "tokens", "train_loss", "valid_loss", "lr", "grad_norm")

GOLDEN = {                  # each log record: step, epoch, tokens, train_loss, valid_loss, lr, grad_norm
    "blas": "SkylakeX",
    "params_sha256": "73a1ee8ab47c308fa198c5c3bce041c48e6d8d69be2f489051dbb92a315c69ef",
    "log": [
        (10, 0.2326, 960, 3.02974863646226, 3.0093469285886925, 0.001844327925502015, None),
        (20, 0.4651, 1920, 3.0107570175689733, 2.9525021867097894, 0.0013681245526846783, None),
        (30, 0.6977, 2880, 2.9826443237418063, 2.8798364721571126, 0.0007513101128351453, None),
        (40, 0.9302, 3840, 2.956409930555915, 2.8471327863412137, 0.00022948675722421087, None),
        (50, 1.1628, 4760, 2.9375619318997126, None, 1.9732715717284413e-06, 0.3311711611533706),
        (50, 1.1628, 4760, 2.9375619318997126, 2.842305464381568, 1.9732715717284413e-06, None),
    ],
}


def _corpus() -> str:
    rng = np.random.default_rng(1)
    words = ["alas", "poor", "yorick", "i", "knew", "him", "horatio", "a", "fellow", "of", "infinite", "jest"]
    lines = [" ".join(words[i] for i in rng.integers(len(words), size=rng.integers(3, 9))) for _ in range(160)]
    return "\n".join(lines) + "\n"


def params_digest(params: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(params[name], dtype="<f4").tobytes())
    return h.hexdigest()


def run_golden(src: str | None = None) -> dict:
    """Train the run in a fresh process (charlm from `src`, else the installed one); its figures."""
    from charlm.checkpoint import load_model
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "corpus.txt"
        corpus.write_text(_corpus(), encoding="utf-8")
        out = Path(d) / "m.safetensors"
        env = dict(os.environ, NUMBA_NUM_THREADS="1")
        if src:
            env["PYTHONPATH"] = src
        done = subprocess.run([sys.executable, "-m", "charlm", "train", str(corpus), "-o", str(out), *RUN],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        records = [json.loads(line) for line in (Path(d) / "m.log.jsonl").read_text().splitlines()]
        log = [{k: r.get(k) for k in FIGURES} for r in records]
        return {"params_sha256": params_digest(load_model(out).params), "log": log}


def _blas_kernels() -> str:
    from threadpoolctl import threadpool_info
    from charlm.threads import compute_threads
    with compute_threads(1):                  # loads the kernels' OpenBLAS
        pass
    return ",".join(sorted({i.get("architecture", "?") for i in threadpool_info() if i["internal_api"] == "openblas"}))


def test_lm_run_is_the_one_before_the_engine():
    got = run_golden()
    golden = [dict(zip(FIGURES, values)) for values in GOLDEN["log"]]
    assert len(got["log"]) == len(golden)
    for mine, gold in zip(got["log"], golden):
        assert mine.keys() == gold.keys()
        for k, v in gold.items():
            if isinstance(v, float):
                assert mine[k] == pytest.approx(v, rel=1e-4), (k, mine, gold)
            else:
                assert mine[k] == v, (k, mine, gold)
    if _blas_kernels() == GOLDEN["blas"]:
        assert got["log"] == golden
        assert got["params_sha256"] == GOLDEN["params_sha256"]
