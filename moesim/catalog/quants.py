"""Quantization catalog: storage types (ggml block formats and others) and file-type rules.

CONTRACT: `StorageType` gives exact storage cost; `QuantScheme.tensor_type(tensor, model)`
names the StorageType a given tensor gets (llama.cpp `llama_tensor_get_type` logic for GGUF
file types, rule tables for other formats); `tensor_bytes` turns that into bytes.

Storage types and scheme rule tables are data (`data/quants.toml`). The llama.cpp file-type logic is
code that mirrors `llama_tensor_get_type_impl`, `tensor_type_fallback` and `tensor_allows_quantization`
of https://github.com/ggml-org/llama.cpp/blob/master/src/llama-quant.cpp, branch for branch (the
Falcon-only branches are left out: no Falcon model is in the catalog).

Older GGUF files were made with older rules. `get_quant("Q4_K_M@pre-4872")` gives the same file type under
a named historical rule set (`LLAMA_CPP_RULES`), so a published file can be compared with the rules that
actually made it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from moesim.errors import MoesimError, unknown_id_error

if TYPE_CHECKING:
    from moesim.catalog.models import ModelSpec, TensorGroup


@dataclass(frozen=True, slots=True)
class StorageType:
    """One storage format of a tensor: `block_size` weights take `bits_per_block` bits.

    Bits (not bytes) so formats whose blocks are not whole bytes (GPTQ g128 with 4-bit zeros)
    are exact too. ggml types: bits_per_block = 8 * bytes per block.
    """

    name: str  # "Q4_K", "Q6_K", "MXFP4", "F16", "FP8_E4M3_B128", "GPTQ_INT4_G128", ...
    block_size: int
    bits_per_block: int
    ggml: bool  # a real ggml tensor type (can appear in a GGUF file)
    source: str
    # 2-D weight blocks (FP8 128x128): a block spans `block_rows` rows; `block_overhead_bits` of
    # each block are its scale, paid once per (possibly partial) block
    block_rows: int = 1
    block_overhead_bits: int = 0

    @property
    def bits_per_weight(self) -> float:
        return self.bits_per_block / (self.block_size * self.block_rows)

    @property
    def is_quantized(self) -> bool:
        return self.block_size > 1


@dataclass(frozen=True, slots=True)
class QuantRule:
    """One row of a scheme's rule table: tensors matching every given condition get `type`."""

    type: str
    category: tuple[str, ...] = ()
    tensor_class: tuple[str, ...] = ()
    first_moe_layers: int = 0  # 0 = any layer

    def matches(self, tensor: TensorGroup, model: ModelSpec) -> bool:
        if self.category and tensor.category not in self.category:
            return False
        if self.tensor_class and not any(fnmatch.fnmatchcase(tensor.tensor_class, p) for p in self.tensor_class):
            return False
        if self.first_moe_layers:
            if tensor.layer not in model.moe_layers[: self.first_moe_layers]:
                return False
        return True


@dataclass(frozen=True, slots=True)
class QuantScheme:
    """A whole-model quantization (llama.cpp file type, unsloth dynamic mix, FP8, GPTQ, MLX ...)."""

    id: str  # "Q4_K_M", "UD-Q2_K_XL", "FP8", "GPTQ-Int4", "MLX-4bit", "MXFP4", ...
    kind: str  # "gguf" | "gguf-dynamic" | "fp8" | "gptq" | "awq" | "mlx" | "nvfp4" | "native"
    default_type: str  # StorageType name for tensors no rule overrides
    description: str
    source: str
    keep_type: str = "F32"  # type of tensors that are never quantized (norms, routers, biases)
    rules: tuple[QuantRule, ...] = ()
    imatrix: bool = False  # made with an importance matrix (changes a few llama.cpp choices)
    applies_to: str = "all"  # "all" | "moe" | "mxfp4-native" | "ternary"

    @property
    def is_gguf(self) -> bool:
        return self.kind in ("gguf", "gguf-dynamic")

    @property
    def file_type(self) -> str:
        """The llama.cpp file type without a rule-set suffix ("Q4_K_M" for "Q4_K_M@pre-4872")."""
        return self.id.split("@", 1)[0]

    @property
    def llama_cpp_rules(self) -> str:
        """Key of LLAMA_CPP_RULES the file type follows: the id's `@` suffix, else "current"."""
        return self.id.split("@", 1)[1] if "@" in self.id else "current"

    def tensor_type(self, tensor: TensorGroup, model: ModelSpec) -> StorageType:
        """The storage type `tensor` of `model` gets under this scheme."""
        return tensor_type(self, tensor, model)


# ---------------------------------------------------------------------------------------------
# catalog loading


@functools.lru_cache(maxsize=1)
def _data() -> dict:
    with (resources.files("moesim.catalog") / "data" / "quants.toml").open("rb") as f:
        return tomllib.load(f)


@functools.lru_cache(maxsize=1)
def _storage_types() -> dict[str, StorageType]:
    out = {}
    for e in _data()["storage_type"]:
        bits = e["bytes_per_block"] * 8 if "bytes_per_block" in e else e["bits_per_block"]
        out[e["name"]] = StorageType(
            name=e["name"],
            block_size=e["block_size"],
            bits_per_block=bits,
            ggml=e["ggml"],
            source=e["source"],
            block_rows=e.get("block_rows", 1),
            block_overhead_bits=e.get("block_overhead_bits", 0),
        )
    return out


@functools.lru_cache(maxsize=1)
def _schemes() -> dict[str, QuantScheme]:
    out = {}
    types = _storage_types()
    for e in _data()["scheme"]:
        rules = tuple(
            QuantRule(
                type=r["type"],
                category=tuple(r.get("category", ())),
                tensor_class=tuple(r.get("tensor_class", ())),
                first_moe_layers=r.get("first_moe_layers", 0),
            )
            for r in e.get("rules", ())
        )
        for name in [e["default_type"], e.get("keep_type", "F32"), *(r.type for r in rules)]:
            if name not in types:  # a typo in the data file must fail loudly, not at lookup time
                raise MoesimError(f"quants.toml: scheme {e['id']} names unknown storage type {name}")
        out[e["id"]] = QuantScheme(
            id=e["id"],
            kind=e["kind"],
            default_type=e["default_type"],
            description=e["description"],
            source=e["source"],
            keep_type=e.get("keep_type", "F32"),
            rules=rules,
            imatrix=e.get("imatrix", False),
            applies_to=e.get("applies_to", "all"),
        )
    return out


def all_storage_types() -> tuple[StorageType, ...]:
    """Every storage type (ggml types first, in catalog order)."""
    return tuple(_storage_types().values())


def get_storage_type(name: str) -> StorageType:
    """A storage type by name (case-insensitive): "Q4_K", "MXFP4", "FP8_E4M3_B128" ..."""
    if isinstance(name, StorageType):
        return name
    types = _storage_types()
    hit = types.get(name)
    if hit is not None:
        return hit
    hit = types.get(str(name).upper()) or next((t for n, t in types.items() if n.lower() == str(name).lower()), None)
    if hit is None:
        raise unknown_id_error("storage type", str(name), types)
    return hit


def all_quants() -> tuple[QuantScheme, ...]:
    """Every quantization scheme, in catalog order."""
    return tuple(_schemes().values())


@dataclass(frozen=True, slots=True)
class LlamaCppRules:
    """A historical state of llama.cpp's file-type rules (`llama_tensor_get_type`)."""

    name: str
    until: str  # date the rules were replaced ("" = still current)
    file_types: tuple[str, ...]  # file types that existed under these rules (empty = all)
    description: str
    source: str


_PRE_4872_FILE_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
                        "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "F32")

LLAMA_CPP_RULES = {
    "current": LlamaCppRules(
        "current", "", (), "llama.cpp master's llama_tensor_get_type (what llama-quantize does today)",
        "https://github.com/ggml-org/llama.cpp/blob/master/src/llama-quant.cpp",
    ),
    "pre-4872": LlamaCppRules(
        "pre-4872", "2024-01-11", _PRE_4872_FILE_TYPES,
        "MoE GGUFs made before llama.cpp PR #4872 (e.g. TheBloke's Dec-2023 Mixtral files): experts were stored "
        "one tensor per expert (blk.N.ffn_down.E.weight), which the name tests for ffn_down/ffn_gate/ffn_up did "
        "not match, so routed experts kept the file type's base type (Q4_K_M ~ Q4_K_S); attn_output had no "
        "8-expert bump (added by PR #4906). attn_k/attn_v Q8_0 for 8-expert models was already there. Rules "
        "for dense models that changed since are not modelled: use it for MoE files of that period.",
        "https://github.com/ggml-org/llama.cpp/pull/4872 (\"the existing implementation of this intended behavior "
        "fails for MoE models ... QX_K_M being mostly equivalent to QX_K_S\"; its table: Mixtral-8x7B Q2_K "
        "14.57 GiB and Q3_K_M 18.96 GiB before the PR); https://github.com/ggml-org/llama.cpp/pull/4906",
    ),
}


def get_quant(id: str | QuantScheme) -> QuantScheme:
    """A quantization scheme by id (case-insensitive; `-`/`_` and a `ud_` prefix tolerated).

    A llama.cpp file type may name a historical rule set after `@`: "Q4_K_M@pre-4872"."""
    if isinstance(id, QuantScheme):
        return id
    key = str(id).strip()
    if "@" in key:
        return _with_rules(*key.split("@", 1))
    return _base_quant(key)


def _with_rules(file_type: str, rules_name: str) -> QuantScheme:
    rules = LLAMA_CPP_RULES.get(rules_name.strip().lower())
    if rules is None:
        raise MoesimError(f"unknown llama.cpp rule set '{rules_name}' (known: {', '.join(LLAMA_CPP_RULES)}; "
                          "see `moesim catalog quants`)")
    scheme = _base_quant(file_type.strip())
    if scheme.kind != "gguf":
        raise MoesimError(f"'{scheme.id}' is not a llama.cpp file type; rule sets (@{rules.name}) apply to "
                          "llama-quantize presets only")
    if rules.file_types and scheme.id not in rules.file_types:
        raise MoesimError(f"file type {scheme.id} did not exist under llama.cpp rule set '{rules.name}' "
                          f"(replaced {rules.until}); it had {', '.join(rules.file_types)}")
    if rules.name == "current":
        return scheme
    return dataclasses.replace(scheme, id=f"{scheme.id}@{rules.name}",
                               description=f"{scheme.description} -- {rules.name} rules: {rules.description}",
                               source=f"{scheme.source}; {rules.source}")


def _base_quant(key: str) -> QuantScheme:
    schemes = _schemes()
    if key in schemes:
        return schemes[key]
    norm = key.upper().replace("-", "_")
    for sid, scheme in schemes.items():
        if sid.upper().replace("-", "_") == norm:
            return scheme
    raise unknown_id_error("quant", key, schemes)


def applicable_quants(model: ModelSpec) -> tuple[QuantScheme, ...]:
    """The schemes that make sense for `model`: ternary types only for ternary-trained models,
    MXFP4_MOE only for MoE models, the native MXFP4 format only for models released in it."""
    out = []
    for q in all_quants():
        if q.applies_to == "ternary":
            continue  # no ternary-trained model in the catalog; TQ types destroy ordinary weights
        if q.applies_to == "moe" and not model.is_moe:
            continue
        if q.applies_to == "mxfp4-native" and model.native_format != "mxfp4":
            continue
        if q.id == "F32":
            continue  # nobody ships a model in F32; kept in the catalog for completeness
        out.append(q)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# bytes


def tensor_bytes(stype: StorageType | str, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of ggml-order `shape` stored as `stype`.

    ggml types store whole blocks along the row (shape[0]); a row length that is not a multiple of
    the block is impossible in GGUF and raises MoesimError. Other formats pad the last partial group.
    """
    stype = get_storage_type(stype)
    if not shape:
        shape = (1,)
    ne0 = int(shape[0])
    rest = 1
    for dim in shape[1:]:
        rest *= int(dim)
    if stype.block_rows > 1:
        ne1 = int(shape[1]) if len(shape) > 1 else 1
        outer = rest // ne1 if ne1 else 0
        n_blocks = -(-ne0 // stype.block_size) * -(-ne1 // stype.block_rows) * outer
        element_bits = (stype.bits_per_block - stype.block_overhead_bits) / (stype.block_size * stype.block_rows)
        bits = ne0 * ne1 * outer * element_bits + n_blocks * stype.block_overhead_bits
        return int(-(-bits // 8))
    if stype.ggml and ne0 % stype.block_size:
        raise MoesimError(f"row length {ne0} is not a multiple of the {stype.name} block size {stype.block_size}")
    blocks_per_row = -(-ne0 // stype.block_size)
    bits = blocks_per_row * rest * stype.bits_per_block
    return -(-bits // 8)


@functools.lru_cache(maxsize=65536)
def tensor_bytes_by_name(type_name: str, shape: tuple[int, ...]) -> int:
    """`tensor_bytes` keyed by type name (cached: models repeat a handful of shapes many times)."""
    return tensor_bytes(get_storage_type(type_name), shape)


# ---------------------------------------------------------------------------------------------
# which tensors may be quantized (llama.cpp tensor_allows_quantization)


def tensor_allows_quantization(tensor: TensorGroup) -> bool:
    """llama.cpp quantizes only 2-D/3-D `*weight` tensors, never norms or the MoE router."""
    name = tensor.name
    if len(tensor.shape) < 2:
        return False
    if not name.endswith("weight"):
        return False
    if "_norm.weight" in name or "ffn_gate_inp.weight" in name:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# llama.cpp file types


_TC_OUTPUT, _TC_EMBD, _TC_QKV, _TC_KV_B, _TC_V, _TC_K, _TC_Q, _TC_AO, _TC_UP, _TC_GATE, _TC_DOWN, _TC_OTHER = range(12)


def _category(name: str) -> int:
    # substring tests in llama.cpp's order (tensor_get_category): `ffn_down` also matches
    # `ffn_down_exps` and `ffn_down_shexp`
    if name == "output.weight":
        return _TC_OUTPUT
    if name == "token_embd.weight":
        return _TC_EMBD
    if "attn_qkv.weight" in name:
        return _TC_QKV
    if "attn_kv_b.weight" in name:
        return _TC_KV_B
    if "attn_v.weight" in name:
        return _TC_V
    if "attn_k.weight" in name:
        return _TC_K
    if "attn_q.weight" in name:
        return _TC_Q
    if "attn_output.weight" in name:
        return _TC_AO
    if "ffn_up" in name:
        return _TC_UP
    if "ffn_gate" in name:
        return _TC_GATE
    if "ffn_down" in name:
        return _TC_DOWN
    return _TC_OTHER


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


_IQ12 = {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"}

_FALLBACK = {
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
    "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}


def _fallback(type_name: str, ne0: int) -> str:
    """llama.cpp tensor_type_fallback: a row length the block does not divide gets a smaller block."""
    if ne0 % _block(type_name) == 0:
        return type_name
    alt = _FALLBACK.get(type_name)
    if alt is None:
        # llama.cpp throws here; F16 is what it would choose for a still-incompatible shape
        return "F16"
    if ne0 % _block(alt):
        return "F16"
    return alt


def _llama_is_70b(model: ModelSpec) -> bool:
    # llama.cpp sets LLM_TYPE_70B from the layer count (80) for the llama and qwen2 architectures
    return model.gguf_arch in ("llama", "qwen2") and model.n_layers == 80 and not model.is_moe


@functools.lru_cache(maxsize=512)
def _tensor_meta(model: ModelSpec) -> tuple[tuple[TensorGroup, int, bool], ...]:
    return tuple((t, _category(t.name), tensor_allows_quantization(t)) for t in model.tensors())


_BLOCK = {}


def _block(type_name: str) -> int:
    size = _BLOCK.get(type_name)
    if size is None:
        size = _BLOCK[type_name] = get_storage_type(type_name).block_size
    return size


def _llama_cpp_types(scheme: QuantScheme, model: ModelSpec) -> dict[str, str]:
    """Mirror of llama_tensor_get_type for every tensor of `model` (walked in llama-quantize order)."""
    ftype = scheme.file_type
    # before PR #4872 the ffn_* name tests missed the per-expert tensors and 8-expert models had no
    # attn_output bump (LLAMA_CPP_RULES["pre-4872"])
    per_expert_names_missed = scheme.llama_cpp_rules == "pre-4872"
    default = scheme.default_type
    meta = _tensor_meta(model)
    tensors = model.tensors()
    n_expert = model.n_routed_experts
    n_gqa = model.n_heads // max(1, model.n_kv_heads)
    n_layer = model.n_layers
    has_imatrix = scheme.imatrix
    tied = not any(t.name == "output.weight" for t in tensors)
    n_attention_wv = sum(1 for _, cat, _ in meta if cat in (_TC_V, _TC_QKV, _TC_KV_B))
    i_attention_wv = 0
    i_ffn_down = 0
    is_70b = _llama_is_70b(model)
    out: dict[str, str] = {}
    default_quantized = _block(default) > 1

    for t, cat, allowed in meta:
        if not allowed:
            out[t.name] = "F32"
            continue
        new = default
        if not default_quantized:
            out[t.name] = default  # F16/BF16/F32 files: no mixing logic, no fallback
            continue
        # layer index as llama.cpp's layer_info gives it: parsed from the name for MoE models,
        # otherwise the running counter (one ffn tensor per layer, so the same number)
        i_layer = t.layer
        if per_expert_names_missed and cat in (_TC_DOWN, _TC_GATE, _TC_UP) and "_exps" in t.name:
            cat = _TC_OTHER
        attn_v_like = cat in (_TC_V, _TC_QKV, _TC_KV_B)
        if cat == _TC_OUTPUT or (tied and cat == _TC_EMBD):
            nx = t.shape[0]
            if ftype == "MXFP4_MOE":
                new = "Q8_0"
            elif nx % _block(new) != 0:
                new = "Q8_0"
            elif ftype in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
                new = "Q5_K"
            elif new != "Q8_0":
                new = "Q6_K"
        elif ftype == "MXFP4_MOE":
            new = "MXFP4" if len(t.shape) > 2 and t.shape[2] > 1 else "Q8_0"
        elif cat == _TC_EMBD:
            if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                new = "Q2_K"
            elif ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
                new = "IQ3_S"
            elif ftype in ("TQ1_0", "TQ2_0"):
                new = "Q4_K"
        elif ftype in _IQ12:
            if attn_v_like:
                if n_gqa >= 4 or n_expert >= 4:
                    new = "Q4_K"
                else:
                    new = "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
                i_attention_wv += 1
            elif n_expert == 8 and cat == _TC_K:
                new = "Q4_K"
            elif cat == _TC_DOWN:
                if i_ffn_down < n_layer // 8:
                    new = "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
                i_ffn_down += 1
            elif cat == _TC_AO:
                if n_expert == 8:
                    new = "Q5_K"
                elif ftype in ("IQ1_S", "IQ1_M"):
                    new = "IQ2_XXS"
                elif ftype in ("IQ2_S", "IQ2_M"):
                    new = "IQ3_S"
        elif attn_v_like:
            if ftype == "Q2_K":
                new = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif ftype == "Q2_K_S" and n_gqa >= 4:
                new = "Q4_K"
            elif ftype == "IQ3_XXS":
                new = "Q4_K" if n_gqa >= 4 else ("IQ3_S" if not has_imatrix else "IQ3_XXS")
            elif ftype in ("IQ3_XS", "IQ3_S") and n_gqa >= 4:
                new = "Q4_K"
            elif ftype == "IQ3_M":
                new = "Q4_K"
            elif ftype == "Q3_K_M":
                new = "Q5_K" if i_attention_wv < 2 else "Q4_K"
            elif ftype == "Q3_K_L":
                new = "Q5_K"
            elif ftype in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
                new = "Q5_K"
            elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i_attention_wv, n_attention_wv):
                new = "Q6_K"
            elif ftype == "Q4_K_S" and i_attention_wv < 4:
                new = "Q5_K"
            if is_70b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            if n_expert == 8:
                new = "Q8_0"
            i_attention_wv += 1
        elif cat == _TC_K:
            if n_expert == 8:
                new = "Q8_0"
            elif ftype == "IQ3_XS":
                new = "IQ3_XXS"
            elif ftype == "IQ3_XXS":
                new = "IQ2_S"
        elif cat == _TC_Q:
            if ftype == "IQ3_XS":
                new = "IQ3_XXS"
            elif ftype == "IQ3_XXS":
                new = "IQ2_S"
        elif cat == _TC_DOWN:
            if ftype == "Q2_K":
                new = "Q3_K"
            elif ftype == "Q2_K_S":
                if i_layer < n_layer // 8:
                    new = "Q4_K"
            elif ftype == "IQ3_XXS" and not has_imatrix:
                new = "Q4_K" if i_layer < n_layer // 8 else "Q3_K"
            elif ftype == "Q3_K_M":
                new = "Q5_K" if i_layer < n_layer // 16 else "Q4_K"
            elif ftype == "IQ3_M" and (i_layer < n_layer // 8 or (n_expert == 8 and _use_more_bits(i_layer, n_layer))):
                new = "Q4_K"
            elif ftype == "Q3_K_L":
                new = "Q5_K"
            elif ftype == "Q4_K_M":
                if _use_more_bits(i_layer, n_layer):
                    new = "Q6_K"
            elif i_layer < n_layer // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not has_imatrix:
                new = "Q5_K"
            elif ftype == "Q5_K_M" and _use_more_bits(i_layer, n_layer):
                new = "Q6_K"
            elif ftype == "Q4_K_S" and i_layer < n_layer // 8:
                new = "Q5_K"
            elif ftype in ("Q4_0", "Q5_0") and has_imatrix and i_layer < n_layer // 8:
                new = "Q4_1" if ftype == "Q4_0" else "Q5_1"
            i_ffn_down += 1
        elif cat == _TC_AO:
            if n_expert == 8 and not per_expert_names_missed:
                if ftype in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M",
                             "IQ3_S", "IQ3_M", "IQ4_XS"):
                    new = "Q5_K"
            else:
                new = {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                       "IQ3_M": "Q4_K"}.get(ftype, new)
        elif cat == _TC_QKV:
            if ftype in ("Q3_K_M", "Q3_K_L", "IQ3_M"):
                new = "Q4_K"
            elif ftype == "Q4_K_M":
                new = "Q5_K"
            elif ftype == "Q5_K_M":
                new = "Q6_K"
        elif cat in (_TC_GATE, _TC_UP):
            if ftype == "IQ3_XS" and n_layer // 8 <= i_layer < 7 * n_layer // 8:
                new = "IQ3_XXS"
        out[t.name] = _fallback(new, t.shape[0])
    return out


def _rule_types(scheme: QuantScheme, model: ModelSpec) -> dict[str, str]:
    """The generic rule engine for dynamic mixes and non-GGUF formats (first matching rule wins)."""
    out: dict[str, str] = {}
    for t, _, allowed in _tensor_meta(model):
        if not allowed:
            out[t.name] = scheme.keep_type
            continue
        chosen = scheme.default_type
        for rule in scheme.rules:
            if rule.matches(t, model):
                chosen = rule.type
                break
        if scheme.kind == "gguf-dynamic":
            chosen = _fallback(chosen, t.shape[0])  # llama-quantize applies it to overrides too
        out[t.name] = chosen
    return out


def assign_types(scheme: QuantScheme, model: ModelSpec) -> dict[str, str]:
    """Storage type name of every tensor of `model` under `scheme` (cached; do not mutate)."""
    from moesim.catalog.models import architecture_key

    return _assign_types(scheme, architecture_key(model))


@functools.lru_cache(maxsize=4096)
def _assign_types(scheme: QuantScheme, model: ModelSpec) -> dict[str, str]:
    if scheme.kind == "gguf":
        return _llama_cpp_types(scheme, model)
    return _rule_types(scheme, model)


def tensor_type(scheme: QuantScheme | str, tensor: TensorGroup, model: ModelSpec) -> StorageType:
    """The storage type `tensor` of `model` gets under `scheme`."""
    scheme = get_quant(scheme)
    types = assign_types(scheme, model)
    name = types.get(tensor.name)
    if name is None:
        raise MoesimError(f"tensor {tensor.name} is not part of model {model.id}")
    return get_storage_type(name)
