"""Tests of charlm.buckets: batches of similar lengths, reproducible from (seed, epoch), and the padding
waste of a padded layout."""
import numpy as np
import pytest

from charlm import buckets
from charlm.errors import CharlmError


def some_lengths(n=500, seed=0):
    return np.random.default_rng(seed).integers(1, 60, n)


def covers_once(batch_list, n):
    allidx = np.concatenate(batch_list)
    return allidx.size == n and np.array_equal(np.sort(allidx), np.arange(n))


@pytest.mark.parametrize("bucketed", [True, False])
def test_every_sequence_once_and_batch_sizes(bucketed):
    L = some_lengths()
    bl = buckets.batches(L, 32, seed=3, epoch=1, bucketed=bucketed)
    assert covers_once(bl, L.size)
    sizes = sorted(len(b) for b in bl)
    assert sizes[-1] == 32 and sizes[1:] == [32] * (len(bl) - 1) and sizes[0] == 500 - 32 * 15


def test_reproducible_from_seed_and_epoch():
    L = some_lengths()
    a = buckets.batches(L, 16, seed=7, epoch=2)
    b = buckets.batches(L, 16, seed=7, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    # resuming at batch 5 of epoch 2 is the same list from 5 on
    assert all(np.array_equal(x, y) for x, y in zip(a[5:], buckets.batches(L, 16, seed=7, epoch=2)[5:]))
    c = buckets.batches(L, 16, seed=7, epoch=3)
    d = buckets.batches(L, 16, seed=8, epoch=2)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert not all(np.array_equal(x, y) for x, y in zip(a, d))


def test_batches_hold_similar_lengths_and_ties_are_shuffled():
    L = some_lengths()
    bl = buckets.batches(L, 32, seed=0, epoch=0)
    ranges = sorted((L[b].min(), L[b].max()) for b in bl)
    for (lo, hi), (lo2, _) in zip(ranges, ranges[1:]):
        assert hi <= lo2                                  # batches are runs of the sorted lengths
    # the order of the batches changes with the epoch, and so do the members of a length tie
    first = [tuple(np.sort(b)) for b in buckets.batches(L, 32, seed=0, epoch=0)]
    other = [tuple(np.sort(b)) for b in buckets.batches(L, 32, seed=0, epoch=1)]
    assert set(first) != set(other)
    assert [L[list(b)].max() for b in first] != [L[list(b)].max() for b in other]


def test_token_budget():
    L = some_lengths()
    bl = buckets.batches(L, 64, seed=1, max_tokens=1000)
    assert covers_once(bl, L.size)
    for b in bl:
        assert len(b) <= 64 and len(b) * L[b].max() <= 1000
    assert max(len(b) for b in bl) == 64                  # short sequences fill a whole batch
    long = buckets.batches([5, 1000, 3], 2, max_tokens=100)
    assert sorted(map(len, long)) == [1, 2]               # too long for the budget: a batch of its own


def test_padding_waste():
    L = np.array([1, 2, 3, 4])
    assert buckets.padding_waste(L, [np.array([0, 3]), np.array([1, 2])]) == pytest.approx(1 - 10 / (8 + 6))
    assert buckets.padding_waste(L, [np.arange(4)]) == pytest.approx(1 - 10 / 16)
    assert buckets.padding_waste([5] * 10, buckets.batches([5] * 10, 3)) == 0.0
    M = some_lengths(2000)
    bucketed = buckets.padding_waste(M, buckets.batches(M, 32))
    random = buckets.padding_waste(M, buckets.batches(M, 32, bucketed=False))
    assert bucketed < 0.05 < 0.3 < random


@pytest.mark.parametrize("lengths,kw,fragment", [
    ([3, 0], {}, "sequence 1 has length 0"),
    ([], {}, "non-empty"),
    ([2.5], {}, "integers"),
    ([1, 2], {"batch_size": 0}, "batch_size"),
    ([1, 2], {"max_tokens": -1}, "max_tokens"),
])
def test_bad_arguments(lengths, kw, fragment):
    with pytest.raises(CharlmError, match=fragment):
        buckets.batches(lengths, **{"batch_size": 2, **kw})
