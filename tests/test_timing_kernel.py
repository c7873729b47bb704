"""The decode timing kernel equals its plain-Python reference; routing statistics are exact."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.kernels.timing import _expert_time_per_token, _kv_time_per_token
from moesim.timing import RoutingStats
from naive_timing import expert_time_per_token, kv_time_per_token, lru_misses_per_layer


def _random_inputs(rng, T, M, overlap, prefetch):
    k = 4
    counts = rng.integers(1, k + 1, size=(T, M)).astype(np.float64)
    gpu_counts = np.minimum(counts, rng.integers(0, k + 1, size=(T, M))).astype(np.float64)
    misses = np.minimum(counts, rng.integers(0, k + 1, size=(T, M))).astype(np.float64)
    ram_misses = np.minimum(misses, rng.integers(0, 2, size=(T, M))).astype(np.float64)
    home = rng.integers(0, 4, size=M).astype(np.int8)
    vec = lambda lo, hi: rng.uniform(lo, hi, size=M)
    return (counts, gpu_counts, misses, ram_misses, home, vec(0, 1e-4), vec(0, 1e-4), vec(1e-5, 1e-4),
            vec(1e-4, 1e-3), vec(1e-4, 2e-3), vec(1e-3, 1e-2), vec(0, 2e-4), vec(0, 2e-3), overlap, prefetch,
            vec(1e6, 1e8))


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("prefetch", [False, True])
def test_kernel_matches_reference(overlap, prefetch):
    rng = np.random.default_rng(7)
    args = _random_inputs(rng, 12, 9, overlap, prefetch)
    out = np.zeros(12)
    parts = np.zeros(5)
    traffic = np.zeros(6)
    _expert_time_per_token(*args, out, parts, traffic)
    ref, ref_parts, ref_traffic = expert_time_per_token(*args)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    np.testing.assert_allclose(parts, ref_parts, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(traffic, ref_traffic, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 6), M=st.integers(1, 5), overlap=st.booleans(), prefetch=st.booleans())
def test_kernel_matches_reference_property(seed, T, M, overlap, prefetch):
    rng = np.random.default_rng(seed)
    args = _random_inputs(rng, T, M, overlap, prefetch)
    out = np.zeros(T)
    parts = np.zeros(5)
    traffic = np.zeros(6)
    _expert_time_per_token(*args, out, parts, traffic)
    ref, _, ref_traffic = expert_time_per_token(*args)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    np.testing.assert_allclose(traffic, ref_traffic, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 8), L=st.integers(1, 6), context=st.integers(0, 300))
def test_kv_kernel_matches_reference(seed, T, L, context):
    rng = np.random.default_rng(seed)
    coef = rng.uniform(0, 1e-6, size=L)
    window = rng.choice([0, 4, 128, 257], size=L).astype(np.int64)
    out = np.zeros(T)
    _kv_time_per_token(float(context), coef, window, out)
    np.testing.assert_allclose(out, kv_time_per_token(context, coef, window, T), rtol=1e-12)


def _random_trace(rng, T, M, E, k):
    return np.stack([np.stack([rng.choice(E, k, replace=False) for _ in range(M)]) for _ in range(T)]).astype(np.uint8)


@pytest.mark.parametrize("capacity", [0, 1, 3, 5, 11])
def test_routing_misses_equal_plain_lru(capacity):
    rng = np.random.default_rng(3)
    experts = _random_trace(rng, 60, 4, 12, 2)
    stats = RoutingStats(experts, n_experts=12, warmup_tokens=10)
    np.testing.assert_array_equal(stats.misses(capacity), lru_misses_per_layer(experts, capacity, 10))


def test_cache_holding_every_expert_never_misses():
    # a cache that holds all experts of a layer is filled at load time, not on demand
    rng = np.random.default_rng(4)
    stats = RoutingStats(_random_trace(rng, 30, 3, 8, 2), n_experts=8, warmup_tokens=5)
    assert stats.misses(8).sum() == 0
    assert stats.misses(7).sum() > 0


def test_batch_union_counts_distinct_experts():
    # two sequences; step 0 shares one expert in layer 0
    a = np.array([[[0, 1]], [[2, 3]]], np.uint8)  # (T=2, M=1, k=2)
    b = np.array([[[1, 4]], [[5, 6]]], np.uint8)
    stats = RoutingStats(np.stack([a, b]), n_experts=8)
    np.testing.assert_array_equal(stats.counts(1), [[2], [2]])
    np.testing.assert_array_equal(stats.counts(2), [[3], [4]])


def test_expert_parallel_load_is_busiest_gpu():
    # experts 0, 2 on GPU 0 and 1 on GPU 1 (e mod 2)
    ex = np.array([[[0, 2]], [[0, 1]]], np.uint8)
    stats = RoutingStats(ex, n_experts=4)
    np.testing.assert_array_equal(stats.ep_max_counts(2, 1), [[2], [1]])


def _needs(rng, T, M, k, E):
    return rng.integers(1, E + 2, size=(T, M, k)).astype(np.int16)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), capacity=st.integers(0, 10), scale=st.booleans())
def test_misses_at_matches_reference(seed, capacity, scale):
    from moesim.kernels.timing_batch import _misses_at
    from naive_timing import misses_at

    rng = np.random.default_rng(seed)
    needs = _needs(rng, 7, 3, 2, 8)
    counts = rng.integers(1, 5, size=(7, 3)).astype(np.float64)
    out = np.zeros((7, 3))
    _misses_at(needs, capacity, 8, 2.0, counts, scale, out)
    np.testing.assert_allclose(out, misses_at(needs, capacity, 8, 2.0, counts, scale))


def test_miss_tables_match_reference_and_lru_curve():
    from moesim.kernels.timing_batch import _miss_tables
    from naive_timing import miss_tables

    rng = np.random.default_rng(11)
    needs = _needs(rng, 9, 4, 3, 10)
    eb = rng.uniform(1e6, 2e6, size=4)
    nbytes = np.empty((12, 9))
    count = np.empty((12, 9))
    _miss_tables(needs, eb, 10, nbytes, count)
    ref_b, ref_n = miss_tables(needs, eb, 10)
    np.testing.assert_allclose(nbytes, ref_b)
    np.testing.assert_allclose(count, ref_n)
    # the count table at capacity c equals summing the (T, M) misses of a real trace's curve
    experts = _random_trace(rng, 50, 3, 10, 2)
    stats = RoutingStats(experts, n_experts=10, warmup_tokens=10)
    nb = np.empty((12, 40))
    nc = np.empty((12, 40))
    _miss_tables(stats.lru_needs(), np.ones(3), 10, nb, nc)
    for c in range(11):
        np.testing.assert_allclose(nc[c], stats.misses(c).sum(axis=1))


@pytest.mark.parametrize("uploads", [False, True])
def test_prefill_kernel_matches_reference(uploads):
    from moesim.kernels.timing import _prefill_point
    from naive_timing import prefill_parts

    rng = np.random.default_rng(5)
    L, M = 6, 4
    args = (rng.uniform(1e7, 1e8, L), rng.uniform(1e7, 1e8, L), np.arange(2, 6, dtype=np.int64), rng.uniform(1e6, 1e7, M),
            rng.uniform(1e6, 1e7, M), np.array([0, 1, 2, 3], np.int8), np.array([True, True, False, True, False, True]),
            np.array([True, True, False, True, False, True]), np.full(L, 4096.0), np.array([0, 64, 0, 0, 128, 0], np.int64),
            5e7, 1e8, True, 16.0, 2.0, 1300, 512, 100.0, uploads, 32, True, 1e-12, 1e-14, 1e-10, 1e-12, 5e-11, 4e-11, 2e-5)
    out = np.zeros(6)
    _prefill_point(*args, out)
    np.testing.assert_allclose(out, prefill_parts(*args), rtol=1e-12)
