"""Tests of charlm.model and charlm.kernels.loss.

(1) The forward pass (token NLL and carried state) against tests/reference.py, the float64 NumPy
    reference of docs/model-format.md, for every cell variant, 1 and 2 layers, uni- and
    bidirectional; in float64, in float32, and with tied weights.
(2) Gradient checks of model.loss_and_grads (the unclipped gradient) against central differences of its
    own loss: random directional derivatives for every cell x depth x direction (plain, with fixed
    dropout masks, with tied weights), and a full coordinate-by-coordinate check of the LSTM language
    model (embedding, stacked LSTM, decoder, loss) for 1 and 2 layers.
    The forward and gradient checks run both ways of doing layer 0: over the T*B positions and over the
    V vocabulary rows (model._by_vocabulary), whichever the shapes would pick.
(3) The state carried between windows: two windows equal one pass.
(4) The loss kernels against plain float64 NumPy.
(5) Negative controls: the gradient check and the fastmath scan do fail on a planted error.
(6) No `fastmath` in charlm's sources.

Shapes are tiny (H=3, E=4, V=7, T=4, B=3; H=E=4 when tied) so the whole file runs in seconds once Numba
has compiled the kernels.
"""
import io
import pathlib
import tokenize
import zlib

import numpy as np
import pytest

import reference as ref

from charlm import model
from charlm.config import ModelConfig
from charlm.kernels import loss as kloss
from support import CELLS

T, B, E, V, H = 4, 3, 4, 7, 3
# Central-difference step. Measured on this file's cases: the rounding noise of the float64 loss is
# ~1e-10 absolute in the difference quotient at eps=1e-6, i.e. ~2e-6 relative for the smallest gradient
# tensors (layer 0 of a 2-layer LSTM, max |g| ~ 2e-4); at 1e-5 the worst case is ~2e-7, at 1e-4 a relu
# kink is crossed. 1e-5 leaves a 5x margin under GRAD_TOL; typical errors are 1e-9..1e-8.
EPS = 1e-5
GRAD_TOL = 1e-6     # relative error allowed in a gradient check

ARCH = [pytest.param(v, layers, bi, id=f"{v}-L{layers}-{'bi' if bi else 'uni'}")
        for v in CELLS for layers in (1, 2) for bi in (False, True)]
UNI = [pytest.param(v, layers, id=f"{v}-L{layers}") for v in CELLS for layers in (1, 2)]


def make_cfg(variant, layers, bidirectional=False, tied=False, hidden=H, embed=E):
    if tied:
        hidden = embed = 4
    return ModelConfig(level="char", layers=layers, hidden=hidden, embed=embed, vocab_size=V,
                       unk_id=0, eos_id=1, tied=tied, bidirectional=bidirectional, **CELLS[variant])


@pytest.fixture(params=["positions", "vocabulary"])
def layer0(request, monkeypatch):
    """Layer 0 over the positions or over the vocabulary (never the latter under embedding dropout)."""
    by_vocab = request.param == "vocabulary"
    monkeypatch.setattr(model, "_by_vocabulary", lambda cfg, x, masks: by_vocab and (masks is None or masks[0] is None))
    return request.param


def rng_for(*parts):
    """A Generator seeded by the test case, so every case draws its own reproducible numbers."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def token_ids(rng, t=T, b=B):
    return rng.integers(0, V, size=(t, b), dtype=np.int64)


def random_state(cfg, rng, b=B):
    """A random non-zero (L, 2, B, H) state for unidirectional models, None for bidirectional ones."""
    if cfg.bidirectional:
        return None
    return rng.uniform(-0.8, 0.8, size=(cfg.layers, 2, b, cfg.hidden))


def ref_state(S):
    """The model's (L, 2, B, H) state as the reference's list of (h, c) pairs."""
    return None if S is None else [(S[k, 0], S[k, 1]) for k in range(S.shape[0])]


def assert_state_matches(cfg, S_new, ref_new, atol):
    if cfg.bidirectional:
        assert S_new is None and ref_new is None
        return
    assert S_new.shape == (cfg.layers, 2, B, cfg.hidden)
    for k, (h, c) in enumerate(ref_new):
        np.testing.assert_allclose(S_new[k, 0], h, rtol=0, atol=atol, err_msg=f"h of layer {k}")
        if cfg.cell == "lstm":
            np.testing.assert_allclose(S_new[k, 1], c, rtol=0, atol=atol, err_msg=f"c of layer {k}")


# ---------------------------------------------------------------------------------------------------
# (1) Forward against the reference


@pytest.mark.parametrize("variant,layers,bi", ARCH)
def test_forward_matches_reference_float64(variant, layers, bi, layer0):
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for("fwd64", variant, layers, bi)
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    S = random_state(cfg, rng)
    P_before = {k: v.copy() for k, v in P.items()}
    S_before = None if S is None else S.copy()

    nll, S_new = model.token_nll(cfg, P, x, y, S)

    assert nll.shape == (T, B) and nll.dtype == np.float64
    expected = -ref.lm_token_logprobs(cfg, P, x, y, ref_state(S))
    np.testing.assert_allclose(nll, expected, rtol=0, atol=1e-10)
    _, ref_new = ref.lm_nll(cfg, P, x, y, ref_state(S))
    assert_state_matches(cfg, S_new, ref_new, atol=1e-10)
    # inputs are left alone
    for k in P:
        np.testing.assert_array_equal(P[k], P_before[k])
    if S is not None:
        np.testing.assert_array_equal(S, S_before)


@pytest.mark.parametrize("variant,layers,bi", ARCH)
def test_forward_float32_close_to_float64_reference(variant, layers, bi):
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for("fwd32", variant, layers, bi)
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    S = random_state(cfg, rng)
    P32 = {k: v.astype(np.float32) for k, v in P.items()}
    S32 = None if S is None else S.astype(np.float32)

    nll, S_new = model.token_nll(cfg, P32, x, y, S32)

    assert nll.shape == (T, B) and nll.dtype == np.float64
    expected = -ref.lm_token_logprobs(cfg, P, x, y, ref_state(S))
    np.testing.assert_allclose(nll, expected, rtol=1e-4, atol=1e-6)
    _, ref_new = ref.lm_nll(cfg, P, x, y, ref_state(S))
    if S_new is not None:
        assert S_new.dtype == np.float32
    assert_state_matches(cfg, S_new, ref_new, atol=1e-5)


@pytest.mark.parametrize("variant,layers", UNI)
def test_forward_tied_weights(variant, layers):
    cfg = make_cfg(variant, layers, tied=True)
    rng = rng_for("tied", variant, layers)
    P = ref.random_params(cfg, rng)
    assert "decoder.weight" not in P
    x, y = token_ids(rng), token_ids(rng)
    S = random_state(cfg, rng)

    nll, S_new = model.token_nll(cfg, P, x, y, S)

    np.testing.assert_allclose(nll, -ref.lm_token_logprobs(cfg, P, x, y, ref_state(S)), rtol=0, atol=1e-10)
    _, ref_new = ref.lm_nll(cfg, P, x, y, ref_state(S))
    assert_state_matches(cfg, S_new, ref_new, atol=1e-10)
    # the decoder really is the embedding: an untied model with decoder.weight = embedding.weight agrees
    untied = make_cfg(variant, layers, hidden=4, embed=4)
    Pu = dict(P, **{"decoder.weight": P["embedding.weight"].copy()})
    np.testing.assert_allclose(model.token_nll(untied, Pu, x, y, S)[0], nll, rtol=0, atol=1e-12)


def test_forward_zero_state_is_none_state():
    """state=None means the all-zero state of the spec."""
    cfg = make_cfg("lstm-peephole", 2)
    rng = rng_for("zero-state")
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    a, Sa = model.token_nll(cfg, P, x, y, None)
    b, Sb = model.token_nll(cfg, P, x, y, model.zero_state(cfg, B, np.float64))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(Sa, Sb)


# ---------------------------------------------------------------------------------------------------
# (2) Gradient checks


def loss_fn(cfg, x, y, S=None, masks=None):
    return lambda P: model.loss_and_grads(cfg, P, x, y, S, masks)[0]


def directional_errors(f, P, grads, rng, n_dirs=3, eps=EPS):
    """Per tensor: central differences (f(P + eps v) - f(P - eps v)) / 2 eps against the analytic Σ grad·v
    for n_dirs random directions v; the error is max |fd - analytic| over max(|fd|, |analytic|) across the
    directions (one direction alone may give a derivative near zero, where rounding noise dominates)."""
    errors = {}
    for name in P:
        fds, ans = [], []
        for _ in range(n_dirs):
            v = rng.standard_normal(P[name].shape)
            fds.append((f({**P, name: P[name] + eps * v}) - f({**P, name: P[name] - eps * v})) / (2 * eps))
            ans.append(float(np.sum(grads[name] * v)))
        fds, ans = np.array(fds), np.array(ans)
        errors[name] = np.abs(fds - ans).max() / max(1e-8, np.abs(fds).max(), np.abs(ans).max())
    return errors


def coordinate_errors(f, P, grads, eps=EPS):
    """Per tensor: (max-abs error over max-abs scale, index of the worst entry) of the coordinate-wise
    central differences, every entry of every tensor."""
    errors = {}
    for name, p in P.items():
        fd = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            q = p.copy()
            q[idx] += eps
            up = f({**P, name: q})
            q[idx] -= 2 * eps
            down = f({**P, name: q})
            fd[idx] = (up - down) / (2 * eps)
        diff = np.abs(fd - grads[name])
        scale = max(1e-8, np.abs(fd).max(), np.abs(grads[name]).max())
        errors[name] = (diff.max() / scale, np.unravel_index(diff.argmax(), p.shape))
    return errors


def grads_of(cfg, P, x, y, S=None, masks=None):
    loss, grads, _ = model.loss_and_grads(cfg, P, x, y, S, masks)
    assert set(grads) == set(P), "one gradient per parameter tensor, nothing more"
    for name in P:
        assert grads[name].shape == P[name].shape and grads[name].dtype == P[name].dtype, name
    assert np.isfinite(loss)
    return loss, grads


def assert_all_below(errors, what):
    worst = {k: (e[0] if isinstance(e, tuple) else e) for k, e in errors.items()}
    bad = {k: e for k, e in worst.items() if not e < GRAD_TOL}
    assert not bad, f"{what}: relative gradient error >= {GRAD_TOL}: {bad}"


@pytest.mark.parametrize("variant,layers,bi", ARCH)
def test_gradient_directional(variant, layers, bi, layer0):
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for("grad", variant, layers, bi)
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    S = random_state(cfg, rng)
    loss, grads = grads_of(cfg, P, x, y, S)
    np.testing.assert_allclose(loss, -ref.lm_token_logprobs(cfg, P, x, y, ref_state(S)).mean(),
                               rtol=0, atol=1e-10)
    assert_all_below(directional_errors(loss_fn(cfg, x, y, S), P, grads, rng), cfg.describe())


@pytest.mark.parametrize("variant,layers,bi", ARCH)
def test_gradient_directional_with_dropout(variant, layers, bi, layer0):
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for("grad-dropout", variant, layers, bi)
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    S = random_state(cfg, rng)
    masks = model.dropout_masks(cfg, np.random.default_rng(1234), T, B, 0.3, np.float64)
    assert len(masks) == layers + 1 and masks[0] is None
    assert all((m == 0).any() for m in masks[1:]), "the seed should drop something"
    loss, grads = grads_of(cfg, P, x, y, S, masks)
    assert abs(loss - loss_fn(cfg, x, y, S)(P)) > 1e-6, "masks changed nothing: the check would be vacuous"
    assert_all_below(directional_errors(loss_fn(cfg, x, y, S, masks), P, grads, rng), cfg.describe())


@pytest.mark.parametrize("variant,layers", UNI)
def test_gradient_directional_tied(variant, layers, layer0):
    cfg = make_cfg(variant, layers, tied=True)
    rng = rng_for("grad-tied", variant, layers)
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    S = random_state(cfg, rng)
    _, grads = grads_of(cfg, P, x, y, S)
    assert_all_below(directional_errors(loss_fn(cfg, x, y, S), P, grads, rng), cfg.describe())


FULL_LSTM = [
    pytest.param(dict(layers=1), id="lstm-L1"),
    pytest.param(dict(layers=2), id="lstm-L2"),
    pytest.param(dict(layers=2, state=True, dropout=True), id="lstm-L2-state-dropout"),
    pytest.param(dict(layers=2, tied=True), id="lstm-L2-tied"),
]


@pytest.mark.parametrize("case", FULL_LSTM)
def test_gradient_full_lstm_lm(case, layer0):
    """Every entry of every tensor of the LSTM language model: embedding, stacked LSTM, decoder, loss."""
    cfg = make_cfg("lstm", case["layers"], tied=case.get("tied", False))
    rng = rng_for("grad-full", sorted(case.items()))
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    S = random_state(cfg, rng) if case.get("state") else None
    masks = model.dropout_masks(cfg, np.random.default_rng(7), T, B, 0.3, np.float64) if case.get("dropout") else None
    _, grads = grads_of(cfg, P, x, y, S, masks)
    errors = coordinate_errors(loss_fn(cfg, x, y, S, masks), P, grads)
    assert_all_below(errors, cfg.describe())


@pytest.mark.parametrize("variant,layers,bi", [
    pytest.param("lstm-peephole", 2, False, id="lstm-peephole-L2-uni"),
    pytest.param("gru-full", 2, True, id="gru-full-L2-bi"),
    pytest.param("rnn-tanh", 1, False, id="rnn-tanh-L1-uni"),
])
def test_float32_gradients_close_to_float64(variant, layers, bi):
    """Training runs in float32: its loss and gradients agree with the float64 ones."""
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for("grad32", variant, layers, bi)
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    S = random_state(cfg, rng)
    masks = model.dropout_masks(cfg, np.random.default_rng(3), T, B, 0.3, np.float64)
    l64, g64 = grads_of(cfg, P, x, y, S, masks)
    P32 = {k: v.astype(np.float32) for k, v in P.items()}
    m32 = [None if m is None else m.astype(np.float32) for m in masks]
    l32, g32 = grads_of(cfg, P32, x, y, None if S is None else S.astype(np.float32), m32)
    assert abs(l32 - l64) <= 1e-4 * abs(l64)
    for name in P:
        scale = max(1e-8, np.abs(g64[name]).max())
        assert np.abs(g32[name] - g64[name]).max() / scale < 1e-3, name


# ---------------------------------------------------------------------------------------------------
# (5) Negative controls: the checks above can fail


@pytest.mark.parametrize("name,idx", [
    pytest.param("rnn.weight_hh_l1", (5, 2), id="weight_hh_l1"),
    pytest.param("embedding.weight", (3, 1), id="embedding"),
    pytest.param("decoder.bias", (6,), id="decoder_bias"),
])
def test_gradient_check_catches_one_wrong_entry(name, idx):
    cfg = make_cfg("lstm", 2)
    rng = rng_for("negative", name)
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    f = loss_fn(cfg, x, y)
    _, grads = grads_of(cfg, P, x, y)
    bad = {k: g.copy() for k, g in grads.items()}
    bad[name][idx] += 1e-4 * np.abs(grads[name]).max()       # a small error in a single entry

    coord = coordinate_errors(f, P, bad)
    assert coord[name][0] > 10 * GRAD_TOL, coord[name]
    assert tuple(coord[name][1]) == idx, "the coordinate check points at the wrong entry"
    assert all(e < GRAD_TOL for k, (e, _) in coord.items() if k != name), "only the planted error shows"

    direc = directional_errors(f, P, bad, np.random.default_rng(99))
    assert direc[name] > 10 * GRAD_TOL, direc[name]
    assert all(e < GRAD_TOL for k, e in direc.items() if k != name)
    with pytest.raises(AssertionError, match=name.replace(".", r"\.")):
        assert_all_below(direc, "planted")


def test_gradient_check_catches_a_swapped_gate_gradient():
    """A plausible bug: the f and i gate gradients of an LSTM layer swapped."""
    cfg = make_cfg("lstm", 1)
    rng = rng_for("negative-swap")
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng), token_ids(rng)
    _, grads = grads_of(cfg, P, x, y)
    bad = {k: g.copy() for k, g in grads.items()}
    w = bad["rnn.weight_ih_l0"]
    w[:H], w[H:2 * H] = grads["rnn.weight_ih_l0"][H:2 * H].copy(), grads["rnn.weight_ih_l0"][:H].copy()
    errors = directional_errors(loss_fn(cfg, x, y), P, bad, rng)
    assert errors["rnn.weight_ih_l0"] > 1e-3


# ---------------------------------------------------------------------------------------------------
# (3) The carried state


@pytest.mark.parametrize("variant,layers", UNI)
def test_two_windows_equal_one_pass(variant, layers, layer0):
    cfg = make_cfg(variant, layers)
    rng = rng_for("carry", variant, layers)
    P = ref.random_params(cfg, rng)
    x, y = token_ids(rng, t=7), token_ids(rng, t=7)
    S0 = random_state(cfg, rng)
    whole, S_whole = model.token_nll(cfg, P, x, y, S0)

    first, S1 = model.token_nll(cfg, P, x[:3], y[:3], S0)
    second, S2 = model.token_nll(cfg, P, x[3:], y[3:], S1)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(S2[:, 0], S_whole[:, 0], rtol=0, atol=1e-12)
    if cfg.cell == "lstm":
        np.testing.assert_allclose(S2[:, 1], S_whole[:, 1], rtol=0, atol=1e-12)

    # the training path carries the same state and its mean losses add up to the same total
    l1, _, T1 = model.loss_and_grads(cfg, P, x[:3], y[:3], S0)
    l2, _, T2 = model.loss_and_grads(cfg, P, x[3:], y[3:], T1)
    np.testing.assert_allclose(T1[:, 0], S1[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(T2[:, 0], S_whole[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(l1 * 3 * B + l2 * 4 * B, whole.sum(), rtol=1e-12)

    # and the state matters (else the test is vacuous): starting from zero gives other numbers
    fresh, _ = model.token_nll(cfg, P, x, y, None)
    assert np.abs(fresh - whole).max() > 1e-6


# ---------------------------------------------------------------------------------------------------
# (4) Loss kernels


def logits_for(dtype, shift, rng, n=11):
    Z = rng.standard_normal((n, V)) * 3.0 + shift
    Z[0, 0] += 5.0        # a row whose maximum is the first entry
    Z[1, V - 1] += 5.0    # and one whose maximum is the last
    return np.ascontiguousarray(Z.astype(dtype)), np.arange(n, dtype=np.int64) % V


DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
SHIFTS = [pytest.param(0.0, id="plain"), pytest.param(1000.0, id="shift1000")]


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent(dtype, shift):
    rng = rng_for("xent", np.dtype(dtype).name, shift)
    Z, y = logits_for(dtype, shift, rng)
    N = Z.shape[0]
    Z64 = Z.astype(np.float64)
    lsm = ref.log_softmax(Z64)
    scale = 1.0 / N
    nll = np.full(N, np.nan)
    G = Z.copy()
    kloss.softmax_xent(G, y, scale, nll)

    tight = dtype == np.float64
    np.testing.assert_allclose(nll, -lsm[np.arange(N), y], rtol=0, atol=1e-12 if tight else 1e-5)
    expected = np.exp(lsm)
    expected[np.arange(N), y] -= 1.0
    expected *= scale
    assert G.dtype == dtype
    np.testing.assert_allclose(G, expected, rtol=0, atol=1e-15 if tight else 1e-7)


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsoftmax_nll(dtype, shift):
    rng = rng_for("lsm", np.dtype(dtype).name, shift)
    Z, y = logits_for(dtype, shift, rng)
    N = Z.shape[0]
    before = Z.copy()
    nll = np.full(N, np.nan)
    kloss.logsoftmax_nll(Z, y, nll)
    np.testing.assert_array_equal(Z, before)           # left unchanged
    # against the float64 log-softmax of the same values: float32 logits take the float32 exp (2 ulp)
    # but a float64 sum, so the error stays far below float32's own rounding of a logit
    np.testing.assert_allclose(nll, -ref.log_softmax(Z.astype(np.float64))[np.arange(N), y],
                               rtol=0, atol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_add_rows(dtype):
    rng = rng_for("scatter", np.dtype(dtype).name)
    dE = rng.standard_normal((V, E)).astype(dtype)
    ids = np.array([3, 0, 3, 6, 3, 1, 0], dtype=np.int64)   # repeats, first and last rows, row 2 absent
    dX = rng.standard_normal((len(ids), E)).astype(dtype)
    expected = dE.copy()
    np.add.at(expected, ids, dX)
    kloss.scatter_add_rows(dE, ids, dX)
    np.testing.assert_allclose(dE, expected, rtol=1e-6 if dtype == np.float32 else 1e-15, atol=0)


# ---------------------------------------------------------------------------------------------------
# (6) No fastmath


CHARLM = pathlib.Path(__file__).resolve().parent.parent / "charlm"
ALLOWED_FASTMATH = pathlib.PurePosixPath("kernels/__init__.py")   # its docstring forbids fastmath


def fastmath_violations(relpath, source):
    """Lines of `source` that mention fastmath anywhere other than a comment or the module docstring
    of the one file allowed to state the rule. Every mention in code (a `fastmath=` keyword, a name, a
    string such as an options dict key) is a violation."""
    violations = []
    allowed_file = pathlib.PurePosixPath(relpath) == ALLOWED_FASTMATH
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    significant = [t for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                                       tokenize.ENCODING, tokenize.INDENT, tokenize.DEDENT)]
    docstring = significant[0] if significant and significant[0].type == tokenize.STRING else None
    for tok in tokens:
        if "fastmath" not in tok.string.lower():
            continue
        harmless = tok.type == tokenize.COMMENT or tok is docstring
        if not (allowed_file and harmless):
            violations.append(f"{relpath}:{tok.start[0]}: {tok.line.strip()}")
    return violations


def test_no_fastmath_in_charlm():
    files = sorted(p for p in CHARLM.rglob("*.py") if "__pycache__" not in p.parts)
    assert any(p.name == "cells.py" for p in files), f"charlm sources not found under {CHARLM}"
    violations = []
    for p in files:
        violations += fastmath_violations(p.relative_to(CHARLM).as_posix(), p.read_text(encoding="utf-8"))
    assert not violations, "fastmath is forbidden (charlm/kernels/__init__.py):\n" + "\n".join(violations)


@pytest.mark.parametrize("relpath,source", [
    pytest.param("kernels/cells.py", "from numba import njit\n@njit(cache=True, fastmath=True)\ndef f(x):\n    return x\n",
                 id="keyword"),
    pytest.param("kernels/loss.py", "OPTS = {'fastmath': False}\n", id="options-dict"),
    pytest.param("kernels/__init__.py", '"""Doc."""\nimport numba\nnumba.njit(fastmath={"nnan"})\n',
                 id="code-in-allowed-file"),
    pytest.param("model.py", "# never fastmath\n", id="comment-outside-allowed-file"),
])
def test_fastmath_scan_catches_planted_use(relpath, source):
    assert fastmath_violations(relpath, source)


def test_fastmath_scan_allows_the_rule():
    source = '"""Kernels.\n\n- Never `fastmath=True`.\n"""\n# fastmath is forbidden\nX = 1\n'
    assert fastmath_violations("kernels/__init__.py", source) == []


def test_layer0_by_vocabulary_only_when_it_saves_work():
    char = ModelConfig(vocab_size=65, hidden=8, embed=8)
    word = ModelConfig(vocab_size=10000, hidden=8, embed=8)
    x = np.zeros((64, 32), np.int32)
    assert model._by_vocabulary(char, x, None)
    assert not model._by_vocabulary(word, x, None)                       # V > T*B / 2
    masks = model.dropout_masks(char, np.random.default_rng(0), 64, 32, 0.5)
    assert model._by_vocabulary(char, x, masks)                          # layer 0's input is kept whole
    masks[0] = masks[1]
    assert not model._by_vocabulary(char, x, masks)                      # a dropped embedding varies by position
