"""Tests of charlm diagnose (charlm.diagnose, charlm.longrange, charlm.diagnoseplot, the CLI group).

(1) The analytic case: a linear RNN (relu with positive pre-activations is the identity there; zero input
    weights, W_hh = λI, bias 1) gives a ratio of exactly λ^d and a fitted decay rate of λ, for λ < 1
    and λ > 1.
(2) ∂L_t/∂h^k_{t-d} from `state_gradients` against central differences of tests/reference.py's float64
    forward with the state of layer k at step t-d nudged, for every cell, 1 and 2 layers (the upward
    path through the layer above included); a negative control shows the check fails on a wrong answer.
(3) The long-range task generators, checked by hand on small cases; seeds reproduce.
(4) Figures: the files exist and the axes carry their labels. Bad options are refused with one line.
Everything is tiny: the file runs in well under a minute once the kernels are compiled.
"""
import json

import numpy as np
import pytest

import reference as ref

from charlm import diagnose
from charlm.cellnames import CELL_KINDS, cell_name, parse_cells
from charlm.config import ModelConfig
from support import CELLS, invoke, ok, one_line_error, shakespeare

V, E, H, T, B = 7, 4, 3, 6, 2
EPS = 1e-6
TOL = 1e-6          # relative to the largest |gradient| of the case


def _cfg(variant, layers, hidden=H):
    return ModelConfig(level="char", layers=layers, hidden=hidden, embed=E, vocab_size=V, **CELLS[variant])


def _random_params(cfg, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, 0.6, s) for k, s in cfg.param_shapes().items()}


def _linear_rnn(lam, hidden=4):
    cfg = ModelConfig(level="char", layers=1, hidden=hidden, embed=E, vocab_size=V, cell="rnn", activation="relu")
    P = _random_params(cfg)
    P["rnn.weight_ih_l0"][:] = 0.0
    P["rnn.weight_hh_l0"][:] = lam * np.eye(hidden)
    P["rnn.bias_ih_l0"][:] = 1.0                 # h_t = 1 + λ h_{t-1} > 0: relu is the identity
    P["rnn.bias_hh_l0"][:] = 0.0
    return cfg, P


# ------------------------------------------------------------------------------------ (1) analytic


@pytest.mark.parametrize("lam", [0.9, 0.5, 1.05])
def test_linear_rnn_gives_lambda_to_the_d(lam):
    cfg, P = _linear_rnn(lam)
    ids = np.random.default_rng(1).integers(2, V, 400).astype(np.int32)
    span = 40
    prof = diagnose.gradient_profile(cfg, P, ids, span=span, positions=20, warmup=10)
    d = np.arange(span + 1)
    np.testing.assert_allclose(prof.ratio[0], lam ** d, rtol=1e-10)
    np.testing.assert_allclose(prof.q25[0], lam ** d, rtol=1e-10)     # every position: exactly λ^d
    np.testing.assert_allclose(prof.q75[0], lam ** d, rtol=1e-10)
    assert prof.decay[0] == pytest.approx(lam, rel=1e-10)
    expect = int(np.argmax(lam ** d < diagnose.HORIZON)) if lam < 1 and lam ** span < diagnose.HORIZON else None
    assert prof.horizon[0] == expect
    if lam < 1:
        assert prof.horizon_fit[0] == pytest.approx(np.log(1e-3) / np.log(lam))
    else:
        assert prof.horizon_fit[0] is None


def test_horizon_and_fit_helpers():
    r = np.array([1.0, 0.5, 0.01, 0.0009, 0.1])
    assert diagnose.horizon(r) == 3
    assert diagnose.horizon(np.array([1.0, 0.9, 0.8])) is None
    assert diagnose.fit_decay(0.7 ** np.arange(10)) == pytest.approx(0.7)
    assert np.isnan(diagnose.fit_decay(np.array([1.0, 0.5])))


# ------------------------------------------------------------------------- (2) central differences


def _reference_loss(cfg, P, x, y, nudge=None):
    """Σ_b -log p(y_b) after x (T, B), from tests/reference.py; nudge = (k, s, b, j, eps) adds eps to
    h^k_s[b, j] right after layer k computes it (before the layer above and the next step read it)."""
    Tn, Bn = x.shape
    h = [np.zeros((Bn, cfg.hidden)) for _ in range(cfg.layers)]
    c = [np.zeros((Bn, cfg.hidden)) for _ in range(cfg.layers)]
    for t in range(Tn):
        inp = P["embedding.weight"][x[t]]
        for k in range(cfg.layers):
            h[k], c[k] = ref.cell_step(cfg, P, k, "", inp, h[k], c[k])
            if nudge is not None and nudge[:2] == (k, t):
                h[k] = h[k].copy()
                h[k][nudge[2], nudge[3]] += nudge[4]
            inp = h[k]
    z = ref.logits(cfg, P, inp[None])[0]
    return -ref.log_softmax(z)[np.arange(Bn), y].sum()


def _numeric(cfg, P, x, y):
    G = np.empty((cfg.layers, x.shape[0], x.shape[1], cfg.hidden))
    for k in range(cfg.layers):
        for d in range(x.shape[0]):
            s = x.shape[0] - 1 - d
            for b in range(x.shape[1]):
                for j in range(cfg.hidden):
                    up = _reference_loss(cfg, P, x, y, (k, s, b, j, EPS))
                    down = _reference_loss(cfg, P, x, y, (k, s, b, j, -EPS))
                    G[k, d, b, j] = (up - down) / (2 * EPS)
    return G


def _case(variant, layers, seed=0):
    cfg = _cfg(variant, layers)
    P = _random_params(cfg, seed)
    rng = np.random.default_rng(seed + 1)
    return cfg, P, rng.integers(0, V, (T, B)).astype(np.int32), rng.integers(0, V, B).astype(np.int32)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("variant", list(CELLS))
def test_state_gradients_match_central_differences(variant, layers):
    cfg, P, x, y = _case(variant, layers)
    G = diagnose.state_gradients(cfg, P, x, y)
    assert G.shape == (layers, T, B, H) and G.dtype == np.float64
    num = _numeric(cfg, P, x, y)
    err = np.abs(G - num).max() / np.abs(num).max()
    assert err < TOL, err


def test_state_gradients_span_and_state():
    """A shorter span gives the first rows of the full answer; a carried state is the one forward used."""
    cfg, P, x, y = _case("lstm", 2)
    full = diagnose.state_gradients(cfg, P, x, y)
    np.testing.assert_array_equal(diagnose.state_gradients(cfg, P, x, y, span=2), full[:, :3])
    state = np.random.default_rng(5).normal(0, 0.5, (2, 2, B, H))
    other = diagnose.state_gradients(cfg, P, x, y, state=state)
    assert not np.allclose(other, full)


def test_central_difference_check_can_fail():
    """Negative control: the gradient at the top layer alone (the upward path into the layer above
    left out, as a one-layer reading of a two-layer model would) is caught."""
    cfg, P, x, y = _case("rnn-tanh", 2)
    G = diagnose.state_gradients(cfg, P, x, y)
    num = _numeric(cfg, P, x, y)
    wrong = G.copy()
    wrong[0, 0] = 0.0            # layer 0 at d = 0 reaches the loss only upward, through layer 1
    assert np.abs(wrong - num).max() / np.abs(num).max() > 100 * TOL


def test_float32_profile_close_to_float64():
    cfg, P, x, y = _case("gru-full", 1)
    G64 = diagnose.state_gradients(cfg, P, x, y)
    G32 = diagnose.state_gradients(cfg, {k: v.astype(np.float32) for k, v in P.items()}, x, y)
    assert G32.dtype == np.float32
    np.testing.assert_allclose(G32, G64, rtol=1e-3, atol=1e-6)


def test_bidirectional_refused():
    cfg = ModelConfig(level="char", layers=1, hidden=H, embed=E, vocab_size=V, bidirectional=True)
    with pytest.raises(Exception, match="bidirectional"):
        diagnose.state_gradients(cfg, _random_params(cfg), np.zeros((3, 1), np.int32), np.zeros(1, np.int32))


def test_cell_names():
    assert set(CELL_KINDS) == set(CELLS)
    for name, kw in CELL_KINDS.items():
        assert cell_name(ModelConfig(**kw)) == name
    assert parse_cells("lstm, rnn-tanh") == ["lstm", "rnn-tanh"]
    for bad in ("", "lstm,lstm", "rnn"):
        with pytest.raises(ValueError):
            parse_cells(bad)


def test_end_positions():
    t, w = diagnose.end_positions(100, 10, 5, 20, seed=3)
    assert w == 20 and t.size == 5 and t.min() >= 30 and t.max() <= 98
    np.testing.assert_array_equal(t, diagnose.end_positions(100, 10, 5, 20, seed=3)[0])
    t, w = diagnose.end_positions(14, 10, 50, 20)
    assert w == 2 and list(t) == [12]                 # warm-up cut to what the text has
    with pytest.raises(Exception, match="needs at least 12"):
        diagnose.end_positions(11, 10, 5, 0)


# --------------------------------------------------------------------------------- (4) CLI, figures


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("diag") / "text.txt"
    p.write_text(shakespeare(6000), encoding="utf-8")
    return p


def test_gradients_cli_init_json_and_plot(text_file, tmp_path):
    png = tmp_path / "g.png"
    r = ok(invoke("diagnose", "gradients", "--init", "rnn-tanh", text_file, "--span", 12, "--positions", 6,
                  "--hidden", 8, "--layers", 2, "--json", "--plot", png))
    d = json.loads(r.stdout)
    assert d["cell"] == "rnn-tanh" and d["span"] == 12 and d["positions"] == 6
    assert len(d["ratio"]) == 2 and len(d["ratio"][0]) == 13 and d["ratio"][0][0] == 1.0
    assert [x["layer"] for x in d["layers"]] == [0, 1]
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradients_cli_model_text(text_file, tmp_path):
    from charlm import checkpoint
    from charlm.vocab import Vocab
    vocab = Vocab.from_counts({c: 1 for c in set(text_file.read_text()) if c != "\n"}, "char", False)
    cfg, P = diagnose.init_model("lstm", len(vocab), hidden=8)
    path = tmp_path / "m.safetensors"
    checkpoint.save_model(path, P, cfg, vocab.tokens)
    r = ok(invoke("diagnose", "gradients", "-m", path, text_file, "--span", 8, "--positions", 4))
    assert "lstm 1x8 (char)" in r.stdout and "decay rate" in r.stdout and "gradient horizon" in r.stdout


def test_gradients_figure_axes():
    from charlm.diagnoseplot import gradients_figure
    cfg, P = _linear_rnn(0.8)
    prof = diagnose.gradient_profile(cfg, P, np.arange(200, dtype=np.int32) % V, span=10, positions=4)
    fig = gradients_figure([prof, prof])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "d (steps back)" and "∂L_t/∂h" in ax.get_ylabel() and ax.get_yscale() == "log"
    assert len(ax.get_legend().get_texts()) == 3


@pytest.mark.parametrize("args, fragment", [
    (["--init", "lstm", "-m", "x.safetensors"], "one of them"),
    ([], "give -m MODEL or --init CELL"),
    (["--init", "lstm", "--plot", "out.txt"], ".png, .svg or .pdf"),
    (["--init", "lstm", "--plot", "/no/such/dir/g.png"], "does not exist"),
    (["--init", "lstm", "--span", "100000"], "needs at least"),
    (["-m", "x.safetensors", "--hidden", "8"], "--hidden is for --init"),
])
def test_gradients_bad_options_one_line(text_file, args, fragment):
    one_line_error(invoke("diagnose", "gradients", text_file, *args), fragment)


def test_gradients_missing_model_one_line(text_file, tmp_path):
    one_line_error(invoke("diagnose", "gradients", "-m", tmp_path / "none.safetensors", text_file))


def test_compare_cli_two_cells_two_clips(text_file, tmp_path):
    png, out_dir = tmp_path / "c.svg", tmp_path / "runs"
    r = ok(invoke("diagnose", "compare", text_file, "--cells", "rnn-tanh,gru-minimal", "--clip", "0,1",
                  "--time-budget", 0.5, "--hidden", 8, "--seq-len", 16, "--span", 10, "--positions", 4,
                  "--out-dir", out_dir, "--json", "--plot", png, "-q"))
    d = json.loads(r.stdout)
    runs = d["cells"]
    assert [x["label"] for x in runs] == ["rnn-tanh clip 0", "rnn-tanh clip 1", "gru-minimal clip 0",
                                          "gru-minimal clip 1"]
    for x in runs:
        assert x["valid_loss"] > 0 and x["decay"] > 0 and "horizon" in x and x["run"]["steps"] >= 1
        assert (out_dir / (x["label"].replace(" clip ", "-clip") + ".safetensors")).is_file()
        assert (out_dir / (x["label"].replace(" clip ", "-clip") + ".log.jsonl")).is_file()
    assert png.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("args, fragment", [
    (["--cells", "rnn-tanh,gruu"], "unknown cell 'gruu'"),
    (["--cells", "lstm,lstm"], "named twice"),
    (["--clip", "five"], "numbers separated by commas"),
    (["--clip", "-1"], ">= 0"),
    (["--plot", "c.jpg"], ".png, .svg or .pdf"),
    (["--span", "5000"], "--span 5000 needs"),
])
def test_compare_bad_options_one_line(text_file, args, fragment):
    one_line_error(invoke("diagnose", "compare", text_file, "--time-budget", 0.5, *args), fragment)


# ------------------------------------------------------------------------------ (3) long-range tasks


def test_adding_generator_by_hand():
    from charlm.longrange import adding
    X, y, marks = adding(np.random.default_rng(7), 5, 8)
    assert X.shape == (5, 8, 2) and y.shape == (5,)
    for b in range(5):
        on = np.nonzero(X[b, :, 1])[0]
        assert list(on) == list(marks[b]) and len(on) == 2
        assert on[0] < 4 <= on[1]                               # one mark in each half
        assert set(np.unique(X[b, :, 1])) <= {0.0, 1.0}
        assert y[b] == X[b, on[0], 0] + X[b, on[1], 0]
        assert ((0 <= X[b, :, 0]) & (X[b, :, 0] < 1)).all()
    X2, y2, _ = adding(np.random.default_rng(7), 5, 8)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(adding(np.random.default_rng(8), 5, 8)[0], X)
    X, y, m = adding(np.random.default_rng(0), 3, 2)            # T = 2: the marks are at 0 and 1
    assert (m == [0, 1]).all() and np.allclose(y, X[:, 0, 0] + X[:, 1, 0])


def test_temporal_order_generator_by_hand():
    from charlm.longrange import temporal_order
    X, y, marks = temporal_order(np.random.default_rng(3), 200, 20)
    assert X.shape == (200, 20, 6) and (X.sum(axis=2) == 1).all()
    sym = X.argmax(axis=2)
    for b in range(200):
        t1, t2 = marks[b]
        assert 2 <= t1 <= 4 and 10 <= t2 <= 12
        special = np.nonzero(sym[b] >= 4)[0]
        assert list(special) == [t1, t2]                          # X/Y only at the two marks
        assert y[b] == 2 * (sym[b, t1] == 5) + (sym[b, t2] == 5)  # XX 0, XY 1, YX 2, YY 3
    assert set(y) == {0, 1, 2, 3}
    np.testing.assert_array_equal(temporal_order(np.random.default_rng(3), 200, 20)[0], X)


def test_generators_refuse_short_lengths():
    from charlm.errors import CharlmError
    from charlm.longrange import adding, temporal_order
    with pytest.raises(CharlmError, match=">= 2"):
        adding(np.random.default_rng(0), 1, 1)
    with pytest.raises(CharlmError, match=">= 10"):
        temporal_order(np.random.default_rng(0), 1, 9)


@pytest.mark.parametrize("task", ["adding", "temporal-order"])
@pytest.mark.parametrize("variant", ["rnn-tanh", "lstm"])
def test_long_range_gradients_central_differences(task, variant):
    from charlm import longrange
    cfg = longrange.model_config(task, CELLS[variant], hidden=3)
    rng = np.random.default_rng(2)
    P = longrange.init_params(task, cfg, rng, np.float64)
    X, y, _ = longrange.GENERATORS[task](rng, 3, 10)
    _, grads = longrange.loss_and_grads(task, cfg, P, X, y)
    assert set(grads) == set(P)
    worst = 0.0
    for name, p in P.items():
        for i in range(min(p.size, 6)):
            old = p.flat[i]
            p.flat[i] = old + EPS
            up = longrange.loss_and_grads(task, cfg, P, X, y)[0]
            p.flat[i] = old - EPS
            down = longrange.loss_and_grads(task, cfg, P, X, y)[0]
            p.flat[i] = old
            num = (up - down) / (2 * EPS)
            worst = max(worst, abs(num - grads[name].flat[i]) / max(1e-3, abs(num)))
    assert worst < 1e-5, worst


def test_long_range_cli_json_table_and_plot(tmp_path):
    png = tmp_path / "lr.png"
    r = ok(invoke("diagnose", "long-range", "--task", "temporal-order", "--lengths", "10,20", "--cells",
                  "rnn-tanh,gru-minimal", "--time-budget", 0.3, "--hidden", 4, "--json", "--plot", png, "-q"))
    d = json.loads(r.stdout)
    assert d["task"] == "temporal-order" and d["lengths"] == [10, 20] and d["threshold"] == 0.1
    assert list(d["cells"]) == ["rnn-tanh", "gru-minimal"]
    for rows in d["cells"].values():
        assert [x["length"] for x in rows] == [10, 20]
        for x in rows:
            assert 0 <= x["error"] <= 1 and x["success"] == (x["error"] < 0.1) and x["steps"] >= 1
    assert png.stat().st_size > 1000
    r = ok(invoke("diagnose", "long-range", "--lengths", "5", "--cells", "lstm", "--time-budget", 0.2, "-q"))
    assert "adding problem" in r.stdout and "T=5" in r.stdout


def test_long_range_figure_axes():
    from charlm.diagnoseplot import long_range_figure
    result = {"task": "adding", "threshold": 0.04, "chance": 1 / 6, "error_name": "validation MSE",
              "lengths": [10, 50], "cells": {"lstm": [{"error": 0.01, "success": True},
                                                      {"error": 0.2, "success": False}]}}
    ax = long_range_figure(result).axes[0]
    assert ax.get_xlabel() == "sequence length T" and ax.get_ylabel() == "validation MSE"


@pytest.mark.parametrize("args, fragment", [
    (["--lengths", "10,x"], "integers separated by commas"),
    (["--lengths", "10,10"], "given twice"),
    (["--task", "temporal-order", "--lengths", "5"], "lengths >= 10"),
    (["--cells", "lstm,bogus"], "unknown cell"),
    (["--plot", "a.gif"], ".png, .svg or .pdf"),
    (["--out-dir", "/no/such/place/x"], "does not exist"),
])
def test_long_range_bad_options_one_line(args, fragment):
    one_line_error(invoke("diagnose", "long-range", "--time-budget", 0.1, *args), fragment)


# ------------------------------------------------------------------------------------------ clipping


def _write_log(path, norms):
    lines = []
    for i, n in enumerate(norms, 1):
        lines.append(json.dumps({"step": 50 * i, "train_loss": 2.0 + (1.0 if n > 4 else 0.0), "valid_loss": None,
                                 "grad_norm": n}))
        if i == 2:
            lines.append(json.dumps({"step": 100, "train_loss": 2.0, "valid_loss": 1.9, "grad_norm": None}))
    lines.append(json.dumps({"step": 999, "event": "diverged", "loss": "nan", "grad_norm": "nan"}))
    path.write_text("\n".join(lines) + "\n")


def test_clipping_report_by_hand(tmp_path):
    log = tmp_path / "run.log.jsonl"
    _write_log(log, [1.0, 2.0, 9.0, 3.0, 6.0, 1.5])
    r = diagnose.clipping_report(log, clip=5.0, spikes=2)
    assert r["logged"] == 6 and r["steps"] == [50, 100, 150, 200, 250, 300]
    assert r["share_clipped"] == pytest.approx(2 / 6)
    assert r["quantiles"]["max"] == 9.0 and r["quantiles"]["min"] == 1.0 and r["quantiles"]["median"] == 2.5
    assert [s["step"] for s in r["spikes"]] == [150, 250]
    assert 3.0 in [a["train_loss"] for a in r["spikes"][0]["loss_around"]]
    assert diagnose.clipping_report(log, clip=0.0)["share_clipped"] == 0.0


def test_clipping_cli(tmp_path):
    log = tmp_path / "run.log.jsonl"
    _write_log(log, [1.0, 2.0, 9.0, 3.0])
    png = tmp_path / "clip.png"
    r = ok(invoke("diagnose", "clipping", log, "--clip", 5, "--plot", png))
    assert "share of logged steps clipped: 25.0%" in r.stdout and png.stat().st_size > 1000
    d = json.loads(ok(invoke("diagnose", "clipping", log, "--clip", 5, "--json")).stdout)
    assert d["clip"] == 5 and d["norms"] == [1.0, 2.0, 9.0, 3.0]
    one_line_error(invoke("diagnose", "clipping", log), "give --clip")
    one_line_error(invoke("diagnose", "clipping", tmp_path / "none.safetensors"), "no training log")
    one_line_error(invoke("diagnose", "clipping", tmp_path / "none.log.jsonl", "--clip", 1), "no such log")
    one_line_error(invoke("diagnose", "clipping", log, "--clip", 1, "--plot", tmp_path / "x.bmp"), ".png")


def test_clipping_figure_axes(tmp_path):
    from charlm.diagnoseplot import clipping_figure
    log = tmp_path / "run.log.jsonl"
    _write_log(log, [1.0, 2.0, 9.0])
    fig = clipping_figure(diagnose.clipping_report(log, clip=5.0))
    assert fig.axes[0].get_xlabel() == "step" and "before clipping" in fig.axes[0].get_ylabel()
    assert "before clipping" in fig.axes[1].get_xlabel()


def test_compare_reports_a_diverged_run(text_file, monkeypatch):
    """A run that diverges is reported (no model to measure) and the others go on."""
    from charlm import train
    real = train.train

    def train_or_diverge(corpus, out, cfg, tc, **kw):
        if cfg.activation == "relu":
            raise train.TrainingDiverged("training diverged at step 3: planted")
        return real(corpus, out, cfg, tc, **kw)
    monkeypatch.setattr(train, "train", train_or_diverge)
    r = ok(invoke("diagnose", "compare", text_file, "--cells", "rnn-relu,rnn-tanh", "--time-budget", 0.3,
                  "--hidden", 4, "--span", 5, "--positions", 2, "--json", "-q"))
    d = json.loads(r.stdout)
    assert [c["cell"] for c in d["cells"]] == ["rnn-tanh"]
    assert d["diverged"] == [{"label": "rnn-relu", "cell": "rnn-relu", "clip": 5.0,
                              "diverged": "training diverged at step 3: planted"}]
    one_line_error(invoke("diagnose", "compare", text_file, "--cells", "rnn-relu", "--time-budget", 0.3,
                          "--hidden", 4, "--span", 5, "-q"), "every run diverged")
