"""Synthetic routing kernel: draws every token's top-k experts, layer by layer.

Randomness comes in as pre-drawn uniforms (one pair per slot), so the kernel is deterministic and
gives the same result with or without the JIT, and the Python wrapper owns the seeded generator.
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit

# Multiplier/offset of the re-draw map x -> frac(x * A + B) used when a popularity draw hits an
# expert already chosen for the token; a few steps decorrelate well enough and then an exact
# walk over the remaining experts takes over.
_REDRAW_MUL = 1031.0
_REDRAW_ADD = 0.6180339887498949
_MAX_REDRAWS = 6


@jit
def build_alias(probability, alias_prob, alias_idx):
    """Walker alias tables for each row of `probability` (rows sum to 1), filled in place.

    Drawing is then O(1): bucket b = floor(x * n); keep b if the fractional part < alias_prob[b],
    else take alias_idx[b].
    """
    n_rows, n = probability.shape
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    scaled = np.empty(n, dtype=np.float64)
    for row in range(n_rows):
        n_small = np.int64(0)
        n_large = np.int64(0)
        for i in range(n):
            scaled[i] = probability[row, i] * n
            alias_idx[row, i] = i
            if scaled[i] < 1.0:
                small[n_small] = i
                n_small += 1
            else:
                large[n_large] = i
                n_large += 1
        while n_small > 0 and n_large > 0:
            n_small -= 1
            s = small[n_small]
            g = large[n_large - 1]
            alias_prob[row, s] = scaled[s]
            alias_idx[row, s] = g
            scaled[g] = scaled[g] + scaled[s] - 1.0
            if scaled[g] < 1.0:
                n_large -= 1
                small[n_small] = g
                n_small += 1
        # leftovers are 1 up to rounding
        for i in range(n_large):
            alias_prob[row, large[i]] = 1.0
        for i in range(n_small):
            alias_prob[row, small[i]] = 1.0


@jit(inline="always")
def _draw_alias(alias_prob, alias_idx, layer, x):
    n = alias_prob.shape[1]
    scaled = x * n
    b = int(scaled)
    if b >= n:
        b = n - 1
    if scaled - b < alias_prob[layer, b]:
        return b
    return alias_idx[layer, b]


@jit
def _draw_popular(probability, alias_prob, alias_idx, layer, x, used):
    """Draw an expert by popularity that is not marked in `used` (the token's earlier slots)."""
    for _ in range(_MAX_REDRAWS + 1):
        e = _draw_alias(alias_prob, alias_idx, layer, x)
        if used[e] == 0:
            return e
        x = x * _REDRAW_MUL + _REDRAW_ADD
        x = x - int(x)
    return _draw_remaining(probability, layer, x, used)


@jit
def _draw_remaining(probability, layer, x, used):
    """Exact inverse-CDF draw over the experts not marked in `used` (rarely needed)."""
    n = probability.shape[1]
    remaining = 0.0
    for e in range(n):
        if used[e] == 0:
            remaining += probability[layer, e]
    target = x * remaining
    acc = 0.0
    for e in range(n):
        if used[e] == 0:
            acc += probability[layer, e]
            if acc > target and probability[layer, e] > 0.0:
                return e
    # only zero-probability experts remain (k close to n_experts): take the first free one
    for e in range(n):
        if used[e] == 0:
            return e
    return 0


@jit
def generate_routing(probability, alias_prob, alias_idx, affinity, p_reuse, p_recall, recall_decay, p_affinity,
                     uniforms, history, n_history, out):
    """Fill `out` (tokens, layers, k) with expert ids for consecutive tokens of ONE sequence.

    probability: float64 (layers, experts) popularity for this sequence (rows sum to 1), with its
        alias tables alias_prob/alias_idx from `build_alias`.
    affinity: int (layers, experts, fanout) -- affinity[l, a] lists experts of layer l that tend to
        follow expert a of layer l-1 (row 0 unused).
    p_reuse, p_recall, recall_decay, p_affinity: float64 (layers,). A slot copies an expert of the
        previous token in the same layer with probability p_reuse, or of an earlier token of the
        sequence with probability p_recall -- d tokens back, d >= 2 geometric:
        P(d) = (1 - recall_decay) * recall_decay**(d - 2), cut at the history length. Otherwise, with
        p_affinity, it follows the affinity map from a random expert this token picked in the
        previous layer; otherwise (or if the chosen expert is already taken) it draws by
        popularity, never repeating an expert in a token.
    uniforms: float64 (tokens, layers, k, 2) -- [..., 0] picks the mechanism (and the distance),
        [..., 1] the expert.
    history: (H, layers, k) the tokens before the first one here, most recent first; n_history of
        them belong to this sequence (0 at a sequence start).
    """
    n_tokens, n_layers, k = out.shape
    n_experts = probability.shape[1]
    fanout = affinity.shape[2]
    max_distance = history.shape[0]
    used = np.zeros(n_experts, dtype=np.uint8)
    source = np.empty(k, dtype=np.int64)
    for t in range(n_tokens):
        available = t + n_history
        if available > max_distance:
            available = max_distance
        for layer in range(n_layers):
            for j in range(k):
                u = uniforms[t, layer, j, 0]
                x = uniforms[t, layer, j, 1]
                chosen = -1
                p_copy = p_reuse[layer] + p_recall[layer]
                d = 0
                if u < p_reuse[layer]:
                    d = 1
                elif u < p_copy and available >= 2:
                    # distance by inverse CDF of the truncated geometric, from the rescaled u
                    v = (u - p_reuse[layer]) / p_recall[layer]
                    q = recall_decay[layer]
                    d = np.int64(2)
                    mass = 1.0 - q
                    cum = mass
                    while v >= cum and d < available:
                        d += 1
                        mass *= q
                        cum += mass
                if d > available:
                    d = 0
                if d > 0:
                    for i in range(k):
                        if d <= t:
                            source[i] = out[t - d, layer, i]
                        else:
                            source[i] = history[d - t - 1, layer, i]
                    free = np.int64(0)
                    for i in range(k):
                        if used[source[i]] == 0:
                            free += 1
                    if free > 0:
                        target = int(x * free)
                        seen = np.int64(0)
                        for i in range(k):
                            if used[source[i]] == 0:
                                if seen == target:
                                    chosen = source[i]
                                    break
                                seen += 1
                elif u >= p_copy and layer > 0 and u < p_copy + p_affinity[layer]:
                    scaled = x * k
                    i = int(scaled)
                    if i >= k:
                        i = k - 1
                    f = int((scaled - i) * fanout)
                    if f >= fanout:
                        f = fanout - 1
                    candidate = affinity[layer, out[t, layer - 1, i], f]
                    if used[candidate] == 0:
                        chosen = candidate
                if chosen < 0:
                    if u < p_copy + p_affinity[layer]:
                        # x was spent on the failed copy; move it before the popularity draw
                        x = x * _REDRAW_MUL + _REDRAW_ADD
                        x = x - int(x)
                    chosen = _draw_alias(alias_prob, alias_idx, layer, x)
                    if used[chosen] != 0:
                        # slow path kept out of line: collisions are rare and inlining it slows every slot
                        chosen = _draw_popular(probability, alias_prob, alias_idx, layer, x, used)
                out[t, layer, j] = chosen
                used[chosen] = 1
            for j in range(k):
                used[out[t, layer, j]] = 0


@jit
def push_history(history, n_history, out):
    """Update `history` (most recent first) with the tokens of `out`; returns the new n_history.

    Element loops instead of slice assignment: slice copies of 3-D arrays make Numba compile its
    broadcasting and error paths, which cost ~4 s of every cold start for a few thousand stores.
    """
    h = history.shape[0]
    n = out.shape[0]
    n_layers = history.shape[1]
    top_k = history.shape[2]
    if n >= h:
        for d in range(h):
            for layer in range(n_layers):
                for i in range(top_k):
                    history[d, layer, i] = out[n - 1 - d, layer, i]
    else:
        for d in range(h - 1, n - 1, -1):
            for layer in range(n_layers):
                for i in range(top_k):
                    history[d, layer, i] = history[d - n, layer, i]
        for d in range(n):
            for layer in range(n_layers):
                for i in range(top_k):
                    history[d, layer, i] = out[n - 1 - d, layer, i]
    n_history += n
    if n_history > h:
        n_history = h
    return n_history
