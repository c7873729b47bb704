"""Small helpers shared by the trace tests: tiny ModelSpecs built directly (no catalog needed)."""

from __future__ import annotations

import dataclasses

from moesim.catalog.models import ModelSpec


def tiny_model(n_layers=4, moe_layers=None, n_experts=8, top_k=2, family="mixtral", model_id="test/tiny-moe"):
    """A ModelSpec with only the MoE shape filled in meaningfully."""
    moe_layers = tuple(range(n_layers)) if moe_layers is None else tuple(moe_layers)
    values = {}
    for field in dataclasses.fields(ModelSpec):
        if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
            continue
        values[field.name] = {str: "", int: 0, bool: False}.get(field.type if isinstance(field.type, type) else
                                                              {"str": str, "int": int, "bool": bool}.get(field.type), ())
    values.update(
        id=model_id, alias=model_id.split("/")[-1], family=family, model_type=family.replace("-", "_"),
        n_layers=n_layers, moe_layers=moe_layers, n_routed_experts=n_experts, top_k=top_k,
        hidden_size=64, vocab_size=100, n_heads=4, n_kv_heads=4, head_dim=16, attention="gqa",
        attention_window_by_layer=tuple(0 for _ in range(n_layers)), max_context=4096, source="test",
    )
    return ModelSpec(**values)


def deepseek_shape():
    """DeepSeek-V3/R1 routing shape: 61 layers, the first 3 dense, 256 experts, top-8."""
    return tiny_model(n_layers=61, moe_layers=range(3, 61), n_experts=256, top_k=8, family="deepseek-v3",
                      model_id="deepseek-ai/DeepSeek-R1")
