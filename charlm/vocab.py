"""The vocabulary: text to token ids and back, by the rules of docs/model-format.md, "Text to tokens".

Tokens of a text, in order:
- A leading BOM (U+FEFF) is dropped; "\\r\\n" and lone "\\r" become "\\n"; the text is lower-cased with
  `str.lower()` if `lowercase` is set.
- The text is cut into lines at "\\n". A final "\\n" ends the last line and does not start an empty one;
  empty text has no lines and so no tokens.
- A line's tokens are its code points (level "char") or its words (level "word"), then one EOS. Words are
  `line.split()` (tokenize "whitespace", the charlm/1 rule, right for pre-tokenized text such as Penn
  Treebank) or `split_words(line)` (tokenize "words", for raw text: punctuation and symbols apart from
  letters and digits, see there). At level "bpe" a line's tokens are those of the byte-level BPE
  tokenizer the vocabulary holds (charlm.bpe).
- A token missing from the vocabulary is UNK. At word level the literal words "<unk>" and "<eos>" are
  UNK and EOS themselves (Penn Treebank marks rare words "<unk>"); they are never regular tokens.

Ids: UNK and EOS first (ids 0 and 1 in a vocabulary built here), then the regular tokens by descending
count, ties broken by the token string, so a vocabulary is a pure function of its counts (at level
"bpe": the tokenizer's order, the 256 bytes then the merges).
"""
from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from itertools import repeat
from types import MappingProxyType

import numpy as np

from charlm.config import LEVELS, TOKENIZERS
from charlm.errors import CharlmError

UNK = "<unk>"
EOS = "<eos>"
BOM = "\ufeff"
REPLACEMENT = "\ufffd"  # how decode shows UNK at char level
GLUE = "##"             # tokenize "words": prefix of a token written right after the previous one (no space)

# Scripts written without spaces between words, where a token is one character (as BERT's basic tokenizer
# does): CJK ideographs (the unified blocks, extensions A-G, compatibility ideographs), hiragana, katakana.
_ONE_CHAR_SCRIPTS = ("\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
                     "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f\U00030000-\U0003134f")


def normalize(text: str) -> str:
    """Drop a leading BOM and translate universal newlines ("\\r\\n" and "\\r" become "\\n")."""
    return text.removeprefix(BOM).replace("\r\n", "\n").replace("\r", "\n")


@cache
def _marks() -> str:
    """A regex class body of every combining mark (categories Mn, Mc, Me) of this Python's Unicode database:
    `re`'s \\w leaves them out, so without them "e" + U+0301 would be cut after the "e"."""
    ranges, start, prev = [], None, None
    for cp in [*range(0x40000), *range(0xE0000, sys.maxunicode + 1)]:   # planes 4-13 hold no characters
        if unicodedata.category(chr(cp)).startswith("M"):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            ranges.append((start, prev))
            start = None
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@cache
def _words_re() -> re.Pattern:
    """The token pattern of tokenize "words" (split_words states it in words)."""
    one, marks = _ONE_CHAR_SCRIPTS, _marks()
    w = rf"(?:(?![{one}])[\w{marks}])"                      # a letter, digit, "_" or mark, not of `one`
    return re.compile(rf"<unk>|<eos>|\n|[{one}][{marks}]*|{w}+(?:['\u2019]{w}+)*|\S[{marks}]*")


def split_words(text: str) -> list[str]:
    """The tokens of tokenize "words", each "\\n" as EOS: for raw text, where whitespace splitting would
    keep punctuation on words ("glad." and "glad" two words, the first one often <unk>).

    A token is, at the first rule that matches from left to right:
    - the literal "<unk>" or "<eos>" (UNK and EOS, as with whitespace splitting);
    - one character of a script written without spaces (CJK ideographs, hiragana, katakana), with its
      combining marks;
    - a run of letters, digits, "_" and combining marks of any script (str.isalnum's letters and digits:
      Latin, Cyrillic, Greek, Arabic, Devanagari, Hangul, Thai ...), where an apostrophe (' or U+2019)
      between two such characters stays inside: "don't", "O'Brien" and "rock'n'roll" are one token each,
      while "'tis" and "dogs'" have the apostrophe apart;
    - any other non-whitespace character (punctuation, symbols, emoji), with its combining marks.
    Whitespace separates tokens. A token that follows the previous one on its line with no whitespace
    between them carries the prefix GLUE ("##", as WordPiece marks a continuation): "glad." is "glad",
    "##.". So decoding puts back exactly the text, but for runs of whitespace, which become one space
    (and whitespace at a line's ends, which goes), as with whitespace splitting.
    """
    out = []
    for m in _words_re().finditer(text):
        tok, at = m.group(), m.start()
        if tok == "\n":
            out.append(EOS)
        elif at and not text[at - 1].isspace() and tok not in (UNK, EOS):
            out.append(GLUE + tok)
        else:
            out.append(tok)
    return out


def word_tokens(text: str, tokenize: str) -> list[str]:
    """The word-level tokens of normalized text, each "\\n" as EOS."""
    if tokenize == "whitespace":
        return text.replace("\n", f" {EOS} ").split()
    return split_words(text)


def characters(text: str) -> int:
    """The characters of a text, the denominator of bits per character: its code points after `normalize`
    (so "\\r\\n" counts once), with one for the end of every line, an unterminated last one too. At
    char level a text has as many characters as tokens (a newline is an EOS)."""
    text = normalize(text)
    return len(text) + (1 if text and not text.endswith("\n") else 0)


class Vocab:
    """An immutable token list with its level ("char" | "word") and lower-casing flag.

    `tokens[i]` is the string of id `i`; `index` maps a token string back to its id.
    """

    def __init__(self, tokens: Sequence[str], level: str, lowercase: bool, unk_id: int = 0, eos_id: int = 1,
                 tokenize: str = "whitespace", tokenizer: str | None = None):
        self._tokens = tuple(tokens)
        self._level = level
        self._lowercase = lowercase
        self._unk_id = unk_id
        self._eos_id = eos_id
        self._tokenize = tokenize
        self._tokenizer = tokenizer      # level "bpe": the tokenizer's JSON (charlm.bpe)
        self._validate()
        if level == "bpe":
            from charlm import bpe
            self._bpe = bpe.load(tokenizer, "vocabulary")
            if bpe.tokens_of(self._bpe) != list(self._tokens):
                raise CharlmError("vocabulary: the BPE tokenizer's tokens are not the vocabulary's")
        self._index = {tok: i for i, tok in enumerate(self._tokens)}
        if level == "char":
            self._lut = self._char_table()

    def _validate(self) -> None:
        """Raise CharlmError unless the tokens, level, flags and special ids make a usable vocabulary."""
        tokens, n = self._tokens, len(self._tokens)
        if self._level not in LEVELS:
            raise CharlmError(f"vocabulary: level must be one of {LEVELS}, got {self._level!r}")
        if (self._level == "bpe") != isinstance(self._tokenizer, str):
            raise CharlmError("vocabulary: level 'bpe' needs its tokenizer (JSON), and only it has one")
        if self._tokenize not in TOKENIZERS or (self._tokenize != "whitespace" and self._level != "word"):
            raise CharlmError(f"vocabulary: tokenize must be one of {TOKENIZERS} (not whitespace at word level "
                              f"only), got {self._tokenize!r} at level {self._level!r}")
        if not isinstance(self._lowercase, bool):
            raise CharlmError(f"vocabulary: lowercase must be true or false, got {self._lowercase!r}")
        bad = next((i for i, tok in enumerate(tokens) if not isinstance(tok, str)), None)
        if bad is not None:
            raise CharlmError(f"vocabulary: token at id {bad} is not a string: {tokens[bad]!r}")
        for name, i, want in (("unk_id", self._unk_id, UNK), ("eos_id", self._eos_id, EOS)):
            if not (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n):
                raise CharlmError(f"vocabulary: {name} {i!r} is not an id below {n}")
            if tokens[i] != want:
                raise CharlmError(f"vocabulary: token at {name} {i} is {tokens[i]!r}, expected {want!r}")
        if len(set(tokens)) != n:
            dup = next(tok for tok, c in Counter(tokens).items() if c > 1)
            raise CharlmError(f"vocabulary: token {dup!r} appears more than once")
        for i, tok in enumerate(tokens):
            if i in (self._unk_id, self._eos_id):
                continue
            if self._level == "char" and (len(tok) != 1 or tok == "\n"):
                raise CharlmError(f"vocabulary: char-level token at id {i} must be one character other than "
                                  f"a newline, got {tok!r}")
            if self._level == "word" and tok.split() != [tok]:
                raise CharlmError(f"vocabulary: word-level token at id {i} must be non-empty without "
                                  f"whitespace, got {tok!r}")

    def _char_table(self) -> np.ndarray:
        """A dense code point -> id table (int32); its last entry is UNK and stands for every larger code point."""
        top = max([ord(tok) for tok in self._tokens if len(tok) == 1] + [ord("\n")])
        lut = np.full(top + 2, self._unk_id, dtype=np.int32)  # (top + 2,)
        for i, tok in enumerate(self._tokens):
            if len(tok) == 1:
                lut[ord(tok)] = i
        lut[ord("\n")] = self._eos_id
        return lut

    @classmethod
    def from_counts(cls, counter: Mapping[str, int], level: str, lowercase: bool, min_count: int = 1,
                    max_size: int | None = None, tokenize: str = "whitespace") -> "Vocab":
        """Build a vocabulary from token counts (as `charlm.data.count_tokens` returns them).

        Tokens counted fewer than `min_count` times are left out; `max_size`, the specials included, keeps
        only the most frequent ones. Left-out tokens encode as UNK. Keys that never become regular tokens
        ("\\n" at char level, "<unk>" and "<eos>" at word level) are skipped.
        """
        if not (isinstance(min_count, int) and min_count >= 1):
            raise CharlmError(f"min_count must be an integer >= 1, got {min_count!r}")
        if max_size is not None and not (isinstance(max_size, int) and max_size >= 3):
            raise CharlmError(f"max_size must be an integer >= 3 (it counts <unk> and <eos>), got {max_size!r}")
        skip = {"\n"} if level == "char" else {UNK, EOS}
        kept = sorted(((tok, c) for tok, c in counter.items() if c >= min_count and tok not in skip),
                      key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls([UNK, EOS] + [tok for tok, _ in kept], level, lowercase, tokenize=tokenize)

    @property
    def tokens(self) -> list[str]:
        """The token strings, list index = id (a fresh copy: the vocabulary itself never changes)."""
        return list(self._tokens)

    @property
    def index(self) -> Mapping[str, int]:
        """Read-only token string -> id lookup (specials included)."""
        return MappingProxyType(self._index)

    @property
    def level(self) -> str:
        return self._level

    @property
    def tokenize(self) -> str:
        return self._tokenize

    @property
    def tokenizer(self) -> str | None:
        """Level "bpe": the tokenizer's JSON, stored in the model file; else None."""
        return self._tokenizer

    @property
    def lowercase(self) -> bool:
        return self._lowercase

    @property
    def unk_id(self) -> int:
        return self._unk_id

    @property
    def eos_id(self) -> int:
        return self._eos_id

    def __len__(self) -> int:
        return len(self._tokens)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return (self._tokens, self._level, self._lowercase, self._unk_id, self._eos_id, self._tokenize,
                self._tokenizer)

    def __repr__(self) -> str:
        how = "" if self._tokenize == "whitespace" else f", tokenize={self._tokenize}"
        return f"Vocab({self._level}, {len(self)} tokens, lowercase={self._lowercase}{how})"

    def encode(self, text: str) -> np.ndarray:
        """Token ids of a whole text, one EOS per line: (N,) int32."""
        text = normalize(text)
        if self._lowercase:
            text = text.lower()
        ids = self.encode_normalized(text)  # (N,) int32, without the EOS of an unterminated last line
        if text and not text.endswith("\n"):
            ids = np.append(ids, np.int32(self._eos_id))
        return ids

    def encode_normalized(self, text: str) -> np.ndarray:
        """Token ids of text that is already normalized and lower-cased as configured: (N,) int32.

        Each "\\n" becomes EOS; an unterminated last line gets no EOS (the caller adds it at the end of
        the whole text). At word level `text` must not cut a word, so streaming callers feed it pieces
        that end in whitespace.
        """
        if self._level == "char":
            cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")  # (N,) code points
            return self._lut[np.minimum(cps, len(self._lut) - 1)]  # (N,) int32
        if self._level == "bpe":
            return self._bpe_ids(text)
        words = word_tokens(text, self._tokenize)
        return np.fromiter(map(self._index.get, words, repeat(self._unk_id)), dtype=np.int32, count=len(words))

    def _bpe_ids(self, text: str) -> np.ndarray:
        """Level "bpe": each line's ids then EOS (an unterminated last line without it): (N,) int32. At
        this level `text` must not cut a line, so streaming callers feed it whole lines."""
        lines = text.split("\n")
        tail = lines.pop()                                  # "" when the text ends with a newline
        encoded = self._bpe.encode_batch(lines + [tail] if tail else lines, add_special_tokens=False)
        parts = [np.zeros(0, np.int32)]
        eos = np.array([self._eos_id], np.int32)
        for k, e in enumerate(encoded):
            parts.append(np.asarray(e.ids, np.int32))
            if k < len(lines):
                parts.append(eos)
        return np.concatenate(parts)

    def decode(self, ids, eos_as: str = "\n") -> str:
        """Text of a sequence of ids: EOS shows as `eos_as`, UNK as U+FFFD (char) or "<unk>" (word).

        At word level the tokens of a line are joined by single spaces, with no space next to an EOS, and
        (tokenize "words") none before a token with the GLUE prefix, which is dropped.
        """
        ids = self._checked_ids(ids)
        if self._level == "bpe":                      # byte-level: each line's bytes back exactly
            lines, line = [], []
            for i in ids:
                if i == self._eos_id:
                    lines.append(self._bpe.decode(line, skip_special_tokens=False))
                    line = []
                else:
                    line.append(i)
            return eos_as.join(lines + [self._bpe.decode(line, skip_special_tokens=False)])
        if self._level == "char":
            shown = [REPLACEMENT if i == self._unk_id else tok for i, tok in enumerate(self._tokens)]
            shown[self._eos_id] = eos_as
            return "".join([shown[i] for i in ids])
        parts: list[str] = []
        line: list[str] = []
        glued = self._tokenize == "words"
        for i in ids:
            if i == self._eos_id:
                parts += [" ".join(line), eos_as]
                line = []
            elif glued and self.is_glued(i):
                line[-1:] = ["".join(line[-1:]) + self._tokens[i][len(GLUE):]]
            else:
                line.append(self._tokens[i])
        parts.append(" ".join(line))
        return "".join(parts)

    def is_glued(self, token_id: int) -> bool:
        """Is this token written right after the previous one, without a space (tokenize "words")?"""
        return self._tokenize == "words" and token_id != self._unk_id and self._tokens[token_id].startswith(GLUE)

    def token_texts(self, text: str) -> list[str]:
        """The text each token of `encode(text)` stands for, in order (what an UNK was): a code point, a
        word (without the GLUE prefix), "\\n" for an EOS."""
        text = normalize(text)
        if self._lowercase:
            text = text.lower()
        if text and not text.endswith("\n"):
            text += "\n"
        if self._level == "char":
            return list(text)
        if self._level == "bpe":
            return ["\n" if i == self._eos_id else self._bpe.decode([i], skip_special_tokens=False)
                    for i in self._bpe_ids(text).tolist()]
        return ["\n" if t == EOS else t.removeprefix(GLUE) if self._tokenize == "words" else t
                for t in word_tokens(text, self._tokenize)]

    def token_repr(self, token_id: int) -> str:
        """A token for display: "<unk>" and "<eos>" by name, whitespace and unprintable ones quoted as repr."""
        (i,) = self._checked_ids([token_id])
        tok = self._tokens[i]
        if self._level == "bpe" and i not in (self._unk_id, self._eos_id):   # its text, not its byte symbols
            tok = self._bpe.decode([i], skip_special_tokens=False)
        if i in (self._unk_id, self._eos_id) or (tok.isprintable() and not tok.isspace()):
            return tok
        return repr(tok)

    def _checked_ids(self, ids) -> list[int]:
        """`ids` as a list of Python ints, each checked to be a valid id."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise CharlmError(f"token ids must be a flat sequence of integers, got shape {ids.shape} "
                              f"dtype {ids.dtype}")
        bad = np.flatnonzero((ids < 0) | (ids >= len(self)))
        if bad.size:
            raise CharlmError(f"token id {ids[bad[0]]} at position {bad[0]} is outside the vocabulary "
                              f"of {len(self)} tokens")
        return ids.tolist()
