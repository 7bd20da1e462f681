"""charlm tag: the tagger's gradient, PyTorch's modules on the same file, CoNLL-U written back byte for byte,
conlleval's spans, the CLI round trip, exact resume, and bad input.

The data are made here: a small made-up language whose word classes end in their own suffixes (nouns
-on, verbs -ez, adjectives -ish) with one ambiguous word ("book": a noun after a determiner, a verb after
a pronoun), written as CoNLL-U with comments, multiword tokens and empty nodes. The UD English EWT dev
set (../shared/corpora) adds real sentences when present.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from charlm import conllu, spans, tag
from charlm.checkpoint import load_model
from charlm.config import TagConfig
from charlm.resume import load_state, save_state, state_path
from charlm.tagger import Tagger
from support import CELLS, corpora_dir, invoke, ok, one_line_error

STEMS = ["kal", "mir", "tob", "zen", "fup", "ras", "lod", "wek", "bim", "sot", "gar", "pel"]
SUFFIX = {"NOUN": "on", "VERB": "ez", "ADJ": "ish"}
CLOSED = {"DET": ["the", "a"], "PRON": ["she", "we"], "PUNCT": ["."]}


def sentence(rng, stems):
    def word(t):
        return (stems[rng.integers(len(stems))] + SUFFIX[t], t) if t in SUFFIX else \
            (CLOSED[t][rng.integers(len(CLOSED[t]))], t)
    out = [word("PRON"), ("book", "VERB") if rng.random() < 0.3 else word("VERB"), word("DET")]
    if rng.random() < 0.5:
        out.append(word("ADJ"))
    out.append(("book", "NOUN") if rng.random() < 0.3 else word("NOUN"))
    if rng.random() < 0.3:
        out += [word("DET"), word("NOUN")]
    return out + [word("PUNCT")]


def conllu_text(n, seed, stems=STEMS, extras=True, newline="\n"):
    """n sentences of CoNLL-U; with extras, comments, multiword-token lines and empty nodes here and there."""
    rng = np.random.default_rng(seed)
    blocks = []
    for i in range(n):
        words = sentence(rng, stems)
        lines = [f"# sent_id = s{seed}-{i}", f"# text = {' '.join(w for w, _ in words)}"] if extras else []
        for j, (w, t) in enumerate(words, start=1):
            if extras and j == 2 and i % 3 == 0:
                lines.append(f"2-3\t{w}{words[2][0]}\t_\t_\t_\t_\t_\t_\t_\t_")
            lines.append(f"{j}\t{w}\t{w.lower()}\t{t}\tX{t[:2]}\t_\t0\tdep\t_\t_")
            if extras and j == 3 and i % 4 == 1:
                lines.append("3.1\tnull\t_\t_\t_\t_\t_\t_\t2:dep\t_")
        blocks.append(newline.join(lines) + newline)
    return newline.join(blocks) + newline


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tag")
    (d / "train.conllu").write_text(conllu_text(300, 1, STEMS[:9]), encoding="utf-8")
    (d / "valid.conllu").write_text(conllu_text(60, 2), encoding="utf-8")     # stems 9..11 unseen in training
    return {"train": d / "train.conllu", "valid": d / "valid.conllu", "dir": d}


TRAIN = ["--hidden", "16", "--embed", "8", "--char-embed", "6", "--char-hidden", "8", "--batch-size", "16",
         "--lr", "0.02", "--valid-every", "20", "--threads", "1", "-q", "--seed", "3"]


def train(files, out, *extra):
    return ok(invoke("tag", "train", files["train"], "--valid", files["valid"], "-o", out, *TRAIN, *extra))


@pytest.fixture(scope="module")
def model(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("tagmodel") / "t.safetensors"
    summary = json.loads(train(files, out, "--max-steps", "120", "--json", "--dropout", "0.1").stdout)
    return out, summary


# ------------------------------------------------------------------------------------------- gradient

def _ragged(cfg, rng):
    """A batch of ragged sentences (1 to 6 tokens) over word types of 1 to 7 letters, some repeated."""
    type_chars = [rng.integers(0, cfg.chars, k).astype(np.int32) for k in (1, 4, 2, 7, 3, 1, 5)]
    lengths = (3, 1, 6, 2, 4)
    words = [rng.integers(0, cfg.vocab_size, n).astype(np.int32) for n in lengths]
    types = [rng.integers(0, len(type_chars), n) for n in lengths]
    return tag.make_batch(cfg, words, types, type_chars)


def _directional_error(cfg, P, batch, y, masks, head_mask, rng, eps=1e-5):
    _, g = tag.loss_and_grads(cfg, P, batch, y, masks, head_mask)
    worst = {}
    for name in P:
        v = rng.normal(size=P[name].shape)
        f = [tag.loss_and_grads(cfg, {**P, name: P[name] + s * eps * v}, batch, y, masks, head_mask)[0]
             for s in (1, -1)]
        num, ana = (f[0] - f[1]) / (2 * eps), float((g[name] * v).sum())
        worst[name] = abs(num - ana) / max(1e-6, abs(num) + abs(ana))
    return worst


@pytest.mark.parametrize("char", [True, False], ids=["char", "nochar"])
@pytest.mark.parametrize("variant", ["lstm", "gru-full", "rnn-tanh", "lstm-peephole"])
def test_tagger_gradient(variant, char):
    """Central differences of the whole tagger (word embedding, char embedding and BiRNN, 2 bidirectional
    layers, dropout on the input, between layers and before the head, the head, the token-mean loss) in
    float64 on ragged sentences of ragged words."""
    rng = np.random.default_rng(7)
    cfg = TagConfig(layers=2, hidden=5, embed=4, vocab_size=9, tags=4, chars=6, char_embed=3, char_hidden=4,
                    char_features=char, **CELLS[variant])
    P = {k: v + rng.normal(0, 0.3, v.shape) for k, v in tag.init_params(cfg, rng, np.float64).items()}
    batch = _ragged(cfg, rng)
    masks, head_mask = tag.dropout_masks(cfg, rng, batch, 0.3, 0.2, np.float64)
    y = rng.integers(0, cfg.tags, batch.N)
    worst = _directional_error(cfg, P, batch, y, masks, head_mask, rng)
    assert any(k.startswith("char_rnn.") for k in worst) == char
    assert max(worst.values()) < 1e-6, worst


def test_gradient_check_catches_a_wrong_char_gradient(monkeypatch):
    """Negative control: 1 % off in the char BiRNN's gradients only, and the check sees it."""
    rng = np.random.default_rng(7)
    cfg = TagConfig(layers=1, hidden=5, embed=4, vocab_size=9, tags=4, chars=6, char_embed=3, char_hidden=4)
    P = tag.init_params(cfg, rng, np.float64)
    batch = _ragged(cfg, rng)
    real = tag.packed.backward

    def skewed(c, P, cache, dout=None, dfinal=None):
        dX, grads, dh0 = real(c, P, cache, dout, dfinal)
        if cache["prefix"] == "char_rnn.":
            grads = {k: g * 1.01 for k, g in grads.items()}
        return dX, grads, dh0

    monkeypatch.setattr(tag.packed, "backward", skewed)
    worst = _directional_error(cfg, P, batch, rng.integers(0, 4, batch.N), None, None, rng)
    assert max(v for k, v in worst.items() if k.startswith("char_rnn.")) > 1e-3
    assert max(v for k, v in worst.items() if not k.startswith("char_rnn.")) < 1e-6


def test_batch_layout_maps_rows_to_tokens():
    """make_batch: packed row n holds token perm[n] of the sentences laid end to end, and the char ids of
    its word type."""
    rng = np.random.default_rng(1)
    cfg = TagConfig(vocab_size=50, tags=3, chars=9)
    words = [np.arange(a, a + n, dtype=np.int32) for a, n in ((0, 3), (10, 5), (20, 1))]
    type_chars = [np.array([t % 9] * (1 + t % 4), np.int32) for t in range(30)]
    b = tag.make_batch(cfg, words, [w.astype(np.int64) for w in words], type_chars)
    flat = np.concatenate(words)
    assert np.array_equal(b.words, flat[b.perm])
    chars = b.clayout.unpack(b.cids)
    for n in range(b.N):
        assert np.array_equal(chars[b.uid[n]], type_chars[flat[b.perm[n]]])
    assert rng is not None


# -------------------------------------------------------------------------------------------- PyTorch

def test_probabilities_match_pytorch_modules(model):
    """The file's tensors load as they are into two nn.Embedding, a char nn.LSTM(bidirectional), the word
    nn.LSTM(bidirectional, 2 layers) and nn.Linear; PyTorch's packed sequences give the same per-token
    probabilities for ragged sentences with unseen words."""
    torch = pytest.importorskip("torch")
    tagger = Tagger.load(model[0])
    cfg, P = tagger.config, {k: torch.from_numpy(v) for k, v in tagger.params.items()}
    emb, cemb = torch.nn.Embedding(cfg.vocab_size, cfg.embed), torch.nn.Embedding(cfg.chars, cfg.char_embed)
    crnn = torch.nn.LSTM(cfg.char_embed, cfg.char_hidden, bidirectional=True)
    rnn = torch.nn.LSTM(cfg.embed + 2 * cfg.char_hidden, cfg.hidden, num_layers=cfg.layers, bidirectional=True)
    head = torch.nn.Linear(2 * cfg.hidden, cfg.tags)
    emb.load_state_dict({"weight": P["embedding.weight"]})
    cemb.load_state_dict({"weight": P["char_embedding.weight"]})
    crnn.load_state_dict({k[len("char_rnn."):]: v for k, v in P.items() if k.startswith("char_rnn.")})
    rnn.load_state_dict({k[len("rnn."):]: v for k, v in P.items() if k.startswith("rnn.")})
    head.load_state_dict({"weight": P["head.weight"], "bias": P["head.bias"]})
    sentences = [["she", "bookez", "the", "pelon", "."], ["book"], ["we", "garez", "a", "sotish", "book", "the",
                                                                   "Zzyzx", "."]]
    pack = torch.nn.utils.rnn.pack_sequence
    expected = []
    with torch.no_grad():
        for words in sentences:
            chars = [torch.tensor([tagger._char_index.get(c, 0) for c in w]) for w in words]
            _, (h, _) = crnn(pack([cemb(c) for c in chars], enforce_sorted=False))
            cv = torch.cat([h[0], h[1]], dim=1)                                   # (S, 2Hc)
            ids = torch.tensor([tagger.vocab.index.get(w, cfg.unk_id) for w in words])
            y, _ = rnn(torch.cat([emb(ids), cv], dim=1)[:, None, :])               # (S, 1, 2H)
            expected.append(torch.softmax(head(y[:, 0]), dim=1).numpy())
    got = tagger.probabilities(sentences)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-4)


# ---------------------------------------------------------------------------------- CoNLL-U round trip

def _check_round_trip(src: bytes, out: bytes, column: int):
    """Every line of `out` equals the line of `src` but for column `column` (0-based) of token lines."""
    a, b = src.split(b"\n"), out.split(b"\n")
    assert len(a) == len(b)
    changed = 0
    for x, y in zip(a, b):
        cols_x, cols_y = x.split(b"\t"), y.split(b"\t")
        if len(cols_x) == 10 and cols_x[0].strip(b"\xef\xbb\xbf").isdigit():
            assert cols_x[:column] + cols_x[column + 1:] == cols_y[:column] + cols_y[column + 1:]
            changed += cols_x[column] != cols_y[column]
        else:
            assert x == y
    return changed


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_conllu_round_trip_is_byte_identical_but_the_tag_column(model, files, tmp_path, newline):
    """predict writes comments, multiword tokens, empty nodes, a BOM, CRLF and a missing final newline
    back unchanged, and only the UPOS column of token lines differs (here: blanked in the input)."""
    text = "\ufeff" + conllu_text(30, 5, newline=newline).rstrip("\r\n")
    blanked = "".join(
        "\t".join(c if i != 3 or not c_id.isdigit() else "_" for i, c in enumerate(cols)) + end
        for line in conllu.split_lines(text)
        for body, end in [(line.rstrip("\r\n"), line[len(line.rstrip("\r\n")):])]
        for cols in [body.split("\t")] for c_id in [cols[0].lstrip("\ufeff")])
    src = tmp_path / "in.conllu"
    src.write_bytes(blanked.encode("utf-8"))
    r = ok(invoke("tag", "predict", "-m", model[0], src, "-q", "--threads", "1"))
    out = r.stdout_bytes
    assert out.startswith(b"\xef\xbb\xbf") and not out.endswith(b"\n")
    assert _check_round_trip(src.read_bytes(), out, 3) > 0
    assert out.count(b"\r\n") == blanked.count("\r\n")
    predicted = conllu.read("out", text=out.decode("utf-8"))
    gold = conllu.read("gold", text=text)
    right = sum(a == b for s, g in zip(predicted.sentences, gold.sentences) for a, b in zip(s.tags, g.tags))
    assert right / gold.tokens > 0.9


@pytest.mark.skipif(not (corpora_dir() / "ud-ewt" / "en_ewt-ud-dev.conllu").is_file(),
                    reason="the UD EWT corpus is absent")
def test_conllu_round_trip_on_real_dev_sentences(model, tmp_path):
    """200 real EWT dev sentences (comments, multiword tokens such as `don't`): XPOS and UPOS filled in
    turn, every other byte as read."""
    blocks = (corpora_dir() / "ud-ewt" / "en_ewt-ud-dev.conllu").read_bytes().split(b"\n\n")
    src = tmp_path / "dev.conllu"
    src.write_bytes(b"\n\n".join(blocks[:200]) + b"\n\n")
    assert b"\n# text" in src.read_bytes() and any(line.split(b"\t")[0].count(b"-") for line in
                                                    src.read_bytes().split(b"\n") if b"\t" in line)
    for column, index in (("upos", 3), ("xpos", 4), ("9", 8)):
        out = ok(invoke("tag", "predict", "-m", model[0], src, "--column", column, "-q", "--threads", "1")).stdout_bytes
        assert _check_round_trip(src.read_bytes(), out, index) > 0


# ---------------------------------------------------------------------------------------------- spans

@pytest.mark.parametrize("gold, pred, correct, n_pred, n_gold", [
    (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"], 2, 2, 2),    # exact
    (["B-PER", "I-PER", "O"], ["B-ORG", "I-ORG", "O"], 0, 1, 1),                         # wrong type
    (["B-PER", "I-PER", "I-PER"], ["B-PER", "I-PER", "O"], 0, 1, 1),                     # wrong end
    (["O", "B-PER", "I-PER"], ["B-PER", "I-PER", "I-PER"], 0, 1, 1),                     # wrong start
    (["O", "B-LOC", "I-LOC"], ["O", "I-LOC", "I-LOC"], 1, 1, 1),                         # I- without B- opens
    (["B-LOC", "B-LOC"], ["B-LOC", "I-LOC"], 0, 1, 2),                                   # B- after B- splits
    (["B-PER", "I-LOC"], ["B-PER", "I-LOC"], 2, 2, 2),                                   # type change: 2 spans
    (["O", "O"], ["B-MISC", "O"], 0, 1, 0),
])
def test_span_counts_as_conlleval(gold, pred, correct, n_pred, n_gold):
    r = spans.span_report([gold], [pred])
    assert (r["correct"], r["predicted"], r["gold"]) == (correct, n_pred, n_gold)


def test_span_precision_recall_f1_by_hand():
    """Two sentences: gold PER(0-2) LOC(3) | ORG(1-3); predicted PER(0-2) LOC(3-4) | ORG(1-3) MISC(0).
    correct 2 (PER, ORG), predicted 4, gold 3: P 0.5, R 2/3, F1 4/7."""
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["O", "B-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-MISC", "B-ORG", "I-ORG"]]
    r = spans.span_report(gold, pred)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(4 / 7)
    assert r["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "correct": 0, "predicted": 1,
                                    "support": 1}
    assert spans.is_bio(["O", "B-X", "I-X"]) and not spans.is_bio(["O", "NOUN"]) and not spans.is_bio(["O"])


def test_evaluate_reports_spans_of_a_two_column_file(tmp_path):
    """A TOKEN<TAB>TAG file with BIO tags: trained, evaluated with span figures that match the report's
    own recount."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        for w, t in sentence(rng, STEMS):
            rows.append(f"{w}\t{'B-N' if t == 'NOUN' else 'B-V' if t == 'VERB' else 'O'}")
        rows.append("")
    data = tmp_path / "ner.tsv"
    data.write_text("-DOCSTART-\tO\n\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "ner.safetensors"
    ok(invoke("tag", "train", data, "--valid", data, "-o", out, *TRAIN, "--max-steps", "40"))
    r = json.loads(ok(invoke("tag", "evaluate", "-m", out, data, "--json", "--threads", "1")).stdout)
    assert r["format"] == "conll" and r["spans"]["gold"] == 400 + sum(1 for x in rows if x.endswith("B-N")) - 200
    assert r["spans"]["f1"] > 0.8 and set(r["spans"]["per_type"]) == {"N", "V"}


# ------------------------------------------------------------------------------------------------ CLI

def test_train_predict_evaluate_round_trip(model, files):
    out, summary = model
    assert summary["steps"] == 120 and summary["valid"]["valid_accuracy"] > 0.9
    m = load_model(out, task="tag")
    assert m.meta["task"] == "tag" and json.loads(m.meta["tags"]) == ["ADJ", "DET", "NOUN", "PRON", "PUNCT", "VERB"]
    assert json.loads(m.meta["chars"])[0] == "<unk>" and m.meta["column"] == "4" and "book" in m.vocab
    r = ok(invoke("tag", "predict", "-m", out, "-", "--threads", "1", input="she bookez the pelon .\n\nwe book\n"))
    lines = r.stdout.splitlines()
    assert lines[0] == "she/PRON bookez/VERB the/DET pelon/NOUN ./PUNCT" and lines[1] == ""
    assert lines[2].split()[1] == "book/VERB" and "tokens/s" in r.stderr
    r = ok(invoke("tag", "predict", "-m", out, "--json", "-q", input="a book .\n"))
    assert json.loads(r.stdout) == {"tokens": ["a", "book", "."], "tags": ["DET", "NOUN", "PUNCT"]}
    r = json.loads(ok(invoke("tag", "evaluate", "-m", out, files["valid"], "--json")).stdout)
    assert r["accuracy"] == pytest.approx(summary["valid"]["valid_accuracy"])
    assert r["tokens"] == r["seen"]["tokens"] + r["unseen"]["tokens"] and r["unseen"]["tokens"] > 0
    assert r["spans"] is None and sum(m["support"] for m in r["per_tag"].values()) == r["tokens"]
    text = ok(invoke("tag", "evaluate", "-m", out, files["valid"])).stdout
    assert text.startswith(f"accuracy {r['accuracy']:.4f}") and "unseen" in text and "precision" in text


def test_no_char_ablation_has_no_char_tensors(files, tmp_path):
    out = tmp_path / "w.safetensors"
    train(files, out, "--no-char", "--max-steps", "5")
    m = load_model(out, task="tag")
    assert not m.config.char_features and not any(k.startswith("char_") for k in m.params)
    assert m.params["rnn.weight_ih_l0"].shape[1] == m.config.embed


@pytest.mark.parametrize("word_dropout", [("--word-dropout", "0.5"), ("--word-dropout-alpha", "0.5")],
                         ids=["once-seen", "alpha"])
def test_tag_run_resumes_bit_for_bit(files, tmp_path, word_dropout):
    """Dropout and word dropout both draw from the engine's generator: resumed at step 17, the run ends
    with the parameters of the uninterrupted one; one draw off, it does not."""
    ref, out = tmp_path / "ref.safetensors", tmp_path / "m.safetensors"
    extra = ("--dropout", "0.2", *word_dropout, "--embed-dropout", "0.1")
    train(files, ref, "--max-steps", "40", *extra)
    train(files, out, "--max-steps", "17", *extra)
    ok(invoke("tag", "train", files["train"], "--valid", files["valid"], "-o", out, "--resume", "--max-steps", "40",
              "-q"))
    a, b = load_state(state_path(out)), load_state(state_path(ref))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in b.params) and a.rng_state == b.rng_state
    other = tmp_path / "n.safetensors"
    train(files, other, "--max-steps", "17", *extra)
    st = load_state(state_path(other))
    rng = np.random.default_rng()
    rng.bit_generator.state = st.rng_state
    rng.random()
    st.rng_state = rng.bit_generator.state
    save_state(state_path(other), st)
    ok(invoke("tag", "train", files["train"], "--valid", files["valid"], "-o", other, "--resume", "--max-steps", "40",
              "-q"))
    c = load_state(state_path(other))
    assert not all(np.array_equal(c.params[k], b.params[k]) for k in b.params)
    r = invoke("tag", "train", files["train"], "--valid", files["valid"], "-o", out, "--resume", "--char-hidden", "9")
    one_line_error(r, "--char-hidden 9 conflicts", "char hidden 8")


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("content, fragments", [
    ("1\tshe\tshe\tPRON\t_\t_\t0\tdep\t_\t_\n2\tkalez\tkalez\tVERB\t_\t_\n\n", ["train.conllu:2:", "6 tab-separated"]),
    ("1\tshe\tshe\tPRON\t_\t_\t0\tdep\t_\t_\n\n# sent_id = 2\n\n", ["train.conllu:3: a sentence with no tokens"]),
    ("# c\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n\n", ["train.conllu:1: a sentence with no tokens"]),
    ("1\tshe\tshe\t\t_\t_\t0\tdep\t_\t_\n\n", ["train.conllu:1: empty tag in column 4"]),
    ("1\tshe\tshe\tPRON\t_\t_\t0\tdep\t_\t_\n2\tsoon\tsoon\tPRON\t_\t_\t0\tdep\t_\t_\n\n", ["every token has the tag 'PRON'"]),
    ("", ["train.conllu: no sentences"]),
    ("she\tPRON\nkalez\tVERB\textra\n\n", ["train.conllu:2: 3 tab-separated columns", "first token line has 2"]),
    ("1\tsh\xffe", ["train.conllu:1: invalid UTF-8"]),
])
def test_bad_training_files(files, tmp_path, content, fragments):
    bad = tmp_path / "train.conllu"
    bad.write_bytes(content.encode("utf-8", "surrogateescape") if "\xff" not in content else
                    content.encode("latin-1"))
    out = tmp_path / "t.safetensors"
    one_line_error(invoke("tag", "train", bad, "--valid", files["valid"], "-o", out, "-q"), *fragments)
    assert not out.exists()


def test_unseen_gold_tags_are_reported_not_a_crash(model, tmp_path):
    gold = tmp_path / "gold.conllu"
    gold.write_text(conllu_text(10, 9, extras=False) + "1\tHello\thello\tINTJ\t_\t_\t0\tdep\t_\t_\n"
                    "2\t!\t!\tPUNCT\t_\t_\t0\tdep\t_\t_\n\n", encoding="utf-8")
    r = json.loads(ok(invoke("tag", "evaluate", "-m", model[0], gold, "--json")).stdout)
    assert r["unknown_tags"] == {"tokens": 1, "tags": {"INTJ": 1}}
    assert r["per_tag"]["INTJ"]["recall"] == 0.0
    text = ok(invoke("tag", "evaluate", "-m", model[0], gold)).stdout
    assert "gold tags the model does not know: 1 tokens (INTJ (1))" in text


def test_bad_prediction_input(model, tmp_path):
    bad = tmp_path / "bad.conllu"
    bad.write_text("# x\n1\tshe\tshe\t_\t_\t_\t0\tdep\t_\t_\n2\tgo\t_\t_\n\n", encoding="utf-8")
    one_line_error(invoke("tag", "predict", "-m", model[0], bad), "bad.conllu:3:", "4 tab-separated columns")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"she \x00goes\n")
    one_line_error(invoke("tag", "predict", "-m", model[0], binary), "bin.txt:1: NUL byte")


def test_a_tagger_is_not_a_classifier_nor_a_language_model(model):
    one_line_error(invoke("sample", "-m", model[0]), "holds a tagger, not a language model", "charlm tag")
    one_line_error(invoke("classify", "predict", "-m", model[0], "x"), "holds a tagger, not a classifier")
