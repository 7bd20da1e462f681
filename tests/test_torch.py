"""charlm's model files load into PyTorch's nn.LSTM / nn.RNN as they are (docs/model-format.md), and PyTorch's
stream perplexity of a held-out text equals `charlm perplexity --json`.

Models are trained through the CLI (tiny, ~20 steps so the weights are far from their initialisation). Such
models still depend little on context, so the same comparison also runs on files holding large random weights
(saved with charlm.checkpoint.save_model), where the gate order, the first input and the start state change
the figures by percents: there negative controls show the comparison can fail. The rnn.* tensors go into
torch with a strict load_state_dict after stripping the "rnn." prefix; the held-out text is read as one
stream from a zero state with EOS as the first input.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from charlm.checkpoint import load_model, save_model
from charlm.cli import main
from charlm.model import init_params
from charlm.vocab import Vocab
from support import news, play, runner

TINY = ["--hidden", "16", "--batch-size", "4", "--seq-len", "16", "--max-steps", "20", "--lr", "0.01", "-q"]
REL = 1e-4


def run(*args):
    r = runner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, (r.exit_code, r.output, r.exc_info)
    return r


CASES = {   # name: (training text, held-out text, options); texts from the fixtures in tests/data
    "char-lstm-2": ("char", ["--level", "char", "--cell", "lstm", "--layers", "2"]),
    "word-rnn-tanh": ("word", ["--level", "word", "--cell", "rnn", "--activation", "tanh", "--layers", "1"]),
    "char-lstm-1-tied": ("char", ["--level", "char", "--cell", "lstm", "--layers", "1", "--tie-weights"]),
}
TEXTS = {"char": lambda: (play(20000), play(2000, start=80000)),
         "word": lambda: (news(20000), news(3000, split="valid"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch")
    out = {}
    for name, (level, args) in CASES.items():
        train_text, heldout_text = TEXTS[level]()
        train_file = d / f"{name}.train.txt"
        train_file.write_text(train_text, encoding="utf-8", newline="")
        heldout = d / f"{name}.heldout.txt"
        heldout.write_text(heldout_text, encoding="utf-8", newline="")
        model = d / f"{name}.safetensors"
        run("train", train_file, "-o", model, *TINY, *args, "--keep", "last")
        out[name] = (model, heldout)
    return out


def torch_module(cfg, params, dtype):
    """nn.LSTM / nn.RNN of the model's sizes with the rnn.* tensors loaded strictly."""
    if cfg.cell == "lstm":
        assert not cfg.peephole
        mod = torch.nn.LSTM(cfg.embed, cfg.hidden, cfg.layers)
    else:
        assert cfg.cell == "rnn"
        mod = torch.nn.RNN(cfg.embed, cfg.hidden, cfg.layers, nonlinearity=cfg.activation)
    mod = mod.to(dtype)
    state = {name[len("rnn."):]: torch.from_numpy(np.asarray(p)).to(dtype)
             for name, p in params.items() if name.startswith("rnn.")}
    mod.load_state_dict(state, strict=True)      # every tensor present, none extra, shapes equal
    return mod


def torch_stream_nll(cfg, params, ids, dtype, first=None, h0=None):
    """Total NLL of the id stream read from a zero state (or h0) with EOS (or `first`) as the first input."""
    mod = torch_module(cfg, params, dtype)
    E = torch.from_numpy(params["embedding.weight"]).to(dtype)
    D = E if cfg.tied else torch.from_numpy(params["decoder.weight"]).to(dtype)
    b = torch.from_numpy(params["decoder.bias"]).to(dtype)
    ids = torch.from_numpy(np.asarray(ids, np.int64))
    x = torch.cat([torch.tensor([cfg.eos_id if first is None else first]), ids[:-1]])
    with torch.no_grad():
        out, _ = mod(E[x].unsqueeze(1)) if h0 is None else mod(E[x].unsqueeze(1), h0)   # (T, 1, H)
        z = out[:, 0] @ D.T + b                                                           # (T, V)
        nll = torch.nn.functional.cross_entropy(z, ids, reduction="sum")
    return float(nll)


def loaded(model):
    m = load_model(model)
    cfg = m.config
    return m, cfg, Vocab(m.vocab, cfg.level, cfg.lowercase, cfg.unk_id, cfg.eos_id)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_torch_perplexity_equals_charlm(trained, name, dtype):
    model, heldout = trained[name]
    m, cfg, vocab = loaded(model)
    ids = vocab.encode(heldout.read_text(encoding="utf-8"))
    p = json.loads(run("perplexity", "-m", model, heldout, "--json").stdout)
    assert p["tokens"] == len(ids)
    nll = torch_stream_nll(cfg, m.params, ids, dtype)
    assert p["nll"] == pytest.approx(nll, rel=REL)
    assert p["perplexity"] == pytest.approx(math.exp(nll / len(ids)), rel=REL)


def test_the_models_are_what_the_cases_say(trained):
    for name, (model, _) in trained.items():
        m, cfg, _ = loaded(model)
        assert int(m.meta["step"]) == 20
        assert cfg.cell == ("rnn" if "rnn" in name else "lstm")
        assert cfg.layers == (2 if name.endswith("-2") else 1)
        assert cfg.tied == name.endswith("tied") and ("decoder.weight" in m.params) != cfg.tied
        # ~20 steps moved the weights well away from any initialisation: not a near-uniform model
        p = init_params(cfg, np.random.default_rng(0))
        assert np.abs(m.params["decoder.bias"]).max() > 1e-2 != np.abs(p["decoder.bias"]).max()


@pytest.mark.parametrize("name", list(CASES))
def test_torch_score_equals_charlm(trained, name):
    model, _ = trained[name]
    m, cfg, vocab = loaded(model)
    text = "ROMEO: What say you?" if cfg.level == "char" else "the company said it would buy <unk> shares"
    r = run("score", "-m", model, text, "--json")
    s = json.loads(r.stdout)
    nll = torch_stream_nll(cfg, m.params, vocab.encode(text), torch.float64)
    assert s["logprob"] == pytest.approx(-nll, rel=REL)


# ------------------------------------------------------------------ large random weights: context matters

@pytest.fixture(scope="module")
def random_models(trained, tmp_path_factory):
    """Each trained case's configuration and vocabulary with N(0, 0.8^2) weights."""
    d = tmp_path_factory.mktemp("random")
    out = {}
    for i, (name, (model, heldout)) in enumerate(trained.items()):
        m, cfg, _ = loaded(model)
        rng = np.random.default_rng(100 + i)
        params = {k: (0.8 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in m.params.items()}
        path = d / f"{name}.safetensors"
        save_model(path, params, cfg, m.vocab, {})
        out[name] = (path, heldout)
    return out


def swapped_gates(cfg, params):
    """Layer 0's first two gate blocks exchanged (LSTM i <-> f): a wrong-gate-order control."""
    P = dict(params)
    H = cfg.hidden
    perm = list(range(H, 2 * H)) + list(range(0, H)) + list(range(2 * H, cfg.gates * H))
    for k in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"):
        P[k] = np.ascontiguousarray(P[k][perm])
    return P


@pytest.mark.parametrize("name", list(CASES))
def test_torch_equals_charlm_on_random_weights(random_models, name):
    model, heldout = random_models[name]
    m, cfg, vocab = loaded(model)
    ids = vocab.encode(heldout.read_text(encoding="utf-8"))
    p = json.loads(run("perplexity", "-m", model, heldout, "--json").stdout)
    assert p["tokens"] == len(ids)
    for dtype in (torch.float32, torch.float64):
        assert p["nll"] == pytest.approx(torch_stream_nll(cfg, m.params, ids, dtype), rel=REL)

    text = "ROMEO: What say you?" if cfg.level == "char" else "the company said it would buy <unk> shares"
    short = vocab.encode(text)
    (s,) = [json.loads(line) for line in run("score", "-m", model, text, "--json").stdout.splitlines()]
    good = torch_stream_nll(cfg, m.params, short, torch.float64)
    assert -s["logprob"] == pytest.approx(good, rel=REL)

    # Negative controls: each plausible mistake moves the figure far outside the tolerance.
    other = int(short[0]) if short[0] != cfg.eos_id else int(short[1])
    mistakes = {
        "first input not EOS": torch_stream_nll(cfg, m.params, short, torch.float64, first=other),
        "non-zero start state": torch_stream_nll(
            cfg, m.params, short, torch.float64,
            h0=(torch.full((cfg.layers, 1, cfg.hidden), 0.5, dtype=torch.float64),) * 2
            if cfg.cell == "lstm" else torch.full((cfg.layers, 1, cfg.hidden), 0.5, dtype=torch.float64)),
    }
    if cfg.cell == "lstm":
        mistakes["gate order"] = torch_stream_nll(cfg, swapped_gates(cfg, m.params), short, torch.float64)
    for what, nll in mistakes.items():
        assert abs(nll - good) > 10 * REL * good, (what, nll, good)
