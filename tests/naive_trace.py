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


def reuse_counts(experts, first_of_seq):
    """Per layer (reused, lookups) with sets."""
    n, n_layers, _ = experts.shape
    reused, lookups = [0] * n_layers, [0] * n_layers
    for t in range(1, n):
        if first_of_seq[t]:
            continue
        for layer in range(n_layers):
            before = set(experts[t - 1, layer].tolist())
            for e in experts[t, layer].tolist():
                lookups[layer] += 1
                reused[layer] += e in before
    return reused, lookups


def reuse_distance_histogram(experts, first_of_seq, n_bins):
    """Per layer histogram: bin 0 first use in the sequence, bin b covers distances [2**(b-1), 2**b)."""
    n, n_layers, _ = experts.shape
    hist = [[0] * n_bins for _ in range(n_layers)]
    for layer in range(n_layers):
        last = {}
        for t in range(n):
            if first_of_seq[t]:
                last = {}
            for e in experts[t, layer].tolist():
                if e not in last:
                    b = 0
                else:
                    d = t - last[e]
                    b = min(n_bins - 1, d.bit_length())
                hist[layer][b] += 1
                last[e] = t
    return hist


def mean_working_set(experts, window):
    n, n_layers, _ = experts.shape
    if n < window:
        window = n
    n_windows = n // window
    return [sum(len(set(experts[w * window:(w + 1) * window, layer].reshape(-1).tolist()))
                for w in range(n_windows)) / n_windows for layer in range(n_layers)]


def predicted_hits(experts, train, test):
    """Co-occurrence prediction of layer l+1 from layer l (ties to the lower id, popularity tie-break)."""
    n_layers, k = experts.shape[1], experts.shape[2]
    table_hits, base_hits, lookups = [], [], []
    for layer in range(n_layers - 1):
        counts = {}
        pop = {}
        for t in train:
            for b in experts[t, layer + 1].tolist():
                pop[b] = pop.get(b, 0) + 1
            for a in experts[t, layer].tolist():
                for b in experts[t, layer + 1].tolist():
                    counts[(a, b)] = counts.get((a, b), 0) + 1
        n_experts = int(experts.max()) + 1
        baseline = sorted(range(n_experts), key=lambda e: (-pop.get(e, 0), e))[:k]
        th = bh = lk = 0
        for t in test:
            scores = {b: sum(counts.get((a, b), 0) for a in experts[t, layer].tolist()) + pop.get(b, 0) * 1e-6
                      for b in range(n_experts)}
            predicted = sorted(range(n_experts), key=lambda e: (-scores[e], e))[:k]
            for actual in experts[t, layer + 1].tolist():
                lk += 1
                th += actual in predicted
                bh += actual in baseline
        table_hits.append(th)
        base_hits.append(bh)
        lookups.append(lk)
    return table_hits, base_hits, lookups
