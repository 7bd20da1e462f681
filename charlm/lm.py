"""The Python API: a trained language model with sample, score and perplexity. The CLI is built on it.

    import charlm
    lm = charlm.load("model.safetensors")
    print(lm.sample(length=200, temp=0.8, seed=1)[0])
    print(lm.score(["To be, or not to be"])[0].perplexity)
    print(lm.perplexity(["valid.txt"]).perplexity)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from charlm import data, evaluate, generate
from charlm.threads import compute_threads
from charlm.checkpoint import load_model
from charlm.config import ConditionalConfig, ModelConfig
from charlm.errors import CharlmError, ModelFileError
from charlm.vocab import Vocab, characters

LN10 = math.log(10.0)
LN2 = math.log(2.0)


def _exp(x: float) -> float:
    """math.exp, inf where the result overflows (a diverged model's figures)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _check_finite_nll(path, values) -> None:
    """A NaN log-probability means the model's logits overflowed float32 (a diverged model)."""
    if np.isnan(np.asarray(values, np.float64)).any():
        raise CharlmError(f"{path}: the model gives NaN log-probabilities (its outputs overflow float32): it "
                          f"diverged in training; train it again with a lower --lr or a --clip value")


@dataclass
class Score:
    """One scored text: natural-log probability of all its tokens, the final EOS included."""
    text: str
    logprob: float
    tokens: int
    oov: int
    per_token: list | None = None    # [(token, logprob, is_unk)] when asked for
    unk_texts: dict | None = None    # with per_token: position -> the text an unknown token stands for
    characters: int = 0              # charlm.vocab.characters of the text

    @property
    def bits_per_char(self) -> float:
        """-logprob / ln 2 / characters: comparable across char, word and BPE models of the same text."""
        return -self.logprob / LN2 / self.characters if self.characters else math.nan

    @property
    def log10prob(self) -> float:
        return self.logprob / LN10

    @property
    def perplexity(self) -> float:
        return _exp(-self.logprob / self.tokens) if self.tokens else math.nan

    def as_dict(self) -> dict:
        d = {"text": self.text, "logprob": self.logprob, "log10prob": self.log10prob, "tokens": self.tokens,
             "oov": self.oov, "perplexity": self.perplexity, "characters": self.characters,
             "bits_per_char": self.bits_per_char}
        if self.per_token is not None:
            d["per_token"] = [{"token": t, "logprob": lp, "unk": unk} for t, lp, unk in self.per_token]
            for at, text in (self.unk_texts or {}).items():
                d["per_token"][at]["text"] = text
        return d


@dataclass
class Perplexity:
    """Figures of one text stream (or of several files together)."""
    name: str
    tokens: int
    nll: float       # total negative log-likelihood, nats
    oov: int
    level: str
    characters: int = 0  # charlm.vocab.characters of the text (newlines included)

    @property
    def perplexity(self) -> float:
        return _exp(self.nll / self.tokens) if self.tokens else math.nan

    @property
    def bits_per_char(self) -> float:
        """Total NLL in bits over the characters of the text: nll / ln 2 / characters. At char level it is
        bits_per_token (a newline is an EOS); at any level, a figure comparable across levels."""
        return self.nll / LN2 / self.characters if self.characters else math.nan

    @property
    def bits_per_token(self) -> float:
        return self.nll / self.tokens / LN2 if self.tokens else math.nan

    @property
    def oov_rate(self) -> float:
        return self.oov / self.tokens if self.tokens else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(perplexity=self.perplexity, bits_per_token=self.bits_per_token, bits_per_char=self.bits_per_char,
                 oov_rate=self.oov_rate,
                 nll_per_token=self.nll / self.tokens if self.tokens else math.nan)
        return d


class LanguageModel:
    """A trained model: configuration, vocabulary and float32 parameters."""

    def __init__(self, config: ModelConfig, vocab: Vocab, params: dict[str, np.ndarray], meta=None, path=None):
        self.config, self.vocab, self.params = config, vocab, params
        self.meta = dict(meta or {})
        self.path = path
        self.labels = None                       # a model trained with --labeled: its labels
        if isinstance(config, ConditionalConfig):
            from charlm.tasks.conditional import read_labels
            self.labels, self.label_counts = read_labels(path or "the model", self.meta, config)

    @classmethod
    def load(cls, path) -> "LanguageModel":
        """Load a charlm/1 safetensors file; raises ModelFileError for anything that is not one."""
        m = load_model(path)
        cfg = m.config
        if cfg.level == "bpe" and not isinstance(m.meta.get("tokenizer"), str):
            raise ModelFileError(path, "a BPE model without its 'tokenizer' metadata")
        vocab = Vocab(m.vocab, cfg.level, cfg.lowercase, cfg.unk_id, cfg.eos_id, cfg.tokenize,
                      m.meta.get("tokenizer") if cfg.level == "bpe" else None)
        return cls(cfg, vocab, m.params, m.meta, str(path))

    @property
    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def conditioned(self, label: str | None):
        """(config, parameters, initial state (L, 2, 1, H) or None) of the plain language model to run:
        the model itself, or what a conditional model is for `label` (charlm.conditional.fold)."""
        if self.labels is None:
            if label is not None:
                raise CharlmError(f"label {label!r}: this model is not conditioned on labels (train one with "
                                  f"charlm train --labeled)")
            return self.config, self.params, None
        if label is None:
            raise CharlmError(f"this model is conditioned on labels: label must be one of {_some(self.labels)}")
        if label not in self.labels:
            raise CharlmError(f"label {label!r}: the model knows the labels {_some(self.labels)}")
        from charlm import conditional
        return conditional.fold(self.config, self.params, self.labels.index(label))

    def _check_lm(self):
        if self.config.bidirectional:
            raise CharlmError("this model is bidirectional: it reads the future, so it cannot give "
                              "next-token probabilities")

    def sample(self, length: int = 200, temp: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               greedy: bool = False, prime: str = "", stop_at_eos: bool = False, num_samples: int = 1,
               seed: int | None = None, beam: int = 0, label: str | None = None) -> list[str]:
        """Generate `num_samples` texts of `length` new tokens after `prime` (the output starts with it).

        Sampling draws from softmax(z / temp), restricted by top_k / top_p; greedy takes the argmax.
        The same seed gives the same texts. Without a prime (unless argmax or conditional), each sample
        starts at the beginning of a line the model wrote itself (generate.sample_after_a_line).
        beam > 0: beam search of that width for the most likely continuation instead; `num_samples`
        (<= beam) then returns that many best beams. label: what a conditional model generates for
        (required for one, an error for others).
        """
        self._check_lm()
        cfg, P, state0 = self.conditioned(label)
        generate.check_sampling_options(temp, top_k, top_p, length, num_samples, beam)
        generate.check_seed(seed)
        prefix = np.concatenate([[self.vocab.eos_id], generate.prime_ids(self.vocab, prime)]).astype(np.int32)
        if beam:
            if state0 is not None:
                raise CharlmError("beam: not for a model conditioned through its initial state (trained with "
                                  "--condition state); sample instead")
            if num_samples > beam:
                raise CharlmError(f"num_samples {num_samples} is more than beam {beam} can return")
            with compute_threads():
                beams = generate.beam_ids(cfg, P, prefix, length, beam, stop_at_eos)[:num_samples]
            return [generate.render(self.vocab, prime, ids, stop_at_eos) for ids, _ in beams]
        rng = np.random.default_rng(seed)
        with compute_threads():
            # No warm-up line for argmax decoding, nor for a model trained line by line from its initial
            # state (a conditional one): see generate.sample_after_a_line.
            if prime or greedy or top_k == 1 or self.labels is not None:
                ids = generate.sample_ids(cfg, P, prefix, length, num_samples, temp, top_k, top_p, greedy,
                                          stop_at_eos, rng, state0)
            else:
                ids = generate.sample_after_a_line(cfg, P, length, num_samples, temp, top_k, top_p, stop_at_eos,
                                                   rng, state0)
        return [generate.render(self.vocab, prime, s, stop_at_eos) for s in ids]

    def score(self, texts, per_token: bool = False, label: str | None = None) -> list[Score]:
        """Score each text as a stream of its own (fresh state, EOS first input, final EOS scored); for a
        conditional model, log p(text | label)."""
        self._check_lm()
        cfg, P, state0 = self.conditioned(label)
        texts = list(texts)
        streams = [self.vocab.encode(t if t.endswith(("\n", "\r")) else t + "\n") for t in texts]  # "" is a lone EOS
        with compute_threads():
            if state0 is None:
                sums, per = evaluate.streams_nll(cfg, P, streams, per_token=per_token)
            else:                            # conditioned through the initial state: the packed path
                if per_token:
                    raise CharlmError("per_token: not for a model conditioned through its initial state "
                                      "(trained with --condition state)")
                from charlm import conditional
                lab = [self.labels.index(label)] * len(streams)
                sums, per = conditional.text_nll(self.config, self.params, [s[:-1] for s in streams], lab,
                                                 self.config.eos_id), None
        _check_finite_nll(self.path or "the model", sums)
        out = []
        shown = {}                           # id -> token_repr, each computed once (a 5 MB line: 5 M tokens)
        unk = self.vocab.unk_id
        for i, (t, s) in enumerate(zip(texts, streams)):
            tokens = unk_texts = None
            if per_token:
                tokens = [(shown[tok] if tok in shown else shown.setdefault(tok, self.vocab.token_repr(tok)),
                           -lp, tok == unk) for tok, lp in zip(s.tolist(), per[i].tolist())]
                at = np.flatnonzero(s == unk).tolist()
                texts_of = self.vocab.token_texts(t) if at else []
                unk_texts = {k: texts_of[k] for k in at}
            out.append(Score(t, -float(sums[i]), len(s), int((s == self.vocab.unk_id).sum()), tokens, unk_texts,
                             characters(t if t.endswith(("\n", "\r")) else t + "\n")))
        return out

    def perplexity_of_ids(self, ids: np.ndarray, name: str = "", progress=None, characters: int = 0) -> Perplexity:
        """Figures of one id stream read as a whole (state carried across lines); `characters` of the text
        it encodes give bits per character."""
        self._check_lm()
        with compute_threads():
            nll = evaluate.stream_nll(self.config, self.params, ids, progress)
        _check_finite_nll(self.path or "the model", [nll])
        return Perplexity(name, len(ids), nll, int((ids == self.vocab.unk_id).sum()), self.config.level, characters)

    def perplexity(self, paths, encoding_errors: str = "strict", progress=None) -> list[Perplexity]:
        """Per-file figures, each file one stream, then the combined figure (last) when there are several.
        A conditional model reads labeled files instead: each line's text given its label."""
        results = []
        for path in paths:
            if self.labels is not None:
                results.append(self._conditional_perplexity(path, encoding_errors))
                continue
            ids, chars = data.encode_file_counted(path, self.vocab, encoding_errors)
            if len(ids) == 0:
                raise CharlmError(f"{path}: no tokens to measure (the file is empty)")
            results.append(self.perplexity_of_ids(ids, str(path), progress, chars))
        if len(results) > 1:
            results.append(Perplexity("total", sum(r.tokens for r in results), sum(r.nll for r in results),
                                      sum(r.oov for r in results), self.config.level,
                                      sum(r.characters for r in results)))
        return results


    def _conditional_perplexity(self, path, encoding_errors) -> Perplexity:
        from charlm import conditional, labeled
        from charlm.tasks.classify import encode
        ex = labeled.read(path, "auto", encoding_errors)
        unknown = sorted(set(ex.labels) - set(self.labels))
        if unknown:
            raise CharlmError(f"{path}: labels the model does not know: {_some(unknown)}")
        seqs = [encode(self.vocab, t) for t in ex.texts]
        with compute_threads():
            nll = conditional.text_nll(self.config, self.params, seqs, [self.labels.index(x) for x in ex.labels],
                                       self.config.eos_id)
        _check_finite_nll(self.path or "the model", nll)
        return Perplexity(str(path), int(sum(len(s) + 1 for s in seqs)), float(nll.sum()),
                          int(sum((s == self.vocab.unk_id).sum() for s in seqs)), self.config.level,
                          sum(characters(t + "\n") for t in ex.texts))


def _some(items, n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def load(path):
    """Load a model file: `charlm.load("model.safetensors")`; a LanguageModel, or a Classifier
    (charlm.classifier) or a Tagger (charlm.tagger) when the file holds one."""
    from charlm.checkpoint import file_task, read_metadata
    if file_task(read_metadata(path)) == "classify":
        from charlm.classifier import Classifier
        return Classifier.load(path)
    if file_task(read_metadata(path)) == "tag":
        from charlm.tagger import Tagger
        return Tagger.load(path)
    if file_task(read_metadata(path)) == "seq2seq":
        from charlm.transducer import Transducer
        return Transducer.load(path)
    return LanguageModel.load(path)
