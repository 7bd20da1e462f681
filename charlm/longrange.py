"""Synthetic tasks whose answer depends on inputs far back, trained on the engine (charlm.engine).

The adding problem (Hochreiter & Schmidhuber 1997, exp. 4; the two-halves form of Le et al. 2015):
    x_t = (v_t, m_t),  v_t ~ U(0, 1),  m_t = 1 at exactly two steps i1 < T/2 <= i2, else 0
    target y = v_i1 + v_i2,  regression, loss = error = mean squared error.
    Answering the mean 1 gets 1/6 ≈ 0.167; knowing one of the two numbers, 1/12 ≈ 0.083.
The temporal-order problem (Hochreiter & Schmidhuber 1997, exp. 6a, without the start/end symbols):
    x_t one-hot over {a, b, c, d, X, Y}: distractors a-d drawn uniformly, except at t1 in
    [T/10, 2T/10] and t2 in [5T/10, 6T/10], which hold X or Y each;
    class y = 2 [s_t1 = Y] + [s_t2 = Y]  (XX 0, XY 1, YX 2, YY 3), loss = cross-entropy, error = 1 - accuracy.
    Chance is 0.75; knowing one of the two symbols, 0.5.

The model: one recurrent stack over real-valued inputs (the packed core, charlm.packed, all sequences of
length T), then a linear head on the top layer's final state:
    v = final h of layer L-1        # (B, H)
    z = v head.weight^T + head.bias # (B, 1) adding, (B, 4) temporal order
Training draws a fresh batch per step from the engine's saved generator; validation is a fixed set drawn
from default_rng([seed, 1]). Success at a length: the kept model's validation error below THRESHOLD.
"""
from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

from charlm import packed
from charlm.config import ModelConfig, RunConfig
from charlm.errors import CharlmError

TASKS = ("adding", "temporal-order")
THRESHOLD = {"adding": 0.04, "temporal-order": 0.1}     # success: validation error below this
CHANCE = {"adding": 1.0 / 6.0, "temporal-order": 0.75}   # the error of the best answer blind to the input
ERROR_NAME = {"adding": "validation MSE", "temporal-order": "validation error rate (1 - accuracy)"}
INPUTS = {"adding": 2, "temporal-order": 6}
OUTPUTS = {"adding": 1, "temporal-order": 4}
MIN_LENGTH = {"adding": 2, "temporal-order": 10}


def adding(rng: np.random.Generator, n: int, T: int):
    """n adding-problem sequences of length T: X (n, T, 2) float64, y (n,) float64, marks (n, 2)."""
    if T < 2:
        raise CharlmError(f"the adding problem needs length >= 2, got {T}")
    X = np.zeros((n, T, 2))
    X[:, :, 0] = rng.random((n, T))
    i1 = rng.integers(0, T // 2, n)
    i2 = rng.integers(T // 2, T, n)
    rows = np.arange(n)
    X[rows, i1, 1] = 1.0
    X[rows, i2, 1] = 1.0
    y = X[rows, i1, 0] + X[rows, i2, 0]
    return X, y, np.stack([i1, i2], axis=1)


def temporal_order(rng: np.random.Generator, n: int, T: int):
    """n temporal-order sequences of length T: X (n, T, 6) one-hot, y (n,) int64 class, marks (n, 2)."""
    if T < 10:
        raise CharlmError(f"the temporal-order problem needs length >= 10, got {T}")
    sym = rng.integers(0, 4, (n, T))                       # distractors a, b, c, d
    t1 = rng.integers(T // 10, 2 * T // 10 + 1, n)
    t2 = rng.integers(5 * T // 10, 6 * T // 10 + 1, n)
    s1, s2 = rng.integers(0, 2, n), rng.integers(0, 2, n)  # 0: X, 1: Y
    rows = np.arange(n)
    sym[rows, t1] = 4 + s1
    sym[rows, t2] = 4 + s2
    X = np.eye(6)[sym]
    return X, 2 * s1 + s2, np.stack([t1, t2], axis=1)


GENERATORS = {"adding": adding, "temporal-order": temporal_order}


def model_config(task: str, cell_kwargs: dict, hidden: int, layers: int = 1) -> ModelConfig:
    """The recurrent stack's config: its layer 0 reads the task's inputs (embed = input size)."""
    return ModelConfig(level="char", layers=layers, hidden=hidden, embed=INPUTS[task], vocab_size=2, **cell_kwargs)


def init_params(task: str, cfg: ModelConfig, rng: np.random.Generator, dtype=np.float32) -> dict:
    """PyTorch's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for the cells and the head, zero head bias."""
    k = 1.0 / math.sqrt(cfg.hidden)
    P = {name: np.ascontiguousarray(rng.uniform(-k, k, shape), dtype)
         for name, shape in cfg.param_shapes().items() if name.startswith("rnn.")}
    P["head.weight"] = np.ascontiguousarray(rng.uniform(-k, k, (OUTPUTS[task], cfg.hidden)), dtype)
    P["head.bias"] = np.zeros(OUTPUTS[task], dtype)
    return P


def _packed(X):
    """(n, T, In) equal-length sequences -> (Layout, packed (n*T, In)): step-major, sequence order kept."""
    n, T, In = X.shape
    layout = packed.Layout.from_lengths(np.full(n, T))
    return layout, np.ascontiguousarray(X.transpose(1, 0, 2).reshape(n * T, In))


def predict(task: str, cfg: ModelConfig, P, X):
    """z (n, outputs) for inputs X (n, T, In), and what the backward needs."""
    layout, Xp = _packed(np.asarray(X, P["head.weight"].dtype))
    _, final, cache = packed.forward(cfg, P, Xp, layout)
    v = final[cfg.layers - 1, 0, 0]                                  # (n, H) top layer's final h
    return v @ P["head.weight"].T + P["head.bias"], (v, cache, layout)


def loss_and_grads(task: str, cfg: ModelConfig, P, X, y):
    """Mean loss over the batch (MSE or cross-entropy) and the gradient of every parameter."""
    z, (v, cache, layout) = predict(task, cfg, P, X)
    n = z.shape[0]
    if task == "adding":
        r = z[:, 0] - y                                              # (n,)
        loss = float(np.mean(r.astype(np.float64) ** 2))
        dz = (2.0 / n) * r[:, None]                                  # d mean(r²) / dz
    else:
        zs = z - z.max(axis=1, keepdims=True)
        p = np.exp(zs)
        p /= p.sum(axis=1, keepdims=True)
        loss = float(-np.mean(np.log(np.maximum(p[np.arange(n), y], 1e-300))))
        dz = p.copy()
        dz[np.arange(n), y] -= 1.0                                   # softmax - onehot
        dz /= n
    dz = dz.astype(v.dtype)
    dv = dz @ P["head.weight"]                                       # (n, H)
    dfinal = np.zeros((cfg.layers, 1, 2, layout.B, cfg.hidden), v.dtype)
    dfinal[cfg.layers - 1, 0, 0] = dv
    _, grads, _ = packed.backward(cfg, P, cache, None, dfinal)
    grads["head.weight"] = dz.T @ v                                  # (C, H)
    grads["head.bias"] = dz.sum(axis=0)
    return loss, grads


def error(task: str, z, y) -> float:
    """MSE (adding) or 1 - accuracy (temporal order)."""
    if task == "adding":
        return float(np.mean((z[:, 0].astype(np.float64) - y) ** 2))
    return float(np.mean(z.argmax(axis=1) != y))


class LongRangeTask:
    """One synthetic task at one length, as a task of the training engine (charlm.engine's interface)."""
    kind = "long-range"
    select = "valid_error"
    higher_is_better = False
    metrics = ("valid_loss", "valid_error")
    label = "err"
    steps_per_epoch = 100          # an "epoch": 100 fresh batches (validation at each)

    def __init__(self, task: str, length: int, cfg: ModelConfig, tc: RunConfig, valid_size: int = 1000):
        if task not in TASKS:
            raise CharlmError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
        self.task, self.length, self.config, self.tc = task, length, cfg, tc
        self.vocab = {"task": task, "length": length}
        Xv, yv, _ = GENERATORS[task](np.random.default_rng([tc.seed, 1]), valid_size, length)
        self.valid = (Xv.astype(np.float32), yv)
        self.digests = {"train": hashlib.sha256(f"{task}/{length}/{tc.seed}".encode()).hexdigest(),
                        "valid": hashlib.sha256(Xv.tobytes()).hexdigest()}

    def init_params(self, rng):
        return init_params(self.task, self.config, rng)

    def carried(self):
        return {}

    def restore(self, tensors):
        pass

    def check_position(self, position):
        pass

    def step(self, P, epoch, position, rng):
        X, y, _ = GENERATORS[self.task](rng, self.tc.batch_size, self.length)
        loss, grads = loss_and_grads(self.task, self.config, P, X.astype(np.float32), y)
        return loss, grads, self.tc.batch_size * self.length, lambda: None

    def advance(self, position):
        return position + 1, position + 1 >= self.steps_per_epoch

    def new_epoch(self):
        pass

    def evaluate(self, P):
        X, y = self.valid
        z, _ = predict(self.task, self.config, P, X)
        if self.task == "adding":
            loss = error(self.task, z, y)
        else:
            zs = z.astype(np.float64) - z.max(axis=1, keepdims=True)
            loss = float(-np.mean(zs[np.arange(len(y)), y] - np.log(np.exp(zs).sum(axis=1))))
        return {"valid_loss": loss, "valid_error": error(self.task, z, y)}

    def final_metrics(self, path):
        import safetensors.numpy
        return self.evaluate(dict(safetensors.numpy.load_file(path)))

    def save_model(self, path, P, meta):
        import safetensors.numpy
        from charlm.checkpoint import write_atomic
        meta = dict(meta, **self.model_metadata(self.config, self.vocab))
        write_atomic(path, safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in P.items()},
                                                  metadata=meta), what="model")

    @staticmethod
    def model_metadata(config, vocab) -> dict[str, str]:
        return {"config": config.to_json(), "task": "long-range", "long_range": json.dumps(vocab)}

    @staticmethod
    def carried_shapes(config, train_config) -> dict:
        return {}


def _register():
    from charlm.tasks import register
    register(LongRangeTask)


def train_one(task: str, cell: str, length: int, out: str, hidden: int = 64, time_budget: float = 30.0,
              batch_size: int = 32, lr: float = 1e-3, clip: float = 1.0, seed: int = 0, log=lambda msg: None,
              threads: int | None = None) -> dict:
    """Train `cell` on `task` at `length` on the engine for `time_budget` seconds, model at `out`.
    Returns {length, error, success, valid_loss, steps, seconds}."""
    from charlm import engine
    from charlm.cellnames import CELL_KINDS
    _register()
    cfg = model_config(task, CELL_KINDS[cell], hidden)
    tc = RunConfig(batch_size=batch_size, lr=lr, clip=clip, seed=seed, time_budget=time_budget, keep="best")
    X, y, _ = GENERATORS[task](np.random.default_rng(0), 2, MIN_LENGTH[task])     # load the kernels before
    loss_and_grads(task, cfg, init_params(task, cfg, np.random.default_rng(0)), X.astype(np.float32), y)  # the clock
    res = engine.run(LongRangeTask(task, length, cfg, tc), out, progress=False, log=log, threads=threads)
    err = (res.final or res.last)["valid_error"]
    return {"length": length, "error": err, "success": bool(err < THRESHOLD[task]),
            "valid_loss": (res.final or res.last)["valid_loss"], "steps": res.steps, "seconds": round(res.seconds, 1)}


def long_range(task: str, lengths, cells, out_dir: str, hidden: int = 64, time_budget: float = 30.0,
               batch_size: int = 32, lr: float = 1e-3, clip: float = 1.0, seed: int = 0, log=lambda msg: None,
               threads: int | None = None) -> dict:
    """Every cell at every length with the same budget: {task, threshold, chance, error_name, lengths,
    cells: {cell: [per-length results of train_one]}}."""
    if task not in TASKS:
        raise CharlmError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    short = [n for n in lengths if n < MIN_LENGTH[task]]
    if short:
        raise CharlmError(f"--lengths: the {task} problem needs lengths >= {MIN_LENGTH[task]}, got {short[0]}")
    result = {"task": task, "threshold": THRESHOLD[task], "chance": CHANCE[task], "error_name": ERROR_NAME[task],
              "lengths": list(lengths), "hidden": hidden, "time_budget": time_budget, "batch_size": batch_size,
              "lr": lr, "clip": clip, "seed": seed, "cells": {}}
    for cell in cells:
        rows = []
        for n in lengths:
            out = os.path.join(out_dir, f"{task}-{cell}-T{n}.safetensors")
            r = train_one(task, cell, n, out, hidden, time_budget, batch_size, lr, clip, seed, log, threads)
            log(f"{task} {cell} T={n}: error {r['error']:.4f} ({'success' if r['success'] else 'failure'}), "
                f"{r['steps']:,} steps in {r['seconds']:.0f} s")
            rows.append(r)
        result["cells"][cell] = rows
    return result


def format_long_range(result: dict) -> str:
    """The success-against-length table: error per cell and length, * where it is below the threshold."""
    lengths = result["lengths"]
    w = max(8, max(len(c) for c in result["cells"]))
    lines = [f"{result['task']} problem: {result['error_name']} by length T (* = success, below "
             f"{result['threshold']:g}; chance {result['chance']:.3g}); {result['time_budget']:g} s each",
             f"{'cell':<{w}}" + "".join(f"  {'T=' + str(n):>9}" for n in lengths)]
    for cell, rows in result["cells"].items():
        lines.append(f"{cell:<{w}}" + "".join(f"  {r['error']:8.4f}{'*' if r['success'] else ' '}" for r in rows))
    return "\n".join(lines)
