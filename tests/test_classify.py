"""charlm classify: the classifier's gradient, PyTorch's modules on the same file, the CLI round trip,
exact resume, and bad input.

The data are made here: three made-up "languages" whose names are strings of their own syllables, so a
small model separates them in a few dozen steps and the suite needs no file outside the repository.
The names corpus (../shared/corpora) adds a run on real lines when it is present.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from charlm import buckets, classify
from charlm.checkpoint import load_model
from charlm.classifier import Classifier
from charlm.config import ClassifyConfig
from charlm.errors import CharlmError
from charlm.resume import load_state, save_state, state_path
from charlm.buckets import sampling_power
from support import CELLS, corpora_dir, invoke, ok, one_line_error

SYLLABLES = {"Kalo": ["ka", "lo", "mi", "ta", "no"], "Bergish": ["berg", "sch", "mann", "ot", "wald"],
             "Vexian": ["vex", "qu", "yz", "ix", "ul"]}


def names(n, seed):
    rng = np.random.default_rng(seed)
    labels = list(SYLLABLES)
    out = []
    for _ in range(n):
        label = labels[rng.integers(len(labels))]
        syl = SYLLABLES[label]
        out.append((label, "".join(syl[i] for i in rng.integers(len(syl), size=rng.integers(1, 4))).capitalize()))
    return out


def write(path, rows, newline="\n"):
    path.write_bytes(newline.join(f"{label}\t{text}" for label, text in rows).encode("utf-8") + newline.encode())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("classify")
    return {"train": write(d / "train.tsv", names(400, 1)), "valid": write(d / "valid.tsv", names(90, 2)), "dir": d}


TRAIN = ["--hidden", "16", "--embed", "8", "--batch-size", "16", "--lr", "0.01", "--valid-every", "10", "--threads",
         "1", "-q", "--seed", "3"]


def train(files, out, *extra):
    return ok(invoke("classify", "train", files["train"], "--valid", files["valid"], "-o", out, *TRAIN, *extra))


# ------------------------------------------------------------------------------------------- gradient

def _directional_error(cfg, P, layout, ids, y, w, masks, head_mask, rng, eps=1e-5, smoothing=0.0):
    _, g = classify.loss_and_grads(cfg, P, layout, ids, y, w, masks, head_mask, smoothing)
    worst = 0.0
    for name in P:
        v = rng.normal(size=P[name].shape)
        f = [classify.loss_and_grads(cfg, {**P, name: P[name] + s * eps * v}, layout, ids, y, w, masks,
                                     head_mask, smoothing)[0] for s in (1, -1)]
        num, ana = (f[0] - f[1]) / (2 * eps), float((g[name] * v).sum())
        worst = max(worst, abs(num - ana) / max(1e-6, abs(num) + abs(ana)))
    return worst


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("variant", ["lstm", "gru-full", "rnn-tanh", "lstm-peephole"])
def test_classifier_gradient(variant, bi, pooling):
    """Central differences of the whole classifier (embedding, 2 layers, pooling, dropout, head, weighted
    loss) in float64 on a ragged batch with a one-token text (the EOS alone)."""
    rng = np.random.default_rng(7)
    cfg = ClassifyConfig(layers=2, hidden=5, embed=4, vocab_size=9, labels=3, pooling=pooling, bidirectional=bi,
                         **CELLS[variant])
    P = {k: v + rng.normal(0, 0.3, v.shape) for k, v in classify.init_params(cfg, rng, np.float64).items()}
    layout, ids = classify.inputs([rng.integers(2, 9, n) for n in (3, 0, 6, 1, 4)], eos_id=1)
    masks, head_mask = classify.dropout_masks(cfg, rng, layout, 0.3, 0.2, np.float64)
    y = np.array([0, 2, 1, 1, 0])
    assert _directional_error(cfg, P, layout, ids, y, np.array([1.0, 2.0, 0.5]), masks, head_mask, rng) < 1e-6


def test_label_smoothing_gradient_and_loss():
    """The smoothed loss equals its definition by hand, and its gradient passes the same check."""
    rng = np.random.default_rng(5)
    cfg = ClassifyConfig(layers=1, hidden=5, embed=4, vocab_size=9, labels=3, pooling="max", bidirectional=True)
    P = {k: v + rng.normal(0, 0.3, v.shape) for k, v in classify.init_params(cfg, rng, np.float64).items()}
    seqs, y, w = [rng.integers(2, 9, n) for n in (3, 0, 6, 2)], np.array([0, 2, 1, 1]), np.array([1.0, 2.0, 0.5])
    layout, ids = classify.inputs(seqs, eos_id=1)
    assert _directional_error(cfg, P, layout, ids, y, w, None, None, rng, smoothing=0.2) < 1e-6
    logp = np.log(classify.probabilities(cfg, P, seqs, eos_id=1))
    q = np.full((4, 3), 0.2 / 3)
    q[np.arange(4), y] += 0.8
    expected = -(w[y] * (q * logp).sum(axis=1)).sum() / w[y].sum()
    loss, _ = classify.loss_and_grads(cfg, P, layout, ids, y, w, smoothing=0.2)
    assert loss == pytest.approx(expected, rel=1e-10)
    assert classify.loss_and_grads(cfg, P, layout, ids, y, w)[0] != pytest.approx(expected, rel=1e-3)


def test_gradient_check_catches_a_wrong_pooling_gradient(monkeypatch):
    rng = np.random.default_rng(7)
    cfg = ClassifyConfig(layers=1, hidden=5, embed=4, vocab_size=9, labels=3, pooling="mean")
    P = classify.init_params(cfg, rng, np.float64)
    layout, ids = classify.inputs([rng.integers(2, 9, n) for n in (3, 5, 1)], eos_id=1)
    real = classify.pool_backward
    monkeypatch.setattr(classify, "pool_backward", lambda *a: (real(*a)[0] * 1.01, None))
    assert _directional_error(cfg, P, layout, ids, np.array([0, 1, 2]), None, None, None, rng) > 1e-4


# -------------------------------------------------------------------------------------------- PyTorch

@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_probabilities_match_pytorch_modules(files, tmp_path, pooling):
    """The file's tensors load into nn.Embedding, nn.LSTM(bidirectional) and nn.Linear as they are, and
    PyTorch's packed LSTM gives the same probabilities for ragged texts."""
    torch = pytest.importorskip("torch")
    out = tmp_path / "c.safetensors"
    train(files, out, "--bidirectional", "--layers", "2", "--pooling", pooling, "--max-steps", "15")
    clf = Classifier.load(out)
    cfg, P = clf.config, {k: torch.from_numpy(v) for k, v in clf.params.items()}
    emb = torch.nn.Embedding(cfg.vocab_size, cfg.embed)
    rnn = torch.nn.LSTM(cfg.embed, cfg.hidden, num_layers=2, bidirectional=True)
    head = torch.nn.Linear(2 * cfg.hidden, cfg.labels)
    emb.load_state_dict({"weight": P["embedding.weight"]})
    rnn.load_state_dict({k[4:]: v for k, v in P.items() if k.startswith("rnn.")})
    head.load_state_dict({"weight": P["head.weight"], "bias": P["head.bias"]})
    texts = ["Kalomi", "Q", "Bergschmannwald", "Vexquyz", "Ta"]
    ids = [torch.tensor([cfg.eos_id] + [clf.vocab.index.get(c, 0) for c in t]) for t in texts]
    lengths = torch.tensor([len(i) for i in ids])
    padded = torch.nn.utils.rnn.pad_sequence(ids)                              # (T, B)
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(emb(padded), lengths, enforce_sorted=False)
        y, (h, _) = rnn(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, padding_value=float("-inf"))   # (T, B, 2H)
        if pooling == "last":
            v = torch.cat([h[-2], h[-1]], dim=1)
        elif pooling == "max":
            v = y.max(dim=0).values
        else:
            v = torch.where(torch.isinf(y), 0.0, y).sum(dim=0) / lengths[:, None]
        expected = torch.softmax(head(v), dim=1).numpy()
    np.testing.assert_allclose(clf.probabilities(texts), expected, atol=1e-4)


# ------------------------------------------------------------------------------------------------ CLI

def test_train_predict_evaluate_round_trip(files, tmp_path):
    out = tmp_path / "c.safetensors"
    r = train(files, out, "--bidirectional", "--max-steps", "120", "--json")
    summary = json.loads(r.stdout)
    assert summary["steps"] == 120 and summary["valid"]["valid_accuracy"] > 0.9
    meta = load_model(out, task="classify").meta
    assert meta["task"] == "classify" and json.loads(meta["labels"]) == sorted(SYLLABLES)
    r = ok(invoke("classify", "predict", "-m", out, "Kalomita", "Bergwald", "Vexul", "--top-k", "2", "-q"))
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    assert [line[0] for line in lines] == ["Kalo", "Bergish", "Vexian"]
    assert all(len(line) == 5 and line[4] for line in lines) and float(lines[0][1]) > float(lines[0][3])
    r = ok(invoke("classify", "predict", "-m", out, "--json", "-", input="Kalomi\nVexix\n"))
    assert [json.loads(line)["label"] for line in r.stdout.splitlines()] == ["Kalo", "Vexian"]
    r = ok(invoke("classify", "evaluate", "-m", out, files["valid"], "--json"))
    report = json.loads(r.stdout)
    assert report["accuracy"] == pytest.approx(summary["valid"]["valid_accuracy"])
    assert report["macro_f1"] == pytest.approx(summary["valid"]["valid_macro_f1"])
    assert sum(map(sum, report["confusion"])) == report["examples"] == 90
    text = ok(invoke("classify", "evaluate", "-m", out, files["valid"])).stdout
    assert text.startswith(f"accuracy {report['accuracy']:.4f}") and "confusion (rows: gold" in text


def test_classify_run_resumes_bit_for_bit(files, tmp_path):
    ref, out = tmp_path / "ref.safetensors", tmp_path / "m.safetensors"
    train(files, ref, "--max-steps", "40", "--dropout", "0.2")
    train(files, out, "--max-steps", "17", "--dropout", "0.2")
    ok(invoke("classify", "train", files["train"], "--valid", files["valid"], "-o", out, "--resume",
              "--max-steps", "40", "-q"))
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
    ok(invoke("classify", "train", files["train"], "--valid", files["valid"], "-o", other, "--resume",
              "--max-steps", "40", "-q"))
    c = load_state(state_path(other))
    assert not all(np.array_equal(c.params[k], b.params[k]) for k in b.params)


def test_class_sampling_balances_labels_and_is_reproducible():
    """balanced: every label about the same share of an epoch's draws; sqrt: shares ∝ sqrt(count); none
    of them depends on anything but (seed, epoch)."""
    y = np.repeat([0, 1, 2], [8000, 1500, 500])
    L = np.random.default_rng(0).integers(1, 12, y.size)
    shares = {}
    for name, q in (("balanced", 0.0), ("sqrt", 0.5), ("none", 1.0)):
        b = buckets.sampled_batches(L, y, q, 32, seed=4, epoch=2)
        drawn = np.concatenate(b)
        assert drawn.size == y.size and all(len(x) <= 32 for x in b)
        assert all(np.ptp(L[x]) <= 1 for x in b)                            # still bucketed by length
        shares[name] = np.bincount(y[drawn], minlength=3) / y.size
        again = buckets.sampled_batches(L, y, q, 32, seed=4, epoch=2)
        assert all(np.array_equal(u, v) for u, v in zip(b, again))
    np.testing.assert_allclose(shares["balanced"], [1 / 3] * 3, atol=0.02)
    r = np.sqrt([8000, 1500, 500])
    np.testing.assert_allclose(shares["sqrt"], r / r.sum(), atol=0.02)
    np.testing.assert_allclose(shares["none"], [0.8, 0.15, 0.05], atol=0.02)
    other = np.concatenate(buckets.sampled_batches(L, y, 0.0, 32, seed=4, epoch=3))
    assert not np.array_equal(np.sort(other), np.sort(np.concatenate(buckets.sampled_batches(L, y, 0.0, 32, 4, 2))))


def test_class_sampling_and_smoothing_resume_bit_for_bit(files, tmp_path):
    """A run with --class-sampling balanced and --label-smoothing resumed mid-epoch (the epoch has 25
    batches) ends as the uninterrupted one; a different sampling does not."""
    opts = ("--class-sampling", "balanced", "--label-smoothing", "0.1", "--dropout", "0.2")
    ref, out, other = tmp_path / "ref.safetensors", tmp_path / "m.safetensors", tmp_path / "o.safetensors"
    train(files, ref, "--max-steps", "40", *opts)
    train(files, out, "--max-steps", "13", *opts)
    ok(invoke("classify", "train", files["train"], "--valid", files["valid"], "-o", out, "--resume",
              "--max-steps", "40", "-q"))
    a, b = load_state(state_path(out)), load_state(state_path(ref))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in b.params)
    train(files, other, "--max-steps", "40", "--class-sampling", "sqrt", *opts[2:])
    c = load_state(state_path(other))
    assert not all(np.array_equal(c.params[k], b.params[k]) for k in b.params)
    meta = load_model(ref, task="classify").meta
    assert sum(json.loads(meta["label_counts"])) == 400


def test_class_sampling_takes_the_power_itself(files, tmp_path):
    """--class-sampling Q draws as the named powers do (0.5 is sqrt, 1 is none, bit for bit), stores Q;
    a Q outside [0, 1] or a word that is not a name is a one-line error before any work."""
    assert sampling_power("0.75") == 0.75 and sampling_power("balanced") == 0.0 and sampling_power("1") == 1.0
    for bad in ("1.5", "-0.1", "nan", "half", ""):
        with pytest.raises(CharlmError, match="class_sampling"):
            sampling_power(bad)
    named, numeric = tmp_path / "s.safetensors", tmp_path / "h.safetensors"
    train(files, named, "--max-steps", "6", "--class-sampling", "sqrt")
    train(files, numeric, "--max-steps", "6", "--class-sampling", ".50")
    a, b = load_state(state_path(named)), load_state(state_path(numeric))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert b.train_config["class_sampling"] == "0.5"
    plain, one = tmp_path / "n.safetensors", tmp_path / "1.safetensors"
    train(files, plain, "--max-steps", "6")
    train(files, one, "--max-steps", "6", "--class-sampling", "1.0")          # Q = 1: each text once, as none
    c, d = load_state(state_path(plain)), load_state(state_path(one))
    assert d.train_config["class_sampling"] == "none"
    assert all(np.array_equal(c.params[k], d.params[k]) for k in c.params)
    for bad in ("2", "nan", "half"):
        one_line_error(invoke("classify", "train", files["train"], "--valid", files["valid"], "-o",
                              tmp_path / "x.safetensors", "--class-sampling", bad), "--class-sampling", bad)
    assert not (tmp_path / "x.safetensors").exists()


def test_ensemble_is_the_mean_of_its_members(files, tmp_path):
    """-m A -m B: p(y|x) = (p_A + p_B) / 2, in predict, evaluate and the API alike; the prior correction
    applies to the mean with the members' mean prior; members of other labels are a one-line error."""
    from charlm.classifier import Ensemble, load_classifier
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train(files, a, "--max-steps", "30")
    train(files, b, "--max-steps", "30", "--cell", "gru", "--pooling", "max", "--seed", "5")
    texts = ["Kalomi", "Bergwald", "Vexqu", "Tamino"]
    ens, A, B = load_classifier([a, b]), load_classifier(a), load_classifier(b)
    assert isinstance(ens, Ensemble) and ens.num_params == A.num_params + B.num_params
    mean = (A.probabilities(texts) + B.probabilities(texts)) / 2
    np.testing.assert_allclose(ens.probabilities(texts), mean, rtol=1e-12)
    assert not np.allclose(mean, A.probabilities(texts), atol=1e-3)            # the members differ
    lines = ok(invoke("classify", "predict", "-m", a, "-m", b, *texts, "--json", "-q")).stdout.splitlines()
    for line, p in zip(lines, mean):
        assert json.loads(line)["probability"] == pytest.approx(p.max(), rel=1e-9)
    rep = json.loads(ok(invoke("classify", "evaluate", "-m", a, "-m", b, files["valid"], "--json")).stdout)
    api = ens.evaluate(files["valid"])
    assert rep["confusion"] == api["confusion"] and rep["loss"] == pytest.approx(api["loss"])
    hand = mean / np.exp(ens.log_prior)
    np.testing.assert_allclose(load_classifier([a, b], 1.0).probabilities(texts),
                               hand / hand.sum(axis=1, keepdims=True), rtol=1e-9)
    other = tmp_path / "o.tsv"
    write(other, [(label.upper(), text) for label, text in names(200, 3)])
    c = tmp_path / "c.safetensors"
    ok(invoke("classify", "train", other, "--valid", other, "-o", c, *TRAIN, "--max-steps", "2"))
    one_line_error(invoke("classify", "predict", "-m", a, "-m", c, "Kalo"), str(c), "same labels")


def test_prior_correction(files, tmp_path):
    """p_tau(y|x) ∝ p(y|x) / p(y)^tau by hand; through the CLI it moves predictions towards the rarer
    label; a file without label counts refuses it."""
    prob = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    prior = np.log([0.7, 0.2, 0.1])
    hand = prob / np.exp(prior) ** 0.5
    np.testing.assert_allclose(classify.correct_prior(prob, prior, 0.5), hand / hand.sum(axis=1, keepdims=True))
    assert classify.correct_prior(prob, prior, 0.0) is prob
    rows = names(600, 8)
    vex = [r for r in rows if r[0] == "Vexian"]
    skewed = write(tmp_path / "skewed.tsv", [r for r in rows if r[0] != "Vexian"] + vex[:15])
    out = tmp_path / "c.safetensors"
    ok(invoke("classify", "train", skewed, "--valid", files["valid"], "-o", out, *TRAIN, "--max-steps", "30"))
    counts = json.loads(load_model(out, task="classify").meta["label_counts"])
    rare = sorted(SYLLABLES)[int(np.argmin(counts))]
    shares = []
    for tau in ("0", "2"):
        r = ok(invoke("classify", "predict", "-m", out, "--file", files["valid"], "-q", "--prior-correction", tau))
        shares.append(sum(line.split("\t")[0] == rare for line in r.stdout.splitlines()))
    assert shares[1] > shares[0]
    from charlm.checkpoint import save_model
    m = load_model(out, task="classify")
    old = tmp_path / "old.safetensors"
    save_model(old, m.params, m.config, m.vocab, {k: v for k, v in m.meta.items()
                                                     if k in ("task", "labels")})
    ok(invoke("classify", "predict", "-m", old, "Kalo", "-q"))
    one_line_error(invoke("classify", "predict", "-m", old, "Kalo", "--prior-correction", "1"),
                   "no training label counts")


def test_resume_refuses_a_changed_architecture(files, tmp_path):
    out = tmp_path / "m.safetensors"
    train(files, out, "--max-steps", "5")
    r = invoke("classify", "train", files["train"], "--valid", files["valid"], "-o", out, "--resume",
               "--pooling", "max")
    one_line_error(r, "--pooling max conflicts", "pooling last")


def test_init_from_a_language_model(files, tmp_path):
    """--init-from copies the LM's embedding and layers; --freeze-encoder keeps them."""
    text = tmp_path / "names.txt"
    text.write_text("\n".join(t for _, t in names(400, 1)) + "\n", encoding="utf-8")
    lm = tmp_path / "lm.safetensors"
    ok(invoke("train", text, "-o", lm, "--hidden", "16", "--embed", "16", "--layers", "1", "--batch-size", "8",
              "--seq-len", "16", "--max-steps", "20", "--threads", "1", "-q"))
    out = tmp_path / "c.safetensors"
    ok(invoke("classify", "train", files["train"], "--valid", files["valid"], "-o", out, "--init-from", lm,
              "--freeze-encoder", "--hidden", "16", "--embed", "16", "--layers", "1", "--max-steps", "10", "-q",
              "--threads", "1"))
    lm_params, clf = load_model(lm).params, load_model(out, task="classify")
    assert clf.vocab == load_model(lm).vocab
    for name in ("embedding.weight", "rnn.weight_hh_l0", "rnn.bias_ih_l0"):
        assert np.array_equal(clf.params[name], lm_params[name])
    r = invoke("classify", "train", files["train"], "--valid", files["valid"], "-o", out, "--init-from", lm,
               "--hidden", "32")
    one_line_error(r, "--init-from", "hidden 32 (the model has 16)")


def test_init_from_a_language_model_that_splits_words_otherwise_is_refused(files, tmp_path):
    """A `--tokenize words` language model read its text split at punctuation too; a classifier started from
    it would split at whitespace and look up other tokens than the model learned: refused in one line."""
    text = tmp_path / "names.txt"
    text.write_text("\n".join(t for _, t in names(400, 1)) + "\n", encoding="utf-8")
    lm = tmp_path / "lm.safetensors"
    ok(invoke("train", text, "-o", lm, "--level", "word", "--tokenize", "words", "--hidden", "16", "--embed", "16",
              "--layers", "1", "--batch-size", "4", "--seq-len", "4", "--max-steps", "3", "--threads", "1", "-q"))
    r = invoke("classify", "train", files["train"], "--valid", files["valid"], "-o", tmp_path / "c.safetensors",
               "--init-from", lm, "--level", "word", "--hidden", "16", "--embed", "16", "--layers", "1")
    one_line_error(r, "--init-from", "--tokenize words", "whitespace only")


@pytest.mark.skipif(not (corpora_dir() / "names" / "train.tsv").is_file(), reason="the names corpus is absent")
def test_on_real_names(tmp_path):
    rows = (corpora_dir() / "names" / "train.tsv").read_text(encoding="utf-8").splitlines()
    tr, va = tmp_path / "tr.tsv", tmp_path / "va.tsv"
    tr.write_text("\n".join(rows[:3000]) + "\n", encoding="utf-8")
    va.write_text("\n".join(rows[3000:3400]) + "\n", encoding="utf-8")
    out = tmp_path / "c.safetensors"
    ok(invoke("classify", "train", tr, "--valid", va, "-o", out, "--hidden", "32", "--bidirectional",
              "--max-steps", "150", "--threads", "1", "-q"))
    report = json.loads(ok(invoke("classify", "evaluate", "-m", out, va, "--json")).stdout)
    assert report["accuracy"] > 0.55 and report["examples"] == 400     # above the Russian-only 0.5


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("content, fragments", [
    (b"Kalo\tKami\nKalo Kami\n", ["train.tsv:2: no tab"]),
    (b"Kalo\tKami\n\tVexi\n", ["train.tsv:2: empty label"]),
    (b"Kalo\tKami\nVexian\t  \n", ["train.tsv:2: empty text"]),
    (b"Kalo\tKami\nKalo\tKalo\n", ["every line has the label 'Kalo'"]),
    (b"Kalo\tKa\xffmi\nVex\tqu\n", ["train.tsv", "UTF-8"]),
    (b"", ["train.tsv: no labeled lines"]),
    (b"__label__a x\n__label__b __label__c y\n", ["train.tsv:2: more than one label"]),
])
def test_bad_training_files(files, tmp_path, content, fragments):
    bad = tmp_path / "train.tsv"
    bad.write_bytes(content)
    out = tmp_path / "c.safetensors"
    one_line_error(invoke("classify", "train", bad, "--valid", files["valid"], "-o", out, "-q"), *fragments)
    assert not out.exists()


def test_crlf_and_fasttext_lines_read_like_tsv(files, tmp_path):
    rows = names(300, 1)
    crlf = write(tmp_path / "crlf.tsv", rows, "\r\n")
    fast = tmp_path / "fast.txt"
    fast.write_text("".join(f"__label__{label} {text}\n" for label, text in rows), encoding="utf-8")
    outs = []
    for i, path in enumerate((files["train"], crlf, fast)):
        src = write(tmp_path / f"same{i}.tsv", rows) if i == 0 else path
        out = tmp_path / f"c{i}.safetensors"
        ok(invoke("classify", "train", src, "--valid", files["valid"], "-o", out, *TRAIN, "--max-steps", "5"))
        outs.append(load_model(out, task="classify").params)
    for other in outs[1:]:
        assert all(np.array_equal(outs[0][k], other[k]) for k in outs[0])


def test_unknown_labels_in_a_test_file_are_counted(files, tmp_path):
    out = tmp_path / "c.safetensors"
    train(files, out, "--max-steps", "5")
    test = write(tmp_path / "test.tsv", names(20, 5) + [("Martian", "Zork"), ("Martian", "Blip")])
    report = json.loads(ok(invoke("classify", "evaluate", "-m", out, test, "--json")).stdout)
    assert report["examples"] == 20 and report["unknown_labels"] == {"lines": 2, "labels": ["Martian"]}
    assert "left out: 2 lines" in ok(invoke("classify", "evaluate", "-m", out, test)).stdout


def test_a_classifier_is_not_a_language_model_and_back(files, tmp_path):
    out, lm = tmp_path / "c.safetensors", tmp_path / "lm.safetensors"
    train(files, out, "--max-steps", "3")
    one_line_error(invoke("sample", "-m", out), "holds a classifier, not a language model")
    text = tmp_path / "t.txt"
    text.write_text("abc abd abe\n" * 200, encoding="utf-8")
    ok(invoke("train", text, "-o", lm, "--hidden", "8", "--layers", "1", "--max-steps", "2", "-q", "--threads", "1"))
    one_line_error(invoke("classify", "predict", "-m", lm, "x"), "holds a language model, not a classifier")
