"""Footprint: per-class bytes, expert pools, KV cache layouts and runtime overhead."""

from __future__ import annotations

import pytest

from moesim.catalog.engines import EngineProfile
from moesim.catalog.models import get_model
from moesim.errors import MoesimError
from moesim.footprint import footprint, kv_bytes_per_token, kv_cache_bytes, runtime_overhead_bytes

KIB = 1024


@pytest.mark.parametrize("model, quant", [("deepseek-r1", "Q4_K_M"), ("mixtral-8x7b", "Q2_K"),
                                          ("llama-4-maverick", "UD-Q4_K_XL"), ("gpt-oss-20b", "MXFP4_MOE"),
                                          ("llama-3-8b", "Q8_0")])
def test_footprint_splits_add_up(model, quant):
    m = get_model(model)
    fp = footprint(m, quant)
    assert sum(fp.bytes_by_category.values()) == fp.weights_bytes
    assert sum(fp.bytes_by_tensor_class.values()) == fp.weights_bytes
    assert sum(fp.bytes_by_storage_type.values()) == fp.weights_bytes
    assert fp.always_on_bytes + fp.routed_bytes == fp.weights_bytes
    assert len(fp.bytes_by_layer) == len(fp.routed_expert_bytes_by_layer) == m.n_layers
    assert sum(fp.bytes_by_layer) + fp.non_block_bytes == fp.weights_bytes
    per_expert_total = sum(fp.routed_expert_bytes_by_layer) * max(1, m.n_routed_experts)
    assert per_expert_total == pytest.approx(fp.routed_bytes, abs=m.n_layers * m.n_routed_experts)
    for i in m.dense_layers:
        assert fp.routed_expert_bytes_by_layer[i] == 0


def test_deepseek_expert_pools():
    fp = footprint("deepseek-r1", "Q4_K_M")
    assert fp.routed_expert_bytes_by_layer[:3] == (0, 0, 0)
    # one expert = 3 x 7168 x 2048 weights: gate/up Q4_K, down Q6_K in use_more_bits layers (layer 3)
    assert fp.routed_expert_bytes_by_layer[3] == 2 * 7168 * 2048 * 144 // 256 + 7168 * 2048 * 210 // 256
    assert fp.routed_expert_bytes_by_layer[7] == 3 * 7168 * 2048 * 144 // 256
    assert fp.always_on_bytes == pytest.approx(10.6e9, rel=0.02)
    # architecture twins share the numbers but keep their own id
    assert footprint("deepseek-v3", "Q4_K_M").weights_bytes == fp.weights_bytes
    assert footprint("deepseek-v3", "Q4_K_M").model_id == "deepseek-ai/DeepSeek-V3"


def test_mla_kv_cache_absorbed_vs_naive():
    m = get_model("deepseek-r1")
    assert kv_bytes_per_token(m, "bf16", "absorbed") == 61 * 576 * 2  # 70.3 KB
    assert kv_bytes_per_token(m, "bf16", "absorbed") / 1e3 == pytest.approx(70.3, abs=0.05)
    assert kv_bytes_per_token(m, "bf16", "naive") == 61 * 128 * (192 + 128) * 2  # ~5.0 MB
    assert kv_bytes_per_token(m, "bf16", "naive") / 1e6 == pytest.approx(5.0, abs=0.01)
    assert kv_cache_bytes(m, 1000, "bf16") == 1000 * 70272


@pytest.mark.parametrize("model, kib", [("mixtral-8x7b", 128), ("qwen3-30b-a3b", 96), ("qwen3-235b-a22b", 188),
                                        ("llama-3.1-70b", 320), ("gpt-oss-120b", 72)])
def test_gqa_kv_per_token(model, kib):
    assert kv_bytes_per_token(model, "f16") == kib * KIB


def test_sliding_window_layers_cap_at_window():
    m = get_model("gpt-oss-120b")
    full = kv_cache_bytes(m, 131072)
    per_layer_token = 2 * 8 * 64 * 2
    assert full == per_layer_token * (18 * 131072 + 18 * 128)
    assert kv_cache_bytes(m, 100) == per_layer_token * 36 * 100
    assert kv_bytes_per_token(m, "f16", context=1000) == 36 * KIB  # only the 18 full layers grow
    scout = get_model("llama-4-scout")
    assert kv_cache_bytes(scout, 100_000) == 2 * 8 * 128 * 2 * (12 * 100_000 + 36 * 8192)


def test_kv_types_and_batch():
    m = get_model("llama-3.1-70b")
    f16 = kv_cache_bytes(m, 4096, "f16")
    assert kv_cache_bytes(m, 4096, "q8_0") == f16 * 34 // 64
    assert kv_cache_bytes(m, 4096, "q4_0") == f16 * 18 // 64
    assert kv_cache_bytes(m, 4096, "bf16") == f16
    assert kv_cache_bytes(m, 4096, "f16", batch=4) == 4 * f16
    assert kv_cache_bytes(m, 0) == 0


@pytest.mark.parametrize("kwargs", [{"context": -1}, {"context": 10, "batch": -2}, {"context": 10, "kv_type": "q3"},
                                    {"context": 10, "mla_layout": "weird"}])
def test_bad_kv_inputs(kwargs):
    with pytest.raises(MoesimError):
        kv_cache_bytes("deepseek-r1", **kwargs)


def test_runtime_overhead_from_engine_profile():
    prof = EngineProfile(
        name="test-engine", mla_kv_layout="absorbed", overlaps_cpu_gpu=False, launch_overhead_us_per_layer=5.0,
        uploads_weights_for_prefill=True, prefill_upload_min_batch=32, runtime_overhead_bytes=500_000_000,
        compute_buffer_bytes_per_token=100_000.0, gpu_bandwidth_efficiency_scale=1.0,
        cpu_bandwidth_efficiency_scale=1.0, source="test",
    )
    m = get_model("qwen3-30b-a3b")
    assert runtime_overhead_bytes(m, prof, context=16, batch=1) == 500_000_000 + 100_000 * 16
    assert runtime_overhead_bytes(m, prof, context=16, batch=4) == 500_000_000 + 100_000 * 64
    # the buffer is reserved for one micro-batch (512 tokens), however long the context
    assert runtime_overhead_bytes(m, prof, context=8192, batch=1) == 500_000_000 + 100_000 * 512
    assert runtime_overhead_bytes(m, prof, context=8192, batch=8) == runtime_overhead_bytes(m, prof, 8192, 1)
    assert runtime_overhead_bytes(m, "llama.cpp", 4096, 1) > runtime_overhead_bytes(m, "llama.cpp", 1, 1)
    with pytest.raises(MoesimError):
        runtime_overhead_bytes(m, prof, context=-5)
