"""Trace kernels against the plain-Python references in tests/naive_trace.py (small inputs: this
file also runs with NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

import numpy as np
import pytest

import naive_trace
from moesim.kernels import trace_check, trace_gen

REASON = {
    trace_check.NEGATIVE: "negative",
    trace_check.UNSORTED: "unsorted",
    trace_check.TOKEN_CHANGED: "missing-layer",
    trace_check.PHASE_CHANGED: "phase",
    trace_check.WRONG_LAYER: "layer",
    trace_check.EXPERT_RANGE: "range",
    trace_check.DUPLICATE: "duplicate",
}


def _tables(rng, n_layers, n_experts, skew):
    probability = rng.dirichlet(np.full(n_experts, skew), size=n_layers)
    alias_prob = np.empty_like(probability)
    alias_idx = np.empty(probability.shape, dtype=np.int64)
    trace_gen.build_alias(probability, alias_prob, alias_idx)
    return probability, alias_prob, alias_idx


@pytest.mark.parametrize("skew", [0.05, 1.0, 50.0])
def test_alias_tables_encode_the_distribution_exactly(skew):
    rng = np.random.default_rng(3)
    probability, alias_prob, alias_idx = _tables(rng, 3, 11, skew)
    np.testing.assert_allclose(naive_trace.alias_mass(alias_prob, alias_idx), probability, atol=1e-12)


@pytest.mark.parametrize(
    "n_experts,k,p_reuse,p_recall,decay,p_affinity,skew,n_history",
    [(8, 2, 0.3, 0.0, 0.5, 0.2, 1.0, 0), (6, 5, 0.3, 0.2, 0.5, 0.3, 0.05, 2), (16, 4, 0.0, 0.0, 0.0, 0.0, 0.2, 0),
     (5, 5, 0.2, 0.3, 0.9, 0.2, 0.3, 4), (12, 3, 0.3, 0.4, 0.7, 0.1, 0.5, 4), (9, 2, 0.1, 0.6, 0.0, 0.2, 0.5, 1)],
)
def test_generate_routing_matches_reference(n_experts, k, p_reuse, p_recall, decay, p_affinity, skew, n_history):
    rng = np.random.default_rng(n_experts * 10 + k)
    n_tokens, n_layers, fanout, depth = 12, 3, 3, 4
    probability, alias_prob, alias_idx = _tables(rng, n_layers, n_experts, skew)
    affinity = rng.integers(0, n_experts, size=(n_layers, n_experts, fanout)).astype(np.int32)
    reuse, recall = np.full(n_layers, p_reuse), np.full(n_layers, p_recall)
    decay_arr, aff = np.full(n_layers, decay), np.full(n_layers, p_affinity)
    uniforms = rng.random((n_tokens, n_layers, k, 2))
    history = np.array([[rng.permutation(n_experts)[:k] for _ in range(n_layers)] for _ in range(depth)],
                       dtype=np.int64)
    out = np.zeros((n_tokens, n_layers, k), dtype=np.uint8)
    trace_gen.generate_routing(probability, alias_prob, alias_idx, affinity, reuse, recall, decay_arr, aff,
                               uniforms, history, n_history, out)
    expected = naive_trace.generate_routing(probability, alias_prob, alias_idx, affinity, reuse, recall, decay_arr,
                                            aff, uniforms, history, n_history)
    assert out.tolist() == expected
    for row in out.reshape(-1, k):
        assert len(set(row.tolist())) == k


@pytest.mark.parametrize("n_history,chunk", [(0, 3), (2, 5), (4, 9)])
def test_push_history_keeps_most_recent_first(n_history, chunk):
    depth = 4
    history = np.arange(depth * 2 * 1).reshape(depth, 2, 1).astype(np.int64) + 100
    before = history.copy()
    out = np.arange(chunk * 2).reshape(chunk, 2, 1).astype(np.uint8)
    new_n = trace_gen.push_history(history, n_history, out)
    expected = [out[chunk - 1 - d] if d < chunk else before[d - chunk] for d in range(depth)]
    np.testing.assert_array_equal(history, np.array(expected))
    assert new_n == min(depth, n_history + chunk)


def _long_rows(rng, n_tokens, moe_layers, n_experts, k):
    n_layers = len(moe_layers)
    seq = np.repeat(np.arange(n_tokens) // 4, n_layers).astype(np.int32)
    token = np.repeat(np.arange(n_tokens) % 4, n_layers).astype(np.int32)
    layer = np.tile(np.asarray(moe_layers, dtype=np.int16), n_tokens)
    phase = np.repeat((np.arange(n_tokens) % 4 == 0).astype(np.uint8), n_layers)
    experts = np.array([rng.permutation(n_experts)[:k] for _ in range(n_tokens * n_layers)], dtype=np.uint16)
    return seq, token, layer, phase, experts


CORRUPTIONS = ["none", "range", "duplicate", "layer", "drop-row", "swap-tokens", "negative", "phase"]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("split", [None, 7])
def test_check_long_rows_matches_reference(corruption, split):
    rng = np.random.default_rng(CORRUPTIONS.index(corruption))
    moe_layers = (1, 2, 4)
    n_experts, k = 6, 2
    seq, token, layer, phase, experts = _long_rows(rng, 8, moe_layers, n_experts, k)
    r = 10
    if corruption == "range":
        experts[r, 1] = n_experts
    elif corruption == "duplicate":
        experts[r, 1] = experts[r, 0]
    elif corruption == "layer":
        layer[r] = 3
    elif corruption == "drop-row":
        seq, token, layer, phase, experts = (np.delete(a, r, axis=0) for a in (seq, token, layer, phase, experts))
    elif corruption == "swap-tokens":
        a, b = slice(9, 12), slice(12, 15)
        for arr in (seq, token):
            arr[a], arr[b] = arr[b].copy(), arr[a].copy()
    elif corruption == "negative":
        token[r] = -1
    elif corruption == "phase":
        phase[r] = 1 - phase[r]
    expected_reason, expected_row = naive_trace.first_bad_long_row(seq, token, layer, phase, experts, moe_layers,
                                                                   n_experts)
    state = np.zeros(5, dtype=np.int64)
    ml = np.asarray(moe_layers, dtype=np.int16)
    bounds = [0, len(seq)] if split is None else [0, split, len(seq)]
    code, row = trace_check.OK, -1
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        code, bad, _ = trace_check.check_long_rows(seq[lo:hi], token[lo:hi], layer[lo:hi], phase[lo:hi],
                                                   experts[lo:hi], ml, n_experts, state)
        if code != trace_check.OK:
            row = lo + int(bad)
            break
    assert REASON.get(code) == expected_reason
    assert row == expected_row
    if corruption != "none":
        assert expected_reason is not None


def test_check_compact_experts_finds_first_bad_token_layer():
    rng = np.random.default_rng(0)
    experts = np.array([[rng.permutation(8)[:3] for _ in range(4)] for _ in range(5)], dtype=np.uint8)
    assert trace_check.check_compact_experts(experts, 8)[0] == trace_check.OK
    bad = experts.copy()
    bad[3, 2, 1] = bad[3, 2, 0]
    bad[4, 0, 0] = 9
    code, t, layer, e = trace_check.check_compact_experts(bad, 8)
    assert (code, t, layer, e) == (trace_check.DUPLICATE, 3, 2, bad[3, 2, 0])
    code, t, layer, e = trace_check.check_compact_experts(bad, 10)
    assert code == trace_check.DUPLICATE
    bad[3, 2] = [0, 1, 2]
    code, t, layer, e = trace_check.check_compact_experts(bad, 8)
    assert (code, t, layer, e) == (trace_check.EXPERT_RANGE, 4, 0, 9)


def _routing(seed, n=40, n_layers=3, n_experts=7, k=2):
    rng = np.random.default_rng(seed)
    # a small pool per layer makes repeats, ties and reuse common
    return np.array([[rng.choice(n_experts, size=k, replace=False) for _ in range(n_layers)] for _ in range(n)],
                    dtype=np.uint8)


def _first(n, starts):
    first = np.zeros(n, dtype=bool)
    first[list(starts)] = True
    return first


@pytest.mark.parametrize("seed", [0, 1])
def test_reuse_and_distance_kernels_match_reference(seed):
    from moesim.kernels import trace_stats

    experts = _routing(seed)
    first = _first(len(experts), [0, 17])
    reused, lookups = trace_stats.reuse_counts(experts, first)
    assert (reused.tolist(), lookups.tolist()) == tuple(naive_trace.reuse_counts(experts, first))
    hist = trace_stats.reuse_distance_histogram(experts, first, 7, 5)
    assert hist.tolist() == naive_trace.reuse_distance_histogram(experts, first, 5)


@pytest.mark.parametrize("window", [1, 4, 7, 100])
def test_working_set_kernel_matches_reference(window):
    from moesim.kernels import trace_stats

    experts = _routing(3)
    np.testing.assert_allclose(trace_stats.mean_working_set(experts, 7, window),
                               naive_trace.mean_working_set(experts, window))


def test_interlayer_prediction_kernels_match_reference():
    from moesim.kernels import trace_stats

    experts = _routing(4, n=30, n_layers=3, n_experts=6, k=2)
    train = np.arange(15, dtype=np.int64)
    test = np.arange(15, 30, dtype=np.int64)
    counts = trace_stats.cooccurrence(experts, train, 6)
    pop = np.zeros((2, 6))
    for t in train:
        for layer in (1, 2):
            for e in experts[t, layer]:
                pop[layer - 1, e] += 1
    got = trace_stats.predicted_hits(experts, test, counts, pop)
    assert tuple(x.tolist() for x in got) == tuple(naive_trace.predicted_hits(experts, train, test))
