"""Scoring many short streams through their distinct prefixes: each shared prefix is computed once.

Position t of a stream s (input EOS when t = 0, else s_t; target s_{t+1}) has a state and an output
distribution that depend on the prefix s_1..s_t alone. So the streams' positions are the nodes of a
trie of prefixes, and a node's log-softmax serves every stream that passes through it:
    NLL(s) = Σ_t  lse(node_t) - z(node_t)[s_{t+1}],   lse = log Σ_v exp z_v
The trie runs level by level (depth d = prefix length): one step of the whole stack for all nodes of
the level at once, from their parents' states, then the decoder over them. Streams are sorted before
they are cut into groups, so neighbours share their prefixes.
When it pays (`worth_it`): on n-best lists it is several times faster than scoring through windows,
on plain corpora, where nearly every prefix is distinct, no faster, on character lines slower (measured
with the recipe models: bench/RESULTS.md). So it takes over only where at most SHARE of the positions
are distinct.
"""
from __future__ import annotations

import numpy as np

from charlm import model
from charlm.kernels.loss import logsoftmax_nll

MAX_LEN = 256      # longer streams go through evaluate's windows (a level per token would be slow)
SHARE = 0.7        # the trie takes over when distinct prefixes are at most this part of the positions
GROUP = 16384      # streams per trie: bounds the states kept for one level
LOGITS = 1 << 26   # floats of logits per decoder product (rows = LOGITS // V, at most 8192): 256 MB


def worth_it(streams) -> bool:
    """Whether the distinct prefixes of `streams` (1-D id arrays of 1 token or more) are at most SHARE of
    their positions.

    In lexicographic order a stream's longest prefix shared with any earlier one is shared with the one
    just before it, so the distinct prefixes s[:t] (t < n) are counted from neighbours alone."""
    lists = sorted(s.tolist() for s in streams)
    positions = sum(len(s) for s in lists)
    distinct = len(lists[0]) if lists else 0
    for prev, cur in zip(lists, lists[1:]):
        m = min(len(prev), len(cur)) - 1                      # a shared prefix s[:t] has t <= m
        lcp = next((t for t in range(m) if prev[t] != cur[t]), m)
        distinct += len(cur) - (lcp + 1)                      # s[:0] .. s[:lcp] are prev's already
    return distinct <= SHARE * positions


def streams_nll(cfg, P, streams, per_token: bool = False, progress=None):
    """As evaluate.streams_nll for unidirectional models and streams of 1 to MAX_LEN tokens."""
    S = len(streams)
    sums = np.zeros(S, np.float64)
    per = [None] * S
    order = sorted(range(S), key=lambda i: streams[i].tolist())
    for g0 in range(0, S, GROUP):
        group = order[g0:g0 + GROUP]
        nll = _group_nll(cfg, P, [streams[i] for i in group])
        for i, v in zip(group, nll):
            sums[i] = v.sum()
            if per_token:
                per[i] = v
        if progress is not None:
            progress(sum(len(streams[i]) for i in group))
    return sums, per


def _trie(streams, eos_id):
    """Nodes of the prefixes in level order, and each position's node.

    Returns parent (N,) (-1 for the root), token (N,) the input read at the node, level_start
    (depth+2,) where level d is nodes level_start[d]..level_start[d+1]-1, and nodes, a list of each
    stream's (n_i,) node ids (position t reads at node nodes[i][t])."""
    parent, token, depth, children = [-1], [eos_id], [0], [{}]
    nodes = []
    for s in streams:
        ids = s.tolist()
        at = np.empty(len(ids), np.int64)
        v = 0
        for t, tok in enumerate(ids):
            at[t] = v
            if t + 1 < len(ids):
                child = children[v].get(tok)
                if child is None:
                    child = len(parent)
                    children[v][tok] = child
                    children.append({})
                    parent.append(v)
                    token.append(tok)
                    depth.append(depth[v] + 1)
                v = child
        nodes.append(at)
    depth = np.array(depth)
    by_level = np.argsort(depth, kind="stable")                      # old id at each new id
    renumber = np.empty_like(by_level)
    renumber[by_level] = np.arange(len(by_level))
    parent = np.array(parent)[by_level]
    parent = np.where(parent >= 0, renumber[np.maximum(parent, 0)], -1)
    token = np.array(token, np.int32)[by_level]
    level_start = np.searchsorted(depth[by_level], np.arange(depth.max() + 2))
    return parent, token, level_start, [renumber[a] for a in nodes]


def _group_nll(cfg, P, streams):
    """Each stream's (n_i,) float64 token NLLs, through the trie of the group's prefixes."""
    parent, token, level_start, nodes = _trie(streams, cfg.eos_id)
    pos_node = np.concatenate(nodes)                                  # (positions,) node read
    pos_target = np.concatenate(streams).astype(np.int64)             # (positions,) token predicted
    by_node = np.argsort(pos_node, kind="stable")
    sorted_node = pos_node[by_node]
    any_target = np.zeros(len(parent), np.int32)                      # one target per node, any
    any_target[pos_node] = pos_target
    value = np.empty(len(pos_node), np.float64)
    dtype = P["embedding.weight"].dtype
    state = model.zero_state(cfg, 1, dtype)                           # the root's parent: zero
    rows = max(1, min(8192, LOGITS // cfg.vocab_size))
    for d in range(len(level_start) - 1):
        a, b = level_start[d], level_start[d + 1]
        if a == b:
            break
        if d > 0:
            state = np.ascontiguousarray(state[:, :, parent[a:b] - level_start[d - 1]])
        Y, _, state = model.forward(cfg, P, token[a:b][None, :], state, for_backward=False)   # Y (1, n, H)
        for r0 in range(a, b, rows):
            r1 = min(b, r0 + rows)
            Z = model.logits(cfg, P, Y[:, r0 - a:r1 - a])                                        # (rows, V)
            y = any_target[r0:r1]
            nll = np.empty(r1 - r0, np.float64)
            logsoftmax_nll(Z, y, nll)
            lse = nll + Z[np.arange(r1 - r0), y]                                                 # log Σ exp z
            lo, hi = np.searchsorted(sorted_node, [r0, r1])
            at = by_node[lo:hi]
            row = pos_node[at] - r0
            value[at] = lse[row] - Z[row, pos_target[at]]
    bounds = np.cumsum([0] + [len(s) for s in streams])
    return [value[bounds[i]:bounds[i + 1]].copy() for i in range(len(streams))]
