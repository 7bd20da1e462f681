"""charlm seq2seq: the encoder-decoder's gradient, PyTorch's modules on the same file, beam search against
exhaustive search and greedy, the CLI round trip, exact resume, and bad input.

The data are made here: words of a made-up alphabet spelled out by a fixed rule (each letter one or
two "phonemes", one letter silent after another), so a small model learns it in a few dozen steps and
the suite needs no file outside the repository. CMUdict (../shared/corpora) adds a run on real lines
when it is present.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from support import CELLS, corpora_dir, invoke, ok, one_line_error

import charlm
from charlm import seq2seq as s2s
from charlm import seq2seq_search
from charlm.config import Seq2SeqConfig
from charlm.resume import load_state, save_state, state_path
from charlm.transducer import Transducer

RULE = {"a": ["AA"], "b": ["B"], "c": ["K", "S"], "d": ["D"], "e": ["IY"], "o": ["OW"]}


def spell(word):
    out = []
    for i, ch in enumerate(word):
        if ch == "e" and i and word[i - 1] == "e":
            continue                       # "ee" is one IY
        out += RULE[ch]
    return " ".join(out)


def pairs(n, seed):
    rng = np.random.default_rng(seed)
    letters = sorted(RULE)
    words = ["".join(rng.choice(letters, size=rng.integers(1, 7))) for _ in range(n)]
    return [(w, spell(w)) for w in words]


def write(path, rows):
    path.write_text("".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq2seq")
    return {"train": write(d / "train.tsv", pairs(600, 1)), "valid": write(d / "valid.tsv", pairs(60, 2)), "dir": d}


TRAIN = ["--hidden", "16", "--embed", "8", "--batch-size", "16", "--lr", "0.01", "--valid-every", "25",
         "--threads", "1", "-q", "--seed", "3"]


def train(files, out, *extra):
    return ok(invoke("seq2seq", "train", files["train"], "--valid", files["valid"], "-o", out, *TRAIN, *extra))


# ------------------------------------------------------------------------------------------- gradient

def _ragged(cfg, rng):
    src = [rng.integers(2, cfg.vocab_size, n) for n in (3, 1, 5, 2)]
    tgt = [rng.integers(2, cfg.target_vocab_size, n) for n in (0, 4, 2, 6)]     # an empty target: EOS alone
    return s2s.make_batch(cfg, src, tgt)


def _directional_error(cfg, P, batch, masks, rng, eps=1e-5):
    _, g = s2s.loss_and_grads(cfg, P, batch, masks)
    worst = 0.0
    for name in P:
        v = rng.normal(size=P[name].shape)
        f = [s2s.loss_and_grads(cfg, {**P, name: P[name] + s * eps * v}, batch, masks)[0] for s in (1, -1)]
        num, ana = (f[0] - f[1]) / (2 * eps), float((g[name] * v).sum())
        worst = max(worst, abs(num - ana) / max(1e-6, abs(num) + abs(ana)))
    return worst


def _model(attention, variant="lstm", bi=True, layers=2, seed=1, scale=0.3):
    rng = np.random.default_rng(seed)
    cfg = Seq2SeqConfig(layers=layers, hidden=4, embed=3, vocab_size=7, bidirectional=bi, target_vocab_size=6,
                        decoder_layers=layers, decoder_hidden=8 if bi else 4, target_embed=5, attention=attention,
                        **CELLS[variant])
    P = {k: v + rng.normal(0, scale, v.shape) for k, v in s2s.init_params(cfg, rng, np.float64).items()}
    return cfg, P, rng


@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive"])
@pytest.mark.parametrize("variant", ["lstm", "gru-full", "rnn-tanh"])
def test_encoder_decoder_gradient(attention, variant):
    """Central differences of the whole model (both embeddings, a 2-layer bidirectional encoder, the bridge,
    a 2-layer decoder, attention, dropout everywhere, the output layer) in float64 on ragged pairs."""
    cfg, P, rng = _model(attention, variant)
    batch = _ragged(cfg, rng)
    masks = s2s.dropout_masks(cfg, rng, batch, 0.3, 0.2, np.float64)
    assert _directional_error(cfg, P, batch, masks, rng) < 1e-5


def test_gradient_check_catches_a_wrong_attention_gradient(monkeypatch):
    cfg, P, rng = _model("general", layers=1)
    batch = _ragged(cfg, rng)
    real = s2s.attend_backward
    monkeypatch.setattr(s2s, "attend_backward", lambda *a: tuple(x * 1.01 for x in real(*a)))
    assert _directional_error(cfg, P, batch, None, rng) > 1e-4


# -------------------------------------------------------------------------------------------- PyTorch

class _TorchSeq2Seq:
    """The same architecture from torch.nn modules, loaded from the file's tensors by name."""

    def __init__(self, torch, cfg, params):
        nn = torch.nn
        P = {k: torch.from_numpy(v) for k, v in params.items()}
        Hw, Hd = cfg.hidden * cfg.directions, cfg.decoder_hidden
        self.torch, self.cfg = torch, cfg
        self.src_emb = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.tgt_emb = nn.Embedding(cfg.target_vocab_size, cfg.target_embed)
        self.encoder = nn.LSTM(cfg.embed, cfg.hidden, num_layers=cfg.layers, bidirectional=cfg.bidirectional)
        self.decoder = nn.LSTM(cfg.target_embed, Hd, num_layers=cfg.decoder_layers)
        self.bridge = nn.Linear(Hw, cfg.decoder_layers * 2 * Hd)
        self.output = nn.Linear(Hd, cfg.target_vocab_size)
        self.src_emb.load_state_dict({"weight": P["source_embedding.weight"]})
        self.tgt_emb.load_state_dict({"weight": P["target_embedding.weight"]})
        self.encoder.load_state_dict({k[8:]: v for k, v in P.items() if k.startswith("encoder.")})
        self.decoder.load_state_dict({k[8:]: v for k, v in P.items() if k.startswith("decoder.")})
        for name in ("bridge", "output"):
            getattr(self, name).load_state_dict({"weight": P[f"{name}.weight"], "bias": P[f"{name}.bias"]})
        if cfg.attention != "none":
            self.combine = nn.Linear(Hw + Hd, Hd, bias=False)
            self.combine.load_state_dict({"weight": P["combine.weight"]})
        if cfg.attention == "general":
            self.att = nn.Linear(Hw, Hd, bias=False)
            self.att.load_state_dict({"weight": P["attention.weight"]})
        if cfg.attention == "additive":
            self.att = nn.ModuleDict({"query": nn.Linear(Hd, Hd, bias=False), "key": nn.Linear(Hw, Hd, bias=False),
                                      "v": nn.Linear(Hd, 1, bias=False)})
            self.att.load_state_dict({k[10:]: v for k, v in P.items() if k.startswith("attention.")})

    def logprobs(self, src, tgt, eos):
        """log p(y_t | y_<t, x) of (y_1..y_m, EOS) for one pair at a time (no batching to get wrong)."""
        torch, cfg = self.torch, self.cfg
        out = []
        for s, t in zip(src, tgt):
            enc, (h, _) = self.encoder(self.src_emb(torch.tensor(s, dtype=torch.long))[:, None])   # (Ts, 1, Hw)
            enc = enc[:, 0]
            u = torch.cat([h[-cfg.directions + d] for d in range(cfg.directions)], dim=1)          # (1, Hw)
            s0 = torch.tanh(self.bridge(u)).reshape(cfg.decoder_layers, 2, 1, cfg.decoder_hidden)
            y_in = torch.tensor([eos] + list(t), dtype=torch.long)
            d, _ = self.decoder(self.tgt_emb(y_in)[:, None], (s0[:, 0].contiguous(), s0[:, 1].contiguous()))
            d = d[:, 0]                                                                             # (Tt, Hd)
            if cfg.attention != "none":
                if cfg.attention == "dot":
                    score = d @ enc.T
                elif cfg.attention == "general":
                    score = d @ self.att(enc).T
                else:
                    score = self.att["v"](torch.tanh(self.att["query"](d)[:, None] + self.att["key"](enc)[None]))[..., 0]
                c = torch.softmax(score, dim=1) @ enc
                d = torch.tanh(self.combine(torch.cat([c, d], dim=1)))
            lp = torch.log_softmax(self.output(d), dim=1)
            out.append(lp[torch.arange(len(t) + 1), torch.tensor(list(t) + [eos])].detach().numpy())
        return out


@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive"])
def test_teacher_forced_logprobs_match_pytorch_modules(files, tmp_path, attention):
    """The file's tensors load into nn.Embedding x2, nn.LSTM (bidirectional encoder, decoder) and nn.Linear
    as they are, and PyTorch gives the same per-token log-probabilities for ragged pairs."""
    torch = pytest.importorskip("torch")
    out = tmp_path / "m.safetensors"
    hidden = ["--decoder-hidden", "32"] if attention == "dot" else ["--decoder-hidden", "24"]
    train(files, out, "--attention", attention, "--layers", "2", "--decoder-layers", "2", *hidden, "--max-steps", "15")
    model = Transducer.load(out)
    cfg = model.config
    words = ["cab", "e", "deebo", "oaaco"]
    src = [model.encode(w) for w in words]
    tgt = [np.array([model.target.index[p] for p in spell(w).split()], np.int32) for w in words]
    batch = s2s.make_batch(cfg, src, tgt)
    ours = batch.tgt.unpack(s2s.token_logprobs(cfg, model.params, batch))
    theirs = _TorchSeq2Seq(torch, cfg, model.params).logprobs(src, tgt, cfg.target_eos_id)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-4)


# ----------------------------------------------------------------------------------------------- beam

def _exhaustive(cfg, P, src, max_length, alpha):
    """The best output of every output of <= max_length regular tokens, by log p(y, EOS) / (|y|+1)^alpha."""
    regular = [v for v in range(cfg.target_vocab_size) if v not in (cfg.target_unk_id, cfg.target_eos_id)]
    best = None
    for n in range(max_length + 1):
        for y in itertools.product(regular, repeat=n):
            lp = s2s.token_logprobs(cfg, P, s2s.make_batch(cfg, [src], [np.array(y, np.int32)])).sum()
            key = lp / (n + 1) ** alpha
            if best is None or key > best[0]:
                best = (key, list(y), lp)
    return best


@pytest.mark.parametrize("attention", ["none", "general"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_finds_the_exhaustive_best_and_never_ranks_below_greedy(attention, alpha):
    rng = np.random.default_rng(5)
    cfg = Seq2SeqConfig(layers=1, hidden=4, embed=3, vocab_size=6, target_vocab_size=4, decoder_hidden=8,
                        target_embed=3, attention=attention)           # 2 regular target tokens
    P = {k: v + rng.normal(0, 0.8, v.shape) for k, v in s2s.init_params(cfg, rng, np.float64).items()}
    srcs = [rng.integers(2, 6, n) for n in (3, 1, 4, 2, 5, 2)]
    L = 3
    wide = seq2seq_search.beam(cfg, P, srcs, [L] * len(srcs), width=2 ** (L + 1), num_outputs=1, alpha=alpha)
    narrow = seq2seq_search.beam(cfg, P, srcs, [L] * len(srcs), width=2, num_outputs=2, alpha=alpha)
    greedy = seq2seq_search.greedy(cfg, P, srcs, [L] * len(srcs), alpha)
    for src, w, n, g in zip(srcs, wide, narrow, greedy):
        key, y, lp = _exhaustive(cfg, P, src, L, alpha)
        assert w[0].tokens == y and w[0].score == pytest.approx(lp) and w[0].normalized == pytest.approx(key)
        assert n[0].normalized >= g.normalized - 1e-12 and n[0].normalized >= n[1].normalized
        # greedy's score is its output's teacher-forced log-probability
        ref = s2s.token_logprobs(cfg, P, s2s.make_batch(cfg, [src], [np.array(g.tokens, np.int32)])).sum()
        assert g.score == pytest.approx(ref)


# ----------------------------------------------------------------------------------------- the CLI

def test_train_predict_evaluate_round_trip(files, tmp_path):
    out = tmp_path / "m.safetensors"
    summary = json.loads(train(files, out, "--max-steps", "300", "--json").stdout)
    assert summary["steps"] == 300 and summary["valid"]["valid_wer"] < 0.3
    model = Transducer.load(out)
    assert model.meta["task"] == "seq2seq" and model.config.attention == "general"
    assert set(model.target.tokens) == {"<unk>", "<eos>", "AA", "B", "K", "S", "D", "IY", "OW"}
    r = ok(invoke("seq2seq", "predict", "-m", out, "cab", "deed", "-q"))
    assert r.stdout.splitlines() == ["cab\tK S AA B", "deed\tD IY D"]
    r = ok(invoke("seq2seq", "predict", "-m", out, "--beam", "4", "-k", "3", "--json", "-", input="cab\nod\n"))
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["input"] for row in rows] == ["cab", "od"] and all(len(row["outputs"]) == 3 for row in rows)
    scores = [o["normalized"] for o in rows[0]["outputs"]]
    assert scores == sorted(scores, reverse=True) and rows[0]["output"] == "K S AA B"
    assert all(len(o["output"].split()) >= 3 for o in rows[0]["outputs"])    # not cut short by early junk
    report = json.loads(ok(invoke("seq2seq", "evaluate", "-m", out, files["valid"], "--json")).stdout)
    assert report["wer"] == pytest.approx(summary["valid"]["valid_wer"])
    assert report["ter"] == pytest.approx(summary["valid"]["valid_ter"]) and report["ter"] <= report["wer"]
    assert report["inputs"] == len({w for w, _ in pairs(60, 2)}) and sum(b["inputs"] for b in report["by_length"]) \
        == report["inputs"]
    text = ok(invoke("seq2seq", "evaluate", "-m", out, files["valid"], "--show-errors", "2", "--beam", "3")).stdout
    assert text.startswith("WER ") and "WER by input length:" in text


def test_several_references_group_and_the_closest_counts(tmp_path):
    from charlm import pairs as pairs_module
    p = write(tmp_path / "t.tsv", [("read", "R IY D"), ("read", "R EH D"), ("lead", "L IY D")])
    sources, refs = pairs_module.group(pairs_module.read(p), "word")
    assert sources == ["read", "lead"] and len(refs[0]) == 2
    r = pairs_module.score([("R", "EH", "D"), ("L", "EH")], refs)
    assert r["wer"] == 0.5 and r["ter"] == pytest.approx(2 / 6)         # read right; lead: 1 sub + 1 del of 3


def test_run_resumes_bit_for_bit(files, tmp_path):
    ref, out = tmp_path / "ref.safetensors", tmp_path / "m.safetensors"
    train(files, ref, "--max-steps", "40", "--dropout", "0.2")
    train(files, out, "--max-steps", "17", "--dropout", "0.2")
    ok(invoke("seq2seq", "train", files["train"], "--valid", files["valid"], "-o", out, "--resume", "--max-steps",
              "40", "-q"))
    a, b = load_state(state_path(out)), load_state(state_path(ref))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in b.params) and a.rng_state == b.rng_state
    # negative control: the generator that draws the dropout masks, one draw off, changes the result
    other = tmp_path / "n.safetensors"
    train(files, other, "--max-steps", "17", "--dropout", "0.2")
    st = load_state(state_path(other))
    rng = np.random.default_rng()
    rng.bit_generator.state = st.rng_state
    rng.random()
    st.rng_state = rng.bit_generator.state
    save_state(state_path(other), st)
    ok(invoke("seq2seq", "train", files["train"], "--valid", files["valid"], "-o", other, "--resume",
              "--max-steps", "40", "-q"))
    c = load_state(state_path(other))
    assert not all(np.array_equal(c.params[k], b.params[k]) for k in b.params)
    r = invoke("seq2seq", "train", files["train"], "--valid", files["valid"], "-o", out, "--resume",
               "--attention", "dot")
    one_line_error(r, "--attention dot conflicts", "attention general")


@pytest.mark.skipif(not (corpora_dir() / "cmudict" / "train.tsv").is_file(), reason="CMUdict is absent")
def test_on_real_cmudict_lines(tmp_path):
    rows = (corpora_dir() / "cmudict" / "train.tsv").read_text(encoding="utf-8").splitlines()
    tr, va = tmp_path / "tr.tsv", tmp_path / "va.tsv"
    tr.write_text("\n".join(rows[20000:22000]) + "\n", encoding="utf-8")
    va.write_text("\n".join(rows[22000:22200]) + "\n", encoding="utf-8")
    out = tmp_path / "g2p.safetensors"
    ok(invoke("seq2seq", "train", tr, "--valid", va, "-o", out, "--hidden", "32", "--max-steps", "120",
              "--batch-size", "32", "--threads", "1", "-q"))
    report = json.loads(ok(invoke("seq2seq", "evaluate", "-m", out, va, "--json")).stdout)
    assert report["ter"] < 0.9 and report["pairs"] == 200            # learning has begun
    r = ok(invoke("seq2seq", "predict", "-m", out, "thought", "-q"))
    word, phones = r.stdout.rstrip("\n").split("\t")
    assert word == "thought" and phones and all(p.isupper() for p in phones.split())


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("content, fragments", [
    ("cab\tK S AA B\ncab K S AA B\n", ["train.tsv:2: no tab"]),
    ("cab\tK S AA B\n\tB\n", ["train.tsv:2: empty source"]),
    ("cab\tK S AA B\nbad\t  \n", ["train.tsv:2: empty target", "'bad'"]),
    ("", ["train.tsv: no SOURCE<TAB>TARGET lines"]),
])
def test_bad_training_files(files, tmp_path, content, fragments):
    bad = tmp_path / "train.tsv"
    bad.write_text(content, encoding="utf-8")
    r = invoke("seq2seq", "train", bad, "--valid", files["valid"], "-o", tmp_path / "m.safetensors", "-q")
    one_line_error(r, *fragments)


def test_unseen_symbols_and_the_length_limit(files, tmp_path):
    out = tmp_path / "m.safetensors"
    train(files, out, "--max-steps", "5")
    r = ok(invoke("seq2seq", "predict", "-m", out, "caxz", "cab", "--json"))
    assert [json.loads(line)["unknown"] for line in r.stdout.splitlines()] == [2, 0]
    assert "2 unknown source symbols (<unk>) in 1 inputs" in r.stderr
    test = write(tmp_path / "test.tsv", [("cxb", "K S B"), ("cab", "K S AA B")])
    report = json.loads(ok(invoke("seq2seq", "evaluate", "-m", out, test, "--json")).stdout)
    assert report["unknown_tokens"] == 1 and report["inputs_with_unknown"] == 1
    r = invoke("seq2seq", "predict", "-m", out, "cab", "abcdeabcde", "--max-length", "6")
    one_line_error(r, "input 2 has 10 tokens, more than --max-length 6")
    r = ok(invoke("seq2seq", "predict", "-m", out, "cab", "--max-length", "3", "--json", "-q"))
    assert len(json.loads(r.stdout)["output"].split()) <= 3
    one_line_error(invoke("seq2seq", "predict", "-m", out, "cab", "-k", "3"), "--num-outputs 3 needs --beam")
    one_line_error(invoke("seq2seq", "predict", "-m", out, ""), "input 1 is empty")
    one_line_error(invoke("sample", "-m", out), "holds a sequence-to-sequence model", "charlm seq2seq")
    assert isinstance(charlm.load(out), Transducer)
