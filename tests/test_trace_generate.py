"""Synthetic generator: determinism, layout, and that each parameter moves the statistic it names."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.errors import MoesimError
from moesim.trace import stats as ts
from moesim.trace.generate import (
    Preset,
    default_preset_for,
    generate_trace,
    load_preset,
    preset_names,
)
from trace_testing import deepseek_shape, tiny_model

BASE = {"zipf_exponent": 0.0, "topic_sigma": 0.0, "p_reuse": 0.0, "p_recall": 0.0, "p_affinity": 0.0,
        "affinity_fanout": 2}


def _preset(**overrides) -> Preset:
    from moesim.trace.generate import _check_params

    return Preset(name="test", description="", source="", params=_check_params({**BASE, **overrides}, "test"))


def _gen(model=None, tokens=400, seqs=1, seed=0, **params):
    return generate_trace(model or tiny_model(n_layers=4, n_experts=16, top_k=2), tokens, n_seqs=seqs,
                          preset=_preset(**params), seed=seed)


def test_same_seed_same_trace_and_different_seed_differs():
    a, b, c = _gen(seed=5, p_reuse=0.3), _gen(seed=5, p_reuse=0.3), _gen(seed=6, p_reuse=0.3)
    np.testing.assert_array_equal(a.experts, b.experts)
    assert not np.array_equal(a.experts, c.experts)
    assert a.meta.source["seed"] == 5 and a.meta.source["params"]["p_reuse"] == 0.3


def test_layout_sequences_and_prefill():
    trace = generate_trace(tiny_model(), 10, n_seqs=3, prefill_tokens=4, seed=1)
    assert trace.n_tokens == 42
    assert trace.seq.tolist() == [0] * 14 + [1] * 14 + [2] * 14
    assert trace.token.tolist()[:15] == list(range(14)) + [0]
    assert trace.is_prefill.reshape(3, 14)[:, :4].all() and not trace.is_prefill.reshape(3, 14)[:, 4:].any()


def test_deepseek_shape_uses_uint8_and_kimi_shape_uint16():
    trace = generate_trace(deepseek_shape(), 20, seed=0)
    assert trace.experts.shape == (20, 58, 8) and trace.experts.dtype == np.uint8
    kimi = tiny_model(n_layers=3, n_experts=384, top_k=8, family="kimi-k2")
    trace = generate_trace(kimi, 20, seed=0)
    assert trace.experts.dtype == np.uint16 and int(trace.experts.max()) >= 256


def test_top_k_close_to_expert_count_never_repeats():
    model = tiny_model(n_layers=3, n_experts=6, top_k=5)
    trace = _gen(model, tokens=300, zipf_exponent=3.0, p_reuse=0.5, p_affinity=0.3)
    rows = np.sort(trace.experts.reshape(-1, 5), axis=1)
    assert (np.diff(rows, axis=1) > 0).all()


def test_zipf_exponent_raises_top1_share():
    flat = ts.trace_stats(_gen(tokens=2000, zipf_exponent=0.0)).summary()["top1_share"]
    skewed = ts.trace_stats(_gen(tokens=2000, zipf_exponent=1.2)).summary()["top1_share"]
    assert flat < 0.09 < 0.2 < skewed


def test_p_reuse_sets_temporal_reuse():
    uniform = ts.temporal_reuse(_gen(tokens=3000)).mean()
    assert uniform == pytest.approx(2 / 16, abs=0.02)
    local = ts.temporal_reuse(_gen(tokens=3000, p_reuse=0.5)).mean()
    # a copied slot reuses for sure; the others still hit the previous pair by chance
    assert local == pytest.approx(0.5 + 0.5 * 2 / 16, abs=0.04)


def test_p_recall_adds_reuse_from_further_back():
    near = ts.reuse_distances(_gen(tokens=3000, p_reuse=0.3)).sum(axis=0)
    far = ts.reuse_distances(_gen(tokens=3000, p_reuse=0.3, p_recall=0.3)).sum(axis=0)
    # bin 2 = distance 2-3 tokens
    assert far[2] / far.sum() > near[2] / near.sum() + 0.06


def test_topic_sigma_makes_sequences_prefer_different_experts():
    def seq_divergence(trace):
        a = ts.expert_counts(trace.select(trace.seq == 0)).astype(float)
        b = ts.expert_counts(trace.select(trace.seq == 1)).astype(float)
        a /= a.sum(axis=1, keepdims=True)
        b /= b.sum(axis=1, keepdims=True)
        return 0.5 * np.abs(a - b).sum(axis=1).mean()

    same = seq_divergence(_gen(tokens=1500, seqs=2, topic_sigma=0.0))
    shifted = seq_divergence(_gen(tokens=1500, seqs=2, topic_sigma=1.5))
    assert shifted > same + 0.15


def test_affinity_makes_next_layer_predictable():
    plain = ts.interlayer_predictability(_gen(tokens=2000))["table"].mean()
    linked = ts.interlayer_predictability(_gen(tokens=2000, p_affinity=0.6))["table"].mean()
    assert linked > plain + 0.2


def test_per_layer_lists_are_stretched_over_depth():
    model = tiny_model(n_layers=6, n_experts=16, top_k=2)
    trace = _gen(model, tokens=2000, p_reuse=[0.0, 0.8])
    reuse = ts.temporal_reuse(trace)
    assert reuse[0] < 0.2 and reuse[-1] > 0.75
    assert np.all(np.diff(reuse) > -0.05)


def test_every_builtin_preset_loads_and_generates():
    names = preset_names()
    assert {"deepseek-v3", "mixtral", "qwen3-moe", "gpt-oss", "llama-4", "olmoe"} <= set(names)
    for name in names:
        trace = generate_trace(tiny_model(n_layers=3, n_experts=16, top_k=4), 50, preset=name, seed=1)
        assert trace.meta.source["preset"] == name


def test_every_catalog_moe_family_maps_to_a_preset():
    from moesim.catalog.models import all_models

    models = [m for m in all_models() if m.is_moe]
    assert models
    names = set(preset_names())
    mapped = {m.family: default_preset_for(m) for m in models}
    assert set(mapped.values()) <= names
    assert mapped.get("mixtral") == "mixtral" and mapped.get("deepseek-v3") == "deepseek-v3"
    assert mapped.get("kimi-k2") == "deepseek-v3" and mapped.get("phi-3.5-moe") == "mixtral"


def test_unknown_family_falls_back_by_shape():
    assert default_preset_for(tiny_model(family="something-new", n_experts=256, top_k=8)) == "deepseek-v3"
    assert default_preset_for(tiny_model(family="something-new", n_experts=8, top_k=2)) == "mixtral"


def test_preset_errors_are_one_line(tmp_path):
    with pytest.raises(MoesimError, match="unknown trace preset 'mixtrl'; did you mean mixtral"):
        load_preset("mixtrl")
    bad = tmp_path / "bad.toml"
    bad.write_text("[params]\np_reuse = 1.5\n")
    with pytest.raises(MoesimError, match="probability"):
        load_preset(bad)
    bad.write_text("[params]\nzipf = 1\n")
    with pytest.raises(MoesimError, match="unknown generator parameter"):
        load_preset(bad)
    bad.write_text("[params\n")
    with pytest.raises(MoesimError, match="malformed preset TOML"):
        load_preset(bad)


def test_bad_arguments_raise():
    with pytest.raises(MoesimError):
        generate_trace(tiny_model(), -1)
    with pytest.raises(MoesimError):
        generate_trace(tiny_model(), 5, n_seqs=0)
    dense = tiny_model(moe_layers=(), n_experts=0, top_k=0)
    with pytest.raises(MoesimError, match="no routed experts"):
        generate_trace(dense, 5)
