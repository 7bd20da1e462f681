"""Word level for raw text (--tokenize words): the split, exact round trips, streaming, the model config,
and the text of unknown tokens in `score --per-token`."""
import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.checkpoint import load_model, read_metadata
from charlm.config import ModelConfig
from charlm.data import count_tokens, encode_file, encode_file_counted
from charlm.errors import CharlmError
from charlm.vocab import Vocab, split_words

from support import invoke, ok, one_line_error, play

# Round-trip texts: one space between tokens, no whitespace at a line's ends (runs of whitespace become one
# space, as with whitespace splitting).
ROUND_TRIP = {
    "english": "\"Glad,\" said O'Brien; \"I don't know.\" The dogs' rock'n'roll (1999) cost $4.50!\n'Tis so.\n",
    "chinese": "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n",
    "mixed": "Москва и Paris: 東京は大きい。 Ελλάδα, मराठी भाषा, 한국어 문장, ภาษาไทย and العربية.\n",
    "emoji": "I ❤️ it 👍🏽 so much 🎉🎉 — 👨‍👩‍👧 family!\n",
    "combining": "Cafe\u0301 na\u0308ive Z\u0335a\u0336l\u0337g\u0338o \u0915\u093f \u0301x\n",
}


def words_vocab(text: str, lowercase: bool = False) -> Vocab:
    return Vocab.from_counts(Counter(split_words(text)), "word", lowercase, tokenize="words")


def test_punctuation_apart_apostrophes_inside():
    assert split_words("Glad. I don't know, O'Brien's (1999)!\n") == [
        "Glad", "##.", "I", "don't", "know", "##,", "O'Brien's", "(", "##1999", "##)", "##!", "<eos>"]
    assert split_words("'tis the dogs' rock\u2019n\u2019roll") == ["'", "##tis", "the", "dogs", "##'", "rock\u2019n\u2019roll"]


def test_scripts_without_spaces_are_one_character_each():
    assert split_words("我爱你。") == ["我", "##爱", "##你", "##。"]
    assert split_words("ひらがなカタカナ") == ["ひ", "##ら", "##が", "##な", "##カ", "##タ", "##カ", "##ナ"]


def test_combining_marks_stay_on_their_letter():
    assert split_words("Cafe\u0301 \u0915\u093f!\u0301") == ["Cafe\u0301", "\u0915\u093f", "##!\u0301"]


def test_specials_are_unk_and_eos():
    v = words_vocab("a b\n")
    assert v.encode("a <unk> b<eos>").tolist() == [v.index["a"], v.unk_id, v.index["b"], v.eos_id, v.eos_id]


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_round_trip(name):
    text = ROUND_TRIP[name]
    v = words_vocab(text)
    ids = v.encode(text)
    assert v.unk_id not in ids.tolist()
    assert v.decode(ids) == text


def test_whitespace_runs_become_one_space():
    v = words_vocab("a  b\t,c \n")
    assert v.decode(v.encode("  a  b\t,c \n")) == "a b ,c\n"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "é", "\u0301", " ", "\n", ",", "'", "我", "👍", "<unk>", "\r\n", "\t"]),
                max_size=40).map("".join),
       st.integers(1, 7))
def test_streaming_equals_whole_text(tmp_path_factory, text, chunk):
    """Counting and encoding a file in chunks of a few bytes give what the whole text gives."""
    path = tmp_path_factory.mktemp("w") / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    counts = count_tokens([path], "word", False, chunk_bytes=chunk, tokenize="words")
    v = Vocab.from_counts(counts, "word", False, tokenize="words")
    assert encode_file(path, v, chunk_bytes=chunk).tolist() == v.encode(text).tolist()
    assert sum(counts.values()) == sum(1 for t in split_words(text.replace("\r\n", "\n")) if t not in ("<unk>", "<eos>"))


def test_config_keeps_charlm1_files_as_they_were():
    assert "tokenize" not in json.loads(ModelConfig(level="word").to_json())
    words = ModelConfig(level="word", tokenize="words")
    assert json.loads(words.to_json())["tokenize"] == "words"
    assert ModelConfig.from_json(words.to_json(), 2) == words
    with pytest.raises(CharlmError, match="tokenize 'words' is for level 'word'"):
        ModelConfig(level="char", tokenize="words")
    with pytest.raises(CharlmError, match="tokenize"):
        Vocab(["<unk>", "<eos>", "a"], "char", False, tokenize="words")


@pytest.fixture(scope="module")
def words_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("words")
    corpus = d / "corpus.txt"
    corpus.write_text(play(20000), encoding="utf-8")
    out = d / "m.safetensors"
    ok(invoke("train", corpus, "--level", "word", "--tokenize", "words", "--hidden", 16, "--layers", 1,
              "--batch-size", 4, "--seq-len", 8, "--max-steps", 3, "--threads", 1, "-o", out, "-q"))
    return out, corpus


def test_every_command_tokenizes_as_the_model_says(words_model):
    out, corpus = words_model
    assert json.loads(read_metadata(out)["config"])["tokenize"] == "words"
    m = load_model(out)
    assert m.config.tokenize == "words" and any(t.startswith("##") for t in m.vocab)
    import charlm
    lm = charlm.load(out)
    assert lm.vocab.tokenize == "words"
    (s,) = lm.score(["Nay, glad."])
    assert s.tokens == len(split_words("Nay, glad.\n"))
    r = json.loads(ok(invoke("perplexity", "-m", out, corpus, "--json")).stdout)
    assert r["tokens"] == len(lm.vocab.encode(corpus.read_text(encoding="utf-8")))


def test_per_token_shows_the_text_of_an_unknown_token(words_model):
    out, _ = words_model
    rows = ok(invoke("score", "-m", out, "Nay, Zorblaxian!", "--per-token")).stdout.splitlines()
    assert rows[3].startswith("\t<unk>\t") and rows[3].endswith("\t<unk>\tZorblaxian")
    (s,) = [json.loads(x) for x in ok(invoke("score", "-m", out, "Nay, Zorblaxian!", "--per-token", "--json"))
            .stdout.splitlines()]
    assert s["per_token"][2] == {"token": "<unk>", "logprob": s["per_token"][2]["logprob"], "unk": True,
                                 "text": "Zorblaxian"}
    assert "text" not in s["per_token"][0]


def test_resume_keeps_the_tokenizer(words_model, tmp_path):
    out, corpus = words_model
    r = invoke("train", corpus, "--level", "word", "--tokenize", "whitespace", "--resume", "-o", out, "-q")
    one_line_error(r, "--tokenize whitespace conflicts with the run")


def test_tokenize_is_for_word_level(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(play(3000), encoding="utf-8")
    one_line_error(invoke("train", corpus, "--tokenize", "words", "-o", tmp_path / "m.safetensors"),
                   "--tokenize words is for --level word")


# ------------------------------------------------------------------------------------------- BPE

def bpe_vocab(text: str, size: int = 400) -> Vocab:
    from charlm import bpe
    tokenizer = bpe.train(text.split("\n"), size)
    return Vocab(bpe.tokens_of(bpe.load(tokenizer)), "bpe", False, tokenizer=tokenizer)


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_bpe_round_trip_is_exact(name):
    """Byte-level BPE gives back every byte: whitespace runs and line ends included, text it never saw too."""
    text = ROUND_TRIP[name] + "  two  spaces\tand a tab \n\n"
    v = bpe_vocab(ROUND_TRIP["english"])              # learned on English: the other scripts fall to bytes
    ids = v.encode(text)
    assert v.unk_id not in ids.tolist() and (ids == v.eos_id).sum() == text.count("\n")
    assert v.decode(ids) == text
    if name == "english":              # single tokens of a multi-byte character are not text on their own
        assert "".join(v.token_texts(text)) == text


def test_bpe_streaming_equals_whole_text(tmp_path):
    text = "".join(ROUND_TRIP.values()) * 3 + "no newline at the end"
    v = bpe_vocab(text)
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    ids, chars = encode_file_counted(path, v, chunk_bytes=7)
    assert ids.tolist() == v.encode(text).tolist() and chars == len(text) + 1


def test_bpe_model_file_holds_its_tokenizer_as_data(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(play(20000), encoding="utf-8")
    out = tmp_path / "b.safetensors"
    ok(invoke("train", corpus, "--level", "bpe", "--vocab-size", 300, "--hidden", 8, "--layers", 1,
              "--batch-size", 4, "--seq-len", 8, "--max-steps", 2, "--threads", 1, "-o", out, "-q"))
    meta = read_metadata(out)
    assert json.loads(meta["config"])["level"] == "bpe" and json.loads(meta["tokenizer"])["model"]["type"] == "BPE"
    import charlm
    lm = charlm.load(out)
    assert len(lm.vocab) == 300 and lm.vocab.decode(lm.vocab.encode(ROUND_TRIP["mixed"])) == ROUND_TRIP["mixed"]
    ok(invoke("train", corpus, "--resume", "--max-steps", 3, "-o", out, "-q"))      # the run keeps its tokenizer
    one_line_error(invoke("train", corpus, "--level", "bpe", "--min-count", 2, "-o", tmp_path / "x.safetensors"),
                   "drop --min-count")
    one_line_error(invoke("train", corpus, "--vocab-size", 300, "-o", tmp_path / "x.safetensors"),
                   "--vocab-size is for --level bpe")


def test_bpe_model_without_the_library_is_a_one_line_error(tmp_path, monkeypatch):
    import builtins
    corpus = tmp_path / "c.txt"
    corpus.write_text(play(8000), encoding="utf-8")
    out = tmp_path / "b.safetensors"
    ok(invoke("train", corpus, "--level", "bpe", "--vocab-size", 300, "--hidden", 8, "--layers", 1,
              "--batch-size", 4, "--seq-len", 8, "--max-steps", 1, "--threads", 1, "-o", out, "-q"))
    real = builtins.__import__

    def no_tokenizers(name, *args, **kwargs):
        if name == "tokenizers" or name.startswith("tokenizers."):
            raise ImportError("No module named 'tokenizers'")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tokenizers)
    one_line_error(invoke("score", "-m", out, "hello"), "tokenizers", "pip install 'charlm-rnn[bpe]'")
