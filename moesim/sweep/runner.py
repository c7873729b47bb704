"""The sweep driver: resolve options, plan chunks, skip what is on disk, simulate the rest in
parallel and write every chunk atomically.

Chunks hold whole cells of one model and are defined over the full, ordered cell list, so a
sweep killed after some chunks and run again computes exactly the missing chunks and writes
the same files an uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from moesim import __version__
from moesim.errors import MoesimError
from moesim.sweep import points as pts
from moesim.sweep.compute import compute_cells
from moesim.sweep.grading import Rubric, load_rubric
from moesim.sweep.store import (
    FORMATS,
    SCHEMA_VERSION,
    chunk_files,
    partition_dir,
    read_meta,
    read_table,
    remove_stale_temps,
    write_chunk,
    write_meta,
)

DEFAULT_CHUNK_POINTS = 4096


@dataclass(frozen=True, slots=True)
class SweepOptions:
    """Everything `moesim sweep` was asked, before resolution against the catalogs."""

    models: str = "all"
    devices: str = "all"
    quants: str = "all"
    strategies: str = "main"
    contexts: str = "4096"
    batches: str = "1"
    hosts: str = "typical"
    engine: str = "llama.cpp"
    trace: str | None = None
    preset: str | None = None
    prompt_tokens: int = 512
    seed: int = 0
    fmt: str = "arrow"
    grading: str | None = None
    chunk_points: int = DEFAULT_CHUNK_POINTS


@dataclass(frozen=True, slots=True)
class Chunk:
    model: str
    cells: tuple  # tuple[Cell, ...]
    name: str  # file name inside the model partition
    n_points: int
    cost: float  # relative compute cost, to start expensive chunks first


@dataclass(frozen=True, slots=True)
class SweepSummary:
    out: str
    points: int
    computed: int
    skipped: int
    chunks_written: int
    seconds: float
    format: str


def catalog_hashes() -> dict[str, str]:
    """sha1 (12 hex) of each catalog data file group and of the trace presets, so a sweep knows
    which catalog it was computed from."""
    from importlib import resources

    groups: dict[str, hashlib._Hash] = {}
    for package, folder in (("moesim.catalog", "data"), ("moesim.traces_data", "presets")):
        try:
            root = resources.files(package).joinpath(folder)
            entries = sorted(_walk(root), key=lambda item: item[0])
        except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
            continue
        for rel, data in entries:
            group = f"{folder}/{rel.split('/')[0]}" if "/" in rel else f"{folder}/{rel.rsplit('.', 1)[0]}"
            digest = groups.setdefault(group, hashlib.sha1())
            digest.update(rel.encode() + b"\0" + data)
    return {name: digest.hexdigest()[:12] for name, digest in sorted(groups.items())}


def _walk(node, prefix: str = ""):
    for child in node.iterdir():
        rel = f"{prefix}{child.name}"
        if child.name.startswith((".", "__")):
            continue
        if child.is_dir():
            yield from _walk(child, rel + "/")
        elif child.is_file():
            yield rel, child.read_bytes()


@dataclass(frozen=True, slots=True)
class ResolvedSweep:
    options: SweepOptions
    rubric: Rubric
    cells: tuple  # tuple[Cell, ...]
    config: dict  # the full resolved configuration, stored in the metadata


def resolve(options: SweepOptions) -> ResolvedSweep:
    """Validate options and resolve them against the catalogs (unknown ids -> MoesimError)."""
    if options.fmt not in FORMATS:
        raise MoesimError(f"unknown format '{options.fmt}' (use arrow or parquet)")
    if options.trace is not None and options.preset is not None:
        raise MoesimError("give either --trace or --preset, not both")
    if options.chunk_points < 1:
        raise MoesimError("--chunk-points must be >= 1")
    rubric = load_rubric(options.grading)
    contexts = pts.parse_int_list(options.contexts, "--contexts", 0)
    batches = pts.parse_int_list(options.batches, "--batch", 1)
    from moesim.catalog.engines import all_engines, get_engine

    try:
        engine = get_engine(options.engine).name
    except MoesimError:
        raise
    except Exception:
        from moesim.errors import unknown_id_error

        raise unknown_id_error("engine", options.engine, [e.name for e in all_engines()]) from None
    models = pts.resolve_models(options.models)
    if options.trace is not None:
        models = _models_for_trace(options.trace, models, explicit=options.models.strip().lower() != "all")
    if options.preset is not None:
        from moesim.trace.generate import load_preset

        load_preset(options.preset)  # unknown preset: one-line error before any work
    quants = pts.resolve_quants(options.quants, models, engine)
    targets = pts.resolve_targets(options.devices, options.hosts)
    templates = pts.resolve_strategies(options.strategies, engine)
    trace_id, trace_path = pts.trace_identity(options.trace, options.preset)
    entries = pts.model_entries(models, quants)
    cells = pts.build_cells(entries, targets, templates, contexts, batches, engine, trace_id, trace_path)
    config = {
        "models": [{"alias": e.alias, "id": e.model_id, "quants": list(e.quants)} for e in entries],
        "targets": [asdict(t) for t in targets],
        "strategies": {kind: list(names) for kind, names in templates.items()},
        "contexts": sorted(contexts),
        "batches": sorted(batches),
        "engines": [engine],
        "traces": [trace_id],
        "prompt_tokens": options.prompt_tokens,
        "seed": options.seed,
        "format": options.fmt,
        "rubric": {"rubric_version": rubric.rubric_version, "sha1": rubric.digest, "source": rubric.source},
    }
    return ResolvedSweep(options, rubric, tuple(cells), config)


def _models_for_trace(path: str, models, explicit: bool):
    """The selected models a recorded/imported trace can drive (same MoE shape); with the
    default `--models all` the others are dropped, an explicit mismatch is an error."""
    from moesim.trace.format import read_trace_meta

    pts.trace_identity(path, None)  # unreadable file: one-line error
    meta = read_trace_meta(path)
    shape = (len(meta.moe_layers), meta.n_routed_experts, meta.top_k)
    matching = tuple(m for m in models if (len(m.moe_layers), m.n_routed_experts, m.top_k) == shape)
    mismatched = [m.alias for m in models if m not in matching]
    if not matching or (explicit and mismatched):
        raise MoesimError(
            f"trace {Path(path).name} ({shape[0]} MoE layers x {shape[1]} experts, top-{shape[2]}) does not fit "
            f"model(s) {', '.join(mismatched) or 'selected'}; pick models of that shape with --models"
        )
    return matching


def attach_preset_traces(cells, preset: str, seed: int, trace_dir: Path):
    """`--preset P`: the timing model replays trace files, so write one synthetic trace per MoE
    model (same length and sequences as its built-in synthetic trace) and point the cells at it."""
    from moesim.catalog.models import get_model
    from moesim.simulate import DECODE_STEPS, TRACE_SEQS, WARMUP_STEPS
    from moesim.trace.format import write_trace
    from moesim.trace.generate import generate_trace

    paths: dict[str, str | None] = {}
    out = []
    for cell in cells:
        if cell.model not in paths:
            model = get_model(cell.model_id)
            if not model.is_moe:
                paths[cell.model] = None
            else:
                safe_preset = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(preset).name)
                path = trace_dir / f"{cell.model}--{safe_preset}--seed{seed}.feather"  # not *.arrow: globs over the dataset skip it
                if not path.exists():
                    trace = generate_trace(model, n_tokens=WARMUP_STEPS + DECODE_STEPS, n_seqs=TRACE_SEQS,
                                           preset=preset, seed=seed)
                    from moesim.sweep.store import _atomic_write_bytes

                    _atomic_write_bytes(path, lambda tmp: write_trace(trace, tmp))
                paths[cell.model] = str(path)
        out.append(pts.Cell(cell.model, cell.model_id, cell.quant, cell.target, cell.engine, cell.context,
                            cell.batch, cell.trace_id, paths[cell.model], cell.strategies, cell.total_params))
    return tuple(out)


def settings_of(meta: dict) -> dict:
    """The parts of a sweep's metadata that change the values of a point (not its coverage):
    two runs into one folder must agree on these, or the folder would mix incompatible rows."""
    config = meta.get("config", {})
    return {
        "schema_version": meta.get("schema_version"),
        "moesim_version": meta.get("moesim_version"),
        "catalog_hashes": meta.get("catalog_hashes"),
        "strategies": config.get("strategies"),
        "prompt_tokens": config.get("prompt_tokens"),
        "seed": config.get("seed"),
        "format": config.get("format"),
        "rubric": config.get("rubric"),
    }


def plan_chunks(cells, chunk_points: int, fmt: str) -> list[Chunk]:
    """Consecutive whole cells of one model, up to `chunk_points` points per chunk."""
    chunks: list[Chunk] = []
    current: list = []

    def close():
        if not current:
            return
        # named by content: every point key of the chunk, written compactly per cell
        digest = hashlib.sha1()
        for c in current:
            prefix, suffix = pts.cell_key_affixes(c)
            digest.update(f"{prefix}{{{','.join(c.strategies)}}}{suffix}\n".encode())
        name = f"part-{digest.hexdigest()[:16]}{FORMATS[fmt]}"
        n = sum(len(c.strategies) for c in current)
        chunks.append(Chunk(current[0].model, tuple(current), name, n, float(n)))
        current.clear()

    size = 0
    for cell in cells:
        if current and (cell.model != current[0].model or size + len(cell.strategies) > chunk_points):
            close()
            size = 0
        current.append(cell)
        size += len(cell.strategies)
    close()
    return chunks


def _warm_timing_kernels(cells, prompt_tokens: int, seed: int) -> None:
    """Compile (or load from the Numba cache) the batch timing kernel chain: one point of a dense
    model, which needs no routing trace (the kernel's types are the same for every model)."""
    from moesim.catalog.models import all_models
    from moesim.catalog.quants import applicable_quants
    from moesim.simulate import SimRequest, simulate_columns

    cell = cells[0]
    request = None
    for model in all_models():
        if not model.is_moe:
            quants = applicable_quants(model)
            if quants:
                request = SimRequest(model=model.id, quant=quants[0].id, device=cell.target.slug,
                                     device_count=cell.target.device_count, host=cell.target.host_arg, strategy="auto",
                                     context=cell.context, batch=cell.batch, engine=cell.engine,
                                     prompt_tokens=prompt_tokens, seed=seed)
                break
    try:
        simulate_columns([request] if request is not None else [])
    except MoesimError:
        pass
    if request is None:  # a catalog without dense models: one point of the sweep itself
        from moesim.sweep.compute import cell_requests

        try:
            simulate_columns(cell_requests(cell, prompt_tokens, seed)[:1])
        except MoesimError:
            pass


def _warm_routing_kernels(cells, seed: int) -> None:
    """Compile (or load) the trace generation and LRU stack-distance kernels: one routing per expert
    id width the sweep's models need (<= 256 experts: uint8 traces, more: uint16)."""
    import numpy as np

    from moesim.kernels.timing_batch import _miss_tables
    from moesim.simulate import _SESSION

    seen: set = set()
    for cell in cells:
        model = _SESSION.model(cell.model_id)
        width = model.n_routed_experts > 256 if model.is_moe else None
        if width is None or (width, cell.trace_path) in seen:
            continue
        seen.add((width, cell.trace_path))
        try:
            routing = _SESSION.routing(model, cell.trace_path, seed, cell.batch)
            needs = routing.lru_needs()
        except MoesimError:
            continue
        experts = routing.n_experts
        rows = (experts + 2, routing.n_steps)
        _miss_tables(needs, np.ones(needs.shape[1]), experts, np.empty(rows), np.empty(rows))


def _kernels_cached() -> bool:
    """Whether the Numba cache already holds the sweep's heaviest kernels (then loading them
    takes well under a second and compiling in parallel would only add process start-ups)."""
    try:
        from moesim.kernels.timing_batch import _evaluate_points
        from moesim.kernels.trace_gen import generate_routing

        return all(bool(k._cache._cache_file._load_index()) for k in (_evaluate_points, generate_routing))
    except Exception:  # numba internals moved: assume a cold cache (only costs a little time)
        return False


def warm_kernels(cells, prompt_tokens: int, seed: int, parallel: bool) -> None:
    """Have every kernel the sweep calls compiled in this process before workers fork, so they
    inherit it instead of each compiling its own copy. On a cold cache with `parallel`, the two
    kernel families compile at the same time in two forked processes (each writes the Numba
    cache), and this process then loads both from the cache. With `parallel` and a warm cache
    nothing is done here: the workers load the kernels themselves, at the same time."""
    import moesim.kernels  # noqa: F401  (sets Numba's environment before Numba is first imported)
    import numba

    if not cells or numba.config.DISABLE_JIT:
        return
    if parallel and _kernels_cached():
        return  # each worker loads them from the cache in well under a second, side by side
    if parallel:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        procs = [context.Process(target=_quietly, args=(_warm_timing_kernels, cells, prompt_tokens, seed)),
                 context.Process(target=_quietly, args=(_warm_routing_kernels, cells, seed))]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
    _quietly(_warm_timing_kernels, cells, prompt_tokens, seed)
    _quietly(_warm_routing_kernels, cells, seed)


def _quietly(warm, *args) -> None:
    """Run a warm-up; it only saves time, so a failure is left for the sweep itself to meet and
    report (on the point that causes it, the way it reports any point)."""
    try:
        warm(*args)
    except Exception:
        pass


# Worker state: set once per process by the pool initializer, so chunks ship only their cells.
_WORKER: dict = {}


def _init_worker(out: str, rubric: Rubric, prompt_tokens: int, seed: int, fmt: str, file_meta: dict) -> None:
    _WORKER.update(out=Path(out), rubric=rubric, prompt_tokens=prompt_tokens, seed=seed, fmt=fmt, file_meta=file_meta)


def _run_chunk_at(index: int) -> int:
    """Worker entry: the chunk list was set before the pool forked, so only an index travels."""
    return _run_chunk(_WORKER["chunks"][index])


def _run_chunk(chunk: Chunk) -> int:
    table = compute_cells(list(chunk.cells), _WORKER["rubric"], _WORKER["prompt_tokens"], _WORKER["seed"])
    table = table.replace_schema_metadata(_WORKER["file_meta"])
    write_chunk(partition_dir(_WORKER["out"], chunk.model) / chunk.name, table, _WORKER["fmt"])
    return chunk.n_points


def run_sweep(
    options: SweepOptions,
    out: str | Path,
    jobs: int | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SweepSummary:
    """Run (or resume) a sweep into `out`.

    Parameters
    ----------
    options : what to sweep.
    out : dataset folder; created if missing, resumed if it holds a compatible sweep.
    jobs : worker processes (default: all cores); 1 computes in this process.
    force : recompute every point even if it is on disk.
    progress : called as progress(done_points, total_points) after each chunk.

    Returns
    -------
    SweepSummary with point counts and elapsed seconds.
    """
    started = time.perf_counter()
    resolved = resolve(options)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MoesimError(f"--out {out} exists and is not a directory")
    meta = {
        "schema_version": SCHEMA_VERSION,
        "moesim_version": __version__,
        "catalog_hashes": catalog_hashes(),
        "config": resolved.config,
    }
    old = read_meta(out) if out.is_dir() else None
    if old is not None and not force and settings_of(old) != settings_of(meta):
        changed = [k for k, v in settings_of(meta).items() if settings_of(old).get(k) != v]
        raise MoesimError(
            f"{out} holds a sweep made with different {', '.join(changed)}; "
            "pass --force to recompute it or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    cells = resolved.cells
    if options.preset is not None:
        cells = attach_preset_traces(cells, options.preset, options.seed, out / "_traces")
    chunks = plan_chunks(cells, options.chunk_points, options.fmt)
    total = sum(c.n_points for c in chunks)
    planned_names = {(c.model, c.name) for c in chunks}
    existing = chunk_files(out)
    if force or (old is not None and settings_of(old) != settings_of(meta)):
        # Same-named chunks are replaced atomically one by one; others would duplicate points.
        for path in existing:
            if (path.parent.name.removeprefix("model="), path.name) not in planned_names:
                path.unlink()
        present: set[str] = set()
    else:
        present = set()
        for path in existing:
            present.update(read_table(path, ["point_key"]).column("point_key").to_pylist())
    if old is not None and not force:
        meta["config"] = _merge_coverage(old.get("config", {}), resolved.config)
    write_meta(out, meta)

    todo: list[Chunk] = []
    skipped = 0
    for chunk in chunks:
        if force:
            todo.append(chunk)
            continue
        if not present:
            todo.append(chunk)
            continue
        missing = tuple(c for c in chunk.cells if not set(pts.cell_keys(c)) <= present)
        skipped += chunk.n_points - sum(len(c.strategies) for c in missing)
        if not missing:
            continue
        if len(missing) == len(chunk.cells):
            todo.append(chunk)
        else:
            todo.extend(plan_chunks(missing, options.chunk_points, options.fmt))
    computed = sum(c.n_points for c in todo)
    done = skipped
    if progress:
        progress(done, total)
    todo.sort(key=lambda c: -c.cost)
    # every chunk carries this run's own metadata (not the merged coverage), so a chunk's bytes
    # depend only on the inputs that made it
    file_meta = {"moesim": json.dumps({**meta, "config": resolved.config}, sort_keys=True)}
    init_args = (str(out), resolved.rubric, options.prompt_tokens, options.seed, options.fmt, file_meta)
    jobs = max(1, jobs or os.cpu_count() or 1)
    if jobs == 1 or len(todo) <= 1:
        _init_worker(*init_args)
        for chunk in todo:
            done += _run_chunk(chunk)
            if progress:
                progress(done, total)
    elif todo:
        import multiprocessing

        warm_kernels([c for chunk in todo for c in chunk.cells[:1]], options.prompt_tokens, options.seed, parallel=True)

        # fork: workers inherit imported modules, compiled kernels and the chunk list instead of
        # re-importing and unpickling ~10^5 cells.
        _init_worker(*init_args)
        _WORKER["chunks"] = todo
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context) as pool:
            futures = [pool.submit(_run_chunk_at, i) for i in range(len(todo))]
            try:
                for future in as_completed(futures):
                    done += future.result()
                    if progress:
                        progress(done, total)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return SweepSummary(str(out), total, computed, skipped, len(todo), time.perf_counter() - started, options.fmt)


def _merge_coverage(old: dict, new: dict) -> dict:
    """Union of what two compatible runs into one folder covered (models, targets, contexts...)."""
    merged = dict(new)
    by_alias = {m["alias"]: dict(m) for m in old.get("models", [])}
    for model in new.get("models", []):
        entry = by_alias.setdefault(model["alias"], dict(model))
        entry["quants"] = list(dict.fromkeys(list(entry.get("quants", [])) + list(model["quants"])))
    merged["models"] = list(by_alias.values())
    targets = {(t["slug"], t["host"]): t for t in old.get("targets", [])}
    for target in new.get("targets", []):
        targets.setdefault((target["slug"], target["host"]), target)
    merged["targets"] = list(targets.values())
    for key in ("contexts", "batches", "engines", "traces"):
        merged[key] = sorted(set(old.get(key, [])) | set(new.get(key, [])))
    return merged
