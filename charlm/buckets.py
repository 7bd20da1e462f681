"""Batches of sequences of similar lengths (bucketing), reproducible from (seed, epoch) alone.

A padded (T_max, B) batch computes B * T_max positions for Σ_b L_b real tokens; its wasted fraction is
    waste = 1 - Σ_batches Σ_b L_b / Σ_batches B_i * T_max,i
Packed batches (charlm.packed) do no work on padding, but a shrinking batch still runs its longest
sequence's steps with few rows, so similar lengths help them too.

`batches` sorts the sequences by length with random tie-breaking, cuts the sorted order into batches
(at most batch_size sequences, and optionally at most max_tokens padded positions, B * T_max, each),
then shuffles the order of the batches. Everything is drawn from numpy.random.default_rng([seed,
epoch]), so a run resumes at (epoch, batch index) by calling `batches` again and skipping that many
batches: no permutation needs saving.

`sampled_batches` first draws the epoch's sequences with replacement, sequence i with probability
    π_i ∝ n_{y_i}^(q - 1)      (n_c the count of class c; class c then gets the share n_c^q / Σ_k n_k^q)
so q = 1 is the data as it is, q = 0 gives every class the same share (class-balanced sampling) and
q = ½ lies between; the draw comes from default_rng([seed, epoch, 1]), so it too is redrawn on resume.
"""
from __future__ import annotations

import math

import numpy as np

from charlm.errors import CharlmError


CLASS_SAMPLING = {"none": 1.0, "sqrt": 0.5, "balanced": 0.0}     # the power q of sampled_batches, by name


def sampling_power(value: str) -> float:
    """The power q of sampled_batches that a --class-sampling value names: none 1, sqrt ½,
    balanced 0, or the number itself (a decimal in [0, 1]); CharlmError for anything else."""
    if value in CLASS_SAMPLING:
        return CLASS_SAMPLING[value]
    try:
        q = float(value)
    except (TypeError, ValueError):
        q = math.nan
    if not 0.0 <= q <= 1.0:                 # also refuses nan
        raise CharlmError(f"class_sampling must be one of {tuple(CLASS_SAMPLING)} or a number in [0, 1], "
                          f"got {value!r}")
    return q


def batches(lengths, batch_size: int, seed: int = 0, epoch: int = 0, max_tokens: int = 0,
            bucketed: bool = True) -> list[np.ndarray]:
    """The batches of one epoch: a list of index arrays into `lengths`, each index exactly once.

    bucketed=False gives the usual random batches (a random permutation cut every batch_size), for
    comparison. max_tokens > 0 also caps a batch's padded size B * T_max (a sequence longer than
    max_tokens gets a batch of its own).
    """
    L = _lengths(lengths)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise CharlmError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_tokens < 0:
        raise CharlmError(f"max_tokens must be >= 0 (0 = no cap), got {max_tokens!r}")
    rng = np.random.default_rng([seed, epoch])
    if not bucketed:
        perm = rng.permutation(L.size)
        return [perm[i: i + batch_size] for i in range(0, L.size, batch_size)]
    ties = rng.random(L.size)
    idx = np.lexsort((ties, L))                         # by length, ties in random order
    cuts = _cuts(L[idx], batch_size, max_tokens)
    out = [idx[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    return [out[i] for i in rng.permutation(len(out))]


def labeled_batches(lengths, labels, class_sampling: str, batch_size: int, seed: int = 0,
                    epoch: int = 0) -> list[np.ndarray]:
    """The batches of one epoch of labeled sequences as a --class-sampling value asks: each sequence once
    (`batches`) for none (q = 1), else drawn with replacement by label (`sampled_batches` with q)."""
    q = sampling_power(class_sampling)
    if q == 1.0:
        return batches(lengths, batch_size, seed, epoch)
    return sampled_batches(lengths, labels, q, batch_size, seed, epoch)


def sampled_batches(lengths, labels, power: float, batch_size: int, seed: int = 0, epoch: int = 0,
                    max_tokens: int = 0) -> list[np.ndarray]:
    """The batches of one epoch of len(lengths) sequences drawn with replacement, sequence i with
    probability ∝ count(labels[i]) ** (power - 1) (module docstring), then bucketed as `batches` does.
    Index arrays into `lengths`; an index may occur several times or not at all."""
    L = _lengths(lengths)
    y = np.asarray(labels, np.int64)
    if y.shape != L.shape or (y < 0).any():
        raise CharlmError("labels must be one non-negative class id per sequence")
    if not 0 <= power <= 1:
        raise CharlmError(f"the sampling power must be in [0, 1], got {power!r}")
    w = np.bincount(y).astype(np.float64)[y] ** (power - 1.0)                # (S,) unnormalised π
    draw = np.random.default_rng([seed, epoch, 1]).choice(L.size, size=L.size, replace=True, p=w / w.sum())
    return [draw[b] for b in batches(L[draw], batch_size, seed, epoch, max_tokens)]


def _cuts(sorted_lengths, batch_size, max_tokens):
    """Batch boundaries over lengths sorted ascending: a batch ends at batch_size sequences, or before
    the sequence that would take B * T_max (T_max its own length) past max_tokens."""
    n = sorted_lengths.size
    if not max_tokens:
        return list(range(0, n, batch_size)) + [n]
    cuts, start = [0], 0
    for i in range(n):
        size = i - start + 1
        if i > start and (size > batch_size or size * sorted_lengths[i] > max_tokens):
            cuts.append(i)
            start = i
    cuts.append(n)
    return cuts


def padding_waste(lengths, batch_list) -> float:
    """The fraction of positions a padded (T_max, B) layout of each batch would waste:
    1 - Σ L / Σ B_i T_max,i over all batches."""
    L = _lengths(lengths)
    real = padded = 0
    for b in batch_list:
        Lb = L[b]
        real += int(Lb.sum())
        padded += int(Lb.size * Lb.max()) if Lb.size else 0
    return 1.0 - real / padded if padded else 0.0


def _lengths(lengths) -> np.ndarray:
    L = np.asarray(lengths)
    if L.ndim != 1 or L.size == 0 or not np.issubdtype(L.dtype, np.integer):
        raise CharlmError("lengths must be a non-empty 1-D sequence of integers")
    if (L < 1).any():
        j = int(np.argmax(L < 1))
        raise CharlmError(f"sequence {j} has length {int(L[j])}: every sequence needs at least one token")
    return L.astype(np.int64)
