"""Read a GGUF header (tensor names, types, shapes; never the weights) with the `gguf` package.

`read_gguf(path)` gives the exact bytes of every tensor as stored, grouped like `moesim.footprint`,
and a ModelSpec rebuilt from the GGUF metadata and tensor shapes (enough for KV-cache and placement
estimates). Split files (`-00001-of-00003.gguf`) are read together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from moesim.catalog.models import ModelSpec, TensorGroup
from moesim.errors import MoesimError
from moesim.footprint import Footprint, build_footprint

_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_BLK = re.compile(r"^blk\.(\d+)\.(.+)$")


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What moesim takes from a GGUF file."""

    path: str
    architecture: str
    file_type: str  # llama.cpp file type name ("Q4_K_M", "MXFP4_MOE") or "unknown"
    model: ModelSpec
    footprint: Footprint
    tensor_types: dict[str, str]  # tensor name -> ggml type name
    tensor_bytes: dict[str, int]  # tensor name -> bytes as stored


def tensor_category(name: str) -> str:
    """Category of a GGUF tensor name (the categories of `moesim.catalog.models`)."""
    m = _BLK.match(name)
    cls = m.group(2) if m else name
    cls = cls[: -len(".weight")] if cls.endswith(".weight") else cls
    if cls.startswith("token_embd"):
        return "embedding"
    if cls.startswith("output_norm"):
        return "norm"
    if cls.startswith("output"):
        return "output"
    if "_norm" in cls:
        return "norm"
    if cls.startswith("ffn_gate_inp_shexp") or "_shexp" in cls:
        return "shared_expert"
    if cls.startswith("ffn_gate_inp") or cls.startswith("exp_probs_b"):
        return "router"
    if "_exps" in cls:
        return "routed_expert"
    if cls.startswith("ffn_"):
        return "dense_ffn"
    if cls.startswith("attn_"):
        return "attention"
    return "other"


def _split_paths(path: Path) -> list[Path]:
    m = _SPLIT.search(path.name)
    if not m:
        return [path]
    count = int(m.group(2))
    stem = path.name[: m.start()]
    paths = [path.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise MoesimError(f"{path}: split GGUF is missing part(s) {', '.join(missing)}")
    return paths


def _open(path: Path):
    import gguf

    if not path.is_file():
        raise MoesimError(f"no such GGUF file: {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise MoesimError(f"cannot read {path}: {exc.__class__.__name__}") from None
    if magic != b"GGUF":
        raise MoesimError(f"{path} is not a GGUF file (bad magic {magic!r})")
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as exc:  # the reader raises ValueError/IndexError/struct errors on bad headers
        raise MoesimError(f"{path}: corrupt or truncated GGUF header ({exc.__class__.__name__})") from None
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + int(t.n_bytes) > size:
            raise MoesimError(f"{path}: truncated GGUF (tensor {t.name} runs past the end of the file)")
    return reader


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    try:
        return field.contents()
    except Exception:  # a field whose payload the reader cannot decode counts as absent
        return default


def _first_int(value, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, list):
        value = max(value) if value else default
    return int(value)


def read_gguf(path: str | Path) -> GGUFInfo:
    """Tensor names, types and exact byte sizes from a GGUF header, plus a ModelSpec from its metadata.
    A missing, truncated or garbage file raises MoesimError (one line)."""
    import gguf

    path = Path(path)
    paths = _split_paths(path)
    readers = [_open(p) for p in paths]
    head = readers[0]

    arch = _field(head, "general.architecture")
    if not isinstance(arch, str) or not arch:
        raise MoesimError(f"{path}: GGUF has no general.architecture")
    ftype_num = _field(head, "general.file_type")
    try:
        ftype = gguf.LlamaFileType(int(ftype_num)).name.replace("MOSTLY_", "").replace("ALL_", "")
    except (TypeError, ValueError):
        ftype = "unknown"

    raw: list[tuple[str, tuple[int, ...], str, int]] = []
    for reader in readers:
        for t in reader.tensors:
            shape = tuple(int(s) for s in t.shape)
            raw.append((t.name, shape, t.tensor_type.name, int(t.n_bytes)))
    if not raw:
        raise MoesimError(f"{path}: GGUF holds no tensors")

    model = _model_from_gguf(head, arch, raw, str(path))
    rows = []
    for name, shape, tname, nbytes in raw:
        m = _BLK.match(name)
        layer = int(m.group(1)) if m else -1
        cls = m.group(2) if m else name
        cls = cls[: -len(".weight")] if cls.endswith(".weight") else cls
        rows.append((TensorGroup(name, cls, layer, shape, tensor_category(name)), tname, nbytes))
    fp = build_footprint(model, ftype, rows, exact=True)
    return GGUFInfo(
        path=str(path),
        architecture=arch,
        file_type=ftype,
        model=model,
        footprint=fp,
        tensor_types={r[0]: r[2] for r in raw},
        tensor_bytes={r[0]: r[3] for r in raw},
    )


def _model_from_gguf(reader, arch: str, raw, where: str) -> ModelSpec:
    shapes = {name: shape for name, shape, _, _ in raw}

    def kv(key: str, default=None):
        return _field(reader, f"{arch}.{key}", default)

    layers = sorted({int(m.group(1)) for m in (_BLK.match(n) for n in shapes) if m})
    n_layers = _first_int(kv("block_count"), (layers[-1] + 1) if layers else 0)
    embd = shapes.get("token_embd.weight")
    d = _first_int(kv("embedding_length"), embd[0] if embd else 0)
    vocab = embd[1] if embd and len(embd) > 1 else 0
    n_heads = _first_int(kv("attention.head_count"), 0)
    n_kv = _first_int(kv("attention.head_count_kv"), n_heads)
    if n_layers <= 0 or d <= 0 or n_heads <= 0:
        raise MoesimError(f"{where}: GGUF metadata lacks block_count / embedding_length / attention.head_count")
    head_dim = _first_int(kv("attention.key_length"), d // n_heads)

    moe_layers = tuple(i for i in range(n_layers) if f"blk.{i}.ffn_gate_inp.weight" in shapes)
    n_experts = _first_int(kv("expert_count"), 0)
    top_k = _first_int(kv("expert_used_count"), 0)
    expert_dim = shared_dim = dense_dim = 0
    for i in moe_layers:
        up = shapes.get(f"blk.{i}.ffn_up_exps.weight")
        if up and len(up) == 3:
            expert_dim, n_experts = up[1], n_experts or up[2]
        sh = shapes.get(f"blk.{i}.ffn_up_shexp.weight")
        if sh:
            shared_dim = sh[1]
        break
    for i in range(n_layers):
        up = shapes.get(f"blk.{i}.ffn_up.weight")
        if up:
            dense_dim = up[1]
            break

    mla = "blk.0.attn_kv_a_mqa.weight" in shapes
    q_lora = kv_lora = rope = nope = v_dim = 0
    if mla:
        kv_lora = _first_int(kv("attention.kv_lora_rank"), shapes.get("blk.0.attn_kv_a_norm.weight", (0,))[0])
        rope = shapes["blk.0.attn_kv_a_mqa.weight"][1] - kv_lora
        q_lora = _first_int(kv("attention.q_lora_rank"), 0)
        key_len = _first_int(kv("attention.key_length"), 0)
        v_dim = _first_int(kv("attention.value_length"), 0)
        # newer converters store the absorbed layout (key_length_mla); the per-head sizes are what count
        key_len = _first_int(kv("attention.key_length_mla"), key_len)
        v_dim = _first_int(kv("attention.value_length_mla"), v_dim)
        nope = max(0, key_len - rope)
        head_dim = nope + rope
        n_kv = n_heads
    window = _first_int(kv("attention.sliding_window"), 0)
    if window and arch == "gpt-oss":
        windows = tuple(window if i % 2 == 0 else 0 for i in range(n_layers))  # llama.cpp: SWA on even layers
    elif window:
        windows = (window,) * n_layers
    else:
        windows = (0,) * n_layers
    name = _field(reader, "general.name") or Path(where).stem
    return ModelSpec(
        id=str(name),
        alias=Path(where).stem.lower(),
        family=arch,
        model_type=arch,
        n_layers=n_layers,
        hidden_size=d,
        vocab_size=vocab,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        attention="mla" if mla else ("mha" if n_kv == n_heads else "gqa"),
        q_lora_rank=q_lora,
        kv_lora_rank=kv_lora,
        qk_rope_head_dim=rope,
        qk_nope_head_dim=nope,
        v_head_dim=v_dim,
        attention_window_by_layer=windows,
        moe_layers=moe_layers if n_experts else (),
        n_routed_experts=n_experts if moe_layers else 0,
        top_k=top_k if moe_layers else 0,
        n_shared_experts=1 if shared_dim else 0,
        expert_ffn_dim=expert_dim,
        shared_expert_ffn_dim=shared_dim,
        dense_ffn_dim=dense_dim,
        tie_word_embeddings="output.weight" not in shapes,
        max_context=_first_int(kv("context_length"), 0),
        source=where,
        gguf_arch=arch,
    )
