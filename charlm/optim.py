"""Optimizers and gradient clipping. State is plain arrays and numbers, so a run can be saved and resumed.

Adam (Kingma & Ba), with t the step count after this update:
    m = β1 m + (1-β1) g,   v = β2 v + (1-β2) g²
    p -= lr · (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + ε)
SGD with momentum μ (μ = 0: plain SGD):
    u = μ u + g,   p -= lr · u
Clipping by global norm: if ‖g‖ = sqrt(Σ g²) > clip, every g is scaled by clip / ‖g‖.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from charlm.kernels import PARALLEL, SERIAL

LANES = 16   # Σ g² in 16 partial sums (lane l takes i ≡ l mod 16): a fixed order LLVM can vectorize


@njit(**PARALLEL)
def _adam_kernel(p, g, m, v, lr, b1, b2, eps, c1, c2):
    """In-place Adam update on flat arrays; c1 = 1-β1^t, c2 = 1-β2^t."""
    for i in prange(p.shape[0]):
        gi = g[i]
        mi = b1 * m[i] + (1.0 - b1) * gi
        vi = b2 * v[i] + (1.0 - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= lr * (mi / c1) / (math.sqrt(vi / c2) + eps)


@njit(**PARALLEL)
def _sgd_kernel(p, g, u, lr, mu):
    for i in prange(p.shape[0]):
        ui = mu * u[i] + g[i]
        u[i] = ui
        p[i] -= lr * ui


@njit(**SERIAL)
def _sum_squares(g):
    """Σ g² accumulated in float64 (g flat)."""
    n = g.shape[0]
    whole = n - n % LANES
    lanes = np.zeros(LANES, np.float64)
    for i0 in range(0, whole, LANES):
        for l in range(LANES):
            gi = np.float64(g[i0 + l])
            lanes[l] += gi * gi
    s = 0.0
    for i in range(whole, n):
        s += np.float64(g[i]) * g[i]
    for l in range(LANES):
        s += lanes[l]
    return s


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """sqrt(Σ g²) over every gradient, accumulated in float64."""
    return math.sqrt(sum(_sum_squares(g.reshape(-1)) for g in grads.values()))


def clip_grads(grads: dict[str, np.ndarray], clip: float) -> float:
    """Scale all gradients in place so their global norm is at most clip (0 = off). Returns the norm
    before clipping."""
    norm = global_norm(grads)
    if clip > 0 and norm > clip:
        scale = clip / norm
        for g in grads.values():
            g *= scale
    return norm


class Adam:
    name = "adam"

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params, grads):
        self.t += 1
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        for k, p in params.items():
            _adam_kernel(p.reshape(-1), grads[k].reshape(-1), self.m[k].reshape(-1), self.v[k].reshape(-1),
                         self.lr, self.b1, self.b2, self.eps, c1, c2)

    def state_arrays(self) -> dict[str, np.ndarray]:
        out = {f"m.{k}": a for k, a in self.m.items()}
        out.update({f"v.{k}": a for k, a in self.v.items()})
        return out

    def state_scalars(self) -> dict:
        return {"t": self.t, "lr": self.lr}

    def load_state(self, arrays, scalars):
        for k in self.m:
            self.m[k][...] = arrays[f"m.{k}"]
            self.v[k][...] = arrays[f"v.{k}"]
        self.t = int(scalars["t"])
        self.lr = float(scalars["lr"])


class SGD:
    name = "sgd"

    def __init__(self, params, lr=1.0, momentum=0.0):
        self.lr, self.momentum = lr, momentum
        self.t = 0
        self.u = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params, grads):
        self.t += 1
        for k, p in params.items():
            _sgd_kernel(p.reshape(-1), grads[k].reshape(-1), self.u[k].reshape(-1), self.lr, self.momentum)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {f"u.{k}": a for k, a in self.u.items()}

    def state_scalars(self) -> dict:
        return {"t": self.t, "lr": self.lr}

    def load_state(self, arrays, scalars):
        for k in self.u:
            self.u[k][...] = arrays[f"u.{k}"]
        self.t = int(scalars["t"])
        self.lr = float(scalars["lr"])


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0):
    if name == "adam":
        return Adam(params, lr=lr)
    return SGD(params, lr=lr, momentum=momentum)
