"""Language models conditioned on labels (`charlm train --labeled`): gradients of both conditioning modes,
log p(text | label) against the float64 reference, the plain LM a fixed label folds into, Bayes' rule,
conditional sampling by a chi-square test, and the CLI (train, sample, score, perplexity, generative
classification, bad labels). Data are made here; nothing outside the repository is read.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

import reference as ref
from charlm import conditional, evaluate
from charlm.config import ConditionalConfig
from support import CELLS, invoke, ok, one_line_error

SYLLABLES = {"Kalo": ["ka", "lo", "mi"], "Bergish": ["berg", "sch", "ot"], "Vexian": ["vex", "qu", "ix"]}


def rows(n, seed):
    rng = np.random.default_rng(seed)
    labels = list(SYLLABLES)
    out = []
    for _ in range(n):
        label = labels[rng.integers(len(labels))]
        syl = SYLLABLES[label]
        out.append((label, "".join(syl[i] for i in rng.integers(len(syl), size=rng.integers(1, 4)))))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cond")
    for name, n, seed in (("train", 400, 1), ("valid", 60, 2)):
        (d / f"{name}.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in rows(n, seed)), encoding="utf-8")
    return d


def tiny(condition, variant="lstm", layers=2, tied=False, seed=0):
    rng = np.random.default_rng(seed)
    cfg = ConditionalConfig(layers=layers, hidden=5, embed=5 if tied else 4, vocab_size=9, labels=3, label_embed=3,
                            condition=condition, tied=tied, **CELLS[variant])
    P = {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape) for k, v in conditional.init_params(cfg, rng).items()}
    seqs = [rng.integers(2, 9, n).astype(np.int32) for n in (3, 0, 6, 1, 4)]
    return cfg, P, seqs, np.array([0, 2, 1, 1, 0])


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("variant", ["lstm", "gru-full", "rnn-tanh", "lstm-peephole"])
@pytest.mark.parametrize("condition", ["input", "state"])
def test_gradient(condition, variant, tied):
    cfg, P, seqs, labels = tiny(condition, variant, tied=tied)
    rng = np.random.default_rng(5)
    layout, x, y, lab = conditional.inputs(seqs, labels, 1)
    masks, out_mask = conditional.dropout_masks(cfg, rng, layout, 0.3, 0.2, np.float64)

    def f(Q):
        return conditional.loss_and_grads(cfg, Q, layout, x, y, lab, masks, out_mask)
    _, g = f(P)
    assert set(g) == set(P)
    for name in P:
        v = rng.normal(size=P[name].shape)
        eps = 1e-5
        num = (f({**P, name: P[name] + eps * v})[0] - f({**P, name: P[name] - eps * v})[0]) / (2 * eps)
        ana = float((g[name] * v).sum())
        assert abs(num - ana) <= 1e-6 * max(1e-6, abs(num) + abs(ana)), (name, num, ana)


def _reference_nll(cfg, P, seq, label):
    """-log p(seq | label) one step at a time in float64 (tests/reference.py's cells)."""
    x = np.concatenate(([cfg.eos_id], seq))[:, None]
    y = np.concatenate((seq, [cfg.eos_id]))
    e = P["label_embedding.weight"][label]
    X = P["embedding.weight"][x]                                               # (T, 1, E)
    state = None
    if cfg.condition == "input":
        X = np.concatenate([X, np.broadcast_to(e, (len(x), 1, len(e)))], axis=2)
    else:
        h = np.tanh(P["init.weight"] @ e + P["init.bias"]).reshape(cfg.layers, 1, cfg.hidden)
        state = [(h[k], None) for k in range(cfg.layers)]
    Y, _ = ref.rnn_forward(conditional.stack_config(cfg), P, X, state)
    logp = ref.log_softmax(ref.logits(cfg, P, Y[:, 0]))
    return -logp[np.arange(len(y)), y].sum()


@pytest.mark.parametrize("variant", ["lstm", "gru-minimal", "rnn-relu"])
@pytest.mark.parametrize("condition", ["input", "state"])
def test_text_nll_matches_the_float64_reference(condition, variant):
    cfg, P, seqs, labels = tiny(condition, variant)
    got = conditional.text_nll(cfg, P, seqs, labels, 1)
    want = [_reference_nll(cfg, P, s, lab) for s, lab in zip(seqs, labels)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_fixed_label_folds_into_a_plain_language_model():
    """condition input: the LM's own stream scorer on the folded model gives log p(text | label)."""
    cfg, P, seqs, _ = tiny("input")
    for label in range(3):
        plain, Q, state0 = conditional.fold(cfg, P, label)
        assert state0 is None
        sums, _ = evaluate.streams_nll(plain, Q, [np.concatenate((s, [1])).astype(np.int32) for s in seqs])
        np.testing.assert_allclose(sums, conditional.text_nll(cfg, P, seqs, [label] * len(seqs), 1), rtol=1e-10)


def test_bayes_posteriors_by_hand():
    cfg, P, seqs, _ = tiny("state")
    prior = np.log(np.array([0.5, 0.3, 0.2]))
    post = conditional.posteriors(cfg, P, seqs, prior, 1)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-12)
    for i, s in enumerate(seqs):
        joint = np.array([-_reference_nll(cfg, P, s, c) for c in range(3)]) + prior
        np.testing.assert_allclose(post[i], np.exp(joint) / np.exp(joint).sum(), rtol=1e-9)


@pytest.mark.parametrize("condition", ["input", "state"])
def test_sampling_follows_the_conditional_distribution(condition):
    """First tokens of 4,000 samples for label 2 against p(token | EOS, label 2): chi-square; the same
    counts against label 0's distribution fail (the test can tell labels apart)."""
    from charlm.lm import LanguageModel
    from charlm.vocab import Vocab
    cfg, P, _, _ = tiny(condition, layers=1, seed=3)
    P = {k: (v * 10 if k == "label_embedding.weight" else v).astype(np.float32) for k, v in P.items()}
    vocab = Vocab(["<unk>", "<eos>"] + list("abcdefg"), "char", False)
    lm = LanguageModel(cfg, vocab, P, {"conditional": json.dumps(["a", "b", "c"]), "label_counts": "[1, 1, 1]"})
    texts = lm.sample(length=1, num_samples=4000, seed=11, label="c")
    ids = {**vocab.index, "\n": 1, "\ufffd": 0}                # a sampled EOS renders as a newline, UNK as U+FFFD
    counts = np.bincount([ids[t] for t in texts], minlength=9)

    def probs(label):                                  # p(first token | EOS, label), from the first step
        layout, x, y, lab = conditional.inputs([np.array([], np.int32)], [label], 1)
        Y, _ = conditional.forward(cfg, P, layout, x, lab)
        z = conditional.logits(cfg, P, Y)[0].astype(np.float64)
        return np.exp(z - z.max()) / np.exp(z - z.max()).sum()

    p = probs(2)
    keep = p > 0
    assert stats.chisquare(counts[keep], counts.sum() * p[keep]).pvalue > 1e-4
    q = probs(0)
    assert stats.chisquare(counts[keep], counts.sum() * q[keep] / q[keep].sum()).pvalue < 1e-10
    assert lm.sample(length=5, num_samples=3, seed=4, label="b") == lm.sample(length=5, num_samples=3, seed=4,
                                                                               label="b")


# ------------------------------------------------------------------------------------------------ CLI

def test_train_sample_score_perplexity_and_classify(files, tmp_path):
    out = tmp_path / "g.safetensors"
    r = ok(invoke("train", files / "train.tsv", "--labeled", "--valid", files / "valid.tsv", "-o", out,
                  "--hidden", "24", "--layers", "1", "--batch-size", "16", "--lr", "0.01", "--max-steps", "150",
                  "--valid-every", "50", "--threads", "1", "-q", "--json"))
    summary = json.loads(r.stdout)
    assert summary["steps"] == 150 and summary["valid_loss"] < 1.5
    samples = ok(invoke("sample", "-m", out, "--label", "Vexian", "--num-samples", "20", "--stop-at-eos",
                        "--length", "30", "--seed", "1", "--json")).stdout.splitlines()
    texts = [json.loads(line)["text"] for line in samples]
    vex = sum(any(s in t for s in SYLLABLES["Vexian"]) for t in texts)
    assert vex >= 15, texts                                       # a label steers the samples
    r = ok(invoke("score", "-m", out, "--label", "Kalo", "kalomi", "vexqu"))
    kalo, vexq = (float(line.split("\t")[0]) for line in r.stdout.splitlines())
    assert kalo > vexq
    r = ok(invoke("perplexity", "-m", out, files / "valid.tsv", "--json"))
    assert json.loads(r.stdout)["nll_per_token"] == pytest.approx(summary["valid_loss"], rel=1e-5)
    report = json.loads(ok(invoke("classify", "evaluate", "-m", out, files / "valid.tsv", "--json")).stdout)
    assert report["accuracy"] > 0.8                                 # Bayes' rule with the LM
    pred = ok(invoke("classify", "predict", "-m", out, "bergschot", "-q")).stdout
    assert pred.startswith("Bergish\t")


def test_labels_are_required_and_checked(files, tmp_path):
    out = tmp_path / "g.safetensors"
    ok(invoke("train", files / "train.tsv", "--labeled", "--condition", "state", "--valid", files / "valid.tsv",
              "-o", out, "--hidden", "8", "--layers", "1", "--max-steps", "3", "--threads", "1", "-q"))
    one_line_error(invoke("sample", "-m", out), "conditioned on labels: --label must be one of", "Bergish")
    one_line_error(invoke("sample", "-m", out, "--label", "Martian"), "--label 'Martian'", "Kalo")
    one_line_error(invoke("sample", "-m", out, "--label", "Kalo", "--beam", "3"), "--beam", "initial state")
    one_line_error(invoke("score", "-m", out, "--label", "Kalo", "--per-token", "kalo"), "--per-token", "initial state")
    from charlm.errors import CharlmError
    from charlm.lm import LanguageModel
    lm = LanguageModel.load(out)               # the library names its arguments, not the command's options
    for call, said in ((lambda: lm.sample(label="Martian"), "label 'Martian'"),
                       (lambda: lm.sample(label="Kalo", beam=3), "beam: not for"),
                       (lambda: lm.score(["kalo"], per_token=True, label="Kalo"), "per_token: not for")):
        with pytest.raises(CharlmError, match=said) as e:
            call()
        assert "--" not in str(e.value).split("(")[0]
    plain = tmp_path / "p.safetensors"
    text = tmp_path / "t.txt"
    text.write_text("kalomi bergot\n" * 200, encoding="utf-8")
    ok(invoke("train", text, "-o", plain, "--hidden", "8", "--layers", "1", "--max-steps", "2", "-q", "--threads", "1"))
    one_line_error(invoke("sample", "-m", plain, "--label", "Kalo"), "not conditioned on labels")
    one_line_error(invoke("train", files / "train.tsv", "--labeled", "-o", tmp_path / "x.safetensors"),
                   "--labeled: give --valid")
    single = tmp_path / "one.tsv"
    single.write_text("Kalo\tKami\nKalo\tKalomi\n", encoding="utf-8")
    one_line_error(invoke("train", single, "--labeled", "--valid", single, "-o", tmp_path / "x.safetensors"),
                   "every line has the label 'Kalo'", "conditioned on labels needs at least two")


def test_class_sampling_resumes_bit_for_bit_and_balances(files, tmp_path):
    """--class-sampling balanced: a run stopped mid-epoch and resumed ends bit for bit as one that never
    stopped; without it (the same seed) the parameters differ; the batches draw a rare label as often as a
    common one; a plain language model refuses the option."""
    from charlm.resume import load_state, state_path
    from charlm.tasks.classify import load_data
    from charlm.tasks.conditional import ConditionalLMTask, ConditionalTrainConfig
    skewed = tmp_path / "skewed.tsv"
    data = rows(400, 1)
    kept = [r for r in data if r[0] != "Vexian"] + [r for r in data if r[0] == "Vexian"][:20]
    skewed.write_text("".join(f"{a}\t{b}\n" for a, b in kept), encoding="utf-8")
    args = ["--labeled", "--valid", files / "valid.tsv", "--hidden", "8", "--layers", "1", "--batch-size", "16",
            "--dropout", "0.2", "--threads", "1", "-q", "--seed", "2"]
    ref_out, out, plain = tmp_path / "r.safetensors", tmp_path / "m.safetensors", tmp_path / "p.safetensors"
    ok(invoke("train", skewed, "-o", ref_out, "--max-steps", "30", "--class-sampling", "balanced", *args))
    ok(invoke("train", skewed, "-o", out, "--max-steps", "11", "--class-sampling", "balanced", *args))
    ok(invoke("train", skewed, "-o", out, "--resume", "--max-steps", "30", "--labeled", "--valid",
              files / "valid.tsv", "-q"))
    ok(invoke("train", skewed, "-o", plain, "--max-steps", "30", *args))
    a, b, c = (load_state(state_path(p)) for p in (out, ref_out, plain))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in b.params)
    assert not all(np.array_equal(c.params[k], b.params[k]) for k in b.params)
    d = load_data(skewed, files / "valid.tsv")
    task = ConditionalLMTask(d, ConditionalConfig(vocab_size=len(d.vocab), labels=3, hidden=8, layers=1),
                             ConditionalTrainConfig(batch_size=16, class_sampling="balanced"))
    drawn = np.bincount(d.train_y[np.concatenate(task._batches(0))], minlength=3)
    rare = int(np.argmin(np.bincount(d.train_y)))
    assert drawn[rare] > 0.25 * drawn.sum() and np.bincount(d.train_y)[rare] < 0.1 * len(d.train_y)
    one_line_error(invoke("train", skewed, "--class-sampling", "sqrt", "-o", tmp_path / "x.safetensors"),
                   "--class-sampling needs --labeled")


def test_judge_reports_novelty_and_the_corrected_and_uncorrected_accuracy(files, tmp_path):
    """classify judge: per label, the share of its samples the judge assigns to it, with and without the
    judge's prior correction, and the share not in the training file, equal to the same computed through
    the Python API from the same samples."""
    from charlm import labeled
    from charlm.classifier import load_classifier
    from charlm.lm import LanguageModel
    gen, clf = tmp_path / "g.safetensors", tmp_path / "c.safetensors"
    ok(invoke("train", files / "train.tsv", "--labeled", "--valid", files / "valid.tsv", "-o", gen, "--hidden", "16",
              "--layers", "1", "--batch-size", "16", "--lr", "0.01", "--max-steps", "60", "--threads", "1", "-q"))
    ok(invoke("classify", "train", files / "train.tsv", "--valid", files / "valid.tsv", "-o", clf, "--hidden", "8",
              "--max-steps", "8", "--threads", "1", "-q"))
    args = ["classify", "judge", "-m", gen, "--judge", clf, "--train", files / "train.tsv", "-n", "12", "--threads", "1"]
    s = json.loads(ok(invoke(*args, "--judge-prior-correction", "1", "--json")).stdout)
    lm, judge1, judge0 = LanguageModel.load(gen), load_classifier(clf, 1.0), load_classifier(clf)
    seen = set(labeled.read(files / "train.tsv").texts)
    for i, (label, row) in enumerate(zip(lm.labels, s["labels"])):
        texts = [t.strip() for t in lm.sample(length=60, temp=0.8, stop_at_eos=True, num_samples=12, seed=i,
                                              label=label)]
        assert row["judge_accuracy"] == pytest.approx(np.mean([p.label == label for p in judge1.predict(texts)]))
        assert row["judge_accuracy_uncorrected"] == pytest.approx(
            np.mean([p.label == label for p in judge0.predict(texts)]))
        assert row["novelty"] == pytest.approx(np.mean([t not in seen for t in texts]))
    assert s["judge_accuracy"] == pytest.approx(np.mean([r["judge_accuracy"] for r in s["labels"]]))
    text = ok(invoke(*args, "--judge-prior-correction", "1")).stdout
    assert f"without it, judge accuracy {s['judge_accuracy_uncorrected']:.4f}" in text
    plain = json.loads(ok(invoke(*args, "--json")).stdout)
    assert plain["judge_accuracy"] == pytest.approx(s["judge_accuracy_uncorrected"])
    from charlm.checkpoint import load_model, save_model
    m = load_model(clf, task="classify")
    uncounted = tmp_path / "uncounted.safetensors"
    save_model(uncounted, m.params, m.config, m.vocab, {k: v for k, v in m.meta.items() if k in ("task", "labels")})
    args[args.index(clf)] = uncounted
    ok(invoke(*args, "-n", "2"))
    one_line_error(invoke(*args, "--judge-prior-correction", "1"), "no training label counts")


def test_judge_by_an_ensemble(files, tmp_path):
    """--judge A --judge B: the samples judged by the mean of the two classifiers' probabilities."""
    from charlm.classifier import load_classifier
    from charlm.lm import LanguageModel
    gen, a, b = tmp_path / "g.safetensors", tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ok(invoke("train", files / "train.tsv", "--labeled", "--valid", files / "valid.tsv", "-o", gen, "--hidden", "16",
              "--layers", "1", "--batch-size", "16", "--lr", "0.01", "--max-steps", "40", "--threads", "1", "-q"))
    for out, seed in ((a, "1"), (b, "2")):
        ok(invoke("classify", "train", files / "train.tsv", "--valid", files / "valid.tsv", "-o", out, "--hidden", "8",
                  "--max-steps", "8", "--seed", seed, "--threads", "1", "-q"))
    s = json.loads(ok(invoke("classify", "judge", "-m", gen, "--judge", a, "--judge", b, "-n", "10", "--threads", "1",
                             "--json")).stdout)
    lm, ens = LanguageModel.load(gen), load_classifier([a, b])
    for i, (label, row) in enumerate(zip(lm.labels, s["labels"])):
        texts = [t.strip() for t in lm.sample(length=60, temp=0.8, stop_at_eos=True, num_samples=10, seed=i,
                                              label=label)]
        assert row["judge_accuracy"] == pytest.approx(np.mean([p.label == label for p in ens.predict(texts)]))
