"""data: streaming reading (chunk boundaries, encodings, bad files), counting, encoding and batching."""
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm import data
from charlm.errors import CharlmError
from charlm.vocab import Vocab
from support import real_corpus

PIECES = ["a", "b", "A", " ", "\t", "\n", "\r", "\r\n", "\ufeff", "é", "😀", "中", "Σ", "\u0301", "İ",
          "<unk>", "<eos>", "xyz"]


def write(tmp_path: Path, content: bytes | str, name: str = "t.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read(path: Path, **kwargs) -> str:
    return "".join(data.iter_text(path, **kwargs))


def test_iter_text_translates_newlines_across_every_chunk_boundary(tmp_path):
    raw = "\ufeffa\r\nb\rc\r\r\nd\n\re\r"
    path = write(tmp_path, raw)
    for k in range(1, len(raw.encode()) + 2):
        chunks = list(data.iter_text(path, chunk_bytes=k))
        assert "".join(chunks) == "a\nb\nc\n\nd\n\ne\n", k
        assert all(chunks)


def test_iter_text_drops_only_a_leading_bom(tmp_path):
    for k in (1, 2, 3, 100):
        assert read(write(tmp_path, "\ufeff\ufeffab"), chunk_bytes=k) == "\ufeffab"


def test_multibyte_characters_straddle_chunks(tmp_path):
    text = "é😀中a😀"
    path = write(tmp_path, text)
    for k in range(1, 6):
        assert read(path, chunk_bytes=k) == text


def test_empty_file(tmp_path):
    path = write(tmp_path, b"")
    assert list(data.iter_text(path)) == []
    assert data.count_tokens([path], "char", False) == Counter()
    ids = data.encode_file(path, Vocab.from_counts(Counter("a"), "char", False))
    assert ids.shape == (0,) and ids.dtype == np.int32


def test_count_tokens_char_skips_newlines(tmp_path):
    path = write(tmp_path, "abca\r\n\nb")
    assert data.count_tokens([path], "char", False, chunk_bytes=2) == Counter({"a": 2, "b": 2, "c": 1})
    assert data.count_tokens(path, "char", True) == data.count_tokens(write(tmp_path, "ABCA\n\nB"), "char", True)


def test_count_tokens_word_straddling_chunks(tmp_path):
    path = write(tmp_path, "hello world hello\nfoo  <unk> bar <eos>\n\nworld")
    want = Counter({"hello": 2, "world": 2, "foo": 1, "bar": 1})
    for k in range(1, 12):
        assert data.count_tokens([path], "word", False, chunk_bytes=k) == want, k


def test_count_tokens_over_several_files(tmp_path):
    a, b = write(tmp_path, "ab", "a.txt"), write(tmp_path, "bc", "b.txt")
    assert data.count_tokens([a, b], "char", False) == Counter({"a": 1, "b": 2, "c": 1})


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), max_size=25).map("".join), st.sampled_from(["char", "word"]),
       st.booleans(), st.integers(1, 8))
def test_encode_file_equals_encode_of_the_whole_text(tmp_path, text, level, lowercase, chunk_bytes):
    path = write(tmp_path, text)
    counts = data.count_tokens([path], level, lowercase, chunk_bytes=chunk_bytes)
    assert counts == data.count_tokens([path], level, lowercase)
    vocab = Vocab.from_counts(counts, level, lowercase, max_size=5)
    ids = data.encode_file(path, vocab, chunk_bytes=chunk_bytes)
    assert ids.dtype == np.int32
    assert ids.tolist() == vocab.encode(text).tolist()


def test_lowercasing_capital_sigma_across_chunk_boundaries(tmp_path):
    text = "ΟΔΟΣ ΣΟ ΑΣ\u0301\u0301 ΑΣ\u0301Β Σ\u0301\u0301\u0301" * 2
    path = write(tmp_path, text)
    vocab = Vocab.from_counts(Counter(text.lower()), "char", True)
    for k in range(1, 12):
        assert data.encode_file(path, vocab, chunk_bytes=k).tolist() == vocab.encode(text).tolist(), k


def test_encode_files_concatenates(tmp_path):
    a, b = write(tmp_path, "ab", "a.txt"), write(tmp_path, "b\n", "b.txt")
    vocab = Vocab.from_counts(Counter("ab"), "char", False)
    assert data.encode_files([a, b], vocab).tolist() == vocab.encode("ab\nb\n").tolist()
    assert data.encode_files([], vocab).shape == (0,)


def test_a_long_line_is_read_in_bounded_pieces(tmp_path):
    line = write(tmp_path, "ab" * 50_000)  # one line, no newline, no space
    assert max(map(len, data._pieces(line, "char", True, "strict", 1000))) <= 1000
    spaced = write(tmp_path, "ab " * 50_000, "spaced.txt")  # at word level only a partial word is carried
    assert max(map(len, data._pieces(spaced, "word", True, "strict", 1000))) <= 1000 + len("ab")


def test_nul_byte_is_binary(tmp_path):
    path = write(tmp_path, b"ab\ncd\x00ef")
    for k in (1, 4, 100):
        with pytest.raises(CharlmError, match=r"t\.txt: looks binary \(NUL byte at byte offset 5, line 2\)"):
            read(path, chunk_bytes=k)


@pytest.mark.parametrize("raw, offset, line", [
    (b"ab\ncd\xffef", 5, 2),
    (b"a\rb\r\nc\n\xff", 7, 4),
    (b"ab\xe2\x82x", 2, 1),       # a three-byte character cut short by an ASCII byte
    (b"\xef\xbb\xbfab\xe2\x82", 5, 1),  # cut short by the end of the file; the BOM counts in offsets
])
def test_invalid_utf8_names_offset_and_line(tmp_path, raw, offset, line):
    path = write(tmp_path, raw)
    for k in (1, 3, 100):
        with pytest.raises(CharlmError) as err:
            read(path, chunk_bytes=k)
        message = str(err.value)
        assert f"t.txt: invalid UTF-8 at byte offset {offset}, line {line}" in message
        assert "--encoding-errors replace" in message and "\n" not in message


def test_replace_mode_reads_bad_bytes_as_replacement_characters(tmp_path):
    path = write(tmp_path, b"a\xffb\xe2\x82")
    for k in (1, 2, 100):
        assert read(path, encoding_errors="replace", chunk_bytes=k) == "a\ufffdb\ufffd"
    vocab = Vocab.from_counts(Counter("ab"), "char", False)
    assert data.encode_file(path, vocab, encoding_errors="replace").tolist() == [2, 0, 3, 0, 1]
    with pytest.raises(CharlmError, match="encoding errors"):
        read(path, encoding_errors="ignore")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CharlmError, match=r"nope\.txt: no such file"):
        read(tmp_path / "nope.txt")
    with pytest.raises(CharlmError, match="is a directory"):
        data.count_tokens([tmp_path], "char", False)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user that permissions apply to")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "a")
    path.chmod(0)
    with pytest.raises(CharlmError, match="permission denied"):
        read(path)


def test_split_tail():
    train, valid = data.split_tail(np.arange(10, dtype=np.int32), 0.3)
    assert train.tolist() == list(range(7)) and valid.tolist() == [7, 8, 9]
    train, valid = data.split_tail(np.arange(10, dtype=np.int32), 0)
    assert len(train) == 10 and len(valid) == 0
    with pytest.raises(CharlmError):
        data.split_tail(np.arange(10), 1.0)


def test_batchify_makes_contiguous_rows():
    streams = data.batchify(np.arange(11, dtype=np.int64), 3)
    assert streams.dtype == np.int32 and streams.flags.c_contiguous
    assert streams.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(CharlmError, match="batch_size must be a positive integer"):
        data.batchify(np.arange(11), 0)


def test_check_enough():
    assert data.min_tokens_for(32, 64) == 2080
    data.check_enough(np.zeros(2080), 32, 64, "train.txt")
    with pytest.raises(CharlmError) as err:
        data.check_enough(np.zeros(120), 32, 64, "train.txt")
    assert str(err.value) == ("train.txt has 120 tokens, too short for one batch of --batch-size 32 x --seq-len 64 "
                              "(needs 2080): use a smaller --batch-size or --seq-len")


def test_tinyshakespeare_streams_like_the_whole_text():
    """The real-corpus layer (skips without ../shared/corpora)."""
    SHAKESPEARE = real_corpus("tinyshakespeare/input.txt")
    text = SHAKESPEARE.read_text(encoding="utf-8")
    vocab = Vocab.from_counts(data.count_tokens([SHAKESPEARE], "char", False), "char", False)
    assert len(set(text)) == 65 and len(vocab) == 64 + 2  # the 65th character, "\n", is EOS
    ids = data.encode_file(SHAKESPEARE, vocab, chunk_bytes=1 << 16)
    assert np.array_equal(ids, vocab.encode(text))
    assert len(ids) == len(text) and vocab.decode(ids) == text
