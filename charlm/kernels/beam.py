"""Compiled beam search: the W most likely continuations of n tokens, W hypotheses side by side.

The W hypotheses are the rows of one batch (B = W), so each step is one batched pass of
`cells.forward_step` per layer, exactly as in `kernels.sample.generate`.

Scores. A hypothesis y_1..y_t after the prefix has the score
    s(y_1..y_t) = Σ_i log p(y_i | prefix, y_<i),    log p(v | ·) = z_v − m − log Σ_u exp(z_u − m),
    z = h_top decoder.weight^T + decoder.bias (model dtype, as the sampler),  m = max_u z_u
with the log-softmax taken in float64 (natural log). No length normalisation: hypotheses of different
lengths (stop_at_eos) are compared by total log-probability, which favours short ones.

Algorithm.
  0. Feed the prefix (P >= 1 tokens, prefix[0] = EOS, from the zero state) through one row, copy its state
     into all W rows. Only row 0 is live, with s = 0: no duplicate hypotheses at step 0.
  1. Step i = 0..n-1: candidates, in increasing flat index f = r*V + v (r the parent row):
       live row r:     V candidates (r, v) with score s_r + log p(v | row r)
       finished row r: 1 candidate, itself, with its unchanged score s_r (stop_at_eos only)
       unused row:     none (only while fewer than W hypotheses exist, i.e. V^i < W)
     Keep the k = min(W, #candidates) best: a partial selection by a size-k heap (O(C log k), no
     allocation), then heap-sorted best first; equal scores rank by lower flat index (deterministic).
     Rows k..W-1 become unused: score -inf, length 0.
  2. Gather: new row j takes parent row's state (into a second state buffer, then the two swap: no row
     is overwritten while another still reads it), score, length; feed the chosen tokens (one batched
     step) unless this was the last step.
  With stop_at_eos a live hypothesis that emits EOS is finished: it keeps its score and competes for a
  beam slot by itself (its one candidate above). Log-probabilities are <= 0, so scores only fall as
  hypotheses grow: once all W slots hold finished hypotheses, no live one can beat them and the search
  stops early; otherwise it runs to n. The result is then the W best among hypotheses that either ended
  at their first EOS or reached n tokens. Without stop_at_eos EOS is an ordinary token.
  Histories are kept as back-pointers (parent row, token; token -1 for a finished row carried over) per
  step, O(nW), and read backwards at the end, instead of copying W token rows every step (O(n²W)).
"""
import numpy as np
from numba import njit

from charlm.kernels import SERIAL
from charlm.kernels.cells import scratch_size
from charlm.kernels.sample import feed

UNUSED = 0     # row holds no hypothesis (fewer than W exist yet)
LIVE = 1       # row's hypothesis is still extended
FINISHED = 2   # row's hypothesis ended at EOS (stop_at_eos)


@njit(cache=True, inline="always")
def _better(s, i, j):
    """Candidate i ranks above candidate j: higher score, or equal score and lower index."""
    return s[i] > s[j] or (s[i] == s[j] and i < j)


@njit(**SERIAL)
def _sift_down(heap, size, pos, s):
    """Restore the heap below pos; the heap keeps its worst candidate at the root."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and _better(s, heap[child], heap[child + 1]):
            child += 1                                               # the worse child
        if _better(s, heap[pos], heap[child]):
            t = heap[pos]
            heap[pos] = heap[child]
            heap[child] = t
            pos = child
        else:
            return


@njit(**SERIAL)
def top_k(s, C, k, heap):
    """heap[:k] <- indices of the k best of s[:C] (k <= C), best first; equal scores: lower index first.

    A partial selection: a size-k heap rooted at its worst member, one pass over the candidates, then a
    heap sort. No allocation.
    """
    size = 0
    for c in range(C):
        if size < k:
            pos = size
            heap[pos] = c
            size += 1
            while pos > 0:                                           # sift up
                parent = (pos - 1) // 2
                if _better(s, heap[parent], heap[pos]):
                    t = heap[parent]
                    heap[parent] = heap[pos]
                    heap[pos] = t
                    pos = parent
                else:
                    break
        elif _better(s, c, heap[0]):
            heap[0] = c
            _sift_down(heap, k, 0, s)
    for end in range(k - 1, 0, -1):                                  # worst to the back
        t = heap[0]
        heap[0] = heap[end]
        heap[end] = t
        _sift_down(heap, end, 0, s)


@njit(**SERIAL, nogil=True)   # nogil: the caller waits in Python, so Ctrl-C works
def beam_search(cell, emb, table0, Wih, Wf, Wf2, bias, peep, dec, dec_b, prefix, n, W, eos_id, stop_at_eos, out, scores,
                lengths):
    """Beam search of width W for n tokens after prefix (P >= 1 tokens, prefix[0] = EOS), from a zero state.

    emb (V, E); table0 as in `sample.feed`; Wih, bias, peep: tuples of L arrays (GH, In), (GH,) both biases summed, (3, H) or (0, H);
    Wf, Wf2: tuples of L recurrent weights from `cells.pack_forward` for W rows; dec (V, H), dec_b (V,);
    W >= 1.
    out (W, n) int32: the hypotheses, best first; positions from lengths[j] on hold -1.
    scores (W,) float64: total natural-log probability of each hypothesis' generated tokens.
    lengths (W,) int64: generated tokens per hypothesis (with stop_at_eos, up to and including the EOS).
    Rows that hold no hypothesis (fewer than W exist, e.g. V^n < W) get score -inf and length 0.
    """
    L = len(Wih)
    V, E = emb.shape
    GH, H = bias[0].shape[0], dec.shape[1]
    dt = emb.dtype
    # --- buffers, all allocated before the loops ----------------------------------------------------
    state = np.zeros((L, 2, W, H), dt)              # (L, 2, W, H) h and c of every row
    state2 = np.zeros((L, 2, W, H), dt)             # gather target, swapped with state each step
    tok = np.empty(W, np.int32)                     # (W,) tokens fed at the next step
    rows = np.arange(W).astype(np.int32)            # (W,) 0, 1, ..: `feed`'s row index
    xe = np.empty((W, E), dt)
    xp = np.empty((W, GH), dt)
    a = np.empty((W, GH), dt)
    hn = np.empty((W, H), dt)
    cn = np.zeros((W, H), dt)
    rh = np.empty((W, H), dt)
    tmp = np.empty(scratch_size(W, H, GH // H, Wf[0], Wf2[0]), dt)   # forward_step scratch for B <= W rows
    state1 = np.zeros((L, 2, 1, H), dt)             # the prefix runs through one row
    tok1 = np.empty(1, np.int32)
    xe1 = np.empty((1, E), dt)
    xp1 = np.empty((1, GH), dt)
    a1 = np.empty((1, GH), dt)
    hn1 = np.empty((1, H), dt)
    cn1 = np.zeros((1, H), dt)
    rh1 = np.empty((1, H), dt)
    z = np.empty((W, V), dt)                        # (W, V) logits
    cand_s = np.empty(W * V, np.float64)            # (C,) candidate scores, C <= W*V
    cand_r = np.empty(W * V, np.int64)              # (C,) parent row
    cand_t = np.empty(W * V, np.int32)              # (C,) token, -1: a finished row carried over
    heap = np.empty(W, np.int64)                    # (k,) selected candidates, best first
    score = np.full(W, -np.inf)                     # (W,) per row, and the next step's copies
    score2 = np.empty(W, np.float64)
    length = np.zeros(W, np.int64)
    length2 = np.zeros(W, np.int64)
    status = np.zeros(W, np.int8)
    status2 = np.zeros(W, np.int8)
    bp_row = np.zeros((n, W), np.int64)             # (n, W) back-pointer: parent row at step i
    bp_tok = np.full((n, W), -1, np.int32)          # (n, W) token appended at step i (-1: none)
    # --- 0. the prefix, one row, then copied into every row ---------------------------------------------
    for t in range(prefix.shape[0]):
        tok1[0] = prefix[t]
        feed(cell, emb, table0, Wih, Wf, Wf2, bias, peep, tok1, rows, state1, xe1, xp1, a1, hn1, cn1, rh1, tmp)
    for k in range(L):
        for s in range(2):
            for j in range(W):
                state[k, s, j, :] = state1[k, s, 0, :]
    score[0] = 0.0
    status[0] = LIVE
    steps = 0
    for i in range(n):
        # --- 1. candidates and selection ----------------------------------------------------------------
        np.dot(state[L - 1, 0], dec.T, z)                            # (W, V) h_top decoder^T
        C = 0
        for r in range(W):
            if status[r] == LIVE:
                m = -np.inf
                for v in range(V):
                    z[r, v] += dec_b[v]                              # in model dtype, as the sampler
                    zv = np.float64(z[r, v])
                    if zv > m:
                        m = zv
                acc = 0.0
                for v in range(V):
                    acc += np.exp(np.float64(z[r, v]) - m)
                lse = m + np.log(acc)                                # log Σ_v exp z_v, float64
                for v in range(V):
                    cand_s[C] = score[r] + (np.float64(z[r, v]) - lse)
                    cand_r[C] = r
                    cand_t[C] = v
                    C += 1
            elif status[r] == FINISHED:
                cand_s[C] = score[r]
                cand_r[C] = r
                cand_t[C] = -1
                C += 1
        k = min(W, C)
        top_k(cand_s, C, k, heap)
        # --- 2. gather parents into the second buffers -------------------------------------------------
        live = 0
        for j in range(W):
            if j < k:
                c = heap[j]
                r = cand_r[c]
                t = cand_t[c]
                score2[j] = cand_s[c]
                bp_row[i, j] = r
                bp_tok[i, j] = t
                if t < 0:                                            # finished, carried over
                    status2[j] = FINISHED
                    length2[j] = length[r]
                    tok[j] = eos_id
                else:
                    status2[j] = FINISHED if stop_at_eos and t == eos_id else LIVE
                    length2[j] = length[r] + 1
                    tok[j] = t
            else:
                r = 0
                score2[j] = -np.inf
                status2[j] = UNUSED
                length2[j] = 0
                tok[j] = eos_id
            if status2[j] == LIVE:
                live += 1
            for kk in range(L):
                for s in range(2):
                    state2[kk, s, j, :] = state[kk, s, r, :]
        state, state2 = state2, state
        score, score2 = score2, score
        length, length2 = length2, length
        status, status2 = status2, status
        steps = i + 1
        if live == 0:
            break
        if i + 1 < n:
            feed(cell, emb, table0, Wih, Wf, Wf2, bias, peep, tok, rows, state, xe, xp, a, hn, cn, rh, tmp)
    # --- 3. read the hypotheses back through the back-pointers ------------------------------------------
    out[:, :] = -1
    for j in range(W):
        scores[j] = score[j]
        lengths[j] = length[j]
        if status[j] == UNUSED:
            continue
        pos = length[j]
        r = j
        for i in range(steps - 1, -1, -1):
            t = bp_tok[i, r]
            if t >= 0:
                pos -= 1
                out[j, pos] = t
            r = bp_row[i, r]
