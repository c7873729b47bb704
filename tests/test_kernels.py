"""Every cache kernel equals its slow reference in `tests/naive.py`, plus property checks.

Inputs stay tiny so this file also runs quickly with NUMBA_DISABLE_JIT=1 (CI does that once).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from moesim.cache import (
    POLICIES,
    PolicyKind,
    PrefetchSpec,
    lru_curve,
    next_use_times,
    opt_curve,
    pool_layout,
    predict_experts,
    replay,
    static_pins,
)
from moesim.errors import MoesimError
from moesim.kernels._jit import jit
from moesim.kernels.core import LANES, add_to_lanes_after, lanes_greater

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_trace(rng, n_tokens, n_layers, top_k, n_experts, skew=1.0):
    """Distinct experts per (token, layer), skewed popularity so caches see both hits and misses."""
    p = 1.0 / np.arange(1, n_experts + 1) ** skew
    p /= p.sum()
    out = np.empty((n_tokens, n_layers, top_k), np.uint8)
    for t in range(n_tokens):
        for layer in range(n_layers):
            out[t, layer] = rng.choice(n_experts, top_k, replace=False, p=p)
    return out


def adversarial_traces():
    """Edge cases: one expert, cyclic scans just over capacity, one token, every expert every token."""
    cyc = np.array([[[e % 5]] for e in range(40)], np.uint8)  # LRU/FIFO thrash at capacity 4
    same = np.zeros((10, 2, 1), np.uint8)
    full = np.tile(np.arange(4, dtype=np.uint8), (6, 3, 1))  # top_k == n_experts
    one = np.array([[[3, 1], [0, 2]]], np.uint8)
    wide = np.array([[[e % 2]] for e in range(30)], np.uint16)  # uint16 ids
    return [cyc, same, full, one, wide]


def misses_ref(policy, experts, capacity, layer_bytes, scope, warmup):
    n_tokens, n_layers, _ = experts.shape
    rows = naive.POLICIES[policy](experts, capacity, layer_bytes, scope, warmup)
    return np.array(rows, np.int32).reshape(n_tokens - warmup, n_layers)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("scope", ["global", "per-layer"])
def test_kernels_match_naive_on_random_traces(policy, scope):
    rng = np.random.default_rng(7)
    for trial in range(6):
        experts = random_trace(rng, int(rng.integers(8, 30)), int(rng.integers(1, 4)), int(rng.integers(1, 4)), 8)
        layer_bytes = rng.integers(1, 4, experts.shape[1])
        warmup = int(rng.integers(0, 5))
        for capacity in (0, 1, 3, 6, 11, 40):
            got = replay(experts, policy, capacity, layer_bytes, scope=scope, warmup_tokens=warmup)
            want = misses_ref(policy, experts, capacity, layer_bytes, scope, warmup)
            np.testing.assert_array_equal(got.misses, want, err_msg=f"{policy} {scope} cap={capacity} trial={trial}")
            assert got.miss_count == want.sum()
            assert got.hit_count + got.miss_count == got.lookups == want.size * experts.shape[2]
            np.testing.assert_array_equal(got.hits, experts.shape[2] - want)
            np.testing.assert_array_equal(got.demand_bytes, want.astype(np.int64) @ np.asarray(layer_bytes))


@pytest.mark.parametrize("policy", POLICIES)
def test_kernels_match_naive_on_adversarial_traces(policy):
    for experts in adversarial_traces():
        layer_bytes = np.arange(1, experts.shape[1] + 1)
        for scope in ("global", "per-layer"):
            for capacity in (0, 1, 2, 4, 5, 100):
                got = replay(experts, policy, capacity, layer_bytes, scope=scope, warmup_tokens=1)
                want = misses_ref(policy, experts, capacity, layer_bytes, scope, 1)
                np.testing.assert_array_equal(got.misses, want, err_msg=f"{policy} {scope} {capacity} {experts.shape}")


def test_per_layer_budgets_can_be_given_explicitly():
    rng = np.random.default_rng(3)
    experts = random_trace(rng, 25, 3, 2, 6)
    layer_bytes = np.array([2, 1, 3])
    budgets = np.array([4, 1, 9])
    for policy in POLICIES:
        got = replay(experts, policy, budgets, layer_bytes, scope="per-layer")
        np.testing.assert_array_equal(got.misses, misses_ref(policy, experts, budgets, layer_bytes, "per-layer", 0))
    assert got.pool_capacity_bytes == (4, 1, 9)


def test_scalar_per_layer_budget_splits_by_expert_bytes():
    pool_of_layer, caps = pool_layout("per-layer", 100, np.array([1, 1, 2]))
    assert pool_of_layer.tolist() == [0, 1, 2]
    assert caps.tolist() == [25, 25, 50]
    _, caps = pool_layout("global", 100, np.array([1, 1, 2]))
    assert caps.tolist() == [100]


def test_lru_curve_matches_naive_stack_distances():
    rng = np.random.default_rng(11)
    for scope in ("global", "per-layer"):
        experts = random_trace(rng, 20, 3, 2, 7)
        layer_bytes = np.array([3, 1, 2])
        curve = lru_curve(experts, layer_bytes, scope, warmup_tokens=2)
        want = [naive_need if naive_need is not None else None for naive_need in naive.lru_needs(experts, layer_bytes, scope, 2)]
        got = curve.needs.reshape(-1).tolist()
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert (w is None and g >= 2**62) or g == w


@jit
def _add_to_lanes_after_from_a_kernel(counts, group_start, lane, delta):
    add_to_lanes_after(counts, np.uint64(group_start), np.int64(lane), np.int64(delta))


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(0, 2 * LANES), st.integers(0, LANES - 1), st.integers(-5, 5),
       st.sampled_from([np.int32, np.int64]))
def test_vector_lane_update_matches_a_loop(seed, group_start, lane, delta, dtype):
    """The curve kernel's one hand-written vector primitive: only the lanes after ``lane`` of the group change."""
    counts = np.random.default_rng(seed).integers(-1000, 1000, 3 * LANES).astype(dtype)
    want = counts.copy()
    for i in range(lane + 1, LANES):
        want[group_start + i] += delta
    _add_to_lanes_after_from_a_kernel(counts, group_start, lane, delta)
    assert counts.tolist() == want.tolist()


@jit
def _lanes_greater_from_a_kernel(values, group_start, threshold):
    return lanes_greater(values, np.uint64(group_start), np.int64(threshold))


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(0, 2 * LANES), st.integers(-1000, 1000), st.sampled_from([np.int32, np.int64]))
def test_vector_lane_compare_matches_a_loop(seed, group_start, threshold, dtype):
    values = np.random.default_rng(seed).integers(-1000, 1000, 3 * LANES).astype(dtype)
    want = sum(1 << i for i in range(LANES) if values[group_start + i] > threshold)
    assert int(_lanes_greater_from_a_kernel(values, group_start, threshold)) == want


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["global", "per-layer"]),
       st.integers(0, 3), st.booleans())
def test_opt_curve_equals_naive_belady_at_every_capacity(seed, n_layers, top_k, scope, warmup, bypass):
    """Every capacity from empty to every expert, per (token, layer), against the brute-force MIN (with and
    without bypass); 20 experts per layer, so pools are deeper than one vector step of the scan."""
    rng = np.random.default_rng(seed)
    experts = random_trace(rng, 12, n_layers, top_k, 20)
    layer_bytes = np.full(n_layers, 2) if scope == "global" else rng.integers(1, 4, n_layers)
    curve = opt_curve(experts, layer_bytes, scope, warmup_tokens=warmup, bypass=bypass, n_experts=20)
    reference = naive.belady if bypass else naive.belady_demand
    assert curve.policy == ("belady" if bypass else "belady-demand")
    for experts_held in range(0, 20 * n_layers + 2):
        capacity = experts_held * 2 if scope == "global" else experts_held * int(layer_bytes.sum()) // n_layers
        want = np.asarray(reference(experts, capacity, layer_bytes, scope=scope, warmup=warmup))
        assert np.array_equal(curve.misses_at(capacity), want), experts_held


def test_opt_curve_refuses_mixed_sizes_in_one_pool_and_a_wrong_next_use():
    experts = random_trace(np.random.default_rng(0), 5, 2, 2, 6)
    with pytest.raises(MoesimError, match="one expert size per pool"):
        opt_curve(experts, [1, 2])
    assert opt_curve(experts, [1, 2], scope="per-layer").lookups == experts.size
    with pytest.raises(MoesimError, match="next_use"):
        opt_curve(experts, [1, 1], next_use=np.zeros(3, np.int64))


@SETTINGS
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from(["global", "per-layer"]),
    st.integers(0, 3),
)
def test_lru_curve_equals_replay_at_every_capacity(seed, n_layers, top_k, scope, warmup):
    rng = np.random.default_rng(seed)
    experts = random_trace(rng, 12, n_layers, top_k, 6)
    layer_bytes = rng.integers(1, 5, n_layers)
    curve = lru_curve(experts, layer_bytes, scope, warmup_tokens=warmup)
    for capacity in range(0, int(layer_bytes.sum()) * 6 + 2):
        lru = replay(experts, "lru", capacity, layer_bytes, scope=scope, warmup_tokens=warmup)
        np.testing.assert_array_equal(curve.misses_at(capacity), lru.misses)
        assert curve.hit_count_at(capacity) == lru.hit_count
        assert curve.hit_rate_at(capacity) == pytest.approx(lru.hit_rate)


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.sampled_from(["global", "per-layer"]), st.booleans())
def test_lru_hits_are_monotone_in_capacity(seed, scope, mixed_sizes):
    rng = np.random.default_rng(seed)
    experts = random_trace(rng, 15, 2, 2, 6)
    layer_bytes = rng.integers(1, 4, 2) if mixed_sizes else np.ones(2, np.int64)
    hits = [replay(experts, "lru", c, layer_bytes, scope=scope).hit_count for c in range(0, 30)]
    assert all(a <= b for a, b in zip(hits, hits[1:])), hits
    assert hits[0] == 0 and hits[-1] > 0


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.sampled_from(["global", "per-layer"]))
def test_opt_hits_at_least_every_other_policy_with_equal_sizes(seed, capacity, scope):
    rng = np.random.default_rng(seed)
    experts = random_trace(rng, 20, 2, 2, 6, skew=float(rng.uniform(0, 1.5)))
    layer_bytes = np.full(2, 3)
    capacity_bytes = capacity * 3
    opt = replay(experts, "belady", capacity_bytes, layer_bytes, scope=scope).hit_count
    for policy in POLICIES:
        result = replay(experts, policy, capacity_bytes, layer_bytes, scope=scope)
        hits = result.hit_count
        if policy == "static":
            # pins are loaded before the trace starts; charge each used pin's first look-up as a miss
            pool_of_layer, pool_capacity = pool_layout(scope, capacity_bytes, layer_bytes)
            pins = static_pins(experts, layer_bytes, pool_of_layer, pool_capacity, 6, 0)
            items = (np.arange(2)[None, :, None] * 6 + experts).reshape(-1)
            hits -= int(pins[np.unique(items)].sum())
        assert opt >= hits, (policy, opt, hits)


def test_fifo_shows_beladys_anomaly_on_the_classic_sequence():
    # 1 2 3 4 1 2 5 1 2 3 4 5: 9 faults with 3 frames but 10 with 4 (Belady, Nelson, Shedler 1969)
    experts = np.array([1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5], np.uint8).reshape(-1, 1, 1)
    faults = {c: replay(experts, "fifo", c, [1]).miss_count for c in (3, 4)}
    assert faults == {3: 9, 4: 10}
    # LRU is a stack algorithm: never an anomaly
    assert replay(experts, "lru", 4, [1]).miss_count <= replay(experts, "lru", 3, [1]).miss_count


def test_static_pins_most_used_warmup_experts_and_excludes_warmup_from_counts():
    experts = np.array([[[0]], [[0]], [[1]], [[2]], [[0]], [[2]], [[1]]], np.uint8)
    result = replay(experts, "static", 1, [1], warmup_tokens=3)
    assert result.misses.ravel().tolist() == [1, 0, 1, 1]  # expert 0 pinned (2 warm-up uses)
    assert result.lookups == 4


def test_belady_next_use_can_be_precomputed_once():
    rng = np.random.default_rng(5)
    experts = random_trace(rng, 20, 2, 2, 5)
    nxt = next_use_times(experts)
    flat = (np.arange(2)[None, :, None] * 5 + experts).reshape(-1)
    for i in range(flat.size):
        later = np.flatnonzero(flat[i + 1 :] == flat[i])
        assert nxt[i] == (i + 1 + later[0] if later.size else flat.size)
    a = replay(experts, "belady", 4, [1, 1], next_use=nxt)
    b = replay(experts, "belady", 4, [1, 1])
    np.testing.assert_array_equal(a.misses, b.misses)


@pytest.mark.parametrize("predictor", ["oracle", "previous-token", "cooccurrence"])
@pytest.mark.parametrize("scope", ["global", "per-layer"])
def test_prefetch_replay_matches_naive(predictor, scope):
    rng = np.random.default_rng(17)
    for trial in range(4):
        experts = random_trace(rng, 16, 3, 2, 6)
        layer_bytes = rng.integers(1, 4, 3)
        spec = PrefetchSpec(predictor, accuracy=0.7, seed=trial, width=int(rng.integers(1, 4)))
        predicted = predict_experts(experts, spec, None, 4)
        for capacity in (0, 3, 8, 30):
            got = replay(experts, "lru", capacity, layer_bytes, scope=scope, warmup_tokens=4, prefetch=spec)
            misses, fetched, useful, totals = naive.lru_prefetch(experts, capacity, layer_bytes, predicted, scope, 4)
            np.testing.assert_array_equal(got.misses, np.array(misses, np.int32).reshape(12, 3))
            assert got.prefetch.prefetch_bytes.tolist() == fetched
            assert got.prefetch.useful_bytes.tolist() == useful
            pf = got.prefetch
            assert (pf.prefetch_bytes_total, pf.useful_bytes_total, pf.wasted_bytes_total) == totals
            np.testing.assert_array_equal(got.bytes_fetched, got.demand_bytes + pf.prefetch_bytes)


def test_cooccurrence_predictions_match_naive():
    rng = np.random.default_rng(23)
    for width in (1, 2, 4):
        experts = random_trace(rng, 14, 3, 2, 6)
        got = predict_experts(experts, PrefetchSpec("cooccurrence", width=width), None, 8)
        np.testing.assert_array_equal(got, naive.cooccurrence_predictions(experts, 8, width))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), distinct=st.booleans(), spare=st.integers(0, 5))
def test_oracle_predictions_match_naive(seed, distinct, spare):
    """Wrong guesses: the rank-th unrouted expert, repeats dropped -- also with repeated routed ids (a trace
    may route one expert twice at a position) and with no unrouted expert left (spare = 0)."""
    from moesim.cache import _predict_oracle

    rng = np.random.default_rng(seed)
    n_tokens, n_layers, top_k = 7, 3, int(rng.integers(1, 6))
    n_experts = top_k + spare
    if distinct:
        experts = random_trace(rng, n_tokens, n_layers, top_k, n_experts)
    else:
        experts = rng.integers(0, n_experts, (n_tokens, n_layers, top_k)).astype(np.uint8)
    keep = rng.random((n_tokens, n_layers, top_k)) < rng.random()
    wrong = rng.integers(0, max(spare, 1), (n_tokens, n_layers, top_k)).astype(np.int64)
    got = np.empty((n_tokens, n_layers, top_k), np.int32)
    _predict_oracle(experts, n_experts, keep, wrong, got)
    np.testing.assert_array_equal(got, naive.oracle_predictions(experts, n_experts, keep, wrong))


def test_oracle_predictor_accuracy_and_determinism():
    rng = np.random.default_rng(29)
    experts = random_trace(rng, 40, 3, 2, 16)
    perfect = predict_experts(experts, PrefetchSpec("oracle", accuracy=1.0))
    np.testing.assert_array_equal(perfect, experts.astype(np.int32))
    never = predict_experts(experts, PrefetchSpec("oracle", accuracy=0.0, seed=1))
    for t in range(40):
        for layer in range(3):
            guesses = [g for g in never[t, layer] if g >= 0]
            assert not set(guesses) & set(experts[t, layer].tolist())
            assert len(set(guesses)) == len(guesses)
    a = predict_experts(experts, PrefetchSpec("oracle", accuracy=0.5, seed=9))
    b = predict_experts(experts, PrefetchSpec("oracle", accuracy=0.5, seed=9))
    np.testing.assert_array_equal(a, b)


def test_perfect_prefetch_turns_misses_into_useful_prefetches():
    rng = np.random.default_rng(31)
    experts = random_trace(rng, 30, 4, 2, 8)
    plain = replay(experts, "lru", 100, np.ones(4))
    fetched = replay(experts, "lru", 100, np.ones(4), prefetch=PrefetchSpec("oracle", accuracy=1.0))
    # a cache that holds everything: every first use except position (0, 0) is prefetched in time
    assert fetched.miss_count == 2 and plain.miss_count > fetched.miss_count
    assert fetched.prefetch.useful_bytes_total == fetched.prefetch.prefetch_bytes_total
    assert fetched.prefetch.wasted_bytes_total == 0


def test_policy_registry_names_and_aliases():
    assert set(POLICIES) == {"lru", "lfu", "fifo", "static", "belady", "s3fifo", "belady-demand"}
    assert PolicyKind.from_str("OPT") is PolicyKind.BELADY
    assert PolicyKind.from_str("S3-FIFO") is PolicyKind.S3FIFO
    with pytest.raises(MoesimError, match="did you mean lru"):
        PolicyKind.from_str("lur")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(capacity_bytes=-1), "negative"),
        (dict(scope="sideways"), "unknown scope"),
        (dict(warmup_tokens=99), "warmup_tokens"),
        (dict(expert_bytes_by_layer=[1, 1, 1]), "MoE layers"),
        (dict(expert_bytes_by_layer=[1, 0]), "positive"),
        (dict(policy="nope"), "unknown policy"),
        (dict(policy="fifo", prefetch=PrefetchSpec()), "lru policy only"),
        (dict(policy="belady", next_use=np.zeros(3, np.int64)), "next_use must hold one entry per look-up"),
    ],
)
def test_bad_input_raises_moesim_error(kwargs, message):
    experts = np.zeros((4, 2, 1), np.uint8)
    args = dict(policy="lru", capacity_bytes=2, expert_bytes_by_layer=[1, 1]) | kwargs
    with pytest.raises(MoesimError, match=message):
        replay(experts, **args)


def test_sizes_from_all_layers_with_dense_zeros_are_accepted():
    experts = np.array([[[0], [1]], [[0], [1]]], np.uint8)
    a = replay(experts, "lru", 10, [0, 4, 0, 6])
    b = replay(experts, "lru", 10, [4, 6])
    np.testing.assert_array_equal(a.misses, b.misses)
    assert a.demand_bytes.tolist() == [10, 0]
