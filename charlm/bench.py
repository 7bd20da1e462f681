"""`charlm bench`: this machine's speed for one model shape on random data, compilation excluded.

Measures what ../shared/bench/torch_baseline.py measures for PyTorch, with the same shapes and steps:
train_tok_s (forward, backward, clip 5, Adam step; state carried between windows), eval_tok_s (forward
and log-softmax) and sample_tok_s (batch-1 generation at temperature 0.8, one token at a time).
"""
from __future__ import annotations

import time

import numba
import numpy as np

from charlm import generate, model
from charlm.config import ModelConfig
from charlm.optim import Adam, clip_grads
from charlm.threads import compute_threads


def run(cfg: ModelConfig, batch: int, seq: int, steps: int = 20, sample_tokens: int = 500, seed: int = 0) -> dict:
    with compute_threads():
        return _run(cfg, batch, seq, steps, sample_tokens, seed)


def _run(cfg, batch, seq, steps, sample_tokens, seed):
    rng = np.random.default_rng(seed)
    P = model.init_params(cfg, rng)
    opt = Adam(P, lr=2e-3)
    x = rng.integers(0, cfg.vocab_size, (seq, batch)).astype(np.int32)   # (T, B)
    y = rng.integers(0, cfg.vocab_size, (seq, batch)).astype(np.int32)

    def train(n):
        state = model.zero_state(cfg, batch)
        for _ in range(n):
            _, grads, state = model.loss_and_grads(cfg, P, x, y, state)
            clip_grads(grads, 5.0)
            opt.step(P, grads)

    def evaluate(n):
        state = model.zero_state(cfg, batch)
        for _ in range(n):
            _, state = model.token_nll(cfg, P, x, y, state)

    prefix = np.array([cfg.eos_id], np.int32)

    def sample(n):
        generate.sample_ids(cfg, P, prefix, n, 1, 0.8, 0, 1.0, False, False, rng)

    train(2)
    evaluate(1)
    sample(20)
    t = time.perf_counter()
    train(steps)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    evaluate(steps)
    eval_s = time.perf_counter() - t
    t = time.perf_counter()
    sample(sample_tokens)
    sample_s = time.perf_counter() - t
    return {"cell": cfg.describe(), "threads": numba.get_num_threads(), "threading_layer": numba.threading_layer(),
            "vocab": cfg.vocab_size, "embed": cfg.embed, "hidden": cfg.hidden,
            "layers": cfg.layers, "batch": batch, "seq": seq, "steps": steps,
            "train_tok_s": round(steps * seq * batch / train_s), "eval_tok_s": round(steps * seq * batch / eval_s),
            "sample_tok_s": round(sample_tokens / sample_s)}
