"""Sampling through the Python API (charlm.lm.LanguageModel, charlm.generate), checked against the float64
reference of tests/reference.py. No training: the model is built from random parameters, scaled up so that
its next-token distributions are far from flat.

The statistical tests draw many one-token samples from a fixed prime (one batch row each, so they are
independent draws from the same distribution) and compare the frequencies with the reference's
probabilities by a chi-square test. The seed is fixed, so every test is deterministic; each also has a
negative control showing that the same test rejects a wrong distribution.
"""
from __future__ import annotations


import numpy as np
import pytest

import reference as ref

from charlm import generate
from charlm.config import ModelConfig
from charlm.kernels.beam import beam_search as beam_kernel
from charlm.kernels.sample import generate as sample_kernel
from charlm.lm import LanguageModel
from charlm.model import init_params
from charlm.vocab import Vocab

stats = pytest.importorskip("scipy.stats")

TOKENS = ["<unk>", "<eos>", "a", "b", "c", "d"]
# How each token shows in a sampled char-level text: UNK as U+FFFD, EOS as a newline.
SHOWN = {"\ufffd": 0, "\n": 1, "a": 2, "b": 3, "c": 4, "d": 5}
PRIME = "ab"
N = 20000          # one-token samples per statistical test
P_MIN = 1e-4       # a chi-square p-value below this fails the test


def make_lm(cell="lstm", seed=7, **kw) -> LanguageModel:
    cfg = ModelConfig(level="char", cell=cell, layers=2, hidden=8, embed=8, vocab_size=len(TOKENS), **kw)
    rng = np.random.default_rng(seed)
    # init_params for the names and shapes, then N(0, 1) weights: large enough for peaked distributions.
    params = {name: rng.standard_normal(p.shape).astype(np.float32) for name, p in init_params(cfg, rng).items()}
    return LanguageModel(cfg, Vocab(TOKENS, "char", False), params)


@pytest.fixture(scope="module")
def lm():
    return make_lm()


def ref_ids(prime: str) -> list[int]:
    """EOS, then the prime's ids by the spec's rules, written out by hand (a newline is EOS)."""
    return [1] + [SHOWN.get(ch, 0) for ch in prime]


def ref_logits(lm: LanguageModel, ids) -> np.ndarray:
    """Float64 reference logits (V,) after reading `ids` (the leading EOS included) from a zero state."""
    E = np.asarray(lm.params["embedding.weight"], np.float64)
    Y, _ = ref.rnn_forward(lm.config, lm.params, E[np.asarray(ids)][:, None, :])
    return ref.logits(lm.config, lm.params, Y[-1, 0])


def ref_probs(lm: LanguageModel, prime: str, temp: float = 1.0) -> np.ndarray:
    """The reference's next-token distribution softmax(z / temp) after EOS + the prime's tokens."""
    p = np.exp(ref.log_softmax(ref_logits(lm, ref_ids(prime)) / temp))
    return p / p.sum()


def ref_greedy(lm: LanguageModel, prime: str, length: int) -> list[int]:
    """The argmax path, one reference step at a time (state carried)."""
    E = np.asarray(lm.params["embedding.weight"], np.float64)
    ids = ref_ids(prime)
    Y, state = ref.rnn_forward(lm.config, lm.params, E[ids][:, None, :])
    out = []
    for _ in range(length):
        z = ref.logits(lm.config, lm.params, Y[-1, 0])
        top2 = np.sort(z)[-2:]
        assert top2[1] - top2[0] > 1e-4, "near tie: the float32 argmax could legitimately differ"
        t = int(np.argmax(z))
        out.append(t)
        Y, state = ref.rnn_forward(lm.config, lm.params, E[[t]][:, None, :], state)
    return out


def counts_of(texts, prime: str) -> np.ndarray:
    """Token counts (V,) of one-token samples, each text being the prime plus one shown token."""
    counts = np.zeros(len(TOKENS), np.int64)
    for t in texts:
        assert t.startswith(prime) and len(t) == len(prime) + 1, repr(t)
        counts[SHOWN[t[len(prime):]]] += 1
    return counts


def one_token_counts(lm, prime=PRIME, seed=12345, **kw) -> np.ndarray:
    return counts_of(lm.sample(length=1, prime=prime, num_samples=N, seed=seed, **kw), prime)


def chi2_p(counts, probs) -> float:
    """p-value of the chi-square goodness-of-fit test over the tokens with probability > 0."""
    probs = np.asarray(probs, np.float64)
    keep = probs > 0
    assert counts[~keep].sum() == 0, "a token of probability 0 was drawn"
    p = probs[keep] / probs[keep].sum()
    return float(stats.chisquare(counts[keep], counts.sum() * p).pvalue)


# -------------------------------------------------------------------------------------- preconditions

def test_the_fixture_distribution_is_far_from_flat_and_prime_dependent(lm):
    p = ref_probs(lm, PRIME)
    q = ref_probs(lm, "")
    s = np.sort(p)[::-1]
    assert s[0] > 0.35 and s[0] - s[1] > 0.1 and s[1] - s[2] > 0.05, s      # clear ranks for top-k / top-p
    assert s[-1] > 0.02, s                                                   # every token drawn often enough
    assert np.abs(p - q).max() > 0.05                                        # the prime matters


# -------------------------------------------------------------------------------------------- greedy

@pytest.mark.parametrize("prime", ["", "a", "abcd", "dd\nc"])
def test_greedy_is_the_reference_argmax_path(lm, prime):
    length = 25
    expected = prime + lm.vocab.decode(ref_greedy(lm, prime, length))
    got = lm.sample(length=length, greedy=True, prime=prime, seed=0)
    assert got == [expected]


@pytest.mark.parametrize("cell,kw", [("rnn", {"activation": "tanh"}), ("gru", {"gru_variant": "full"}),
                                     ("gru", {"gru_variant": "minimal"}), ("lstm", {"peephole": True})])
def test_greedy_is_the_reference_argmax_path_other_cells(cell, kw):
    lm = make_lm(cell, seed=7, **kw)
    expected = "c" + lm.vocab.decode(ref_greedy(lm, "c", 15))
    assert lm.sample(length=15, greedy=True, prime="c") == [expected]


def test_greedy_is_deterministic_and_ignores_seed_and_temp(lm):
    a = lm.sample(length=30, greedy=True, seed=1, num_samples=2)
    b = lm.sample(length=30, greedy=True, seed=2, temp=0.3)
    c = lm.sample(length=30, greedy=True)
    assert a[0] == a[1] == b[0] == c[0]


@pytest.mark.parametrize("seed", [0, 1, 99])
def test_top_k_1_equals_greedy(lm, seed):
    greedy = lm.sample(length=30, greedy=True, prime="b")
    assert lm.sample(length=30, top_k=1, prime="b", seed=seed) == greedy
    assert lm.sample(length=30, top_k=1, prime="b", seed=seed, temp=2.0, num_samples=3) == greedy * 3


def test_prime_warm_up_first_token(lm):
    """The first sampled token follows the distribution after EOS + the prime's tokens."""
    primes = ["", "a", "b", "c", "d", "ab", "ba", "cdc", "a\nb", "dd", "bc"]
    for prime in primes:
        first = lm.sample(length=1, greedy=True, prime=prime)[0]
        assert first == prime + lm.vocab.decode([int(np.argmax(ref_probs(lm, prime)))]), prime
    # The warm-up reads the prime: two primes with different argmax give different first tokens.
    firsts = {int(np.argmax(ref_probs(lm, p))) for p in primes}
    assert len(firsts) > 1


def test_prime_with_unknown_characters_reads_them_as_unk(lm):
    got = lm.sample(length=5, greedy=True, prime="a☃b")[0]
    path = [2, 0, 3]                       # a, UNK, b
    E = np.asarray(lm.params["embedding.weight"], np.float64)
    Y, state = ref.rnn_forward(lm.config, lm.params, E[[1] + path][:, None, :])
    z = ref.logits(lm.config, lm.params, Y[-1, 0])
    assert got.startswith("a☃b")
    assert got[3] == lm.vocab.decode([int(np.argmax(z))])


# -------------------------------------------------------------------------------- sampling statistics

def test_temperature_1_follows_the_model(lm):
    counts = one_token_counts(lm)
    p = ref_probs(lm, PRIME)
    assert chi2_p(counts, p) > P_MIN, (counts, N * p)
    # Negative controls: the same test rejects the distribution without the prime and the sharper one.
    assert chi2_p(counts, ref_probs(lm, "")) < 1e-10
    assert chi2_p(counts, ref_probs(lm, PRIME, temp=0.5)) < 1e-10


def test_temperature_half_follows_sharpened_model(lm):
    counts = one_token_counts(lm, temp=0.5)
    p_half = ref_probs(lm, PRIME, temp=0.5)
    assert chi2_p(counts, p_half) > P_MIN, (counts, N * p_half)
    assert chi2_p(counts, ref_probs(lm, PRIME)) < 1e-10
    top = int(np.argmax(p_half))
    assert counts[top] > one_token_counts(lm)[top] + 0.05 * N     # sharper than at temperature 1


def test_high_temperature_flattens(lm):
    counts = one_token_counts(lm, temp=3.0)
    assert chi2_p(counts, ref_probs(lm, PRIME, temp=3.0)) > P_MIN
    assert counts.max() < one_token_counts(lm).max()


def test_top_k_2_only_the_two_most_likely_renormalised(lm):
    p = ref_probs(lm, PRIME)
    order = np.argsort(-p)
    counts = one_token_counts(lm, top_k=2)
    assert set(np.flatnonzero(counts)) == set(order[:2]), counts
    renorm = np.where(np.isin(np.arange(len(p)), order[:2]), p, 0.0)
    assert chi2_p(counts, renorm) > P_MIN, (counts, renorm)
    # negative control: the unrenormalised top-2 ratio is the same, so compare with a wrong ratio
    wrong = renorm.copy()
    wrong[order[0]], wrong[order[1]] = renorm[order[1]], renorm[order[0]]
    assert chi2_p(counts, wrong) < 1e-10


def test_top_k_with_temperature(lm):
    p = ref_probs(lm, PRIME, temp=0.7)
    order = np.argsort(-p)
    counts = one_token_counts(lm, top_k=3, temp=0.7)
    assert set(np.flatnonzero(counts)) == set(order[:3])
    kept = np.where(np.isin(np.arange(len(p)), order[:3]), p, 0.0)
    assert chi2_p(counts, kept) > P_MIN


def test_top_k_larger_than_vocabulary_is_plain_sampling(lm):
    counts = one_token_counts(lm, top_k=100)
    assert chi2_p(counts, ref_probs(lm, PRIME)) > P_MIN


def test_top_p(lm):
    """Nucleus: the smallest most-likely set whose mass reaches top_p."""
    p = ref_probs(lm, PRIME)
    order = np.argsort(-p)
    p1, p2 = p[order[0]], p[order[1]]
    # top_p at most the largest probability: the argmax alone reaches it.
    for top_p in (0.5 * p1, p1 * (1 - 1e-3)):
        counts = one_token_counts(lm, top_p=top_p)
        assert counts[order[0]] == N, (top_p, counts)
    # top_p just above the largest probability, and up to the top two's mass: exactly the top two,
    # in their renormalised proportions.
    for top_p in (p1 * (1 + 1e-3) + 1e-6, (p1 + p2) * (1 - 1e-3)):
        counts = one_token_counts(lm, top_p=top_p)
        assert set(np.flatnonzero(counts)) == set(order[:2]), (top_p, counts)
        two = np.where(np.isin(np.arange(len(p)), order[:2]), p, 0.0)
        assert chi2_p(counts, two) > P_MIN
    # just above the top two's mass: the third joins.
    counts = one_token_counts(lm, top_p=(p1 + p2) * (1 + 1e-3))
    assert set(np.flatnonzero(counts)) == set(order[:3]), counts
    # top_p = 1 is plain sampling
    assert chi2_p(one_token_counts(lm, top_p=1.0), p) > P_MIN


# ------------------------------------------------------------------------------------ reproducibility

def test_same_seed_same_text_different_seed_different_text(lm):
    a = lm.sample(length=60, seed=3, num_samples=2)
    assert lm.sample(length=60, seed=3, num_samples=2) == a
    assert a[0] != a[1]                                   # rows are independent streams
    others = [lm.sample(length=60, seed=s)[0] for s in (4, 5, 6)]
    assert len({a[0], *others}) == 4


def test_seed_reproducible_with_top_k_top_p_and_prime(lm):
    kw = dict(length=40, prime="ca", top_k=3, top_p=0.9, temp=0.8)
    assert lm.sample(seed=11, **kw) == lm.sample(seed=11, **kw)
    assert lm.sample(seed=11, **kw) != lm.sample(seed=12, **kw)


# -------------------------------------------------------------------------------------- shape of output

def test_length_and_num_samples(lm):
    texts = lm.sample(length=17, prime="ab", num_samples=4, seed=0)
    assert len(texts) == 4
    for t in texts:
        assert t.startswith("ab") and len(t) == 2 + 17           # char level: one character a token
    assert lm.sample(length=0, prime="abc", num_samples=2, seed=0) == ["abc", "abc"]


def test_stop_at_eos_stops_at_the_first_end_of_line(lm):
    texts = lm.sample(length=200, num_samples=20, seed=5, stop_at_eos=True)
    assert all("\n" not in t for t in texts)
    full = lm.sample(length=200, num_samples=20, seed=5)
    assert any("\n" in t for t in full)                       # negative control: EOS does get drawn


def test_sample_ids_starts_from_the_prefix():
    """charlm.generate directly: the prefix (EOS + prime) is read, not generated."""
    lm = make_lm()
    prefix = np.array([lm.vocab.eos_id, *generate.prime_ids(lm.vocab, "ab")], np.int32)
    ids = generate.sample_ids(lm.config, lm.params, prefix, 10, 3, 1.0, 0, 1.0, True, False,
                              np.random.default_rng(0))
    expected = ref_greedy(lm, "ab", 10)
    assert [list(r) for r in ids] == [expected] * 3


def test_prime_ids_drop_the_final_eos_only_without_newline():
    voc = Vocab(TOKENS, "char", False)
    assert list(generate.prime_ids(voc, "ab")) == [2, 3]
    assert list(generate.prime_ids(voc, "ab\n")) == [2, 3, 1]
    assert list(generate.prime_ids(voc, "")) == []


@pytest.mark.parametrize("kw", [dict(temp=0), dict(temp=-1), dict(top_p=0), dict(top_p=1.5), dict(top_k=-1),
                                dict(length=-1), dict(num_samples=0)])
def test_bad_sampling_options_raise_charlm_error(lm, kw):
    from charlm.errors import CharlmError
    with pytest.raises(CharlmError):
        lm.sample(**kw)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_layer0_table_changes_no_sample_and_no_beam(cell):
    """Layer 0 reading its input projection from a (V, GH) table gives the greedy samples and beams of
    the plain product path (the table is used when V <= steps * rows)."""
    lm = make_lm(cell)
    cfg, P = lm.config, {k: v.astype(np.float64) for k, v in lm.params.items()}
    with_table = generate._weights(cfg, P, 2, 10 ** 6)
    without = generate._weights(cfg, P, 2, 0)
    assert with_table[2].shape[0] == cfg.vocab_size and without[2].shape[0] == 0
    prefix = np.array([cfg.eos_id, 3, 5], np.int32)
    runs = []
    for weights in (with_table, without):
        state = np.zeros((cfg.layers, 2, 2, cfg.hidden))
        out, lengths = np.zeros((2, 25), np.int32), np.zeros(2, np.int64)
        U = np.random.default_rng(0).random((25, 2))
        sample_kernel(*weights, state, prefix, 25, 0.7, 0, 1.0, False, U, cfg.eos_id, False, out, lengths)
        beams, scores, blen = np.zeros((3, 6), np.int32), np.zeros(3), np.zeros(3, np.int64)
        beam_kernel(*weights, prefix, 6, 3, cfg.eos_id, False, beams, scores, blen)
        runs.append((out, state, beams, scores))
    (o1, s1, b1, sc1), (o2, s2, b2, sc2) = runs
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_allclose(s1, s2, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_allclose(sc1, sc2, rtol=1e-12)


def test_unprimed_samples_start_at_a_line_start(tmp_path):
    """Every line of the text starts with "Q". Read straight from the zero state (which training only
    knows at arbitrary places of the text), 10 of 20 samples began elsewhere; after a warm-up line of the
    model's own, all do. Negative control: the same samples fed from the zero state."""
    import random
    import subprocess
    import sys
    from charlm import generate
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    corpus = tmp_path / "q.txt"
    corpus.write_text("".join("Q" + " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) + "\n"
                              for _ in range(2000)), encoding="utf-8")
    out = tmp_path / "q.safetensors"
    done = subprocess.run([sys.executable, "-m", "charlm", "train", str(corpus), "--hidden", "32", "--layers", "1",
                           "--batch-size", "16", "--seq-len", "32", "--max-steps", "300", "--threads", "1", "-q",
                           "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lm = LanguageModel.load(out)
    samples = lm.sample(length=10, num_samples=20, seed=1)
    assert sum(s.startswith("Q") for s in samples) >= 19
    cold = generate.sample_ids(lm.config, lm.params, np.array([lm.vocab.eos_id], np.int32), 10, 20, 1.0, 0, 1.0,
                               False, False, np.random.default_rng(1))
    assert sum(lm.vocab.decode(s).startswith("Q") for s in cold) <= 15
