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
