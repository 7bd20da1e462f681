"""Tagged sentence files: CoNLL-U (Universal Dependencies) and two-column CoNLL (TOKEN<TAB>TAG).

CoNLL-U: one token per line in 10 tab-separated columns (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS
MISC), a blank line after each sentence, comment lines starting with "#" before it. Multiword-token
lines (ID `1-2`) and empty nodes (ID `8.1`) are kept for output but are not tokens. The tag is column
`upos` (4), `xpos` (5) or any column N (1-based); the token is FORM (2).

CoNLL: TOKEN<TAB>TAG (or more tab-separated columns, the tag in the last unless --column N), a blank
line between sentences; `-DOCSTART-` lines are kept for output but are not tokens.

A `Document` keeps every line of its file exactly (line endings, comments, a BOM), so `Document.render`
with new tags writes the same bytes except the tag column of token lines. Errors name the file and the
line: a token line with the wrong number of columns, a sentence with no tokens, an empty token or tag,
invalid UTF-8, a NUL byte.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from charlm.errors import CharlmError

FORMATS = ("auto", "conllu", "conll")
NAMED_COLUMNS = {"upos": 4, "xpos": 5}
CONLLU_COLUMNS = 10
BOM = "\ufeff"


@dataclass
class Sentence:
    words: list[str]              # the tokens (FORM)
    tags: list[str]               # the tag column of each token (gold; "_" when unannotated)
    lines: list[int]              # 0-based index into Document.lines of each token's line


@dataclass
class Document:
    source: str                   # the file, for messages
    format: str                   # "conllu" | "conll"
    column: int                   # 0-based tag column
    lines: list[str]              # every line with its line ending, as read
    sentences: list[Sentence] = field(default_factory=list)
    bom: str = ""

    @property
    def tokens(self) -> int:
        return sum(len(s.words) for s in self.sentences)

    def render(self, tags: list[list[str]]) -> str:
        """The file's text with the tag column of every token line replaced by `tags` (one list per
        sentence); every other character as read."""
        out = list(self.lines)
        for s, new in zip(self.sentences, tags, strict=True):
            if len(new) != len(s.words):
                raise CharlmError(f"render: {len(new)} tags for a sentence of {len(s.words)} tokens")
            for i, tag in zip(s.lines, new):
                line = out[i]
                body = line.rstrip("\r\n")
                cols = body.split("\t")
                while len(cols) <= self.column:            # a two-column file without its tag column
                    cols.append("")
                cols[self.column] = tag
                out[i] = "\t".join(cols) + line[len(body):]
        return self.bom + "".join(out)


def column_index(column: str | int, format: str) -> int | None:
    """The 0-based tag column of --column upos|xpos|N (N 1-based); None: the last (conll default)."""
    if column in (None, "", "auto"):
        return NAMED_COLUMNS["upos"] - 1 if format == "conllu" else None
    if isinstance(column, str) and column.lower() in NAMED_COLUMNS:
        if format != "conllu":
            raise CharlmError(f"--column {column} names a CoNLL-U column; a two-column file takes a number")
        return NAMED_COLUMNS[column.lower()] - 1
    try:
        n = int(column)
    except (TypeError, ValueError):
        raise CharlmError(f"--column must be upos, xpos or a column number (1-based), got {column!r}") from None
    if n < 1:
        raise CharlmError(f"--column must be a column number >= 1, got {n}")
    return n - 1


def read_text(path, encoding_errors: str = "strict") -> str:
    """A file's text (`-`: standard input), undecoded line endings kept. CharlmError for a missing or
    binary file and for invalid UTF-8 (byte offset and line) unless encoding_errors is "replace"."""
    if path == "-":
        raw = sys.stdin.buffer.read()
    else:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise CharlmError(f"{path}: cannot read: {e.strerror or e}") from None
    nul = raw.find(b"\0")
    if nul >= 0:
        raise CharlmError(f"{path}:{_line_of(raw, nul)}: NUL byte at offset {nul}: a binary file, "
                          f"not text")
    try:
        return raw.decode("utf-8", errors=encoding_errors)
    except UnicodeDecodeError as e:
        raise CharlmError(f"{path}:{_line_of(raw, e.start)}: invalid UTF-8 at byte offset {e.start} "
                          f"(give --encoding-errors replace to read it anyway)") from None


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def split_lines(text: str) -> list[str]:
    """Lines with their endings ("\\n" or "\\r\\n"); the last may have none."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def detect_format(lines: list[str]) -> str:
    """conllu when the first token line has 10 tab-separated columns or a comment comes first, else conll."""
    for line in lines:
        body = line.rstrip("\r\n")
        if not body.strip():
            continue
        if body.startswith("#"):
            return "conllu"
        return "conllu" if len(body.split("\t")) == CONLLU_COLUMNS else "conll"
    return "conll"


def read(path, format: str = "auto", column: str | int = "upos", encoding_errors: str = "strict",
         require_tags: bool = True, text: str | None = None) -> Document:
    """Every sentence of a tagged file. require_tags=False (prediction) lets a two-column file have the
    token column only."""
    if format not in FORMATS:
        raise CharlmError(f"--format must be one of {FORMATS}, got {format!r}")
    if text is None:
        text = read_text(path, encoding_errors)
    bom = BOM if text.startswith(BOM) else ""
    lines = split_lines(text[len(bom):])
    if format == "auto":
        format = detect_format(lines)
    if format == "conllu" and column in (None, "", "auto"):
        column = "upos"
    col = column_index(column, format)
    doc = Document(str(path), format, -1 if col is None else col, lines, bom=bom)
    words, tags, where, start = [], [], [], None
    width = None                                      # conll: the column count of the file's first token line

    def end(n):
        nonlocal words, tags, where, start
        if start is not None and not words:
            raise CharlmError(f"{path}:{start + 1}: a sentence with no tokens (only comments, multiword "
                              f"or empty-node lines before the blank line at line {n + 1})")
        if words:
            doc.sentences.append(Sentence(words, tags, where))
        words, tags, where, start = [], [], [], None

    for n, line in enumerate(lines):
        body = line.rstrip("\r\n")
        if not body.strip():
            end(n)
            continue
        if start is None:
            start = n
        if format == "conllu":
            if body.startswith("#") and not words:
                continue
            cols = body.split("\t")
            if len(cols) != CONLLU_COLUMNS:
                raise CharlmError(f"{path}:{n + 1}: {len(cols)} tab-separated columns, CoNLL-U has {CONLLU_COLUMNS}"
                                  f" (give --format conll for TOKEN<TAB>TAG files)")
            if "-" in cols[0] or "." in cols[0]:      # multiword token or empty node: not a token
                continue
            if col >= CONLLU_COLUMNS:
                raise CharlmError(f"--column {col + 1}: CoNLL-U has {CONLLU_COLUMNS} columns")
            word, tag = cols[1], cols[col]
        else:
            cols = body.split("\t")
            if cols[0] == "-DOCSTART-":
                start = None if not words else start
                continue
            if width is None:
                width = len(cols)
                if col is None:
                    if width < 2 and require_tags:
                        raise CharlmError(f"{path}:{n + 1}: one column: each token line must be TOKEN<TAB>TAG")
                    doc.column = max(1, width - 1)
                elif col >= width and (require_tags or col > width):
                    raise CharlmError(f"{path}:{n + 1}: --column {col + 1}, but the line has {width} columns")
            if len(cols) != width:
                raise CharlmError(f"{path}:{n + 1}: {len(cols)} tab-separated columns, the file's first token "
                                  f"line has {width}")
            word = cols[0]
            tag = cols[doc.column] if doc.column < len(cols) else ""
        if not word.strip():
            raise CharlmError(f"{path}:{n + 1}: empty token")
        if require_tags and not tag.strip():
            raise CharlmError(f"{path}:{n + 1}: empty tag in column {doc.column + 1}")
        words.append(word)
        tags.append(tag)
        where.append(n)
    end(len(lines))
    if require_tags and not doc.sentences:
        raise CharlmError(f"{path}: no sentences (the file is empty or has no token lines)")
    return doc
