"""Model catalog: architecture facts built from real Hugging Face `config.json` files.

CONTRACT (shared by footprint, traces, timing and sweep -- extend, do not rename):
`ModelSpec` is frozen; `tensors()` lists every weight tensor in GGUF naming so quantization
rules (which match on GGUF tensor names) and byte counts follow from the same data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TensorGroup:
    """One GGUF tensor (stacked experts are one 3-D tensor, as in GGUF `ffn_*_exps`).

    `shape` is in ggml order: shape[0] is the row length (the dimension blocks run along),
    then rows, then (for stacked experts) the expert count.
    `tensor_class` is the GGUF name without the `blk.N.` prefix and `.weight` suffix,
    e.g. `attn_v`, `attn_kv_b`, `ffn_down_exps`, `ffn_gate_inp`, `attn_norm`, `token_embd`, `output`.
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

    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    def tensors(self) -> tuple[TensorGroup, ...]:
        raise NotImplementedError  # filled in by the catalog work (issue 2)
