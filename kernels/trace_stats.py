"""Routing-statistics kernels: temporal reuse, reuse distances, working sets, inter-layer tables."""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit


@jit
def reuse_counts(experts, first_of_seq):
    """Per layer: (reused, lookups) where reused counts experts of token t that token t-1 also used.

    Only pairs inside one sequence count (a token that starts a sequence has no predecessor).
    """
    n_tokens, n_layers, k = experts.shape
    reused = np.zeros(n_layers, dtype=np.int64)
    lookups = np.zeros(n_layers, dtype=np.int64)
    for t in range(1, n_tokens):
        if first_of_seq[t]:
            continue
        for layer in range(n_layers):
            for j in range(k):
                e = experts[t, layer, j]
                lookups[layer] += 1
                for i in range(k):
                    if experts[t - 1, layer, i] == e:
                        reused[layer] += 1
                        break
    return reused, lookups


@jit
def reuse_distance_histogram(experts, first_of_seq, n_experts, n_bins):
    """Per layer: histogram of token distances since the expert's previous use in the sequence.

    Bin 0 counts first uses in a sequence (no previous use); bin b >= 1 counts distances d with
    2**(b-1) <= d < 2**b, the last bin also everything longer.
    """
    n_tokens, n_layers, k = experts.shape
    hist = np.zeros((n_layers, n_bins), dtype=np.int64)
    last_use = np.full((n_layers, n_experts), -1, dtype=np.int64)
    seq_start = 0
    for t in range(n_tokens):
        if first_of_seq[t]:
            seq_start = t
        for layer in range(n_layers):
            for j in range(k):
                e = experts[t, layer, j]
                previous = last_use[layer, e]
                if previous < seq_start:
                    hist[layer, 0] += 1
                else:
                    d = t - previous
                    b = 1
                    while d >= 2 and b < n_bins - 1:
                        d >>= 1
                        b += 1
                    hist[layer, b] += 1
                last_use[layer, e] = t
    return hist


@jit
def mean_working_set(experts, n_experts, window):
    """Per layer: mean number of distinct experts in consecutive non-overlapping windows of tokens.

    A trailing partial window is ignored (unless the trace is shorter than one window).
    """
    n_tokens, n_layers, k = experts.shape
    n_windows = n_tokens // window
    if n_windows == 0:
        n_windows = 1
        window = n_tokens
    total = np.zeros(n_layers, dtype=np.float64)
    stamp = np.full((n_layers, n_experts), -1, dtype=np.int64)
    for w in range(n_windows):
        for t in range(w * window, (w + 1) * window):
            for layer in range(n_layers):
                for j in range(k):
                    e = experts[t, layer, j]
                    if stamp[layer, e] != w:
                        stamp[layer, e] = w
                        total[layer] += 1.0
    out = np.zeros(n_layers, dtype=np.float64)
    if n_tokens == 0:
        return out
    for layer in range(n_layers):
        out[layer] = total[layer] / n_windows
    return out


@jit
def cooccurrence(experts, tokens, n_experts):
    """counts[l, a, b]: tokens (from `tokens`) that pick a in MoE layer l and b in layer l + 1."""
    n_layers = experts.shape[1]
    k = experts.shape[2]
    counts = np.zeros((max(n_layers - 1, 0), n_experts, n_experts), dtype=np.int32)
    for idx in range(tokens.shape[0]):
        t = tokens[idx]
        for layer in range(n_layers - 1):
            for i in range(k):
                a = experts[t, layer, i]
                for j in range(k):
                    counts[layer, a, experts[t, layer + 1, j]] += 1
    return counts


@jit
def _top_k_indices(scores, k, out):
    """Indices of the k largest scores, highest first (ties to the lower index), written to `out`."""
    n = scores.shape[0]
    filled = 0
    for e in range(n):
        if filled == k and not scores[e] > scores[out[k - 1]]:
            continue
        pos = filled if filled < k else k - 1
        while pos > 0 and scores[e] > scores[out[pos - 1]]:
            if pos < k:
                out[pos] = out[pos - 1]
            pos -= 1
        out[pos] = e
        if filled < k:
            filled += 1


@jit
def predicted_hits(experts, tokens, counts, popularity_next):
    """Per layer transition l -> l+1: hits of the co-occurrence prediction and of a popularity baseline.

    The prediction for layer l+1 is the top-k experts by the summed counts[l, a, :] over the token's
    experts a in layer l; the baseline is the k most popular experts of layer l+1 (popularity_next[l]).
    Returns (table_hits, baseline_hits, lookups), each (n_layers - 1,).
    """
    n_layers = experts.shape[1]
    k = experts.shape[2]
    n_experts = counts.shape[1]
    n_pairs = max(n_layers - 1, 0)
    table_hits = np.zeros(n_pairs, dtype=np.int64)
    baseline_hits = np.zeros(n_pairs, dtype=np.int64)
    lookups = np.zeros(n_pairs, dtype=np.int64)
    scores = np.zeros(n_experts, dtype=np.float64)
    predicted = np.empty(k, dtype=np.int64)
    baseline = np.empty((n_pairs, k), dtype=np.int64)
    for layer in range(n_pairs):
        _top_k_indices(popularity_next[layer], k, baseline[layer])
    for idx in range(tokens.shape[0]):
        t = tokens[idx]
        for layer in range(n_pairs):
            for e in range(n_experts):
                scores[e] = 0.0
            for i in range(k):
                a = experts[t, layer, i]
                for e in range(n_experts):
                    scores[e] += counts[layer, a, e]
            # popularity breaks ties so unseen rows fall back to the baseline
            for e in range(n_experts):
                scores[e] += popularity_next[layer, e] * 1e-6
            _top_k_indices(scores, k, predicted)
            for j in range(k):
                actual = experts[t, layer + 1, j]
                lookups[layer] += 1
                for s in range(k):
                    if predicted[s] == actual:
                        table_hits[layer] += 1
                        break
                for s in range(k):
                    if baseline[layer, s] == actual:
                        baseline_hits[layer] += 1
                        break
    return table_hits, baseline_hits, lookups
