"""Memory footprint: bytes of every tensor class of a (model, quant), KV cache and runtime overhead.

`footprint(model, quant)` follows the quant's per-tensor rules over `ModelSpec.tensors()`, so its
`weights_bytes` is the tensor data a GGUF (or safetensors) file of that quantization holds.
KV cache: llama.cpp stores K and V rows per layer per token (`ggml_row_size(type, n_embd_k_gqa)`);
MLA models store the compressed latent (kv_lora_rank + qk_rope_head_dim = 576 elements per layer) when
the engine absorbs the up-projections, or full per-head K/V in the naive layout older llama.cpp used.
Sliding-window / chunked-attention layers hold at most `window` tokens.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

from moesim.catalog.models import CATEGORIES, ModelSpec, architecture_key, get_model
from moesim.catalog.quants import (
    QuantScheme,
    assign_types,
    get_quant,
    get_storage_type,
    tensor_bytes,
    tensor_bytes_by_name,
)
from moesim.errors import MoesimError

KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")
MLA_LAYOUTS = ("absorbed", "naive")
UBATCH_TOKENS = 512  # llama.cpp default n_ubatch


@dataclass(frozen=True, slots=True)
class Footprint:
    """Bytes of a model's weights at one quantization, split every way the placement needs."""

    model_id: str
    quant_id: str
    weights_bytes: int  # all tensor data, as a GGUF file would hold it
    n_params: int
    bytes_by_category: dict[str, int]  # embedding, output, attention, dense_ffn, shared_expert, ...
    bytes_by_tensor_class: dict[str, int]  # attn_kv_b, ffn_down_exps, token_embd, ...
    bytes_by_layer: tuple[int, ...]  # everything inside block i (routed experts included)
    routed_expert_bytes_by_layer: tuple[int, ...]  # ONE routed expert of block i, 0 for non-MoE blocks
    always_on_bytes: int  # everything except routed experts
    routed_bytes: int  # all routed experts
    bytes_by_storage_type: dict[str, int] = field(default_factory=dict)  # "Q4_K": ..., "F32": ...
    tensor_types: dict[str, str] = field(default_factory=dict)  # tensor class -> storage types used
    exact: bool = False  # True when read from a real GGUF header, False when computed from rules

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.weights_bytes / self.n_params if self.n_params else 0.0

    @property
    def non_block_bytes(self) -> int:
        """Embedding, output head and final norm (tensors outside the blocks)."""
        return self.weights_bytes - sum(self.bytes_by_layer)


def footprint(model: ModelSpec | str, quant: QuantScheme | str) -> Footprint:
    """Bytes of every tensor of `model` stored as `quant` (cached per model and quant)."""
    return _footprint(get_model(model), get_quant(quant))


def _footprint(model: ModelSpec, quant: QuantScheme) -> Footprint:
    key = architecture_key(model)
    fp = _arch_footprint(key, quant)
    if key is model:
        return fp
    return dataclasses.replace(fp, model_id=model.id)


@functools.lru_cache(maxsize=2048)
def _arch_footprint(model: ModelSpec, quant: QuantScheme) -> Footprint:
    types = assign_types(quant, model)
    rows = [(t, types[t.name], tensor_bytes_by_name(types[t.name], t.shape)) for t in model.tensors()]
    return build_footprint(model, quant.id, rows, exact=False)


def build_footprint(model: ModelSpec, quant_id: str, rows, exact: bool) -> Footprint:
    """A Footprint from (TensorGroup, storage type name, bytes) rows (shared with the GGUF reader)."""
    by_cat = {c: 0 for c in CATEGORIES}
    by_class: dict[str, int] = {}
    by_stype: dict[str, int] = {}
    class_types: dict[str, set[str]] = {}
    by_layer = [0] * model.n_layers
    routed_by_layer = [0] * model.n_layers
    n_params = 0
    for t, stype, nbytes in rows:
        n_params += t.n_params
        by_cat[t.category] = by_cat.get(t.category, 0) + nbytes
        by_class[t.tensor_class] = by_class.get(t.tensor_class, 0) + nbytes
        by_stype[stype] = by_stype.get(stype, 0) + nbytes
        class_types.setdefault(t.tensor_class, set()).add(stype)
        if 0 <= t.layer < model.n_layers:
            by_layer[t.layer] += nbytes
            if t.category == "routed_expert":
                routed_by_layer[t.layer] += nbytes
    if model.n_routed_experts:
        routed_by_layer = [b // model.n_routed_experts for b in routed_by_layer]
    total = sum(by_cat.values())
    routed = by_cat.get("routed_expert", 0)
    return Footprint(
        model_id=model.id,
        quant_id=quant_id,
        weights_bytes=total,
        n_params=n_params,
        bytes_by_category=by_cat,
        bytes_by_tensor_class=dict(sorted(by_class.items())),
        bytes_by_layer=tuple(by_layer),
        routed_expert_bytes_by_layer=tuple(routed_by_layer),
        always_on_bytes=total - routed,
        routed_bytes=routed,
        bytes_by_storage_type=dict(sorted(by_stype.items(), key=lambda kv: -kv[1])),
        tensor_types={k: "+".join(sorted(v)) for k, v in sorted(class_types.items())},
        exact=exact,
    )


# ---------------------------------------------------------------------------------------------
# KV cache


def _kv_row_bytes(kv_type: str, n_elements: int) -> int:
    if n_elements == 0:
        return 0
    key = kv_type.lower()
    if key not in KV_TYPES:
        raise MoesimError(f"unknown KV cache type '{kv_type}'; choose one of {', '.join(KV_TYPES)}")
    stype = get_storage_type(key.upper())
    if n_elements % stype.block_size:
        raise MoesimError(f"KV rows of {n_elements} elements do not fit {stype.name} blocks of {stype.block_size}")
    return tensor_bytes(stype, (n_elements,))


def kv_elements_per_layer(model: ModelSpec, mla_layout: str = "absorbed") -> tuple[int, int]:
    """(K elements, V elements) one token adds to one layer's cache."""
    if model.attention == "mla":
        if mla_layout not in MLA_LAYOUTS:
            raise MoesimError(f"unknown MLA cache layout '{mla_layout}'; choose absorbed or naive")
        if mla_layout == "absorbed":
            # the latent c_kv plus the shared RoPE key; V is read back out of the same latent
            return model.kv_lora_rank + model.qk_rope_head_dim, 0
        return (
            model.n_heads * (model.qk_nope_head_dim + model.qk_rope_head_dim),
            model.n_heads * model.v_head_dim,
        )
    return model.n_kv_heads * model.head_dim, model.n_kv_heads * model.head_dim


def _layer_token_bytes(model: ModelSpec, kv_type: str, mla_layout: str) -> int:
    k, v = kv_elements_per_layer(model, mla_layout)
    return _kv_row_bytes(kv_type, k) + _kv_row_bytes(kv_type, v)


def _check_nonneg(name: str, value: int) -> int:
    if value is None or int(value) != value or value < 0:
        raise MoesimError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def kv_cache_bytes(
    model: ModelSpec | str,
    context: int,
    kv_type: str = "f16",
    mla_layout: str = "absorbed",
    batch: int = 1,
) -> int:
    """KV cache bytes for `batch` sequences of `context` tokens each; window layers hold at most
    their window."""
    model = get_model(model)
    context = _check_nonneg("context", context)
    batch = _check_nonneg("batch", batch)
    per_layer = _layer_token_bytes(model, kv_type, mla_layout)
    tokens = sum(min(context, w) if w else context for w in model.attention_window_by_layer)
    return per_layer * tokens * batch


def kv_bytes_per_token(
    model: ModelSpec | str,
    kv_type: str = "f16",
    mla_layout: str = "absorbed",
    context: int = 0,
) -> int:
    """Bytes one more token adds to the cache of one sequence already holding `context` tokens:
    every layer at a short context; only the layers whose window is not yet full later on."""
    model = get_model(model)
    context = _check_nonneg("context", context)
    per_layer = _layer_token_bytes(model, kv_type, mla_layout)
    growing = sum(1 for w in model.attention_window_by_layer if not w or context < w)
    return per_layer * growing


# ---------------------------------------------------------------------------------------------
# runtime overhead


def runtime_overhead_bytes(model: ModelSpec | str, engine="llama.cpp", context: int = 4096, batch: int = 1) -> int:
    """Memory an engine needs beyond weights and KV cache: its fixed runtime (CUDA context,
    allocator slack) plus the compute buffer, both from the EngineProfile.

    The compute buffer is reserved for one worst-case micro-batch (f32 logits and activations of
    every token in it): `compute_buffer_bytes_per_token` x tokens per micro-batch, where a micro-batch
    holds min(context x batch, the engine's prefill micro-batch) tokens (512 in llama.cpp).
    """
    model = get_model(model)
    context = _check_nonneg("context", context)
    batch = _check_nonneg("batch", batch)
    if isinstance(engine, str):
        from moesim.catalog.engines import get_engine

        prof = get_engine(engine)
    else:
        prof = engine
    ubatch = int(getattr(prof, "prefill_ubatch", UBATCH_TOKENS) or UBATCH_TOKENS)
    in_flight = min(max(context * max(batch, 1), 1), ubatch)
    return int(prof.runtime_overhead_bytes + prof.compute_buffer_bytes_per_token * in_flight)
