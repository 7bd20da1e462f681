"""Vocab: the spec's "Text to tokens" rules, vocabulary building, decoding and validation."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.errors import CharlmError
from charlm.vocab import Vocab

# Pieces of tricky text: newlines of every style, a BOM, multi-byte and case-changing characters,
# capital sigma (lower-cased by context) with a combining mark, and the literal special words.
PIECES = ["a", "b", "A", "B", " ", "\t", "\n", "\r", "\r\n", "\ufeff", "é", "😀", "Σ", "\u0301", "İ", "ß",
          "<unk>", "<eos>", "<UNK>", "\x85", "\u2028"]


def spec_tokens(text: str, level: str, lowercase: bool) -> list[str]:
    """The spec's token strings of a text, written out as plainly as possible (the reference)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if lowercase:
        text = text.lower()
    lines = text.split("\n")
    if text == "" or text.endswith("\n"):
        lines.pop()
    out = []
    for line in lines:
        out += list(line) if level == "char" else line.split()
        out.append("<eos>")
    return out


def spec_ids(vocab: Vocab, text: str) -> list[int]:
    return [vocab.index.get(tok, vocab.unk_id) for tok in spec_tokens(text, vocab.level, vocab.lowercase)]


def char_vocab(text="abc", lowercase=False) -> Vocab:
    return Vocab.from_counts(Counter(text), "char", lowercase)


def word_vocab(text="the cat sat", lowercase=False) -> Vocab:
    return Vocab.from_counts(Counter(text.split()), "word", lowercase)


def test_every_line_ends_with_eos():
    v = char_vocab("ab")
    a, b, eos = v.index["a"], v.index["b"], v.eos_id
    assert v.encode("ab\nba").tolist() == [a, b, eos, b, a, eos]


def test_final_newline_ends_the_last_line_without_starting_another():
    v = char_vocab("a")
    a, eos = v.index["a"], v.eos_id
    assert v.encode("a").tolist() == v.encode("a\n").tolist() == [a, eos]
    assert v.encode("a\n\n").tolist() == [a, eos, eos]


def test_empty_lines_are_a_lone_eos_and_empty_text_has_no_tokens():
    v = char_vocab("a")
    a, eos = v.index["a"], v.eos_id
    assert v.encode("\n").tolist() == [eos]
    assert v.encode("a\n\na").tolist() == [a, eos, eos, a, eos]
    empty = v.encode("")
    assert empty.shape == (0,) and empty.dtype == np.int32
    w = word_vocab("a")
    assert w.encode("a\n   \n\t").tolist() == [w.index["a"], w.eos_id, w.eos_id, w.eos_id]


def test_universal_newlines():
    v = char_vocab("ab")
    assert v.encode("a\r\nb\rb\r").tolist() == v.encode("a\nb\nb\n").tolist()
    assert v.encode("a\r\r\n").tolist() == v.encode("a\n\n").tolist()


def test_leading_bom_is_dropped_and_only_that_one():
    v = char_vocab("ab")
    assert v.encode("\ufeffab").tolist() == v.encode("ab").tolist()
    assert v.encode("a\ufeffb").tolist() == [v.index["a"], v.unk_id, v.index["b"], v.eos_id]


def test_unseen_characters_are_unk():
    v = char_vocab("ab")
    ids = v.encode("a😀zb")
    assert ids.tolist() == [v.index["a"], v.unk_id, v.unk_id, v.index["b"], v.eos_id]
    assert int((ids == v.unk_id).sum()) == 2


def test_word_level_splits_on_whitespace_and_reads_literal_specials():
    v = word_vocab("the cat sat")
    the, cat, unk, eos = v.index["the"], v.index["cat"], v.unk_id, v.eos_id
    assert v.encode(" the\tcat  <unk> dog\n").tolist() == [the, cat, unk, unk, eos]
    assert v.encode("the <eos> cat").tolist() == [the, eos, cat, eos]
    assert v.encode("the<eos>").tolist() == [unk, eos]  # not a word of its own: an unknown word


def test_lowercase_char_and_word():
    v = char_vocab("ab", lowercase=True)
    assert v.encode("AbA").tolist() == [v.index["a"], v.index["b"], v.index["a"], v.eos_id]
    w = word_vocab("the cat", lowercase=True)
    assert w.encode("The CAT <UNK>").tolist() == [w.index["the"], w.index["cat"], w.unk_id, w.eos_id]
    g = Vocab.from_counts(Counter("οδσς "), "char", True)  # capital sigma lowers to ς only at a word's end
    assert g.decode(g.encode("ΟΔΟΣ ΣΟ")) == "οδος σο\n"


def test_from_counts_orders_by_count_then_string():
    counts = Counter({"b": 3, "a": 3, "c": 5, "d": 1})
    assert Vocab.from_counts(counts, "char", False).tokens == ["<unk>", "<eos>", "c", "a", "b", "d"]
    assert Vocab.from_counts(counts, "char", False, min_count=2).tokens == ["<unk>", "<eos>", "c", "a", "b"]
    assert Vocab.from_counts(counts, "char", False, max_size=4).tokens == ["<unk>", "<eos>", "c", "a"]
    assert Vocab.from_counts(counts, "char", False, max_size=3).tokens == ["<unk>", "<eos>", "c"]


def test_from_counts_skips_keys_that_are_never_regular_tokens():
    assert Vocab.from_counts(Counter("a\n\n"), "char", False).tokens == ["<unk>", "<eos>", "a"]
    words = Counter({"<unk>": 9, "<eos>": 9, "x": 1})
    assert Vocab.from_counts(words, "word", False).tokens == ["<unk>", "<eos>", "x"]


@pytest.mark.parametrize("kwargs", [{"max_size": 2}, {"max_size": 0}, {"min_count": 0}, {"min_count": 1.5}])
def test_from_counts_rejects_bad_limits(kwargs):
    with pytest.raises(CharlmError):
        Vocab.from_counts(Counter("ab"), "char", False, **kwargs)


@pytest.mark.parametrize("tokens, level, match", [
    (["<unk>", "<eos>", "a", "a"], "char", "more than once"),
    (["<eos>", "<unk>", "a"], "char", "expected '<unk>'"),
    (["<unk>", "<eos>", "ab"], "char", "one character"),
    (["<unk>", "<eos>", "\n"], "char", "one character"),
    (["<unk>", "<eos>", "a b"], "word", "without whitespace"),
    (["<unk>", "<eos>", ""], "word", "without whitespace"),
    (["<unk>"], "char", "eos_id 1"),
    (["<unk>", "<eos>", 3], "char", "not a string"),
    (["<unk>", "<eos>"], "byte", "level"),
])
def test_constructor_validates(tokens, level, match):
    with pytest.raises(CharlmError, match=match):
        Vocab(tokens, level, False)


def test_constructor_accepts_other_special_ids():
    v = Vocab(["<eos>", "x", "<unk>"], "char", False, unk_id=2, eos_id=0)
    assert v.encode("xy").tolist() == [1, 2, 0]
    assert v.decode([1, 2, 0]) == "x\ufffd\n"


def test_char_decode_round_trip():
    text = "First line\r\nsecond\rthird\n\nlast"
    v = char_vocab(text)
    assert v.decode(v.encode(text)) == "First line\nsecond\nthird\n\nlast\n"
    assert v.decode(v.encode("Fz"), eos_as="|") == "F\ufffd|"


def test_word_decode_joins_with_single_spaces():
    v = word_vocab("a b c")
    assert v.decode(v.encode("a  b\n\n c\tzz")) == "a b\n\nc <unk>\n"
    assert v.decode(v.encode("a b\nc"), eos_as=" | ") == "a b | c | "
    assert v.decode([]) == ""


def test_decode_rejects_bad_ids():
    v = char_vocab("ab")
    with pytest.raises(CharlmError, match="outside the vocabulary"):
        v.decode([0, 4])
    with pytest.raises(CharlmError, match="outside the vocabulary"):
        v.decode(np.array([-1]))


def test_token_repr():
    v = char_vocab("a \t")
    assert [v.token_repr(i) for i in range(len(v))] == ["<unk>", "<eos>", "'\\t'", "' '", "a"]
    assert word_vocab("cat").token_repr(2) == "cat"


def test_immutable_value_semantics():
    v = char_vocab("ab")
    v.tokens.append("z")
    assert len(v) == 4 and v.tokens == ["<unk>", "<eos>", "a", "b"]
    with pytest.raises(TypeError):
        v.index["z"] = 9
    with pytest.raises(AttributeError):
        v.level = "word"
    assert v == char_vocab("ab") and hash(v) == hash(char_vocab("ab"))
    assert v != char_vocab("ab", lowercase=True) and v != char_vocab("abc")


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
       st.sampled_from(["char", "word"]), st.booleans())
def test_encode_follows_the_spec(text, level, lowercase):
    seen = spec_tokens(text, level, lowercase)
    counts = Counter(tok for tok in seen[::2] if tok != "<eos>")  # every other token known: some UNKs
    v = Vocab.from_counts(counts, level, lowercase)
    ids = v.encode(text)
    assert ids.dtype == np.int32
    assert ids.tolist() == spec_ids(v, text)
