"""Slow, obviously-correct references for the trace kernels (plain Python loops and sets)."""

from __future__ import annotations

import numpy as np

REDRAW_MUL = 1031.0
REDRAW_ADD = 0.6180339887498949
MAX_REDRAWS = 6


def alias_mass(alias_prob, alias_idx):
    """Probability each expert gets under alias tables (what the tables encode)."""
    n_rows, n = alias_prob.shape
    mass = np.zeros((n_rows, n))
    for row in range(n_rows):
        for b in range(n):
            mass[row, b] += alias_prob[row, b] / n
            mass[row, alias_idx[row, b]] += (1.0 - alias_prob[row, b]) / n
    return mass


def _alias(alias_prob, alias_idx, layer, x):
    n = len(alias_prob[layer])
    b = min(int(x * n), n - 1)
    return b if x * n - b < alias_prob[layer][b] else int(alias_idx[layer][b])


def _frac_step(x):
    x = x * REDRAW_MUL + REDRAW_ADD
    return x - int(x)


def _popular(probability, alias_prob, alias_idx, layer, x, taken):
    for _ in range(MAX_REDRAWS + 1):
        e = _alias(alias_prob, alias_idx, layer, x)
        if e not in taken:
            return e
        x = _frac_step(x)
    free = [e for e in range(len(probability[layer])) if e not in taken]
    remaining = sum(probability[layer][e] for e in free)
    acc = 0.0
    for e in free:
        acc += probability[layer][e]
        if acc > x * remaining and probability[layer][e] > 0:
            return e
    return free[0]


def generate_routing(probability, alias_prob, alias_idx, affinity, p_reuse, p_recall, recall_decay, p_affinity,
                     uniforms, history, n_history):
    """Reference for kernels.trace_gen.generate_routing; returns a list of lists of lists."""
    n_tokens, n_layers, k = uniforms.shape[:3]
    fanout = affinity.shape[2]
    past = [[list(map(int, row)) for row in tok] for tok in history[:n_history]]  # most recent first
    out = []
    for t in range(n_tokens):
        available = min(len(past), len(history))
        row = []
        for layer in range(n_layers):
            taken = []
            for j in range(k):
                u, x = float(uniforms[t, layer, j, 0]), float(uniforms[t, layer, j, 1])
                chosen = None
                p_copy = p_reuse[layer] + p_recall[layer]
                distance = None
                if u < p_reuse[layer]:
                    distance = 1
                elif u < p_copy and available >= 2:
                    # truncated geometric over d = 2, 3, ...: smallest d whose cumulative mass exceeds v
                    v = (u - p_reuse[layer]) / p_recall[layer]
                    q = recall_decay[layer]
                    d, mass, cum = 2, 1 - q, 1 - q
                    while v >= cum and d < available:
                        d, mass = d + 1, mass * q
                        cum += mass
                    distance = d
                if distance is not None and distance <= available:
                    free = [e for e in past[distance - 1][layer] if e not in taken]
                    if free:
                        chosen = free[int(x * len(free))]
                elif u >= p_copy and layer > 0 and u < p_copy + p_affinity[layer]:
                    i = min(int(x * k), k - 1)
                    f = min(int((x * k - i) * fanout), fanout - 1)
                    candidate = int(affinity[layer, row[layer - 1][i], f])
                    if candidate not in taken:
                        chosen = candidate
                if chosen is None:
                    if u < p_copy + p_affinity[layer]:
                        x = _frac_step(x)
                    chosen = _popular(probability, alias_prob, alias_idx, layer, x, taken)
                taken.append(chosen)
            row.append(taken)
        out.append(row)
        past.insert(0, row)
    return out


def first_bad_long_row(seq, token, layer, phase, experts, moe_layers, n_experts):
    """Reference for the long-format scan: (reason, row) of the first broken rule, or (None, -1).

    Reasons: 'negative', 'unsorted', 'missing-layer', 'phase', 'layer', 'range', 'duplicate'.
    """
    n_layers = len(moe_layers)
    previous_key = None
    for r in range(len(seq)):
        pos = r % n_layers
        key = (int(seq[r]), int(token[r]))
        if key[0] < 0 or key[1] < 0:
            return "negative", r
        if pos == 0:
            if previous_key is not None and key <= previous_key:
                return "unsorted", r
            previous_key = key
            group_phase = phase[r]
        else:
            if key != previous_key:
                return "missing-layer", r
            if phase[r] != group_phase:
                return "phase", r
        if int(layer[r]) != moe_layers[pos]:
            return "layer", r
        ids = [int(e) for e in experts[r]]
        for i, e in enumerate(ids):
            if e >= n_experts:
                return "range", r
            if e in ids[:i]:
                return "duplicate", r
    return None, -1
