"""Trace statistics on hand-made traces with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moesim.output import to_json
from moesim.trace.format import TraceMeta, make_trace
from moesim.trace.generate import generate_trace
from moesim.trace.stats import lru_hit_rates, popularity_stats, expert_counts, stats_to_dict, temporal_reuse, trace_stats
from test_trace_fit import plain_lru_hit_rate
from trace_testing import tiny_model

META = TraceMeta(model_id="m", n_layers=2, moe_layers=(0, 1), n_routed_experts=4, top_k=2)


def test_known_popularity_and_reuse():
    # layer 0 always {0, 1}; layer 1 alternates {0, 1} / {2, 3}
    experts = np.array([[[0, 1], [0, 1]], [[1, 0], [2, 3]], [[0, 1], [0, 1]], [[0, 1], [2, 3]]])
    trace = make_trace(META, experts, seq=[0, 0, 1, 1], token=[0, 1, 0, 1])
    pop = popularity_stats(expert_counts(trace))
    np.testing.assert_allclose(pop["top1_share"], [0.5, 0.25])
    np.testing.assert_allclose(pop["entropy_bits"], [1.0, 2.0])
    np.testing.assert_allclose(temporal_reuse(trace), [1.0, 0.0])  # no pair across the sequence boundary
    rates = lru_hit_rates(trace, capacities=(2, 4))
    np.testing.assert_allclose(rates[2], [6 / 8, 0.0])
    np.testing.assert_allclose(rates[4], [6 / 8, 4 / 8])


@pytest.mark.parametrize("capacity", [1, 2, 3, 5])
def test_lru_rates_equal_a_plain_python_lru(capacity):
    trace = generate_trace(tiny_model(n_layers=3, n_experts=8, top_k=2), 150, n_seqs=2, preset="mixtral", seed=2)
    per_layer = lru_hit_rates(trace, capacities=(capacity,))[capacity]
    assert per_layer.mean() == pytest.approx(plain_lru_hit_rate(trace.experts, capacity), abs=1e-12)


def test_stats_dict_is_plain_json():
    trace = generate_trace(tiny_model(n_layers=3, n_experts=16, top_k=4), 60, prefill_tokens=5, preset="olmoe")
    st = trace_stats(trace)
    data = json.loads(to_json(stats_to_dict(trace, st)))
    assert data["n_prefill_tokens"] == 5
    assert len(data["per_layer"]["interlayer_table"]) == 2
    assert sum(data["reuse_distance_total"]) == 65 * 3 * 4
    assert data["summary"]["working_set_w8"] <= 16
    assert trace_stats(trace, decode_only=True).n_tokens == 60
