"""Streaming text reading and batching: files -> token ids -> (B, N) streams -> (T, B) windows.

A file is read in byte chunks through an incremental UTF-8 decoder, so a 100 MB corpus never becomes one
Python object per character: each chunk is tokenized on its own and the ids are kept as a list of numpy
arrays joined once at the end. The result equals `Vocab.encode` of the whole text (charlm.vocab states
the rules). Byte offsets in error messages count from 0 at the start of the file; lines count from 1.
"""
from __future__ import annotations

import codecs
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

from charlm.config import LEVELS
from charlm.errors import CharlmError
from charlm.vocab import BOM, EOS, UNK, Vocab, word_tokens

CHUNK_BYTES = 1 << 20
ENCODING_ERRORS = ("strict", "replace")  # "replace": an invalid byte sequence reads as U+FFFD
SIGMA, FINAL_SIGMA = "\u03a3", "\u03c2"

PathLike = str | os.PathLike


def iter_text(path: PathLike, encoding_errors: str = "strict", chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Yield a UTF-8 file's text in non-empty chunks, a leading BOM dropped and "\\r\\n", "\\r" made "\\n".

    Raise CharlmError for a missing, unreadable or binary (NUL byte) file, and for invalid UTF-8 unless
    `encoding_errors` is "replace".
    """
    if encoding_errors not in ENCODING_ERRORS:
        raise CharlmError(f"encoding errors must be one of {ENCODING_ERRORS}, got {encoding_errors!r}")
    if not (isinstance(chunk_bytes, int) and chunk_bytes >= 1):
        raise CharlmError(f"chunk_bytes must be a positive integer, got {chunk_bytes!r}")
    decoder = codecs.getincrementaldecoder("utf-8")(errors=encoding_errors)
    offset = 0       # bytes read before `data`
    started = False  # some text was decoded, so a BOM can no longer come
    cr = ""          # a "\r" that ended the previous chunk: a "\n" starting this one belongs to it
    try:
        f = _open_binary(path)
    except OSError as e:
        raise _file_error(path, e) from None
    with f:
        while True:
            try:
                data = f.read(chunk_bytes)
            except OSError as e:
                raise _file_error(path, e) from None
            nul = data.find(b"\0")
            if nul >= 0:
                at = offset + nul
                line = _line_at(path, at, chunk_bytes)
                raise CharlmError(f"{path}: looks binary (NUL byte at byte offset {at}, line {line})")
            text = _decode(decoder, data, path, offset, chunk_bytes)
            offset += len(data)
            if text and not started:
                text, started = text.removeprefix(BOM), True
            text = cr + text
            cr = "\r" if data and text.endswith("\r") else ""
            text = text[: len(text) - len(cr)].replace("\r\n", "\n").replace("\r", "\n")
            if text:
                yield text
            if not data:
                return


def _decode(decoder, data: bytes, path: PathLike, offset: int, chunk_bytes: int) -> str:
    """Decode the next chunk (`data` empty: the end of the file), naming the bad byte on a strict error."""
    pending = len(decoder.getstate()[0])  # bytes of an unfinished character held from earlier chunks
    try:
        return decoder.decode(data, final=not data)
    except UnicodeDecodeError as e:
        at = offset - pending + e.start
        line = _line_at(path, at, chunk_bytes)
        raise CharlmError(f"{path}: invalid UTF-8 at byte offset {at}, line {line}: fix the file or pass "
                          f"--encoding-errors replace to read bad bytes as U+FFFD") from None


class ReadOnce:
    """A text source that cannot be read twice (a FIFO, `<(cmd)`, /dev/stdin): its bytes are copied once
    into an anonymous temp file ($TMPDIR), and every read of it comes from that copy. Copying stops at
    the first chunk holding a NUL byte (the reader then reports a binary file), so /dev/zero ends too."""

    def __init__(self, path: PathLike):
        self.path = path
        self._copy = tempfile.TemporaryFile()
        try:
            with open(path, "rb") as src:
                while data := src.read(CHUNK_BYTES):
                    self._copy.write(data)
                    if b"\0" in data:
                        break
            self._copy.flush()
        except OSError as e:
            self._copy.close()
            raise _file_error(path, e) from None

    def open(self):
        fd = os.dup(self._copy.fileno())
        os.lseek(fd, 0, os.SEEK_SET)
        return os.fdopen(fd, "rb")

    def __str__(self) -> str:
        return str(self.path)

    __repr__ = __str__


def read_once(paths: Iterable[PathLike]) -> list:
    """The paths, each one that is not a regular file (nor a folder) read once into a ReadOnce."""
    out = []
    for p in paths:
        try:
            mode = os.stat(p).st_mode
        except (OSError, ValueError):
            mode = stat.S_IFREG  # missing or unreadable: the reader says so
        out.append(p if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or isinstance(p, ReadOnce) else ReadOnce(p))
    return out


def _open_binary(path):
    return path.open() if isinstance(path, ReadOnce) else open(path, "rb")


def _file_error(path: PathLike, e: OSError) -> CharlmError:
    """The one-line message for a file that cannot be opened or read."""
    if isinstance(e, FileNotFoundError):
        return CharlmError(f"{path}: no such file")
    if isinstance(e, IsADirectoryError):
        return CharlmError(f"{path}: is a directory, not a text file")
    if isinstance(e, PermissionError):
        return CharlmError(f"{path}: permission denied")
    return CharlmError(f"{path}: cannot read ({e.strerror or e})")


def _line_at(path: PathLike, offset: int, chunk_bytes: int) -> int:
    """The 1-based line holding byte `offset` of a file, lines ending at "\\n", "\\r\\n" or "\\r".

    Used on the error path only, so it simply reads the file again up to `offset`, in the same chunks.
    """
    breaks, cr = 0, False  # cr: the previous block ended with "\r"
    if not isinstance(path, ReadOnce) and not os.path.isfile(path):
        return 0  # a stream that cannot be read again: the line is unknown
    with _open_binary(path) as f:
        while offset > 0 and (data := f.read(min(offset, chunk_bytes))):
            offset -= len(data)
            breaks += data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") - (cr and data[:1] == b"\n")
            cr = data.endswith(b"\r")
    return breaks + 1


def _lower_chunks(chunks: Iterable[str]) -> Iterator[str]:
    """Lower-case a chunked text exactly as `str.lower()` lowers the whole text; yield non-empty chunks.

    `str.lower()` maps each code point on its own except capital sigma, which becomes final ς when a cased
    letter comes before it and none after it (case-ignorable marks skipped). So each chunk is lowered behind
    one stand-in for the text before it ("a" if that ends in a cased letter, else " "), and a last Σ that
    nothing has decided yet is held back, with the marks after it, until the next chunk.
    """
    before, held = " ", ""
    for chunk in chunks:
        text = held + chunk
        held = text[_undecided_sigma(text):]
        lowered = (before + text).lower()
        out = lowered[1 : len(lowered) - len(held.lower())]  # Σ lowers to one code point either way
        before = "a" if (before + text[: len(text) - len(held)] + SIGMA).lower()[-1] == FINAL_SIGMA else " "
        if out:
            yield out
    if held:
        yield (before + held).lower()[1:]


def _undecided_sigma(text: str) -> int:
    """The index of the last Σ of `text` if only case-ignorable marks follow it, else len(text)."""
    i = text.rfind(SIGMA)
    if i < 0:
        return len(text)
    probe = "a" + text[i:]  # the Σ after a cased letter: final unless a cased letter follows
    return i if (probe + "a").lower()[1] != (probe + " ").lower()[1] else len(text)


def _whole_words(chunks: Iterable[str]) -> Iterator[str]:
    """Re-cut non-empty text chunks so that every piece but the last ends in whitespace (no word is cut)."""
    tail: list[str] = []  # the pieces of a partial word waiting for the rest of it (joined once: a
    for chunk in chunks:  # 100 MB "word" costs linear time, not one copy per chunk)
        if chunk[-1].isspace():
            yield "".join(tail) + chunk
            tail = []
            continue
        word = chunk.rsplit(None, 1)[-1]
        head = chunk[: len(chunk) - len(word)]
        if head:
            yield "".join(tail) + head
            tail = [word]
        else:
            tail.append(word)
    if tail:
        yield "".join(tail)


def _pieces(path: PathLike, level: str, lowercase: bool, encoding_errors: str, chunk_bytes: int,
            seen: list | None = None) -> Iterator[str]:
    """A file's text in non-empty pieces ready to tokenize: normalized, lower-cased if asked, words whole.
    seen: a one-element list to which the characters of the normalized text are added (before lower-casing)."""
    if level not in LEVELS:
        raise CharlmError(f"level must be one of {LEVELS}, got {level!r}")
    chunks = iter_text(path, encoding_errors, chunk_bytes)
    if seen is not None:
        chunks = _counting(chunks, seen)
    if lowercase:
        chunks = _lower_chunks(chunks)
    if level == "bpe":
        return _whole_lines(chunks)
    return _whole_words(chunks) if level == "word" else chunks


def _whole_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Re-cut non-empty text chunks so that every piece but the last ends in "\\n" (BPE encodes whole lines)."""
    tail: list[str] = []
    for chunk in chunks:
        cut = chunk.rfind("\n") + 1
        if cut:
            yield "".join(tail) + chunk[:cut]
            tail = [chunk[cut:]] if cut < len(chunk) else []
        else:
            tail.append(chunk)
    if tail:
        yield "".join(tail)


def read_lines(paths: PathLike | Iterable[PathLike], lowercase: bool, encoding_errors: str = "strict") -> list[str]:
    """The lines of text files, normalized and lower-cased if asked, without their newlines; an unterminated
    last line counts as a line (as it gets its EOS)."""
    lines: list[str] = []
    for path in _path_list(paths):
        text = "".join(_pieces(path, "char", lowercase, encoding_errors, CHUNK_BYTES))
        lines += text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
    return lines


def _counting(chunks: Iterable[str], seen: list) -> Iterator[str]:
    """The chunks, each one's length added to seen[0] as it passes."""
    for chunk in chunks:
        seen[0] += len(chunk)
        yield chunk


def _path_list(paths: PathLike | Iterable[PathLike]) -> list[PathLike]:
    """One path or several, as a list."""
    return [paths] if isinstance(paths, (str, os.PathLike, ReadOnce)) else list(paths)


def count_tokens(paths: PathLike | Iterable[PathLike], level: str, lowercase: bool,
                 encoding_errors: str = "strict", chunk_bytes: int = CHUNK_BYTES,
                 tokenize: str = "whitespace") -> Counter:
    """Count the regular tokens of text files, streaming: code points but "\\n" (char) or words (word,
    split by `tokenize`: charlm.vocab.word_tokens).

    At word level the literal words "<unk>" and "<eos>" are not counted: they encode as UNK and EOS.
    """
    counts: Counter = Counter()
    for path in _path_list(paths):
        for piece in _pieces(path, level, lowercase, encoding_errors, chunk_bytes):
            counts.update(piece if level == "char" else piece.split() if tokenize == "whitespace"
                          else word_tokens(piece, tokenize))
    for special in ("\n",) if level == "char" else (UNK, EOS):
        counts.pop(special, None)
    return counts


def encode_file(path: PathLike, vocab: Vocab, encoding_errors: str = "strict",
                chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Token ids of a text file, streaming; equal to `vocab.encode` of its whole text: (N,) int32."""
    return encode_file_counted(path, vocab, encoding_errors, chunk_bytes)[0]


def encode_file_counted(path: PathLike, vocab: Vocab, encoding_errors: str = "strict",
                        chunk_bytes: int = CHUNK_BYTES) -> tuple[np.ndarray, int]:
    """(token ids (N,) int32, characters) of a text file in one streaming pass; the characters are
    charlm.vocab.characters of its whole text (the denominator of bits per character)."""
    parts = [np.zeros(0, dtype=np.int32)]  # (n_i,) int32 per piece
    last = "\n"  # the last character read: an unterminated last line still needs its EOS
    seen = [0]
    for piece in _pieces(path, vocab.level, vocab.lowercase, encoding_errors, chunk_bytes, seen):
        parts.append(vocab.encode_normalized(piece))
        last = piece[-1]
    if last != "\n":
        parts.append(np.array([vocab.eos_id], dtype=np.int32))
        seen[0] += 1
    return np.concatenate(parts), seen[0]


def encode_files(paths: PathLike | Iterable[PathLike], vocab: Vocab, encoding_errors: str = "strict",
                 chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Token ids of several files, one after the other (each ends its last line with EOS): (N,) int32."""
    parts = [encode_file(p, vocab, encoding_errors, chunk_bytes) for p in _path_list(paths)]
    return np.concatenate([np.zeros(0, dtype=np.int32)] + parts)


def split_tail(ids: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split ids (N,) into (train, valid) views: valid is the last round(N * fraction) tokens."""
    if isinstance(fraction, bool) or not (isinstance(fraction, (int, float)) and 0 <= fraction < 1):
        raise CharlmError(f"validation fraction must be at least 0 and below 1, got {fraction!r}")
    n_train = len(ids) - round(len(ids) * fraction)
    return ids[:n_train], ids[n_train:]


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a token stream (N_total,) into B contiguous parallel streams (B, N) int32, N = N_total // B.

    Row b holds ids[b*N:(b+1)*N]; the last N_total - B*N tokens are dropped.
    """
    _check_positive("batch_size", batch_size)
    n = len(ids) // batch_size
    return np.ascontiguousarray(ids[: batch_size * n], dtype=np.int32).reshape(batch_size, n)  # (B, N)


def min_tokens_for(batch_size: int, seq_len: int) -> int:
    """Tokens needed for one full window of B streams: each needs T inputs plus one more target."""
    return batch_size * (seq_len + 1)


def check_enough(ids: np.ndarray, batch_size: int, seq_len: int, what: str) -> None:
    """Raise CharlmError unless `ids` fills one full (seq_len, batch_size) window; `what` names the text."""
    need = min_tokens_for(batch_size, seq_len)
    if len(ids) < need:
        raise CharlmError(f"{what} has {len(ids)} tokens, too short for one batch of --batch-size {batch_size} "
                          f"x --seq-len {seq_len} (needs {need}): use a smaller --batch-size or --seq-len")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 1):
        raise CharlmError(f"{name} must be a positive integer, got {value!r}")
