"""Acceptance: a generator fitted to each real trace reproduces its reuse, skew and LRU behaviour."""

from __future__ import annotations

import tomllib
from collections import OrderedDict

import numpy as np
import pytest

from moesim.trace.fit import fit_trace, write_preset
from moesim.trace.format import read_trace, write_trace
from moesim.trace.generate import generate_trace, load_preset
from moesim.trace.importers import import_trace
from moesim.trace.stats import expert_counts, popularity_stats, temporal_reuse
from trace_testing import tiny_model

REAL_FILES = [
    "routing_data_collected/gsm8k_2_routing.jsonl",
    "routing_data_collected/humaneval_2_routing.jsonl",
    "analysis/deep_analysis/humaneval_1_routing.jsonl",
    "analysis/deep_analysis/routing_raw.jsonl",
]


def plain_lru_hit_rate(experts, capacity):
    """Per-layer LRU caches of `capacity` experts, look-ups in (token, layer, slot) order, cold start counted."""
    n, n_layers, k = experts.shape
    hits = 0
    for layer in range(n_layers):
        cache = OrderedDict()
        for t in range(n):
            for e in experts[t, layer].tolist():
                if e in cache:
                    hits += 1
                    cache.move_to_end(e)
                else:
                    cache[e] = True
                    if len(cache) > capacity:
                        cache.popitem(last=False)
    return hits / (n * n_layers * k)


def _summary(trace):
    return {
        "reuse": float(np.nanmean(temporal_reuse(trace))),
        "top1": float(popularity_stats(expert_counts(trace))["top1_share"].mean()),
        "lru2": plain_lru_hit_rate(trace.experts, 2),
        "lru4": plain_lru_hit_rate(trace.experts, 4),
    }


@pytest.mark.parametrize("relative", REAL_FILES)
def test_fitted_generator_reproduces_real_trace(real_trace_dir, tmp_path, relative):
    from moesim.catalog.models import get_model

    model = get_model("mixtral-8x7b")
    source = next(real_trace_dir.iterdir()) / relative
    imported, _ = import_trace(source, model)
    arrow = tmp_path / "real.arrow"
    write_trace(imported, arrow)
    real = read_trace(arrow).decode_only()
    preset_path = tmp_path / "fitted.toml"
    write_preset(fit_trace(real), preset_path, "fitted", "test")
    assert load_preset(preset_path).name == "fitted"
    # a fresh seed, the recorded shape (sequences x mean decode length)
    synthetic = generate_trace(model, real.n_tokens // real.n_seqs, n_seqs=real.n_seqs, preset=preset_path, seed=1234)
    want, got = _summary(real), _summary(synthetic)
    assert abs(got["reuse"] - want["reuse"]) <= 0.03, (want, got)
    assert abs(got["top1"] - want["top1"]) <= 0.03, (want, got)
    assert abs(got["lru2"] - want["lru2"]) <= 0.05, (want, got)
    assert abs(got["lru4"] - want["lru4"]) <= 0.05, (want, got)
    # the statistics are not trivially met: a uniform router misses the real locality
    uniform = _summary(generate_trace(model, real.n_tokens // real.n_seqs, n_seqs=real.n_seqs, preset="uniform",
                                      seed=1234))
    assert want["reuse"] - uniform["reuse"] > 0.06


def test_fit_recovers_known_parameters(tmp_path):
    """On a synthetic trace with known parameters, the fitted preset regenerates the same statistics."""
    model = tiny_model(n_layers=4, n_experts=16, top_k=2)
    from moesim.trace.generate import Preset, _check_params

    truth = Preset("truth", "", "", _check_params({"zipf_exponent": [0.2, 0.8], "p_reuse": [0.1, 0.4],
                                                   "p_recall": 0.1, "topic_sigma": 0.2}, "t"))
    trace = generate_trace(model, 1500, n_seqs=2, preset=truth, seed=3)
    result = fit_trace(trace)
    write_preset(result, tmp_path / "p.toml", "p", "synthetic")
    doc = tomllib.loads((tmp_path / "p.toml").read_text())
    assert set(doc["fit"]["targets"]) >= {"top1_share", "temporal_reuse", "lru_hit_rate_c2", "lru_hit_rate_c4"}
    fitted_reuse = np.asarray(doc["params"]["p_reuse"])
    assert fitted_reuse[-1] > fitted_reuse[0] + 0.15  # the depth trend of the truth is recovered
    again = generate_trace(model, 1500, n_seqs=2, preset=tmp_path / "p.toml", seed=99)
    want, got = _summary(trace), _summary(again)
    for key in want:
        assert abs(got[key] - want[key]) <= 0.03, (key, want, got)
