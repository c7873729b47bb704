"""Resolve sweep options against the catalogs into cells and points.

A *point* is one (model, quant, device, device_count, host, strategy, engine, context, batch,
trace); a *cell* is a point without its strategy -- all strategies of a cell are simulated
together so the best one (`is_best`) and the grades are decided inside one chunk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from moesim.errors import MoesimError, unknown_id_error

# Placement strategies that only make sense when a model has routed experts.
MOE_ONLY_PREFIXES: tuple[str, ...] = ("cpu-moe", "n-cpu-moe", "expert-cache", "cpu-or-fetch", "ep:")

# Default strategy lists per target kind: `auto` (the fastest placement that fits) plus the
# placements people compare it with. Sized so the full `--devices all --quants all` sweep
# stays inside its time budget; `--strategies all` adds the rest.
# `cpu` is left out for GPU targets (the CPU-only targets of the same host class cover it) and
# on CPU-only targets `auto` is `cpu`.
MAIN_STRATEGIES: dict[str, tuple[str, ...]] = {
    "gpu": ("auto", "gpu", "cpu-moe", "expert-cache:lru"),
    "system": ("auto", "gpu", "tp:{n}", "ep:{n}", "cpu-moe", "expert-cache:lru"),
    "unified": ("auto", "unified"),
    "cpu": ("auto",),
}
ALL_STRATEGIES: dict[str, tuple[str, ...]] = {
    "gpu": (
        "auto", "gpu", "cpu-moe", "expert-cache:lru", "expert-cache:lfu", "expert-cache:static",
        "expert-cache:belady", "cpu-or-fetch", "cpu",
    ),
    "system": (
        "auto", "gpu", "tp:{n}", "ep:{n}", "cpu-moe", "expert-cache:lru", "expert-cache:lfu",
        "cpu-or-fetch", "cpu",
    ),
    "unified": ("auto", "unified", "cpu"),
    "cpu": ("auto", "cpu"),
}


@dataclass(frozen=True, slots=True)
class Target:
    """One machine of the sweep: a device or multi-GPU system plus the host around it."""

    slug: str  # what the user names: device slug or system slug ("8x-h200")
    device_base: str  # the device slug of one accelerator
    kind: str  # "gpu" | "system" | "unified" | "cpu"
    device_count: int
    host: str  # resolved host slug (the device itself for unified/cpu)
    host_arg: str | None  # passed to SimRequest.host: None = the typical host
    vram_capacity_bytes: int
    host_capacity_bytes: int


@dataclass(frozen=True, slots=True)
class ModelEntry:
    alias: str
    model_id: str
    is_moe: bool
    total_params: int
    quants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cell:
    """All strategies of one (model, quant, target, host, engine, context, batch, trace)."""

    model: str
    model_id: str
    quant: str
    target: Target
    engine: str
    context: int
    batch: int
    trace_id: str  # stored in the `trace` column: "preset:default", "preset:NAME", "file:NAME@SHA"
    trace_path: str | None  # passed to SimRequest.trace
    strategies: tuple[str, ...]
    total_params: int


def split_ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_int_list(text: str, what: str, minimum: int) -> tuple[int, ...]:
    """`4096,32768` -> (4096, 32768); bad or out-of-range values are one-line errors."""
    values = []
    for part in split_ids(str(text)):
        try:
            value = int(part)
        except ValueError:
            raise MoesimError(f"{what} must be integers separated by commas, got '{part}'") from None
        if value < minimum:
            raise MoesimError(f"{what} must be >= {minimum}, got {value}")
        values.append(value)
    if not values:
        raise MoesimError(f"{what} is empty")
    return tuple(dict.fromkeys(values))


def resolve_models(spec: str) -> tuple:
    """`all` or comma-separated ids/aliases -> ModelSpecs in catalog order (unknown ids: error)."""
    from moesim.catalog.models import all_models, get_model

    models = all_models()
    if spec.strip().lower() == "all":
        return tuple(models)
    chosen = []
    for name in split_ids(spec):
        try:
            model = get_model(name)
        except MoesimError:
            raise
        except Exception:
            raise unknown_id_error("model", name, [m.alias for m in models]) from None
        if model not in chosen:
            chosen.append(model)
    if not chosen:
        raise MoesimError("--models is empty")
    return tuple(chosen)


def resolve_quants(spec: str, models, engine: str = "llama.cpp") -> dict[str, tuple[str, ...]]:
    """Quant ids per model alias: `all` = every quant applicable to that model (catalog
    `applicable_quants`) in a format the engine loads (engines.toml `quant_kinds`, `quants`); a list is
    intersected with each model's applicable quants (unknown ids, and ids the engine does not load, are
    an error)."""
    from moesim.catalog.engines import check_engine_loads, engine_loads
    from moesim.catalog.quants import all_quants, applicable_quants, get_quant

    if spec.strip().lower() == "all":
        return {m.alias: tuple(q.id for q in applicable_quants(m) if engine_loads(engine, q)) for m in models}
    wanted = []
    for name in split_ids(spec):
        try:
            scheme = get_quant(name)
        except MoesimError:
            raise
        except Exception:
            raise unknown_id_error("quant", name, [q.id for q in all_quants()]) from None
        check_engine_loads(engine, scheme)
        wanted.append(scheme.id)
    if not wanted:
        raise MoesimError("--quants is empty")
    result = {}
    for model in models:
        applicable = {q.id for q in applicable_quants(model)}
        # a historical rule set ("Q4_K_M@pre-4872") applies wherever its file type does
        result[model.alias] = tuple(q for q in dict.fromkeys(wanted) if get_quant(q).file_type in applicable)
    return result


def _capacities(device, count: int, host) -> tuple[int, int]:
    if device.kind == "cpu":
        return 0, int(host.ram_gb * 1e9)
    vram = int(device.memory_gb * 1e9 * device.usable_memory_fraction) * count
    if device.kind == "unified":
        return vram, int(device.memory_gb * 1e9)
    return vram, int(host.ram_gb * 1e9)


def resolve_targets(devices_spec: str, hosts_spec: str = "typical") -> tuple[Target, ...]:
    """`all` = every device (gpu/unified/cpu) then every multi-GPU system; each GPU target paired
    with its typical host, or with each host in `hosts_spec` (cpu-kind device slugs)."""
    from moesim.catalog.devices import all_devices, all_systems, get_host, resolve_target, typical_host

    devices = all_devices()
    systems = all_systems()
    known = [d.slug for d in devices] + [s.slug for s in systems]
    if devices_spec.strip().lower() == "all":
        slugs = known
    else:
        slugs = list(dict.fromkeys(split_ids(devices_spec)))
        if not slugs:
            raise MoesimError("--devices is empty")
        for slug in slugs:
            if slug not in known:
                raise unknown_id_error("device", slug, known)
    host_slugs: list[str | None]
    if hosts_spec.strip().lower() == "typical":
        host_slugs = [None]
    else:
        host_slugs = list(dict.fromkeys(split_ids(hosts_spec)))
        cpu_slugs = [d.slug for d in devices if d.kind == "cpu"]
        for slug in host_slugs:
            if slug not in cpu_slugs:
                raise unknown_id_error("host", slug, cpu_slugs)
    targets = []
    for slug in slugs:
        device, count, system = resolve_target(slug)
        if device.kind in ("unified", "cpu"):
            host = get_host(device.slug) if device.kind == "cpu" else None
            vram, host_cap = _capacities(device, count, host)
            targets.append(Target(slug, device.slug, device.kind, count, device.slug, None, vram, host_cap))
            continue
        kind = "system" if system is not None else "gpu"
        for host_slug in host_slugs:
            host = typical_host(system if system is not None else device) if host_slug is None else get_host(host_slug)
            vram, host_cap = _capacities(device, count, host)
            targets.append(Target(slug, device.slug, kind, count, host.slug, host_slug, vram, host_cap))
    return tuple(targets)


def resolve_strategies(spec: str, engine: str = "llama.cpp") -> dict[str, tuple[str, ...]]:
    """Strategy templates per target kind (`{n}` is the target's device count). `main` and `all` keep
    the placements `engine` offers (its own and the what-if ones); a list is taken as given, and points
    the engine does not run are refused with the reason."""
    text = spec.strip().lower()
    if text in ("main", "all"):
        from moesim.catalog.engines import engine_offers

        templates = MAIN_STRATEGIES if text == "main" else ALL_STRATEGIES
        return {kind: tuple(name for name in names if engine_offers(engine, name.split(":")[0]))
                for kind, names in templates.items()}
    names = split_ids(spec)
    if not names:
        raise MoesimError("--strategies is empty")
    for name in names:
        if name.startswith("-") or " " in name:
            raise MoesimError(f"invalid strategy '{name}'")
    chosen = tuple(dict.fromkeys(names))
    return {kind: chosen for kind in MAIN_STRATEGIES}


def strategies_for(templates: dict[str, tuple[str, ...]], target: Target, is_moe: bool) -> tuple[str, ...]:
    names = []
    for template in templates[target.kind]:
        name = template.replace("{n}", str(target.device_count))
        if not is_moe and name.startswith(MOE_ONLY_PREFIXES):
            continue
        if name not in names:
            names.append(name)
    return tuple(names)


def trace_identity(trace: str | None, preset: str | None) -> tuple[str, str | None]:
    """(value of the `trace` column, path for SimRequest.trace). Files are named by content
    hash, never by absolute path, so datasets from different machines compare equal."""
    if trace is not None:
        path = Path(trace)
        try:
            digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
        except OSError as exc:
            raise MoesimError(f"cannot read trace {trace}: {exc.strerror or exc}") from None
        return f"file:{path.name}@{digest}", str(path)
    if preset is not None:
        return f"preset:{preset}", None
    return "preset:default", None


def model_entries(models, quants: dict[str, tuple[str, ...]]) -> tuple[ModelEntry, ...]:
    from moesim.catalog.models import total_params

    return tuple(
        ModelEntry(m.alias, m.id, m.is_moe, int(total_params(m)), quants[m.alias]) for m in models
    )


def build_cells(
    models: tuple[ModelEntry, ...],
    targets: tuple[Target, ...],
    strategy_templates: dict[str, tuple[str, ...]],
    contexts: tuple[int, ...],
    batches: tuple[int, ...],
    engine: str,
    trace_id: str,
    trace_path: str | None,
) -> list[Cell]:
    """Every cell in a fixed order: model, quant, target, context, batch (catalog order)."""
    cells = []
    # per target, without hashing a Target per cell
    strategies_by = {moe: [strategies_for(strategy_templates, t, moe) for t in targets] for moe in (False, True)}
    for model in models:
        target_strategies = strategies_by[model.is_moe]
        for quant in model.quants:
            for target, strategies in zip(targets, target_strategies):
                for context in contexts:
                    for batch in batches:
                        cells.append(
                            Cell(model.alias, model.model_id, quant, target, engine, context, batch,
                                 trace_id, trace_path, strategies, model.total_params)
                        )
    return cells


def cell_point_values(cell: Cell, strategy: str) -> dict:
    """The key-column values of one point of a cell."""
    return {
        "model": cell.model,
        "quant": cell.quant,
        "device": cell.target.slug,
        "device_count": cell.target.device_count,
        "host": cell.target.host,
        "strategy": strategy,
        "engine": cell.engine,
        "context": cell.context,
        "batch": cell.batch,
        "trace": cell.trace_id,
    }


_AFFIX_COLUMNS = ("model", "quant", "device", "device_count", "host", "strategy", "engine", "context", "batch", "trace")


def cell_key_affixes(cell: Cell) -> tuple[str, str]:
    """Every point key of a cell is prefix + strategy + suffix (see store.point_key)."""
    from moesim.sweep.store import KEY_COLUMNS, point_key

    if KEY_COLUMNS != _AFFIX_COLUMNS:  # the key layout changed: the generic (slower) path stays right
        prefix, suffix = point_key(cell_point_values(cell, "\0")).split("\0")
        return prefix, suffix
    # written out because a sweep asks for ~10^5 of these: point_key's layout, without the dict
    t = cell.target
    return (f"model={cell.model}|quant={cell.quant}|device={t.slug}|device_count={t.device_count}|host={t.host}"
            "|strategy=", f"|engine={cell.engine}|context={cell.context}|batch={cell.batch}|trace={cell.trace_id}")


def cell_keys(cell: Cell) -> list[str]:
    prefix, suffix = cell_key_affixes(cell)
    return [prefix + s + suffix for s in cell.strategies]
