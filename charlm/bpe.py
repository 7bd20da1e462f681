"""Byte-pair encoding (level "bpe"): a subword tokenizer learned from the training text, between characters
(long sequences; a script with thousands of characters makes a large, slow output layer) and words (<unk>).

The tokenizer is Hugging Face `tokenizers`' byte-level BPE (GPT-2's scheme): a line's UTF-8 bytes are
mapped to 256 printable stand-in characters, cut at GPT-2's pre-tokenizer pattern (a space stays on the
word after it), and merged by the learned merges. Every byte is in the alphabet, so no text is ever
<unk> (only the literal word "<unk>", as at word level), and decoding a line's ids gives back its bytes,
so its text, exactly. Why this library rather than sentencepiece: byte-level BPE needs no character
coverage setting or byte fallback to decode exactly, the whole tokenizer is one JSON document (stored as
data in the model file's `tokenizer` metadata, never code), and its Rust wheels train a vocabulary of a
few thousand merges on megabytes in seconds.

Ids: "<unk>" 0 and "<eos>" 1 (the tokenizer's special tokens, so the literal words in a text are UNK and
EOS as at word level), then the 256 byte symbols and the merges in the order learned. Lines are encoded
one by one (EOS per line, as at the other levels), so no token crosses a newline.

The library is an optional extra (`pip install 'charlm-rnn[bpe]'`): only a BPE model needs it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from charlm.errors import CharlmError

EXTRA = "pip install 'charlm-rnn[bpe]'"
DEFAULT_VOCAB_SIZE = 4000       # --vocab-size: specials, the 256 bytes and about 3,700 merges


class TokenList(list):
    """A BPE model's token strings (index = id) with its tokenizer JSON, as the training engine keeps a
    task's tables: the run state stores both."""

    def __init__(self, tokens, tokenizer: str):
        super().__init__(tokens)
        self.tokenizer = tokenizer


def _library():
    try:
        import tokenizers
    except ImportError:
        raise CharlmError(f"BPE needs the Hugging Face tokenizers library, which is not installed: {EXTRA}") from None
    return tokenizers


def train(lines: Iterable[str], vocab_size: int) -> str:
    """Learn a byte-level BPE tokenizer of at most `vocab_size` tokens (specials and bytes included) from
    text lines; its JSON."""
    if not (isinstance(vocab_size, int) and vocab_size >= 258):
        raise CharlmError(f"--vocab-size must be at least 258 (<unk>, <eos> and the 256 bytes), got {vocab_size!r}")
    tk = _library()
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<eos>"], show_progress=False,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    return tok.to_str()


def load(text: str, what: str = "the model"):
    """The tokenizer of a model file's `tokenizer` metadata; CharlmError if the library is missing or the
    JSON is not a byte-level BPE tokenizer."""
    tk = _library()
    try:
        d = json.loads(text)
        if not (isinstance(d, dict) and isinstance(d.get("model"), dict) and d["model"].get("type") == "BPE"):
            raise ValueError("not a BPE tokenizer")
        return tk.Tokenizer.from_str(text)
    except Exception as e:              # the library's own errors are plain Exceptions
        raise CharlmError(f"{what}: bad tokenizer metadata: {' '.join(str(e).split())[:200]}") from None


def tokens_of(tokenizer) -> list[str]:
    """The token strings by id."""
    return [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]
