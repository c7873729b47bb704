"""Golden hit/miss counts of every policy on the committed golden trace (libCacheSim style).

When a policy change is intended, print the new numbers with `python tests/test_kernels_golden.py`
and paste them below; the naive references must agree with them too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import naive
from moesim.cache import POLICIES, lru_curve, opt_curve, replay
from moesim.trace.format import read_trace

GOLDEN = Path(__file__).resolve().parent.parent / "traces" / "golden" / "golden.arrow"
CAPACITIES = (2, 4, 8, 16, 24, 32)  # in experts of 1 byte (equal sizes, global pool)
MIXED_BYTES = (3, 2, 3, 2)  # per-layer expert bytes for the mixed-size ladder (per-layer pools)
MIXED_CAPACITIES = (10, 20, 40, 60, 80)
WARMUP = 20

# misses after a 20-token warm-up (1760 counted look-ups): {policy: [misses at each capacity]}
MISSES_EQUAL = {
    "lru": [1760, 1760, 887, 621, 456, 314],
    "lfu": [1760, 1760, 1332, 832, 617, 438],
    "fifo": [1760, 1760, 1139, 740, 551, 380],
    "static": [1528, 1420, 1116, 806, 621, 475],
    "belady": [1367, 1033, 634, 348, 216, 130],
    "s3fifo": [1760, 1633, 1126, 717, 460, 293],
    "belady-demand": [1538, 1136, 663, 356, 220, 133],
}
MISSES_MIXED = {
    "lru": [1701, 887, 614, 444, 310],
    "lfu": [1701, 1432, 912, 485, 359],
    "fifo": [1701, 990, 685, 509, 362],
    "static": [1420, 1073, 800, 592, 481],
    "belady": [1102, 691, 389, 244, 157],
    "s3fifo": [1701, 1100, 643, 425, 303],
    "belady-demand": [1701, 782, 417, 254, 165],
}


def golden_experts():
    return read_trace(GOLDEN).experts


def compute():
    experts = golden_experts()
    equal = {p: [replay(experts, p, c, np.ones(4, np.int64), warmup_tokens=WARMUP).miss_count for c in CAPACITIES]
             for p in POLICIES}
    mixed = {p: [replay(experts, p, c, MIXED_BYTES, scope="per-layer", warmup_tokens=WARMUP).miss_count
                 for c in MIXED_CAPACITIES] for p in POLICIES}
    return equal, mixed


@pytest.mark.parametrize("policy", POLICIES)
def test_golden_counts_equal_sizes(policy):
    experts = golden_experts()
    for capacity, want in zip(CAPACITIES, MISSES_EQUAL[policy], strict=True):
        got = replay(experts, policy, capacity, np.ones(4, np.int64), warmup_tokens=WARMUP)
        assert got.miss_count == want, (policy, capacity)
        assert got.hit_count == got.lookups - want
        assert got.lookups == (240 - WARMUP) * 4 * 2


@pytest.mark.parametrize("policy", POLICIES)
def test_golden_counts_mixed_sizes_per_layer(policy):
    experts = golden_experts()
    for capacity, want in zip(MIXED_CAPACITIES, MISSES_MIXED[policy], strict=True):
        got = replay(experts, policy, capacity, MIXED_BYTES, scope="per-layer", warmup_tokens=WARMUP)
        assert got.miss_count == want, (policy, capacity)
        assert int(got.demand_bytes.sum()) == int((got.misses * np.array(MIXED_BYTES)).sum())


@pytest.mark.parametrize("policy", ["lru", "belady", "s3fifo"])
def test_golden_counts_agree_with_naive_references(policy):
    experts = golden_experts()
    for capacity, want in zip(CAPACITIES, MISSES_EQUAL[policy]):
        assert int(np.sum(naive.POLICIES[policy](experts, capacity, np.ones(4), "global", WARMUP))) == want


def test_golden_lru_curve_reproduces_the_lru_ladder():
    curve = lru_curve(golden_experts(), np.ones(4, np.int64), warmup_tokens=WARMUP)
    assert [curve.lookups - curve.hit_count_at(c) for c in CAPACITIES] == MISSES_EQUAL["lru"]


@pytest.mark.parametrize("bypass, policy", [(True, "belady"), (False, "belady-demand")])
def test_golden_opt_curves_reproduce_the_belady_ladders(bypass, policy):
    equal = opt_curve(golden_experts(), np.ones(4, np.int64), warmup_tokens=WARMUP, bypass=bypass)
    assert [equal.lookups - equal.hit_count_at(c) for c in CAPACITIES] == MISSES_EQUAL[policy]
    per_layer = opt_curve(golden_experts(), MIXED_BYTES, scope="per-layer", warmup_tokens=WARMUP, bypass=bypass)
    assert [per_layer.lookups - per_layer.hit_count_at(c) for c in MIXED_CAPACITIES] == MISSES_MIXED[policy]


if __name__ == "__main__":
    equal, mixed = compute()
    print("MISSES_EQUAL = {")
    for p, v in equal.items():
        print(f'    "{p}": {v},')
    print("}\nMISSES_MIXED = {")
    for p, v in mixed.items():
        print(f'    "{p}": {v},')
    print("}")
