"""Tests of charlm.kernels.beam (beam search).

(1) The selection: top_k against a full sort, with ties (lower index first).
(2) Width 1 is greedy decoding (charlm.generate.sample_ids, greedy=True), token for token.
(3) Exactness: every returned score is the float64 reference's total log-probability of that
    continuation (1e-4 in float32, 1e-9 in float64), hypotheses are distinct and sorted.
(4) Exhaustive: V=4, n=3; W = V^2 leaves nothing pruned before the last step, so beam returns the true
    W best of all continuations in order (with and without stop_at_eos); W = V^3 returns all of them.
(5) Beam beats greedy: on a hand-built rnn where the likelier first token leads to a uniform
    continuation and the other to a near-certain one; and on 20 random small models (fixed seeds), where
    beam never scores below greedy and beats it at least once. (Beam >= greedy is not a theorem for
    W < V^(n-1): the 20 models are fixtures that hold, and the test fails if the search degrades.)
(6) stop_at_eos: hypotheses end at their first EOS, lengths are right, finished ones keep their score.
(7) W > V and W > V^n: unused rows are score -inf and length 0, no crash.

The Python-side wrapper is charlm.generate.beam_ids.
"""
import itertools
import zlib

import numpy as np
import pytest

import reference as ref

from charlm import generate
from charlm.config import ModelConfig
from charlm.errors import CharlmError
from charlm.generate import beam_ids
from charlm.kernels.beam import beam_search, top_k
from charlm.kernels.cells import cell_code, pack_forward
from support import CELLS


EOS = 1


def make_cfg(variant, layers=2, V=7, H=5, E=4, tied=False):
    if tied:
        H = E
    return ModelConfig(level="char", layers=layers, hidden=H, embed=E, vocab_size=V, unk_id=0, eos_id=EOS,
                       tied=tied, **CELLS[variant])


def rng_for(*parts):
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def params(cfg, rng, dtype=np.float32, scale=1.0, eos_boost=0.0):
    """Reference-random weights (scale 1: peaked distributions, so hypotheses differ clearly) in float64
    and in `dtype`; eos_boost raises EOS's decoder bias."""
    P64 = ref.random_params(cfg, rng, scale=scale)
    P64["decoder.bias"][cfg.eos_id] += eos_boost
    return P64, {k: v.astype(dtype) for k, v in P64.items()}


def ref_logprob(cfg, P64, prefix, ids):
    """Reference total log-probability of ids after prefix (stream semantics: prefix[0] = EOS is the first
    input from a zero state; every token after prefix[0] is predicted, only the ids' are summed)."""
    seq = np.concatenate([prefix, ids]).astype(np.int64)
    lp = ref.lm_token_logprobs(cfg, P64, seq[:-1, None], seq[1:, None])[:, 0]
    return float(lp[len(prefix) - 1:].sum())


def all_continuations(cfg, P64, prefix, n, stop_at_eos):
    """Every continuation of n tokens (truncated after the first EOS with stop_at_eos) with its reference
    log-probability, best first."""
    V = cfg.vocab_size
    seqs = np.array(list(itertools.product(range(V), repeat=n)), np.int64)          # (V^n, n)
    full = np.concatenate([np.tile(prefix, (len(seqs), 1)), seqs], axis=1).T         # (P+n, V^n)
    lp = ref.lm_token_logprobs(cfg, P64, full[:-1], full[1:])[len(prefix) - 1:]       # (n, V^n)
    found = {}
    for b, s in enumerate(seqs):
        m = n
        if stop_at_eos and EOS in s:
            m = int(np.argmax(s == EOS)) + 1
        found[tuple(s[:m])] = float(lp[:m, b].sum())
    return sorted(found.items(), key=lambda kv: -kv[1])


def greedy_ids(cfg, P, prefix, n, stop_at_eos):
    return generate.sample_ids(cfg, P, prefix, n, 1, 1.0, 0, 1.0, True, stop_at_eos,
                               np.random.default_rng(0))[0]


PREFIX = np.array([EOS, 3, 2, 5], np.int32)


# ---------------------------------------------------------------------------------------------------
# (1) Selection


def test_top_k_matches_full_sort_with_ties():
    rng = rng_for("topk")
    for C, k in [(1, 1), (7, 1), (7, 3), (7, 7), (50, 5), (200, 16)]:
        s = np.round(rng.normal(size=C), 1)                  # many exact ties
        s[rng.integers(0, C, size=C // 4)] = -np.inf
        heap = np.empty(k, np.int64)
        top_k(s, C, k, heap)
        expected = np.lexsort((np.arange(C), -s))[:k]        # score descending, then index ascending
        np.testing.assert_array_equal(heap, expected, err_msg=f"C={C} k={k}")


# ---------------------------------------------------------------------------------------------------
# (2) Width 1 is greedy


@pytest.mark.parametrize("variant", ["lstm", "gru-full", "rnn-tanh", "rnn-relu", "gru-minimal", "lstm-peephole"])
@pytest.mark.parametrize("stop_at_eos", [False, True])
def test_width_one_is_greedy(variant, stop_at_eos):
    for layers, seed in [(1, 0), (2, 1), (2, 2)]:
        cfg = make_cfg(variant, layers)
        P64, P = params(cfg, rng_for("greedy", variant, layers, seed), eos_boost=1.0 if stop_at_eos else 0.0)
        g = greedy_ids(cfg, P, PREFIX, 25, stop_at_eos)
        (ids, score), = beam_ids(cfg, P, PREFIX, 25, 1, stop_at_eos)
        np.testing.assert_array_equal(ids, g)
        assert abs(score - ref_logprob(cfg, P64, PREFIX, g)) < 1e-4


# ---------------------------------------------------------------------------------------------------
# (3) Exactness of the scores


@pytest.mark.parametrize("variant", list(CELLS))
@pytest.mark.parametrize("stop_at_eos", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-4), (np.float64, 1e-9)], ids=["f32", "f64"])
def test_scores_are_reference_logprobs(variant, stop_at_eos, dtype, tol):
    n, W = 12, 5
    for layers, tied in [(1, False), (2, False), (2, True)]:
        cfg = make_cfg(variant, layers, tied=tied)
        P64, P = params(cfg, rng_for("exact", variant, layers, tied), dtype, eos_boost=1.5 * stop_at_eos)
        hyps = beam_ids(cfg, P, PREFIX, n, W, stop_at_eos)
        assert len(hyps) == W
        assert len({tuple(ids) for ids, _ in hyps}) == W, "duplicate hypotheses"
        got = [s for _, s in hyps]
        assert got == sorted(got, reverse=True)
        for ids, s in hyps:
            assert ids.dtype == np.int32 and 1 <= len(ids) <= n
            assert abs(s - ref_logprob(cfg, P64, PREFIX, ids)) < tol


def test_prefix_of_one_token():
    """P = 1: the first generated token is predicted from EOS at the zero state."""
    cfg = make_cfg("lstm", 2)
    P64, P = params(cfg, rng_for("p1"))
    prefix = np.array([EOS], np.int32)
    for ids, s in beam_ids(cfg, P, prefix, 6, 3, False):
        assert abs(s - ref_logprob(cfg, P64, prefix, ids)) < 1e-4


# ---------------------------------------------------------------------------------------------------
# (4) Exhaustive search on a tiny vocabulary


def assert_same_ranking(hyps, truth, W):
    """hyps are the first W of truth (sequence, score), in order; truth's scores must be well separated
    around the compared range so that float32 rounding cannot swap two of them."""
    top = [s for _, s in truth[: W + 1]]
    assert min(-np.diff(top)) > 1e-3, "fixture has near-ties: choose another seed"
    assert len(hyps) == min(W, len(truth))
    for (ids, s), (seq, s_ref) in zip(hyps, truth):
        assert tuple(ids) == seq
        assert abs(s - s_ref) < 1e-4


@pytest.mark.parametrize("variant", ["lstm", "gru-full", "rnn-tanh"])
@pytest.mark.parametrize("stop_at_eos", [False, True])
def test_exhaustive_tiny_vocabulary(variant, stop_at_eos):
    V, n = 4, 3
    cfg = make_cfg(variant, 2, V=V, H=4, E=3)
    P64, P = params(cfg, rng_for("exhaustive", variant, stop_at_eos), scale=1.5, eos_boost=0.5 * stop_at_eos)
    prefix = np.array([EOS, 2], np.int32)
    truth = all_continuations(cfg, P64, prefix, n, stop_at_eos)
    assert len(truth) == (V ** n if not stop_at_eos else 1 + 3 + 9 + 27)
    W = V ** (n - 1)                                     # >= every step's candidate count before the last
    assert_same_ranking(beam_ids(cfg, P, prefix, n, W, stop_at_eos), truth, W)
    # W = V^n: every continuation comes back, in order; extra rows are unused
    hyps = beam_ids(cfg, P, prefix, n, V ** n, stop_at_eos)
    assert [tuple(ids) for ids, _ in hyps] == [seq for seq, _ in truth]
    np.testing.assert_allclose([s for _, s in hyps], [s for _, s in truth], rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# (5) Beam beats greedy


def trap_model():
    """rnn-tanh, V=4 (unk, eos, A=2, B=3), one-hot embedding, no recurrence: h depends on the input token.
    After EOS: p(A) ~ 0.55 > p(B) ~ 0.45. After A (and after unk): h = 0, all logits 0, uniform.
    After B: h = (0, tanh 3), B is near-certain again. Greedy: A then uniform tokens; beam: B B B ..."""
    cfg = ModelConfig(level="char", cell="rnn", layers=1, hidden=2, embed=4, vocab_size=4, unk_id=0, eos_id=EOS)
    P = {name: np.zeros(shape) for name, shape in cfg.param_shapes().items()}
    P["embedding.weight"] = np.eye(4)
    P["rnn.weight_ih_l0"][:, EOS] = [3.0, 0.0]
    P["rnn.weight_ih_l0"][:, 3] = [0.0, 3.0]
    P["decoder.weight"][:, 0] = [-5.0, -5.0, 2.0, 1.8]     # after EOS
    P["decoder.weight"][:, 1] = [-5.0, -5.0, -5.0, 8.0]    # after B
    return cfg, P


@pytest.mark.parametrize("W", [2, 3])
def test_beam_beats_greedy_constructed(W):
    cfg, P64 = trap_model()
    P = {k: v.astype(np.float32) for k, v in P64.items()}
    prefix = np.array([EOS], np.int32)
    n = 5
    g = greedy_ids(cfg, P, prefix, n, False)
    assert g[0] == 2                                       # greedy takes the likelier first token A
    g_score = ref_logprob(cfg, P64, prefix, g)
    (ids, score), *_ = beam_ids(cfg, P, prefix, n, W, False)
    np.testing.assert_array_equal(ids, [3] * n)
    assert abs(score - ref_logprob(cfg, P64, prefix, ids)) < 1e-4
    assert score > g_score + 3.0                           # ~ -0.6 vs ~ -0.6 + 4 log(1/4)
    # width 1 falls into the trap like greedy
    (ids1, score1), = beam_ids(cfg, P, prefix, n, 1, False)
    np.testing.assert_array_equal(ids1, g)
    assert abs(score1 - g_score) < 1e-4


def test_beam_never_below_greedy_on_random_models():
    n, W = 8, 3
    gains = []
    for seed in range(20):
        variant = ["rnn-tanh", "gru-full", "lstm", "gru-minimal"][seed % 4]
        cfg = make_cfg(variant, 1 + seed % 2, V=6, H=4, E=3)
        P64, P = params(cfg, rng_for("random-greedy", seed), scale=1.5)
        g = greedy_ids(cfg, P, PREFIX[:2], n, False)
        g_score = ref_logprob(cfg, P64, PREFIX[:2], g)
        (ids, score), *_ = beam_ids(cfg, P, PREFIX[:2], n, W, False)
        assert score >= g_score - 1e-4, f"seed {seed}: beam {score} < greedy {g_score}"
        gains.append(score - g_score)
    assert max(gains) > 1e-2, "beam never found anything better than greedy"


# ---------------------------------------------------------------------------------------------------
# (6) stop_at_eos


@pytest.mark.parametrize("variant", ["lstm", "gru-full", "rnn-tanh"])
def test_stop_at_eos(variant):
    n, W = 15, 6
    cfg = make_cfg(variant, 2)
    P64, P = params(cfg, rng_for("eos", variant), eos_boost=2.0)
    hyps = beam_ids(cfg, P, PREFIX, n, W, True)
    assert len(hyps) == W
    assert any(len(ids) < n for ids, _ in hyps), "fixture: some hypothesis should stop early"
    for ids, s in hyps:
        eos_at = np.flatnonzero(ids == EOS)
        if len(ids) < n:
            assert ids[-1] == EOS
        assert len(eos_at) == 0 or eos_at[0] == len(ids) - 1, "continued after its first EOS"
        assert abs(s - ref_logprob(cfg, P64, PREFIX, ids)) < 1e-4
    # without stop_at_eos EOS is an ordinary token: every hypothesis has all n tokens
    hyps = beam_ids(cfg, P, PREFIX, n, W, False)
    assert all(len(ids) == n for ids, _ in hyps)
    assert any(EOS in ids[:-1] for ids, _ in hyps), "fixture: EOS should appear mid-hypothesis"


def test_stop_at_eos_ends_early_when_all_finished():
    """EOS near-certain: every hypothesis finishes at once and the kernel reports length 1 for all."""
    cfg = make_cfg("lstm", 1)
    P64, P = params(cfg, rng_for("all-eos"), eos_boost=30.0)
    hyps = beam_ids(cfg, P, PREFIX, 10, 3, True)
    assert [list(ids) for ids, _ in hyps][0] == [EOS]
    for ids, s in hyps:
        assert ids[-1] == EOS and abs(s - ref_logprob(cfg, P64, PREFIX, ids)) < 1e-4


# ---------------------------------------------------------------------------------------------------
# (7) More rows than hypotheses


def run_kernel(cfg, P, prefix, n, W, stop_at_eos):
    L = cfg.layers
    packed = [pack_forward(cell_code(cfg), P[f"rnn.weight_hh_l{k}"], W) for k in range(L)]
    args = (tuple(P[f"rnn.weight_ih_l{k}"] for k in range(L)), tuple(w for w, _ in packed), tuple(w for _, w in packed),
            tuple(P[f"rnn.bias_ih_l{k}"] + P[f"rnn.bias_hh_l{k}"] for k in range(L)),
            tuple(np.zeros((0, cfg.hidden), np.float32) for _ in range(L)))
    out = np.zeros((W, n), np.int32)
    scores = np.zeros(W)
    lengths = np.zeros(W, np.int64)
    table0 = np.empty((0, P["rnn.bias_ih_l0"].shape[0]), P["embedding.weight"].dtype)   # layer 0 multiplies
    beam_search(cell_code(cfg), P["embedding.weight"], table0, *args, P["decoder.weight"], P["decoder.bias"],
                prefix, n, W, EOS, stop_at_eos, out, scores, lengths)
    return out, scores, lengths


@pytest.mark.parametrize("stop_at_eos", [False, True])
def test_width_above_vocabulary(stop_at_eos):
    V = 4
    cfg = make_cfg("gru-full", 1, V=V)
    P64, P = params(cfg, rng_for("wide", stop_at_eos))
    prefix = np.array([EOS], np.int32)
    out, scores, lengths = run_kernel(cfg, P, prefix, 1, 10, stop_at_eos)
    assert np.all(np.isfinite(scores[:V])) and np.all(scores[V:] == -np.inf)
    np.testing.assert_array_equal(lengths, [1] * V + [0] * 6)
    assert sorted(out[:V, 0]) == list(range(V)) and np.all(out[V:] == -1)
    np.testing.assert_allclose(np.logaddexp.reduce(scores[:V]), 0.0, atol=1e-5)   # the whole distribution
    # two steps, W between V and V^2: full after step 1, every hypothesis distinct and exact
    hyps = beam_ids(cfg, P, prefix, 2, 10, stop_at_eos)
    assert len(hyps) == 10 and len({tuple(i) for i, _ in hyps}) == 10
    for ids, s in hyps:
        assert abs(s - ref_logprob(cfg, P64, prefix, ids)) < 1e-4
    # W far above V^n
    n = 2
    hyps = beam_ids(cfg, P, prefix, n, 100, stop_at_eos)
    assert len(hyps) == (V ** n if not stop_at_eos else 1 + (V - 1) * V)


def test_wrapper_edge_cases():
    cfg = make_cfg("rnn-tanh", 1)
    _, P = params(cfg, rng_for("edges"))
    assert [(list(i), s) for i, s in beam_ids(cfg, P, PREFIX, 0, 3, False)] == [([], 0.0)]
    with pytest.raises(CharlmError):
        beam_ids(cfg, P, PREFIX, 5, 0, False)
    a = beam_ids(cfg, P, PREFIX, 10, 4, False)
    b = beam_ids(cfg, P, PREFIX, 10, 4, False)
    assert [(list(i), s) for i, s in a] == [(list(i), s) for i, s in b]
