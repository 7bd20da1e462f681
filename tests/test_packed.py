"""Tests of charlm.packed and charlm.kernels.packed: variable-length (packed) batches.

(1) The layout: sorting, offsets, the reversal involution, pack / unpack / pad, thread blocks, errors.
(2) Forward against tests/reference.py run one sequence at a time (float64 reference), for every cell
    x {1, 2} layers x {uni, bi}, on a ragged batch in unsorted order with a length-1 sequence and a
    tie, from a random initial state: per-position outputs and both directions' final states.
(3) Gradient checks (central differences, float64) of a loss using both the outputs and the final
    states, w.r.t. every parameter, the input and h0; with dropout masks; negative controls.
(4) The reverse direction reads no padding; sequences do not leak into each other.
(5) Equal lengths: the packed path equals model.forward / model.backward (the fixed-length path).
(6) PyTorch's pack_padded_sequence + nn.LSTM / nn.RNN (when torch is installed).

Shapes are tiny (H=3, E=4, B=6) so the file runs in seconds once Numba has compiled the kernels.
"""
import numpy as np
import pytest

import reference as ref

from charlm import model, packed
from charlm.config import ModelConfig
from charlm.errors import CharlmError
from support import CELLS
from test_model import GRAD_TOL, assert_all_below, directional_errors, rng_for

E, H, V = 4, 3, 7
LENGTHS = [3, 5, 1, 5, 2, 4]          # unsorted, a length-1 sequence, a tie (5, 5)
THREADS = 2                           # two row blocks: thread 0 gets the 2 longest, thread 1 the rest

ARCH = [pytest.param(v, layers, bi, id=f"{v}-L{layers}-{'bi' if bi else 'uni'}")
        for v in CELLS for layers in (1, 2) for bi in (False, True)]


def make_cfg(variant, layers, bidirectional=False, hidden=H, embed=E):
    return ModelConfig(level="char", layers=layers, hidden=hidden, embed=embed, vocab_size=V, unk_id=0,
                       eos_id=1, bidirectional=bidirectional, **CELLS[variant])


def rnn_params(cfg, rng):
    """The stack's parameters (rnn.*) only, float64."""
    return {k: v for k, v in ref.random_params(cfg, rng).items() if k.startswith("rnn.")}


def ragged(cfg, rng, lengths=LENGTHS):
    """(layout, sequences in caller order, packed X, h0 (L, dirs, 2, B, H) in caller order)."""
    layout = packed.Layout.from_lengths(lengths)
    seqs = [rng.standard_normal((n, cfg.embed)) for n in lengths]
    h0 = rng.uniform(-0.8, 0.8, (cfg.layers, cfg.directions, 2, len(lengths), cfg.hidden))
    if cfg.cell != "lstm":
        h0[:, :, 1] = 0.0
    return layout, seqs, layout.pack(seqs), h0


def ref_sequence(cfg, P, x, h0=None):
    """The reference on one sequence x (L, E) from h0 (L, dirs, 2, H) or zeros:
    (Y (L, H*dirs), final (L, dirs, 2, H))."""
    inp = x[:, None, :]
    final = np.zeros((cfg.layers, cfg.directions, 2, cfg.hidden))
    for k in range(cfg.layers):
        outs = []
        for d in range(cfg.directions):
            hk = None if h0 is None else h0[k, d, 0][None]
            ck = None if h0 is None else h0[k, d, 1][None]
            Y, h, c = ref.layer_forward(cfg, P, k, inp, hk, ck, reverse=bool(d))
            outs.append(Y)
            final[k, d, 0], final[k, d, 1] = h[0], c[0]
        inp = np.concatenate(outs, axis=-1)
    return inp[:, 0], final


# ---------------------------------------------------------------------------------------------------
# (1) The layout


def test_layout_fields():
    lay = packed.Layout.from_lengths(LENGTHS)
    np.testing.assert_array_equal(lay.lengths, [5, 5, 4, 3, 2, 1])
    np.testing.assert_array_equal(lay.order, [1, 3, 5, 0, 4, 2])          # stable: 1 before 3
    np.testing.assert_array_equal(lay.order[lay.inverse], np.arange(6))
    np.testing.assert_array_equal(lay.batch_sizes, [6, 5, 4, 3, 2])
    np.testing.assert_array_equal(lay.offsets, [0, 6, 11, 15, 18, 20])
    assert (lay.N, lay.B, lay.T) == (20, 6, 5)
    np.testing.assert_array_equal(lay.rev[lay.rev], np.arange(20))          # an involution
    np.testing.assert_array_equal(lay.seq_of_row[lay.rev], lay.seq_of_row)  # within each sequence
    np.testing.assert_array_equal(lay.step_of_row[lay.rev], lay.lengths[lay.seq_of_row] - 1 - lay.step_of_row)
    np.testing.assert_array_equal(lay.step_of_row[lay.last_row], lay.lengths - 1)
    np.testing.assert_array_equal(lay.seq_of_row[lay.last_row], np.arange(6))
    np.testing.assert_array_equal(lay.rev[lay.last_row], lay.offsets[0] + np.arange(6))   # position 0


def test_pack_unpack_pad_round_trip():
    rng = rng_for("pack")
    lay = packed.Layout.from_lengths(LENGTHS)
    seqs = [rng.standard_normal((n, 2)) for n in LENGTHS]
    X = lay.pack(seqs)
    assert X.shape == (20, 2)
    for s, u in zip(seqs, lay.unpack(X)):
        np.testing.assert_array_equal(s, u)
    padded = lay.pad(X, value=np.nan)
    assert padded.shape == (5, 6, 2)
    for j, s in enumerate(seqs):
        np.testing.assert_array_equal(padded[: len(s), j], s)
        assert np.isnan(padded[len(s):, j]).all()
    # time-major: step 0 holds every sequence's first token, in sorted order
    np.testing.assert_array_equal(X[:6], np.stack([seqs[j][0] for j in lay.order]))
    a = rng.standard_normal((2, 6, 3))
    np.testing.assert_array_equal(lay.unsort(lay.sort(a)), a)


@pytest.mark.parametrize("lengths,fragment", [
    ([3, 0, 2], "sequence 1 has length 0"),
    ([2, -1], "sequence 1 has length -1"),
    ([], "non-empty"),
    ([[1, 2]], "1-D"),
    ([1.5, 2], "integers"),
])
def test_layout_rejects_bad_lengths(lengths, fragment):
    with pytest.raises(CharlmError, match=fragment):
        packed.Layout.from_lengths(lengths)


def test_pack_rejects_wrong_lengths():
    lay = packed.Layout.from_lengths([2, 3])
    with pytest.raises(CharlmError, match="sequence 1 has 2 steps"):
        lay.pack([np.zeros((2, 1)), np.zeros((2, 1))])


def test_thread_blocks_balance_tokens():
    lengths = np.array([40, 30, 10, 10, 10, 5, 5, 5, 3, 2])
    blocks = packed.thread_blocks(lengths, 2)
    np.testing.assert_array_equal(blocks, [0, 2, 10])          # 70 tokens against 50: nearest to 60
    assert packed.thread_blocks(lengths, 1).tolist() == [0, 10]
    assert packed.thread_blocks(lengths[:3], 5).tolist() == [0, 1, 2, 3]   # at most one block per row
    b = packed.thread_blocks(np.ones(9, int), 3)
    assert b.tolist() == [0, 3, 6, 9]
    for n in (2, 3, 4):
        assert (np.diff(packed.thread_blocks(lengths, n)) >= 1).all()


# ---------------------------------------------------------------------------------------------------
# (2) Forward against the reference, one sequence at a time


def check_forward(cfg, P, lay, seqs, X, h0, atol, threads=THREADS):
    out, final, cache = packed.forward(cfg, P, X, lay, lay.sort(h0), threads=threads)
    assert out.shape == (lay.N, cfg.hidden * cfg.directions) and out.dtype == X.dtype
    assert final.shape == (cfg.layers, cfg.directions, 2, lay.B, cfg.hidden)
    final = lay.unsort(final)
    for j, (x, y) in enumerate(zip(seqs, lay.unpack(out))):
        Y, fin = ref_sequence(cfg, P, x, h0[:, :, :, j])
        np.testing.assert_allclose(y, Y, rtol=0, atol=atol, err_msg=f"outputs of sequence {j}")
        np.testing.assert_allclose(final[:, :, :, j], fin, rtol=0, atol=atol, err_msg=f"final of sequence {j}")
    return out, final, cache


@pytest.mark.parametrize("variant,layers,bi", ARCH)
def test_forward_matches_reference_float64(variant, layers, bi):
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for("packed-fwd", variant, layers, bi)
    P = rnn_params(cfg, rng)
    lay, seqs, X, h0 = ragged(cfg, rng)
    out, final, cache = check_forward(cfg, P, lay, seqs, X, h0, atol=1e-12)
    if cfg.cell != "lstm":
        assert (final[:, :, 1] == 0).all()
    # evaluation mode keeps no gates and gives the same numbers
    out2, final2, none = packed.forward(cfg, P, X, lay, lay.sort(h0), for_backward=False, threads=THREADS)
    assert none is None
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(lay.unsort(final2), final)
    # h0=None is the zero state
    zero = np.zeros_like(h0)
    out3, _, _ = packed.forward(cfg, P, X, lay, None, threads=THREADS)
    np.testing.assert_array_equal(out3, packed.forward(cfg, P, X, lay, zero, threads=THREADS)[0])
    assert np.abs(out3 - out).max() > 1e-6, "h0 changed nothing: the comparison would be vacuous"


@pytest.mark.parametrize("variant,layers,bi", [
    pytest.param("lstm-peephole", 2, True, id="lstm-peephole-L2-bi"),
    pytest.param("gru-full", 2, True, id="gru-full-L2-bi"),
    pytest.param("rnn-relu", 1, False, id="rnn-relu-L1-uni"),
    pytest.param("gru-minimal", 2, False, id="gru-minimal-L2-uni"),
])
def test_forward_float32_close_to_reference(variant, layers, bi):
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for("packed-fwd32", variant, layers, bi)
    P = rnn_params(cfg, rng)
    lay, seqs, X, h0 = ragged(cfg, rng)
    P32 = {k: v.astype(np.float32) for k, v in P.items()}
    out, final, _ = packed.forward(cfg, P32, X.astype(np.float32), lay, lay.sort(h0).astype(np.float32),
                                   threads=THREADS)
    assert out.dtype == final.dtype == np.float32
    final = lay.unsort(final)
    for j, (x, y) in enumerate(zip(seqs, lay.unpack(out))):
        Y, fin = ref_sequence(cfg, P, x, h0[:, :, :, j])
        np.testing.assert_allclose(y, Y, rtol=0, atol=1e-5)
        np.testing.assert_allclose(final[:, :, :, j], fin, rtol=0, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 3, 6])
def test_threads_give_the_same_numbers(threads):
    cfg = make_cfg("lstm", 2, True)
    rng = rng_for("packed-threads")
    P = rnn_params(cfg, rng)
    lay, seqs, X, h0 = ragged(cfg, rng)
    base, fbase, cbase = packed.forward(cfg, P, X, lay, lay.sort(h0), threads=THREADS)
    out, final, cache = check_forward(cfg, P, lay, seqs, X, h0, atol=1e-12, threads=threads)
    assert len(cache["blocks"]) == threads + 1
    np.testing.assert_allclose(out, base, rtol=0, atol=1e-14)
    dout = rng.standard_normal(out.shape)
    g1 = packed.backward(cfg, P, cbase, dout)
    g2 = packed.backward(cfg, P, cache, dout)
    np.testing.assert_allclose(g2[0], g1[0], rtol=0, atol=1e-13)
    for name in P:
        np.testing.assert_allclose(g2[1][name], g1[1][name], rtol=0, atol=1e-13, err_msg=name)


def test_one_sequence_and_all_length_one():
    cfg = make_cfg("gru-full", 2, True)
    rng = rng_for("packed-degenerate")
    P = rnn_params(cfg, rng)
    for lengths in ([4], [1], [1, 1, 1]):
        lay, seqs, X, h0 = ragged(cfg, rng, lengths)
        check_forward(cfg, P, lay, seqs, X, h0, atol=1e-12)


def test_forward_rejects_wrong_shapes():
    cfg = make_cfg("lstm", 1)
    P = rnn_params(cfg, rng_for("shapes"))
    lay = packed.Layout.from_lengths([2, 3])
    with pytest.raises(CharlmError, match=r"packed input is \(4, 4\)"):
        packed.forward(cfg, P, np.zeros((4, E)), lay)
    with pytest.raises(CharlmError, match="h0 is"):
        packed.forward(cfg, P, np.zeros((5, E)), lay, np.zeros((1, 1, 2, 3, H)))


# ---------------------------------------------------------------------------------------------------
# (3) Gradient checks


def projected_loss(cfg, lay, Wout, Wfin, masks=None, threads=THREADS):
    """f(Q) = Σ out ⊙ Wout + Σ final ⊙ Wfin for Q = the parameters plus "X" and "h0" (sorted order)."""
    def f(Q):
        P = {k: v for k, v in Q.items() if k not in ("X", "h0")}
        out, final, _ = packed.forward(cfg, P, Q["X"], lay, Q["h0"], masks, threads=threads)
        return float(np.sum(out * Wout) + np.sum(final * Wfin))
    return f


def analytic(cfg, P, X, lay, h0, Wout, Wfin, masks=None):
    _, _, cache = packed.forward(cfg, P, X, lay, h0, masks, threads=THREADS)
    dX, grads, dh0 = packed.backward(cfg, P, cache, Wout, Wfin)
    assert set(grads) == set(P), "one gradient per parameter of the stack, nothing more"
    for name in P:
        assert grads[name].shape == P[name].shape and grads[name].dtype == P[name].dtype, name
    assert dX.shape == X.shape and dh0.shape == h0.shape
    return {**grads, "X": dX, "h0": dh0}


def grad_case(tag, variant, layers, bi):
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for(tag, variant, layers, bi)
    P = rnn_params(cfg, rng)
    lay, _, X, h0 = ragged(cfg, rng)
    h0 = lay.sort(h0)
    Wout = rng.standard_normal((lay.N, H * cfg.directions))
    Wfin = rng.standard_normal(h0.shape)
    return cfg, rng, P, lay, X, h0, Wout, Wfin


@pytest.mark.parametrize("variant,layers,bi", ARCH)
def test_gradient_directional(variant, layers, bi):
    cfg, rng, P, lay, X, h0, Wout, Wfin = grad_case("packed-grad", variant, layers, bi)
    grads = analytic(cfg, P, X, lay, h0, Wout, Wfin)
    Q = {**P, "X": X, "h0": h0}
    errors = directional_errors(projected_loss(cfg, lay, Wout, Wfin), Q, grads, rng)
    assert_all_below(errors, cfg.describe())
    # both parts of the loss matter: without dfinal the check fails
    _, _, cache = packed.forward(cfg, P, X, lay, h0, threads=THREADS)
    dX, g, dh0 = packed.backward(cfg, P, cache, Wout, None)
    wrong = directional_errors(projected_loss(cfg, lay, Wout, Wfin), Q, {**g, "X": dX, "h0": dh0}, rng)
    assert max(wrong.values()) > 1e-3


@pytest.mark.parametrize("variant,layers,bi", [
    pytest.param("lstm-peephole", 2, True, id="lstm-peephole-L2-bi"),
    pytest.param("gru-full", 2, False, id="gru-full-L2-uni"),
    pytest.param("rnn-tanh", 2, True, id="rnn-tanh-L2-bi"),
])
def test_gradient_directional_with_masks(variant, layers, bi):
    cfg, rng, P, lay, X, h0, Wout, Wfin = grad_case("packed-grad-mask", variant, layers, bi)
    keep = 0.7
    masks = [((rng.random((lay.N, cfg.layer_input(k))) < keep) / keep) for k in range(layers)]
    # a locked (per-sequence) mask for layer 1, expanded to the rows with seq_of_row
    if layers > 1:
        per_seq = (rng.random((lay.B, cfg.layer_input(1))) < keep) / keep
        masks[1] = per_seq[lay.seq_of_row]
    grads = analytic(cfg, P, X, lay, h0, Wout, Wfin, masks)
    f = projected_loss(cfg, lay, Wout, Wfin, masks)
    assert abs(f({**P, "X": X, "h0": h0}) - projected_loss(cfg, lay, Wout, Wfin)({**P, "X": X, "h0": h0})) > 1e-6
    assert_all_below(directional_errors(f, {**P, "X": X, "h0": h0}, grads, rng), cfg.describe())


@pytest.mark.parametrize("name,idx", [
    pytest.param("rnn.weight_hh_l1_reverse", (4, 1), id="weight_hh_l1_reverse"),
    pytest.param("X", (19, 2), id="X-last-row"),
    pytest.param("h0", (0, 1, 1, 5, 0), id="h0-reverse-c"),
])
def test_gradient_check_catches_one_wrong_entry(name, idx):
    cfg, rng, P, lay, X, h0, Wout, Wfin = grad_case("packed-negative", "lstm", 2, True)
    grads = analytic(cfg, P, X, lay, h0, Wout, Wfin)
    Q = {**P, "X": X, "h0": h0}
    f = projected_loss(cfg, lay, Wout, Wfin)
    assert all(e < GRAD_TOL for e in directional_errors(f, Q, grads, np.random.default_rng(5)).values())
    bad = {k: g.copy() for k, g in grads.items()}
    bad[name][idx] += 1e-3 * np.abs(grads[name]).max() + 1e-3
    errors = directional_errors(f, Q, bad, np.random.default_rng(5))
    assert errors[name] > 10 * GRAD_TOL, errors[name]
    assert all(e < GRAD_TOL for k, e in errors.items() if k != name)
    with pytest.raises(AssertionError, match=name):
        assert_all_below(errors, "planted")


# ---------------------------------------------------------------------------------------------------
# (4) No padding read, no leaks between sequences


@pytest.mark.parametrize("variant", ["lstm", "gru-full", "rnn-tanh"])
def test_reverse_direction_reads_no_padding(variant):
    """The reverse direction of each sequence starts at its own last token from zero: its outputs and
    final state equal the reference's reverse run on the sequence alone, and differ from a reverse run
    over the zero-padded batch (what a padded layout without packing computes)."""
    cfg = make_cfg(variant, 1, True)
    rng = rng_for("packed-padding", variant)
    P = rnn_params(cfg, rng)
    lay, seqs, X, _ = ragged(cfg, rng)
    out, final, _ = packed.forward(cfg, P, X, lay, threads=THREADS)
    final = lay.unsort(final)
    padded = lay.pad(X)                                                   # (T, B, E), zeros past the ends
    Yp, hp, _ = ref.layer_forward(cfg, P, 0, padded, reverse=True)
    for j, (x, y) in enumerate(zip(seqs, lay.unpack(out))):
        Y, h, _ = ref.layer_forward(cfg, P, 0, x[:, None], reverse=True)
        np.testing.assert_allclose(y[:, H:], Y[:, 0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(final[0, 1, 0, j], h[0], rtol=0, atol=1e-12)
        if len(x) < lay.T:                                                # the padded run is wrong there
            assert np.abs(hp[j] - h[0]).max() > 1e-6
            assert np.abs(Yp[: len(x), j] - Y[:, 0]).max() > 1e-6


def test_sequences_do_not_leak():
    """Changing one sequence's tokens changes nothing of the others, forward or backward."""
    cfg = make_cfg("lstm-peephole", 2, True)
    rng = rng_for("packed-leak")
    P = rnn_params(cfg, rng)
    lay, seqs, X, h0 = ragged(cfg, rng)
    j = 4                                                                 # length 2, sorted row 4
    X2 = X.copy()
    rows = lay.rows_of(lay.inverse[j])
    X2[rows] += 1.0
    a, fa, ca = packed.forward(cfg, P, X, lay, lay.sort(h0), threads=THREADS)
    b, fb, cb = packed.forward(cfg, P, X2, lay, lay.sort(h0), threads=THREADS)
    others = np.ones(lay.N, bool)
    others[rows] = False
    np.testing.assert_array_equal(a[others], b[others])
    assert np.abs(a[rows] - b[rows]).min() > 0
    keep = np.arange(lay.B) != lay.inverse[j]
    np.testing.assert_array_equal(fa[..., keep, :], fb[..., keep, :])
    dout = np.zeros_like(a)
    dout[rows] = 1.0                                                      # a loss on sequence j only
    dX, _, dh0 = packed.backward(cfg, P, ca, dout, None)
    assert (dX[others] == 0).all() and (dh0[..., keep, :] == 0).all()
    assert np.abs(dX[rows]).min() > 0


# ---------------------------------------------------------------------------------------------------
# (5) Equal lengths: the fixed-length path


@pytest.mark.parametrize("variant,layers,bi", ARCH)
def test_equal_lengths_equal_fixed_path(variant, layers, bi):
    cfg = make_cfg(variant, layers, bi)
    T, B = 4, 3                                # 2V > T*B: model.forward runs layer 0 over positions
    rng = rng_for("packed-fixed", variant, layers, bi)
    P = ref.random_params(cfg, rng)
    x = rng.integers(0, V, (T, B))
    S = None if bi else rng.uniform(-0.8, 0.8, (layers, 2, B, H))
    if S is not None and cfg.cell != "lstm":
        S[:, 1] = 0.0
    Y, caches, S_new = model.forward(cfg, P, x, S)
    dY = rng.standard_normal(Y.shape)
    g_fixed = model.backward(cfg, P, x, caches, dY)

    lay = packed.Layout.from_lengths([T] * B)
    np.testing.assert_array_equal(lay.order, np.arange(B))
    E_ = P["embedding.weight"]
    h0 = None if S is None else S[:, None]
    out, final, cache = packed.forward(cfg, P, E_[x].reshape(T * B, -1), lay, h0)
    np.testing.assert_allclose(out, Y.reshape(T * B, -1), rtol=0, atol=1e-13)
    if S_new is not None:
        np.testing.assert_allclose(final[:, 0], S_new, rtol=0, atol=1e-13)
    dX, grads, _ = packed.backward(cfg, P, cache, dY.reshape(T * B, -1))
    for name in grads:
        np.testing.assert_allclose(grads[name], g_fixed[name], rtol=0, atol=1e-12, err_msg=name)
    dE = np.zeros_like(E_)
    np.add.at(dE, x.reshape(-1), dX)
    np.testing.assert_allclose(dE, g_fixed["embedding.weight"], rtol=0, atol=1e-12)


def test_equal_lengths_float32_equal_fixed_path():
    cfg = make_cfg("lstm", 2, True, hidden=32, embed=16)
    T, B = 12, 16
    rng = rng_for("packed-fixed32")
    P = {k: v.astype(np.float32) for k, v in model.init_params(cfg, rng).items()}
    P["embedding.weight"] = rng.standard_normal((V, 16)).astype(np.float32)
    x = rng.integers(0, V, (T, B))
    orig = model._by_vocabulary
    try:
        model._by_vocabulary = lambda cfg, x, masks: False
        Y, caches, _ = model.forward(cfg, P, x)
        dY = rng.standard_normal(Y.shape).astype(np.float32)
        g_fixed = model.backward(cfg, P, x, caches, dY)
    finally:
        model._by_vocabulary = orig
    lay = packed.Layout.from_lengths([T] * B)
    out, _, cache = packed.forward(cfg, P, P["embedding.weight"][x].reshape(T * B, -1), lay, threads=2)
    np.testing.assert_allclose(out, Y.reshape(T * B, -1), rtol=0, atol=1e-6)
    _, grads, _ = packed.backward(cfg, P, cache, dY.reshape(T * B, -1))
    for name in grads:
        scale = np.abs(g_fixed[name]).max()
        assert np.abs(grads[name] - g_fixed[name]).max() <= 1e-5 * scale, name


# ---------------------------------------------------------------------------------------------------
# (6) PyTorch's PackedSequence


TORCH_CASES = [
    pytest.param("lstm", 2, True, id="lstm-L2-bi"),
    pytest.param("lstm", 1, False, id="lstm-L1-uni"),
    pytest.param("rnn-tanh", 2, True, id="rnn-tanh-L2-bi"),
    pytest.param("rnn-relu", 2, False, id="rnn-relu-L2-uni"),
]


@pytest.mark.parametrize("variant,layers,bi", TORCH_CASES)
def test_against_torch_packed_sequence(variant, layers, bi):
    """nn.LSTM / nn.RNN over pack_padded_sequence(enforce_sorted=False), float64: outputs, final states
    and the gradients of a loss on both, w.r.t. every weight, the inputs and h0. (PyTorch's GRU puts
    r after the matrix, unlike charlm's, so it is not compared.)"""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    cfg = make_cfg(variant, layers, bi)
    rng = rng_for("packed-torch", variant, layers, bi)
    P = rnn_params(cfg, rng)
    lay, seqs, X, h0 = ragged(cfg, rng)
    L, D, B = layers, cfg.directions, lay.B
    Wout = rng.standard_normal((lay.N, H * D))
    Wfin = rng.standard_normal(h0.shape)                       # caller order
    if cfg.cell != "lstm":
        Wfin[:, :, 1] = 0.0

    if cfg.cell == "lstm":
        mod = torch.nn.LSTM(E, H, layers, bidirectional=bi)
    else:
        mod = torch.nn.RNN(E, H, layers, nonlinearity=cfg.activation, bidirectional=bi)
    mod = mod.double()
    mod.load_state_dict({k[len("rnn."):]: torch.from_numpy(v) for k, v in P.items()}, strict=True)
    xt = torch.from_numpy(lay.pad(X)).requires_grad_()                       # (T, B, E) caller order
    ht = torch.from_numpy(h0[:, :, 0].reshape(L * D, B, H).copy()).requires_grad_()
    ct = torch.from_numpy(h0[:, :, 1].reshape(L * D, B, H).copy()).requires_grad_()
    pk = pack_padded_sequence(xt, torch.tensor(LENGTHS), enforce_sorted=False)
    if cfg.cell == "lstm":
        o, (hn, cn) = mod(pk, (ht, ct))
    else:
        o, hn = mod(pk, ht)
        cn = torch.zeros_like(hn)
    o, _ = pad_packed_sequence(o)                                             # (T, B, H*D)
    loss = (o * torch.from_numpy(lay.pad(Wout))).sum() \
        + (hn * torch.from_numpy(Wfin[:, :, 0].reshape(L * D, B, H))).sum() \
        + (cn * torch.from_numpy(Wfin[:, :, 1].reshape(L * D, B, H))).sum()
    loss.backward()

    out, final, cache = packed.forward(cfg, P, X, lay, lay.sort(h0), threads=THREADS)
    np.testing.assert_allclose(lay.pad(out), o.detach().numpy(), rtol=0, atol=1e-12)
    fin = lay.unsort(final)
    np.testing.assert_allclose(fin[:, :, 0].reshape(L * D, B, H), hn.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fin[:, :, 1].reshape(L * D, B, H), cn.detach().numpy(), rtol=0, atol=1e-12)
    assert abs(float(np.sum(out * Wout) + np.sum(fin * Wfin)) - loss.item()) < 1e-10
    dX, grads, dh0 = packed.backward(cfg, P, cache, Wout, lay.sort(Wfin))
    named = dict(mod.named_parameters())
    for name, g in grads.items():
        np.testing.assert_allclose(g, named[name[len("rnn."):]].grad.numpy(), rtol=0, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(lay.pad(dX), xt.grad.numpy(), rtol=0, atol=1e-10)
    dh0 = lay.unsort(dh0)
    np.testing.assert_allclose(dh0[:, :, 0].reshape(L * D, B, H), ht.grad.numpy(), rtol=0, atol=1e-10)
    if cfg.cell == "lstm":
        np.testing.assert_allclose(dh0[:, :, 1].reshape(L * D, B, H), ct.grad.numpy(), rtol=0, atol=1e-10)
