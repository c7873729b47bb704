"""Streams long enough to wrap the kernels' internal time axes: the LRU kernel's ring of use times
(renumbered when a cache that rarely evicts lets the live window grow) and the curve kernel's recency
slots (compacted when they run out), with mixed expert sizes in one pool. Small pools keep it quick, also
under NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import numpy as np
import pytest

import naive
from moesim.cache import lru_curve, next_use_times, opt_curve, replay

NEVER = 2**62


def skewed_stream(rng, n_tokens, n_layers, top_k, n_experts):
    """One hot expert per layer, so hits dominate and the window between evictions grows long."""
    p = np.r_[0.6, np.full(n_experts - 1, 0.4 / (n_experts - 1))]
    return np.stack([
        np.stack([rng.choice(n_experts, top_k, replace=False, p=p) for _ in range(n_layers)])
        for _ in range(n_tokens)
    ]).astype(np.uint8)


def zipf_stream(seed, n_tokens, skew=0.8):
    """3 layers x 100 experts, top-4, Zipf-like popularity: deep stacks and heaps over a 300-expert pool."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 101) ** skew
    return np.stack([
        np.stack([rng.choice(100, 4, replace=False, p=p / p.sum()) for _ in range(3)]) for _ in range(n_tokens)
    ]).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scope", ["global", "per-layer"])
def test_lru_past_the_ring_of_use_times_equals_the_reference(seed, scope):
    rng = np.random.default_rng(seed)
    experts = skewed_stream(rng, 260, 3, 3, 6)  # 2340 look-ups: the 128-slot rings wrap many times
    layer_bytes = np.array([1, 3, 2], np.int64)
    for capacity in (0, 2, 5, 9, 17, 36):  # 36 = every expert: nothing is ever evicted
        got = replay(experts, "lru", capacity, layer_bytes, scope=scope, warmup_tokens=2, n_experts=6).misses
        want = np.asarray(naive.lru(experts, capacity, layer_bytes, scope=scope, warmup=2))
        assert np.array_equal(got, want), capacity


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scope", ["global", "per-layer"])
def test_lru_curve_past_slot_compaction_with_mixed_sizes_equals_the_reference(seed, scope):
    rng = np.random.default_rng(seed)
    experts = skewed_stream(rng, 300, 3, 2, 5)  # 1800 look-ups over 256-slot pools: several compactions
    layer_bytes = np.array([4, 1, 4], np.int64)  # two sizes share the global pool
    needs = lru_curve(experts, layer_bytes, scope=scope, warmup_tokens=3, n_experts=5).needs.reshape(-1)
    want = [NEVER if need is None else need for need in naive.lru_needs(experts, layer_bytes, scope=scope, warmup=3)]
    assert needs.tolist() == want


@pytest.mark.parametrize("scope", ["global", "per-layer"])
def test_lru_curve_with_a_deep_tree_and_three_sizes_equals_the_reference(scope):
    """300 experts in the global pool: 2048 slots, so the curve's prefix counts over 64-slot words have two
    levels, and 10.8k look-ups compact it a few times; three expert sizes share the pool."""
    experts = zipf_stream(7, 900)
    layer_bytes = np.array([3, 5, 2], np.int64)
    needs = lru_curve(experts, layer_bytes, scope=scope, warmup_tokens=5, n_experts=100).needs.reshape(-1)
    want = [NEVER if need is None else need for need in naive.lru_needs(experts, layer_bytes, scope=scope, warmup=5)]
    assert needs.tolist() == want


def test_lru_curve_with_three_prefix_levels_equals_the_reference():
    """4352 experts in the global pool: 512 words of slots, so the curve's prefix counts have three levels,
    and the 17.7k look-ups reach word 276, past the first node of the top level; two expert sizes."""
    rng = np.random.default_rng(3)
    n_layers, n_experts = 17, 256
    p = 1.0 / np.arange(1, n_experts + 1)
    experts = np.stack([
        np.stack([rng.choice(n_experts, 4, replace=False, p=p / p.sum()) for _ in range(n_layers)]) for _ in range(260)
    ]).astype(np.uint8)
    layer_bytes = np.where(np.arange(n_layers) % 3 == 0, 5, 3).astype(np.int64)
    needs = lru_curve(experts, layer_bytes, warmup_tokens=2, n_experts=n_experts).needs.reshape(-1)
    want = [NEVER if need is None else need for need in naive.lru_needs(experts, layer_bytes, warmup=2)]
    assert needs.tolist() == want


@pytest.mark.parametrize("bypass, policy", [(True, "belady"), (False, "belady-demand")])
def test_opt_curve_on_a_deep_stack_equals_the_belady_replays(bypass, policy):
    """300 experts in one pool: the OPT stack gets hundreds of entries deep, so the scan for the entry that
    sinks takes many vector steps, and some stop inside a step. Checked against the replay kernels
    (themselves checked against the naive references) at capacities from 1 to every expert."""
    experts = zipf_stream(5, 400)
    sizes = np.full(3, 7, np.int64)
    next_use = next_use_times(experts, 100)
    curve = opt_curve(experts, sizes, warmup_tokens=5, bypass=bypass, n_experts=100, next_use=next_use)
    for experts_held in (1, 17, 60, 150, 299, 300):
        want = replay(experts, policy, experts_held * 7, sizes, warmup_tokens=5, n_experts=100, next_use=next_use)
        assert np.array_equal(curve.misses_at(experts_held * 7), want.misses), experts_held


def test_lru_curve_of_a_pool_too_large_for_16_bit_counts_equals_lru_replays():
    """40000 experts in one pool: the prefix counts switch from int16 to int32, and ~36k of them are live at
    the end, past int16's 32767. Checked against the LRU replay kernel at small, middle and full capacity."""
    rng = np.random.default_rng(9)
    first_uses = np.stack([rng.permutation(20000)[:18000].reshape(4500, 4) for _ in range(2)], axis=1)  # 36000 distinct
    reuses = np.stack([np.stack([rng.choice(20000, 4, replace=False) for _ in range(2)]) for _ in range(1500)])
    experts = np.concatenate([first_uses, reuses]).astype(np.uint16)
    sizes = np.ones(2, np.int64)
    curve = lru_curve(experts, sizes, warmup_tokens=10, n_experts=20000)
    for capacity in (1000, 20000, 40000):
        want = replay(experts, "lru", capacity, sizes, warmup_tokens=10, n_experts=20000)
        assert np.array_equal(curve.misses_at(capacity), want.misses), capacity
    assert len(np.unique(experts[:, 0])) + len(np.unique(experts[:, 1])) > 2**15


@pytest.mark.parametrize("policy", ["lfu", "belady", "belady-demand"])
def test_lfu_and_belady_on_a_300_expert_pool_with_mixed_sizes_equal_the_reference(policy):
    """Up to 300 residents in one pool: Belady's 8-ary heap has three levels, so sifting moves entries across
    full and partly filled levels, and LFU keeps dozens of use-count buckets, created and emptied as experts
    move up; three expert sizes share the pool."""
    experts = zipf_stream(11, 250)
    layer_bytes = np.array([3, 5, 2], np.int64)
    for capacity in (40, 300, 700):
        got = replay(experts, policy, capacity, layer_bytes, warmup_tokens=4, n_experts=100).misses
        want = np.asarray(naive.POLICIES[policy](experts, capacity, layer_bytes, warmup=4))
        assert np.array_equal(got, want), capacity
