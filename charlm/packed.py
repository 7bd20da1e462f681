"""Variable-length (packed) batches through the recurrent stack: charlm's PackedSequence.

Layout (PyTorch's, `Layout`): the B sequences sorted by length, longest first (a stable sort; `order`
and `inverse` map back to the caller's order). Packed arrays are time-major with no padding: step t
holds the bs[t] sequences still running, sorted rows 0 .. bs[t]-1, at packed rows
    row(t, b) = offsets[t] + b,      offsets[t+1] = offsets[t] + bs[t],      N = offsets[T] = Σ_b L_b.
So the input projection and every weight-gradient GEMM run over the N real tokens only, and the time
loop (kernels/packed.py) works on a batch that shrinks as sequences end.

The stack (parameters named `{prefix}weight_ih_l{k}{suffix}` etc. as in model.py, prefix "rnn."):
    X_0 = X                                                        # (N, In_0), In_0 = cfg.embed
    F_k = layer_k(X_k ⊙ m_k)       left to right from h0[k, 0]      # (N, H)
    R_k = rev(layer_k_reverse(rev(X_k ⊙ m_k)))   from h0[k, 1]      # (N, H)   (bidirectional)
    X_{k+1} = [F_k, R_k]                                            # (N, H*dirs)
rev is the involution row(t, b) -> row(L_b-1-t, b): the reversed sequences have the same lengths, hence
the same layout, so the reverse direction is the same forward kernel on permuted rows; it starts at
each sequence's own last token and never sees another sequence's padding (there is none).
final[k, d] = (h, c) of direction d of layer k after each sequence's last processed token (position
L_b-1 for the forward direction, position 0 for the reverse one), (L, dirs, 2, B, H) in sorted order;
c is zero unless the cell is an LSTM.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.config import ModelConfig
from charlm.errors import CharlmError
from charlm.kernels import gemm
from charlm.kernels.cells import GRU_FULL, LSTM, cell_code, pack_backward, pack_forward, scratch_size
from charlm.kernels.packed import packed_backward, packed_forward

CELL_MIN_ROWS = 8   # a time loop's thread gets at least this many sequences (as model.CELL_MIN_ROWS)


@dataclass(frozen=True, eq=False)
class Layout:
    """Where every token of B variable-length sequences sits in a packed (N, ...) array.

    lengths (B,) sorted, longest first; order (B,): sorted sequence i is the caller's order[i];
    inverse (B,): the caller's sequence j is sorted sequence inverse[j]; batch_sizes (T,) bs[t] =
    number of sequences longer than t; offsets (T+1,) first packed row of each step; rev (N,) the
    packed row of (L_b-1-t, b) for the row of (t, b); seq_of_row (N,) and step_of_row (N,) the sorted
    sequence and the step of each packed row; last_row (B,) the packed row of each sequence's last step.
    """
    lengths: np.ndarray
    order: np.ndarray
    inverse: np.ndarray
    batch_sizes: np.ndarray
    offsets: np.ndarray
    rev: np.ndarray
    seq_of_row: np.ndarray
    step_of_row: np.ndarray
    last_row: np.ndarray

    @classmethod
    def from_lengths(cls, lengths) -> "Layout":
        """The layout of sequences of the given lengths (caller's order, each >= 1)."""
        L = np.asarray(lengths)
        if L.ndim != 1 or L.size == 0:
            raise CharlmError(f"lengths must be a non-empty 1-D sequence of integers, got shape {L.shape}")
        if not np.issubdtype(L.dtype, np.integer):
            if not (np.issubdtype(L.dtype, np.floating) and np.all(L == np.round(L))):
                raise CharlmError(f"lengths must be integers, got dtype {L.dtype}")
        L = L.astype(np.int64)
        if (L < 1).any():
            j = int(np.argmax(L < 1))
            raise CharlmError(f"sequence {j} has length {int(L[j])}: every sequence needs at least one token")
        order = np.argsort(-L, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(L.size)
        Ls = L[order]
        T = int(Ls[0])
        batch_sizes = (Ls[None, :] > np.arange(T)[:, None]).sum(axis=1)          # (T,)
        offsets = np.concatenate([[0], np.cumsum(batch_sizes)])                  # (T+1,)
        step_of_row = np.repeat(np.arange(T), batch_sizes)                       # (N,)
        seq_of_row = np.arange(offsets[-1]) - offsets[step_of_row]               # (N,)
        rev = offsets[Ls[seq_of_row] - 1 - step_of_row] + seq_of_row             # (N,)
        last_row = offsets[Ls - 1] + np.arange(L.size)                           # (B,)
        return cls(Ls, order, inverse, batch_sizes, offsets, rev, seq_of_row, step_of_row, last_row)

    @property
    def N(self) -> int:
        """Packed rows: the total number of tokens."""
        return int(self.offsets[-1])

    @property
    def B(self) -> int:
        return int(self.lengths.size)

    @property
    def T(self) -> int:
        """The longest length."""
        return int(self.batch_sizes.size)

    def rows_of(self, i: int) -> np.ndarray:
        """The packed rows of sorted sequence i, in time order."""
        return self.offsets[: self.lengths[i]] + i

    def pack(self, seqs) -> np.ndarray:
        """B arrays (L_b, ...) in the caller's order -> one packed (N, ...) array."""
        if len(seqs) != self.B:
            raise CharlmError(f"pack: {len(seqs)} sequences for a layout of {self.B}")
        first = np.asarray(seqs[0])
        out = np.empty((self.N,) + first.shape[1:], first.dtype)
        for i, j in enumerate(self.order):
            s = np.asarray(seqs[j])
            if s.shape[0] != self.lengths[i]:
                raise CharlmError(f"pack: sequence {j} has {s.shape[0]} steps, the layout says {self.lengths[i]}")
            out[self.rows_of(i)] = s
        return out

    def unpack(self, packed) -> list:
        """A packed (N, ...) array -> B arrays (L_b, ...) in the caller's order."""
        return [packed[self.rows_of(self.inverse[j])] for j in range(self.B)]

    def pad(self, packed, value=0) -> np.ndarray:
        """A packed (N, ...) array -> (T, B, ...) in the caller's order, `value` past each sequence's end."""
        out = np.full((self.T, self.B) + packed.shape[1:], value, packed.dtype)
        out[self.step_of_row, self.order[self.seq_of_row]] = packed
        return out

    def sort(self, a, axis: int = -2) -> np.ndarray:
        """A per-sequence array in the caller's order -> sorted order along `axis` (h0 for `forward`)."""
        return np.take(a, self.order, axis=axis)

    def unsort(self, a, axis: int = -2) -> np.ndarray:
        """A per-sequence array in sorted order -> the caller's order along `axis` (`forward`'s final)."""
        return np.take(a, self.inverse, axis=axis)


def thread_blocks(lengths, n: int) -> np.ndarray:
    """Boundaries (n'+1,) of contiguous blocks of the sorted batch, one per thread, with about equal
    tokens each (thread 0 takes fewer, longer sequences); n' = min(n, B)."""
    B = len(lengths)
    n = max(1, min(n, B))
    cum = np.concatenate([[0], np.cumsum(lengths)])
    cuts = [0]
    for k in range(1, n):
        target = cum[-1] * k / n
        b = int(np.searchsorted(cum, target))                 # first b with cum[b] >= target
        if b > 0 and target - cum[b - 1] < cum[b] - target:
            b -= 1                                            # the nearer boundary
        cuts.append(min(max(b, cuts[-1] + 1), B - (n - k)))   # every block keeps >= 1 sequence
    cuts.append(B)
    return np.array(cuts, np.int64)


def _threads(B, threads):
    return min(threads, B) if threads else gemm.parts(B, CELL_MIN_ROWS)


def _suffixes(cfg):
    return ("", "_reverse")[: cfg.directions]


def _peep(cfg, P, name, dtype):
    if cfg.cell == "lstm" and cfg.peephole:
        return P[name]
    return np.zeros((0, cfg.hidden), dtype)


def forward(cfg: ModelConfig, P, X, layout: Layout, h0=None, masks=None, prefix: str = "rnn.",
            for_backward: bool = True, threads: int | None = None):
    """Run the recurrent stack over packed inputs X (N, In_0) (module docstring).

    h0: None (zeros) or (L, dirs, 2, B, H) initial (h, c) per layer and direction, sorted order
    (`Layout.sort`). masks: None, or L arrays (or None each), mask k (N, In_k) multiplying layer k's
    input (inverted dropout; per-sequence masks expand with `layout.seq_of_row`). threads: how many
    threads share the time loop (None: Numba's, at least CELL_MIN_ROWS sequences each).
    Returns (out (N, H*dirs) the top layer's outputs, final (L, dirs, 2, B, H) sorted order, cache for
    `backward`; None unless for_backward, and then no gates are kept).
    """
    H, G, L, dirs = cfg.hidden, cfg.gates, cfg.layers, cfg.directions
    N, B = layout.N, layout.B
    X = np.ascontiguousarray(X)
    dtype = X.dtype
    if X.shape != (N, cfg.embed):
        raise CharlmError(f"packed input is {X.shape}, the layout and config need ({N}, {cfg.embed})")
    if h0 is not None and np.shape(h0) != (L, dirs, 2, B, H):
        raise CharlmError(f"h0 is {np.shape(h0)}, expected {(L, dirs, 2, B, H)}")
    code = cell_code(cfg)
    lstm = code == LSTM
    blocks = thread_blocks(layout.lengths, _threads(B, threads))
    rows = int(np.diff(blocks).max())
    offsets, sizes = layout.offsets, layout.batch_sizes
    final = np.zeros((L, dirs, 2, B, H), dtype)
    layers = []
    for k in range(L):
        if masks is not None and masks[k] is not None:
            X = X * masks[k]                                                 # (N, In_k)
        outs, caches = [], []
        for d, s in enumerate(_suffixes(cfg)):
            Xs = np.ascontiguousarray(X[layout.rev]) if d else X             # (N, In_k) in processing order
            Wih = P[f"{prefix}weight_ih_l{k}{s}"]
            b = P[f"{prefix}bias_ih_l{k}{s}"] + P[f"{prefix}bias_hh_l{k}{s}"]
            XP = np.empty((N, G * H), dtype)
            gemm.matmul_bias(Xs, Wih.T, b, XP)                              # (N, GH) x W_ih^T + b
            hk = np.zeros((B, H), dtype) if h0 is None else np.ascontiguousarray(h0[k, d, 0], dtype)
            ck = (np.zeros((B, H), dtype) if h0 is None else np.ascontiguousarray(h0[k, d, 1], dtype)) \
                if lstm else np.zeros((1, 1), dtype)
            Hs = np.empty((N, H), dtype)                                     # (N, H) h at every row
            Cs = np.empty((N, H), dtype) if lstm else np.zeros((1, 1), dtype)
            A = np.empty((N if for_backward else B, G * H), dtype)           # activated gates
            RH = np.empty((N if for_backward and code == GRU_FULL else B, H), dtype)
            Wf, Wf2 = pack_forward(code, P[f"{prefix}weight_hh_l{k}{s}"], rows)
            tmp = np.empty((len(blocks) - 1, scratch_size(rows, H, G, Wf, Wf2)), dtype)
            peep = _peep(cfg, P, f"{prefix}weight_peep_l{k}{s}", dtype)
            packed_forward(code, XP, offsets, sizes, blocks, Wf, Wf2, peep, hk, ck, Hs, Cs, A, RH,
                           for_backward, tmp)
            final[k, d, 0] = Hs[layout.last_row]
            if lstm:
                final[k, d, 1] = Cs[layout.last_row]
            outs.append(Hs[layout.rev] if d else Hs)                         # back to position order
            if for_backward:
                caches.append((Xs, hk, ck, Hs, Cs, A, RH))
        X = outs[0] if dirs == 1 else np.concatenate(outs, axis=1)           # (N, H*dirs)
        layers.append(caches)
    if not for_backward:
        return X, final, None
    return X, final, dict(layout=layout, blocks=blocks, masks=masks, prefix=prefix, dtype=dtype, layers=layers)


def backward(cfg: ModelConfig, P, cache, dout=None, dfinal=None):
    """Gradients from dout (N, H*dirs), the gradient of `forward`'s out, and dfinal (L, dirs, 2, B, H),
    that of its final states (either may be None: zero). The backward runs in exact reverse order of
    the forward: layers top-down, the reverse direction before the forward one.

    Per layer and direction, with dP (N, GH) the pre-activation gradients from the time loop:
        dW_ih = dP^T X_s,  dW_hh = dP^T H_prev (GRU full: the n block against R*H_prev),
        db_ih = db_hh = Σ dP,  dX_s = dP W_ih   (X_s, dX_s in processing order: un-reversed after)
    and through the mask, d(X m) = dX m.
    Returns (dX (N, In_0), grads: a dict of the stack's parameters, dh0 (L, dirs, 2, B, H)).
    """
    layout, blocks, masks, prefix = cache["layout"], cache["blocks"], cache["masks"], cache["prefix"]
    H, G, L, dirs = cfg.hidden, cfg.gates, cfg.layers, cfg.directions
    N, B = layout.N, layout.B
    code = cell_code(cfg)
    n = len(blocks) - 1
    rows = int(np.diff(blocks).max())
    dtype = cache["dtype"]
    offsets, sizes = layout.offsets, layout.batch_sizes
    prev = _prev_rows(layout)                         # row of h_{t-1} in [h0; Hs] for every packed row
    grads, dh0 = {}, np.zeros((L, dirs, 2, B, H), dtype)
    dY = np.zeros((N, H * dirs), dtype) if dout is None else np.asarray(dout, dtype)
    for k in range(L - 1, -1, -1):
        dX = None
        for d in range(dirs - 1, -1, -1):
            s = _suffixes(cfg)[d]
            Xs, hk, ck, Hs, Cs, A, RH = cache["layers"][k][d]
            dYs = dY[:, d * H: (d + 1) * H]
            dYs = np.ascontiguousarray(dYs[layout.rev] if d else dYs)        # (N, H) in processing order
            dh = np.zeros((B, H), dtype) if dfinal is None else np.array(dfinal[k, d, 0], dtype)
            dc = np.zeros((B, H), dtype) if dfinal is None or code != LSTM else np.array(dfinal[k, d, 1], dtype)
            peep = _peep(cfg, P, f"{prefix}weight_peep_l{k}{s}", dtype)
            dP = np.empty((N, G * H), dtype)
            dpeep = np.empty((n,) + peep.shape, dtype)                       # one per thread
            dbias = np.empty((n, G * H), dtype)                              # one per thread
            Wih, Whh = P[f"{prefix}weight_ih_l{k}{s}"], P[f"{prefix}weight_hh_l{k}{s}"]
            Wb, Wb2 = pack_backward(code, Whh, rows)
            tmp = np.empty((n, scratch_size(rows, H, G, Wb, Wb2)), dtype)
            packed_backward(code, Wb, Wb2, peep, offsets, sizes, blocks, hk, ck, Hs, Cs, A, dYs, dP, dpeep,
                            dbias, dh, dc, tmp)
            dh0[k, d, 0] = dh
            if code == LSTM:
                dh0[k, d, 1] = dc
            dWih = np.zeros_like(Wih)
            gemm.matmul_tn_add(dP, Xs, dWih)                                 # dW_ih = dP^T X
            Hprev = np.concatenate([hk, Hs])[prev]                           # (N, H) h_{t-1} of every row
            dWhh = np.zeros_like(Whh)
            if code == GRU_FULL:                                             # n block sees r*h
                dWhh[: 2 * H] = dP[:, : 2 * H].T @ Hprev
                dWhh[2 * H:] = dP[:, 2 * H:].T @ RH
            else:
                gemm.matmul_tn_add(dP, Hprev, dWhh)                          # dW_hh = dP^T H_prev
            db = dbias.sum(axis=0)
            grads[f"{prefix}weight_ih_l{k}{s}"] = dWih
            grads[f"{prefix}weight_hh_l{k}{s}"] = dWhh
            grads[f"{prefix}bias_ih_l{k}{s}"] = db
            grads[f"{prefix}bias_hh_l{k}{s}"] = db.copy()
            if code == LSTM and cfg.peephole:
                grads[f"{prefix}weight_peep_l{k}{s}"] = dpeep.sum(axis=0)
            dXs = np.empty((N, Wih.shape[1]), dtype)
            gemm.matmul(dP, Wih, dXs)                                        # dX = dP W_ih
            if d:
                dXs = dXs[layout.rev]
            dX = dXs if dX is None else dX + dXs
        if masks is not None and masks[k] is not None:
            dX = dX * masks[k]
        dY = dX
    return dY, grads, dh0


def _prev_rows(layout: Layout) -> np.ndarray:
    """For every packed row, the row of the previous state in the stacked array [h0 (B rows); Hs (N)]:
    b for step 0, B + row(t-1, b) after."""
    t, b = layout.step_of_row, layout.seq_of_row
    return np.where(t == 0, b, layout.B + layout.offsets[np.maximum(t - 1, 0)] + b)
