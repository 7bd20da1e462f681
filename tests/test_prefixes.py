"""Scoring through shared prefixes (charlm.prefixes) equals the spec's reference for every stream.

The streams share prefixes on purpose (n-best lists of one sentence), the trie is cut into groups and
its levels into decoder blocks of a few rows, and long streams take the windowed path beside it.
"""
import numpy as np
import pytest

from charlm import evaluate, prefixes
from charlm.config import ModelConfig

import reference as ref
from support import CELLS


def _streams(rng, V, n=40):
    """n streams of 1-9 tokens; most extend or branch off a few common stems."""
    stems = [rng.integers(0, V, rng.integers(1, 6)) for _ in range(4)]
    out = []
    for _ in range(n):
        stem = stems[rng.integers(0, len(stems))][: rng.integers(0, 6)]
        out.append(np.concatenate([stem, rng.integers(0, V, rng.integers(0, 5))]).astype(np.int32))
    return [s if len(s) else np.array([1], np.int32) for s in out]


def test_trie_levels_and_nodes():
    streams = [np.array(s, np.int32) for s in ([5, 6, 7], [5, 6, 8], [5, 9], [4])]
    parent, token, level_start, nodes = prefixes._trie(streams, eos_id=1)
    # nodes are the prefixes s[:t], t < n, that positions read at: "" (the root, reading EOS), "5", "5 6"
    assert list(level_start) == [0, 1, 2, 3]
    assert list(token) == [1, 5, 6] and list(parent) == [-1, 0, 1]
    assert [list(a) for a in nodes] == [[0, 1, 2], [0, 1, 2], [0, 1], [0]]


def test_worth_it_counts_the_distinct_prefixes(monkeypatch):
    rng = np.random.default_rng(5)
    for _ in range(20):
        streams = _streams(rng, 4, n=int(rng.integers(1, 30)))
        parent, _, _, _ = prefixes._trie(streams, eos_id=1)
        positions = sum(len(s) for s in streams)
        monkeypatch.setattr(prefixes, "SHARE", (len(parent) + 0.25) / positions)
        assert prefixes.worth_it(streams)
        monkeypatch.setattr(prefixes, "SHARE", (len(parent) - 0.25) / positions)
        assert not prefixes.worth_it(streams)


@pytest.mark.parametrize("kw", list(CELLS.values()), ids=list(CELLS))
def test_prefix_scoring_equals_reference(kw, monkeypatch):
    monkeypatch.setattr(prefixes, "GROUP", 16)                # several tries
    monkeypatch.setattr(prefixes, "LOGITS", 27)               # decoder blocks of 3 rows (V = 9)
    cfg = ModelConfig(layers=2, hidden=6, embed=5, vocab_size=9, **kw)
    rng = np.random.default_rng(7)
    W = ref.random_params(cfg, rng)
    P = {k: v.astype(np.float64) for k, v in W.items()}
    streams = _streams(rng, cfg.vocab_size)
    sums, per = prefixes.streams_nll(cfg, P, streams, per_token=True)
    for s, total, v in zip(streams, sums, per):
        x = np.concatenate([[cfg.eos_id], s[:-1]])[:, None]
        expected = -ref.lm_token_logprobs(cfg, W, x, s[:, None].astype(np.int64))[:, 0]
        np.testing.assert_allclose(v, expected, rtol=1e-10, atol=1e-12)
        assert total == pytest.approx(ref.stream_nll(cfg, W, s)[0], rel=1e-10)


def test_streams_nll_mixes_prefix_and_windowed_paths(monkeypatch):
    monkeypatch.setattr(prefixes, "MAX_LEN", 6)               # the longer streams take the windows
    monkeypatch.setattr(prefixes, "SHARE", 1.0)               # the trie takes the short ones
    cfg = ModelConfig(layers=2, hidden=6, embed=5, vocab_size=9)
    rng = np.random.default_rng(8)
    W = ref.random_params(cfg, rng)
    P = {k: v.astype(np.float64) for k, v in W.items()}
    streams = _streams(rng, cfg.vocab_size) + [rng.integers(0, 9, 30).astype(np.int32), np.zeros(0, np.int32)]
    used = []
    inner = prefixes.streams_nll
    monkeypatch.setattr(prefixes, "streams_nll", lambda cfg, P, s, *a: (used.append(len(s)), inner(cfg, P, s, *a))[1])
    counted = []
    sums, per = evaluate.streams_nll(cfg, P, streams, window=7, per_token=True, progress=counted.append)
    assert used and used[0] < len(streams)                    # both paths ran
    assert sum(counted) == sum(len(s) for s in streams)
    for s, total, v in zip(streams, sums, per):
        assert total == pytest.approx(ref.stream_nll(cfg, W, s)[0], rel=1e-10, abs=1e-12)
        assert len(v) == len(s) and v.sum() == pytest.approx(total, rel=1e-12, abs=1e-12)


def test_little_sharing_keeps_the_windows(monkeypatch):
    cfg = ModelConfig(layers=1, hidden=4, embed=3, vocab_size=9)
    P = {k: v.astype(np.float32) for k, v in ref.random_params(cfg, 2).items()}
    streams = _streams(np.random.default_rng(2), cfg.vocab_size)
    used = []
    monkeypatch.setattr(prefixes, "streams_nll", lambda *a: used.append(a))
    monkeypatch.setattr(prefixes, "SHARE", 0.0)
    evaluate.streams_nll(cfg, P, streams)
    assert not used
