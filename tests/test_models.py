"""Model catalog: configs -> architecture -> parameter counts."""

from __future__ import annotations

import csv
import json

import pytest

from moesim.catalog.models import (
    CATEGORIES,
    ModelSpec,
    active_params,
    all_models,
    get_model,
    model_from_hf_config,
    param_breakdown,
    total_params,
)
from moesim.errors import MoesimError

MODELS = all_models()


def test_catalog_covers_the_model_id_file(shared_dir):
    rows = list(csv.DictReader((shared_dir / "reference" / "model-ids.csv").open()))
    assert {r["hf_repo"] for r in rows} == {m.id for m in MODELS}
    for r in rows:
        assert get_model(r["alias"]).id == r["hf_repo"]


def test_every_entry_has_a_config_url_source():
    assert len(MODELS) == 41
    for m in MODELS:
        assert m.source == f"https://huggingface.co/{m.id}/blob/main/config.json"


def test_deepseek_v3_totals_from_config():
    for name in ("deepseek-ai/DeepSeek-V3", "deepseek-r1", "DeepSeek-V3-0324"):
        m = get_model(name)
        assert total_params(m) == pytest.approx(671.0e9, rel=0.003)
        assert active_params(m) == pytest.approx(37.5e9, rel=0.003)


def test_deepseek_v3_decomposition_matches_reference_arithmetic():
    br = param_breakdown(get_model("deepseek-r1"))
    assert br["attention"] == pytest.approx(61 * 187.11e6, rel=1e-3)
    assert br["dense_ffn"] == 3 * 3 * 7168 * 18432
    assert br["routed_expert"] == 58 * 256 * 3 * 7168 * 2048
    assert br["shared_expert"] == 58 * 3 * 7168 * 2048
    assert br["router"] == 58 * (256 * 7168 + 256)
    assert br["embedding"] == br["output"] == 129280 * 7168


@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.alias)
def test_totals_match_stated_params(m):
    # every catalog total within 3% of the model card (Kimi-K2 is 1.3% low: its "1.04T" is rounded
    # up from ~1.03T; GLM-4.5 excludes the MTP layer; Llama 4 excludes the vision tower)
    assert total_params(m) == pytest.approx(m.stated_total_params_b * 1e9, rel=0.03)


@pytest.mark.parametrize("m", [m for m in MODELS if m.is_moe], ids=lambda m: m.alias)
def test_active_params_match_stated(m):
    # model cards differ in whether the embedding lookup counts as active (DeepSeek: yes, gpt-oss: no)
    act = active_params(m)
    embd = param_breakdown(m)["embedding"]
    stated = m.stated_active_params_b * 1e9
    err = min(abs(act / stated - 1), abs((act - embd) / stated - 1))
    assert err < 0.08


def test_tensor_list_is_complete_and_ggml_ordered():
    m = get_model("qwen3-30b-a3b")
    ts = {t.name: t for t in m.tensors()}
    assert ts["blk.0.ffn_down_exps.weight"].shape == (768, 2048, 128)
    assert ts["blk.0.ffn_gate_exps.weight"].shape == (2048, 768, 128)
    assert ts["blk.0.attn_q.weight"].shape == (2048, 32 * 128)
    assert ts["blk.0.attn_k.weight"].shape == (2048, 4 * 128)
    assert ts["blk.0.attn_q_norm.weight"].shape == (128,)
    assert ts["blk.0.ffn_gate_inp.weight"].category == "router"
    assert ts["token_embd.weight"].shape == (2048, 151936)
    assert sum(t.n_params for t in m.tensors()) == total_params(m)
    assert set(param_breakdown(m)) == set(CATEGORIES)
    layers = [t.layer for t in m.tensors()]
    assert layers == sorted(layers)


def test_mla_tensors():
    ts = {t.tensor_class for t in get_model("deepseek-r1").tensors() if t.layer == 5}
    assert {"attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b", "attn_output", "exp_probs_b.bias",
            "ffn_gate_shexp", "ffn_down_exps"} <= ts
    lite = get_model("deepseek-v2-lite")
    assert lite.q_lora_rank == 0
    lite_classes = {t.tensor_class for t in lite.tensors() if t.layer == 1}
    assert "attn_q" in lite_classes and "attn_q_a" not in lite_classes
    kv_b = next(t for t in lite.tensors() if t.name == "blk.0.attn_kv_b.weight")
    assert kv_b.shape == (512, 16 * (128 + 128))
    assert lite.dense_layers == (0,)


def test_gpt_oss_sliding_alternation_biases_and_sinks():
    m = get_model("gpt-oss-120b")
    assert m.attention_window_by_layer[:4] == (128, 0, 128, 0)
    assert sum(1 for w in m.attention_window_by_layer if w == 0) == 18
    classes = {t.tensor_class for t in m.tensors() if t.layer == 0}
    assert {"attn_sinks", "attn_q.bias", "attn_output.bias", "ffn_gate_inp.bias", "ffn_down_exps.bias"} <= classes
    assert m.native_format == "mxfp4"


def test_llama4_interleave_shared_expert_and_chunked_attention():
    mav = get_model("llama-4-maverick")
    assert mav.moe_layers == tuple(range(1, 48, 2))
    assert mav.dense_ffn_dim == 16384 and mav.shared_expert_ffn_dim == 8192
    scout = get_model("Llama-4-Scout-17B-16E")
    assert len(scout.moe_layers) == 48 and scout.dense_ffn_dim == 0
    assert scout.attention_window_by_layer[:4] == (8192, 8192, 8192, 0)


def test_nested_and_special_configs():
    dbrx = get_model("dbrx")
    assert (dbrx.n_routed_experts, dbrx.top_k, dbrx.expert_ffn_dim, dbrx.n_kv_heads) == (16, 4, 10752, 8)
    assert any(t.tensor_class == "attn_qkv" for t in dbrx.tensors())
    qwen15 = get_model("qwen1.5-moe-a2.7b")
    assert qwen15.shared_expert_ffn_dim == 5632 and qwen15.shared_expert_gate
    kimi25 = get_model("moonshotai/Kimi-K2.5")
    assert kimi25.attention == "mla" and kimi25.max_context == 262144
    granite = get_model("granite-3.0-1b-a400m")
    assert granite.tie_word_embeddings and not any(t.name == "output.weight" for t in granite.tensors())
    glm = get_model("glm-4.5")
    assert glm.dense_layers == (0, 1, 2) and glm.attention_bias


def test_lookup_is_case_insensitive_and_accepts_paths(tmp_path):
    assert get_model("DEEPSEEK-R1") is get_model("deepseek-ai/DeepSeek-R1")
    assert get_model("Qwen3-30B-A3B").id == "Qwen/Qwen3-30B-A3B"
    cfg = {
        "model_type": "mixtral", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 512,
        "vocab_size": 1000}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = get_model(str(path))
    assert isinstance(m, ModelSpec)
    assert m.n_routed_experts == 4 and m.moe_layers == (0, 1)
    assert total_params(m) == 2 * (256 * 256 * 2 + 256 * 128 * 2 + 4 * 3 * 256 * 512 + 256 * 4 + 2 * 256) + 2 * 1000 * 256 + 256


@pytest.mark.parametrize("text", ["{", '{"model_type": "llama", "hidden_size": 4096', "not json", ""])
def test_malformed_config_raises_one_line_error(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(MoesimError) as exc:
        get_model(str(path))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "cfg, field",
    [
        ({"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}, "hidden_size"),
        ({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}, "model_type"),
        ({"model_type": "deepseek_v3", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "vocab_size": 10, "n_routed_experts": 4, "num_experts_per_tok": 2}, "kv_lora_rank"),
        ({"model_type": "llama", "hidden_size": -5, "num_hidden_layers": 2, "num_attention_heads": 4,
          "vocab_size": 10}, "hidden_size"),
    ],
)
def test_missing_or_bad_fields_raise(cfg, field):
    with pytest.raises(MoesimError, match=field):
        model_from_hf_config(cfg, id="x")


def test_unknown_model_suggests_closest():
    with pytest.raises(MoesimError, match="did you mean.*deepseek-r1"):
        get_model("deepseek-r2")
