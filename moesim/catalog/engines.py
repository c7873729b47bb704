"""Engine profiles (llama.cpp, ik_llama.cpp, ktransformers, vllm, mlx) as sourced data.

CONTRACT: memory fields are used by the footprint; timing fields by the timing model.
Data: `data/engines.toml`, one table per engine plus a `<engine>.sources` table that justifies each value.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources

from moesim.errors import MoesimError, unknown_id_error


CPU_COMPUTE_KINDS = ("cpu", "ngl", "cpu-moe", "n-cpu-moe", "ktransformers", "cpu-or-fetch")  # placements with CPU work


@dataclass(frozen=True, slots=True)
class EngineProfile:
    name: str
    mla_kv_layout: str  # "absorbed" (576 elements/layer) | "naive"
    overlaps_cpu_gpu: bool  # CPU-expert work overlaps GPU work within a layer
    launch_overhead_us_per_layer: float
    uploads_weights_for_prefill: bool  # llama.cpp copies CPU-resident weights to the GPU for big batches
    prefill_upload_min_batch: int
    runtime_overhead_bytes: int  # CUDA context, allocator slack ...
    compute_buffer_bytes_per_token: float  # compute-buffer bytes per token of the prefill micro-batch
    gpu_bandwidth_efficiency_scale: float  # multiplies the device-class efficiency
    cpu_bandwidth_efficiency_scale: float
    source: str
    # timing-model fields (issue 5); defaults are llama.cpp's behaviour, engines.toml sets every one
    prefill_ubatch: int = 512  # tokens per prefill micro-batch (llama.cpp -ub default 512)
    numa_duplicates_weights: bool = False  # CPU weights copied into every NUMA node (ktransformers dual socket)
    dual_socket_bandwidth_fraction: float = 0.5  # share of 2-socket RAM bandwidth reached without duplication
    # --- added with the catalog data ---
    per_token_overhead_us: float = 0.0  # host-side work once per decode step (graph build, sampling)
    prefill_batch_tokens: int = 2048  # logical batch (llama.cpp -b)
    flash_attention: bool = True
    gpu_compute_efficiency_scale: float = 1.0  # multiplies the device-class compute efficiency
    cpu_compute_efficiency_scale: float = 1.0  # multiplies the host-class compute efficiency
    usable_vram_fraction: float = 1.0  # share of device memory the engine lets itself use (vLLM 0.9)
    backends: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()  # placement kinds the engine runs (moesim.placement strategy names, no parameters)
    quant_kinds: tuple[str, ...] = ()  # file formats it loads (QuantScheme.kind)
    quants: tuple[str, ...] = ()  # and single quantizations of other kinds it loads (e.g. BF16 safetensors)
    kv_cache_types: tuple[str, ...] = ()
    field_sources: tuple[tuple[str, str], ...] = ()  # (field or topic, justification with URL)

    @property
    def supports_cpu_offload(self) -> bool:
        """Whether the engine computes CPU-resident layers or experts on the CPU (one of its placements does)."""
        return any(kind in CPU_COMPUTE_KINDS for kind in self.strategies)

    def source_for(self, field_name: str) -> str:
        """The justification recorded for one field (or topic such as 'efficiency'), else the engine source."""
        for key, text in self.field_sources:
            if key == field_name:
                return text
        return self.source


_MLA_LAYOUTS = ("absorbed", "naive")
_FRACTIONS = ("gpu_bandwidth_efficiency_scale", "cpu_bandwidth_efficiency_scale", "gpu_compute_efficiency_scale",
              "cpu_compute_efficiency_scale")


@lru_cache(maxsize=None)
def _engines() -> dict[str, EngineProfile]:
    with resources.files("moesim.catalog").joinpath("data", "engines.toml").open("rb") as fh:
        raw_all = tomllib.load(fh)
    known = {f.name for f in fields(EngineProfile)}
    out = {}
    for key, raw in raw_all.items():
        raw = dict(raw)
        sources = raw.pop("sources", {})
        where = f"engines.toml [{key}]"
        unknown = sorted(set(raw) - known)
        if unknown:
            raise MoesimError(f"{where}: unknown field(s) {', '.join(unknown)}")
        missing = sorted(f.name for f in fields(EngineProfile)
                         if f.name not in raw and f.name != "field_sources"
                         and f.default is not None and f.default.__class__.__name__ == "_MISSING_TYPE")
        if missing:
            raise MoesimError(f"{where} lacks {', '.join(missing)}")
        if raw["mla_kv_layout"] not in _MLA_LAYOUTS:
            raise MoesimError(f"{where}: mla_kv_layout must be one of {_MLA_LAYOUTS}")
        for name in _FRACTIONS:
            if not raw.get(name, 1.0) > 0:
                raise MoesimError(f"{where}: {name} must be positive")
        if not 0 < raw.get("dual_socket_bandwidth_fraction", 0.5) <= 1:
            raise MoesimError(f"{where}: dual_socket_bandwidth_fraction must be in (0, 1]")
        if not 0 < raw.get("usable_vram_fraction", 1.0) <= 1:
            raise MoesimError(f"{where}: usable_vram_fraction must be in (0, 1]")
        for name in ("runtime_overhead_bytes", "compute_buffer_bytes_per_token", "launch_overhead_us_per_layer",
                     "prefill_upload_min_batch"):
            if raw[name] < 0:
                raise MoesimError(f"{where}: {name} must not be negative")
        if not str(raw.get("source", "")).strip():
            raise MoesimError(f"{where}: empty source")
        raw["backends"] = tuple(raw.get("backends", ()))
        raw["strategies"] = tuple(raw.get("strategies", ()))
        raw["quant_kinds"] = tuple(raw.get("quant_kinds", ()))
        raw["quants"] = tuple(raw.get("quants", ()))
        if not raw["quant_kinds"]:
            raise MoesimError(f"{where}: quant_kinds must list the file formats the engine loads")
        if not raw["strategies"]:
            raise MoesimError(f"{where}: strategies must list the placements the engine runs")
        raw["kv_cache_types"] = tuple(raw.get("kv_cache_types", ()))
        raw["field_sources"] = tuple((str(k), str(v)) for k, v in sources.items())
        out[key] = EngineProfile(**raw)
    return out


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def get_engine(name: str | EngineProfile) -> EngineProfile:
    """An engine profile by name: 'llama.cpp', 'ik_llama.cpp', 'ktransformers', 'vllm', 'mlx'
    (case, '.', '_' and '-' are interchangeable)."""
    if isinstance(name, EngineProfile):
        return name
    engines = _engines()
    if not isinstance(name, str):
        raise MoesimError(f"engine name must be text, got {name!r}")
    key = _normalise(name)
    if key in engines:
        return engines[key]
    for profile in engines.values():
        if _normalise(profile.name) == key:
            return profile
    raise unknown_id_error("engine", name, [e.name for e in engines.values()])


def all_engines() -> tuple[EngineProfile, ...]:
    """Every engine profile, in file order."""
    return tuple(_engines().values())


@lru_cache(maxsize=None)
def _machine_backends() -> dict:
    with resources.files("moesim.catalog").joinpath("data", "backends.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    raw.pop("sources", None)
    return {(kind, vendor): tuple(names) for kind, vendors in raw.items() for vendor, names in vendors.items()}


def machine_backends(device_kind: str, vendor: str) -> tuple[str, ...]:
    """Compute backends a device of this kind and vendor offers an engine (data/backends.toml), plus
    "cpu" for the host CPU every machine has."""
    table = _machine_backends()
    if (device_kind, vendor) not in table:
        raise MoesimError(f"backends.toml has no entry for {device_kind} devices by {vendor}")
    return table[(device_kind, vendor)] + ("cpu",)


@lru_cache(maxsize=1)
def what_if_kinds() -> tuple[str, ...]:
    """Placement kinds moesim models that no catalog engine implements (expert-cache, cpu-or-fetch): open
    to every engine as explicit what-if strategies, never recommended."""
    from moesim.timing_layout import KIND_CODES

    implemented = {kind for engine in all_engines() for kind in engine.strategies}
    return tuple(kind for kind in KIND_CODES if kind != "auto" and kind not in implemented)


def engine_implements(engine: str | EngineProfile, kind: str) -> bool:
    """Whether `engine` itself runs a placement kind (`auto` always: it only picks such placements)."""
    return kind == "auto" or kind in get_engine(engine).strategies


def engine_offers(engine: str | EngineProfile, kind: str) -> bool:
    """Whether a placement kind can be simulated with `engine`: one it implements, or a what-if one."""
    return engine_implements(engine, kind) or kind in what_if_kinds()


def engine_loads(engine: str | EngineProfile, quant) -> bool:
    """Whether `engine` loads files of the quantization `quant` (a QuantScheme)."""
    engine = get_engine(engine)
    return quant.kind in engine.quant_kinds or quant.file_type in engine.quants


def check_engine_loads(engine: str | EngineProfile, quant) -> None:
    """One-line MoesimError where `engine` cannot load `quant`'s files."""
    engine = get_engine(engine)
    if not engine_loads(engine, quant):
        formats = ", ".join(engine.quant_kinds + engine.quants)
        raise MoesimError(f"{engine.name} does not load {quant.id} ({quant.kind} files); it loads {formats}")
