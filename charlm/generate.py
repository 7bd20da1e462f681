"""Sampling novel text: prepares the weights and random numbers, runs the compiled loop, detokenizes."""
from __future__ import annotations

import numpy as np

from charlm import model
from charlm.errors import CharlmError
from charlm.kernels.beam import beam_search
from charlm.kernels.cells import cell_code, pack_forward
from charlm.kernels.sample import generate


def interruptible(kernel, *args):
    """Run a long compiled loop (nogil) in a worker thread while the main thread waits in Python, so a
    Ctrl-C raises KeyboardInterrupt within a fraction of a second (the CLI then exits 130, having printed
    nothing of the unfinished output). The abandoned worker ends with the process; in a notebook it runs
    to its end in the background. Outside the main thread the kernel is simply called."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return kernel(*args)
    failure = []

    def work():
        try:
            kernel(*args)
        except BaseException as e:         # re-raised in the caller's thread
            failure.append(e)
    worker = threading.Thread(target=work, name="charlm-kernel", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
    if failure:
        raise failure[0]


def check_sampling_options(temp, top_k, top_p, length, num_samples, beam=0):
    """One-line errors for option values no sampler can use (beam 0 = sampling, not beam search)."""
    if not temp > 0:
        raise CharlmError(f"temp must be > 0, got {temp}")
    if top_k < 0:
        raise CharlmError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0 < top_p <= 1:
        raise CharlmError(f"top_p must be in (0, 1], got {top_p}")
    if length < 0:
        raise CharlmError(f"length must be >= 0, got {length}")
    if num_samples < 1:
        raise CharlmError(f"num_samples must be >= 1, got {num_samples}")
    if beam < 0:
        raise CharlmError(f"beam must be >= 1 (0 = off), got {beam}")


def check_seed(seed) -> None:
    """seed: None (fresh randomness) or an integer >= 0 (numpy's generators take no negative seeds)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise CharlmError(f"seed must be an integer >= 0, got {seed!r}")


def prime_ids(vocab, prime: str) -> np.ndarray:
    """The prime's token ids, without the EOS the tokenizer puts after a last line that has no newline:
    a prime is the start of a line, not a finished one."""
    ids = vocab.encode(prime)
    if len(ids) and not prime.endswith(("\n", "\r")):
        ids = ids[:-1]
    return ids


def unknown_in_prime(vocab, prime: str) -> list[str]:
    """The texts of the prime's tokens that the vocabulary lacks (the model reads them as <unk>)."""
    ids = vocab.encode(prime)
    if vocab.unk_id not in ids:
        return []
    return [t for t, i in zip(vocab.token_texts(prime), ids.tolist()) if i == vocab.unk_id]


def _weights(cfg, P, rows: int, steps: int):
    """What the compiled generators take for `rows` rows and `steps` steps: the embedding, layer 0's
    input projection of every token when that is cheaper than `steps` * `rows` products (V <= their
    number; else an empty table), the per-layer tuples W_ih, the recurrent weights packed
    (cells.pack_forward, two tuples), b_ih + b_hh, peepholes; the decoder and its bias."""
    if cfg.bidirectional:
        raise CharlmError("a bidirectional model sees the future: it cannot generate text")
    dtype = P["embedding.weight"].dtype
    L = cfg.layers
    Wih = tuple(P[f"rnn.weight_ih_l{k}"] for k in range(L))
    code = cell_code(cfg)
    packed = [pack_forward(code, P[f"rnn.weight_hh_l{k}"], rows) for k in range(L)]
    bias = tuple(P[f"rnn.bias_ih_l{k}"] + P[f"rnn.bias_hh_l{k}"] for k in range(L))
    peep = tuple(P[f"rnn.weight_peep_l{k}"] if cfg.cell == "lstm" and cfg.peephole
                 else np.zeros((0, cfg.hidden), dtype) for k in range(L))
    dec = P["embedding.weight"] if cfg.tied else P["decoder.weight"]
    E = P["embedding.weight"]
    table0 = np.empty((0, bias[0].shape[0]), dtype)
    if cfg.vocab_size <= steps * rows:
        table0 = model.input_table(E, Wih[0], bias[0])               # (V, GH)
    return (code, E, table0, Wih, tuple(w for w, _ in packed), tuple(w2 for _, w2 in packed), bias, peep,
            dec, P["decoder.bias"])


def sample_ids(cfg, P, prefix: np.ndarray, length: int, num_samples: int, temp: float, top_k: int,
               top_p: float, greedy: bool, stop_at_eos: bool, rng: np.random.Generator, state0=None):
    """Run the compiled sampler: feed prefix (starting with EOS), then sample `length` tokens for each of
    `num_samples` rows, every row from state0 (L, 2, 1, H) or from zero. Returns a list of int32 id arrays."""
    weights = _weights(cfg, P, num_samples, len(prefix) + length)
    state = model.zero_state(cfg, num_samples, P["embedding.weight"].dtype)
    if state0 is not None:
        state[...] = state0
    U = rng.random((max(length, 1), num_samples))                   # (n, B) float64
    out = np.zeros((num_samples, max(length, 1)), np.int32)
    lengths = np.zeros(num_samples, np.int64)
    if length > 0:
        interruptible(generate, *weights, state, np.ascontiguousarray(prefix, np.int32), length, float(temp),
                      int(top_k), float(top_p), bool(greedy), U, cfg.eos_id, bool(stop_at_eos), out, lengths)
    return [out[b, : lengths[b]].copy() for b in range(num_samples)]


WARM_UP = 1000      # unprimed samples: tokens the model may take to end its warm-up line


def sample_after_a_line(cfg, P, length: int, num_samples: int, temp: float, top_k: int, top_p: float,
                        stop_at_eos: bool, rng: np.random.Generator, state0=None):
    """Unprimed samples that start at the beginning of a line: each row first writes a line of its own
    (up to WARM_UP tokens, an EOS added if it writes none), unseen, and the sample is what follows it.

    Why: the model is read from a zero state with EOS as its first input (docs/model-format.md), but in
    training a zero state only comes at the start of each of the B streams of an epoch, at arbitrary places
    in the text, so after a zero state the model has learned to expect the middle of a word, whatever the
    input. Fed straight from it, samples began mid-word (on lines that all start with "Q", half of 20
    samples did not); after a line of the model's own, the state is one training has seen before an EOS.
    The same rules (temp, top_k, top_p) and the same generator draw the warm-up line. Not for argmax
    decoding (greedy, top_k 1): its warm-up line can repeat itself without end, and it stays a pure
    function of the model, read from the zero state. Nor for a model conditioned on a label: it is trained
    line by line, each line from its initial state with EOS first, so that start is the one it knows."""
    eos = np.array([cfg.eos_id], np.int32)
    lines = sample_ids(cfg, P, eos, WARM_UP, num_samples, temp, top_k, top_p, False, True, rng, state0)
    out = []
    for line in lines:
        if not (len(line) and line[-1] == cfg.eos_id):
            line = np.concatenate([line, eos])
        out += sample_ids(cfg, P, np.concatenate([eos, line]), length, 1, temp, top_k, top_p, False, stop_at_eos,
                          rng, state0)
    return out


def beam_ids(cfg, P, prefix: np.ndarray, length: int, width: int, stop_at_eos: bool):
    """Beam search of `width` for the most likely `length` tokens after prefix (starting with EOS).
    Returns the hypotheses found, best first, as a list of (int32 ids, total natural-log probability)."""
    if width < 1:
        raise CharlmError(f"beam must be >= 1, got {width}")
    if length <= 0:
        return [(np.zeros(0, np.int32), 0.0)]
    weights = _weights(cfg, P, width, len(prefix) + length)
    out = np.empty((width, length), np.int32)
    scores = np.empty(width, np.float64)
    lengths = np.empty(width, np.int64)
    interruptible(beam_search, *weights, np.ascontiguousarray(prefix, np.int32), length, width, cfg.eos_id,
                  bool(stop_at_eos), out, scores, lengths)
    return [(out[j, : lengths[j]].copy(), float(scores[j])) for j in range(width) if lengths[j] > 0]


def render(vocab, prime: str, ids: np.ndarray, stop_at_eos: bool) -> str:
    """The sample as text: the prime, then the generated tokens (EOS as a newline; a final EOS is
    dropped when generation stopped at it). At word level a space between them, unless the first token
    is glued to the prime (tokenize "words")."""
    if stop_at_eos and len(ids) and ids[-1] == vocab.eos_id:
        ids = ids[:-1]
    text = vocab.decode(ids)
    if vocab.level == "word" and prime and text and not prime.endswith((" ", "\n")) and not text.startswith("\n") \
            and not vocab.is_glued(int(ids[0])):
        return prime + " " + text
    return prime + text
