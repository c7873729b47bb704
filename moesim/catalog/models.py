"""Model catalog: architecture facts built from real Hugging Face `config.json` files.

CONTRACT (shared by footprint, traces, timing and sweep -- extend, do not rename):
`ModelSpec` is frozen; `tensors()` lists every weight tensor in GGUF naming so quantization
rules (which match on GGUF tensor names) and byte counts follow from the same data.

The catalog index is `data/models.toml` (one entry per Hugging Face repo id, with aliases, the stated
parameter totals and the source URL); each entry's architecture is read from `data/models/<file>.json`,
a copy of the architecture fields of that repo's `config.json`. Any other `config.json` can be loaded
with `get_model(path)`.

Tensor names and shapes follow llama.cpp's converter (`convert_hf_to_gguf.py`) and `gguf-py`
tensor naming (https://github.com/ggml-org/llama.cpp/blob/master/gguf-py/gguf/constants.py).
MLA attention uses the `attn_kv_b` layout of the GGUF files published in 2025 (e.g.
unsloth/DeepSeek-R1-GGUF), which the reference file sizes were measured on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from moesim.errors import MoesimError, unknown_id_error

CATEGORIES = (
    "embedding",
    "output",
    "attention",
    "dense_ffn",
    "shared_expert",
    "routed_expert",
    "router",
    "norm",
)


@dataclass(frozen=True, slots=True)
class TensorGroup:
    """One GGUF tensor (stacked experts are one 3-D tensor, as in GGUF `ffn_*_exps`).

    `shape` is in ggml order: shape[0] is the row length (the dimension blocks run along),
    then rows, then (for stacked experts) the expert count.
    `tensor_class` is the GGUF name without the `blk.N.` prefix and `.weight` suffix,
    e.g. `attn_v`, `attn_kv_b`, `ffn_down_exps`, `ffn_gate_inp`, `attn_norm`, `token_embd`, `output`
    (bias tensors keep their `.bias` suffix: `attn_q.bias`).
    `layer` is the block index, or -1 for tensors outside the blocks.
    `category` is one of: embedding, output, attention, dense_ffn, shared_expert, routed_expert,
    router, norm.
    """

    name: str
    tensor_class: str
    layer: int
    shape: tuple[int, ...]
    category: str

    @property
    def n_params(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture of one model. Units: counts are plain ints; context in tokens."""

    id: str  # Hugging Face repo id, e.g. "deepseek-ai/DeepSeek-R1"
    alias: str  # short id, e.g. "deepseek-r1"
    family: str  # e.g. "deepseek-v3", "mixtral", "qwen3-moe", "gpt-oss", "llama-4"
    model_type: str  # HF model_type
    n_layers: int
    hidden_size: int
    vocab_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    attention: str  # "mha" | "gqa" | "mla"
    # MLA (DeepSeek-V2/V3, Kimi): 0 when not MLA
    q_lora_rank: int
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    # sliding-window / chunked attention: per-layer window in tokens, 0 = full attention
    attention_window_by_layer: tuple[int, ...]
    # MoE structure (dense models: moe_layers == (), n_routed_experts == 0, top_k == 0)
    moe_layers: tuple[int, ...]
    n_routed_experts: int
    top_k: int
    n_shared_experts: int
    expert_ffn_dim: int  # per routed expert
    shared_expert_ffn_dim: int  # total width of the shared expert(s) in one layer, 0 if none
    dense_ffn_dim: int  # FFN width of the non-MoE layers
    tie_word_embeddings: bool
    max_context: int
    source: str  # URL of the config.json the entry was built from
    # --- added by the catalog work (issue 2); defaults keep older constructors valid ---
    gguf_arch: str = "llama"  # llama.cpp architecture name (general.architecture)
    attention_bias: bool = False  # q/k/v projections carry biases (Qwen2, GLM-4.5, gpt-oss, Phi-3.5)
    attention_output_bias: bool = False  # o_proj carries a bias (gpt-oss, Phi-3.5-MoE)
    qk_norm: str = "none"  # "none" | "head" (RMSNorm over head_dim) | "full" (over all heads, OLMoE)
    attention_sinks: bool = False  # per-head sink logits (gpt-oss)
    fused_qkv: bool = False  # one Wqkv matrix (DBRX)
    norm_bias: bool = False  # LayerNorm with bias (Phi-3.5-MoE)
    output_bias: bool = False  # lm_head bias (Phi-3.5-MoE)
    expert_bias: bool = False  # biases on every expert matrix (gpt-oss)
    router_bias: bool = False  # router Linear has a bias (gpt-oss)
    expert_score_bias: bool = False  # e_score_correction_bias of noaux_tc routing (DeepSeek-V3, GLM-4.5)
    shared_expert_gate: bool = False  # sigmoid gate on the shared expert (Qwen1.5/2-MoE)
    mtp_layers: int = 0  # multi-token-prediction layers in the checkpoint (not loaded, not counted)
    native_format: str = "bf16"  # release format of the weights: "bf16" | "fp8" | "mxfp4"
    stated_total_params_b: float = 0.0  # model card total (billions), 0 when unknown
    stated_active_params_b: float = 0.0
    note: str = ""

    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    @property
    def dense_layers(self) -> tuple[int, ...]:
        moe = set(self.moe_layers)
        return tuple(i for i in range(self.n_layers) if i not in moe)

    def tensors(self) -> tuple[TensorGroup, ...]:
        """Every weight tensor in GGUF naming, sorted as llama-quantize walks them (layer, name)."""
        return _build_tensors(self)


# ---------------------------------------------------------------------------------------------
# tensors


def _build_tensor_list(m: ModelSpec) -> list[TensorGroup]:
    out: list[TensorGroup] = []
    d = m.hidden_size

    def add(layer: int, cls: str, shape: tuple[int, ...], category: str) -> None:
        suffix = "" if cls.endswith(".bias") else ".weight"
        name = (f"blk.{layer}." if layer >= 0 else "") + cls + suffix
        out.append(TensorGroup(name, cls, layer, tuple(int(s) for s in shape), category))

    add(-1, "token_embd", (d, m.vocab_size), "embedding")
    add(-1, "output_norm", (d,), "norm")
    if m.norm_bias:
        add(-1, "output_norm.bias", (d,), "norm")
    if not m.tie_word_embeddings:
        add(-1, "output", (d, m.vocab_size), "output")
    if m.output_bias:
        add(-1, "output.bias", (m.vocab_size,), "output")

    moe = set(m.moe_layers)
    q_dim = m.n_heads * m.head_dim
    kv_dim = m.n_kv_heads * m.head_dim
    for i in range(m.n_layers):
        add(i, "attn_norm", (d,), "norm")
        add(i, "ffn_norm", (d,), "norm")
        if m.norm_bias:
            add(i, "attn_norm.bias", (d,), "norm")
            add(i, "ffn_norm.bias", (d,), "norm")
        # attention
        if m.attention == "mla":
            qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:
                add(i, "attn_q_a", (d, m.q_lora_rank), "attention")
                add(i, "attn_q_a_norm", (m.q_lora_rank,), "norm")
                add(i, "attn_q_b", (m.q_lora_rank, m.n_heads * qk_head), "attention")
            else:
                add(i, "attn_q", (d, m.n_heads * qk_head), "attention")
            add(i, "attn_kv_a_mqa", (d, m.kv_lora_rank + m.qk_rope_head_dim), "attention")
            add(i, "attn_kv_a_norm", (m.kv_lora_rank,), "norm")
            add(i, "attn_kv_b", (m.kv_lora_rank, m.n_heads * (m.qk_nope_head_dim + m.v_head_dim)), "attention")
            add(i, "attn_output", (m.n_heads * m.v_head_dim, d), "attention")
        else:
            if m.fused_qkv:
                add(i, "attn_qkv", (d, q_dim + 2 * kv_dim), "attention")
            else:
                add(i, "attn_q", (d, q_dim), "attention")
                add(i, "attn_k", (d, kv_dim), "attention")
                add(i, "attn_v", (d, kv_dim), "attention")
                if m.attention_bias:
                    add(i, "attn_q.bias", (q_dim,), "attention")
                    add(i, "attn_k.bias", (kv_dim,), "attention")
                    add(i, "attn_v.bias", (kv_dim,), "attention")
            add(i, "attn_output", (q_dim, d), "attention")
            if m.attention_output_bias:
                add(i, "attn_output.bias", (d,), "attention")
            if m.qk_norm == "head":
                add(i, "attn_q_norm", (m.head_dim,), "norm")
                add(i, "attn_k_norm", (m.head_dim,), "norm")
            elif m.qk_norm == "full":
                add(i, "attn_q_norm", (q_dim,), "norm")
                add(i, "attn_k_norm", (kv_dim,), "norm")
            if m.attention_sinks:
                add(i, "attn_sinks", (m.n_heads,), "attention")
        # feed-forward
        if i in moe:
            e, fe = m.n_routed_experts, m.expert_ffn_dim
            add(i, "ffn_gate_inp", (d, e), "router")
            if m.router_bias:
                add(i, "ffn_gate_inp.bias", (e,), "router")
            if m.expert_score_bias:
                add(i, "exp_probs_b.bias", (e,), "router")
            add(i, "ffn_gate_exps", (d, fe, e), "routed_expert")
            add(i, "ffn_up_exps", (d, fe, e), "routed_expert")
            add(i, "ffn_down_exps", (fe, d, e), "routed_expert")
            if m.expert_bias:
                add(i, "ffn_gate_exps.bias", (fe, e), "routed_expert")
                add(i, "ffn_up_exps.bias", (fe, e), "routed_expert")
                add(i, "ffn_down_exps.bias", (d, e), "routed_expert")
            if m.shared_expert_ffn_dim:
                fs = m.shared_expert_ffn_dim
                add(i, "ffn_gate_shexp", (d, fs), "shared_expert")
                add(i, "ffn_up_shexp", (d, fs), "shared_expert")
                add(i, "ffn_down_shexp", (fs, d), "shared_expert")
                if m.shared_expert_gate:
                    add(i, "ffn_gate_inp_shexp", (d,), "shared_expert")
        elif m.dense_ffn_dim:
            f = m.dense_ffn_dim
            add(i, "ffn_gate", (d, f), "dense_ffn")
            add(i, "ffn_up", (d, f), "dense_ffn")
            add(i, "ffn_down", (f, d), "dense_ffn")
    # llama-quantize visits tensors ordered by block number, then by name (llama_model_loader's
    # weight_name_comparer); its per-file counters (e.g. the first attn_v tensors) depend on this.
    out.sort(key=lambda t: (t.layer, t.name))
    return out


@functools.lru_cache(maxsize=256)
def _build_tensors(m: ModelSpec) -> tuple[TensorGroup, ...]:
    key = architecture_key(m)
    if key is not m:
        return key.tensors()
    return tuple(_build_tensor_list(m))


@functools.lru_cache(maxsize=512)
def architecture_key(m: ModelSpec) -> ModelSpec:
    """`m` with every field that does not change its tensors blanked: models sharing an architecture
    (DeepSeek-V3/R1, the Qwen3 2507 releases) share one key, so derived tables are computed once."""
    key = dataclasses.replace(
        m, id="", alias="", family="", source="", max_context=0, note="",
        stated_total_params_b=0.0, stated_active_params_b=0.0,
    )
    return m if key == m else key


# ---------------------------------------------------------------------------------------------
# parameter counts


def param_breakdown(model: ModelSpec) -> dict[str, int]:
    """Parameters per category (embedding, output, attention, dense_ffn, shared_expert, routed_expert,
    router, norm); every category is present, zero where the model has none."""
    return dict(_param_breakdown(model))


@functools.lru_cache(maxsize=256)
def _param_breakdown(model: ModelSpec) -> tuple[tuple[str, int], ...]:
    counts = {c: 0 for c in CATEGORIES}
    for t in model.tensors():
        counts[t.category] += t.n_params
    return tuple(counts.items())


def total_params(model: ModelSpec) -> int:
    """All parameters of the main model (tied embeddings counted once, MTP layers excluded)."""
    return sum(param_breakdown(model).values())


def active_params(model: ModelSpec) -> int:
    """Parameters touched per token: everything except the routed experts not chosen
    (top_k of n_routed_experts per MoE layer); the embedding table is counted in full, as model cards do."""
    br = param_breakdown(model)
    if not model.is_moe:
        return sum(br.values())
    routed = br["routed_expert"]
    return sum(br.values()) - routed + routed * model.top_k // model.n_routed_experts


# ---------------------------------------------------------------------------------------------
# building a ModelSpec from a Hugging Face config


_GGUF_ARCH = {
    "deepseek_v2": "deepseek2",
    "deepseek_v3": "deepseek2",
    "kimi_k2": "deepseek2",
    "mixtral": "llama",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen2_moe": "qwen2moe",
    "qwen3_moe": "qwen3moe",
    "qwen3": "qwen3",
    "olmoe": "olmoe",
    "gpt_oss": "gpt-oss",
    "llama4_text": "llama4",
    "glm4_moe": "glm4moe",
    "dbrx": "dbrx",
    "phimoe": "phimoe",
    "granitemoe": "granitemoe",
    "granite": "granite",
}

_FAMILY = {
    "deepseek_v2": "deepseek-v2",
    "deepseek_v3": "deepseek-v3",
    "kimi_k2": "kimi-k2",
    "mixtral": "mixtral",
    "llama": "llama",
    "mistral": "mistral",
    "qwen2": "qwen2",
    "qwen2_moe": "qwen2-moe",
    "qwen3_moe": "qwen3-moe",
    "qwen3": "qwen3",
    "olmoe": "olmoe",
    "gpt_oss": "gpt-oss",
    "llama4_text": "llama-4",
    "glm4_moe": "glm-4.5",
    "dbrx": "dbrx",
    "phimoe": "phi-3.5-moe",
    "granitemoe": "granite-3.0-moe",
    "granite": "granite",
}


class _Cfg:
    """Typed field access on a config dict that names the source in its one-line errors."""

    def __init__(self, data: dict, where: str):
        self.data = data
        self.where = where

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def int(self, *keys: str, default: int | None = None) -> int:
        for key in keys:
            value = self.data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
                raise MoesimError(f"{self.where}: field '{key}' must be a non-negative integer, got {value!r}")
            return int(value)
        if default is not None:
            return default
        raise MoesimError(f"{self.where}: missing required field '{keys[0]}'")

    def get(self, key: str, default=None):
        value = self.data.get(key)
        return default if value is None else value


def model_from_hf_config(
    config: dict,
    id: str = "",
    source: str = "",
    alias: str = "",
    family: str = "",
    **extra,
) -> ModelSpec:
    """Build a ModelSpec from a Hugging Face `config.json` dict.

    Handles DeepSeek-V2/V3 and Kimi-K2 (MLA), Mixtral, Qwen1.5/2/3-MoE, OLMoE, gpt-oss, Llama 4
    (`text_config`), GLM-4.5, DBRX (nested `ffn_config`/`attn_config`), Phi-3.5-MoE, Granite MoE and
    dense Llama/Mistral/Qwen2. `extra` sets the added ModelSpec fields (stated params, note).
    Raises MoesimError (one line) on a config that is not a dict or lacks a required field.
    """
    where = source or id or "config.json"
    if not isinstance(config, dict):
        raise MoesimError(f"{where}: a config.json must hold a JSON object")
    if isinstance(config.get("text_config"), dict):  # multimodal wrappers (Llama 4, Kimi-K2.5)
        outer = config
        config = dict(config["text_config"])
        config.setdefault("tie_word_embeddings", outer.get("tie_word_embeddings", False))
    c = _Cfg(config, where)
    model_type = str(c.get("model_type", ""))
    if model_type == "llama4":
        model_type = "llama4_text"
    if model_type == "":
        raise MoesimError(f"{where}: missing required field 'model_type'")

    if model_type == "dbrx":
        ffn = _Cfg(c.get("ffn_config", {}), where + " ffn_config")
        attn = _Cfg(c.get("attn_config", {}), where + " attn_config")
        d = c.int("d_model")
        n_layers = c.int("n_layers")
        n_heads = c.int("n_heads")
        n_kv = attn.int("kv_n_heads", default=n_heads)
        n_experts = ffn.int("moe_num_experts")
        top_k = ffn.int("moe_top_k")
        expert_dim = ffn.int("ffn_hidden_size")
        max_ctx = c.int("max_seq_len")
    else:
        d = c.int("hidden_size")
        n_layers = c.int("num_hidden_layers")
        n_heads = c.int("num_attention_heads")
        n_kv = c.int("num_key_value_heads", default=n_heads)
        n_experts = c.int("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts", default=0)
        top_k = c.int("num_experts_per_tok", "experts_per_token", "moe_top_k", default=0)
        expert_dim = 0
        max_ctx = c.int("max_position_embeddings", default=0)
    if d == 0 or n_layers == 0 or n_heads == 0:
        raise MoesimError(f"{where}: hidden size, layer count and head count must be positive")
    vocab = c.int("vocab_size")
    head_dim = c.int("head_dim", default=d // n_heads)
    tie = bool(c.get("tie_word_embeddings", False))

    kw: dict = dict(
        q_lora_rank=0, kv_lora_rank=0, qk_rope_head_dim=0, qk_nope_head_dim=0, v_head_dim=0,
        n_shared_experts=0, shared_expert_ffn_dim=0, dense_ffn_dim=0, moe_layers=(),
    )
    flags: dict = {}
    windows = [0] * n_layers
    attention = "mha" if n_kv == n_heads else "gqa"

    if model_type in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
        attention = "mla"
        kw.update(
            q_lora_rank=c.int("q_lora_rank", default=0),
            kv_lora_rank=c.int("kv_lora_rank"),
            qk_rope_head_dim=c.int("qk_rope_head_dim"),
            qk_nope_head_dim=c.int("qk_nope_head_dim"),
            v_head_dim=c.int("v_head_dim"),
        )
        head_dim = kw["qk_nope_head_dim"] + kw["qk_rope_head_dim"]
        n_kv = n_heads  # MLA: every head has its own decompressed K/V; the cache holds the latent
        expert_dim = c.int("moe_intermediate_size")
        first_dense = c.int("first_k_dense_replace", default=0)
        freq = c.int("moe_layer_freq", default=1) or 1
        kw["moe_layers"] = tuple(i for i in range(first_dense, n_layers) if i % freq == 0) if n_experts else ()
        kw["n_shared_experts"] = c.int("n_shared_experts", default=0)
        kw["shared_expert_ffn_dim"] = kw["n_shared_experts"] * expert_dim
        kw["dense_ffn_dim"] = c.int("intermediate_size")
        flags["expert_score_bias"] = c.get("topk_method") == "noaux_tc"
        flags["mtp_layers"] = c.int("num_nextn_predict_layers", default=0)
    elif model_type == "glm4_moe":
        expert_dim = c.int("moe_intermediate_size")
        first_dense = c.int("first_k_dense_replace", default=0)
        kw["moe_layers"] = tuple(range(first_dense, n_layers))
        kw["n_shared_experts"] = c.int("n_shared_experts", default=0)
        kw["shared_expert_ffn_dim"] = kw["n_shared_experts"] * expert_dim
        kw["dense_ffn_dim"] = c.int("intermediate_size")
        flags.update(
            attention_bias=bool(c.get("attention_bias", False)),
            qk_norm="head" if c.get("use_qk_norm", False) else "none",
            expert_score_bias=True,
            mtp_layers=c.int("num_nextn_predict_layers", default=0),
        )
    elif model_type in ("qwen2_moe", "qwen3_moe"):
        expert_dim = c.int("moe_intermediate_size")
        step = c.int("decoder_sparse_step", default=1) or 1
        mlp_only = set(c.get("mlp_only_layers", []) or [])
        kw["moe_layers"] = tuple(
            i for i in range(n_layers) if i not in mlp_only and n_experts > 0 and (i + 1) % step == 0
        )
        kw["dense_ffn_dim"] = c.int("intermediate_size", default=0)
        shared = c.int("shared_expert_intermediate_size", default=0)
        if shared:
            kw["n_shared_experts"] = 1
            kw["shared_expert_ffn_dim"] = shared
            flags["shared_expert_gate"] = True
        if model_type == "qwen2_moe":
            flags["attention_bias"] = True
        else:
            flags["attention_bias"] = bool(c.get("attention_bias", False))
            flags["qk_norm"] = "head"
        if c.get("use_sliding_window", False):
            windows = _uniform_window(c.int("sliding_window", default=0), n_layers, max_ctx)
    elif model_type == "llama4_text":
        expert_dim = c.int("intermediate_size")
        step = c.int("interleave_moe_layer_step", default=1) or 1
        listed = c.get("moe_layers")
        if listed:
            kw["moe_layers"] = tuple(int(i) for i in listed)
        else:
            kw["moe_layers"] = tuple(i for i in range(n_layers) if (i + 1) % step == 0)
        kw["n_shared_experts"] = 1
        kw["shared_expert_ffn_dim"] = expert_dim
        kw["dense_ffn_dim"] = c.int("intermediate_size_mlp", default=0) if step > 1 else 0
        chunk = c.int("attention_chunk_size", default=0)
        no_rope = c.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(n_layers)]
        # chunked (local) attention runs on the RoPE layers; every 4th (NoPE) layer is global
        windows = [chunk if (i < len(no_rope) and no_rope[i]) else 0 for i in range(n_layers)]
        flags["qk_norm"] = "none"  # Llama 4's QK-norm is a weightless L2 norm
    elif model_type == "gpt_oss":
        expert_dim = c.int("intermediate_size")
        kw["moe_layers"] = tuple(range(n_layers))
        sw = c.int("sliding_window", default=0)
        layer_types = c.get("layer_types") or [
            "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)
        ]
        if len(layer_types) != n_layers:
            raise MoesimError(f"{where}: layer_types has {len(layer_types)} entries for {n_layers} layers")
        windows = [sw if t == "sliding_attention" else 0 for t in layer_types]
        flags.update(attention_bias=True, attention_output_bias=True, attention_sinks=True,
                     expert_bias=True, router_bias=True)
    elif model_type == "dbrx":
        kw["moe_layers"] = tuple(range(n_layers))
        flags["fused_qkv"] = True
    elif model_type in ("mixtral", "olmoe", "phimoe", "granitemoe"):
        expert_dim = c.int("intermediate_size")
        kw["moe_layers"] = tuple(range(n_layers)) if n_experts else ()
        if model_type == "olmoe":
            flags["qk_norm"] = "full"
        if model_type == "phimoe":
            flags.update(attention_bias=True, attention_output_bias=True, norm_bias=True,
                         output_bias=bool(c.get("lm_head_bias", False)))
        if model_type in ("mixtral", "phimoe"):
            windows = _uniform_window(c.int("sliding_window", default=0), n_layers, max_ctx)
    else:  # dense decoders: llama, mistral, qwen2, qwen3, granite ...
        if n_experts:
            raise MoesimError(f"{where}: unsupported MoE model_type '{model_type}'")
        kw["dense_ffn_dim"] = c.int("intermediate_size")
        if model_type == "qwen2":
            flags["attention_bias"] = True
            if c.get("use_sliding_window", False):
                windows = _uniform_window(c.int("sliding_window", default=0), n_layers, max_ctx)
        elif model_type == "qwen3":
            flags["qk_norm"] = "head"
        elif model_type == "mistral":
            windows = _uniform_window(c.int("sliding_window", default=0), n_layers, max_ctx)
        else:
            flags["attention_bias"] = bool(c.get("attention_bias", False))

    if n_experts and (top_k == 0 or top_k > n_experts or expert_dim == 0):
        raise MoesimError(f"{where}: MoE config needs 0 < experts per token <= experts and an expert FFN width")
    quant_cfg = c.get("quantization_config", {}) or {}
    native = {"fp8": "fp8", "mxfp4": "mxfp4"}.get(str(quant_cfg.get("quant_method", "")).lower(), "bf16")
    flags.update({k: v for k, v in extra.items() if k not in ("max_context",)})
    if extra.get("max_context"):
        max_ctx = int(extra["max_context"])

    return ModelSpec(
        id=id or where,
        alias=(alias or id.split("/")[-1] or "custom").lower(),
        family=family or _FAMILY.get(model_type, model_type),
        model_type=model_type,
        n_layers=n_layers,
        hidden_size=d,
        vocab_size=vocab,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        attention=attention,
        attention_window_by_layer=tuple(windows),
        n_routed_experts=n_experts,
        top_k=top_k if n_experts else 0,
        expert_ffn_dim=expert_dim if n_experts else 0,
        tie_word_embeddings=tie,
        max_context=max_ctx,
        source=source,
        gguf_arch=_GGUF_ARCH.get(model_type, model_type),
        native_format=native,
        **kw,
        **flags,
    )


def _uniform_window(window: int, n_layers: int, max_ctx: int) -> list[int]:
    # a window at least as long as the model's context is full attention in practice
    if window <= 0 or (max_ctx and window >= max_ctx):
        return [0] * n_layers
    return [window] * n_layers


# ---------------------------------------------------------------------------------------------
# catalog


def _data_dir():
    return resources.files("moesim.catalog") / "data"


@functools.lru_cache(maxsize=1)
def _catalog_entries() -> tuple[dict, ...]:
    with (_data_dir() / "models.toml").open("rb") as f:
        return tuple(tomllib.load(f)["model"])


@functools.lru_cache(maxsize=None)
def _load_entry(index: int) -> ModelSpec:
    entry = _catalog_entries()[index]
    with (_data_dir() / "models" / entry["config"]).open("r", encoding="utf-8") as f:
        config = json.load(f)
    return model_from_hf_config(
        config,
        id=entry["id"],
        alias=entry["alias"],
        family=entry["family"],
        source=entry["source"],
        stated_total_params_b=float(entry.get("stated_total_params_b", 0.0)),
        stated_active_params_b=float(entry.get("stated_active_params_b", 0.0)),
        note=entry.get("note", ""),
    )


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, int]:
    idx: dict[str, int] = {}
    for i, entry in enumerate(_catalog_entries()):
        for key in [entry["id"], entry["alias"], *entry.get("aliases", [])]:
            idx[key.lower()] = i
        idx[entry["id"].split("/")[-1].lower()] = i
    return idx


def all_models() -> tuple[ModelSpec, ...]:
    """Every catalog model, in catalog order."""
    return tuple(_load_entry(i) for i in range(len(_catalog_entries())))


def model_ids() -> tuple[str, ...]:
    """Hugging Face ids and aliases accepted by `get_model` (for suggestions)."""
    names: list[str] = []
    for entry in _catalog_entries():
        names += [entry["id"], entry["alias"]]
    return tuple(names)


def load_config_file(path: str | Path, **kwargs) -> ModelSpec:
    """A ModelSpec from a config.json file on disk; malformed or truncated JSON -> MoesimError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MoesimError(f"cannot read {path}: {exc.__class__.__name__}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MoesimError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    name = path.parent.name if path.name == "config.json" else path.stem
    return model_from_hf_config(config, id=kwargs.pop("id", name), source=str(path), **kwargs)


def get_model(id_or_alias_or_path: str | ModelSpec) -> ModelSpec:
    """A catalog model by Hugging Face repo id or alias (case-insensitive), or a path to a
    `config.json` / `.gguf` file. Unknown ids raise MoesimError suggesting the closest ids."""
    if isinstance(id_or_alias_or_path, ModelSpec):
        return id_or_alias_or_path
    key = str(id_or_alias_or_path).strip()
    hit = _index().get(key.lower())
    if hit is not None:
        return _load_entry(hit)
    path = Path(key)
    if key.lower().endswith(".gguf"):
        from moesim.gguf_input import read_gguf  # the gguf package loads only when a file is given

        return read_gguf(path).model
    if key.lower().endswith(".json") or path.is_file():
        return load_config_file(path)
    if path.is_dir() and (path / "config.json").is_file():
        return load_config_file(path / "config.json")
    raise unknown_id_error("model", key, model_ids())
