"""Calibrated synthetic routing traces, deterministic from a seed.

The generative model (all parameters per MoE layer unless noted; see `traces/README.md`):

- popularity: expert ranks follow Zipf(`zipf_exponent`), optionally jittered by a Dirichlet with
  `dirichlet_concentration` (0 = exact Zipf), and each layer gets its own random rank permutation;
- topic shifts: every sequence multiplies the popularity by lognormal noise of `topic_sigma`, so
  different prompts favour different experts;
- temporal locality: each top-k slot copies an expert of the previous token in the same layer with
  probability `p_reuse`, or of an earlier token (distance 2, 3, ... geometric with `recall_decay`)
  with probability `p_recall`;
- inter-layer affinity: otherwise, with probability `p_affinity`, it follows a sparse affinity map
  (`affinity_fanout` successors per expert) from an expert this token picked in the previous layer;
- otherwise it draws from the sequence's popularity, never repeating an expert within a token.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moesim.errors import MoesimError
from moesim.trace.format import Trace, TraceMeta, validate_trace

GENERATOR_VERSION = 1
# Tokens per kernel call; uniforms for one chunk are (chunk, layers, k, 2) float64.
_CHUNK_TOKENS = 4096
_PARAM_DEFAULTS: dict[str, Any] = {
    "zipf_exponent": 0.5,
    "zipf_exponent_spread": 0.0,
    "dirichlet_concentration": 0.0,
    "topic_sigma": 0.0,
    "p_reuse": 0.0,
    "p_recall": 0.0,
    "recall_decay": 0.5,
    "p_affinity": 0.0,
    "affinity_fanout": 4,
}
_PER_LAYER = ("zipf_exponent", "topic_sigma", "p_reuse", "p_recall", "recall_decay", "p_affinity")
# How many earlier tokens a recalled expert can come from (the geometric distance is cut here).
REUSE_HISTORY = 16


@dataclass(frozen=True)
class Preset:
    """Generator parameters; per-layer values are tuples (stretched to any layer count by depth)."""

    name: str
    description: str
    source: str
    params: dict

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source, "params": self.params}


def _presets_dir():
    return resources.files("moesim.traces_data") / "presets"


def preset_names() -> tuple[str, ...]:
    """Names of the built-in presets."""
    names = [p.name[:-5] for p in _presets_dir().iterdir() if p.name.endswith(".toml") and p.name != "families.toml"]
    return tuple(sorted(names))


def _check_params(params: dict, where: str) -> dict:
    unknown = sorted(set(params) - set(_PARAM_DEFAULTS))
    if unknown:
        raise MoesimError(f"{where}: unknown generator parameter(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(_PARAM_DEFAULTS))})")
    out = dict(_PARAM_DEFAULTS)
    out.update(params)
    for name, value in out.items():
        values = value if isinstance(value, list | tuple) else [value]
        if name not in _PER_LAYER and name != "zipf_exponent_spread" and isinstance(value, list | tuple):
            raise MoesimError(f"{where}: parameter {name} takes one number, not a list")
        if not values:
            raise MoesimError(f"{where}: parameter {name} is an empty list")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
                raise MoesimError(f"{where}: parameter {name} must be a finite number >= 0, got {v!r}")
        if name in ("p_reuse", "p_recall", "p_affinity") and max(values) > 1:
            raise MoesimError(f"{where}: parameter {name} is a probability, got {max(values)}")
        if name == "recall_decay" and max(values) >= 1:
            raise MoesimError(f"{where}: parameter recall_decay must be below 1, got {max(values)}")
    if int(out["affinity_fanout"]) < 1:
        raise MoesimError(f"{where}: affinity_fanout must be >= 1")
    return {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in out.items()}


def load_preset(preset: str | os.PathLike | Preset | None) -> Preset:
    """A preset by built-in name, by path to a TOML file, or passed through; None = 'generic'."""
    if isinstance(preset, Preset):
        return preset
    if preset is None:
        preset = "generic"
    text = None
    where = str(preset)
    path = Path(preset)
    if str(preset).endswith(".toml") or path.suffix == ".toml" or os.sep in str(preset):
        if not path.is_file():
            raise MoesimError(f"preset file {preset} does not exist")
        text = path.read_text()
        default_name = path.stem
    else:
        resource = _presets_dir() / f"{preset}.toml"
        if preset == "families" or not resource.is_file():
            import difflib

            known = preset_names()
            close = difflib.get_close_matches(str(preset), known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise MoesimError(f"unknown trace preset '{preset}'{hint} (known: {', '.join(known)})")
        text = resource.read_text()
        default_name = str(preset)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MoesimError(f"{where}: malformed preset TOML ({' '.join(str(exc).split())})") from None
    params = data.get("params")
    if not isinstance(params, dict):
        raise MoesimError(f"{where}: preset has no [params] table")
    return Preset(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        source=str(data.get("source", "")),
        params=_check_params(params, where),
    )


def _families() -> dict[str, str]:
    data = tomllib.loads((_presets_dir() / "families.toml").read_text())
    return {k.lower(): v for k, v in data["families"].items()}


def default_preset_for(model) -> str:
    """The preset that best matches a model: by family, then HF model_type, then by shape."""
    families = _families()
    for key in (getattr(model, "family", ""), getattr(model, "model_type", "")):
        key = (key or "").lower()
        for candidate in (key, key.replace("_", "-")):
            if candidate in families:
                return families[candidate]
    n_experts = getattr(model, "n_routed_experts", 0)
    top_k = getattr(model, "top_k", 0)
    # unknown family: pick by routing shape (fine-grained many-expert routers vs few big experts)
    if n_experts >= 128 and top_k >= 6:
        return "deepseek-v3"
    if n_experts >= 64:
        return "qwen3-moe"
    if n_experts <= 16:
        return "mixtral"
    return "generic"


def _per_layer(value, n_layers: int) -> np.ndarray:
    """A scalar broadcast, or a per-layer list stretched over relative depth to `n_layers`."""
    values = np.asarray(value, dtype=np.float64).reshape(-1)
    if values.size == 1:
        return np.full(n_layers, values[0])
    if values.size == n_layers:
        return values.copy()
    return np.interp(np.linspace(0.0, 1.0, n_layers), np.linspace(0.0, 1.0, values.size), values)


@dataclass(frozen=True, eq=False)
class RoutingModel:
    """The resolved, per-layer generator state shared by all sequences of one trace."""

    popularity: np.ndarray  # (layers, experts) float64, rows sum to 1
    affinity: np.ndarray  # (layers, experts, fanout) int32
    topic_sigma: np.ndarray  # (layers,)
    p_reuse: np.ndarray  # (layers,)
    p_recall: np.ndarray  # (layers,)
    recall_decay: np.ndarray  # (layers,)
    p_affinity: np.ndarray  # (layers,)


def build_routing_model(params: dict, n_layers: int, n_experts: int, rng: np.random.Generator) -> RoutingModel:
    """Draw per-layer popularity and affinity maps from the preset parameters."""
    exponent = _per_layer(params["zipf_exponent"], n_layers)
    spread = float(np.asarray(params["zipf_exponent_spread"], dtype=float).reshape(-1)[0])
    if spread > 0:
        exponent = np.maximum(0.0, exponent + rng.uniform(-spread, spread, n_layers))
    ranks = np.arange(1, n_experts + 1, dtype=np.float64)
    popularity = np.empty((n_layers, n_experts))
    concentration = float(params["dirichlet_concentration"])
    for layer in range(n_layers):
        weights = ranks ** -exponent[layer]
        weights /= weights.sum()
        if concentration > 0:
            weights = rng.gamma(np.maximum(concentration * n_experts * weights, 1e-3))
            weights = np.sort(weights)[::-1] / weights.sum()
        popularity[layer, rng.permutation(n_experts)] = weights
    fanout = int(params["affinity_fanout"])
    affinity = np.zeros((n_layers, n_experts, fanout), dtype=np.int32)
    for layer in range(1, n_layers):
        cdf = np.cumsum(popularity[layer])
        draws = rng.random((n_experts, fanout)) * cdf[-1]
        affinity[layer] = np.minimum(np.searchsorted(cdf, draws, side="right"), n_experts - 1)
    p_reuse = np.clip(_per_layer(params["p_reuse"], n_layers), 0.0, 1.0)
    p_recall = np.minimum(np.clip(_per_layer(params["p_recall"], n_layers), 0.0, 1.0), 1.0 - p_reuse)
    p_affinity = np.clip(_per_layer(params["p_affinity"], n_layers), 0.0, 1.0)
    p_affinity = np.minimum(p_affinity, 1.0 - p_reuse - p_recall)
    return RoutingModel(
        popularity=popularity,
        affinity=affinity,
        topic_sigma=_per_layer(params["topic_sigma"], n_layers),
        p_reuse=p_reuse,
        p_recall=p_recall,
        recall_decay=np.clip(_per_layer(params["recall_decay"], n_layers), 0.0, 0.99),
        p_affinity=p_affinity,
    )


def _sequence_popularity(model: RoutingModel, rng: np.random.Generator):
    """This sequence's topic-shifted popularity and its alias tables."""
    from moesim.kernels.trace_gen import build_alias

    noise = rng.standard_normal(model.popularity.shape) * model.topic_sigma[:, None]
    weights = model.popularity * np.exp(noise)
    weights /= weights.sum(axis=1, keepdims=True)
    alias_prob = np.empty_like(weights)
    alias_idx = np.empty(weights.shape, dtype=np.int64)
    build_alias(weights, alias_prob, alias_idx)
    return weights, alias_prob, alias_idx


def generate_experts(
    params: dict,
    n_moe_layers: int,
    n_experts: int,
    top_k: int,
    tokens_per_seq: int | Sequence[int],
    n_seqs: int,
    seed: int,
) -> np.ndarray:
    """The expert array (total tokens, layers, k) for sequences laid end to end.

    `tokens_per_seq` is one length for all `n_seqs` sequences, or a list of lengths (one per
    sequence, `n_seqs` then ignored). All sequences share the layer structure (popularity ranks,
    affinity maps); each draws its own topic shift.
    """
    from moesim.kernels.trace_gen import generate_routing, push_history

    if top_k > n_experts:
        raise MoesimError(f"top_k {top_k} exceeds the {n_experts} routed experts")
    lengths = [int(tokens_per_seq)] * int(n_seqs) if np.ndim(tokens_per_seq) == 0 else [int(x) for x in tokens_per_seq]
    structure_seed, topic_seed, slot_seed = np.random.SeedSequence(seed).spawn(3)
    model = build_routing_model(params, n_moe_layers, n_experts, np.random.Generator(np.random.PCG64(structure_seed)))
    topic_rng = np.random.Generator(np.random.PCG64(topic_seed))
    slot_rng = np.random.Generator(np.random.PCG64(slot_seed))
    dtype = np.uint8 if n_experts <= 256 else np.uint16
    experts = np.empty((sum(lengths), n_moe_layers, top_k), dtype=dtype)
    history = np.zeros((REUSE_HISTORY, n_moe_layers, top_k), dtype=np.int64)
    base = 0
    for length in lengths:
        probability, alias_prob, alias_idx = _sequence_popularity(model, topic_rng)
        n_history = 0
        for start in range(0, length, _CHUNK_TOKENS):
            stop = min(length, start + _CHUNK_TOKENS)
            uniforms = slot_rng.random((stop - start, n_moe_layers, top_k, 2))
            out = experts[base + start:base + stop]
            generate_routing(probability, alias_prob, alias_idx, model.affinity, model.p_reuse, model.p_recall,
                             model.recall_decay, model.p_affinity, uniforms, history, n_history, out)
            n_history = push_history(history, n_history, out)
        base += length
    return experts


def generate_trace(
    model,
    n_tokens: int,
    n_seqs: int = 1,
    preset: str | os.PathLike | Preset | None = None,
    seed: int = 0,
    prefill_tokens: int = 0,
) -> Trace:
    """A synthetic trace for `model` (a ModelSpec; only its MoE shape is used).

    Each of the `n_seqs` sequences has `prefill_tokens` prefill tokens followed by `n_tokens`
    decode tokens. `preset` is a built-in preset name, a TOML path, a `Preset`, or None for the
    model family's default. The same arguments always give the same trace.
    """
    for name, value in (("n_tokens", n_tokens), ("n_seqs", n_seqs), ("prefill_tokens", prefill_tokens), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise MoesimError(f"{name} must be a non-negative integer, got {value!r}")
    if n_seqs < 1:
        raise MoesimError("n_seqs must be at least 1")
    moe_layers = tuple(int(x) for x in model.moe_layers)
    if not moe_layers or model.n_routed_experts <= 0 or model.top_k <= 0:
        raise MoesimError(f"model {model.id} has no routed experts; traces are for MoE models")
    if preset is None:
        preset = default_preset_for(model)
    resolved = load_preset(preset)
    per_seq = int(prefill_tokens) + int(n_tokens)
    experts = generate_experts(resolved.params, len(moe_layers), model.n_routed_experts, model.top_k,
                               per_seq, int(n_seqs), int(seed))
    seq = np.repeat(np.arange(n_seqs, dtype=np.int32), per_seq)
    token = np.tile(np.arange(per_seq, dtype=np.int32), n_seqs)
    is_prefill = np.tile(np.arange(per_seq) < prefill_tokens, n_seqs)
    meta = TraceMeta(
        model_id=model.id,
        n_layers=int(model.n_layers),
        moe_layers=moe_layers,
        n_routed_experts=int(model.n_routed_experts),
        top_k=int(model.top_k),
        source={
            "kind": "synthetic",
            "generator": "moesim.trace.generate",
            "generator_version": GENERATOR_VERSION,
            "preset": resolved.name,
            "params": resolved.params,
            "seed": int(seed),
            "n_seqs": int(n_seqs),
            "decode_tokens_per_seq": int(n_tokens),
            "prefill_tokens_per_seq": int(prefill_tokens),
        },
        licence="CC0-1.0",
    )
    trace = Trace(meta=meta, experts=experts, weights=None, seq=seq, token=token, is_prefill=is_prefill)
    validate_trace(trace)
    return trace
