"""Cross-checks of tests/reference.py against computations that share none of its code.

(1) rnn and lstm against PyTorch's nn.RNN / nn.LSTM in float64; (2) every cell, lstm peepholes and the
GRU variants included, against a pure-Python scalar loop, element by element; (3) a batch equals its
sequences run one at a time; (4) the reverse direction of a bidirectional layer is the forward recurrence
run on the time-reversed input; (5) carrying the state across two halves equals one pass.
No gradients here: the reference is forward-only.
"""
import math

import numpy as np
import pytest

import reference as ref

from charlm.config import ModelConfig
from support import CELLS


def cfg_of(cell, **kw):
    base = dict(level="char", cell=cell, layers=1, hidden=3, embed=4, vocab_size=6, unk_id=0, eos_id=1)
    base.update(kw)
    return ModelConfig(**base)


# Every cell variant (support.CELLS), unidirectional; small enough for the scalar loop.
ALL_CELLS = CELLS


# ---------------------------------------------------------------------------------------------------
# A pure-Python scalar model, written directly from the spec: lists of floats, one element at a time.

def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def _row_dot(row, vec):
    total = 0.0
    for a, b in zip(row, vec):
        total += a * b
    return total


def scalar_cell(cfg, W, k, s, x, h, c):
    """x, h, c: lists of floats. Returns (h', c') as lists."""
    Wi = W[f"rnn.weight_ih_l{k}{s}"].tolist()
    Wh = W[f"rnn.weight_hh_l{k}{s}"].tolist()
    bi = W[f"rnn.bias_ih_l{k}{s}"].tolist()
    bh = W[f"rnn.bias_hh_l{k}{s}"].tolist()
    H = len(h)

    def pre(block, j, hvec):  # pre-activation of unit j of a gate block, hidden part applied to hvec
        row = block * H + j
        return _row_dot(Wi[row], x) + bi[row] + _row_dot(Wh[row], hvec) + bh[row]

    h_new, c_new = [0.0] * H, [0.0] * H
    if cfg.cell == "rnn":
        for j in range(H):
            a = pre(0, j, h)
            h_new[j] = math.tanh(a) if cfg.activation == "tanh" else max(a, 0.0)
        return h_new, c_new
    if cfg.cell == "lstm":
        P = W[f"rnn.weight_peep_l{k}{s}"].tolist() if cfg.peephole else [[0.0] * H] * 3
        for j in range(H):
            i = _sig(pre(0, j, h) + P[0][j] * c[j])
            f = _sig(pre(1, j, h) + P[1][j] * c[j])
            g = math.tanh(pre(2, j, h))
            c_new[j] = f * c[j] + i * g
            o = _sig(pre(3, j, h) + P[2][j] * c_new[j])
            h_new[j] = o * math.tanh(c_new[j])
        return h_new, c_new
    if cfg.gru_variant == "full":
        r = [_sig(pre(0, j, h)) for j in range(H)]
        rh = [r[j] * h[j] for j in range(H)]
        for j in range(H):
            z = _sig(pre(1, j, h))
            n = math.tanh(pre(2, j, rh))  # W_in x + b_in + W_hn (r*h) + b_hn
            h_new[j] = z * n + (1.0 - z) * h[j]
        return h_new, c_new
    for j in range(H):  # minimal GRU
        z = _sig(pre(0, j, h))
        n = math.tanh(pre(1, j, h))
        h_new[j] = z * n + (1.0 - z) * h[j]
    return h_new, c_new


def scalar_rnn(cfg, W, xs):
    """xs: list over time of input lists. Returns the top layer's outputs, a list over time."""
    H = cfg.hidden
    for k in range(cfg.layers):
        outs = []
        for s, order in (("", range(len(xs))), ("_reverse", range(len(xs) - 1, -1, -1)))[:cfg.directions]:
            h, c = [0.0] * H, [0.0] * H
            out = [None] * len(xs)
            for t in order:
                h, c = scalar_cell(cfg, W, k, s, xs[t], h, c)
                out[t] = h
            outs.append(out)
        xs = [sum((o[t] for o in outs), []) for t in range(len(xs))]  # concat fwd, rev
    return xs


def scalar_stream_nll(cfg, W, ids):
    E = W["embedding.weight"].tolist()
    D = (W["embedding.weight"] if cfg.tied else W["decoder.weight"]).tolist()
    b = W["decoder.bias"].tolist()
    inputs = [cfg.eos_id] + list(ids[:-1])
    ys = scalar_rnn(cfg, W, [E[i] for i in inputs])
    nll = 0.0
    for y, target in zip(ys, ids):
        z = [_row_dot(D[v], y) + b[v] for v in range(len(b))]
        m = max(z)
        lse = m + math.log(sum(math.exp(zv - m) for zv in z))
        nll += lse - z[target]
    return nll


# ---------------------------------------------------------------------------------------------------
# (1) rnn / lstm against PyTorch

TORCH_CASES = [
    (cell, layers, tied)
    for cell in ("rnn-tanh", "rnn-relu", "lstm")
    for layers in (1, 2)
    for tied in (False, True)
]


@pytest.mark.parametrize("name,layers,tied", TORCH_CASES)
def test_against_torch(name, layers, tied):
    pytest.importorskip("torch")
    cfg = cfg_of(layers=layers, hidden=5, embed=5 if tied else 4, vocab_size=7, tied=tied, **ALL_CELLS[name])
    rng = np.random.default_rng([list(ALL_CELLS).index(name), layers, int(tied)])
    W = ref.random_params(cfg, rng)
    ids = rng.integers(0, cfg.vocab_size, size=25)
    nll, n = ref.stream_nll(cfg, W, ids)
    assert n == 25
    assert nll > 0
    assert abs(nll - ref.torch_stream_nll(cfg, W, ids)) < 1e-10


def test_torch_refuses_what_it_cannot_compute():
    pytest.importorskip("torch")
    for name in ("lstm-peephole", "gru-full", "gru-minimal"):
        cfg = cfg_of(**ALL_CELLS[name])
        with pytest.raises(ValueError):
            ref.torch_stream_nll(cfg, ref.random_params(cfg, 0), [2, 3])


def test_gru_full_is_not_torch_gru():
    """The spec's full GRU (r before the matrix, z weights the candidate) is not nn.GRU's."""
    torch = pytest.importorskip("torch")
    cfg = cfg_of(cell="gru", gru_variant="full")
    W = ref.random_params(cfg, 3, scale=1.0)
    X = np.random.default_rng(4).normal(size=(8, 1, cfg.embed))
    Y, _, _ = ref.layer_forward(cfg, W, 0, X)
    gru = torch.nn.GRU(cfg.embed, cfg.hidden, 1).double()
    gru.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in W.items() if k.startswith("rnn.")}, strict=True)
    with torch.no_grad():
        Yt = gru(torch.from_numpy(X))[0].numpy()
    assert np.abs(Y - Yt).max() > 1e-3


# ---------------------------------------------------------------------------------------------------
# (2) every cell against the scalar loop, H = 2, B = 1

@pytest.mark.parametrize("name", list(ALL_CELLS))
def test_cell_step_against_scalar(name):
    cfg = cfg_of(hidden=2, embed=3, vocab_size=5, **ALL_CELLS[name])
    rng = np.random.default_rng(11)
    W = ref.random_params(cfg, rng, scale=1.0)
    for _ in range(5):  # nonzero h and c, so that every term (peepholes included) counts
        x, h, c = rng.normal(size=(1, 3)), rng.normal(size=(1, 2)), rng.normal(size=(1, 2))
        h2, c2 = ref.cell_step(cfg, W, 0, "", x, h, c)
        sh, sc = scalar_cell(cfg, W, 0, "", x[0].tolist(), h[0].tolist(), c[0].tolist())
        assert h2.shape == c2.shape == (1, 2)
        assert np.abs(h2[0] - sh).max() < 1e-12
        if cfg.cell == "lstm":
            assert np.abs(c2[0] - sc).max() < 1e-12
        else:
            assert not c2.any()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("name", list(ALL_CELLS))
def test_stream_against_scalar(name, layers):
    cfg = cfg_of(hidden=2, embed=3, vocab_size=5, layers=layers, eos_id=3, **ALL_CELLS[name])
    rng = np.random.default_rng(12 + layers)
    W = ref.random_params(cfg, rng, scale=1.0)
    ids = rng.integers(0, cfg.vocab_size, size=12)
    nll, n = ref.stream_nll(cfg, W, ids)
    assert n == 12
    assert abs(nll - scalar_stream_nll(cfg, W, ids)) < 1e-12


@pytest.mark.parametrize("name", ["gru-full", "lstm-peephole", "rnn-tanh"])
def test_bidirectional_against_scalar(name):
    cfg = cfg_of(hidden=2, embed=3, vocab_size=5, layers=2, bidirectional=True, **ALL_CELLS[name])
    rng = np.random.default_rng(13)
    W = ref.random_params(cfg, rng, scale=1.0)
    X = rng.normal(size=(7, 1, 3))
    Y, state = ref.rnn_forward(cfg, W, X)
    assert state is None and Y.shape == (7, 1, 4)
    expect = np.array(scalar_rnn(cfg, W, X[:, 0].tolist()))
    assert np.abs(Y[:, 0] - expect).max() < 1e-12
    ids = rng.integers(0, cfg.vocab_size, size=9)
    assert abs(ref.stream_nll(cfg, W, ids)[0] - scalar_stream_nll(cfg, W, ids)) < 1e-12


def test_stream_semantics():
    """EOS is the first input; every id is predicted; the empty stream costs nothing."""
    cfg = cfg_of(cell="lstm", eos_id=4)
    W = ref.random_params(cfg, 5)
    ids = np.array([2, 0, 5, 4, 3])
    nll, n = ref.stream_nll(cfg, W, ids)
    x = np.array([4, 2, 0, 5, 4])[:, None]
    assert n == 5 and nll == ref.lm_nll(cfg, W, x, ids[:, None])[0]
    lp = ref.lm_token_logprobs(cfg, W, x, ids[:, None])
    assert lp.shape == (5, 1) and (lp < 0).all() and abs(-lp.sum() - nll) < 1e-12
    assert ref.stream_nll(cfg, W, []) == (0.0, 0)


# ---------------------------------------------------------------------------------------------------
# (3) batched equals per-sequence

BATCH_CASES = [dict(ALL_CELLS[n], layers=2) for n in ALL_CELLS] + [
    dict(cell="gru", gru_variant="full", layers=2, bidirectional=True),
    dict(cell="lstm", peephole=True, layers=2, bidirectional=True),
]


@pytest.mark.parametrize("kw", BATCH_CASES, ids=lambda kw: ModelConfig(**kw).describe())
def test_batch_equals_sequences(kw):
    cfg = cfg_of(**kw)
    rng = np.random.default_rng(21)
    W = ref.random_params(cfg, rng)
    T, B, H = 6, 3, cfg.hidden
    x = rng.integers(0, cfg.vocab_size, size=(T, B))
    y = rng.integers(0, cfg.vocab_size, size=(T, B))
    state = None
    if not cfg.bidirectional:
        state = [(rng.normal(size=(B, H)), rng.normal(size=(B, H))) for _ in range(cfg.layers)]
    lp = ref.lm_token_logprobs(cfg, W, x, y, state)
    _, new_state = ref.lm_nll(cfg, W, x, y, state)
    assert lp.shape == (T, B)
    for b in range(B):
        sb = None if state is None else [(h[b:b + 1], c[b:b + 1]) for h, c in state]
        lp_b = ref.lm_token_logprobs(cfg, W, x[:, b:b + 1], y[:, b:b + 1], sb)
        assert np.abs(lp[:, b:b + 1] - lp_b).max() < 1e-12
        if state is not None:
            _, ns_b = ref.lm_nll(cfg, W, x[:, b:b + 1], y[:, b:b + 1], sb)
            for (h, c), (hb, cb) in zip(new_state, ns_b):
                assert np.abs(h[b] - hb[0]).max() < 1e-12 and np.abs(c[b] - cb[0]).max() < 1e-12


# ---------------------------------------------------------------------------------------------------
# (4) bidirectional: reverse direction = forward recurrence on the time-reversed input

@pytest.mark.parametrize("name", list(ALL_CELLS))
def test_reverse_is_forward_on_reversed_input(name):
    cfg = cfg_of(layers=2, bidirectional=True, **ALL_CELLS[name])
    rng = np.random.default_rng(31)
    W = ref.random_params(cfg, rng)
    # W_rev: the reverse weights under the forward names
    W_rev = dict(W)
    for key in W:
        if key.endswith("_reverse"):
            W_rev[key[: -len("_reverse")]] = W[key]
    for k, In in ((0, cfg.embed), (1, 2 * cfg.hidden)):
        X = rng.normal(size=(7, 2, In))
        Yr, hr, cr = ref.layer_forward(cfg, W, k, X, reverse=True)
        Yf, hf, cf = ref.layer_forward(cfg, W_rev, k, X[::-1])
        assert np.abs(Yr - Yf[::-1]).max() < 1e-13
        assert np.abs(hr - hf).max() < 1e-13 and np.abs(cr - cf).max() < 1e-13
        assert np.abs(hr - Yr[0]).max() == 0  # the reverse pass ends at position 0
    # rnn_forward concatenates [forward, reverse] and feeds that to the next layer
    X = rng.normal(size=(5, 2, cfg.embed))
    Y, _ = ref.rnn_forward(cfg, W, X)
    Y0 = np.concatenate([ref.layer_forward(cfg, W, 0, X)[0], ref.layer_forward(cfg, W, 0, X, reverse=True)[0]], -1)
    Y1 = np.concatenate([ref.layer_forward(cfg, W, 1, Y0)[0], ref.layer_forward(cfg, W, 1, Y0, reverse=True)[0]], -1)
    assert np.array_equal(Y, Y1)
    with pytest.raises(ValueError):
        ref.rnn_forward(cfg, W, X, state=[(None, None)] * cfg.layers)


# ---------------------------------------------------------------------------------------------------
# (5) carrying the state

@pytest.mark.parametrize("name", list(ALL_CELLS))
def test_state_carry(name):
    cfg = cfg_of(layers=2, **ALL_CELLS[name])
    rng = np.random.default_rng(41)
    W = ref.random_params(cfg, rng)
    x = rng.integers(0, cfg.vocab_size, size=(11, 2))
    y = rng.integers(0, cfg.vocab_size, size=(11, 2))
    whole, s_whole = ref.lm_nll(cfg, W, x, y)
    first, s1 = ref.lm_nll(cfg, W, x[:4], y[:4])
    second, s2 = ref.lm_nll(cfg, W, x[4:], y[4:], s1)
    assert abs(first + second - whole) < 1e-12
    for (h, c), (h2, c2) in zip(s_whole, s2):
        assert np.abs(h - h2).max() < 1e-14 and np.abs(c - c2).max() < 1e-14
    lp = np.concatenate([ref.lm_token_logprobs(cfg, W, x[:4], y[:4]),
                         ref.lm_token_logprobs(cfg, W, x[4:], y[4:], s1)])
    assert np.abs(lp - ref.lm_token_logprobs(cfg, W, x, y)).max() < 1e-13
    # a fresh state is not the carried one (the state matters)
    assert abs(ref.lm_nll(cfg, W, x[4:], y[4:])[0] - second) > 1e-6


# ---------------------------------------------------------------------------------------------------
# helpers

def test_random_params_and_dtypes():
    for kw in BATCH_CASES + [dict(cell="lstm", hidden=4, embed=4, tied=True)]:
        cfg = cfg_of(**kw)
        W = ref.random_params(cfg, np.random.default_rng(0), scale=0.3)
        shapes = cfg.param_shapes()
        assert list(W) == list(shapes)
        assert all(W[k].shape == shapes[k] and W[k].dtype == np.float64 for k in W)
        assert all(np.abs(v).max() <= 0.3 for v in W.values())
        assert ("decoder.weight" in W) == (not cfg.tied)
    # float32 tensors (as read from a model file) are computed in float64
    cfg = cfg_of(cell="gru")
    W = ref.random_params(cfg, 1)
    W32 = {k: v.astype(np.float32) for k, v in W.items()}
    W64 = {k: v.astype(np.float64) for k, v in W32.items()}
    ids = [2, 3, 1, 0, 5]
    assert ref.stream_nll(cfg, W32, ids) == ref.stream_nll(cfg, W64, ids)


def test_sigmoid_and_logits():
    x = np.array([-800.0, -3.0, 0.0, 2.5, 800.0])
    s = ref.sigmoid(x)
    assert np.abs(s - np.array([1 / (1 + math.exp(-v)) if v > -700 else 0.0 for v in x])).max() < 1e-15
    assert s[2] == 0.5 and s[-1] == 1.0
    cfg = cfg_of(cell="rnn", hidden=4, embed=4, tied=True)
    W = ref.random_params(cfg, 2)
    Y = np.random.default_rng(2).normal(size=(3, 2, 4))
    assert np.allclose(ref.logits(cfg, W, Y), np.einsum("tbh,vh->tbv", Y, W["embedding.weight"]) + W["decoder.bias"],
                       rtol=0, atol=1e-14)
    lp = ref.log_softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert np.isfinite(lp).all() and abs(lp[1, 0] - math.log(0.5)) < 1e-15
